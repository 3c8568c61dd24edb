//! The C API through the real header and the built libraries: tests/c/test_api.c compiled
//! against libquill.so and against libquill.a, then run (under valgrind memcheck when
//! QUILL_VALGRIND=1, which CI sets). Also: the exported symbols are exactly the append-only list
//! in tests/c/symbols.txt.
#![cfg(all(target_os = "linux", feature = "tokenizer"))]

use std::path::{Path, PathBuf};
use std::process::Command;

use quill::convert::hf::{ConvertOptions, convert_hf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile> of this test run, with libquill.so and libquill.a built by
/// `cargo build --lib` (`cargo test` builds only the rlib its tests link), once per process.
fn lib_dir() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
            let target_dir = profile_dir.parent().unwrap();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--lib", "--quiet"])
                .arg("--target-dir")
                .arg(target_dir);
            cmd.current_dir(root());
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "cargo build --lib failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            profile_dir
        })
        .clone()
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

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

fn compile_and_run(dir: &Path, model: &Path, static_link: bool) {
    let exe = dir.join(if static_link {
        "test_api_static"
    } else {
        "test_api_shared"
    });
    let libs = lib_dir();
    let mut cc = Command::new("cc");
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
        .arg("-I")
        .arg(root().join("include"));
    cc.arg(root().join("tests/c/test_api.c"))
        .arg("-o")
        .arg(&exe);
    if static_link {
        cc.arg(libs.join("libquill.a"))
            .args(["-lpthread", "-ldl", "-lm"]);
    } else {
        // The library's SONAME is libquill.so.<ABI>, as an installation names it.
        let run_dir = dir.join("lib");
        std::fs::create_dir_all(&run_dir).unwrap();
        let soname = run_dir.join(format!("libquill.so.{}", quill::ffi::QUILL_ABI_VERSION));
        let _ = std::fs::remove_file(&soname);
        std::os::unix::fs::symlink(libs.join("libquill.so"), &soname).unwrap();
        cc.arg("-L")
            .arg(&libs)
            .arg("-lquill")
            .arg(format!("-Wl,-rpath,{}", run_dir.display()));
    }
    let out = cc.output().unwrap();
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (text, ids) = golden_ids();
    let valgrind = std::env::var("QUILL_VALGRIND").is_ok_and(|v| v == "1");
    assert!(
        !valgrind || have("valgrind"),
        "QUILL_VALGRIND=1 but valgrind is not installed"
    );
    let mut run = if valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "-q",
        ])
        .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = run
        .arg(model)
        .arg(&text)
        .arg(&ids)
        .env("QUILL_FORCE_ISA", "avx2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} (static={static_link}, valgrind={valgrind}) failed:\n{}\n{}",
        exe.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn c_test_suite_passes_against_shared_and_static_libraries() {
    if !have("cc") {
        assert!(std::env::var("CI").is_err(), "CI must have a C compiler");
        eprintln!("skipped: no C compiler");
        return;
    }
    let libs = lib_dir();
    assert!(
        libs.join("libquill.so").exists() && libs.join("libquill.a").exists(),
        "libraries not built in {}",
        libs.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("marian.quill");
    convert_hf(
        &root().join("tests/fixtures/hf/marian"),
        &model,
        &ConvertOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    compile_and_run(dir.path(), &model, false);
    compile_and_run(dir.path(), &model, true);
}

#[test]
fn exported_symbols_are_the_append_only_list() {
    if !have("nm") {
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

#[test]
fn shared_library_soname_carries_the_abi_major() {
    if !have("readelf") {
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
