//! What a new user does, end to end: `scripts/install.sh` into a fresh prefix, then each program
//! of README's "Use from C, C++, Python, Go, Java, Swift" section, exactly as written there, built
//! through that installation (C: pkg-config, C++: CMake, Python: a wheel in a fresh virtualenv,
//! Go: a module outside the repository, Java: JNI) and run on every model in `models/`. Every
//! program must print what the Rust API makes of the same text with the model's defaults. Also
//! README's dynamic and static link lines, against the build directory itself.
#![cfg(all(target_os = "linux", feature = "tokenizer"))]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{have, lib_dir, root};

/// The text every program is given.
const TEXT: &str = "Could not open the file.";

/// README's section with the per-language programs.
fn readme_section() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("## Use from C, C++, Python, Go, Java, Swift")
        .expect("README has the bindings section");
    let rest = &readme[start + 3..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

/// The first fenced block of each language in README's bindings section.
fn snippets() -> HashMap<String, String> {
    let section = readme_section();
    let mut out = HashMap::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```").filter(|l| !l.is_empty()) {
            let code: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            out.entry(lang.to_string())
                .or_insert_with(|| code.join("\n") + "\n");
        }
    }
    out
}

fn snippet(lang: &str) -> String {
    snippets()
        .remove(lang)
        .unwrap_or_else(|| panic!("README has no ```{lang} program"))
}

/// Every shipped model.
fn models() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "quill"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no model in models/");
    v
}

/// What the Rust API makes of TEXT with `model`'s defaults (a session fitted to it, its own
/// decoding): what every README program must print.
fn expected(model: &Path) -> String {
    use quill::decode::{Params, fit_limits, generate, text};
    let m = quill::Model::open(model, &quill::OpenOptions::default()).unwrap();
    let limits = fit_limits(
        &m,
        quill::Limits {
            max_batch: 1,
            max_input_len: 0,
            max_new_tokens: 0,
            beams: 0,
            max_memory: 0,
        },
    )
    .unwrap();
    let mut s = quill::Session::new(&m, limits).unwrap();
    let o = Params::model_defaults(&m)
        .unwrap()
        .fit_session(limits)
        .options(&m, limits)
        .unwrap();
    let ids = text::task_input(&m, TEXT).unwrap();
    let g = generate(&mut s, &[&ids], &o, None, None).unwrap();
    text::text_of(&m, &g.outputs[0][0].ids).unwrap()
}

/// Runs `cmd MODEL TEXT` for every model and checks what it prints.
fn run_on_every_model(what: &str, mut cmd: impl FnMut() -> Command) {
    for model in models() {
        let out = cmd().arg(&model).arg(TEXT).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{what} on {}: {}\n{stdout}\n{}",
            model.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let want = expected(&model);
        assert!(!want.trim().is_empty(), "{} makes no text", model.display());
        assert_eq!(stdout.trim_end(), want, "{what} on {}", model.display());
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A prefix with quill installed by `scripts/install.sh` (from this test run's libraries), made
/// once per process under target/<profile>.
fn prefix() -> PathBuf {
    static DONE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let prefix = lib_dir().join("readme-install");
        let _ = std::fs::remove_dir_all(&prefix);
        run(
            Command::new("bash")
                .arg(root().join("scripts/install.sh"))
                .arg(&prefix)
                .env("QUILL_LIB_DIR", lib_dir()),
            "scripts/install.sh",
        );
        prefix
    })
    .clone()
}

/// A fresh directory for one test's files.
fn workdir(name: &str) -> PathBuf {
    let d = lib_dir().join("readme-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn require(tool: &str) -> bool {
    let ok = have(tool);
    assert!(
        ok || std::env::var("CI").is_err(),
        "CI must have {tool} (.ci/run installs it)"
    );
    if !ok {
        eprintln!("skipped: no {tool}");
    }
    ok
}

#[test]
fn install_sh_lays_out_the_library_its_soname_link_and_the_packages() {
    let p = prefix();
    let abi = quill::ffi::QUILL_ABI_VERSION;
    for f in [
        format!("lib/libquill.so.{abi}"),
        "lib/libquill.so".into(),
        "lib/libquill.a".into(),
        "include/quill.h".into(),
        "include/quill.hpp".into(),
        "lib/pkgconfig/quill.pc".into(),
        "lib/cmake/quill/quillConfig.cmake".into(),
    ] {
        assert!(p.join(&f).exists(), "{f} is not installed");
    }
    assert_eq!(
        std::fs::read_link(p.join("lib/libquill.so")).unwrap(),
        PathBuf::from(format!("libquill.so.{abi}"))
    );
}

/// README's two link lines, as written, with target/release replaced by this run's directory.
#[test]
fn readme_link_lines_work_from_the_build_directory() {
    if !require("cc") {
        return;
    }
    let section = readme_section();
    let lines: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("cc app.c -Iinclude"))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "README shows a dynamic and a static link line"
    );
    let dir = workdir("link-lines");
    std::fs::write(dir.join("app.c"), snippet("c")).unwrap();
    let lib = lib_dir();
    // The SONAME link beside the build (build.rs): a program linked there starts.
    assert!(
        lib.join(format!("libquill.so.{}", quill::ffi::QUILL_ABI_VERSION))
            .exists(),
        "no libquill.so.{} in {}",
        quill::ffi::QUILL_ABI_VERSION,
        lib.display()
    );
    for (i, line) in lines.iter().enumerate() {
        let command = line
            .split("  #")
            .next()
            .unwrap()
            .replace("$PWD/target/release", &lib.display().to_string())
            .replace("target/release", &lib.display().to_string())
            .replace(
                "-Iinclude",
                &format!("-I{}", root().join("include").display()),
            )
            .replace("cc app.c", &format!("cc -o app{i} app.c"));
        run(
            Command::new("bash")
                .args(["-c", &command])
                .current_dir(&dir)
                .env_remove("LD_LIBRARY_PATH"),
            &command,
        );
        let exe = dir.join(format!("app{i}"));
        run_on_every_model(&format!("README link line {i}"), || {
            let mut c = Command::new(&exe);
            c.env_remove("LD_LIBRARY_PATH");
            c
        });
    }
}

#[test]
fn c_program_builds_through_pkg_config() {
    if !require("cc") || !require("pkg-config") {
        return;
    }
    let p = prefix();
    let dir = workdir("c-pkg-config");
    std::fs::write(dir.join("app.c"), snippet("c")).unwrap();
    run(
        Command::new("bash")
            .args([
                "-c",
                "cc -std=c11 -Wall -Wextra -Werror app.c -o app $(pkg-config --cflags --libs quill) \
                 -Wl,-rpath,$(pkg-config --variable=libdir quill)",
            ])
            .current_dir(&dir)
            .env("PKG_CONFIG_PATH", p.join("lib/pkgconfig")),
        "cc through pkg-config",
    );
    run_on_every_model("the C program", || Command::new(dir.join("app")));
}

#[test]
fn cpp_program_and_static_c_program_build_through_cmake() {
    if !require("cmake") || !require("c++") {
        return;
    }
    let p = prefix();
    let dir = workdir("cmake");
    std::fs::write(dir.join("app.cpp"), snippet("cpp")).unwrap();
    std::fs::write(dir.join("app.c"), snippet("c")).unwrap();
    std::fs::write(
        dir.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.16)\n\
         project(readme C CXX)\n\
         set(CMAKE_CXX_STANDARD 17)\n\
         find_package(quill REQUIRED)\n\
         add_executable(app_cpp app.cpp)\n\
         target_link_libraries(app_cpp quill::quill)\n\
         add_executable(app_c_static app.c)\n\
         target_link_libraries(app_c_static quill::quill_static)\n",
    )
    .unwrap();
    let build = dir.join("build");
    run(
        Command::new("cmake")
            .arg("-S")
            .arg(&dir)
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", p.display())),
        "cmake configure",
    );
    run(
        Command::new("cmake").arg("--build").arg(&build),
        "cmake build",
    );
    run_on_every_model("the C++ program (CMake, quill::quill)", || {
        Command::new(build.join("app_cpp"))
    });
    run_on_every_model("the C program (CMake, quill::quill_static)", || {
        Command::new(build.join("app_c_static"))
    });
}

#[test]
fn python_program_runs_from_a_wheel_in_a_fresh_virtualenv() {
    let ok = Command::new("python3")
        .args(["-c", "import venv, setuptools, wheel"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok || std::env::var("CI").is_err(),
        "CI must have python3 with venv, setuptools and wheel"
    );
    if !ok {
        eprintln!("skipped: python3 lacks venv, setuptools or wheel");
        return;
    }
    let dir = workdir("python");
    run(
        Command::new("bash")
            .arg(root().join("scripts/python-wheel.sh"))
            .arg(dir.join("dist"))
            .env("QUILL_LIB_DIR", lib_dir()),
        "scripts/python-wheel.sh",
    );
    let wheel = std::fs::read_dir(dir.join("dist"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("a wheel");
    run(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(dir.join("venv")),
        "python3 -m venv",
    );
    run(
        Command::new(dir.join("venv/bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--no-index"])
            .arg(&wheel),
        "pip install the wheel",
    );
    std::fs::write(dir.join("app.py"), snippet("python")).unwrap();
    run_on_every_model("the Python program", || {
        let mut c = Command::new(dir.join("venv/bin/python"));
        // Outside the repository, with no hint where the library is: the wheel carries it.
        c.arg(dir.join("app.py"))
            .current_dir(&dir)
            .env_remove("QUILL_LIBRARY")
            .env_remove("PYTHONPATH")
            .env_remove("LD_LIBRARY_PATH");
        c
    });
}

#[test]
fn go_program_builds_as_a_module_outside_the_repository() {
    if !require("go") || !require("pkg-config") {
        return;
    }
    let p = prefix();
    let dir = workdir("go");
    std::fs::write(dir.join("main.go"), snippet("go")).unwrap();
    std::fs::write(
        dir.join("go.mod"),
        format!(
            "module example.com/app\n\ngo 1.19\n\nrequire quill.local/quill v0.0.0\n\n\
             replace quill.local/quill => {}\n",
            root().join("bindings/go/quill").display()
        ),
    )
    .unwrap();
    let pkg = |what: &str| {
        let out = Command::new("pkg-config")
            .args([what, "quill"])
            .env("PKG_CONFIG_PATH", p.join("lib/pkgconfig"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    run(
        Command::new("go")
            .args(["build", "-o", "app", "."])
            .current_dir(&dir)
            .env("CGO_ENABLED", "1")
            .env("CGO_CFLAGS", pkg("--cflags"))
            .env(
                "CGO_LDFLAGS",
                format!("{} -Wl,-rpath,{}", pkg("--libs"), p.join("lib").display()),
            )
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", dir.join("gocache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GOPROXY", "off"),
        "go build",
    );
    run_on_every_model("the Go program", || Command::new(dir.join("app")));
}

/// Builds the Java binding (bindings/java/build.sh) against `include` and `lib` into `out`.
fn build_java(out: &Path, include: &Path, lib: &Path) {
    run(
        Command::new("bash")
            .arg(root().join("bindings/java/build.sh"))
            .arg(out)
            .arg(include)
            .arg(lib),
        "bindings/java/build.sh",
    );
}

#[test]
fn java_program_runs_through_jni() {
    if !require("javac") || !require("java") {
        return;
    }
    let p = prefix();
    let dir = workdir("java");
    build_java(&dir.join("build"), &p.join("include"), &p.join("lib"));
    std::fs::write(dir.join("App.java"), snippet("java")).unwrap();
    let classes = dir.join("build/classes");
    run(
        Command::new("javac")
            .arg("-cp")
            .arg(&classes)
            .arg("-d")
            .arg(&dir)
            .arg(dir.join("App.java")),
        "javac App.java",
    );
    let cp = format!("{}:{}", classes.display(), dir.display());
    run_on_every_model("the Java program", || {
        let mut c = Command::new("java");
        c.arg(format!(
            "-Dquill.jni.path={}",
            dir.join("build/libquill_jni.so").display()
        ))
        .arg("-cp")
        .arg(&cp)
        .arg("App");
        c
    });
}

#[test]
fn readme_has_a_program_for_each_language() {
    let s = snippets();
    for lang in ["c", "cpp", "python", "go", "java"] {
        assert!(s.contains_key(lang), "README has no ```{lang} program");
    }
}
