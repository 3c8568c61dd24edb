//! The LSTM encoder-decoder against its PyTorch reference (`tests/reference/lstm_reference.py`,
//! goldens in `tests/fixtures/lstm`): imported with `quill convert`, the runtime's logits match
//! within 1e-4 (one sequence and a padded batch), greedy ids and the four beam hypotheses are
//! identical; int8 and f16 exports stay close.

use std::path::{Path, PathBuf};

use quill::convert::hf::{ConvertOptions, convert_hf};
use quill::convert::quantize::Target;
use quill::decode::{BeamOptions, GenerateOptions, Strategy, generate};
use quill::{Limits, Model, OpenOptions, Session};
use serde_json::Value;

const MODELS: [&str; 3] = ["bi-general-feed", "uni-dot", "bi-additive-feed"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lstm")
        .join(name)
}

fn golden(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("golden.json")).unwrap())
        .unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn convert(name: &str, dir: &Path, quantize: Option<Target>) -> Model {
    let out = dir.join(format!("{name}-{quantize:?}.quill"));
    convert_hf(
        &fixture(name),
        &out,
        &ConvertOptions { quantize },
        &mut |_, _| {},
    )
    .unwrap();
    Model::open(
        &out,
        &OpenOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap()
}

fn limits(batch: usize, beams: usize) -> Limits {
    Limits {
        max_batch: batch,
        max_input_len: 32,
        max_new_tokens: 32,
        beams,
    }
}

/// Teacher-forced logits of `source` for `target_in`, one row per target token.
fn teacher_forced(m: &Model, sources: &[Vec<u32>], target_in: &[u32]) -> Vec<Vec<Vec<f32>>> {
    let mut s = Session::new(m, limits(sources.len(), 1)).unwrap();
    let refs: Vec<&[u32]> = sources.iter().map(|v| v.as_slice()).collect();
    s.start(&refs).unwrap();
    let v = m.config().vocab_size;
    let mut out = vec![Vec::new(); sources.len()];
    for &t in target_in {
        let logits = s.step(&vec![t; sources.len()]).unwrap();
        for (i, o) in out.iter_mut().enumerate() {
            o.push(logits[i * v..(i + 1) * v].to_vec());
        }
    }
    out
}

fn max_diff(a: &[Vec<f32>], b: &Value) -> f32 {
    let mut worst = 0f32;
    for (row, want) in a.iter().zip(b.as_array().unwrap()) {
        for (x, y) in row.iter().zip(want.as_array().unwrap()) {
            worst = worst.max((x - y.as_f64().unwrap() as f32).abs());
        }
    }
    worst
}

#[test]
fn logits_match_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    for name in MODELS {
        let m = convert(name, dir.path(), None);
        let g = golden(name);
        let tf = &g["teacher_forcing"];
        let target_in = ids(&tf["target_in"]);
        let one = teacher_forced(&m, &[ids(&tf["source"])], &target_in);
        let d = max_diff(&one[0], &tf["logits"]);
        assert!(d <= 1e-4, "{name}: logits differ from PyTorch by {d}");
        // A batch of three inputs of different lengths.
        let inputs: Vec<Vec<u32>> = g["inputs"].as_array().unwrap().iter().map(ids).collect();
        let batch = teacher_forced(&m, &inputs, &target_in);
        for (i, rows) in batch.iter().enumerate() {
            let d = max_diff(rows, &g["batch_logits"][i]);
            assert!(d <= 1e-4, "{name}: batch input {i} differs by {d}");
        }
    }
}

#[test]
fn greedy_and_beam_match_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    for name in MODELS {
        let m = convert(name, dir.path(), None);
        let g = golden(name);
        let inputs: Vec<Vec<u32>> = g["inputs"].as_array().unwrap().iter().map(ids).collect();
        let refs: Vec<&[u32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let mut s = Session::new(&m, limits(3, 1)).unwrap();
        let greedy = s.generate_greedy(&refs, 16, &[]).unwrap();
        let want: Vec<Vec<u32>> = g["greedy"].as_array().unwrap().iter().map(ids).collect();
        assert_eq!(greedy, want, "{name}: greedy");

        let b = &g["beam"];
        let o = GenerateOptions {
            strategy: Strategy::Beam(BeamOptions {
                beams: 4,
                length_penalty: 1.0,
                early_stopping: false,
                n_best: 4,
            }),
            max_new_tokens: 16,
            ..Default::default()
        };
        for (i, input) in inputs.iter().enumerate() {
            let mut s = Session::new(&m, limits(1, 4)).unwrap();
            let out = generate(&mut s, &[input], &o, None, None).unwrap();
            let hyps: Vec<Vec<u32>> = out.outputs[0].iter().map(|h| h.ids.clone()).collect();
            let want: Vec<Vec<u32>> = b["hypotheses"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(ids)
                .collect();
            assert_eq!(hyps, want, "{name}: beam hypotheses of input {i}");
            for (h, w) in out.outputs[0]
                .iter()
                .zip(b["scores"][i].as_array().unwrap())
            {
                let w = w.as_f64().unwrap() as f32;
                assert!(
                    (h.score - w).abs() <= 1e-4,
                    "{name}: beam score {} vs {w}",
                    h.score
                );
            }
        }
    }
}

#[test]
fn quantized_lstm_models_stay_close() {
    let dir = tempfile::tempdir().unwrap();
    for name in MODELS {
        let g = golden(name);
        let tf = &g["teacher_forcing"];
        let target_in = ids(&tf["target_in"]);
        let f32m = convert(name, dir.path(), None);
        let want = teacher_forced(&f32m, &[ids(&tf["source"])], &target_in);
        for (q, tol) in [(Target::F16, 0.999_9), (Target::Int8, 0.995)] {
            let m = convert(name, dir.path(), Some(q));
            let got = teacher_forced(&m, &[ids(&tf["source"])], &target_in);
            for (a, b) in got[0].iter().zip(&want[0]) {
                let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
                let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
                let cos = dot / (na * nb);
                assert!(cos >= tol, "{name} {q:?}: cosine {cos} < {tol}");
            }
        }
    }
}
