//! Writing `.quill` files: the trainer, the converter and the quantizer all end here.
//!
//! Tensors are laid out in the order they were added, each starting on a 64-byte boundary
//! (gaps are covered by `__pad.N` U8 tensors, so the data section stays one contiguous run of
//! tensors, as safetensors requires), and the header is padded with spaces so that the data
//! section starts 64-byte aligned too.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;

use half::f16;

use super::names::{self, SCALE_SUFFIX};
use super::{Arch, Config, FORMAT_MAJOR, keys};
use crate::error::{Error, Result};
use crate::tensor::bytes::{ALIGN, as_bytes};
use crate::tensor::{DType, Element, Matrix, Q4_GROUP, Weights};

struct Pending<'a> {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

/// Collects metadata and tensors, then writes an aligned file.
#[derive(Default)]
pub struct Writer<'a> {
    metadata: BTreeMap<String, String>,
    tensors: Vec<Pending<'a>>,
    names: HashSet<String>,
}

impl<'a> Writer<'a> {
    /// A writer for a plain safetensors file (no quill metadata).
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer for a quill model: sets `quill.format`, `quill.arch` and `quill.config`.
    pub fn quill(arch: Arch, config: &Config) -> Result<Self> {
        config.validate(arch)?;
        let mut w = Self::new();
        w.set_metadata(keys::FORMAT, FORMAT_MAJOR.to_string());
        w.set_metadata(keys::ARCH, arch.as_str());
        w.set_metadata(keys::CONFIG, config.to_json());
        Ok(w)
    }

    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    /// Adds a tensor from raw little-endian bytes.
    pub fn add_raw(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[usize],
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<()> {
        let data = data.into();
        if names::is_reserved(name) {
            return Err(Error::InvalidArgument(format!(
                "tensor name `{name}`: names starting with `__` are reserved"
            )));
        }
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel.and_then(|n| n.checked_mul(dtype.size())) != Some(data.len()) {
            return Err(Error::InvalidArgument(format!(
                "tensor `{name}`: shape {shape:?} of {dtype} does not match {} bytes",
                data.len()
            )));
        }
        if name == "__metadata__" || !self.names.insert(name.to_string()) {
            return Err(Error::InvalidArgument(format!(
                "tensor `{name}` added twice"
            )));
        }
        self.tensors.push(Pending {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            data,
        });
        Ok(())
    }

    /// Adds a tensor of `T` elements (borrowed: nothing is copied until written).
    pub fn add<T: Element>(&mut self, name: &str, shape: &[usize], data: &'a [T]) -> Result<()> {
        self.add_raw(name, T::DTYPE, shape, as_bytes(data))
    }

    /// Adds a tensor of `T` elements that the writer keeps.
    pub fn add_owned<T: Element>(
        &mut self,
        name: &str,
        shape: &[usize],
        data: Vec<T>,
    ) -> Result<()> {
        let bytes = as_bytes(&data).to_vec();
        self.add_raw(name, T::DTYPE, shape, bytes)
    }

    /// Adds an int8 weight `[rows, cols]` with one f32 scale per row.
    pub fn add_q8(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        q: Vec<i8>,
        scales: Vec<f32>,
    ) -> Result<()> {
        if scales.len() != rows {
            return Err(Error::InvalidArgument(format!(
                "tensor `{name}`: {} scales for {rows} rows",
                scales.len()
            )));
        }
        self.add_owned(name, &[rows, cols], q)?;
        self.add_owned(&format!("{name}{SCALE_SUFFIX}"), &[rows], scales)
    }

    /// Adds an int4 weight `[rows, cols]` (`cols` a multiple of 32): `packed` holds two values per
    /// byte, `scales` one f16 per group of 32 along each row.
    pub fn add_q4(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        packed: Vec<u8>,
        scales: Vec<f16>,
    ) -> Result<()> {
        if !cols.is_multiple_of(Q4_GROUP) || scales.len() != rows * cols / Q4_GROUP {
            return Err(Error::InvalidArgument(format!(
                "tensor `{name}`: int4 needs cols a multiple of {Q4_GROUP} and one scale per group \
                 ({rows}x{cols}, {} scales)",
                scales.len()
            )));
        }
        self.add_owned(name, &[rows, cols / 2], packed)?;
        self.add_owned(
            &format!("{name}{SCALE_SUFFIX}"),
            &[rows, cols / Q4_GROUP],
            scales,
        )
    }

    /// Adds a weight matrix in the layout it already has (copying a model file tensor by tensor).
    pub fn add_matrix(&mut self, name: &str, m: &Matrix<'a>) -> Result<()> {
        let shape = [m.rows, m.cols];
        match m.weights {
            Weights::F32(w) => self.add(name, &shape, w),
            Weights::F16(w) => self.add(name, &shape, w),
            Weights::BF16(w) => self.add(name, &shape, w),
            Weights::Q8 { q, scales } => {
                self.add(name, &shape, q)?;
                self.add(&format!("{name}{SCALE_SUFFIX}"), &[m.rows], scales)
            }
            Weights::Q4 { packed, scales } => {
                self.add(name, &[m.rows, m.cols / 2], packed)?;
                self.add(
                    &format!("{name}{SCALE_SUFFIX}"),
                    &[m.rows, m.cols / Q4_GROUP],
                    scales,
                )
            }
        }
    }

    /// Stores the tokenizer JSON (`tokenizer.json` semantics) in the file.
    pub fn set_tokenizer(&mut self, json: &'a str) -> Result<()> {
        self.add_raw(names::TOKENIZER, DType::U8, &[json.len()], json.as_bytes())
    }

    /// Stores a separate target-side tokenizer.
    pub fn set_target_tokenizer(&mut self, json: &'a str) -> Result<()> {
        self.add_raw(
            names::TARGET_TOKENIZER,
            DType::U8,
            &[json.len()],
            json.as_bytes(),
        )
    }

    /// The header JSON (unpadded) and the data offset of each tensor.
    fn layout(&self) -> (String, Vec<usize>, usize) {
        let mut header = String::from("{");
        if !self.metadata.is_empty() {
            header.push_str("\"__metadata__\":");
            header.push_str(&serde_json::to_string(&self.metadata).expect("strings serialize"));
        }
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut cursor = 0usize;
        let mut pads = 0usize;
        let entry =
            |header: &mut String, name: &str, dtype: DType, shape: &[usize], b: usize, e: usize| {
                if header.len() > 1 {
                    header.push(',');
                }
                let name = serde_json::to_string(name).expect("strings serialize");
                let shape = serde_json::to_string(shape).expect("numbers serialize");
                header.push_str(&format!(
                    "{name}:{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{b},{e}]}}"
                ));
            };
        for t in &self.tensors {
            let gap = cursor.next_multiple_of(ALIGN) - cursor;
            if gap > 0 {
                let pad = format!("{}{pads}", names::PAD_PREFIX);
                entry(&mut header, &pad, DType::U8, &[gap], cursor, cursor + gap);
                pads += 1;
                cursor += gap;
            }
            entry(
                &mut header,
                &t.name,
                t.dtype,
                &t.shape,
                cursor,
                cursor + t.data.len(),
            );
            offsets.push(cursor);
            cursor += t.data.len();
        }
        header.push('}');
        // Pad with spaces (allowed by safetensors) so the data starts 64-byte aligned.
        let total = (8 + header.len()).next_multiple_of(ALIGN);
        header.extend(std::iter::repeat_n(' ', total - 8 - header.len()));
        (header, offsets, cursor)
    }

    /// Writes the file to `out`.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let (header, offsets, _) = self.layout();
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(header.as_bytes())?;
        let zeros = [0u8; ALIGN];
        let mut cursor = 0;
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            out.write_all(&zeros[..off - cursor])?;
            out.write_all(&t.data)?;
            cursor = off + t.data.len();
        }
        Ok(())
    }

    /// The whole file in memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v).expect("writing to a Vec cannot fail");
        v
    }

    /// Writes the file to `path` atomically: a temporary file beside it, then a rename, so a
    /// reader never sees half a model.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let result = (|| {
            let mut out = AlignedChunks::new(std::fs::File::create(&tmp)?, WRITE_CHUNK);
            self.write_to(&mut out)?;
            out.finish()?.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(shown, e));
        }
        Ok(())
    }
}

/// Bytes of each `write` of [`AlignedChunks`].
const WRITE_CHUNK: usize = 4 << 20;

/// A buffered writer whose writes are all `chunk` bytes ([`WRITE_CHUNK`] for files) at offsets
/// that are multiples of it (but the last). `BufWriter` hands large writes straight through at whatever offset they
/// start; with aligned 4 MiB writes, Linux keeps a new file in the page cache as 2 MiB folios,
/// which a later mmap maps several times faster than small ones (populating the 62 MB map of a
/// Marian-base int8 model: 0.1–0.7 ms after aligned 4 MiB writes, 2.7–3.3 ms after 1 MiB
/// writes starting past the header, 4 ms after 64 KiB writes; ext4, Linux 6.18) — the first
/// token after opening a file the converter just wrote, on the machine that wrote it.
struct AlignedChunks<W: Write> {
    inner: W,
    buf: Vec<u8>,
    chunk: usize,
}

impl<W: Write> AlignedChunks<W> {
    fn new(inner: W, chunk: usize) -> Self {
        AlignedChunks {
            inner,
            buf: Vec::with_capacity(chunk),
            chunk,
        }
    }

    /// Writes what is buffered and returns the inner writer.
    fn finish(mut self) -> std::io::Result<W> {
        self.inner.write_all(&self.buf)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for AlignedChunks<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(self.chunk - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.chunk {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }

    /// Only [`AlignedChunks::finish`] writes a partial chunk; this flushes the inner writer.
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::*;

    /// Records the length of every write it is given.
    struct Lens(Vec<u8>, Vec<usize>);

    impl Write for Lens {
        fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(d);
            self.1.push(d.len());
            Ok(d.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn aligned_chunks_write_whole_chunks_and_keep_the_bytes() {
        // A small chunk: the test also runs under Miri (CI's `format::` tests).
        const C: usize = 64;
        let data: Vec<u8> = (0..2 * C + 45).map(|i| (i % 251) as u8).collect();
        let mut w = AlignedChunks::new(Lens(Vec::new(), Vec::new()), C);
        // Pieces of every size, one larger than a chunk.
        for piece in [&data[..10], &data[10..C + 7], &data[C + 7..]] {
            w.write_all(piece).unwrap();
        }
        let Lens(bytes, lens) = w.finish().unwrap();
        assert_eq!(bytes, data);
        assert_eq!(lens, [C, C, 45]);
    }
}
