//! The C API through the real header and the built libraries: tests/c/test_api.c compiled
//! against libquill.so and against libquill.a, then run (under valgrind memcheck when
//! QUILL_VALGRIND=1, which CI sets, at AVX2, the widest level valgrind runs), and under
//! AddressSanitizer at the run-time kernel level with an int8 model; a program written against
//! the first released header (tests/c/abi_v1) run against today's library under ASan. Also: the
//! exported symbols are exactly the append-only list in tests/c/symbols.txt, and the SONAME.
#![cfg(all(target_os = "linux", feature = "tokenizer"))]

use std::path::{Path, PathBuf};
use std::process::Command;

use quill::convert::hf::{ConvertOptions, convert_hf};

mod common;
use common::{have, lib_dir};

use common::root;

fn golden_ids() -> (String, String) {
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/hf/marian/golden.json")).unwrap(),
    )
    .unwrap();
    let input: Vec<u64> = g["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let output: Vec<u64> = g["output_ids"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|v| v.as_u64().unwrap())
        .collect();
    // The fixture's word-level vocabulary: id n is "wn", 0 is "</s>".
    let text = input
        .iter()
        .map(|&i| {
            if i == 0 {
                "</s>".to_string()
            } else {
                format!("w{i}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let ids = output
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    (text, ids)
}

/// A directory holding `libquill.so.<ABI>` (the library's SONAME, as an installation names it)
/// for programs linked against this run's `libquill.so`.
fn soname_dir(dir: &Path) -> PathBuf {
    let run_dir = dir.join("lib");
    std::fs::create_dir_all(&run_dir).unwrap();
    let soname = run_dir.join(format!("libquill.so.{}", quill::ffi::QUILL_ABI_VERSION));
    if !soname.exists() {
        std::os::unix::fs::symlink(lib_dir().join("libquill.so"), &soname).unwrap();
    }
    run_dir
}

/// Compiles `src` (a path in the repository) with `compiler` and `flags` against the shared or
/// static library.
fn build_c(
    dir: &Path,
    src: &str,
    exe_name: &str,
    compiler: &str,
    flags: &[&str],
    static_link: bool,
) -> PathBuf {
    let exe = dir.join(exe_name);
    let libs = lib_dir();
    let mut cc = Command::new(compiler);
    cc.args(["-Wall", "-Wextra", "-Werror", "-g", "-pthread"])
        .args(flags);
    cc.arg("-I")
        .arg(root().join("include"))
        .arg(root().join(src))
        .arg("-o")
        .arg(&exe);
    if static_link {
        cc.arg(libs.join("libquill.a"))
            .args(["-lpthread", "-ldl", "-lm"]);
    } else {
        let run_dir = soname_dir(dir);
        cc.arg("-L")
            .arg(&libs)
            .arg("-lquill")
            .arg(format!("-Wl,-rpath,{}", run_dir.display()));
    }
    let out = cc.output().unwrap();
    assert!(
        out.status.success(),
        "{compiler} {src} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// The kernel level C programs run at: AVX2 (what valgrind can run) unless `isa` says otherwise
/// (`None`: the run-time choice).
const VALGRIND_ISA: Option<&str> = Some("avx2");

fn run_c(exe: &Path, args: &[&std::ffi::OsStr], valgrind: bool) {
    run_c_at(exe, args, valgrind, VALGRIND_ISA)
}

fn run_c_at(exe: &Path, args: &[&std::ffi::OsStr], valgrind: bool, isa: Option<&str>) {
    let mut run = if valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "-q",
        ])
        .arg(exe);
        c
    } else {
        Command::new(exe)
    };
    run.args(args);
    match isa {
        Some(isa) => run.env("QUILL_FORCE_ISA", isa),
        None => run.env_remove("QUILL_FORCE_ISA"),
    };
    let out = run.output().unwrap();
    assert!(
        out.status.success(),
        "{} (valgrind={valgrind}) failed:\n{}\n{}",
        exe.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn marian(dir: &Path) -> PathBuf {
    let model = dir.join("marian.quill");
    if !model.exists() {
        convert_hf(
            &root().join("tests/fixtures/hf/marian"),
            &model,
            &ConvertOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
    }
    model
}

/// The Marian fixture with `num_beams: 4` in its generation defaults (as the shipped demo model
/// has), so that the defaults of sessions and decoding differ; f32, or int8 with `int8`.
fn marian_beams4(dir: &Path, int8: bool) -> PathBuf {
    let src = dir.join("hf-marian-beams4");
    if !src.exists() {
        std::fs::create_dir_all(&src).unwrap();
        for e in std::fs::read_dir(root().join("tests/fixtures/hf/marian")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), src.join(e.file_name())).unwrap();
        }
        let g = src.join("generation_config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&g).unwrap()).unwrap();
        v["num_beams"] = 4.into();
        std::fs::write(&g, v.to_string()).unwrap();
    }
    let model = dir.join(if int8 {
        "marian-b4-int8.quill"
    } else {
        "marian-b4.quill"
    });
    if !model.exists() {
        let options = ConvertOptions {
            quantize: int8.then_some(quill::convert::quantize::Target::Int8),
        };
        convert_hf(&src, &model, &options, &mut |_, _| {}).unwrap();
    }
    model
}

/// Greedy ids (24 new tokens at most) of `text` through the Rust API, as the C suite's
/// expected-ids argument, for models without a `transformers` golden (int8).
fn rust_greedy_ids(model: &Path, text: &str) -> String {
    use quill::decode::{GenerateOptions, Strategy, generate};
    let m = quill::Model::open(model, &quill::OpenOptions::default()).unwrap();
    let ids = m.tokenizer().unwrap().encode(text, true).unwrap();
    let mut s = quill::Session::new(&m, quill::Limits::default().fit(&m)).unwrap();
    let o = GenerateOptions {
        max_new_tokens: 24,
        strategy: Strategy::Greedy,
        ..GenerateOptions::model_defaults(&m).unwrap()
    };
    let g = generate(&mut s, &[&ids], &o, None, None).unwrap();
    g.outputs[0][0]
        .ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether clang can build with AddressSanitizer here (Debian: clang + libclang-rt-14-dev);
/// required in CI.
fn have_asan(dir: &Path) -> bool {
    let ok = have("clang") && {
        let probe = dir.join("probe.c");
        std::fs::write(&probe, "int main(void){return 0;}").unwrap();
        Command::new("clang")
            .args(["-fsanitize=address"])
            .arg(&probe)
            .arg("-o")
            .arg(dir.join("probe"))
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        ok || std::env::var("CI").is_err(),
        "CI must have clang with AddressSanitizer"
    );
    ok
}

const ASAN: &[&str] = &[
    "-std=c11",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
    "-fno-omit-frame-pointer",
];

#[test]
fn c_test_suite_passes_against_shared_and_static_libraries() {
    if !have("cc") {
        assert!(std::env::var("CI").is_err(), "CI must have a C compiler");
        eprintln!("skipped: no C compiler");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = marian_beams4(dir.path(), false);
    let (text, ids) = golden_ids();
    let valgrind = std::env::var("QUILL_VALGRIND").is_ok_and(|v| v == "1");
    assert!(
        !valgrind || have("valgrind"),
        "QUILL_VALGRIND=1 but valgrind is not installed"
    );
    let args = [model.as_os_str(), text.as_ref(), ids.as_ref()];
    for static_link in [false, true] {
        let name = if static_link {
            "test_api_static"
        } else {
            "test_api_shared"
        };
        let exe = build_c(
            dir.path(),
            "tests/c/test_api.c",
            name,
            "cc",
            &["-std=c11"],
            static_link,
        );
        run_c(&exe, &args, valgrind);
    }
}

#[test]
fn c_test_suite_under_asan_at_the_run_time_level_with_an_int8_model() {
    let dir = tempfile::tempdir().unwrap();
    if !have_asan(dir.path()) {
        eprintln!("skipped: no clang with AddressSanitizer");
        return;
    }
    let model = marian_beams4(dir.path(), true);
    let (text, _) = golden_ids();
    let ids = rust_greedy_ids(&model, &text);
    let exe = build_c(
        dir.path(),
        "tests/c/test_api.c",
        "test_api_asan",
        "clang",
        ASAN,
        false,
    );
    run_c_at(
        &exe,
        &[model.as_os_str(), text.as_ref(), ids.as_ref()],
        false,
        None,
    );
}

/// A program written against the first released header (tests/c/abi_v1/quill.h, commit
/// e946b24: smaller model params, session params and model info) runs against today's library:
/// nothing is written past its structs (ASan), and it decodes the golden.
#[test]
fn a_program_built_against_the_first_header_runs_against_this_library() {
    let dir = tempfile::tempdir().unwrap();
    let model = marian(dir.path());
    let (text, ids) = golden_ids();
    let v1 = format!("-I{}", root().join("tests/c/abi_v1").display());
    let args = [model.as_os_str(), text.as_ref(), ids.as_ref()];
    // The old header comes before include/ on the search path.
    let exe = build_c(
        dir.path(),
        "tests/c/test_abi_v1.c",
        "abi_v1",
        "cc",
        &["-std=c11", &v1],
        false,
    );
    run_c(
        &exe,
        &args,
        std::env::var("QUILL_VALGRIND").is_ok_and(|v| v == "1"),
    );
    if have_asan(dir.path()) {
        let flags: Vec<&str> = ASAN.iter().copied().chain([v1.as_str()]).collect();
        let exe = build_c(
            dir.path(),
            "tests/c/test_abi_v1.c",
            "abi_v1_asan",
            "clang",
            &flags,
            false,
        );
        run_c_at(&exe, &args, false, None);
    }
}

#[test]
fn eight_threads_with_their_own_sessions_match_a_sequential_run() {
    if !have("cc") {
        assert!(std::env::var("CI").is_err(), "CI must have a C compiler");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = marian(dir.path());
    let exe = build_c(
        dir.path(),
        "tests/c/test_threads.c",
        "test_threads",
        "cc",
        &["-std=c11"],
        false,
    );
    run_c(&exe, &[model.as_os_str()], false);
    // And under AddressSanitizer, at the run-time kernel level.
    if !have_asan(dir.path()) {
        eprintln!("skipped the AddressSanitizer run: no clang with ASan runtime");
        return;
    }
    let exe = build_c(
        dir.path(),
        "tests/c/test_threads.c",
        "test_threads_asan",
        "clang",
        &["-std=c11", "-fsanitize=address", "-fno-omit-frame-pointer"],
        false,
    );
    run_c_at(&exe, &[model.as_os_str()], false, None);
}

#[test]
fn exported_symbols_are_the_append_only_list() {
    if !have("nm") {
        assert!(std::env::var("CI").is_err(), "CI must have nm (binutils)");
        eprintln!("skipped: no nm");
        return;
    }
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib_dir().join("libquill.so"))
        .output()
        .unwrap();
    let mut exported: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(String::from))
        .filter(|s| s.starts_with("quill_"))
        .collect();
    exported.sort();
    let listed: Vec<String> = std::fs::read_to_string(root().join("tests/c/symbols.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(String::from)
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    for s in &listed {
        assert!(
            exported.contains(s),
            "symbol {s} was removed: the list is append-only"
        );
    }
    assert_eq!(
        exported, sorted,
        "new exported symbols must be appended to tests/c/symbols.txt"
    );
}

/// The released C ABI (tests/c/abi_baseline.c, recorded append-only by
/// scripts/abi-baseline.py: every prototype, struct field offset and size, status value,
/// constant and callback type) still holds in the current header, and covers every export.
#[test]
fn the_released_abi_still_holds() {
    if !have("cc") {
        assert!(std::env::var("CI").is_err(), "CI must have a C compiler");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-c"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("tests/c/abi_baseline.c"))
        .arg("-o")
        .arg(dir.path().join("abi.o"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the header breaks the released ABI:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let baseline = std::fs::read_to_string(root().join("tests/c/abi_baseline.c")).unwrap();
    for sym in std::fs::read_to_string(root().join("tests/c/symbols.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            baseline.contains(&format!("check_{sym})")),
            "{sym} is exported but not in tests/c/abi_baseline.c: run scripts/abi-baseline.py"
        );
    }
}

#[test]
fn shared_library_soname_carries_the_abi_major() {
    if !have("readelf") {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have readelf (binutils)"
        );
        eprintln!("skipped: no readelf");
        return;
    }
    let out = Command::new("readelf")
        .arg("-d")
        .arg(lib_dir().join("libquill.so"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("[libquill.so.{}]", quill::ffi::QUILL_ABI_VERSION);
    assert!(
        text.contains("SONAME") && text.contains(&want),
        "no SONAME {want} in:\n{text}"
    );
}

/// The expected ids of the shared end-to-end cases, computed through the Rust API, as
/// `name:id,id,...` lines for the other languages' tests.
fn expected_cases(dir: &Path, model: &Path) -> (PathBuf, String) {
    use quill::decode::{BeamOptions, GenerateOptions, SampleOptions, Strategy, generate};
    let (text, _) = golden_ids();
    let m = quill::Model::open(
        model,
        &quill::OpenOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let ids = m.tokenizer().unwrap().encode(&text, true).unwrap();
    let mut s = quill::Session::new(
        &m,
        quill::Limits {
            max_batch: 2,
            max_input_len: 64,
            max_new_tokens: 32,
            beams: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let base = GenerateOptions {
        max_new_tokens: 24,
        ..GenerateOptions::model_defaults(&m).unwrap()
    };
    let run = |s: &mut quill::Session, inputs: &[&[u32]], strategy: Strategy| {
        generate(
            s,
            inputs,
            &GenerateOptions {
                strategy,
                ..base.clone()
            },
            None,
            None,
        )
        .unwrap()
        .outputs
    };
    let join = |v: &[u32]| {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut lines = vec![format!("tokenize:{}", join(&ids))];
    let g = run(&mut s, &[&ids], Strategy::Greedy);
    lines.push(format!("greedy:{}", join(&g[0][0].ids)));
    let b = run(
        &mut s,
        &[&ids],
        Strategy::Beam(BeamOptions {
            beams: 4,
            n_best: 2,
            ..Default::default()
        }),
    );
    lines.push(format!("beam0:{}", join(&b[0][0].ids)));
    lines.push(format!("beam1:{}", join(&b[0][1].ids)));
    let sm = run(
        &mut s,
        &[&ids],
        Strategy::Sample(SampleOptions {
            top_k: 50,
            seed: 7,
            ..Default::default()
        }),
    );
    lines.push(format!("sample:{}", join(&sm[0][0].ids)));
    let short = &ids[..ids.len() - 3];
    let bt = run(&mut s, &[&ids, short], Strategy::Greedy);
    lines.push(format!("batch0:{}", join(&bt[0][0].ids)));
    lines.push(format!("batch1:{}", join(&bt[1][0].ids)));
    lines.push(format!("chat:{}", join(&c_api_chat_reply())));
    let path = dir.join("expected.txt");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, text)
}

/// The shipped chat model, for the bindings' chat tests (`QUILL_CHAT_MODEL`).
fn chat_model() -> PathBuf {
    root().join("models/chat-en.quill")
}

/// The system message and the user's message of the bindings' chat case.
const CHAT_SYSTEM: &str = "Be brief.";
const CHAT_MESSAGE: &str = "Hello! How are you?";

/// The reply of the shipped chat model to [`CHAT_SYSTEM`] and [`CHAT_MESSAGE`] through the C
/// API (which tests/chat.rs holds to the Rust conversation): a session of one input with the
/// other limits fitted to the model (0), the model's decoding defaults (NULL parameters).
fn c_api_chat_reply() -> Vec<u32> {
    use quill::ffi::*;
    use std::ffi::CString;
    use std::ptr::null_mut;
    let c = |t: &str| CString::new(t).unwrap();
    unsafe {
        let mut model = null_mut();
        let path = c(chat_model().to_str().unwrap());
        assert_eq!(
            quill_model_open(path.as_ptr(), std::ptr::null(), &mut model),
            quill_status::QUILL_OK
        );
        let mut sp: quill_session_params = std::mem::zeroed();
        quill_session_params_init(&mut sp, std::mem::size_of::<quill_session_params>());
        (sp.max_batch, sp.max_input_len, sp.max_new_tokens, sp.beams) = (1, 0, 0, 1);
        let mut session = null_mut();
        assert_eq!(
            quill_session_new(model, &sp, &mut session),
            quill_status::QUILL_OK
        );
        assert_eq!(
            quill_chat_add(session, c("system").as_ptr(), c(CHAT_SYSTEM).as_ptr()),
            quill_status::QUILL_OK
        );
        let mut r = null_mut();
        let msg = c(CHAT_MESSAGE);
        let no_stream: quill_stream_fn = None;
        assert_eq!(
            quill_chat_turn(
                session,
                msg.as_ptr(),
                std::ptr::null(),
                no_stream,
                null_mut(),
                &mut r
            ),
            quill_status::QUILL_OK
        );
        let (mut ids, mut n) = (std::ptr::null(), 0usize);
        assert_eq!(
            quill_result_ids(r, 0, 0, &mut ids, &mut n),
            quill_status::QUILL_OK
        );
        let reply = std::slice::from_raw_parts(ids, n).to_vec();
        assert!(!reply.is_empty());
        quill_result_free(r);
        quill_session_free(session);
        quill_model_free(model);
        reply
    }
}

#[test]
fn cpp_binding_gives_the_same_ids() {
    if !have("c++") {
        assert!(std::env::var("CI").is_err(), "CI must have a C++ compiler");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = marian(dir.path());
    let (expected, text) = expected_cases(dir.path(), &model);
    let include = format!("-I{}", root().join("bindings/cpp").display());
    let exe = build_c(
        dir.path(),
        "bindings/cpp/test_quill.cpp",
        "test_quill_cpp",
        "c++",
        &["-std=c++17", &include],
        false,
    );
    let chat = chat_model();
    let args = [
        model.as_os_str(),
        expected.as_os_str(),
        text.as_ref(),
        chat.as_os_str(),
        CHAT_SYSTEM.as_ref(),
        CHAT_MESSAGE.as_ref(),
    ];
    run_c(&exe, &args, false);
    // Under AddressSanitizer and LeakSanitizer (clang++), at the run-time kernel level.
    if have_asan(dir.path()) {
        let exe = build_c(
            dir.path(),
            "bindings/cpp/test_quill.cpp",
            "test_quill_cpp_asan",
            "clang++",
            &[
                "-std=c++17",
                &include,
                "-fsanitize=address,undefined",
                "-fno-omit-frame-pointer",
            ],
            false,
        );
        run_c_at(&exe, &args, false, None);
    }
}

#[test]
fn python_binding_gives_the_same_ids() {
    let ok = Command::new("python3")
        .args(["-c", "import pytest"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var("CI").is_err(), "CI must install pytest");
        eprintln!("skipped: no python3 with pytest");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = marian(dir.path());
    let (expected, text) = expected_cases(dir.path(), &model);
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root().join("bindings/python/tests"))
        .env("PYTHONPATH", root().join("bindings/python"))
        .env("QUILL_LIBRARY", lib_dir().join("libquill.so"))
        .env("QUILL_TEST_MODEL", &model)
        .env("QUILL_EXPECTED", &expected)
        .env("QUILL_TEST_TEXT", &text)
        .env("QUILL_CHAT_MODEL", chat_model())
        .env("QUILL_CHAT_SYSTEM", CHAT_SYSTEM)
        .env("QUILL_CHAT_MESSAGE", CHAT_MESSAGE)
        .env("QUILL_FORCE_ISA", "avx2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pytest failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn go_binding_gives_the_same_ids() {
    if !have_go() {
        assert!(std::env::var("CI").is_err(), "CI must install golang-go");
        eprintln!("skipped: no go toolchain");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = marian(dir.path());
    let (expected, text) = expected_cases(dir.path(), &model);
    let libs = lib_dir();
    let run_dir = soname_dir(dir.path());
    let out = Command::new("go")
        .args(["test", "-count=1", "./..."])
        .current_dir(root().join("bindings/go/quill"))
        .env("CGO_ENABLED", "1")
        .env(
            "CGO_CFLAGS",
            format!("-I{}", root().join("include").display()),
        )
        .env(
            "CGO_LDFLAGS",
            format!("-L{} -Wl,-rpath,{}", libs.display(), run_dir.display()),
        )
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", dir.path().join("gocache"))
        .env("HOME", dir.path())
        .env("QUILL_TEST_MODEL", &model)
        .env("QUILL_EXPECTED", &expected)
        .env("QUILL_TEST_TEXT", &text)
        .env("QUILL_CHAT_MODEL", chat_model())
        .env("QUILL_CHAT_SYSTEM", CHAT_SYSTEM)
        .env("QUILL_CHAT_MESSAGE", CHAT_MESSAGE)
        .env("QUILL_FORCE_ISA", "avx2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn java_binding_gives_the_same_ids() {
    if !have("javac") {
        assert!(std::env::var("CI").is_err(), "CI must have a JDK (javac)");
        eprintln!("skipped: no JDK");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = marian(dir.path());
    let (expected, text) = expected_cases(dir.path(), &model);
    let build = dir.path().join("java");
    let lib = soname_dir(dir.path());
    std::os::unix::fs::symlink(lib_dir().join("libquill.so"), lib.join("libquill.so")).unwrap();
    let out = Command::new("bash")
        .arg(root().join("bindings/java/build.sh"))
        .arg(&build)
        .arg(root().join("include"))
        .arg(&lib)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bindings/java/build.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("java")
        .arg("-Xcheck:jni")
        .arg(format!(
            "-Dquill.jni.path={}",
            build.join("libquill_jni.so").display()
        ))
        .arg("-cp")
        .arg(format!(
            "{}:{}",
            build.join("classes").display(),
            build.join("test-classes").display()
        ))
        .arg("QuillTest")
        .arg(&model)
        .arg(&expected)
        .arg(&text)
        .env("QUILL_CHAT_MODEL", chat_model())
        .env("QUILL_CHAT_SYSTEM", CHAT_SYSTEM)
        .env("QUILL_CHAT_MESSAGE", CHAT_MESSAGE)
        .env("QUILL_FORCE_ISA", "avx2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "QuillTest failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have_go() -> bool {
    Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn swift_module_map_imports_the_c_api() {
    // No Swift toolchain here: clang's module system checks the package's module map instead.
    if !have("clang") {
        assert!(std::env::var("CI").is_err(), "CI must have clang");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let map = format!(
        "-fmodule-map-file={}",
        root()
            .join("bindings/swift/Sources/CQuill/module.modulemap")
            .display()
    );
    let cache = format!(
        "-fmodules-cache-path={}",
        dir.path().join("mcache").display()
    );
    let exe = build_c(
        dir.path(),
        "tests/c/modulemap_check.m",
        "modulemap_check",
        "clang",
        &["-fmodules", &map, &cache],
        false,
    );
    run_c(&exe, &[], false);
}

#[test]
fn c_examples_build_and_run() {
    if !have("cc") {
        assert!(std::env::var("CI").is_err(), "CI must have a C compiler");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = marian(dir.path());
    let (text, _) = golden_ids();
    for (src, args) in [("translate.c", vec![]), ("stream.c", vec!["4"])] {
        let exe = build_c(
            dir.path(),
            &format!("bindings/c/{src}"),
            src.trim_end_matches(".c"),
            "cc",
            &["-std=c11"],
            false,
        );
        let run = Command::new(&exe)
            .arg(&model)
            .arg(&text)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{src}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let printed = String::from_utf8(run.stdout).unwrap();
        assert!(printed.starts_with("w"), "{src} printed {printed:?}");
    }
}

/// bindings/c/lowlevel.c, the documented start/step/logits loop: on the seq2seq fixture it
/// decodes the `transformers` greedy golden; on the decoder-only fixture, the greedy ids of
/// quill_generate_ids (through the Rust API).
#[test]
fn c_low_level_loop_example_decodes_greedily() {
    if !have("cc") {
        assert!(std::env::var("CI").is_err(), "CI must have a C compiler");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = build_c(
        dir.path(),
        "bindings/c/lowlevel.c",
        "lowlevel",
        "cc",
        &["-std=c11"],
        false,
    );
    let run = |model: &Path, text: &str| {
        let out = Command::new(&exe)
            .arg(model)
            .arg(text)
            .arg("24")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (text, golden) = golden_ids();
    assert_eq!(run(&marian(dir.path()), &text), golden, "seq2seq");
    let llama = dir.path().join("llama.quill");
    convert_hf(
        &root().join("tests/fixtures/hf/llama"),
        &llama,
        &ConvertOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let prompt = "w5 w6 w7";
    let m = quill::Model::open(&llama, &quill::OpenOptions::default()).unwrap();
    let ids = m.tokenizer().unwrap().encode(prompt, true).unwrap();
    let mut s = quill::Session::new(&m, quill::Limits::default().fit(&m)).unwrap();
    let want = quill::decode::greedy(&mut s, &[&ids], 24, &[]).unwrap()[0]
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(run(&llama, prompt), want, "decoder-only");
}

#[test]
fn c_chat_example_keeps_the_conversation() {
    use std::io::Write;
    if !have("cc") {
        assert!(std::env::var("CI").is_err(), "CI must have a C compiler");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("llama.quill");
    convert_hf(
        &root().join("tests/fixtures/hf/llama"),
        &model,
        &ConvertOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let exe = build_c(
        dir.path(),
        "bindings/c/chat.c",
        "chat",
        "cc",
        &["-std=c11"],
        false,
    );
    let mut child = Command::new(&exe)
        .arg(&model)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"w5 w6 w7\nw8 w9\nw10\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let replies: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(replies.len(), 3, "{replies:?}");
    // The same conversation through the Rust API gives the same replies.
    let m = quill::Model::open(&model, &quill::OpenOptions::default()).unwrap();
    let mut s = quill::Session::new(&m, quill::Limits::default().fit(&m)).unwrap();
    let mut chat = quill::decode::Chat::new();
    let o = quill::decode::GenerateOptions {
        max_new_tokens: 32,
        ..quill::decode::GenerateOptions::model_defaults(&m).unwrap()
    };
    let tok = m.tokenizer().unwrap();
    for (i, msg) in ["w5 w6 w7", "w8 w9", "w10"].iter().enumerate() {
        let ids = tok.encode(msg, i == 0).unwrap();
        let reply = chat.turn(&mut s, &ids, &o, None, None).unwrap();
        let special = m.special_ids();
        let shown: Vec<u32> = reply
            .ids
            .into_iter()
            .filter(|t| !special.contains(t))
            .collect();
        assert_eq!(replies[i], tok.decode(&shown, true).unwrap(), "turn {i}");
    }
}
