//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use quill::format::{Arch, Config};

/// A small seeded generator (xorshift64*), so tests need no extra crate and are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn gaussian(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
    pub fn gaussians(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.gaussian()).collect()
    }
}

/// A valid decoder-only config for small test files.
pub fn tiny_config() -> Config {
    let json = r#"{"vocab_size":32,"d_model":64,"decoder_layers":1,"heads":4,"ffn_dim":128,
        "positions":"rotary","norm":"rms_norm","activation":"silu","gated_ffn":true,
        "eos_ids":[2],"bos_id":1}"#;
    Config::from_json(json, Arch::DecoderOnly).unwrap()
}

/// A file from a hand-written header and data section (for malformed-input tests).
pub fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

/// The metadata JSON of a valid quill decoder-only file, to splice into hand-written headers.
pub fn quill_metadata() -> String {
    let cfg = tiny_config().to_json();
    serde_json::json!({
        "quill.format": "1", "quill.arch": "decoder-only", "quill.config": cfg,
    })
    .to_string()
}

/// A corpus of "reverse the sequence" pairs over the words a … l.
pub fn reverse_corpus(path: &Path, n: usize, seed: u64) -> Vec<(String, String)> {
    let mut rng = Rng::new(seed);
    let words = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
    let mut pairs = Vec::with_capacity(n);
    let mut text = String::new();
    for _ in 0..n {
        let len = 3 + (rng.next_u64() % 6) as usize;
        let s: Vec<&str> = (0..len)
            .map(|_| words[(rng.next_u64() % 12) as usize])
            .collect();
        let r: Vec<&str> = s.iter().rev().copied().collect();
        let (s, r) = (s.join(" "), r.join(" "));
        text += &format!("{s}\t{r}\n");
        pairs.push((s, r));
    }
    std::fs::write(path, text).unwrap();
    pairs
}

/// Trains `t` 100 updates at a time until its greedy outputs on `test` (source, expected) match
/// exactly for at least 99 % of the pairs, or `seconds` have passed; returns the last rate.
pub fn train_until_exact(
    t: &mut quill::train::run::Trainer,
    test: &[(String, String)],
    seconds: u64,
) -> f64 {
    let sources: Vec<String> = test.iter().map(|p| p.0.clone()).collect();
    let t0 = std::time::Instant::now();
    let mut exact = 0.0;
    while t0.elapsed().as_secs() < seconds {
        for _ in 0..100 {
            t.step().unwrap();
        }
        let model = t.runtime_model().unwrap();
        let o = quill::decode::GenerateOptions {
            max_new_tokens: 16,
            ..Default::default()
        };
        let out = quill::eval::translate(&model, &sources, &o, 32).unwrap();
        let hits = out
            .texts
            .iter()
            .zip(test)
            .filter(|(h, p)| **h == p.1)
            .count();
        exact = hits as f64 / test.len() as f64;
        eprintln!(
            "step {}: exact match {:.1} % after {:.0} s",
            t.state.step,
            100.0 * exact,
            t0.elapsed().as_secs_f64()
        );
        if exact >= 0.99 {
            break;
        }
    }
    exact
}

/// A JSON array of token ids (a golden's `input_ids`, `output_ids`, ...).
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `tool --version` (or `tool version`, as Go spells it) runs.
pub fn have(tool: &str) -> bool {
    ["--version", "version"].iter().any(|a| {
        Command::new(tool)
            .arg(a)
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// target/<profile> of this test run, with libquill.so and libquill.a built by
/// `cargo build --lib` (`cargo test` builds only the rlib its tests link), once per process.
pub fn lib_dir() -> PathBuf {
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
