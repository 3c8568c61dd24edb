//! The `.quill` file: round trips, foreign files, every malformed input, the quantizer's error.

mod common;

use std::path::Path;

use common::{Rng, quill_metadata, raw_file, tiny_config};
use half::{bf16, f16};
use quill::convert::quantize::{Target, error_stats, quantize_file, quantize_q4, quantize_q8};
use quill::format::{Arch, QuillFile, Summary, Writer, keys};
use quill::tensor::{AlignedBuf, DType, Weights};
use quill::{Error, Result};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/format")
        .join(name)
}

fn open_bytes(bytes: &[u8]) -> Result<QuillFile> {
    QuillFile::from_bytes(bytes)
}

#[test]
fn simplest_file_round_trips() {
    let mut w = Writer::new();
    w.add("x", &[2], &[1.5f32, -2.0]).unwrap();
    let f = open_bytes(&w.to_bytes()).unwrap();
    assert!(f.quill().is_none());
    let t = f.tensor("x").unwrap();
    assert_eq!(t.shape, &[2]);
    assert_eq!(t.as_slice::<f32>().unwrap(), &[1.5, -2.0]);
}

/// A quill file with one tensor of every layout quill writes, and the values it holds.
fn every_layout() -> (Vec<u8>, Vec<f32>) {
    let mut rng = Rng::new(1);
    let w = rng.gaussians(8 * 64);
    let (q8, s8) = quantize_q8(&w, 8, 64);
    let (q4, s4) = quantize_q4(&w, 8, 64).unwrap();
    let h: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
    let b: Vec<bf16> = w.iter().map(|&x| bf16::from_f32(x)).collect();
    let mut wr = Writer::quill(Arch::DecoderOnly, &tiny_config()).unwrap();
    wr.set_metadata(keys::PRODUCER, "tests/format.rs");
    wr.set_metadata(keys::GENERATION, r#"{"max_new_tokens":32}"#);
    wr.add("m.f32", &[8, 64], &w).unwrap();
    wr.add("odd", &[3], &[1f32, 2.0, 3.0]).unwrap(); // 12 bytes: the next tensor needs padding
    wr.add("m.f16", &[8, 64], &h).unwrap();
    wr.add("m.bf16", &[8, 64], &b).unwrap();
    wr.add_q8("m.q8", 8, 64, q8, s8).unwrap();
    wr.add_q4("m.q4", 8, 64, q4, s4).unwrap();
    wr.add::<f32>("empty", &[0, 4], &[]).unwrap();
    wr.set_tokenizer(r#"{"model":{"type":"WordLevel"}}"#)
        .unwrap();
    (wr.to_bytes(), w)
}

fn check_every_layout(f: &QuillFile, w: &[f32]) {
    let meta = f.require_quill().unwrap();
    assert_eq!(meta.arch, Arch::DecoderOnly);
    assert_eq!(meta.config, tiny_config());
    assert_eq!(meta.producer.as_deref(), Some("tests/format.rs"));
    assert_eq!(meta.generation.as_ref().unwrap()["max_new_tokens"], 32);
    assert_eq!(
        f.tokenizer_json(),
        Some(r#"{"model":{"type":"WordLevel"}}"#)
    );
    assert_eq!(
        f.tensor("odd").unwrap().as_slice::<f32>().unwrap(),
        &[1.0, 2.0, 3.0]
    );
    assert_eq!(f.tensor("empty").unwrap().numel(), 0);
    let tol = [
        ("m.f32", 0.0),
        ("m.f16", 2e-3),
        ("m.bf16", 2e-2),
        ("m.q8", 2e-2),
        ("m.q4", 0.4),
    ];
    for (name, tol) in tol {
        let m = f.matrix(name).unwrap();
        assert_eq!((m.rows, m.cols), (8, 64), "{name}");
        let (max, _) = error_stats(w, &m.to_f32_vec());
        assert!(max <= tol, "{name}: max error {max} > {tol}");
    }
    assert_eq!(f.matrix("m.q8").unwrap().kind(), "Q8");
    assert_eq!(f.matrix("m.q4").unwrap().kind(), "Q4");
    // Padding is invisible; every tensor is 64-byte aligned in place.
    assert!(f.tensors().all(|t| !t.name.starts_with("__")));
    assert!(!f.contains("__pad.0"));
    for t in f.tensors() {
        assert_eq!(t.bytes.as_ptr() as usize % 64, 0, "{} misaligned", t.name);
    }
    assert_eq!(f.copied_bytes(), 0);
}

#[test]
fn every_layout_round_trips_through_every_source() {
    let (bytes, w) = every_layout();
    check_every_layout(&open_bytes(&bytes).unwrap(), &w);

    // Miri runs this test for the byte views; it cannot map files.
    if !cfg!(miri) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.quill");
        std::fs::write(&path, &bytes).unwrap();
        let mapped = QuillFile::open(&path).unwrap();
        assert_eq!(mapped.source_kind(), "mmap");
        check_every_layout(&mapped, &w);
        let read = QuillFile::read(&path).unwrap();
        assert_eq!(read.source_kind(), "memory");
        check_every_layout(&read, &w);
    }

    let leaked: &'static AlignedBuf = Box::leak(Box::new(AlignedBuf::copy_from(&bytes)));
    check_every_layout(&QuillFile::from_static(leaked.as_slice()).unwrap(), &w);
    let raw = unsafe { QuillFile::from_raw(leaked.as_slice().as_ptr(), leaked.len()) }.unwrap();
    check_every_layout(&raw, &w);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "files, mmap, subprocesses or heavy numerics: not under Miri"
)]
fn writer_writes_files_atomically_and_readably() {
    let (bytes, w) = every_layout();
    let f = open_bytes(&bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.quill");
    // Copy tensor by tensor (matrices keep their layout), then compare.
    let meta = f.require_quill().unwrap();
    let mut wr = Writer::quill(meta.arch, &meta.config).unwrap();
    for (k, v) in f.metadata() {
        wr.set_metadata(k.clone(), v.clone());
    }
    for t in f.tensors() {
        if t.name.ends_with(".scale") {
            continue;
        }
        if t.name.starts_with("m.") {
            wr.add_matrix(t.name, &f.matrix(t.name).unwrap()).unwrap();
        } else {
            wr.add_raw(t.name, t.dtype, t.shape, t.bytes).unwrap();
        }
    }
    wr.write(&path).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "same tensors, same order: same bytes"
    );
    check_every_layout(&QuillFile::open(&path).unwrap(), &w);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn plain_dtypes_round_trip() {
    let mut w = Writer::new();
    w.add("f64", &[2], &[1.0f64, -0.5]).unwrap();
    w.add("i64", &[1, 2], &[i64::MIN, 7]).unwrap();
    w.add("i32", &[3], &[1i32, -1, 5]).unwrap();
    w.add("i16", &[1], &[-3i16]).unwrap();
    w.add("u16", &[1], &[65535u16]).unwrap();
    w.add("u32", &[1], &[7u32]).unwrap();
    w.add("u64", &[1], &[u64::MAX]).unwrap();
    w.add_raw("bool", DType::Bool, &[3], vec![1u8, 0, 1])
        .unwrap();
    let f = open_bytes(&w.to_bytes()).unwrap();
    assert_eq!(
        f.tensor("f64").unwrap().as_slice::<f64>().unwrap(),
        &[1.0, -0.5]
    );
    assert_eq!(
        f.tensor("i64").unwrap().as_slice::<i64>().unwrap(),
        &[i64::MIN, 7]
    );
    assert_eq!(
        f.tensor("i32").unwrap().as_slice::<i32>().unwrap(),
        &[1, -1, 5]
    );
    assert_eq!(f.tensor("i16").unwrap().as_slice::<i16>().unwrap(), &[-3]);
    assert_eq!(
        f.tensor("u16").unwrap().as_slice::<u16>().unwrap(),
        &[65535]
    );
    assert_eq!(f.tensor("u32").unwrap().as_slice::<u32>().unwrap(), &[7]);
    assert_eq!(
        f.tensor("u64").unwrap().as_slice::<u64>().unwrap(),
        &[u64::MAX]
    );
    let b = f.tensor("bool").unwrap();
    assert_eq!((b.dtype, b.bytes), (DType::Bool, &[1u8, 0, 1][..]));
    assert!(matches!(
        f.tensor("f64").unwrap().as_slice::<f32>(),
        Err(Error::WrongTensorType { .. })
    ));
}

#[test]
fn upstream_safetensors_crate_reads_our_files() {
    let (bytes, w) = every_layout();
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("a valid safetensors file");
    let t = st.tensor("m.f32").unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    assert_eq!(t.shape(), &[8, 64]);
    let vals: Vec<f32> = t
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(vals, w);
    assert_eq!(st.tensor("m.q8").unwrap().dtype(), safetensors::Dtype::I8);
    assert_eq!(st.tensor("m.q4.scale").unwrap().shape(), &[8, 2]);
    assert_eq!(
        st.tensor("m.bf16").unwrap().dtype(),
        safetensors::Dtype::BF16
    );
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let md = meta.metadata().as_ref().unwrap();
    assert_eq!(md.get("quill.format").map(String::as_str), Some("1"));
}

/// Python `safetensors` is the other independent reader. Required in CI; skipped with a message
/// on a machine without it.
#[test]
#[cfg_attr(
    miri,
    ignore = "files, mmap, subprocesses or heavy numerics: not under Miri"
)]
fn python_safetensors_reads_our_files() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import safetensors, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install python3 safetensors numpy"
        );
        eprintln!("skipped: python3 with safetensors and numpy not found");
        return;
    }
    let (bytes, w) = every_layout();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.quill");
    std::fs::write(&path, &bytes).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/check_python_reads.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["metadata"]["quill.arch"], "decoder-only");
    let t = &v["tensors"]["m.f32"];
    assert_eq!(t["dtype"], "float32");
    let vals: Vec<f32> = t["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(vals, w);
    assert_eq!(v["tensors"]["m.q8"]["dtype"], "int8");
    assert_eq!(v["tensors"]["m.q4"]["shape"], serde_json::json!([8, 32]));
    assert_eq!(v["tensors"]["m.f16"]["dtype"], "float16");
}

fn expected_values() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("py_expected.json")).unwrap()).unwrap()
}

fn as_f32(v: &serde_json::Value) -> Vec<f32> {
    v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
#[cfg_attr(
    miri,
    ignore = "files, mmap, subprocesses or heavy numerics: not under Miri"
)]
fn python_written_plain_file_loads_with_aligned_copies() {
    let f = QuillFile::open(fixture("py_plain.safetensors")).unwrap();
    let exp = expected_values();
    assert!(f.quill().is_none());
    assert_eq!(f.metadata()["framework"], "numpy");
    assert_eq!(
        f.tensor("a.f32").unwrap().as_slice::<f32>().unwrap(),
        as_f32(&exp["a.f32"])
    );
    assert_eq!(
        f.tensor("b.f16").unwrap().to_f32_vec().unwrap(),
        as_f32(&exp["b.f16"])
    );
    let i8s: Vec<f32> = f
        .tensor("c.i8")
        .unwrap()
        .as_slice::<i8>()
        .unwrap()
        .iter()
        .map(|&x| x as f32)
        .collect();
    assert_eq!(i8s, as_f32(&exp["c.i8"]));
    assert_eq!(
        f.tensor("e.i64").unwrap().as_slice::<i64>().unwrap(),
        &[1, -2]
    );
    // Python's writer does not align: those tensors were copied, and inspect says so.
    assert!(f.copied_tensors().count() > 0);
    let s = Summary::of(&f);
    assert!(!s.aligned && !s.copied.is_empty());
    assert!(s.to_string().contains("copied at open"));
    assert!(matches!(f.require_quill(), Err(Error::BadMetadata { .. })));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "files, mmap, subprocesses or heavy numerics: not under Miri"
)]
fn python_written_quill_file_loads() {
    let f = QuillFile::open(fixture("py_quill_q8.quill")).unwrap();
    let exp = expected_values();
    let meta = f.require_quill().unwrap();
    assert_eq!(meta.arch, Arch::DecoderOnly);
    assert_eq!(meta.config.vocab_size, 16);
    assert_eq!(f.tokenizer_json(), exp["tokenizer"].as_str());
    let m = f.matrix("layer.weight").unwrap();
    let Weights::Q8 { q, scales } = m.weights else {
        panic!("expected Q8")
    };
    assert_eq!(
        q.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        as_f32(&exp["layer.weight"])
    );
    assert_eq!(scales, as_f32(&exp["layer.weight.scale"]));
    assert_eq!(
        f.tensor("layer.bias").unwrap().as_slice::<f32>().unwrap(),
        as_f32(&exp["layer.bias"])
    );
    let s = Summary::of(&f);
    assert_eq!(s.by_kind["Q8"].params, 32);
    assert_eq!(s.params, 36);
}

// ---- malformed input: each case its own test and its own error ----

fn meta_header(tensors: &str) -> String {
    let sep = if tensors.is_empty() { "" } else { "," };
    format!("{{\"__metadata__\":{}{sep}{tensors}}}", quill_metadata())
}

#[test]
fn bad_truncated_data() {
    let (bytes, _) = every_layout();
    let err = open_bytes(&bytes[..bytes.len() - 100]).unwrap_err();
    assert!(
        matches!(err, Error::Truncated(ref m) if m.contains("`quill.tokenizer`")),
        "{err}"
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "files, mmap, subprocesses or heavy numerics: not under Miri"
)]
fn bad_shorter_than_length_prefix() {
    assert!(matches!(open_bytes(&[1, 2, 3]), Err(Error::Truncated(_))));
    assert!(matches!(open_bytes(&[]), Err(Error::Truncated(_))));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.quill");
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(QuillFile::open(&p), Err(Error::Truncated(_))));
}

#[test]
fn bad_header_length_past_end() {
    let mut bytes = raw_file("{}", &[]);
    bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
    let err = open_bytes(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::Truncated(ref m) if m.contains("header length 1000")),
        "{err}"
    );
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(open_bytes(&bytes), Err(Error::BadHeader(m)) if m.contains("limit")));
}

#[test]
fn bad_header_json() {
    for h in [
        "{",
        "[]",
        "{\"x\": 3}",
        "{\"x\": {\"dtype\":\"F32\",\"shape\":[1]}}",
        "null",
    ] {
        let err = open_bytes(&raw_file(h, &[0; 4])).unwrap_err();
        assert!(matches!(err, Error::BadHeader(_)), "{h}: {err}");
    }
    let extra = r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"colour":1}}"#;
    let err = open_bytes(&raw_file(extra, &[0; 4])).unwrap_err();
    assert!(
        matches!(err, Error::BadHeader(ref m) if m.contains("`x`") && m.contains("colour")),
        "{err}"
    );
}

#[test]
fn bad_header_not_utf8() {
    let mut bytes = raw_file("{\"\u{e9}\":1}", &[]);
    bytes[10] = 0xff;
    let err = open_bytes(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::BadHeader(ref m) if m.contains("UTF-8")),
        "{err}"
    );
}

#[test]
fn bad_duplicate_tensor_name() {
    let h = r#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
    let err = open_bytes(&raw_file(h, &[0; 2])).unwrap_err();
    assert!(
        matches!(err, Error::BadHeader(ref m) if m.contains("`x` appears twice")),
        "{err}"
    );
}

#[test]
fn bad_metadata_not_strings() {
    let h = r#"{"__metadata__":{"quill.format":1}}"#;
    let err = open_bytes(&raw_file(h, &[])).unwrap_err();
    assert!(
        matches!(err, Error::BadHeader(ref m) if m.contains("__metadata__")),
        "{err}"
    );
}

#[test]
fn bad_overlapping_offsets() {
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    let err = open_bytes(&raw_file(h, &[0; 12])).unwrap_err();
    assert!(
        matches!(err, Error::BadTensor { ref tensor, ref reason } if tensor == "b" && reason.contains("overlap tensor `a`")),
        "{err}"
    );
}

#[test]
fn bad_offsets_reversed() {
    let h = r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}}"#;
    let err = open_bytes(&raw_file(h, &[0; 12])).unwrap_err();
    assert!(
        matches!(err, Error::BadTensor { ref tensor, ref reason } if tensor == "a" && reason.contains("begin after")),
        "{err}"
    );
}

#[test]
fn bad_offsets_past_the_data() {
    let h = r#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[18446744073709551607,18446744073709551615]}}"#;
    let err = open_bytes(&raw_file(h, &[0; 12])).unwrap_err();
    assert!(
        matches!(err, Error::BadTensor { .. } | Error::Truncated(_)),
        "{err}"
    );
    let h = r#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[8,16]}}"#;
    let err = open_bytes(&raw_file(h, &[0; 12])).unwrap_err();
    assert!(
        matches!(err, Error::Truncated(ref m) if m.contains("`a`")),
        "{err}"
    );
}

#[test]
fn bad_shape_size_mismatch() {
    let h = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    let err = open_bytes(&raw_file(h, &[0; 8])).unwrap_err();
    assert!(
        matches!(err, Error::BadTensor { ref tensor, ref reason } if tensor == "a" && reason.contains("needs 12 bytes")),
        "{err}"
    );
    // A shape whose element count overflows 64 bits.
    let h = r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#;
    let err = open_bytes(&raw_file(h, &[0; 8])).unwrap_err();
    assert!(
        matches!(err, Error::BadTensor { ref reason, .. } if reason.contains("2^64")),
        "{err}"
    );
}

#[test]
fn bad_unknown_dtype() {
    let h = r#"{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}}"#;
    let err = open_bytes(&raw_file(h, &[0; 1])).unwrap_err();
    assert!(
        matches!(err, Error::UnknownDtype { ref tensor, ref dtype } if tensor == "a" && dtype == "F7"),
        "{err}"
    );
}

#[test]
fn bad_unknown_format_version() {
    let h = meta_header("").replace("\"quill.format\":\"1\"", "\"quill.format\":\"3\"");
    let err = open_bytes(&raw_file(&h, &[])).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { ref found, supported: 1 } if found == "3"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("expected quill.format 1, found \"3\"")
    );
    let h = meta_header("").replace("\"quill.format\":\"1\"", "\"quill.format\":\"one\"");
    assert!(
        matches!(open_bytes(&raw_file(&h, &[])), Err(Error::BadMetadata { key, .. }) if key == "quill.format")
    );
    // A newer minor version of the same major is accepted.
    let h = meta_header("").replace("\"quill.format\":\"1\"", "\"quill.format\":\"1.7\"");
    assert_eq!(
        open_bytes(&raw_file(&h, &[]))
            .unwrap()
            .require_quill()
            .unwrap()
            .format,
        "1.7"
    );
}

#[test]
fn bad_missing_config() {
    let meta = serde_json::json!({"quill.format": "1", "quill.arch": "decoder-only"});
    let err = open_bytes(&raw_file(&format!("{{\"__metadata__\":{meta}}}"), &[])).unwrap_err();
    assert!(
        matches!(err, Error::BadMetadata { ref key, .. } if key == "quill.config"),
        "{err}"
    );
    let meta = serde_json::json!({"quill.arch": "decoder-only"});
    let err = open_bytes(&raw_file(&format!("{{\"__metadata__\":{meta}}}"), &[])).unwrap_err();
    assert!(
        matches!(err, Error::BadMetadata { ref key, .. } if key == "quill.format"),
        "{err}"
    );
}

#[test]
fn bad_unknown_arch() {
    let h = meta_header("").replace("\"quill.arch\":\"decoder-only\"", "\"quill.arch\":\"rnn\"");
    let err = open_bytes(&raw_file(&h, &[])).unwrap_err();
    assert!(
        matches!(err, Error::BadMetadata { ref key, .. } if key == "quill.arch"),
        "{err}"
    );
}

#[test]
fn bad_contradictory_config() {
    // A decoder-only model with encoder layers, and heads that do not divide d_model.
    let mut cfg = tiny_config();
    cfg.encoder_layers = 2;
    let meta = serde_json::json!({"quill.format": "1", "quill.arch": "decoder-only", "quill.config": cfg.to_json()});
    let err = open_bytes(&raw_file(&format!("{{\"__metadata__\":{meta}}}"), &[])).unwrap_err();
    assert!(
        matches!(err, Error::BadConfig { ref field, .. } if field == "encoder_layers"),
        "{err}"
    );
    let mut cfg = tiny_config();
    cfg.heads = 5;
    let meta = serde_json::json!({"quill.format": "1", "quill.arch": "decoder-only", "quill.config": cfg.to_json()});
    let err = open_bytes(&raw_file(&format!("{{\"__metadata__\":{meta}}}"), &[])).unwrap_err();
    assert!(
        matches!(err, Error::BadConfig { ref field, .. } if field == "heads"),
        "{err}"
    );
    let bad_json = serde_json::json!({"quill.format": "1", "quill.arch": "decoder-only", "quill.config": "{\"vocab_size\":"});
    let err = open_bytes(&raw_file(&format!("{{\"__metadata__\":{bad_json}}}"), &[])).unwrap_err();
    assert!(matches!(err, Error::BadConfig { .. }), "{err}");
}

#[test]
fn bad_quantized_weight_without_scales() {
    let h = meta_header(r#""w":{"dtype":"I8","shape":[2,2],"data_offsets":[0,4]}"#);
    let err = open_bytes(&raw_file(&h, &[0; 4])).unwrap_err();
    assert!(
        matches!(err, Error::BadQuantization { ref tensor, ref reason } if tensor == "w" && reason.contains("`w.scale` is missing")),
        "{err}"
    );
    let h = meta_header(r#""w":{"dtype":"U8","shape":[1,16],"data_offsets":[0,16]}"#);
    let err = open_bytes(&raw_file(&h, &[0; 16])).unwrap_err();
    assert!(
        matches!(err, Error::BadQuantization { ref tensor, ref reason } if tensor == "w" && reason.contains("int4")),
        "{err}"
    );
}

#[test]
fn bad_quantized_scales_mismatch() {
    let h = meta_header(
        r#""w":{"dtype":"I8","shape":[2,2],"data_offsets":[0,4]},"w.scale":{"dtype":"F32","shape":[3],"data_offsets":[64,76]}"#,
    );
    let err = open_bytes(&raw_file(&h, &[0; 76])).unwrap_err();
    assert!(
        matches!(err, Error::BadQuantization { ref reason, .. } if reason.contains("F32 [2]")),
        "{err}"
    );
    let h = meta_header(
        r#""w":{"dtype":"U8","shape":[1,16],"data_offsets":[0,16]},"w.scale":{"dtype":"F32","shape":[1],"data_offsets":[64,68]}"#,
    );
    let err = open_bytes(&raw_file(&h, &[0; 68])).unwrap_err();
    assert!(
        matches!(err, Error::BadQuantization { ref reason, .. } if reason.contains("F16 [1, 1]")),
        "{err}"
    );
    let h = meta_header(r#""w":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}"#);
    let err = open_bytes(&raw_file(&h, &[0; 4])).unwrap_err();
    assert!(
        matches!(err, Error::BadQuantization { ref reason, .. } if reason.contains("matrix")),
        "{err}"
    );
}

#[test]
fn bad_tensor_dtype_for_quill_files() {
    let h = meta_header(r#""w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}"#);
    let err = open_bytes(&raw_file(&h, &[0; 8])).unwrap_err();
    assert!(
        matches!(err, Error::BadTensor { ref tensor, .. } if tensor == "w"),
        "{err}"
    );
    let h = meta_header(r#""quill.tokenizer":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}"#);
    let err = open_bytes(&raw_file(&h, &[0xff, 0xfe])).unwrap_err();
    assert!(
        matches!(err, Error::BadTensor { ref reason, .. } if reason.contains("UTF-8")),
        "{err}"
    );
}

#[test]
fn missing_tensor_is_an_error() {
    let (bytes, _) = every_layout();
    let f = open_bytes(&bytes).unwrap();
    assert!(matches!(f.tensor("nope"), Err(Error::MissingTensor(n)) if n == "nope"));
    assert!(matches!(f.tensor("__pad.0"), Err(Error::MissingTensor(_))));
    assert!(matches!(
        f.matrix("odd"),
        Err(Error::WrongTensorType { .. })
    ));
}

#[test]
fn writer_refuses_bad_tensors() {
    let mut w = Writer::new();
    assert!(w.add("__pad.3", &[1], &[0u8]).is_err());
    assert!(w.add("a", &[3], &[0f32; 2]).is_err());
    w.add("a", &[2], &[0f32; 2]).unwrap();
    assert!(w.add("a", &[2], &[0f32; 2]).is_err());
    assert!(w.add_q4("q", 1, 48, vec![0; 24], vec![f16::ZERO]).is_err());
}

// ---- the quantizer ----

#[test]
#[cfg_attr(
    miri,
    ignore = "files, mmap, subprocesses or heavy numerics: not under Miri"
)]
fn quantizer_error_bounds_on_gaussian_weights() {
    let mut rng = Rng::new(42);
    let (rows, cols) = (256, 512);
    let w = rng.gaussians(rows * cols);
    let mut wr = Writer::new();
    let reports: Vec<_> = [Target::Int8, Target::Int4, Target::F16, Target::BF16]
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            quill::convert::quantize::add_quantized(
                &mut wr,
                &format!("w{i}"),
                "F32",
                &w,
                rows,
                cols,
                t,
            )
            .unwrap()
        })
        .collect();
    let rel: Vec<f32> = reports.iter().map(|r| r.rel_rms).collect();
    assert!(rel[0] <= 0.01, "int8 relative RMS {}", rel[0]);
    assert!(rel[1] <= 0.08, "int4 relative RMS {}", rel[1]);
    assert!(rel[2] <= 1e-3, "f16 relative RMS {}", rel[2]);
    assert!(rel[3] <= 5e-3, "bf16 relative RMS {}", rel[3]);
    // The reports measure what was written: re-read and compare independently.
    let f = open_bytes(&wr.to_bytes()).unwrap();
    for (i, r) in reports.iter().enumerate() {
        let (max, rms) = error_stats(&w, &f.matrix(&format!("w{i}")).unwrap().to_f32_vec());
        assert_eq!((max, rms), (r.max_abs, r.rel_rms));
    }
    // int8's worst case: half a step of the row's scale.
    let max_step = w
        .chunks(cols)
        .map(|r| r.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0)
        .fold(0f32, f32::max);
    assert!(reports[0].max_abs <= max_step * 0.5 + 1e-6);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "files, mmap, subprocesses or heavy numerics: not under Miri"
)]
fn quantize_file_converts_matrices_and_keeps_the_rest() {
    let mut rng = Rng::new(3);
    let w = rng.gaussians(16 * 48);
    let norm = rng.gaussians(48);
    let mut wr = Writer::quill(Arch::DecoderOnly, &tiny_config()).unwrap();
    wr.add("a.weight", &[16, 48], &w).unwrap();
    wr.add("b.weight", &[12, 64], &w[..768]).unwrap();
    wr.add("norm.weight", &[48], &norm).unwrap();
    wr.set_tokenizer("{}").unwrap();
    let src = open_bytes(&wr.to_bytes()).unwrap();

    let (out, reports) = quantize_file(&src, Target::Int4).unwrap();
    let q = open_bytes(&out.to_bytes()).unwrap();
    assert_eq!(q.require_quill().unwrap().config, tiny_config());
    assert!(q.metadata()[keys::PRODUCER].contains("quantize"));
    assert_eq!(q.tokenizer_json(), Some("{}"));
    assert_eq!(q.matrix("b.weight").unwrap().kind(), "Q4");
    // 48 is not a multiple of 32: that matrix falls back to int8, and the report says so.
    assert_eq!(q.matrix("a.weight").unwrap().kind(), "Q8");
    assert!(
        reports
            .iter()
            .any(|r| r.name == "a.weight" && r.note.is_some())
    );
    assert_eq!(
        q.tensor("norm.weight").unwrap().as_slice::<f32>().unwrap(),
        &norm[..]
    );
    // Quantizing an int4 model to int8 would compound the error: refused.
    assert!(matches!(
        quantize_file(&q, Target::Int8),
        Err(Error::InvalidArgument(_))
    ));
}

// ---- every format version that shipped keeps a fixture ----

/// `tests/fixtures/format/quill_v1.quill` was written by quill 0.1 (format 1) with
/// [`every_layout`]; it must load, with the same values, forever. Regenerate only for a new
/// format version (and then keep the old file): `cargo test --test format -- --ignored write_v1`.
#[test]
#[cfg_attr(
    miri,
    ignore = "files, mmap, subprocesses or heavy numerics: not under Miri"
)]
fn format_v1_fixture_still_loads() {
    let f = QuillFile::open(fixture("quill_v1.quill")).unwrap();
    let (_, w) = every_layout();
    assert_eq!(f.require_quill().unwrap().format, "1");
    check_every_layout(&f, &w);
}

#[test]
#[ignore = "writes the format-1 fixture; run only when creating it"]
fn write_v1_fixture() {
    let (bytes, _) = every_layout();
    std::fs::write(fixture("quill_v1.quill"), bytes).unwrap();
}
