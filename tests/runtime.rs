//! The Transformer runtime against Hugging Face `transformers` goldens (`tests/fixtures/hf/*`,
//! made by `tests/reference/ref_tiny_models.py` with transformers 5.24 / torch 2.15): converted with `quill convert`'s library
//! function, run at f32, compared on first-step logits, every step's top-5 logits and the greedy
//! ids; then quantized (int8, int4) and compared by cosine similarity.

mod common;

use std::path::{Path, PathBuf};

use quill::convert::hf::{ConvertOptions, convert_hf};
use quill::convert::quantize::Target;
use quill::{Arch, Limits, Model, OpenOptions, Session};
use serde_json::Value;

const MODELS: [&str; 9] = [
    "marian", "bart", "mbart", "t5", "t5-gated", "gpt2", "llama", "qwen2", "mistral",
];
/// f32 parity with transformers: max-abs difference of logits.
const LOGIT_ATOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

fn golden(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("golden.json")).unwrap())
        .unwrap()
}

use common::json_ids as ids;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn convert(name: &str, quantize: Option<Target>, dir: &Path) -> Model {
    let out = dir.join(format!("{name}.quill"));
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

fn session(model: &Model) -> Session {
    Session::new(
        model,
        Limits {
            max_batch: 2,
            max_input_len: 32,
            max_new_tokens: 32,
            beams: 1,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Token ids the golden's generation masked (Marian's `bad_words_ids`).
fn suppressed(g: &Value) -> Vec<u32> {
    g["gen_kwargs"]["bad_words_ids"]
        .as_array()
        .map(|a| a.iter().flat_map(ids).collect())
        .unwrap_or_default()
}

fn first_logits(model: &Model, s: &mut Session, input: &[u32]) -> Vec<f32> {
    s.start(&[input]).unwrap();
    if model.arch() == Arch::Seq2Seq {
        s.step(&[model.config().decoder_start_id.unwrap()]).unwrap();
    }
    s.logits().to_vec()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check_parity(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let g = golden(name);
    let model = convert(name, None, dir.path());
    let mut s = session(&model);
    let input = ids(&g["input_ids"]);
    let vocab = model.config().vocab_size;

    // First step, all logits.
    let logits = first_logits(&model, &mut s, &input);
    let expect = floats(&g["first_step_logits"]);
    assert_eq!(logits.len(), vocab);
    let err = max_abs(&logits, &expect);
    assert!(
        err <= LOGIT_ATOL,
        "{name}: first-step logits differ by {err}"
    );

    // Every greedy step: top-5 ids and logits, then the chosen id.
    let mut expect_ids = ids(&g["output_ids"]);
    if model.arch() == Arch::Seq2Seq {
        expect_ids.remove(0); // the decoder start id
    }
    let suppress = suppressed(&g);
    let steps = g["step_top5"].as_array().unwrap();
    let mut logits = logits;
    let mut produced = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let want_ids = ids(&step["ids"]);
        let want = floats(&step["logits"]);
        for (id, v) in want_ids.iter().zip(&want) {
            let got = logits[*id as usize];
            assert!(
                (got - v).abs() <= LOGIT_ATOL,
                "{name} step {i}: logit of {id} is {got}, expected {v}"
            );
        }
        let mut masked = logits.clone();
        for &t in &suppress {
            masked[t as usize] = f32::NEG_INFINITY;
        }
        let next = quill::kernels::scalar::argmax(&masked) as u32;
        produced.push(next);
        if i + 1 == steps.len() || model.config().eos_ids.contains(&next) {
            break;
        }
        logits = s.step(&[next]).unwrap().to_vec();
    }
    assert_eq!(produced, expect_ids, "{name}: greedy ids");

    // The library's greedy loop gives the same ids, also in a batch with another input.
    let other: Vec<u32> = input.iter().rev().cloned().collect();
    let out = quill::decode::greedy(
        &mut s,
        &[&input, &other[..other.len() - 3]],
        expect_ids.len(),
        &suppress,
    )
    .unwrap();
    assert_eq!(out[0], expect_ids, "{name}: decode::greedy");
    let alone = quill::decode::greedy(
        &mut s,
        &[&other[..other.len() - 3]],
        expect_ids.len(),
        &suppress,
    )
    .unwrap();
    assert_eq!(
        out[1], alone[0],
        "{name}: a batch neighbour changed the result"
    );
}

#[test]
fn marian_matches_transformers() {
    check_parity("marian");
}

#[test]
fn bart_matches_transformers() {
    check_parity("bart");
}

/// mT5: the T5 v1.1 layout under its own `model_type`.
#[test]
fn mt5_matches_transformers() {
    check_parity("mt5");
}

/// Pegasus: pre-norm with final norms, Marian's sinusoids, `final_logits_bias`.
#[test]
fn pegasus_matches_transformers() {
    check_parity("pegasus");
}

/// Encoder and decoder of different shapes: more decoder layers, fewer heads (wider heads, so
/// another attention scale) and a narrower feed-forward (a distilled student's shape).
#[test]
fn bart_asymmetric_stacks_match_transformers() {
    check_parity("bart-asym");
}

/// T5 v1.1 with `d_kv · num_heads` ≠ `d_model` and more decoder than encoder layers.
#[test]
fn t5_narrow_heads_and_deeper_decoder_match_transformers() {
    check_parity("t5-asym");
}

#[test]
fn mbart_matches_transformers() {
    check_parity("mbart");
}

#[test]
fn m2m100_matches_transformers() {
    check_parity("m2m100");
}

#[test]
fn qwen2_matches_transformers() {
    check_parity("qwen2");
}

#[test]
fn mistral_mqa_matches_transformers() {
    check_parity("mistral");
}

#[test]
fn t5_matches_transformers() {
    check_parity("t5");
}

#[test]
fn t5_gated_matches_transformers() {
    check_parity("t5-gated");
}

#[test]
fn gpt2_matches_transformers() {
    check_parity("gpt2");
}

#[test]
fn phi3_fused_projections_match_transformers() {
    check_parity("phi3");
}

#[test]
fn llama_gqa_matches_transformers() {
    check_parity("llama");
}

/// Qwen3: per-head RMSNorm of queries and keys before rotary positions, heads wider than
/// `d_model / heads` (4 × 32 on 64), tied embeddings.
#[test]
fn qwen3_qk_norm_matches_transformers() {
    check_parity("qwen3");
}

/// Gemma: RMSNorms scaling by `1 + weight` (random weights), √d-scaled embeddings, GELU-tanh
/// gated feed-forward from the legacy `hidden_act: "gelu"`, heads wider than `d / heads`, MQA.
#[test]
fn gemma_matches_transformers() {
    check_parity("gemma");
}

/// Gemma 2: sandwich norms, soft-capped attention scores (cap 1.5) and logits (cap 3.0),
/// `query_pre_attn_scalar`, and a sliding window on layers 0 and 2 of 4 (the long batch below
/// runs past it on those layers and attends to the whole prefix on the others).
#[test]
fn gemma2_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let m = convert("gemma2", None, dir.path());
    let c = m.config();
    assert_eq!(
        (c.sliding_window, c.sliding_layers.as_slice()),
        (128, &[0, 2][..])
    );
    assert_eq!((c.attn_softcap, c.final_softcap), (1.5, 3.0));
    assert_eq!(c.attention_scale, Some(24f64.powf(-0.5)));
    check_parity("gemma2");
}

/// Phi-3's LongRoPE (the 128k models): short factors per frequency within the original
/// context (64 here), the attention factor on cos/sin, and past it the long factors for a
/// whole pass whose last position reaches it (the long batch's 180-token prompts). A
/// generation that starts within the original context and runs past it (crossing.json: a
/// 40-token prompt, 48 new tokens) matches up to the crossing; there `transformers`' Phi-3
/// drops its cache and recomputes the whole sequence with the long factors, while quill rotates
/// the new positions with them and keeps the cache (docs/architectures.md).
#[test]
fn phi3_longrope_matches_transformers_within_and_past_its_original_context() {
    let dir = tempfile::tempdir().unwrap();
    let m = convert("phi3-longrope", None, dir.path());
    assert!(matches!(
        m.config().rope_scaling,
        Some(quill::format::RopeScaling::Longrope { attention_factor, original_max_positions: 64, .. })
            if (attention_factor - (1.0 + 4f64.ln() / 64f64.ln()).sqrt()).abs() < 1e-12
    ));
    assert_eq!(m.max_positions(), None);
    check_parity("phi3-longrope");
    // The crossing golden's step 25 is the pass of position 64, the first past the context.
    for (file, steps) in [("long_batch.json", usize::MAX), ("crossing.json", 25)] {
        let worst = check_batch_golden("phi3-longrope", file, steps);
        eprintln!("phi3-longrope {file}: max logit difference {worst:e}");
    }
}

/// Llama 3.1/3.2's `rope_scaling` ("llama3": frequencies kept, blended and divided), rope_theta
/// 5e5 and tied embeddings; the long batch (tests below) runs it to 244 positions.
#[test]
fn llama3_rope_scaling_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let m = convert("llama3", None, dir.path());
    assert_eq!(
        m.config().rope_scaling,
        Some(quill::format::RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_positions: 64,
        })
    );
    check_parity("llama3");
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn quantized_models_stay_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    for name in MODELS {
        let g = golden(name);
        let input = ids(&g["input_ids"]);
        let expect = floats(&g["first_step_logits"]);
        for (target, min) in [(Target::Int8, 0.999), (Target::Int4, 0.99)] {
            let model = convert(name, Some(target), dir.path());
            let mut s = session(&model);
            let got = first_logits(&model, &mut s, &input);
            let cos = cosine(&got, &expect);
            eprintln!("{name} {target:?}: cosine {cos:.6}");
            assert!(cos >= min, "{name} {target:?}: cosine {cos} < {min}");
        }
    }
}

/// Two worker threads split the products by output columns; every column is computed as at one
/// thread, so prefill, encoder and every decoding step give the same logits bit for bit.
#[test]
fn two_threads_give_the_logits_of_one() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["marian", "llama"] {
        let g = golden(name);
        let input = ids(&g["input_ids"]);
        for target in [None, Some(Target::Int8)] {
            let one = convert(name, target, dir.path());
            let path = dir.path().join(format!("{name}.quill"));
            let two = Model::open(
                &path,
                &OpenOptions {
                    threads: 2,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(two.threads(), 2);
            let (mut s1, mut s2) = (session(&one), session(&two));
            s1.start(&[&input, &input[..input.len() / 2]]).unwrap();
            s2.start(&[&input, &input[..input.len() / 2]]).unwrap();
            let same = |a: &[f32], b: &[f32]| {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            };
            let mut next = match one.config().decoder_start_id {
                Some(d) if one.arch() == Arch::Seq2Seq => vec![d, d],
                _ => {
                    let ok = same(s1.logits(), s2.logits());
                    assert!(ok, "{name} {target:?} prefill");
                    vec![1, 2]
                }
            };
            for step in 0..8 {
                let (a, b) = (s1.step(&next).unwrap().to_vec(), s2.step(&next).unwrap());
                assert!(same(&a, b), "{name} {target:?} step {step}");
                let v = one.config().vocab_size;
                next = a
                    .chunks(v)
                    .map(|row| quill::kernels::scalar::argmax(row) as u32)
                    .collect();
            }
        }
    }
}

#[cfg(feature = "tokenizer")]
#[test]
fn text_in_text_out() {
    let dir = tempfile::tempdir().unwrap();
    let model = convert("marian", None, dir.path());
    let g = golden("marian");
    let tok = model.tokenizer().unwrap();
    // The fixture's word-level vocabulary spells id n as "wn".
    let input = ids(&g["input_ids"]);
    let text: Vec<String> = input.iter().map(|i| tok.id_to_token(*i).unwrap()).collect();
    let text = text.join(" ");
    assert_eq!(tok.encode(&text, true).unwrap(), input);
    let mut s = session(&model);
    let out = quill::decode::text::greedy(&mut s, &[&text], 24).unwrap();
    let expect: Vec<u32> = ids(&g["output_ids"])[1..]
        .iter()
        .copied()
        .filter(|&i| i != 0)
        .collect();
    assert_eq!(out[0], tok.decode(&expect, true).unwrap());
}

#[cfg(feature = "tokenizer")]
#[test]
fn a_model_without_tokenizer_still_runs_ids() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("gpt2");
    std::fs::create_dir_all(&src).unwrap();
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(fixture("gpt2").join(f), src.join(f)).unwrap();
    }
    let out = dir.path().join("gpt2.quill");
    convert_hf(&src, &out, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    let model = Model::open(&out, &OpenOptions::default()).unwrap();
    let err = model.tokenizer().unwrap_err().to_string();
    assert!(err.contains("no tokenizer"), "{err}");
    let mut s = session(&model);
    assert!(quill::decode::text::greedy(&mut s, &["hello"], 4).is_err());
    assert_eq!(
        quill::decode::greedy(&mut s, &[&[5, 6, 7]], 4, &[]).unwrap()[0].len(),
        4
    );
}

#[test]
fn default_limits_fit_the_model() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["marian", "gpt2", "mistral"] {
        let model = convert(name, None, dir.path());
        let fitted = Limits::default().fit(&model);
        assert!(Session::new(&model, fitted).is_ok(), "{name}: {fitted:?}");
    }
    // Explicit limits beyond the positions are refused with a message.
    let model = convert("marian", None, dir.path());
    let err = Session::new(
        &model,
        Limits {
            max_input_len: 10_000,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("positions"), "{err}");
}

/// A chat turn longer than the rows a session's activations hold (`max_batch × max_input_len`)
/// is prefilled in chunks — the c_generate fuzzer found such a turn writing past the buffers —
/// and gives the logits of one prefill of the whole sequence.
#[test]
fn extend_longer_than_the_sessions_rows_is_prefilled_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let model = convert("llama", None, dir.path());
    let toks: Vec<u32> = (5..17).collect();
    let limits = |input, new| quill::Limits {
        max_batch: 1,
        max_input_len: input,
        max_new_tokens: new,
        beams: 1,
        ..Default::default()
    };
    let mut small = Session::new(&model, limits(2, 16)).unwrap();
    small.start(&[&toks[..2]]).unwrap();
    small.extend(&toks[2..]).unwrap();
    assert_eq!(small.cached_len(), toks.len());
    let mut whole = Session::new(&model, limits(12, 4)).unwrap();
    whole.start(&[&toks]).unwrap();
    let d = max_abs(small.logits(), whole.logits());
    assert!(d < 1e-4, "chunked prefill differs by {d}");
}

/// Long inputs (200 source or 180 prompt tokens), 64 new tokens, three inputs of different
/// lengths in one batch: `transformers` ran them padded (right for seq2seq, left for decoder-only,
/// with attention masks), quill as one ragged batch. The golden's ids are fed back (teacher
/// forcing), so every step of every row is compared; quill's own choice must be the golden's
/// wherever the top two logits are apart by more than the tolerance allows.
fn check_long_batch(name: &str) -> f32 {
    check_batch_golden(name, "long_batch.json", usize::MAX)
}

/// [`check_long_batch`] with the golden in `file` (same format), its first `max_steps` steps.
fn check_batch_golden(name: &str, file: &str, max_steps: usize) -> f32 {
    let dir = tempfile::tempdir().unwrap();
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join(file)).unwrap()).unwrap();
    let model = convert(name, None, dir.path());
    let inputs: Vec<Vec<u32>> = g["inputs"].as_array().unwrap().iter().map(ids).collect();
    let rows = g["rows"].as_array().unwrap();
    let new = g["max_new_tokens"].as_u64().unwrap() as usize;
    let limits = Limits {
        max_batch: inputs.len(),
        max_input_len: inputs.iter().map(Vec::len).max().unwrap(),
        max_new_tokens: new + 1,
        beams: 1,
        ..Default::default()
    };
    let mut s = Session::new(&model, limits).unwrap();
    let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
    s.start(&refs).unwrap();
    let v = model.config().vocab_size;
    if model.arch() == Arch::Seq2Seq {
        let start = model.config().decoder_start_id.unwrap();
        s.step(&vec![start; inputs.len()]).unwrap();
    }
    let steps = rows
        .iter()
        .map(|r| r["ids"].as_array().unwrap().len())
        .max()
        .unwrap()
        .min(max_steps);
    let mut worst = 0f32;
    for step in 0..steps {
        let logits = s.logits().to_vec();
        let mut next = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let want_ids = ids(&row["ids"]);
            let Some(&chosen) = want_ids.get(step) else {
                next.push(*want_ids.last().unwrap()); // finished: its steps are not compared
                continue;
            };
            let top5 = &row["top5"][step];
            let (top_ids, top) = (ids(&top5["ids"]), floats(&top5["logits"]));
            let got = &logits[r * v..(r + 1) * v];
            for (id, want) in top_ids.iter().zip(&top) {
                worst = worst.max((got[*id as usize] - want).abs());
            }
            if top[0] - top[1] > 4.0 * LOGIT_ATOL {
                assert_eq!(
                    quill::kernels::scalar::argmax(got) as u32,
                    chosen,
                    "{name} row {r} step {step}: greedy choice"
                );
            }
            next.push(chosen);
        }
        if step + 1 < steps {
            s.step(&next).unwrap();
        }
    }
    assert!(
        worst <= LOGIT_ATOL,
        "{name}: logits differ by {worst} over 64 steps of a padded batch"
    );
    worst
}

#[test]
fn long_inputs_in_a_ragged_batch_match_transformers_padded_batch() {
    for name in [
        "bart",
        "mbart",
        "pegasus",
        "t5",
        "t5-gated",
        "bart-asym",
        "gpt2",
        "llama",
        "qwen2",
        "llama3",
        "qwen3",
        "mistral",
        "gemma",
        "gemma2",
    ] {
        let worst = check_long_batch(name);
        eprintln!("{name}: max logit difference {worst:e}");
    }
}
