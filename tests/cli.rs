//! The `quill` binary end to end: inspect and quantize.

mod common;

use std::process::Command;

use common::{Rng, tiny_config};
use quill::format::{Arch, QuillFile, Writer};

fn quill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_quill"))
}

#[test]
fn inspect_and_quantize() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f32.quill");
    let w = Rng::new(5).gaussians(64 * 64);
    let mut wr = Writer::quill(Arch::DecoderOnly, &tiny_config()).unwrap();
    wr.add("layer.weight", &[64, 64], &w).unwrap();
    wr.add("norm.weight", &[64], &w[..64]).unwrap();
    wr.write(&src).unwrap();

    let out = quill()
        .args(["inspect", "--json"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["arch"], "decoder-only");
    assert_eq!(s["params"], 64 * 64 + 64);
    assert_eq!(s["by_kind"]["F32"]["tensors"], 2);
    assert_eq!(s["aligned"], true);
    assert_eq!(s["config"]["d_model"], 64);

    let q = dir.path().join("int8.quill");
    let out = quill()
        .args(["quantize"])
        .arg(&src)
        .arg(&q)
        .args(["--to", "int8", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tensor"], "layer.weight");
    assert!(report["rel_rms"].as_f64().unwrap() < 0.01);
    let f = QuillFile::open(&q).unwrap();
    assert_eq!(f.matrix("layer.weight").unwrap().kind(), "Q8");

    let out = quill().arg("inspect").arg(&q).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Q8") && text.contains("zero copy"), "{text}");
}

#[test]
fn cli_errors_are_messages_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.quill");
    std::fs::write(&bad, b"\x05\0\0\0\0\0\0\0{nope").unwrap();
    let out = quill().arg("inspect").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("quill: malformed header"), "{err}");
    let out = quill()
        .args(["quantize", "a", "b", "--to", "int3"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("unknown quantization")
    );
}

#[test]
fn info_reports_the_kernel_level() {
    let out = quill()
        .args(["info", "--json"])
        .env("QUILL_FORCE_ISA", "scalar")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["isa"], "scalar");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let out = quill()
        .args(["info", "--json"])
        .env_remove("QUILL_FORCE_ISA")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["isa"], quill::kernels::Isa::best().name());
}
