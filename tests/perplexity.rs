//! `quill eval --perplexity` (eval::perplexity_ids) against `transformers`: the summed
//! negative log-likelihood of fixed id sequences under the tiny decoder-only models of
//! tests/fixtures/hf, whole and cut into windows of 16 (`ppl.json`, made by
//! tests/reference/ppl_goldens.py), f32 and int8; and the encoder-decoders' loss of labels
//! given a source (eval::perplexity_pairs_ids), as `transformers` computes it with `labels=`.
#![cfg(feature = "tokenizer")]

use quill::convert::hf::{ConvertOptions, convert_hf};
use quill::convert::quantize::Target;
use quill::{Model, OpenOptions};
use serde_json::Value;

mod common;
use common::{json_ids, root};

#[test]
fn perplexity_equals_transformers_loss() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["gpt2", "llama", "qwen2", "llama3", "qwen3", "gemma2"] {
        let src = root().join("tests/fixtures/hf").join(name);
        let g: Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("ppl.json")).unwrap()).unwrap();
        let seqs: Vec<Vec<u32>> = g["sequences"]
            .as_array()
            .unwrap()
            .iter()
            .map(json_ids)
            .collect();
        // f32: per token, transformers to rounding; int8 (random weights, the worst case for
        // quantization): within 1 % of the whole sum.
        for (quantize, tol) in [(None, 1e-5), (Some(Target::Int8), 1e-2)] {
            let path = dir
                .path()
                .join(format!("{name}-{}.quill", quantize.is_some()));
            let options = ConvertOptions { quantize };
            convert_hf(&src, &path, &options, &mut |_, _| {}).unwrap();
            let m = Model::open(&path, &OpenOptions::default()).unwrap();
            for (key, window, batch) in [("whole", 64, 2), ("window16", 16, 3)] {
                let p = quill::eval::perplexity_ids(&m, &seqs, window, batch).unwrap();
                let want = &g[key];
                let (nll, tokens) = (want["nll"].as_f64().unwrap(), want["tokens"].as_u64());
                assert_eq!(Some(p.tokens as u64), tokens, "{name} {key}");
                let err = match quantize {
                    None => (p.nll - nll).abs() / p.tokens as f64,
                    Some(_) => (p.nll - nll).abs() / nll,
                };
                assert!(
                    err < tol,
                    "{name} {key} int8={}: nll {} vs {nll} ({err:e})",
                    quantize.is_some(),
                    p.nll
                );
                assert!((p.perplexity - (p.nll / p.tokens as f64).exp()).abs() < 1e-9);
            }
        }
    }
    // An encoder-decoder has no perplexity of a text by itself.
    let src = root().join("tests/fixtures/hf/marian");
    let path = dir.path().join("marian.quill");
    convert_hf(&src, &path, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    let m = Model::open(&path, &OpenOptions::default()).unwrap();
    let e = quill::eval::perplexity_ids(&m, &[vec![1, 2, 3]], 16, 1).unwrap_err();
    assert!(e.to_string().contains("decoder-only"), "{e}");
}

/// The tiny encoder-decoders: the summed loss of three (source, labels) pairs of random ids
/// equals `transformers`' (`model(input_ids, labels=labels)`), f32 per label to rounding, int8
/// within 1 %, batched or not; a decoder-only model is refused.
#[test]
fn encoder_decoder_perplexity_equals_transformers_loss() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["marian", "bart", "t5"] {
        let src = root().join("tests/fixtures/hf").join(name);
        let g: Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("ppl.json")).unwrap()).unwrap();
        let pairs: Vec<(Vec<u32>, Vec<u32>)> = g["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (json_ids(&p[0]), json_ids(&p[1])))
            .collect();
        let (nll, tokens) = (
            g["whole"]["nll"].as_f64().unwrap(),
            g["whole"]["tokens"].as_u64(),
        );
        for (quantize, tol) in [(None, 1e-5), (Some(Target::Int8), 1e-2)] {
            let path = dir
                .path()
                .join(format!("{name}-{}.quill", quantize.is_some()));
            convert_hf(&src, &path, &ConvertOptions { quantize }, &mut |_, _| {}).unwrap();
            let m = Model::open(&path, &OpenOptions::default()).unwrap();
            for batch in [1, 3] {
                let p = quill::eval::perplexity_pairs_ids(&m, &pairs, batch).unwrap();
                assert_eq!(Some(p.tokens as u64), tokens, "{name}");
                assert_eq!((p.windows, p.truncated), (3, 0), "{name}");
                let err = match quantize {
                    None => (p.nll - nll).abs() / p.tokens as f64,
                    Some(_) => (p.nll - nll).abs() / nll,
                };
                assert!(
                    err < tol,
                    "{name} batch {batch} int8={}: nll {} vs {nll} ({err:e})",
                    quantize.is_some(),
                    p.nll
                );
            }
        }
    }
    // References longer than the decoder's positions are cut to them, and counted.
    let src = root().join("tests/fixtures/hf/marian");
    let path = dir.path().join("marian-long.quill");
    convert_hf(&src, &path, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    let m = Model::open(&path, &OpenOptions::default()).unwrap();
    let positions = m.max_positions().unwrap();
    let long: Vec<u32> = (0..positions as u32 + 5).map(|i| 10 + i % 500).collect();
    let p = quill::eval::perplexity_pairs_ids(&m, &[(vec![5, 6, 0], long)], 1).unwrap();
    assert_eq!((p.truncated, p.tokens), (1, positions));
    let src = root().join("tests/fixtures/hf/llama");
    let path = dir.path().join("llama.quill");
    convert_hf(&src, &path, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    let m = Model::open(&path, &OpenOptions::default()).unwrap();
    let e = quill::eval::perplexity_pairs_ids(&m, &[(vec![1, 2], vec![3])], 1).unwrap_err();
    assert!(e.to_string().contains("encoder-decoder"), "{e}");
}

/// How far a quantized model is from its f32 original (`eval::divergence_ids`): nothing from
/// itself; int8 and int4 close, with the perplexities `perplexity_ids` gives (held to
/// `transformers` above); `quill eval --perplexity --reference` reports the library's figures.
#[test]
fn quantized_models_diverge_little_from_their_original() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["llama", "marian"] {
        let src = root().join("tests/fixtures/hf").join(name);
        let g: Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("ppl.json")).unwrap()).unwrap();
        let seqs: Vec<Vec<u32>> = g["sequences"]
            .as_array()
            .map(|a| a.iter().map(json_ids).collect())
            .unwrap_or_default();
        let pairs: Vec<(Vec<u32>, Vec<u32>)> = g["pairs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| (json_ids(&p[0]), json_ids(&p[1])))
                    .collect()
            })
            .unwrap_or_default();
        let open = |quantize: Option<Target>| {
            let path = dir.path().join(format!("{name}-{quantize:?}.quill"));
            convert_hf(&src, &path, &ConvertOptions { quantize }, &mut |_, _| {}).unwrap();
            (Model::open(&path, &OpenOptions::default()).unwrap(), path)
        };
        let ppl = |m: &Model| match seqs.is_empty() {
            false => quill::eval::perplexity_ids(m, &seqs, 64, 2).unwrap(),
            true => quill::eval::perplexity_pairs_ids(m, &pairs, 2).unwrap(),
        };
        let (f32m, f32_path) = open(None);
        let d = quill::eval::divergence_ids(&f32m, &f32m, &seqs, &pairs, 64, 2).unwrap();
        assert_eq!(
            (d.kl_mean, d.kl_max, d.top1_agreement),
            (0.0, 0.0, 1.0),
            "{name}"
        );
        for (q, kl, top1) in [(Target::Int8, 0.01, 0.9), (Target::Int4, 0.2, 0.7)] {
            let (qm, q_path) = open(Some(q));
            let d = quill::eval::divergence_ids(&qm, &f32m, &seqs, &pairs, 64, 2).unwrap();
            eprintln!("{name} {q:?}: {d:?}");
            assert!(d.kl_mean > 0.0 && d.kl_mean < kl, "{name} {q:?}: {d:?}");
            assert!(
                d.kl_max >= d.kl_mean && d.top1_agreement >= top1,
                "{name} {q:?}: {d:?}"
            );
            assert!((d.perplexity - ppl(&qm).perplexity).abs() < 1e-9 * d.perplexity);
            assert!((d.reference_perplexity - ppl(&f32m).perplexity).abs() < 1e-9 * d.perplexity);
            if name == "llama" && q == Target::Int8 {
                let text = dir.path().join("text.txt");
                std::fs::write(&text, "w10 w11 w12 w500 w7\nw300 w301 w20 w21 w22 w23\n").unwrap();
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_quill"))
                    .args(["eval", q_path.to_str().unwrap(), text.to_str().unwrap()])
                    .args(["--perplexity", "--reference", f32_path.to_str().unwrap()])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let report: Value = serde_json::from_slice(&out.stdout).unwrap();
                let texts = [
                    "w10 w11 w12 w500 w7".to_string(),
                    "w300 w301 w20 w21 w22 w23".into(),
                ];
                let want = quill::eval::divergence(&qm, &f32m, &texts, &[], 16).unwrap();
                let r = &report["reference"];
                assert_eq!(r["kl_mean"].as_f64(), Some(want.kl_mean), "{report}");
                assert_eq!(r["top1_agreement"].as_f64(), Some(want.top1_agreement));
                assert_eq!(r["perplexity"].as_f64(), Some(want.reference_perplexity));
            }
        }
    }
}
