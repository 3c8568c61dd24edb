//! Cross-ISA parity: int8 greedy outputs are identical on every kernel level. Every golden model
//! (the ten Hugging Face fixtures converted to int8, the three LSTM fixtures converted to int8,
//! and the demo model) decodes its golden inputs greedily, one at a time and as one ragged batch,
//! and the ids must equal `tests/fixtures/parity/int8_greedy.json`, which the scalar reference
//! kernels wrote:
//!
//! ```sh
//! QUILL_FORCE_ISA=scalar QUILL_PARITY_WRITE=1 cargo test --test parity
//! ```
//!
//! CI runs this test under each x86 level (forcing those below the run-time choice) and on
//! aarch64 under qemu's default CPU, so every table is held to the same ids. The Cortex-A53 run
//! (no dot-product extension) differs only in the int8 products, which `tests/kernels.rs` holds
//! bit for bit to scalar there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quill::convert::hf::{ConvertOptions, convert_hf};
use quill::convert::quantize::Target;
use quill::decode::{GenerateOptions, Strategy, generate};
use quill::kernels::Isa;
use quill::{Limits, Model, OpenOptions, Session};
use serde_json::Value;

const NEW_TOKENS: usize = 24;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

mod common;

use common::json_ids as ids;

fn open(path: &Path) -> Model {
    Model::open(
        path,
        &OpenOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Every golden model, int8, with its inputs.
fn cases(dir: &Path) -> Vec<(String, Model, Vec<Vec<u32>>)> {
    let mut out = Vec::new();
    let read = |p: PathBuf| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let convert = |src: PathBuf, name: &str| {
        let path = dir.join(format!("{name}.quill"));
        let options = ConvertOptions {
            quantize: Some(Target::Int8),
        };
        convert_hf(&src, &path, &options, &mut |_, _| {}).unwrap();
        open(&path)
    };
    for name in [
        "marian",
        "bart",
        "mbart",
        "m2m100",
        "t5",
        "t5-gated",
        "gpt2",
        "llama",
        "mistral",
        "qwen2",
        "llama3",
        "qwen3",
        "gemma",
        "gemma2",
        "pegasus",
        "bart-asym",
        "t5-asym",
        "mt5",
    ] {
        let src = root().join("tests/fixtures/hf").join(name);
        let g = read(src.join("golden.json"));
        out.push((
            name.to_string(),
            convert(src, name),
            vec![ids(&g["input_ids"])],
        ));
    }
    for name in ["bi-general-feed", "uni-dot", "bi-additive-feed"] {
        let src = root().join("tests/fixtures/lstm").join(name);
        let g = read(src.join("golden.json"));
        let inputs = g["inputs"].as_array().unwrap().iter().map(ids).collect();
        out.push((format!("lstm-{name}"), convert(src, name), inputs));
    }
    // The demo model, on ids of a few UI messages (fixed here: the tokenizer is not under test).
    let demo = open(&root().join("models/en-de-ui.quill"));
    let tok = demo.tokenizer().unwrap();
    let inputs = [
        "Could not open the file.",
        "Do you want to delete %s?",
        "Save changes to the document before closing?",
    ]
    .iter()
    .map(|t| tok.encode(t, true).unwrap())
    .collect();
    out.push(("en-de-ui".to_string(), demo, inputs));
    out
}

/// Greedy ids of each input alone, then of all inputs in one batch.
fn decode(model: &Model, inputs: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let limits = Limits {
        max_batch: inputs.len(),
        max_input_len: inputs.iter().map(Vec::len).max().unwrap(),
        max_new_tokens: NEW_TOKENS,
        beams: 1,
        ..Default::default()
    };
    let mut s = Session::new(model, limits).unwrap();
    let mut o = GenerateOptions::model_defaults(model).unwrap();
    o.strategy = Strategy::Greedy;
    o.max_new_tokens = NEW_TOKENS;
    let mut run = |batch: &[&[u32]]| -> Vec<Vec<u32>> {
        let g = generate(&mut s, batch, &o, None, None).unwrap();
        g.outputs.into_iter().map(|h| h[0].ids.clone()).collect()
    };
    let mut out = Vec::new();
    for i in inputs {
        out.extend(run(&[i.as_slice()]));
    }
    let all: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
    out.extend(run(&all));
    out
}

#[test]
fn int8_greedy_ids_are_identical_on_every_isa() {
    let dir = tempfile::tempdir().unwrap();
    let mut got = BTreeMap::new();
    let mut isa = None;
    for (name, model, inputs) in cases(dir.path()) {
        isa = Some(model.isa());
        got.insert(name, decode(&model, &inputs));
    }
    let isa = isa.unwrap();
    let path = root().join("tests/fixtures/parity/int8_greedy.json");
    if std::env::var_os("QUILL_PARITY_WRITE").is_some() {
        assert_eq!(isa, Isa::Scalar, "the goldens come from the scalar kernels");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = serde_json::to_string_pretty(&got).unwrap();
        std::fs::write(&path, text + "\n").unwrap();
        return;
    }
    let want: BTreeMap<String, Vec<Vec<u32>>> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    let mut differ = Vec::new();
    for (name, w) in &want {
        for (i, (a, b)) in w.iter().zip(&got[name]).enumerate() {
            if a != b {
                differ.push(format!("{name} #{i}: scalar {a:?}\n  {isa:?} {b:?}"));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "{isa:?} differs from scalar:\n{}",
        differ.join("\n")
    );
    println!("{isa:?}: {} models, identical int8 greedy ids", want.len());
}
