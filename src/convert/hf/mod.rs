//! Import of Hugging Face checkpoints (`config.json` + `model.safetensors`, sharded or not,
//! `generation_config.json`, `tokenizer.json`) into a `.quill` file with quill's canonical names
//! (`docs/architectures.md`).
//!
//! Supported `model_type`s: `marian`, `bart`, `mbart`, `pegasus`, `m2m_100` (M2M100, NLLB), `t5` (v1.0
//! and v1.1 / flan), `mt5`, `gpt2`, `llama`, `mistral`, `qwen2`, `qwen3`, `phi3`, `gemma`, `gemma2`; one file per family here. A
//! configuration quill cannot run exactly is refused with a message naming the field and its
//! value. Try it: `quill convert ./opus-mt-en-de out.quill --quantize int8`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use serde_json::Value;

mod bart;
mod gemma;
mod gpt2;
mod llama;
mod phi3;
mod t5;

use super::quantize::{Target, add_quantized};
use super::torch_lstm;
use crate::error::{Error, Result};
use crate::format::{Activation, Arch, Config, Norm, Positions, QuillFile, Writer, keys};
use crate::tensor::DType;
use bart::{FAIRSEQ_SINUSOIDS, fairseq_sinusoids};

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
pub(crate) enum Op {
    Copy,
    /// `[in, out]` (GPT-2's Conv1D) → `[out, in]`.
    Transpose,
    /// Rows `[start, end)` of the transposed tensor (GPT-2's fused `c_attn`).
    TransposeRows(usize, usize),
    /// Rows `[start, end)` of a matrix (a fused projection), or entries of a vector.
    Rows(usize, usize),
    /// `[1, n]` → `[n]`.
    Flatten,
    /// Each entry plus one (Gemma's RMSNorm scales by `1 + weight`).
    PlusOne,
    /// LSTM gate weights or biases: transposed first when `transpose` (Keras kernels
    /// `[in, 4h]`), `add` summed in (PyTorch keeps `bias_ih` and `bias_hh`), then the four row
    /// blocks reordered to quill's i, f, g, o: block `order[k]` of the source is gate `k`.
    LstmGates {
        order: [usize; 4],
        add: Option<String>,
        transpose: bool,
    },
}

pub(crate) struct Planned {
    pub name: String,
    pub source: String,
    pub op: Op,
}

/// The checkpoint's tensors, possibly spread over shards.
pub(crate) struct Sources<'a> {
    files: Vec<&'a QuillFile>,
    index: BTreeMap<String, usize>,
}

impl<'a> Sources<'a> {
    /// The checkpoint files of `dir` (one, or the shards its index names), opened.
    pub(crate) fn open(dir: &Path) -> Result<Vec<QuillFile>> {
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

    pub(crate) fn new(files: &'a [QuillFile]) -> Sources<'a> {
        let files: Vec<&QuillFile> = files.iter().collect();
        let mut index = BTreeMap::new();
        for (i, f) in files.iter().enumerate() {
            for t in f.tensors() {
                index.insert(t.name.to_string(), i);
            }
        }
        Sources { files, index }
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The layer count `n` read from `field`, refused when the checkpoint cannot hold that many
    /// layers (each has tensors of its own): planned before the configuration is validated, a
    /// hostile count would otherwise plan billions of tensors.
    pub(crate) fn layers(&self, field: &str, n: usize) -> Result<usize> {
        if n > self.index.len() {
            return Err(Error::bad_config(
                field,
                format!(
                    "{n} layers, but the checkpoint holds {} tensors in all",
                    self.index.len()
                ),
            ));
        }
        Ok(n)
    }

    /// `(dtype, shape, values as f32)`.
    pub(crate) fn load(&self, name: &str) -> Result<(DType, Vec<usize>, Vec<f32>)> {
        let f = &self.files[*self
            .index
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.into()))?];
        let t = f.tensor(name)?;
        Ok((t.dtype, t.shape.to_vec(), t.to_f32_vec()?))
    }

    pub(crate) fn same(&self, a: &str, b: &str) -> Result<bool> {
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
pub(crate) struct Hf<'a>(pub(crate) &'a Value);

impl Hf<'_> {
    pub(crate) fn opt_usize(&self, k: &str) -> Result<Option<usize>> {
        match &self.0[k] {
            Value::Null => Ok(None),
            v => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                Error::bad_config(k, format!("expected a non-negative integer, found {v}"))
            }),
        }
    }
    pub(crate) fn usize(&self, k: &str) -> Result<usize> {
        self.opt_usize(k)?
            .ok_or_else(|| Error::bad_config(k, "missing from config.json"))
    }
    pub(crate) fn opt_f64(&self, k: &str) -> Result<Option<f64>> {
        match &self.0[k] {
            Value::Null => Ok(None),
            v => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| Error::bad_config(k, format!("expected a number, found {v}"))),
        }
    }
    pub(crate) fn opt_bool(&self, k: &str) -> Result<Option<bool>> {
        match &self.0[k] {
            Value::Null => Ok(None),
            v => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| Error::bad_config(k, format!("expected true or false, found {v}"))),
        }
    }
    pub(crate) fn str(&self, k: &str) -> Option<&str> {
        self.0[k].as_str()
    }
    pub(crate) fn id(&self, k: &str) -> Result<Option<u32>> {
        Ok(self.opt_usize(k)?.map(|v| v as u32))
    }
    /// An id or a list of ids (`eos_token_id`).
    pub(crate) fn ids(&self, k: &str) -> Result<Vec<u32>> {
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
}

pub(crate) fn activation(field: &str, name: &str) -> Result<Activation> {
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

pub(crate) fn base_config(vocab: usize, d: usize) -> Config {
    Config {
        vocab_size: vocab,
        d_model: d,
        encoder_layers: 0,
        decoder_layers: 0,
        heads: 0,
        kv_heads: None,
        head_dim: None,
        ffn_dim: 0,
        decoder_heads: None,
        decoder_ffn_dim: None,
        activation: Activation::Gelu,
        gated_ffn: false,
        norm: Norm::LayerNorm,
        norm_eps: 1e-5,
        pre_norm: true,
        positions: Positions::Learned,
        max_positions: 0,
        position_offset: 0,
        rope_theta: 10_000.0,
        rope_scaling: None,
        rope_interleaved: false,
        relative_buckets: 0,
        relative_max_distance: 0,
        sliding_window: 0,
        sliding_layers: Vec::new(),
        attn_softcap: 0.0,
        final_softcap: 0.0,
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

pub(crate) fn plan(
    out: &mut Vec<Planned>,
    name: impl Into<String>,
    source: impl Into<String>,
    op: Op,
) {
    out.push(Planned {
        name: name.into(),
        source: source.into(),
        op,
    });
}

/// Linear layer `src.{weight,bias}` → `dst.{weight,bias}` (bias only if present).
pub(crate) fn plan_linear(out: &mut Vec<Planned>, src: &Sources, dst: &str, s: &str) {
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

pub(crate) fn plan_norm(out: &mut Vec<Planned>, src: &Sources, dst: &str, s: &str) {
    plan_linear(out, src, dst, s);
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
        "marian" | "bart" | "mbart" | "pegasus" | "m2m_100" => {
            bart::bart_family(&hf, src, &model_type)?
        }
        "t5" | "mt5" => t5::t5(&hf, src)?,
        "gpt2" => gpt2::gpt2(&hf, src)?,
        "llama" | "mistral" | "qwen2" => llama::llama(&hf, src, false)?,
        "qwen3" => llama::llama(&hf, src, true)?,
        "phi3" => phi3::phi3(&hf, src)?,
        "gemma" => gemma::gemma(&hf, src, false)?,
        "gemma2" => gemma::gemma(&hf, src, true)?,
        "quill-lstm" => torch_lstm::lstm(&hf, src)?,
        other => {
            return Err(Error::bad_config(
                "model_type",
                format!(
                    "\"{other}\" is not supported (marian, bart, mbart, pegasus, m2m_100, t5, mt5, gpt2, llama, mistral, qwen2, qwen3, phi3, gemma, gemma2, quill-lstm)"
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
    if let Some(spec) = find_chat_template(dir)? {
        w.set_metadata(keys::CHAT_TEMPLATE, spec.to_string());
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
        let is_matrix = shape.len() == 2 && !crate::format::names::keep_float(&t.name);
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

/// The chat template of a checkpoint, as `quill.chat_template` stores it (`{"template",
/// "bos_token", "eos_token"}`): `chat_template.jinja` (what `transformers` writes since 4.43),
/// else `tokenizer_config.json`'s `chat_template` (a string, or a list of named templates: the
/// one named `default`). The special tokens come from `tokenizer_config.json` (a string or an
/// added-token object with `content`). The template is compiled here, so a broken one fails the
/// conversion rather than the first chat.
fn find_chat_template(dir: &Path) -> Result<Option<Value>> {
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg = if cfg_path.exists() {
        read_json(&cfg_path)?
    } else {
        Value::Null
    };
    let jinja = dir.join("chat_template.jinja");
    let template = if jinja.exists() {
        Some(
            std::fs::read_to_string(&jinja)
                .map_err(|e| Error::io(jinja.display().to_string(), e))?,
        )
    } else {
        match &cfg["chat_template"] {
            Value::Null => None,
            Value::String(t) => Some(t.clone()),
            Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(String::from),
            other => {
                return Err(Error::bad_config(
                    "chat_template",
                    format!("expected a string or a list of named templates, found {other}"),
                ));
            }
        }
    };
    let Some(template) = template else {
        return Ok(None);
    };
    let token = |k: &str| match &cfg[k] {
        Value::String(s) => Some(s.clone()),
        v => v["content"].as_str().map(String::from),
    };
    let spec = serde_json::json!({
        "template": template,
        "bos_token": token("bos_token"),
        "eos_token": token("eos_token"),
    });
    #[cfg(feature = "chat")]
    crate::chat::ChatTemplate::new(
        serde_json::from_value(spec.clone()).expect("the fields of TemplateSpec"),
    )?;
    Ok(Some(spec))
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
        Op::PlusOne => (shape.to_vec(), vals.into_iter().map(|v| v + 1.0).collect()),
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
            // Rows of a matrix (a fused projection split), or entries of a vector.
            if shape.is_empty() || shape.len() > 2 || *hi > shape[0] {
                return Err(bad(&format!("a vector or matrix of at least {hi} rows")));
            }
            let width = shape.get(1).copied().unwrap_or(1);
            let mut out_shape = shape.to_vec();
            out_shape[0] = hi - lo;
            (out_shape, vals[lo * width..hi * width].to_vec())
        }
    })
}
