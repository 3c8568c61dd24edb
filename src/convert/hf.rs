//! Import of Hugging Face checkpoints (`config.json` + `model.safetensors`, sharded or not,
//! `generation_config.json`, `tokenizer.json`) into a `.quill` file with quill's canonical names
//! (`docs/architectures.md`).
//!
//! Supported `model_type`s: `marian`, `bart`, `mbart`, `m2m_100` (M2M100, NLLB), `t5` (v1.0
//! and v1.1 / flan), `gpt2`, `llama`, `mistral`, `qwen2`. A configuration quill cannot run exactly is refused with a message
//! naming the field and its value. Try it: `quill convert ./opus-mt-en-de out.quill --quantize int8`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use serde_json::Value;

use super::quantize::{Target, add_quantized};
use crate::error::{Error, Result};
use crate::format::{Activation, Arch, Config, Norm, Positions, QuillFile, Writer, keys};
use crate::tensor::DType;

/// How to convert.
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    /// Quantize the weight matrices (embeddings and output projection included).
    pub quantize: Option<Target>,
}

/// What was converted: the architecture and per-tensor quantization reports.
#[derive(Debug)]
pub struct ConvertReport {
    pub model_type: String,
    pub arch: Arch,
    pub tensors: usize,
    pub quantization: Vec<super::quantize::TensorReport>,
}

/// How a source tensor becomes a quill tensor.
#[derive(Clone, Debug)]
enum Op {
    Copy,
    /// `[in, out]` (GPT-2's Conv1D) → `[out, in]`.
    Transpose,
    /// Rows `[start, end)` of the transposed tensor (GPT-2's fused `c_attn`), or of a vector.
    TransposeRows(usize, usize),
    Rows(usize, usize),
    /// `[1, n]` → `[n]`.
    Flatten,
    /// LSTM gate weights or biases: transposed first when `transpose` (Keras kernels
    /// `[in, 4h]`), `add` summed in (PyTorch keeps `bias_ih` and `bias_hh`), then the four row
    /// blocks reordered to quill's i, f, g, o: block `order[k]` of the source is gate `k`.
    LstmGates {
        order: [usize; 4],
        add: Option<String>,
        transpose: bool,
    },
}

struct Planned {
    name: String,
    source: String,
    op: Op,
}

/// The checkpoint's tensors, possibly spread over shards.
struct Sources<'a> {
    files: Vec<&'a QuillFile>,
    index: BTreeMap<String, usize>,
}

impl<'a> Sources<'a> {
    /// The checkpoint files of `dir` (one, or the shards its index names), opened.
    fn open(dir: &Path) -> Result<Vec<QuillFile>> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let paths: Vec<PathBuf> = if single.exists() {
            vec![single]
        } else if index_path.exists() {
            let idx: Value = read_json(&index_path)?;
            let map = idx["weight_map"].as_object().ok_or_else(|| {
                Error::bad_config(
                    "weight_map",
                    format!("{} has no weight_map object", index_path.display()),
                )
            })?;
            let mut shards: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            return Err(Error::InvalidArgument(format!(
                "{} has neither model.safetensors nor model.safetensors.index.json (PyTorch .bin checkpoints are not read: save them with safe_serialization=True)",
                dir.display()
            )));
        };
        paths.iter().map(QuillFile::open).collect()
    }

    fn new(files: &'a [QuillFile]) -> Sources<'a> {
        let files: Vec<&QuillFile> = files.iter().collect();
        let mut index = BTreeMap::new();
        for (i, f) in files.iter().enumerate() {
            for t in f.tensors() {
                index.insert(t.name.to_string(), i);
            }
        }
        Sources { files, index }
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// `(dtype, shape, values as f32)`.
    fn load(&self, name: &str) -> Result<(DType, Vec<usize>, Vec<f32>)> {
        let f = &self.files[*self
            .index
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.into()))?];
        let t = f.tensor(name)?;
        Ok((t.dtype, t.shape.to_vec(), t.to_f32_vec()?))
    }

    fn same(&self, a: &str, b: &str) -> Result<bool> {
        Ok(self.load(a)?.2 == self.load(b)?.2)
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io(path.display().to_string(), e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::bad_config(&path.display().to_string(), e.to_string()))
}

/// Reads typed fields of `config.json` with errors that name them.
struct Hf<'a>(&'a Value);

impl Hf<'_> {
    fn opt_usize(&self, k: &str) -> Result<Option<usize>> {
        match &self.0[k] {
            Value::Null => Ok(None),
            v => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                Error::bad_config(k, format!("expected a non-negative integer, found {v}"))
            }),
        }
    }
    fn usize(&self, k: &str) -> Result<usize> {
        self.opt_usize(k)?
            .ok_or_else(|| Error::bad_config(k, "missing from config.json"))
    }
    fn opt_f64(&self, k: &str) -> Result<Option<f64>> {
        match &self.0[k] {
            Value::Null => Ok(None),
            v => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| Error::bad_config(k, format!("expected a number, found {v}"))),
        }
    }
    fn opt_bool(&self, k: &str) -> Result<Option<bool>> {
        match &self.0[k] {
            Value::Null => Ok(None),
            v => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| Error::bad_config(k, format!("expected true or false, found {v}"))),
        }
    }
    fn str(&self, k: &str) -> Option<&str> {
        self.0[k].as_str()
    }
    fn id(&self, k: &str) -> Result<Option<u32>> {
        Ok(self.opt_usize(k)?.map(|v| v as u32))
    }
    /// An id or a list of ids (`eos_token_id`).
    fn ids(&self, k: &str) -> Result<Vec<u32>> {
        match &self.0[k] {
            Value::Null => Ok(Vec::new()),
            Value::Array(a) => a
                .iter()
                .map(|v| {
                    v.as_u64()
                        .map(|n| n as u32)
                        .ok_or_else(|| Error::bad_config(k, format!("bad id {v}")))
                })
                .collect(),
            v => v
                .as_u64()
                .map(|n| vec![n as u32])
                .ok_or_else(|| Error::bad_config(k, format!("bad id {v}"))),
        }
    }
    /// Two fields that quill requires to be equal (e.g. encoder and decoder head counts).
    fn same(&self, a: &str, b: &str) -> Result<usize> {
        let (x, y) = (self.usize(a)?, self.opt_usize(b)?);
        match y {
            Some(y) if y != x => Err(Error::bad_config(
                b,
                format!("{y} differs from {a} = {x}; quill needs them equal"),
            )),
            _ => Ok(x),
        }
    }
}

fn activation(field: &str, name: &str) -> Result<Activation> {
    Ok(match name {
        "relu" => Activation::Relu,
        "gelu" => Activation::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "silu" | "swish" => Activation::Silu,
        other => {
            return Err(Error::bad_config(
                field,
                format!("activation \"{other}\" is not supported (relu, gelu, gelu_new, silu)"),
            ));
        }
    })
}

fn base_config(vocab: usize, d: usize) -> Config {
    Config {
        vocab_size: vocab,
        d_model: d,
        encoder_layers: 0,
        decoder_layers: 0,
        heads: 0,
        kv_heads: None,
        head_dim: None,
        ffn_dim: 0,
        activation: Activation::Gelu,
        gated_ffn: false,
        norm: Norm::LayerNorm,
        norm_eps: 1e-5,
        pre_norm: true,
        positions: Positions::Learned,
        max_positions: 0,
        position_offset: 0,
        rope_theta: 10_000.0,
        rope_interleaved: false,
        relative_buckets: 0,
        relative_max_distance: 0,
        scale_embedding: false,
        attention_scale: None,
        logits_scale: 1.0,
        bidirectional: false,
        embed_dim: None,
        attention: None,
        input_feeding: false,
        bos_id: None,
        eos_ids: Vec::new(),
        pad_id: None,
        unk_id: None,
        decoder_start_id: None,
    }
}

fn plan(out: &mut Vec<Planned>, name: impl Into<String>, source: impl Into<String>, op: Op) {
    out.push(Planned {
        name: name.into(),
        source: source.into(),
        op,
    });
}

/// Linear layer `src.{weight,bias}` → `dst.{weight,bias}` (bias only if present).
fn plan_linear(out: &mut Vec<Planned>, src: &Sources, dst: &str, s: &str) {
    plan(
        out,
        format!("{dst}.weight"),
        format!("{s}.weight"),
        Op::Copy,
    );
    if src.has(&format!("{s}.bias")) {
        plan(out, format!("{dst}.bias"), format!("{s}.bias"), Op::Copy);
    }
}

fn plan_norm(out: &mut Vec<Planned>, src: &Sources, dst: &str, s: &str) {
    plan_linear(out, src, dst, s);
}

/// Marian, BART and mBART share one layout.
fn bart_family(hf: &Hf, src: &Sources, model_type: &str) -> Result<(Arch, Config, Vec<Planned>)> {
    let d = hf.usize("d_model")?;
    let vocab = hf.usize("vocab_size")?;
    if let Some(dv) = hf.opt_usize("decoder_vocab_size")?
        && dv != vocab
    {
        return Err(Error::bad_config(
            "decoder_vocab_size",
            format!(
                "{dv} differs from vocab_size = {vocab}: separate target vocabularies are not supported"
            ),
        ));
    }
    let mut c = base_config(vocab, d);
    c.encoder_layers = hf.usize("encoder_layers")?;
    c.decoder_layers = hf.usize("decoder_layers")?;
    c.heads = hf.same("encoder_attention_heads", "decoder_attention_heads")?;
    c.ffn_dim = hf.same("encoder_ffn_dim", "decoder_ffn_dim")?;
    c.activation = activation(
        "activation_function",
        hf.str("activation_function").unwrap_or("gelu"),
    )?;
    c.scale_embedding = hf.opt_bool("scale_embedding")?.unwrap_or(false);
    c.pre_norm = matches!(model_type, "mbart" | "m2m_100");
    c.eos_ids = hf.ids("eos_token_id")?;
    c.bos_id = hf.id("bos_token_id")?;
    c.pad_id = hf.id("pad_token_id")?;
    c.decoder_start_id = hf.id("decoder_start_token_id")?;
    let max_pos = hf.usize("max_position_embeddings")?;
    let mut p = Vec::new();
    let shared = if src.has("model.shared.weight") {
        "model.shared.weight"
    } else {
        "model.encoder.embed_tokens.weight"
    };
    let enc_embed = "model.encoder.embed_tokens.weight";
    let dec_embed = "model.decoder.embed_tokens.weight";
    let separate = src.has(enc_embed) && src.has(dec_embed) && !src.same(enc_embed, dec_embed)?;
    if separate {
        plan(&mut p, "encoder.embed.weight", enc_embed, Op::Copy);
        plan(&mut p, "decoder.embed.weight", dec_embed, Op::Copy);
    } else {
        plan(&mut p, "embed.weight", shared, Op::Copy);
    }
    if model_type == "marian" {
        // Marian's sinusoids are not stored in the checkpoint: quill computes them at load.
        c.positions = Positions::Sinusoidal;
        c.max_positions = max_pos;
    } else if model_type == "m2m_100" {
        // fairseq's sinusoids (another formula than Marian's) are not stored either: the
        // converter writes the table, read from row 2 on as M2M100 does (padding_idx + 1).
        c.positions = Positions::Learned;
        c.position_offset = 2;
        c.max_positions = max_pos;
        p.push(Planned {
            name: "pos.weight".into(),
            source: FAIRSEQ_SINUSOIDS.into(),
            op: Op::Copy,
        });
    } else {
        c.positions = Positions::Learned;
        c.position_offset = 2;
        c.max_positions = max_pos;
        for stack in ["encoder", "decoder"] {
            plan(
                &mut p,
                format!("{stack}.pos.weight"),
                format!("model.{stack}.embed_positions.weight"),
                Op::Copy,
            );
        }
    }
    for stack in ["encoder", "decoder"] {
        let n = if stack == "encoder" {
            c.encoder_layers
        } else {
            c.decoder_layers
        };
        let s = format!("model.{stack}");
        if src.has(&format!("{s}.layernorm_embedding.weight")) {
            plan_norm(
                &mut p,
                src,
                &format!("{stack}.embed_norm"),
                &format!("{s}.layernorm_embedding"),
            );
        }
        if src.has(&format!("{s}.layer_norm.weight")) {
            plan_norm(
                &mut p,
                src,
                &format!("{stack}.final_norm"),
                &format!("{s}.layer_norm"),
            );
        }
        for i in 0..n {
            let (dl, sl) = (format!("{stack}.layers.{i}"), format!("{s}.layers.{i}"));
            for (q, hq) in [
                ("q", "q_proj"),
                ("k", "k_proj"),
                ("v", "v_proj"),
                ("o", "out_proj"),
            ] {
                plan_linear(
                    &mut p,
                    src,
                    &format!("{dl}.self_attn.{q}"),
                    &format!("{sl}.self_attn.{hq}"),
                );
                if stack == "decoder" {
                    plan_linear(
                        &mut p,
                        src,
                        &format!("{dl}.cross_attn.{q}"),
                        &format!("{sl}.encoder_attn.{hq}"),
                    );
                }
            }
            plan_norm(
                &mut p,
                src,
                &format!("{dl}.self_attn_norm"),
                &format!("{sl}.self_attn_layer_norm"),
            );
            if stack == "decoder" {
                plan_norm(
                    &mut p,
                    src,
                    &format!("{dl}.cross_attn_norm"),
                    &format!("{sl}.encoder_attn_layer_norm"),
                );
            }
            plan_linear(&mut p, src, &format!("{dl}.ffn.up"), &format!("{sl}.fc1"));
            plan_linear(&mut p, src, &format!("{dl}.ffn.down"), &format!("{sl}.fc2"));
            plan_norm(
                &mut p,
                src,
                &format!("{dl}.ffn_norm"),
                &format!("{sl}.final_layer_norm"),
            );
        }
    }
    if src.has("final_logits_bias") {
        plan(&mut p, "lm_head.bias", "final_logits_bias", Op::Flatten);
    }
    let tied_to = if separate { dec_embed } else { shared };
    if src.has("lm_head.weight") && !src.same("lm_head.weight", tied_to)? {
        plan(&mut p, "lm_head.weight", "lm_head.weight", Op::Copy);
    }
    Ok((Arch::Seq2Seq, c, p))
}

fn t5(hf: &Hf, src: &Sources) -> Result<(Arch, Config, Vec<Planned>)> {
    let d = hf.usize("d_model")?;
    let mut c = base_config(hf.usize("vocab_size")?, d);
    c.encoder_layers = hf.usize("num_layers")?;
    c.decoder_layers = hf
        .opt_usize("num_decoder_layers")?
        .unwrap_or(c.encoder_layers);
    c.heads = hf.usize("num_heads")?;
    c.head_dim = Some(hf.usize("d_kv")?);
    c.ffn_dim = hf.usize("d_ff")?;
    let proj = hf.str("feed_forward_proj").unwrap_or("relu");
    let (gated, act) = match proj.strip_prefix("gated-") {
        Some(a) => (true, a),
        None => (false, proj),
    };
    c.gated_ffn = gated;
    let act = if act == "gelu" && gated {
        "gelu_new"
    } else {
        act
    }; // transformers maps gated-gelu to gelu_new
    c.activation = activation("feed_forward_proj", hf.str("dense_act_fn").unwrap_or(act))?;
    c.norm = Norm::RmsNorm;
    c.norm_eps = hf.opt_f64("layer_norm_epsilon")?.unwrap_or(1e-6);
    c.positions = Positions::Relative;
    c.relative_buckets = hf
        .opt_usize("relative_attention_num_buckets")?
        .unwrap_or(32);
    c.relative_max_distance = hf
        .opt_usize("relative_attention_max_distance")?
        .unwrap_or(128);
    c.attention_scale = Some(1.0);
    c.eos_ids = hf.ids("eos_token_id")?;
    c.pad_id = hf.id("pad_token_id")?;
    c.decoder_start_id = hf.id("decoder_start_token_id")?.or(c.pad_id);
    let mut p = Vec::new();
    plan(&mut p, "embed.weight", "shared.weight", Op::Copy);
    for stack in ["encoder", "decoder"] {
        let n = if stack == "encoder" {
            c.encoder_layers
        } else {
            c.decoder_layers
        };
        plan(
            &mut p,
            format!("{stack}.rel_bias.weight"),
            format!("{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
            Op::Copy,
        );
        plan_norm(
            &mut p,
            src,
            &format!("{stack}.final_norm"),
            &format!("{stack}.final_layer_norm"),
        );
        for i in 0..n {
            let (dl, sl) = (
                format!("{stack}.layers.{i}"),
                format!("{stack}.block.{i}.layer"),
            );
            for q in ["q", "k", "v", "o"] {
                plan_linear(
                    &mut p,
                    src,
                    &format!("{dl}.self_attn.{q}"),
                    &format!("{sl}.0.SelfAttention.{q}"),
                );
            }
            plan_norm(
                &mut p,
                src,
                &format!("{dl}.self_attn_norm"),
                &format!("{sl}.0.layer_norm"),
            );
            let ff = if stack == "decoder" {
                for q in ["q", "k", "v", "o"] {
                    plan_linear(
                        &mut p,
                        src,
                        &format!("{dl}.cross_attn.{q}"),
                        &format!("{sl}.1.EncDecAttention.{q}"),
                    );
                }
                plan_norm(
                    &mut p,
                    src,
                    &format!("{dl}.cross_attn_norm"),
                    &format!("{sl}.1.layer_norm"),
                );
                2
            } else {
                1
            };
            if gated {
                plan_linear(
                    &mut p,
                    src,
                    &format!("{dl}.ffn.gate"),
                    &format!("{sl}.{ff}.DenseReluDense.wi_0"),
                );
                plan_linear(
                    &mut p,
                    src,
                    &format!("{dl}.ffn.up"),
                    &format!("{sl}.{ff}.DenseReluDense.wi_1"),
                );
            } else {
                plan_linear(
                    &mut p,
                    src,
                    &format!("{dl}.ffn.up"),
                    &format!("{sl}.{ff}.DenseReluDense.wi"),
                );
            }
            plan_linear(
                &mut p,
                src,
                &format!("{dl}.ffn.down"),
                &format!("{sl}.{ff}.DenseReluDense.wo"),
            );
            plan_norm(
                &mut p,
                src,
                &format!("{dl}.ffn_norm"),
                &format!("{sl}.{ff}.layer_norm"),
            );
        }
    }
    // Tied or not is decided from the tensors (transformers 5 writes tie_word_embeddings: true
    // for every T5); the d_model^-0.5 rescale belongs to tied T5 v1.0 models.
    let untied = src.has("lm_head.weight") && !src.same("lm_head.weight", "shared.weight")?;
    if untied {
        plan(&mut p, "lm_head.weight", "lm_head.weight", Op::Copy);
    }
    let scale = hf.opt_bool("scale_decoder_outputs")?.unwrap_or(!untied);
    if scale {
        c.logits_scale = (d as f64).powf(-0.5);
    }
    Ok((Arch::Seq2Seq, c, p))
}

fn gpt2(hf: &Hf, src: &Sources) -> Result<(Arch, Config, Vec<Planned>)> {
    let d = hf.usize("n_embd")?;
    let mut c = base_config(hf.usize("vocab_size")?, d);
    c.decoder_layers = hf.usize("n_layer")?;
    c.heads = hf.usize("n_head")?;
    c.ffn_dim = hf.opt_usize("n_inner")?.unwrap_or(4 * d);
    c.activation = activation(
        "activation_function",
        hf.str("activation_function").unwrap_or("gelu_new"),
    )?;
    c.norm_eps = hf.opt_f64("layer_norm_epsilon")?.unwrap_or(1e-5);
    c.max_positions = hf.usize("n_positions")?;
    c.bos_id = hf.id("bos_token_id")?;
    c.eos_ids = hf.ids("eos_token_id")?;
    c.pad_id = hf.id("pad_token_id")?;
    if hf.opt_bool("scale_attn_weights")? == Some(false) {
        return Err(Error::bad_config(
            "scale_attn_weights",
            "false is not supported",
        ));
    }
    if hf.opt_bool("scale_attn_by_inverse_layer_idx")? == Some(true) {
        return Err(Error::bad_config(
            "scale_attn_by_inverse_layer_idx",
            "true is not supported",
        ));
    }
    let pre = if src.has("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    };
    let mut p = Vec::new();
    plan(&mut p, "embed.weight", format!("{pre}wte.weight"), Op::Copy);
    plan(
        &mut p,
        "decoder.pos.weight",
        format!("{pre}wpe.weight"),
        Op::Copy,
    );
    for i in 0..c.decoder_layers {
        let (dl, sl) = (format!("decoder.layers.{i}"), format!("{pre}h.{i}"));
        for (j, q) in ["q", "k", "v"].into_iter().enumerate() {
            plan(
                &mut p,
                format!("{dl}.self_attn.{q}.weight"),
                format!("{sl}.attn.c_attn.weight"),
                Op::TransposeRows(j * d, (j + 1) * d),
            );
            plan(
                &mut p,
                format!("{dl}.self_attn.{q}.bias"),
                format!("{sl}.attn.c_attn.bias"),
                Op::Rows(j * d, (j + 1) * d),
            );
        }
        plan(
            &mut p,
            format!("{dl}.self_attn.o.weight"),
            format!("{sl}.attn.c_proj.weight"),
            Op::Transpose,
        );
        plan(
            &mut p,
            format!("{dl}.self_attn.o.bias"),
            format!("{sl}.attn.c_proj.bias"),
            Op::Copy,
        );
        plan_norm(
            &mut p,
            src,
            &format!("{dl}.self_attn_norm"),
            &format!("{sl}.ln_1"),
        );
        plan(
            &mut p,
            format!("{dl}.ffn.up.weight"),
            format!("{sl}.mlp.c_fc.weight"),
            Op::Transpose,
        );
        plan(
            &mut p,
            format!("{dl}.ffn.up.bias"),
            format!("{sl}.mlp.c_fc.bias"),
            Op::Copy,
        );
        plan(
            &mut p,
            format!("{dl}.ffn.down.weight"),
            format!("{sl}.mlp.c_proj.weight"),
            Op::Transpose,
        );
        plan(
            &mut p,
            format!("{dl}.ffn.down.bias"),
            format!("{sl}.mlp.c_proj.bias"),
            Op::Copy,
        );
        plan_norm(
            &mut p,
            src,
            &format!("{dl}.ffn_norm"),
            &format!("{sl}.ln_2"),
        );
    }
    plan_norm(&mut p, src, "decoder.final_norm", &format!("{pre}ln_f"));
    if src.has("lm_head.weight") && !src.same("lm_head.weight", &format!("{pre}wte.weight"))? {
        plan(&mut p, "lm_head.weight", "lm_head.weight", Op::Copy);
    }
    Ok((Arch::DecoderOnly, c, p))
}

fn llama(hf: &Hf, src: &Sources) -> Result<(Arch, Config, Vec<Planned>)> {
    let d = hf.usize("hidden_size")?;
    let mut c = base_config(hf.usize("vocab_size")?, d);
    c.decoder_layers = hf.usize("num_hidden_layers")?;
    c.heads = hf.usize("num_attention_heads")?;
    c.kv_heads = hf.opt_usize("num_key_value_heads")?;
    c.head_dim = hf.opt_usize("head_dim")?;
    c.ffn_dim = hf.usize("intermediate_size")?;
    c.gated_ffn = true;
    c.activation = activation("hidden_act", hf.str("hidden_act").unwrap_or("silu"))?;
    c.norm = Norm::RmsNorm;
    c.norm_eps = hf.opt_f64("rms_norm_eps")?.unwrap_or(1e-6);
    c.positions = Positions::Rotary;
    let rope = &hf.0["rope_parameters"];
    let rope = if rope.is_object() {
        rope
    } else {
        &hf.0["rope_scaling"]
    };
    if let Some(kind) = rope["rope_type"].as_str().or(rope["type"].as_str())
        && kind != "default"
    {
        return Err(Error::bad_config(
            "rope_parameters.rope_type",
            format!("\"{kind}\" is not supported (only the default rotary scheme)"),
        ));
    }
    c.rope_theta = rope["rope_theta"]
        .as_f64()
        .or(hf.opt_f64("rope_theta")?)
        .unwrap_or(10_000.0);
    // Rotary positions have no table: like transformers, quill runs past max_position_embeddings
    // (max_positions 0 = no limit). A sliding window is a real limit: within it, sliding-window
    // attention is ordinary causal attention; beyond it quill would compute something else.
    c.max_positions = 0;
    if let Some(w) = hf.opt_usize("sliding_window")?
        && hf.opt_bool("use_sliding_window")? != Some(false)
        && w < hf.usize("max_position_embeddings")?
    {
        c.max_positions = w;
    }
    c.bos_id = hf.id("bos_token_id")?;
    c.eos_ids = hf.ids("eos_token_id")?;
    c.pad_id = hf.id("pad_token_id")?;
    let mut p = Vec::new();
    plan(
        &mut p,
        "embed.weight",
        "model.embed_tokens.weight",
        Op::Copy,
    );
    for i in 0..c.decoder_layers {
        let (dl, sl) = (format!("decoder.layers.{i}"), format!("model.layers.{i}"));
        for q in ["q", "k", "v", "o"] {
            plan_linear(
                &mut p,
                src,
                &format!("{dl}.self_attn.{q}"),
                &format!("{sl}.self_attn.{q}_proj"),
            );
        }
        plan_norm(
            &mut p,
            src,
            &format!("{dl}.self_attn_norm"),
            &format!("{sl}.input_layernorm"),
        );
        for f in ["gate", "up", "down"] {
            plan_linear(
                &mut p,
                src,
                &format!("{dl}.ffn.{f}"),
                &format!("{sl}.mlp.{f}_proj"),
            );
        }
        plan_norm(
            &mut p,
            src,
            &format!("{dl}.ffn_norm"),
            &format!("{sl}.post_attention_layernorm"),
        );
    }
    plan_norm(&mut p, src, "decoder.final_norm", "model.norm");
    if src.has("lm_head.weight") && !src.same("lm_head.weight", "model.embed_tokens.weight")? {
        plan(&mut p, "lm_head.weight", "lm_head.weight", Op::Copy);
    }
    Ok((Arch::DecoderOnly, c, p))
}

/// The source block of each of quill's gates i, f, g, o, from a gate order such as `ifgo`
/// (PyTorch), `ifco` (Keras: the same order, `c` names the candidate) or `ijfo` (TensorFlow's
/// LSTMCell, `j` the candidate).
fn gate_order(s: &str) -> Result<[usize; 4]> {
    let bad = || {
        Error::bad_config(
            "gate_order",
            format!(
                "\"{s}\": expected the four gates i, f, o and the candidate (g, c or j) in \
                     their stored order, e.g. ifgo (PyTorch), ifco (Keras), ijfo (TensorFlow)"
            ),
        )
    };
    let letters: Vec<char> = s.chars().collect();
    if letters.len() != 4 {
        return Err(bad());
    }
    let mut order = [usize::MAX; 4];
    for (pos, ch) in letters.iter().enumerate() {
        let gate = match ch {
            'i' => 0,
            'f' => 1,
            'g' | 'c' | 'j' => 2,
            'o' => 3,
            _ => return Err(bad()),
        };
        if order[gate] != usize::MAX {
            return Err(bad());
        }
        order[gate] = pos;
    }
    Ok(order)
}

/// PyTorch `nn.LSTM` seq2seq checkpoints with quill's reference layout (`docs/lstm.md`,
/// `tests/reference/lstm_reference.py`): `config.json` with `model_type: quill-lstm`.
fn lstm(hf: &Hf, src: &Sources) -> Result<(Arch, Config, Vec<Planned>)> {
    let (v, h) = (hf.usize("vocab_size")?, hf.usize("hidden_size")?);
    let mut c = base_config(v, h);
    c.embed_dim = hf.opt_usize("embed_dim")?.filter(|&e| e != h);
    c.encoder_layers = hf.usize("encoder_layers")?;
    c.decoder_layers = hf.usize("decoder_layers")?;
    c.bidirectional = hf.opt_bool("bidirectional")?.unwrap_or(false);
    c.input_feeding = hf.opt_bool("input_feeding")?.unwrap_or(false);
    c.positions = Positions::None;
    c.attention = Some(match hf.str("attention") {
        Some("dot") => crate::format::LstmAttention::Dot,
        Some("general") => crate::format::LstmAttention::General,
        Some("additive" | "mlp" | "bahdanau") => crate::format::LstmAttention::Additive,
        other => {
            return Err(Error::bad_config(
                "attention",
                format!("{other:?}: expected dot, general or additive"),
            ));
        }
    });
    c.pad_id = hf.id("pad_token_id")?;
    c.unk_id = hf.id("unk_token_id")?;
    c.bos_id = hf.id("bos_token_id")?;
    c.eos_ids = hf.ids("eos_token_id")?;
    c.decoder_start_id = hf.id("decoder_start_token_id")?.or(c.bos_id);
    let order = gate_order(hf.str("gate_order").unwrap_or("ifgo"))?;
    let keras = hf.str("layout") == Some("keras");
    let gates = |add: Option<String>, weight: bool| Op::LstmGates {
        order,
        add,
        transpose: keras && weight,
    };
    let mut p = Vec::new();
    plan(
        &mut p,
        "encoder.embed.weight",
        "encoder.embed.weight",
        Op::Copy,
    );
    plan(
        &mut p,
        "decoder.embed.weight",
        "decoder.embed.weight",
        Op::Copy,
    );
    // One LSTM layer (direction): weight_ih, weight_hh and the summed biases.
    let cell = |p: &mut Vec<Planned>, dst: &str, ih: String, hh: String, bi: String, bh: String| {
        plan(p, format!("{dst}.ih.weight"), ih, gates(None, true));
        plan(p, format!("{dst}.hh.weight"), hh, gates(None, true));
        let add = src.has(&bh).then_some(bh);
        plan(p, format!("{dst}.bias"), bi, gates(add, false));
    };
    for k in 0..c.encoder_layers {
        let dirs: &[(&str, &str)] = if c.bidirectional {
            &[("fwd", ""), ("bwd", "_reverse")]
        } else {
            &[("fwd", "")]
        };
        for (dir, sfx) in dirs {
            let s = |w: &str| format!("encoder.lstm.{w}_l{k}{sfx}");
            cell(
                &mut p,
                &format!("encoder.layers.{k}.{dir}"),
                s("weight_ih"),
                s("weight_hh"),
                s("bias_ih"),
                s("bias_hh"),
            );
        }
    }
    for k in 0..c.decoder_layers {
        let s = |w: &str| format!("decoder.cells.{k}.{w}");
        cell(
            &mut p,
            &format!("decoder.layers.{k}"),
            s("weight_ih"),
            s("weight_hh"),
            s("bias_ih"),
            s("bias_hh"),
        );
    }
    match c.attention {
        Some(crate::format::LstmAttention::General) => plan(
            &mut p,
            "decoder.attn.in.weight",
            "decoder.attn.linear_in.weight",
            Op::Copy,
        ),
        Some(crate::format::LstmAttention::Additive) => {
            plan_linear(&mut p, src, "decoder.attn.query", "decoder.attn.query");
            plan(
                &mut p,
                "decoder.attn.key.weight",
                "decoder.attn.context.weight",
                Op::Copy,
            );
            plan(
                &mut p,
                "decoder.attn.v.weight",
                "decoder.attn.v.weight",
                Op::Flatten,
            );
        }
        _ => {}
    }
    plan(
        &mut p,
        "decoder.attn.out.weight",
        "decoder.attn.linear_out.weight",
        Op::Copy,
    );
    let tied = hf.opt_bool("tie_output")?.unwrap_or(false) || !src.has("generator.weight");
    if !tied {
        plan(&mut p, "lm_head.weight", "generator.weight", Op::Copy);
    }
    if src.has("generator.bias") {
        plan(&mut p, "lm_head.bias", "generator.bias", Op::Copy);
    }
    Ok((Arch::LstmSeq2Seq, c, p))
}

/// Tensors whose quantization would hurt more than it saves (position tables, relative bias).
fn keep_float(name: &str) -> bool {
    name.ends_with("pos.weight") || name.ends_with("rel_bias.weight")
}

/// What `config.json` (and `generation_config.json`) say about a checkpoint whose tensors are
/// `src`: the model type, quill's architecture and validated configuration, and the tensors to
/// write. Reads no weight.
fn plan_conversion(
    cfg_json: &Value,
    generation: Option<&Value>,
    src: &Sources,
) -> Result<(String, Arch, Config, Vec<Planned>)> {
    let hf = Hf(cfg_json);
    let model_type = hf
        .str("model_type")
        .ok_or_else(|| Error::bad_config("model_type", "missing from config.json"))?
        .to_string();
    let (arch, mut config, plan) = match model_type.as_str() {
        "marian" | "bart" | "mbart" | "m2m_100" => bart_family(&hf, src, &model_type)?,
        "t5" => t5(&hf, src)?,
        "gpt2" => gpt2(&hf, src)?,
        "llama" | "mistral" | "qwen2" => llama(&hf, src)?,
        "quill-lstm" => lstm(&hf, src)?,
        other => {
            return Err(Error::bad_config(
                "model_type",
                format!(
                    "\"{other}\" is not supported (marian, bart, mbart, m2m_100, t5, gpt2, llama, mistral, qwen2, quill-lstm)"
                ),
            ));
        }
    };
    if let Some(g) = generation {
        // The generation config's ids win where the model config has none.
        let gh = Hf(g);
        if config.eos_ids.is_empty() {
            config.eos_ids = gh.ids("eos_token_id")?;
        }
        if config.decoder_start_id.is_none() {
            config.decoder_start_id = gh.id("decoder_start_token_id")?;
        }
        if config.bos_id.is_none() {
            config.bos_id = gh.id("bos_token_id")?;
        }
    }
    config.validate(arch)?;
    Ok((model_type, arch, config, plan))
}

/// The configuration stage of [`convert_hf`] on bytes instead of a directory: parses
/// `config_json` (and `generation_json`) against the tensors of `checkpoint` (a safetensors
/// file) and returns the architecture, configuration and number of tensors a conversion would
/// write. Reads no weight; what the fuzzer drives.
pub fn plan_from_bytes(
    config_json: &[u8],
    generation_json: Option<&[u8]>,
    checkpoint: &QuillFile,
) -> Result<(Arch, Config, usize)> {
    let parse = |what: &str, b: &[u8]| -> Result<Value> {
        serde_json::from_slice(b).map_err(|e| Error::bad_config(what, e.to_string()))
    };
    let cfg = parse("config.json", config_json)?;
    let generation = generation_json
        .map(|g| parse("generation_config.json", g))
        .transpose()?;
    let src = Sources::new(std::slice::from_ref(checkpoint));
    let (_, arch, config, plan) = plan_conversion(&cfg, generation.as_ref(), &src)?;
    Ok((arch, config, plan.len()))
}

/// Converts the checkpoint in `dir` and writes `out`. `progress(done, total)` is called after each
/// tensor.
pub fn convert_hf(
    dir: &Path,
    out: &Path,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ConvertReport> {
    let cfg_json = read_json(&dir.join("config.json"))?;
    let files = Sources::open(dir)?;
    let src = Sources::new(&files);
    let gen_path = dir.join("generation_config.json");
    let generation = if gen_path.exists() {
        Some(read_json(&gen_path)?)
    } else {
        None
    };
    let (model_type, arch, config, plan) = plan_conversion(&cfg_json, generation.as_ref(), &src)?;

    let mut w = Writer::quill(arch, &config)?;
    w.set_metadata(
        keys::PRODUCER,
        format!(
            "quill {} convert from Hugging Face {model_type} ({})",
            crate::VERSION,
            dir.display()
        ),
    );
    if let Some(g) = generation.as_ref().and_then(|g| g.as_object()) {
        let keep: serde_json::Map<String, Value> = g
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "transformers_version" | "_from_model_config"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        w.set_metadata(keys::GENERATION, Value::Object(keep).to_string());
    }
    let tokenizer = find_tokenizer(dir, &model_type)?;
    if let Some(t) = &tokenizer {
        w.set_tokenizer(t)?;
    }
    let mut reports = Vec::new();
    let total = plan.len();
    for (done, t) in plan.iter().enumerate() {
        let (dtype, shape, vals) = if t.source == FAIRSEQ_SINUSOIDS {
            let rows = config.max_positions + config.position_offset;
            (
                DType::F32,
                vec![rows, config.d_model],
                fairseq_sinusoids(rows, config.d_model, 1),
            )
        } else {
            src.load(&t.source)?
        };
        let vals = match &t.op {
            Op::LstmGates {
                add: Some(other), ..
            } => {
                let (_, s2, v2) = src.load(other)?;
                if s2 != shape {
                    return Err(Error::WrongTensorType {
                        tensor: other.clone(),
                        expected: format!("{shape:?} (as {})", t.source),
                        found: format!("{s2:?}"),
                    });
                }
                vals.iter().zip(&v2).map(|(a, b)| a + b).collect()
            }
            _ => vals,
        };
        let (shape, vals) = apply(&t.op, &t.source, &shape, vals)?;
        let is_matrix = shape.len() == 2 && !keep_float(&t.name);
        match (options.quantize, is_matrix) {
            (Some(target), true) => {
                let target = super::quantize::int4_policy(&t.name, target);
                reports.push(add_quantized(
                    &mut w,
                    &t.name,
                    dtype.as_str(),
                    &vals,
                    shape[0],
                    shape[1],
                    target,
                )?);
            }
            _ if is_matrix && dtype == DType::F16 => w.add_owned(
                &t.name,
                &shape,
                vals.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>(),
            )?,
            _ if is_matrix && dtype == DType::BF16 => w.add_owned(
                &t.name,
                &shape,
                vals.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>(),
            )?,
            _ => w.add_owned(&t.name, &shape, vals)?,
        }
        progress(done + 1, total);
    }
    w.write(out)?;
    Ok(ConvertReport {
        model_type,
        arch,
        tensors: total,
        quantization: reports,
    })
}

/// Source name standing for the computed fairseq position table (M2M100, NLLB).
const FAIRSEQ_SINUSOIDS: &str = "<fairseq sinusoids>";

/// fairseq's sinusoidal positions (M2M100, NLLB): `[rows, d]`, row `p`: `sin(p·f_i)` for
/// `i < d/2`, then `cos(p·f_i)`, with `f_i = exp(−i · ln(10000) / (d/2 − 1))`; the padding row
/// is zero. Computed in f64.
fn fairseq_sinusoids(rows: usize, d: usize, padding_idx: usize) -> Vec<f32> {
    let half = d / 2;
    let step = (10000f64).ln() / (half as f64 - 1.0).max(1.0);
    let mut t = vec![0f32; rows * d];
    for p in 0..rows {
        if p == padding_idx {
            continue;
        }
        for i in 0..half {
            let a = p as f64 * (-(i as f64) * step).exp();
            t[p * d + i] = a.sin() as f32;
            t[p * d + half + i] = a.cos() as f32;
        }
    }
    t
}

/// `tokenizer.json` when the checkpoint has one; else a SentencePiece model imported (T5:
/// `spiece.model`, appending `</s>`; Llama family: `tokenizer.model`, prepending `<s>`).
/// Marian's pair of `.spm` models with a shared `vocab.json` is not imported yet.
fn find_tokenizer(dir: &Path, model_type: &str) -> Result<Option<String>> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p.display().to_string(), e));
    let json = dir.join("tokenizer.json");
    if json.exists() {
        return String::from_utf8(read(&json)?)
            .map(Some)
            .map_err(|_| Error::bad_meta("tokenizer.json", "not UTF-8"));
    }
    #[cfg(feature = "tokenizer")]
    for file in ["spiece.model", "tokenizer.model"] {
        let p = dir.join(file);
        if p.exists() {
            let t5 = model_type == "t5";
            let sp = crate::tokenizer::sentencepiece::SpModel::parse(&read(&p)?)?;
            return sp.to_tokenizer_json(!t5, t5).map(Some);
        }
    }
    let _ = model_type;
    Ok(None)
}

fn apply(op: &Op, name: &str, shape: &[usize], vals: Vec<f32>) -> Result<(Vec<usize>, Vec<f32>)> {
    let bad = |what: &str| Error::WrongTensorType {
        tensor: name.into(),
        expected: what.into(),
        found: format!("shape {shape:?}"),
    };
    Ok(match op {
        Op::Copy => (shape.to_vec(), vals),
        Op::Flatten => (vec![vals.len()], vals),
        Op::Transpose | Op::TransposeRows(..) => {
            let [r, c] = shape[..] else {
                return Err(bad("a matrix"));
            };
            let (lo, hi) = match op {
                Op::TransposeRows(lo, hi) => (*lo, *hi),
                _ => (0, c),
            };
            if hi > c {
                return Err(bad(&format!("at least {hi} columns")));
            }
            let mut t = vec![0f32; (hi - lo) * r];
            for j in lo..hi {
                for i in 0..r {
                    t[(j - lo) * r + i] = vals[i * c + j];
                }
            }
            (vec![hi - lo, r], t)
        }
        Op::LstmGates {
            order, transpose, ..
        } => {
            let (shape, vals) = if *transpose {
                apply(&Op::Transpose, name, shape, vals)?
            } else {
                (shape.to_vec(), vals)
            };
            if shape.is_empty() || !shape[0].is_multiple_of(4) {
                return Err(bad("4·units rows (the four LSTM gates)"));
            }
            let block = vals.len() / 4;
            let mut out = Vec::with_capacity(vals.len());
            for &k in order {
                out.extend_from_slice(&vals[k * block..(k + 1) * block]);
            }
            (shape, out)
        }
        Op::Rows(lo, hi) => {
            if shape.len() != 1 || *hi > shape[0] {
                return Err(bad(&format!("a vector of at least {hi}")));
            }
            (vec![hi - lo], vals[*lo..*hi].to_vec())
        }
    })
}
