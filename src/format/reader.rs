//! Opening and validating `.quill` (and plain safetensors) files.
//!
//! Validation happens once, in [`QuillFile::from_source`], and covers everything that can be
//! checked without reading tensor data: the header length, the header JSON, every dtype, shape,
//! offset and overlap, and — for quill files — the format version, the architecture, the config,
//! the tokenizer tensor and the pairing of every quantized weight with its scales. After that,
//! tensor views are plain slices: no later access can fail on a malformed file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::path::Path;

use super::header::parse_header;
use super::names::{self, SCALE_SUFFIX};
use super::{Arch, Config, FORMAT_MAJOR, keys};
use crate::error::{Error, Result};
use crate::tensor::bytes::{ALIGN, RawBytes, map_file};
use crate::tensor::{AlignedBuf, DType, Matrix, Q4_GROUP, TensorView, Weights};

/// Where a file's bytes live.
pub enum Source {
    /// A read-only memory map of a file (zero copy; see the hazard in `docs/format.md` §7).
    Mmap(memmap2::Mmap),
    /// Bytes quill owns, 64-byte aligned.
    Owned(AlignedBuf),
    /// Bytes with static lifetime (e.g. `include_bytes!`).
    Static(&'static [u8]),
    /// Bytes the caller owns and keeps alive (C API: open from memory).
    Raw(RawBytes),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Mmap(m) => m,
            Source::Owned(b) => b.as_slice(),
            Source::Static(s) => s,
            Source::Raw(r) => r.as_slice(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Source::Mmap(_) => "mmap",
            Source::Owned(_) => "memory",
            Source::Static(_) | Source::Raw(_) => "caller buffer",
        }
    }
}

/// The quill metadata of a validated quill file.
#[derive(Clone, Debug)]
pub struct QuillMeta {
    /// The `quill.format` string as found ("1", "1.2", ...).
    pub format: String,
    pub arch: Arch,
    pub config: Config,
    /// Default decoding options (`quill.generation`), a JSON object, if present.
    pub generation: Option<serde_json::Map<String, serde_json::Value>>,
    pub producer: Option<String>,
}

/// A checked reference to a weight matrix of one [`QuillFile`] (see [`QuillFile::matrix_ref`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixRef {
    data: usize,
    scales: Option<usize>,
}

struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    /// Byte range in `Source::bytes()` (absolute, already offset by the header).
    begin: usize,
    end: usize,
    /// Index into `copies` when the tensor was not 64-byte aligned in the source.
    copy: Option<usize>,
}

/// A validated safetensors file, and its quill metadata when it is a quill file.
pub struct QuillFile {
    source: Source,
    header_len: usize,
    /// Tensors in file order (by offset), padding included.
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    copies: Vec<AlignedBuf>,
    metadata: BTreeMap<String, String>,
    quill: Option<QuillMeta>,
}

impl fmt::Debug for QuillFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuillFile")
            .field("source", &self.source.kind())
            .field("len", &self.file_len())
            .field("tensors", &self.entries.len())
            .field("arch", &self.quill.as_ref().map(|q| q.arch))
            .finish()
    }
}

/// Memory for a whole model file, refused with `Error::OutOfMemory` when it is more than the
/// system has available (reading it would push the process into swap or the OOM killer) or the
/// allocator will not give it.
fn alloc_file(len: usize, shown: &str, hint: &str) -> Result<AlignedBuf> {
    let refuse =
        |why: String| Error::OutOfMemory(format!("{shown} is {len} bytes and {why}{hint}"));
    if let Some(avail) = crate::sys::available_memory()
        && len as u64 > avail
    {
        return Err(refuse(format!(
            "only {avail} bytes of memory are available"
        )));
    }
    AlignedBuf::try_zeroed(len).ok_or_else(|| refuse("the allocator refused that much".into()))
}

impl QuillFile {
    /// Opens `path` by memory map: zero copy, O(header).
    pub fn open(path: impl AsRef<Path>) -> Result<QuillFile> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|e| Error::io(&shown, e))?;
        let len = file.metadata().map_err(|e| Error::io(&shown, e))?.len();
        if len == 0 {
            // mmap of an empty file fails on some systems; say what is wrong instead.
            return Err(Error::Truncated(format!("{shown} is empty")));
        }
        let map = map_file(&file).map_err(|e| Error::io(&shown, e))?;
        Self::from_source(Source::Mmap(map)).map_err(|e| with_path(e, &shown))
    }

    /// Reads `path` into memory quill owns. Costs a read of the whole file, and in exchange the
    /// model is immune to the file being truncated or rewritten while in use.
    pub fn read(path: impl AsRef<Path>) -> Result<QuillFile> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let mut file = File::open(path).map_err(|e| Error::io(&shown, e))?;
        let len = file.metadata().map_err(|e| Error::io(&shown, e))?.len();
        let len = usize::try_from(len).map_err(|_| {
            Error::InvalidArgument(format!("{shown} is too large for this machine"))
        })?;
        let mut buf = alloc_file(
            len,
            &shown,
            ": open it memory-mapped instead (in_memory off)",
        )?;
        std::io::Read::read_exact(&mut file, buf.as_mut_slice())
            .map_err(|e| Error::io(&shown, e))?;
        Self::from_source(Source::Owned(buf)).map_err(|e| with_path(e, &shown))
    }

    /// Uses bytes with static lifetime in place (zero copy where they are 64-byte aligned).
    pub fn from_static(bytes: &'static [u8]) -> Result<QuillFile> {
        Self::from_source(Source::Static(bytes))
    }

    /// Copies `bytes` into aligned memory quill owns.
    pub fn from_bytes(bytes: &[u8]) -> Result<QuillFile> {
        let mut buf = alloc_file(bytes.len(), "the model bytes", "")?;
        buf.as_mut_slice().copy_from_slice(bytes);
        Self::from_source(Source::Owned(buf))
    }

    /// Uses a caller's buffer in place (zero copy where its tensors are 64-byte aligned, which
    /// they are when the buffer itself is).
    ///
    /// # Safety
    /// `ptr` must point at `len` readable bytes that stay valid and unchanged until the returned
    /// file and everything built from it are dropped.
    pub unsafe fn from_raw(ptr: *const u8, len: usize) -> Result<QuillFile> {
        // SAFETY: forwarded to our caller.
        Self::from_source(Source::Raw(unsafe { RawBytes::new(ptr, len) }))
    }

    /// Validates `source` completely; see the module docs for what is checked.
    pub fn from_source(source: Source) -> Result<QuillFile> {
        let bytes = source.bytes();
        let (header_len, raw) = parse_header(bytes)?;
        let data_start = 8 + header_len;
        let data_len = bytes.len() - data_start;

        let mut entries = Vec::with_capacity(raw.entries.len());
        let mut needed = 0u64;
        for (name, e) in raw.entries {
            let dtype = DType::parse(&e.dtype).ok_or_else(|| Error::UnknownDtype {
                tensor: name.clone(),
                dtype: e.dtype.clone(),
            })?;
            let [b, end] = e.data_offsets;
            if b > end {
                return Err(Error::bad_tensor(
                    &name,
                    format!("data_offsets [{b}, {end}] begin after they end"),
                ));
            }
            let numel = e
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .and_then(|n| n.checked_mul(dtype.size() as u64));
            if numel != Some(end - b) {
                let need = numel.map_or("more than 2^64".to_string(), |n| n.to_string());
                return Err(Error::bad_tensor(
                    &name,
                    format!(
                        "shape {:?} of {dtype} needs {need} bytes but data_offsets [{b}, {end}] hold {}",
                        e.shape,
                        end - b
                    ),
                ));
            }
            needed = needed.max(end);
            entries.push((name, dtype, e.shape, b, end));
        }
        if needed > data_len as u64 {
            let (name, ..) = entries.iter().find(|e| e.4 == needed).expect("max exists");
            return Err(Error::Truncated(format!(
                "tensor `{name}` ends at data byte {needed} but the file holds only {data_len} \
                 bytes of tensor data"
            )));
        }
        // Every offset now fits in the file, hence in usize.
        let mut entries: Vec<Entry> = entries
            .into_iter()
            .map(|(name, dtype, shape, b, e)| Entry {
                name,
                dtype,
                shape: shape.into_iter().map(|d| d as usize).collect(),
                begin: data_start + b as usize,
                end: data_start + e as usize,
                copy: None,
            })
            .collect();
        entries.sort_by_key(|e| (e.begin, e.end));
        let mut last: Option<&Entry> = None;
        for e in entries.iter().filter(|e| e.end > e.begin) {
            if let Some(p) = last
                && e.begin < p.end
            {
                return Err(Error::bad_tensor(
                    &e.name,
                    format!(
                        "bytes [{}, {}) overlap tensor `{}` [{}, {})",
                        e.begin - data_start,
                        e.end - data_start,
                        p.name,
                        p.begin - data_start,
                        p.end - data_start
                    ),
                ));
            }
            last = Some(e);
        }

        // Foreign writers do not align tensors: copy each such tensor once into aligned memory.
        let base = bytes.as_ptr() as usize;
        let mut copies = Vec::new();
        for e in &mut entries {
            if !(base + e.begin).is_multiple_of(ALIGN) && !names::is_reserved(&e.name) {
                e.copy = Some(copies.len());
                copies.push(AlignedBuf::copy_from(&bytes[e.begin..e.end]));
            }
        }
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let metadata = raw.metadata.unwrap_or_default();
        let mut file = QuillFile {
            source,
            header_len,
            entries,
            index,
            copies,
            metadata,
            quill: None,
        };
        file.quill = file.validate_quill()?;
        Ok(file)
    }

    /// The quill conventions, checked when the file says it is a quill file.
    fn validate_quill(&self) -> Result<Option<QuillMeta>> {
        let Some(format) = self.metadata.get(keys::FORMAT) else {
            if let Some(k) = self.metadata.keys().find(|k| k.starts_with("quill.")) {
                return Err(Error::bad_meta(
                    keys::FORMAT,
                    format!("missing, although the file has quill metadata (`{k}`)"),
                ));
            }
            return Ok(None);
        };
        let major = format.split('.').next().unwrap_or_default();
        let minor_ok = format.split('.').skip(1).all(|m| m.parse::<u32>().is_ok());
        match major.parse::<u32>() {
            Ok(FORMAT_MAJOR) if minor_ok && format.split('.').count() <= 2 => {}
            Ok(_) if minor_ok => {
                return Err(Error::UnsupportedVersion {
                    found: format.clone(),
                    supported: FORMAT_MAJOR,
                });
            }
            _ => {
                return Err(Error::bad_meta(
                    keys::FORMAT,
                    format!("expected a version like \"1\" or \"1.2\", found \"{format}\""),
                ));
            }
        }
        let get = |key: &str| {
            self.metadata
                .get(key)
                .ok_or_else(|| Error::bad_meta(key, "missing: a quill file must have it"))
        };
        let arch = Arch::parse(get(keys::ARCH)?)?;
        let config = Config::from_json(get(keys::CONFIG)?, arch)?;
        let generation = match self.metadata.get(keys::GENERATION) {
            None => None,
            Some(s) => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(serde_json::Value::Object(m)) => Some(m),
                Ok(_) => return Err(Error::bad_meta(keys::GENERATION, "must be a JSON object")),
                Err(e) => return Err(Error::bad_meta(keys::GENERATION, e.to_string())),
            },
        };

        let present: HashSet<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        for e in &self.entries {
            let name = e.name.as_str();
            if names::is_reserved(name) || names::is_quill_data(name) {
                if e.dtype != DType::U8 || e.shape.len() != 1 {
                    return Err(Error::bad_tensor(
                        name,
                        format!(
                            "must be U8 with one dimension, found {} {:?}",
                            e.dtype, e.shape
                        ),
                    ));
                }
                if names::is_quill_data(name)
                    && name.starts_with(names::TOKENIZER)
                    && std::str::from_utf8(self.raw_bytes(e)).is_err()
                {
                    return Err(Error::bad_tensor(name, "tokenizer JSON is not valid UTF-8"));
                }
                continue;
            }
            match e.dtype {
                DType::F32 | DType::F16 | DType::BF16 => {
                    // A float tensor named `*.scale` is the scale of a quantized weight, checked
                    // with that weight, or an ordinary parameter that happens to end so.
                }
                DType::I8 | DType::U8 => self.check_quantized(e, &present)?,
                other => {
                    return Err(Error::bad_tensor(
                        name,
                        format!(
                            "dtype {other} is not used in quill files (F32, F16, BF16, I8, U8)"
                        ),
                    ));
                }
            }
        }
        Ok(Some(QuillMeta {
            format: format.clone(),
            arch,
            config,
            generation,
            producer: self.metadata.get(keys::PRODUCER).cloned(),
        }))
    }

    /// An I8 tensor is an int8 weight and a U8 tensor an int4 weight; each needs its scales.
    fn check_quantized(&self, e: &Entry, present: &HashSet<&str>) -> Result<()> {
        let (kind, scale_dtype) = if e.dtype == DType::I8 {
            ("int8", DType::F32)
        } else {
            ("int4", DType::F16)
        };
        let [rows, stored_cols] = e.shape[..] else {
            return Err(Error::bad_quant(
                &e.name,
                format!(
                    "an {kind} weight must be a matrix, found shape {:?}",
                    e.shape
                ),
            ));
        };
        let scale_name = format!("{}{SCALE_SUFFIX}", e.name);
        if !present.contains(scale_name.as_str()) {
            return Err(Error::bad_quant(
                &e.name,
                format!("{kind} weight without its scales (tensor `{scale_name}` is missing)"),
            ));
        }
        let s = &self.entries[self.index[&scale_name]];
        let expected: Vec<usize> = if e.dtype == DType::I8 {
            vec![rows]
        } else {
            if stored_cols % (Q4_GROUP / 2) != 0 {
                return Err(Error::bad_quant(
                    &e.name,
                    format!(
                        "int4 rows hold {} values, not a multiple of the group size {Q4_GROUP}",
                        stored_cols * 2
                    ),
                ));
            }
            vec![rows, stored_cols * 2 / Q4_GROUP]
        };
        if s.dtype != scale_dtype || s.shape != expected {
            return Err(Error::bad_quant(
                &e.name,
                format!(
                    "scales `{scale_name}` must be {scale_dtype} {expected:?}, found {} {:?}",
                    s.dtype, s.shape
                ),
            ));
        }
        Ok(())
    }

    fn raw_bytes(&self, e: &Entry) -> &[u8] {
        match e.copy {
            Some(i) => self.copies[i].as_slice(),
            None => &self.source.bytes()[e.begin..e.end],
        }
    }

    fn view<'a>(&'a self, e: &'a Entry) -> TensorView<'a> {
        TensorView {
            name: &e.name,
            dtype: e.dtype,
            shape: &e.shape,
            bytes: self.raw_bytes(e),
        }
    }

    /// The quill metadata, or `None` for a plain safetensors file.
    pub fn quill(&self) -> Option<&QuillMeta> {
        self.quill.as_ref()
    }

    /// The quill metadata, or an error saying this is not a quill file.
    pub fn require_quill(&self) -> Result<&QuillMeta> {
        self.quill.as_ref().ok_or_else(|| {
            Error::bad_meta(
                keys::FORMAT,
                "missing: this is a plain safetensors file, not a quill model (convert it with \
                 `quill convert`)",
            )
        })
    }

    /// All `__metadata__` entries.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The tensor `name`.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        match self.index.get(name) {
            Some(&i) if !names::is_reserved(name) => Ok(self.view(&self.entries[i])),
            _ => Err(Error::MissingTensor(name.to_string())),
        }
    }

    /// Whether the file has tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        !names::is_reserved(name) && self.index.contains_key(name)
    }

    /// Every tensor in file order, padding excluded.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.entries
            .iter()
            .filter(|e| !names::is_reserved(&e.name))
            .map(|e| self.view(e))
    }

    /// The weight matrix `name` in whatever layout it is stored (F32, F16, BF16, Q8, Q4).
    pub fn matrix(&self, name: &str) -> Result<Matrix<'_>> {
        self.matrix_at(self.matrix_ref(name)?)
    }

    /// A cheap, copyable handle to the weight matrix `name`, checked now; [`QuillFile::resolve`]
    /// turns it into a [`Matrix`] without a name lookup (the runtime keeps these per layer).
    pub fn matrix_ref(&self, name: &str) -> Result<MatrixRef> {
        let data = match self.index.get(name) {
            Some(&i) if !names::is_reserved(name) => i,
            _ => return Err(Error::MissingTensor(name.to_string())),
        };
        let quantized = matches!(self.entries[data].dtype, DType::I8 | DType::U8);
        let scales = if quantized {
            let s = format!("{name}{SCALE_SUFFIX}");
            Some(*self.index.get(&s).ok_or(Error::MissingTensor(s))?)
        } else {
            None
        };
        let r = MatrixRef { data, scales };
        self.matrix_at(r)?;
        Ok(r)
    }

    /// The matrix behind a reference made by this file's [`QuillFile::matrix_ref`].
    pub fn resolve(&self, r: MatrixRef) -> Matrix<'_> {
        self.matrix_at(r)
            .expect("checked when the reference was made")
    }

    fn matrix_at(&self, r: MatrixRef) -> Result<Matrix<'_>> {
        let e = &self.entries[r.data];
        let t = self.view(e);
        let name = t.name;
        let [rows, stored_cols] = t.shape[..] else {
            return Err(Error::WrongTensorType {
                tensor: name.to_string(),
                expected: "a matrix".into(),
                found: format!("shape {:?}", t.shape),
            });
        };
        let scales = || match r.scales {
            Some(i) => Ok(self.view(&self.entries[i])),
            None => Err(Error::MissingTensor(format!("{name}{SCALE_SUFFIX}"))),
        };
        let (cols, weights) = match t.dtype {
            DType::F32 => (stored_cols, Weights::F32(t.as_slice()?)),
            DType::F16 => (stored_cols, Weights::F16(t.as_slice()?)),
            DType::BF16 => (stored_cols, Weights::BF16(t.as_slice()?)),
            DType::I8 => (
                stored_cols,
                Weights::Q8 {
                    q: t.as_slice()?,
                    scales: scales()?.as_slice()?,
                },
            ),
            DType::U8 => (
                stored_cols * 2,
                Weights::Q4 {
                    packed: t.as_slice()?,
                    scales: scales()?.as_slice()?,
                },
            ),
            other => {
                return Err(Error::WrongTensorType {
                    tensor: name.to_string(),
                    expected: "a weight matrix (F32, F16, BF16, I8, U8)".into(),
                    found: other.to_string(),
                });
            }
        };
        // In a quill file the pairing was validated at open; check again for plain files.
        let scale_len = match weights {
            Weights::Q8 { scales, .. } => Some((scales.len(), rows)),
            Weights::Q4 { scales, .. } => Some((scales.len(), rows * cols.div_ceil(Q4_GROUP))),
            _ => None,
        };
        if let Some((have, want)) = scale_len
            && (have != want || !cols.is_multiple_of(Q4_GROUP) && t.dtype == DType::U8)
        {
            return Err(Error::bad_quant(
                name,
                format!("{have} scales, expected {want}"),
            ));
        }
        Ok(Matrix {
            rows,
            cols,
            weights,
        })
    }

    /// The tokenizer JSON stored in the file, if any.
    pub fn tokenizer_json(&self) -> Option<&str> {
        self.text_tensor(names::TOKENIZER)
    }

    /// The separate target-side tokenizer JSON, if any.
    pub fn target_tokenizer_json(&self) -> Option<&str> {
        self.text_tensor(names::TARGET_TOKENIZER)
    }

    fn text_tensor(&self, name: &str) -> Option<&str> {
        let t = self.tensor(name).ok()?;
        std::str::from_utf8(t.bytes).ok()
    }

    /// Names of the tensors that were not 64-byte aligned in the source and were copied.
    pub fn copied_tensors(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| e.copy.is_some() && !names::is_reserved(&e.name))
            .map(|e| e.name.as_str())
    }

    /// Total size of the source in bytes.
    pub fn file_len(&self) -> usize {
        self.source.bytes().len()
    }

    /// Length of the JSON header (after the 8-byte length prefix), padding included.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Asks the kernel to read the mapped file ahead (first tokens then do not wait on page
    /// faults). No effect for files in memory.
    pub fn prefetch(&self) {
        if let Source::Mmap(m) = &self.source {
            let _ = m.advise(memmap2::Advice::WillNeed);
        }
    }

    /// How the bytes are held: "mmap", "memory" or "caller buffer".
    pub fn source_kind(&self) -> &'static str {
        self.source.kind()
    }

    /// Bytes of aligned copies made at open (0 for a file quill wrote, opened in place).
    pub fn copied_bytes(&self) -> usize {
        self.copies.iter().map(|c| c.len()).sum()
    }
}

fn with_path(e: Error, path: &str) -> Error {
    match e {
        Error::Truncated(m) => Error::Truncated(format!("{path}: {m}")),
        Error::BadHeader(m) => Error::BadHeader(format!("{path}: {m}")),
        other => other,
    }
}
