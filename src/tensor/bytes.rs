//! Every `unsafe` byte reinterpretation of the format and tensor layers lives in this file.
//!
//! The rest of quill sees only safe functions: [`cast_slice`] turns checked bytes into typed
//! slices, [`AlignedBuf`] owns 64-byte aligned memory, and [`map_file`] memory-maps a model.

use std::fs::File;

use half::{bf16, f16};

use super::DType;

/// A plain-old-data element type that a tensor's bytes can be viewed as: every bit pattern is a
/// valid value, there is no padding, and the type is `Copy`. Sealed: only the types below.
pub trait Element: Copy + Send + Sync + 'static + private::Sealed {
    /// The safetensors dtype whose bytes are this type.
    const DTYPE: DType;
}

mod private {
    pub trait Sealed {}
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => {$(
        impl private::Sealed for $t {}
        impl Element for $t { const DTYPE: DType = DType::$d; }
    )*};
}
element!(f64 => F64, f32 => F32, f16 => F16, bf16 => BF16, i64 => I64, i32 => I32,
         i16 => I16, i8 => I8, u64 => U64, u32 => U32, u16 => U16, u8 => U8);

/// `n` zeros, or `None` when the allocator refuses (where `vec![0.0; n]` would abort the
/// process). Like `vec!`, it asks for zeroed memory, so untouched pages cost nothing.
pub fn try_zeros(n: usize) -> Option<Vec<f32>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<f32>(n).ok()?;
    // SAFETY: the layout has a non-zero size; a non-null result is a fresh allocation of `n`
    // f32 with the global allocator's layout for them, all bits zero, which is 0.0.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout).cast::<f32>();
        (!p.is_null()).then(|| Vec::from_raw_parts(p, n, n))
    }
}

/// Views `bytes` as a slice of `T`, or `None` when the length is not a multiple of `T`'s size or
/// the address is not aligned for `T`. Byte order is the machine's: quill targets little-endian
/// machines only, as safetensors does (checked at compile time below).
pub fn cast_slice<T: Element>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size)
        || !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: the pointer is aligned for T and the length is a whole number of T; T is sealed to
    // primitive types for which every bit pattern is valid; the lifetime is the input's.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// The bytes of a typed slice, for writing.
pub fn as_bytes<T: Element>(data: &[T]) -> &[u8] {
    // SAFETY: T has no padding and any initialised T is valid as bytes; u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

#[cfg(not(target_endian = "little"))]
compile_error!("quill reads safetensors data in place and therefore needs a little-endian target");

/// The alignment every tensor gets, in files quill writes and in memory quill owns: one cache
/// line, and the widest SIMD load (AVX-512) without a split.
pub const ALIGN: usize = 64;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; ALIGN]);

/// Owned, zero-initialised, 64-byte aligned bytes.
pub struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        AlignedBuf {
            lines: vec![Line([0; ALIGN]); len.div_ceil(ALIGN)],
            len,
        }
    }

    /// `len` zero bytes, or `None` when the allocator refuses (instead of aborting).
    pub fn try_zeroed(len: usize) -> Option<Self> {
        let mut lines = Vec::new();
        lines.try_reserve_exact(len.div_ceil(ALIGN)).ok()?;
        lines.resize(len.div_ceil(ALIGN), Line([0; ALIGN]));
        Some(AlignedBuf { lines, len })
    }

    /// A 64-byte aligned copy of `bytes`.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut buf = Self::zeroed(bytes.len());
        buf.as_mut_slice().copy_from_slice(bytes);
        buf
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `lines` holds at least `len` initialised bytes, contiguous because Line is a
        // repr(C) byte array whose size equals its alignment.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and we hold the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<u8>(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Memory-maps a whole file read-only.
///
/// The map is only as stable as the file: if another process truncates or rewrites the file while
/// it is mapped, reads may see the new bytes or fault (SIGBUS). quill validates the bytes once at
/// open; callers who cannot rule out such writers load the file into memory instead
/// (`QuillFile::read`), which this hazard cannot reach.
pub fn map_file(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: see the hazard above, documented in docs/format.md; the map is read-only and
    // private to this process.
    let map = unsafe { memmap2::Mmap::map(file) }?;
    // Advice only (ignored where transparent huge pages are off): the parts of the file that
    // this map reads from disk enter the page cache as 2 MiB folios, which this and every later
    // open map several times faster than 4 KiB pages (Marian-base int8 open to first token on
    // Linux 6.18, the file read cold once: 20.3 -> 13.0 ms median). Parts already cached keep
    // their folios.
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    Ok(map)
}

/// A byte slice whose owner is the caller of `QuillFile::from_raw` (C API: open from memory).
#[derive(Clone, Copy)]
pub struct RawBytes {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the bytes are only ever read, never written, through this handle.
unsafe impl Send for RawBytes {}
unsafe impl Sync for RawBytes {}

impl RawBytes {
    /// # Safety
    /// `ptr` must point at `len` readable bytes that stay valid and unchanged for as long as the
    /// `RawBytes` and everything built from it lives.
    pub unsafe fn new(ptr: *const u8, len: usize) -> Self {
        RawBytes { ptr, len }
    }

    pub fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the contract of `new`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cast_checks_length_and_alignment() {
        let buf = AlignedBuf::copy_from(&[0u8, 0, 128, 63, 0, 0, 0, 64, 7]);
        let s = buf.as_slice();
        assert_eq!(cast_slice::<f32>(&s[..8]), Some(&[1.0f32, 2.0][..]));
        assert!(
            cast_slice::<f32>(&s[..7]).is_none(),
            "length not a multiple of 4"
        );
        assert!(cast_slice::<f32>(&s[1..5]).is_none(), "misaligned");
        assert_eq!(cast_slice::<u8>(&s[1..3]), Some(&[0u8, 128][..]));
        assert_eq!(as_bytes(&[1.0f32]), &[0, 0, 128, 63]);
    }

    #[test]
    fn aligned_buf_is_aligned() {
        for n in [0, 1, 63, 64, 65, 1000] {
            let b = AlignedBuf::zeroed(n);
            assert_eq!(b.len(), n);
            assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
            let t = AlignedBuf::try_zeroed(n).unwrap();
            assert_eq!(t.as_slice(), b.as_slice());
            assert_eq!(t.as_slice().as_ptr() as usize % ALIGN, 0);
        }
    }

    #[test]
    fn fallible_zeros_are_zeros_or_refused() {
        for n in [0, 1, 17, 4096] {
            let mut v = try_zeros(n).unwrap();
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0.0));
            v.push(1.0); // an ordinary Vec: it grows and frees with the global allocator
            assert_eq!(v[n], 1.0);
        }
        // More than the address space: refused, not an abort.
        assert!(try_zeros(usize::MAX / 2).is_none());
        assert!(AlignedBuf::try_zeroed(usize::MAX / 2).is_none());
    }
}
