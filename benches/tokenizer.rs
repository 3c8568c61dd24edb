//! Tokenizer encode throughput (MB/s of UTF-8 text, 1 thread) on the en-de gettext corpus, for
//! the three real tokenizers of tests/fixtures/tokenizers. Compare with Python `tokenizers` on the
//! same corpus: `~/quill-ref/venv/bin/python tests/reference/tokenizer_speed.py CORPUS`.
//!
//!     python3 tests/reference/mo_corpus.py de /tmp/mo
//!     QUILL_CORPUS=/tmp/mo/en-de.train.tsv cargo bench --bench tokenizer

use std::time::Instant;

fn main() {
    #[cfg(feature = "tokenizer")]
    run();
}

#[cfg(feature = "tokenizer")]
fn run() {
    let path = std::env::var("QUILL_CORPUS").unwrap_or_else(|_| "/tmp/mo/en-de.train.tsv".into());
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "no corpus at {path}: run `python3 tests/reference/mo_corpus.py de /tmp/mo` first"
        );
        return;
    };
    let lines: Vec<&str> = text.lines().flat_map(|l| l.split('\t')).collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers");
    for name in ["gpt2_bytelevel_bpe", "t5_unigram", "llama_bpe_bytefallback"] {
        let json = std::fs::read_to_string(root.join(name).join("tokenizer.json")).unwrap();
        let tok = quill::tokenizer::Tokenizer::from_json(&json).unwrap();
        let mut best = f64::MAX;
        let mut ids = 0;
        for _ in 0..3 {
            let t = Instant::now();
            ids = 0;
            for l in &lines {
                ids += tok.encode(l, true).unwrap().len();
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name:<24} {:>7.2} MB/s  ({} lines, {:.1} MB, {ids} ids, best of 3)",
            bytes as f64 / best / 1e6,
            lines.len(),
            bytes as f64 / 1e6
        );
    }
}
