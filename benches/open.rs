//! Opening a model: mmap + full validation of a 75M-parameter int8 file with 200 tensors
//! (100 weight matrices and their scales), the size of a Marian-base translation model.
//! Target (issue 2): median under 2 ms, zero copy.
//!
//!     cargo bench --bench open

use criterion::{Criterion, criterion_group, criterion_main};
use quill::format::{Arch, Config, QuillFile, Writer};

fn marian_base_config() -> Config {
    let json = r#"{"vocab_size":32000,"d_model":512,"encoder_layers":6,"decoder_layers":6,
        "heads":8,"ffn_dim":2048,"activation":"silu","positions":"sinusoidal",
        "scale_embedding":true,"eos_ids":[0],"pad_id":31999,"decoder_start_id":31999}"#;
    Config::from_json(json, Arch::Seq2Seq).unwrap()
}

fn bench_open(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int8-75m.quill");
    let (rows, cols, n) = (512, 1472, 100);
    let q: Vec<i8> = (0..rows * cols).map(|i| (i * 7919 % 255) as i8).collect();
    let scales = vec![0.01f32; rows];
    let mut w = Writer::quill(Arch::Seq2Seq, &marian_base_config()).unwrap();
    for i in 0..n {
        w.add_q8(
            &format!("layer.{i}.weight"),
            rows,
            cols,
            q.clone(),
            scales.clone(),
        )
        .unwrap();
    }
    w.write(&path).unwrap();
    let f = QuillFile::open(&path).unwrap();
    let params: usize = f.tensors().map(|t| t.numel()).sum();
    assert_eq!(f.tensors().count(), 2 * n);
    assert_eq!(
        f.copied_bytes(),
        0,
        "a file quill wrote opens without copies"
    );
    eprintln!(
        "file: {} tensors, {:.1}M values, {:.1} MB",
        2 * n,
        params as f64 / 1e6,
        f.file_len() as f64 / 1e6
    );
    drop(f);

    c.bench_function("open_validate_75m_int8_mmap", |b| {
        b.iter(|| QuillFile::open(&path).unwrap())
    });
}

criterion_group!(benches, bench_open);
criterion_main!(benches);
