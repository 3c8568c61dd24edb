//! `quill_model`: opening a model (a file or the caller's bytes), describing it, freeing it.

use std::ffi::c_char;

use super::{
    Versioned, arg, c_text, fill_ids, free_boxed, guard, put, read_versioned, write_sized,
};
use super::{quill_status, write_versioned};
use crate::error::Error;

/// An id that is not there (a model without a padding or start-of-sequence id).
pub const QUILL_NO_ID: u32 = u32::MAX;

/// An open model: immutable; any number of threads may use one `const quill_model*` at once
/// (open sessions, tokenize, read info). Free it with `quill_model_free` once no call uses it;
/// sessions keep what they need alive on their own.
pub struct quill_model {
    pub(crate) model: crate::model::Model,
}

/// Options for opening a model. Fill with `quill_model_default_params` first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct quill_model_params {
    /// `sizeof(quill_model_params)` as compiled by the caller.
    pub struct_size: usize,
    /// Worker threads; 0 = one per available core.
    pub threads: u32,
    /// Nonzero: read the file into memory instead of mapping it (immune to the file changing).
    pub in_memory: i32,
    /// Nonzero: ask the OS to read a mapped file ahead at open. (Appended after the first
    /// release: a 16-byte struct gets 0.)
    pub prefetch: i32,
}

// SAFETY: repr(C), struct_size first, integers only.
unsafe impl Versioned for quill_model_params {
    const FIRST_SIZE: usize = 16;
    const NAME: &'static str = "quill_model_params";
}

/// What a model is. Set `struct_size` to `sizeof(quill_model_info)` before
/// `quill_model_info_get`; fields past a caller's `struct_size` are not written.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct quill_model_info {
    pub struct_size: usize,
    /// 0: seq2seq Transformer, 1: decoder-only Transformer, 2: LSTM seq2seq.
    pub arch: u32,
    pub vocab_size: u32,
    pub d_model: u32,
    pub encoder_layers: u32,
    pub decoder_layers: u32,
    pub threads: u32,
    /// Nonzero when the model file carries a tokenizer (text functions work).
    pub has_tokenizer: i32,
    /// Kernel level in use ("scalar", "avx2", "avx512", "neon"), a static string.
    pub isa: *const c_char,
    /// Size of the model file (weights, tokenizer, metadata), bytes.
    pub file_bytes: u64,
    /// Bytes quill copied at open (unaligned tensors of foreign files; 0 for files quill wrote).
    pub copied_bytes: u64,
    /// The longest sequence the model's positions cover (a decoder-only model's prompt and reply
    /// together; a seq2seq model's source, and its output after the decoder start id); 0 when
    /// positions set no limit (LSTM, T5's relative positions, rotary positions with or without
    /// a sliding window: like `transformers`, quill runs those past `max_position_embeddings`).
    pub max_positions: u32,
    /// Start-of-sequence id, or `QUILL_NO_ID`.
    pub bos_id: u32,
    /// The first end-of-sequence id (`quill_model_eos_ids` lists all), or `QUILL_NO_ID`.
    pub eos_id: u32,
    /// Padding id, or `QUILL_NO_ID`.
    pub pad_id: u32,
    /// The id a seq2seq decoder starts from (feed it to the first `quill_session_step`), or
    /// `QUILL_NO_ID` (decoder-only models).
    pub decoder_start_id: u32,
    /// How many end-of-sequence ids the model has.
    pub n_eos_ids: u32,
    /// Nonzero when the model has a separate target tokenizer (seq2seq models with two
    /// vocabularies): `quill_tokenize_target` and `quill_detokenize` use it.
    pub has_target_tokenizer: i32,
}

// SAFETY: repr(C), struct_size first, integers and a pointer only.
unsafe impl Versioned for quill_model_info {
    const FIRST_SIZE: usize = 48;
    const NAME: &'static str = "quill_model_info";
}

fn default_model_params() -> quill_model_params {
    quill_model_params {
        struct_size: std::mem::size_of::<quill_model_params>(),
        threads: 0,
        in_memory: 0,
        prefetch: 0,
    }
}

/// Fills `size` bytes of `params` with the defaults (threads 0 = all cores, mapped file) and
/// sets `params->struct_size` to the bytes written: pass `sizeof(quill_model_params)`. Any
/// thread.
///
/// # Safety
/// `params` is NULL or points at `size` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_model_params_init(
    params: *mut quill_model_params,
    size: usize,
) -> quill_status {
    guard(|| unsafe { write_versioned(params, size, default_model_params()) })
}

/// Programs built against the first header call this; through this header the name is a macro
/// for `quill_model_params_init(params, sizeof(quill_model_params))`. Fills only the fields of the first
/// release's struct (16 bytes: `struct_size`, `threads`, `in_memory`), never more. Any thread.
///
/// # Safety
/// `params` is NULL or points at at least 16 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_model_default_params(
    params: *mut quill_model_params,
) -> quill_status {
    guard(|| unsafe {
        write_versioned(
            params,
            quill_model_params::FIRST_SIZE,
            default_model_params(),
        )
    })
}

/// The caller's open options (NULL: the defaults).
unsafe fn open_options(p: *const quill_model_params) -> Result<crate::model::OpenOptions, Error> {
    let p = if p.is_null() {
        default_model_params()
    } else {
        unsafe { read_versioned(p, default_model_params()) }?
    };
    Ok(crate::model::OpenOptions {
        threads: p.threads as usize,
        in_memory: p.in_memory != 0,
        prefetch: p.prefetch != 0,
    })
}

/// Opens the model file `path` (UTF-8). On success `*out` is a new model (free it with
/// `quill_model_free`). Any thread.
///
/// # Safety
/// `path` is a NUL-terminated string; `params` is NULL (defaults) or initialized by
/// `quill_model_default_params`; `out` points at writable storage.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_model_open(
    path: *const c_char,
    params: *const quill_model_params,
    out: *mut *mut quill_model,
) -> quill_status {
    guard(|| {
        let path = unsafe { c_text(path, "path", usize::MAX) }?;
        let options = unsafe { open_options(params) }?;
        if out.is_null() {
            return Err(arg("out"));
        }
        let model = crate::model::Model::open(path, &options)?;
        put(out, Box::into_raw(Box::new(quill_model { model })), "out")
    })
}

/// Opens a model from `len` bytes at `data` (Android assets, iOS bundles) without copying them
/// where they are 64-byte aligned. The bytes must stay valid and unchanged until the model and
/// every session made from it are freed. Any thread.
///
/// # Safety
/// As above; `params` and `out` as for `quill_model_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_model_open_memory(
    data: *const u8,
    len: usize,
    params: *const quill_model_params,
    out: *mut *mut quill_model,
) -> quill_status {
    guard(|| {
        if data.is_null() {
            return Err(arg("data"));
        }
        let options = unsafe { open_options(params) }?;
        if out.is_null() {
            return Err(arg("out"));
        }
        // SAFETY: the caller keeps the bytes alive and unchanged (documented contract).
        let file = unsafe { crate::format::QuillFile::from_raw(data, len) }?;
        let model = crate::model::Model::from_file(file, &options)?;
        put(out, Box::into_raw(Box::new(quill_model { model })), "out")
    })
}

/// Frees a model (NULL is fine). No call may be using it; sessions stay valid.
///
/// # Safety
/// `model` is NULL or came from `quill_model_open*` and was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_model_free(model: *mut quill_model) {
    // SAFETY: forwarded contract.
    unsafe { free_boxed(model) }
}

/// The model behind a handle.
pub(crate) fn model_ref<'a>(model: *const quill_model) -> Result<&'a crate::model::Model, Error> {
    // SAFETY: callers pass NULL or a live handle (every function's contract).
    Ok(&unsafe { model.as_ref() }.ok_or_else(|| arg("model"))?.model)
}

fn isa_name(isa: crate::kernels::Isa) -> *const c_char {
    let s: &'static std::ffi::CStr = match isa {
        crate::kernels::Isa::Scalar => c"scalar",
        crate::kernels::Isa::Avx2 => c"avx2",
        crate::kernels::Isa::Avx512 => c"avx512",
        crate::kernels::Isa::Neon => c"neon",
    };
    s.as_ptr()
}

/// Describes `model` in `*info`: set `info->struct_size = sizeof(quill_model_info)` first; at
/// most that many bytes are written (`struct_size` then holds the bytes written). Any thread.
///
/// # Safety
/// `model` is a live model; `info` points at a `quill_model_info` whose `struct_size` is set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_model_info_get(
    model: *const quill_model,
    info: *mut quill_model_info,
) -> quill_status {
    guard(|| {
        let m = model_ref(model)?;
        let c = m.config();
        #[cfg(feature = "tokenizer")]
        let has_tok = m.tokenizer().is_ok();
        #[cfg(not(feature = "tokenizer"))]
        let has_tok = false;
        let id = |v: Option<u32>| v.unwrap_or(QUILL_NO_ID);
        let v = quill_model_info {
            struct_size: std::mem::size_of::<quill_model_info>(),
            arch: match m.arch() {
                crate::format::Arch::Seq2Seq => 0,
                crate::format::Arch::DecoderOnly => 1,
                crate::format::Arch::LstmSeq2Seq => 2,
            },
            vocab_size: c.vocab_size as u32,
            d_model: c.d_model as u32,
            encoder_layers: c.encoder_layers as u32,
            decoder_layers: c.decoder_layers as u32,
            threads: m.threads() as u32,
            has_tokenizer: has_tok as i32,
            isa: isa_name(m.isa()),
            file_bytes: m.file().file_len() as u64,
            copied_bytes: m.file().copied_bytes() as u64,
            max_positions: m
                .max_positions()
                .map_or(0, |p| p.min(u32::MAX as usize) as u32),
            bos_id: id(c.bos_id),
            eos_id: id(c.eos_ids.first().copied()),
            pad_id: id(c.pad_id),
            decoder_start_id: match m.arch() {
                crate::format::Arch::DecoderOnly => QUILL_NO_ID,
                _ => id(c.decoder_start_id),
            },
            n_eos_ids: c.eos_ids.len() as u32,
            has_target_tokenizer: m.file().target_tokenizer_json().is_some() as i32,
        };
        unsafe { write_sized(info, v) }
    })
}

/// The model's end-of-sequence ids: writes up to `capacity` of them to `ids` and their count to
/// `*n`; if they do not fit, `QUILL_ERR_BUFFER_TOO_SMALL` with the count in `*n`. Any thread.
///
/// # Safety
/// `model` live; `ids` writable for `capacity` ids (or NULL with 0); `n` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_model_eos_ids(
    model: *const quill_model,
    ids: *mut u32,
    capacity: usize,
    n: *mut usize,
) -> quill_status {
    guard(|| {
        let m = model_ref(model)?;
        fill_ids(&m.config().eos_ids, ids, capacity, n, ("ids", "n"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::quill_status::*;

    #[test]
    fn params_are_written_and_read_within_the_callers_size() {
        // The first release's struct: 16 bytes, then a canary the library must not touch.
        #[repr(C)]
        struct V1 {
            struct_size: usize,
            threads: u32,
            in_memory: i32,
            canary: u64,
        }
        let mut old = V1 {
            struct_size: 0,
            threads: 9,
            in_memory: 9,
            canary: 0xDEAD_BEEF,
        };
        // Every access goes through one raw pointer, as a C caller's would (Miri runs this).
        let o: *mut V1 = &mut old;
        let p = o.cast::<quill_model_params>();
        assert_eq!(unsafe { quill_model_default_params(p) }, QUILL_OK);
        unsafe {
            assert_eq!(((*o).struct_size, (*o).threads, (*o).in_memory), (16, 0, 0));
            assert_eq!(
                (*o).canary,
                0xDEAD_BEEF,
                "wrote past the first release's struct"
            );
            (*o).threads = 3;
            (*o).canary = 1; // where `prefetch` is now: past the caller's struct, never read
        }
        let opts = unsafe { open_options(p) }.unwrap();
        assert_eq!((opts.threads, opts.prefetch), (3, false));
        let mut new: quill_model_params = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<quill_model_params>();
        assert_eq!(unsafe { quill_model_params_init(&mut new, size) }, QUILL_OK);
        assert_eq!(new.struct_size, size);
        assert_eq!(
            unsafe { quill_model_params_init(&mut new, 8) },
            QUILL_ERR_INVALID_ARGUMENT
        );
    }
}
