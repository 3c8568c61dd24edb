//! Generates the C header `include/quill.h` from `src/ffi` with cbindgen.
//!
//! The fresh header always goes to `$OUT_DIR/quill.h`; `tests/header.rs` compares it with the
//! committed `include/quill.h`. Outside CI the committed copy is refreshed too, so a developer
//! only has to commit it; under `CI=true` it is left alone, so a stale header fails the test.

use std::path::PathBuf;

/// The ABI major version: the shared library's SONAME is `libquill.so.<ABI>`. Keep in step with
/// `QUILL_ABI_VERSION` in src/ffi/mod.rs (tests/c_api.rs checks both).
const ABI: u32 = 1;

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libquill.so.{ABI}");
        soname_link();
    }
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=src/ffi/mod.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=CI");
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("quill.h");
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let header = cbindgen::Builder::new()
        .with_src(root.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate include/quill.h");
    header.write_to_file(&out);
    if std::env::var("CI").map(|v| v != "true").unwrap_or(true) {
        header.write_to_file(root.join("include/quill.h"));
    }
}

/// `libquill.so.<ABI> -> libquill.so` beside the built library (target/<profile>/), so that a
/// program linked with `-L target/release -lquill` finds its SONAME there at run time. The link
/// is made before the library exists (this script runs first) and dangles until then.
fn soname_link() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/quill-<hash>/out.
    let Some(profile_dir) = out.ancestors().nth(3) else {
        return;
    };
    let link = profile_dir.join(format!("libquill.so.{ABI}"));
    if std::fs::symlink_metadata(&link).is_err() {
        // Best effort: a read-only target directory only loses the convenience link.
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink("libquill.so", &link);
    }
}
