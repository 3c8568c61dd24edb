//! What `quill inspect` reports about a file: architecture, config, tensors by dtype, parameter
//! count, bytes and alignment.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::names;
use super::reader::QuillFile;
use crate::tensor::DType;

/// Tensors of one storage kind.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct KindTotals {
    pub tensors: usize,
    /// Logical parameters (an int4 byte holds two).
    pub params: u64,
    pub bytes: u64,
}

/// One tensor, as listed by `inspect --tensors`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TensorLine {
    pub name: String,
    /// Storage kind: F32, F16, BF16, Q8, Q4, or the raw dtype for other tensors.
    pub kind: String,
    pub shape: Vec<usize>,
    pub bytes: u64,
    /// Whether the tensor had to be copied because it was not 64-byte aligned.
    pub copied: bool,
}

/// The summary of a file.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub file_bytes: u64,
    pub header_bytes: u64,
    /// `quill.format`, or `None` for a plain safetensors file.
    pub format: Option<String>,
    pub arch: Option<String>,
    pub producer: Option<String>,
    pub config: Option<serde_json::Value>,
    pub generation: Option<serde_json::Value>,
    /// Size of the stored tokenizer JSON (and of the target tokenizer), if any.
    pub tokenizer_bytes: Option<u64>,
    pub target_tokenizer_bytes: Option<u64>,
    /// Totals per storage kind (weights' scales are counted with their weight).
    pub by_kind: BTreeMap<String, KindTotals>,
    pub params: u64,
    /// All 64-byte aligned in the source (zero copy), or the names that had to be copied.
    pub aligned: bool,
    pub copied: Vec<String>,
    pub tensors: Vec<TensorLine>,
}

impl Summary {
    pub fn of(file: &QuillFile) -> Summary {
        let meta = file.quill();
        let copied: Vec<String> = file.copied_tensors().map(str::to_string).collect();
        let mut by_kind: BTreeMap<String, KindTotals> = BTreeMap::new();
        let mut tensors = Vec::new();
        let is_quantized = |n: &str| {
            meta.is_some()
                && file
                    .tensor(n)
                    .is_ok_and(|t| matches!(t.dtype, DType::I8 | DType::U8))
                && !names::is_quill_data(n)
        };
        for t in file.tensors() {
            if names::is_quill_data(t.name) {
                continue;
            }
            let is_scale = t
                .name
                .strip_suffix(names::SCALE_SUFFIX)
                .is_some_and(is_quantized);
            if is_scale {
                continue;
            }
            let (kind, params, bytes) = if is_quantized(t.name) {
                let scale = file
                    .tensor(&format!("{}{}", t.name, names::SCALE_SUFFIX))
                    .map(|s| s.bytes.len() as u64)
                    .unwrap_or(0);
                let (kind, per_byte) = if t.dtype == DType::I8 {
                    ("Q8", 1)
                } else {
                    ("Q4", 2)
                };
                (
                    kind.to_string(),
                    t.bytes.len() as u64 * per_byte,
                    t.bytes.len() as u64 + scale,
                )
            } else {
                (t.dtype.to_string(), t.numel() as u64, t.bytes.len() as u64)
            };
            let k = by_kind.entry(kind.clone()).or_default();
            k.tensors += 1;
            k.params += params;
            k.bytes += bytes;
            tensors.push(TensorLine {
                name: t.name.to_string(),
                kind,
                shape: t.shape.to_vec(),
                bytes,
                copied: copied.iter().any(|c| c == t.name),
            });
        }
        let len = |s: Option<&str>| s.map(|s| s.len() as u64);
        Summary {
            file_bytes: file.file_len() as u64,
            header_bytes: 8 + file.header_len() as u64,
            format: meta.map(|m| m.format.clone()),
            arch: meta.map(|m| m.arch.as_str().to_string()),
            producer: meta.and_then(|m| m.producer.clone()),
            config: meta.map(|m| serde_json::to_value(&m.config).expect("config serializes")),
            generation: meta.and_then(|m| m.generation.clone().map(serde_json::Value::Object)),
            tokenizer_bytes: len(file.tokenizer_json()),
            target_tokenizer_bytes: len(file.target_tokenizer_json()),
            params: by_kind.values().map(|k| k.params).sum(),
            by_kind,
            aligned: copied.is_empty(),
            copied,
            tensors,
        }
    }
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.format, &self.arch) {
            (Some(v), Some(a)) => writeln!(f, "quill file, format {v}, architecture {a}")?,
            _ => writeln!(f, "plain safetensors file (no quill metadata)")?,
        }
        writeln!(
            f,
            "size        {} (header {})",
            human(self.file_bytes),
            human(self.header_bytes)
        )?;
        if let Some(p) = &self.producer {
            writeln!(f, "producer    {p}")?;
        }
        match (self.tokenizer_bytes, self.target_tokenizer_bytes) {
            (Some(s), Some(t)) => {
                writeln!(f, "tokenizer   source {}, target {}", human(s), human(t))?
            }
            (Some(s), None) => writeln!(f, "tokenizer   {}", human(s))?,
            _ => writeln!(f, "tokenizer   none")?,
        }
        writeln!(f, "parameters  {}", self.params)?;
        if let Some(c) = &self.config {
            writeln!(f, "config      {c}")?;
        }
        if let Some(g) = &self.generation {
            writeln!(f, "generation  {g}")?;
        }
        writeln!(f, "tensors by storage:")?;
        for (kind, k) in &self.by_kind {
            writeln!(
                f,
                "  {kind:<5} {:>5} tensors {:>14} params {:>12}",
                k.tensors,
                k.params,
                human(k.bytes)
            )?;
        }
        if self.aligned {
            writeln!(f, "alignment   every tensor 64-byte aligned (zero copy)")
        } else {
            writeln!(
                f,
                "alignment   {} tensors not 64-byte aligned, copied at open: {}",
                self.copied.len(),
                self.copied.join(", ")
            )
        }
    }
}
