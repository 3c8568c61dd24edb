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

use common::json_ids as ids;

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
        ..Default::default()
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
        let greedy = quill::decode::greedy(&mut s, &refs, 16, &[]).unwrap();
        let want: Vec<Vec<u32>> = g["greedy"].as_array().unwrap().iter().map(ids).collect();
        assert_eq!(greedy, want, "{name}: greedy");

        let b = &g["beam"];
        let o = GenerateOptions {
            strategy: Strategy::Beam(BeamOptions {
                beams: 4,
                length_penalty: 1.0,
                early_stopping: quill::decode::EarlyStopping::Heuristic,
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

// ---- the trainer's LSTM against the runtime, and learning

mod common;

use quill::format::{Arch, Config, LstmAttention, Positions, QuillFile, Writer};
use quill::kernels::{Pool, kernels};
use quill::train::data::{Cursor, Task};
use quill::train::layers::{Ctx, IGNORE};
use quill::train::lstm::{Lstm, LstmActs};
use quill::train::model::Batch;
use quill::train::optim::Schedule;
use quill::train::run::{Options, State, Trainer};
use quill::train::tok;

fn lstm_config(
    vocab: usize,
    attention: LstmAttention,
    bidirectional: bool,
    feeding: bool,
    layers: usize,
    embed: Option<usize>,
) -> Config {
    let json = format!(
        r#"{{"vocab_size":{vocab},"d_model":32,"encoder_layers":{layers},"decoder_layers":{layers},
            "attention":"dot","positions":"none","eos_ids":[2],"pad_id":0,"unk_id":1,"bos_id":3,
            "decoder_start_id":3}}"#
    );
    let mut c = Config::from_json(&json, Arch::LstmSeq2Seq).unwrap();
    c.attention = Some(attention);
    c.bidirectional = bidirectional;
    c.input_feeding = feeding;
    c.embed_dim = embed;
    c.positions = Positions::None;
    c
}

fn runtime_of(m: &Lstm, p: &[f32]) -> Model {
    let mut w = Writer::quill(Arch::LstmSeq2Seq, &m.config).unwrap();
    for t in &m.params {
        w.add(&t.name, &t.shape, &p[t.range()]).unwrap();
    }
    let file = QuillFile::from_bytes(&w.to_bytes()).unwrap();
    Model::from_file(
        file,
        &OpenOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn trainer_and_runtime_agree_on_an_exported_lstm() {
    for (att, bi, feed, layers, embed, tied) in [
        (LstmAttention::General, true, true, 2, Some(24), false),
        (LstmAttention::Dot, false, false, 1, None, true),
        (LstmAttention::Additive, true, true, 1, Some(16), false),
    ] {
        let cfg = lstm_config(40, att, bi, feed, layers, embed);
        let m = Lstm::new(&cfg, tied).unwrap();
        let mut p = m.init(9);
        p.iter_mut().for_each(|v| *v *= 3.0);
        let model = runtime_of(&m, &p);
        let srcs: [&[u32]; 2] = [&[5, 9, 17, 30, 2], &[22, 8, 2]];
        let tgt: [u32; 5] = [3, 11, 12, 13, 14];
        let batch = Batch {
            b: 2,
            s: 5,
            src: vec![5, 9, 17, 30, 2, 22, 8, 2, 0, 0],
            src_len: vec![5, 3],
            t: 5,
            tgt: [tgt, tgt].concat(),
            tgt_len: vec![5, 5],
            labels: vec![IGNORE; 10],
        };
        let pool = Pool::single();
        let ctx = Ctx {
            pool: &pool,
            kern: kernels(),
        };
        let mut acts = LstmActs::default();
        m.forward(ctx, &p, &batch, &mut acts, None);
        let mut s = Session::new(&model, limits(2, 1)).unwrap();
        s.start(&srcs).unwrap();
        let v = 40;
        let mut worst = 0f32;
        for (t, &tok) in tgt.iter().enumerate() {
            let logits = s.step(&[tok, tok]).unwrap();
            for i in 0..2 {
                let want = &acts.logits[(i * 5 + t) * v..][..v];
                for (a, b) in logits[i * v..(i + 1) * v].iter().zip(want) {
                    worst = worst.max((a - b).abs() / b.abs().max(1.0));
                }
            }
        }
        assert!(
            worst <= 1e-5,
            "{att:?}: runtime vs trainer logits differ by {worst:e}"
        );
    }
}

/// The LSTM learns the reverse-the-sequence task (heavy: `cargo test --test lstm -- --ignored`).
#[test]
#[ignore]
fn lstm_learns_to_reverse_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.tsv");
    let pairs = common::reverse_corpus(&train, 20_000, 11);
    let texts = pairs.iter().flat_map(|(s, t)| [s.clone(), t.clone()]);
    let tok_json = tok::train(tok::Kind::Bpe, 40, true, &[], texts).unwrap();
    let vocab = quill::tokenizer::Tokenizer::from_json(&tok_json)
        .unwrap()
        .vocab_size();
    let mut cfg = lstm_config(vocab, LstmAttention::General, true, true, 1, None);
    cfg.d_model = 64;
    let m = Lstm::new(&cfg, true).unwrap();
    let p = m.init(5);
    let state = State {
        step: 0,
        cursor: Cursor::default(),
        task: Task::Seq2Seq { start: tok::BOS },
        train_path: train,
        options: Options {
            seed: 5,
            lr: 3e-3,
            schedule: Schedule::InverseSqrt { warmup: 100 },
            dropout: 0.0,
            label_smoothing: 0.0,
            budget: 2000,
            ..Options::default()
        },
        tokens: 0,
        seconds: 0.0,
    };
    let mut t = Trainer::new(m, p, tok_json, state, 1).unwrap();
    t.generation = Some(r#"{"max_new_tokens": 16}"#.into());
    let test = common::reverse_corpus(&dir.path().join("test.tsv"), 300, 99);
    let exact = common::train_until_exact(&mut t, &test, 600);
    assert!(exact >= 0.99, "exact match {:.1} %", 100.0 * exact);
}

/// The same checkpoint stored with TensorFlow's gate order (`ijfo`) or in Keras' layout
/// (`[in, 4h]` kernels, one bias) converts to the same model.
#[test]
fn other_gate_orders_and_keras_layout_convert_to_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let name = "bi-general-feed";
    let src = QuillFile::read(fixture(name).join("model.safetensors")).unwrap();
    let reference = convert(name, dir.path(), None);
    let g = golden(name);
    let tf = &g["teacher_forcing"];
    let target_in = ids(&tf["target_in"]);
    let want = teacher_forced(&reference, &[ids(&tf["source"])], &target_in);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("config.json")).unwrap())
            .unwrap();
    for layout in ["ijfo", "keras"] {
        let out = dir.path().join(layout);
        std::fs::create_dir_all(&out).unwrap();
        let mut w = Writer::new();
        for t in src.tensors() {
            let mut vals = t.to_f32_vec().unwrap();
            let mut shape = t.shape.to_vec();
            let is_gate = t.name.contains(".lstm.") || t.name.contains(".cells.");
            if is_gate && layout == "ijfo" {
                // quill/PyTorch i, f, g, o → TensorFlow i, j(=g), f, o.
                let n = vals.len() / 4;
                let (i, f, gg, o) = (
                    &vals[..n],
                    &vals[n..2 * n],
                    &vals[2 * n..3 * n],
                    &vals[3 * n..],
                );
                vals = [i, gg, f, o].concat();
            }
            if is_gate && layout == "keras" {
                if t.name.contains("bias_hh") {
                    continue; // folded into bias_ih below
                }
                if t.name.contains("bias_ih") {
                    let other = src
                        .tensor(&t.name.replace("bias_ih", "bias_hh"))
                        .unwrap()
                        .to_f32_vec()
                        .unwrap();
                    vals.iter_mut().zip(&other).for_each(|(a, b)| *a += b);
                } else {
                    let (r, c) = (shape[0], shape[1]);
                    let mut tr = vec![0f32; r * c];
                    for i in 0..r {
                        for j in 0..c {
                            tr[j * r + i] = vals[i * c + j];
                        }
                    }
                    vals = tr;
                    shape = vec![c, r];
                }
            }
            w.add_owned(t.name, &shape, vals).unwrap();
        }
        w.write(out.join("model.safetensors")).unwrap();
        let mut cfg = config.clone();
        if layout == "keras" {
            cfg["layout"] = "keras".into();
            cfg["gate_order"] = "ifco".into();
        } else {
            cfg["gate_order"] = layout.into();
        }
        std::fs::write(out.join("config.json"), cfg.to_string()).unwrap();
        let path = dir.path().join(format!("{layout}.quill"));
        convert_hf(
            &out,
            &path,
            &ConvertOptions { quantize: None },
            &mut |_, _| {},
        )
        .unwrap();
        let m = Model::open(
            &path,
            &OpenOptions {
                threads: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let got = teacher_forced(&m, &[ids(&tf["source"])], &target_in);
        for (a, b) in got[0].iter().zip(&want[0]) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-5, "{layout}: {x} vs {y}");
            }
        }
    }
}

/// Sampling, streaming and cancellation reach the LSTM through the same decoding code.
#[test]
fn sampling_streaming_and_cancellation_work_on_the_lstm() {
    use quill::decode::{Flow, SampleOptions, StreamEvent};
    use quill::model::CancelHandle;
    let dir = tempfile::tempdir().unwrap();
    let m = convert("bi-general-feed", dir.path(), None);
    let input: Vec<u32> = vec![37, 30, 25, 10, 2];
    let o = GenerateOptions {
        strategy: Strategy::Sample(SampleOptions {
            temperature: 1.0,
            top_k: 10,
            top_p: 0.9,
            min_p: 0.0,
            seed: 7,
        }),
        max_new_tokens: 12,
        ..Default::default()
    };
    let run = |m: &Model| {
        let mut s = Session::new(m, limits(1, 1)).unwrap();
        let mut streamed = Vec::new();
        let mut cb = |e: StreamEvent| {
            streamed.extend_from_slice(e.ids);
            Flow::Continue
        };
        let out = generate(&mut s, &[&input], &o, None, Some(&mut cb)).unwrap();
        (out.outputs[0][0].ids.clone(), streamed)
    };
    let (a, streamed) = run(&m);
    assert!(!a.is_empty());
    assert_eq!(a, streamed, "the stream delivers exactly the generated ids");
    assert_eq!(run(&m).0, a, "the same seed samples the same ids");

    // A cancelled handle stops the encoder between its two layers.
    let mut s = Session::new(&m, limits(1, 1)).unwrap();
    let cancel = CancelHandle::new();
    cancel.cancel();
    s.set_cancel(Some(cancel));
    assert!(matches!(s.start(&[&input]), Err(quill::Error::Cancelled)));
}
