//! `quill convert` beyond the happy path: sharded checkpoints, refused configurations.

use std::path::{Path, PathBuf};

use quill::convert::hf::{ConvertOptions, convert_hf};
use quill::{Error, Limits, Model, OpenOptions, QuillFile, Session, Writer};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn logits(path: &Path, input: &[u32]) -> Vec<f32> {
    let m = Model::open(
        path,
        &OpenOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let mut s = Session::new(
        &m,
        Limits {
            max_batch: 1,
            max_input_len: 16,
            max_new_tokens: 4,
            beams: 1,
            ..Default::default()
        },
    )
    .unwrap();
    s.start(&[input]).unwrap();
    s.logits().to_vec()
}

#[test]
fn sharded_checkpoints_convert_like_single_files() {
    let dir = tempfile::tempdir().unwrap();
    let sharded = dir.path().join("llama-sharded");
    copy_dir(&fixture("llama"), &sharded);
    // Split model.safetensors in two shards with an index, as transformers does for big models.
    let whole = QuillFile::open(sharded.join("model.safetensors")).unwrap();
    let names: Vec<String> = whole.tensors().map(|t| t.name.to_string()).collect();
    let mut shards = [Writer::new(), Writer::new()];
    let mut map = serde_json::Map::new();
    for (i, name) in names.iter().enumerate() {
        let t = whole.tensor(name).unwrap();
        shards[i % 2]
            .add_raw(name, t.dtype, t.shape, t.bytes)
            .unwrap();
        map.insert(
            name.clone(),
            format!("model-0000{}-of-00002.safetensors", i % 2 + 1).into(),
        );
    }
    for (i, w) in shards.iter().enumerate() {
        w.write(sharded.join(format!("model-0000{}-of-00002.safetensors", i + 1)))
            .unwrap();
    }
    drop(whole);
    std::fs::remove_file(sharded.join("model.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let (a, b) = (dir.path().join("a.quill"), dir.path().join("b.quill"));
    convert_hf(
        &fixture("llama"),
        &a,
        &ConvertOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    convert_hf(&sharded, &b, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    let input = [1, 50, 60, 70];
    assert_eq!(logits(&a, &input), logits(&b, &input));
}

fn refused(name: &str, patch: impl Fn(&mut serde_json::Value)) -> Error {
    patched(name, patch).unwrap_err()
}

/// Converts fixture `name` with `patch` applied to its config: the model's config, or the error.
fn patched(
    name: &str,
    patch: impl Fn(&mut serde_json::Value),
) -> Result<quill::format::Config, Error> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("model");
    copy_dir(&fixture(name), &d);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    patch(&mut cfg);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let out = dir.path().join("out.quill");
    convert_hf(&d, &out, &ConvertOptions::default(), &mut |_, _| {})?;
    let m = quill::Model::open(&out, &Default::default())?;
    Ok(m.config().clone())
}

fn field(e: &Error) -> &str {
    match e {
        Error::BadConfig { field, .. } => field,
        other => panic!("expected a config error, got {other}"),
    }
}

#[test]
fn unsupported_configurations_are_refused_naming_the_field() {
    let e = refused("marian", |c| c["model_type"] = "reformer".into());
    assert_eq!(field(&e), "model_type");
    assert!(e.to_string().contains("reformer"));
    // The decoder may have its own head count (bart-asym), but it must divide d_model.
    let e = refused("marian", |c| c["decoder_attention_heads"] = 5.into());
    assert_eq!(field(&e), "decoder_attention_heads");
    let e = refused("marian", |c| c["decoder_vocab_size"] = 1200.into());
    assert_eq!(field(&e), "decoder_vocab_size");
    let e = refused("bart", |c| c["activation_function"] = "mish".into());
    assert_eq!(field(&e), "activation_function");
    assert!(e.to_string().contains("mish"));
    let e = refused("llama", |c| {
        c["rope_parameters"] = serde_json::json!({"rope_type": "yarn", "rope_theta": 10000.0})
    });
    assert_eq!(field(&e), "rope_parameters.rope_type");
    // Sliding windows on some layers: from layer_types, or Qwen's max_window_layers without it
    // (the runtime is held to transformers on such a model by gemma2's goldens).
    let c = patched("qwen2", |c| {
        c["sliding_window"] = 64.into();
        c["use_sliding_window"] = true.into();
        c["layer_types"] = serde_json::json!(["full_attention", "sliding_attention"]);
    })
    .unwrap();
    assert_eq!(
        (c.sliding_window, c.sliding_layers.as_slice()),
        (64, &[1][..])
    );
    let c = patched("qwen2", |c| {
        c["sliding_window"] = 64.into();
        c["use_sliding_window"] = true.into();
        c["max_window_layers"] = 1.into();
        c.as_object_mut().unwrap().remove("layer_types");
    })
    .unwrap();
    assert_eq!(
        (c.sliding_window, c.sliding_layers.as_slice()),
        (64, &[1][..])
    );
    let c = patched("qwen2", |c| {
        c["sliding_window"] = 64.into();
        c["use_sliding_window"] = false.into();
    })
    .unwrap();
    assert_eq!(c.sliding_window, 0);
    for types in [
        serde_json::json!(["full_attention", "chunked_attention"]),
        serde_json::json!(["sliding_attention"]),
    ] {
        let e = refused("qwen2", |c| {
            c["sliding_window"] = 64.into();
            c["use_sliding_window"] = true.into();
            c["layer_types"] = types.clone();
        });
        assert_eq!(field(&e), "layer_types");
    }
    // Llama 3 scaling needs its parameters, and sane ones (checked by the config).
    let e = refused("llama", |c| {
        c["rope_parameters"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0})
    });
    assert_eq!(field(&e), "rope_parameters.low_freq_factor");
    let e = refused("llama", |c| {
        c["rope_parameters"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 4.0, "high_freq_factor": 1.0,
            "original_max_position_embeddings": 8192})
    });
    assert_eq!(field(&e), "rope_scaling");
    let e = refused("llama", |c| {
        c["rope_parameters"] = serde_json::json!({"rope_type": "linear", "factor": -2.0})
    });
    assert_eq!(field(&e), "rope_scaling");
    let e = refused("gpt2", |c| {
        c["scale_attn_by_inverse_layer_idx"] = true.into()
    });
    assert_eq!(field(&e), "scale_attn_by_inverse_layer_idx");
    let e = refused("llama", |c| {
        c.as_object_mut().unwrap().remove("hidden_size");
    });
    assert_eq!(field(&e), "hidden_size");
    // Phi-3's long-context models: LongRoPE needs its short factors, one per frequency.
    let e =
        refused(
            "phi3",
            |c| {
                c["rope_parameters"] =
                    serde_json::json!({"rope_type": "longrope", "rope_theta": 10000.0})
            },
        );
    assert_eq!(field(&e), "rope_parameters.short_factor");
    let e = refused("phi3", |c| {
        c["rope_parameters"] = serde_json::json!({"rope_type": "longrope",
            "rope_theta": 10000.0, "short_factor": [1.0, 2.0],
            "original_max_position_embeddings": 64})
    });
    assert_eq!(field(&e), "rope_parameters.long_factor");
    let e = refused("phi3", |c| {
        c["rope_parameters"] = serde_json::json!({"rope_type": "longrope",
            "rope_theta": 10000.0, "short_factor": [1.0, 2.0], "long_factor": [1.0, 2.0],
            "original_max_position_embeddings": 64})
    });
    assert_eq!(field(&e), "rope_scaling");
    let e = refused("phi3", |c| {
        c["rope_parameters"]["partial_rotary_factor"] = 0.75.into()
    });
    assert_eq!(field(&e), "partial_rotary_factor");
}

/// Found by the `hf_config` fuzzer: the tensors are planned before the configuration is
/// validated, so a hostile layer count planned names until memory ran out. Every family refuses a
/// count its checkpoint cannot hold, at once.
#[test]
fn layer_counts_beyond_the_checkpoint_are_refused_before_planning() {
    let huge = serde_json::Value::from(u64::MAX / 2);
    for (fixture, key) in [
        ("marian", "encoder_layers"),
        ("bart", "decoder_layers"),
        ("t5", "num_layers"),
        ("t5", "num_decoder_layers"),
        ("gpt2", "n_layer"),
        ("llama", "num_hidden_layers"),
        ("phi3", "num_hidden_layers"),
        ("../lstm/uni-dot", "encoder_layers"),
        ("../lstm/uni-dot", "decoder_layers"),
    ] {
        let e = refused(fixture, |c| c[key] = huge.clone());
        assert_eq!(field(&e), key, "{fixture}: {e}");
        assert!(e.to_string().contains("tensors in all"), "{fixture}: {e}");
    }
}

#[test]
fn missing_weights_are_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("gpt2");
    copy_dir(&fixture("gpt2"), &d);
    let whole = QuillFile::open(d.join("model.safetensors")).unwrap();
    let mut w = Writer::new();
    for t in whole
        .tensors()
        .filter(|t| t.name != "transformer.h.1.mlp.c_fc.weight")
    {
        w.add_raw(t.name, t.dtype, t.shape, t.bytes).unwrap();
    }
    let bytes = w.to_bytes();
    drop(whole);
    std::fs::write(d.join("model.safetensors"), bytes).unwrap();
    let e = convert_hf(
        &d,
        &dir.path().join("o.quill"),
        &ConvertOptions::default(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::MissingTensor(ref n) if n == "transformer.h.1.mlp.c_fc.weight"),
        "{e}"
    );
}
