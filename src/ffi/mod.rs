//! The C ABI (`include/quill.h`, contract in `docs/c-api.md`).
//!
//! Rules every exported function follows: its body runs inside [`guard`], so no panic crosses the
//! boundary; it returns a [`quill_status`]; on failure the message is kept for
//! [`quill_last_error`] on the calling thread; outputs are written only on success.
//!
//! Handles: `quill_model` (immutable, shared by threads), `quill_session` (one thread at a time,
//! cancellable from any), `quill_result` (read-only). Contract per function in the header.

#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};

use crate::error::Error;

/// Major version of the library (`MAJOR.MINOR.PATCH`).
pub const QUILL_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const QUILL_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const QUILL_VERSION_PATCH: u32 = 0;
/// The version as one comparable number: `MAJOR * 10000 + MINOR * 100 + PATCH`.
pub const QUILL_VERSION_NUMBER: u32 =
    QUILL_VERSION_MAJOR * 10000 + QUILL_VERSION_MINOR * 100 + QUILL_VERSION_PATCH;
/// The ABI this header describes. A library whose `quill_abi_version()` differs is incompatible.
pub const QUILL_ABI_VERSION: u32 = 1;

/// Result of every fallible function. Values are fixed forever; new ones are only appended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum quill_status {
    /// Success.
    QUILL_OK = 0,
    /// An argument is NULL, out of range, not UTF-8, or a params struct has a wrong size.
    QUILL_ERR_INVALID_ARGUMENT = 1,
    /// The operating system refused a file operation.
    QUILL_ERR_IO = 2,
    /// The model file is malformed, truncated or inconsistent.
    QUILL_ERR_FORMAT = 3,
    /// The model file needs a feature or format version this build does not have.
    QUILL_ERR_UNSUPPORTED = 4,
    /// The model configuration is invalid.
    QUILL_ERR_CONFIG = 5,
    /// A caller buffer is too small; the needed size was reported.
    QUILL_ERR_BUFFER_TOO_SMALL = 6,
    /// Memory could not be allocated.
    QUILL_ERR_OUT_OF_MEMORY = 7,
    /// The operation was cancelled.
    QUILL_ERR_CANCELLED = 8,
    /// A bug in quill was caught at the boundary (please report it with the message).
    QUILL_ERR_INTERNAL = 9,
}

use quill_status::*;

impl Error {
    /// The C status for this error.
    pub fn status(&self) -> quill_status {
        match self {
            Error::Io { .. } => QUILL_ERR_IO,
            Error::UnknownDtype { .. } | Error::UnsupportedVersion { .. } => QUILL_ERR_UNSUPPORTED,
            Error::BadConfig { .. } => QUILL_ERR_CONFIG,
            Error::InvalidArgument(_) => QUILL_ERR_INVALID_ARGUMENT,
            Error::BufferTooSmall(_) => QUILL_ERR_BUFFER_TOO_SMALL,
            Error::Unsupported(_) => QUILL_ERR_UNSUPPORTED,
            Error::Cancelled => QUILL_ERR_CANCELLED,
            Error::OutOfMemory(_) => QUILL_ERR_OUT_OF_MEMORY,
            _ => QUILL_ERR_FORMAT,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    // Interior NULs cannot be represented in a C string; show them instead of truncating.
    let c = CString::new(msg.replace('\0', "\\0")).expect("NULs were replaced");
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs an exported body: catches panics, records the message of a failure, returns the status.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Error>) -> quill_status {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => QUILL_OK,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            e.status()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error: {what}"));
            QUILL_ERR_INTERNAL
        }
    }
}

/// The library version, `"MAJOR.MINOR.PATCH"`, a static string. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The version as `MAJOR * 10000 + MINOR * 100 + PATCH`, to compare with
/// `QUILL_VERSION_NUMBER` from the header. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_version_number() -> u32 {
    QUILL_VERSION_NUMBER
}

/// The ABI version of the library; compare with `QUILL_ABI_VERSION` from the header before use.
/// Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_abi_version() -> u32 {
    QUILL_ABI_VERSION
}

/// A static, human-readable name for a status ("QUILL_ERR_FORMAT"); "QUILL_ERR_UNKNOWN" for a
/// value this library does not define. Takes an `int` so that any value is safe to pass.
/// Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_status_str(status: c_int) -> *const c_char {
    let s: &'static str = match status {
        0 => "QUILL_OK\0",
        1 => "QUILL_ERR_INVALID_ARGUMENT\0",
        2 => "QUILL_ERR_IO\0",
        3 => "QUILL_ERR_FORMAT\0",
        4 => "QUILL_ERR_UNSUPPORTED\0",
        5 => "QUILL_ERR_CONFIG\0",
        6 => "QUILL_ERR_BUFFER_TOO_SMALL\0",
        7 => "QUILL_ERR_OUT_OF_MEMORY\0",
        8 => "QUILL_ERR_CANCELLED\0",
        9 => "QUILL_ERR_INTERNAL\0",
        _ => "QUILL_ERR_UNKNOWN\0",
    };
    s.as_ptr().cast()
}

/// The message of the last failed call on the calling thread ("" if none). The pointer stays
/// valid until the next failing quill call on the same thread; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn quill_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

// ------------------------------------------------------------------------------------------
// Handles

/// An open model: immutable; any number of threads may use one `const quill_model*` at once
/// (open sessions, tokenize, read info). Free it with `quill_model_free` once no call uses it;
/// sessions keep what they need alive on their own.
pub struct quill_model {
    model: crate::model::Model,
}

/// A session: the KV cache and scratch of one user of a model. One thread at a time, except
/// `quill_session_cancel`, which any thread may call at any time.
pub struct quill_session {
    session: std::cell::UnsafeCell<crate::model::Session>,
    cancel: crate::model::CancelHandle,
    /// The conversation of `quill_chat_turn` (decoder-only models).
    chat: std::cell::UnsafeCell<crate::decode::Chat>,
}

/// The outcome of a generation: per input, hypotheses (best first) with ids, text and score.
/// Read-only: any number of threads may read one result.
pub struct quill_result {
    outputs: Vec<Vec<ResultHyp>>,
    stopped: bool,
}

struct ResultHyp {
    ids: Vec<u32>,
    text: Option<CString>,
    score: f32,
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
    /// Nonzero: ask the OS to read a mapped file ahead at open.
    pub prefetch: i32,
}

/// Limits a session is sized for (all memory is allocated when it is created). A length of 0
/// means the default (512 input, 256 new tokens) shortened to the model's positions.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct quill_session_params {
    pub struct_size: usize,
    pub max_batch: u32,
    pub max_input_len: u32,
    pub max_new_tokens: u32,
    pub beams: u32,
    /// Bytes the session may use (KV cache, scratch, decoding state); 0 = half the physical
    /// memory. Limits that need more fail with `QUILL_ERR_OUT_OF_MEMORY`. A caller built
    /// against a header without this field (a smaller `struct_size`) gets 0.
    pub max_memory: u64,
}

/// `struct_size` of `quill_session_params` as the first ABI shipped it (without `max_memory`).
const SESSION_PARAMS_V1: usize = 24;

/// Decoding options. Fill with `quill_generate_default_params` (which also applies the model's
/// own defaults when given the model), then change what you need.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct quill_generate_params {
    pub struct_size: usize,
    pub max_new_tokens: u32,
    pub min_new_tokens: u32,
    /// 1: greedy or sampling; more: beam search.
    pub beams: u32,
    /// Hypotheses returned per input (beam search).
    pub n_best: u32,
    pub length_penalty: f32,
    /// Nonzero: sample (temperature, top_k, top_p, min_p, seed).
    pub sample: i32,
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub seed: u64,
    pub repetition_penalty: f32,
    pub no_repeat_ngram_size: u32,
}

/// What a model is.
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
}

/// Streaming callback: input `input` gained the final tokens `ids[0..n_ids]`; for text
/// generation `text[0..text_len]` is the text they add (UTF-8, not NUL-terminated, possibly
/// empty), else `text` is NULL. Return 0 to continue, anything else to stop the generation.
/// Called on the generating thread.
pub type quill_stream_fn = Option<
    unsafe extern "C" fn(
        user: *mut std::ffi::c_void,
        input: usize,
        ids: *const u32,
        n_ids: usize,
        text: *const c_char,
        text_len: usize,
    ) -> i32,
>;

fn arg(what: &str) -> Error {
    Error::InvalidArgument(format!("{what} is NULL"))
}

fn check_size(got: usize, want: usize, what: &str) -> Result<(), Error> {
    if got < want {
        return Err(Error::InvalidArgument(format!(
            "{what}.struct_size is {got}, expected at least {want}: initialize it with the matching _default_params function"
        )));
    }
    Ok(())
}

/// # Safety
/// `p` is NULL or points at a valid value of `T` whose first field is `struct_size`.
unsafe fn params<T: Copy>(p: *const T, what: &str) -> Result<T, Error> {
    if p.is_null() {
        return Err(arg(what));
    }
    // SAFETY: caller contract; struct_size is read first so a too-small struct is refused
    // before the whole of T is read.
    let size = unsafe { *(p as *const usize) };
    check_size(size, std::mem::size_of::<T>(), what)?;
    Ok(unsafe { *p })
}

/// Reads a params struct that has grown since the first ABI: the caller's `struct_size` bytes
/// (at least `min_size`, at most the whole of `T`) over `out`, whose fields past what the caller
/// knows keep their defaults.
///
/// # Safety
/// `p` points at `struct_size` readable bytes whose first field is `struct_size`.
unsafe fn versioned_params<T: Copy>(
    p: *const T,
    min_size: usize,
    out: &mut T,
    what: &str,
) -> Result<(), Error> {
    // SAFETY: caller contract; struct_size is read first.
    let size = unsafe { *(p as *const usize) };
    check_size(size, min_size, what)?;
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: `n` bytes are readable at `p` (the caller's struct) and writable at `out`; T is a
    // repr(C) struct of plain integers, valid for any bytes.
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), (out as *mut T).cast::<u8>(), n) };
    Ok(())
}

/// # Safety
/// `s` is NULL or a NUL-terminated string.
unsafe fn c_str<'a>(s: *const c_char, what: &str) -> Result<&'a str, Error> {
    unsafe { c_text(s, what, usize::MAX) }
}

/// Longest text `quill_tokenize` takes: tokenizing costs about 100 bytes of transient memory
/// per input byte, so this bounds it near 1.6 GiB; split longer texts.
pub const QUILL_MAX_TEXT_BYTES: usize = 16 << 20;

/// Bytes per token allowed in a generation's input text: a text longer than
/// `max_input_len × QUILL_BYTES_PER_TOKEN` is refused before it is tokenized (it could only be
/// refused after, for having more than `max_input_len` tokens).
pub const QUILL_BYTES_PER_TOKEN: usize = 64;

/// A UTF-8 string of at most `max` bytes (checked before validating it).
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
unsafe fn c_text<'a>(s: *const c_char, what: &str, max: usize) -> Result<&'a str, Error> {
    if s.is_null() {
        return Err(arg(what));
    }
    // SAFETY: caller contract.
    let bytes = unsafe { std::ffi::CStr::from_ptr(s) }.to_bytes();
    if bytes.len() > max {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes, more than the {max} taken here",
            bytes.len()
        )));
    }
    std::str::from_utf8(bytes)
        .map_err(|e| Error::InvalidArgument(format!("{what} is not valid UTF-8: {e}")))
}

/// The longest input text a session takes.
fn max_input_text(s: &crate::model::Session) -> usize {
    s.limits()
        .max_input_len
        .saturating_mul(QUILL_BYTES_PER_TOKEN)
        .min(QUILL_MAX_TEXT_BYTES)
}

/// Writes `v` through `out` (checked non-NULL).
fn put<T>(out: *mut T, v: T, what: &str) -> Result<(), Error> {
    if out.is_null() {
        return Err(arg(what));
    }
    // SAFETY: non-NULL, and the caller provides writable storage for a T.
    unsafe { out.write(v) };
    Ok(())
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

/// Fills `params` with the defaults (threads 0 = all cores, mapped file). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_model_default_params(params: *mut quill_model_params) -> quill_status {
    guard(|| {
        put(
            params,
            quill_model_params {
                struct_size: std::mem::size_of::<quill_model_params>(),
                threads: 0,
                in_memory: 0,
                prefetch: 0,
            },
            "params",
        )
    })
}

fn open_options(p: &quill_model_params) -> crate::model::OpenOptions {
    crate::model::OpenOptions {
        threads: p.threads as usize,
        in_memory: p.in_memory != 0,
        prefetch: p.prefetch != 0,
    }
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
        let path = unsafe { c_str(path, "path") }?;
        let p = if params.is_null() {
            default_model_params()
        } else {
            unsafe { self::params(params, "params") }?
        };
        if out.is_null() {
            return Err(arg("out"));
        }
        let model = crate::model::Model::open(path, &open_options(&p))?;
        put(out, Box::into_raw(Box::new(quill_model { model })), "out")
    })
}

fn default_model_params() -> quill_model_params {
    quill_model_params {
        struct_size: std::mem::size_of::<quill_model_params>(),
        threads: 0,
        in_memory: 0,
        prefetch: 0,
    }
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
        let p = if params.is_null() {
            default_model_params()
        } else {
            unsafe { self::params(params, "params") }?
        };
        if out.is_null() {
            return Err(arg("out"));
        }
        // SAFETY: the caller keeps the bytes alive and unchanged (documented contract).
        let file = unsafe { crate::format::QuillFile::from_raw(data, len) }?;
        let model = crate::model::Model::from_file(file, &open_options(&p))?;
        put(out, Box::into_raw(Box::new(quill_model { model })), "out")
    })
}

/// Drops a handle made by `Box::into_raw` (NULL is fine); a panic in a destructor is caught.
///
/// # Safety
/// `p` is NULL or a live handle of this library not used by any other call.
unsafe fn free_boxed<T>(p: *mut T) {
    if !p.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(unsafe { Box::from_raw(p) })
        }));
    }
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

/// Describes `model` in `*info` (set `info->struct_size` first). Any thread.
///
/// # Safety
/// `model` is a live model; `info` points at a `quill_model_info` whose `struct_size` is set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_model_info_get(
    model: *const quill_model,
    info: *mut quill_model_info,
) -> quill_status {
    guard(|| {
        let m = &unsafe { model.as_ref() }.ok_or_else(|| arg("model"))?.model;
        if info.is_null() {
            return Err(arg("info"));
        }
        check_size(
            unsafe { (*info).struct_size },
            std::mem::size_of::<quill_model_info>(),
            "info",
        )?;
        let c = m.config();
        #[cfg(feature = "tokenizer")]
        let has_tok = m.tokenizer().is_ok();
        #[cfg(not(feature = "tokenizer"))]
        let has_tok = false;
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
        };
        put(info, v, "info")
    })
}

/// Fills `params` with session defaults: 1 sequence, 1 beam, and lengths 0, which mean 512 input
/// and 256 new tokens shortened to what the model's positions hold.
#[unsafe(no_mangle)]
pub extern "C" fn quill_session_default_params(params: *mut quill_session_params) -> quill_status {
    guard(|| put(params, default_session_params(), "params"))
}

/// What `quill_session_default_params` gives (and what NULL params mean).
fn default_session_params() -> quill_session_params {
    quill_session_params {
        struct_size: std::mem::size_of::<quill_session_params>(),
        max_batch: 1,
        max_input_len: 0,
        max_new_tokens: 0,
        beams: 1,
        max_memory: 0,
    }
}

/// Creates a session for `model` sized by `params` (NULL: defaults). Free with
/// `quill_session_free`. Any thread; the session then belongs to one thread at a time.
///
/// # Safety
/// `model` is a live model; `params` NULL or initialized; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_new(
    model: *const quill_model,
    params: *const quill_session_params,
    out: *mut *mut quill_session,
) -> quill_status {
    guard(|| {
        let m = &unsafe { model.as_ref() }.ok_or_else(|| arg("model"))?.model;
        let mut p = default_session_params();
        if !params.is_null() {
            // SAFETY: caller contract; only the caller's `struct_size` bytes are read.
            unsafe { versioned_params(params, SESSION_PARAMS_V1, &mut p, "params") }?;
        }
        if out.is_null() {
            return Err(arg("out"));
        }
        // 0 for a length means "the default, shortened to what the model's positions hold";
        // explicit lengths are checked as given.
        let d = crate::model::Limits::default();
        let fitted = crate::model::Limits {
            max_batch: d.max_batch,
            max_input_len: if p.max_input_len == 0 {
                d.max_input_len
            } else {
                p.max_input_len as usize
            },
            max_new_tokens: if p.max_new_tokens == 0 {
                d.max_new_tokens
            } else {
                p.max_new_tokens as usize
            },
            beams: d.beams,
            ..Default::default()
        }
        .fit(m);
        let limits = crate::model::Limits {
            max_batch: p.max_batch as usize,
            max_memory: usize::try_from(p.max_memory).unwrap_or(usize::MAX),
            max_input_len: if p.max_input_len == 0 {
                fitted.max_input_len
            } else {
                p.max_input_len as usize
            },
            max_new_tokens: if p.max_new_tokens == 0 {
                fitted.max_new_tokens
            } else {
                p.max_new_tokens as usize
            },
            beams: p.beams as usize,
        };
        let session = crate::model::Session::new(m, limits)?;
        let h = quill_session {
            session: std::cell::UnsafeCell::new(session),
            cancel: crate::model::CancelHandle::new(),
            chat: std::cell::UnsafeCell::new(crate::decode::Chat::new()),
        };
        put(out, Box::into_raw(Box::new(h)), "out")
    })
}

/// Frees a session (NULL is fine).
///
/// # Safety
/// `session` is NULL or a live session no other call is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_free(session: *mut quill_session) {
    // SAFETY: forwarded contract.
    unsafe { free_boxed(session) }
}

/// Forgets the session's started sequences (its memory stays allocated). The session's thread.
///
/// # Safety
/// `session` is a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_reset(session: *mut quill_session) -> quill_status {
    guard(|| {
        let (s, _) = unsafe { session_mut(session) }?;
        s.reset();
        // SAFETY: the session's thread (contract), so the conversation is not in use elsewhere.
        unsafe { *(*session).chat.get() = crate::decode::Chat::new() };
        Ok(())
    })
}

/// Chat with a decoder-only model: adds `text` (UTF-8, formatted as the model expects its
/// turns) to the conversation kept in `session` and generates the reply, prefilling only the new
/// tokens after the cache of earlier turns. Greedy or sampling (`params->beams` must be 1);
/// `callback` streams the reply. `*out` gets a result with one input and one hypothesis (the
/// reply). `quill_session_reset` starts a new conversation. The session's thread only.
///
/// # Safety
/// `session` live; `text` NUL-terminated; `params` NULL or initialized; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_chat_turn(
    session: *mut quill_session,
    text: *const c_char,
    params: *const quill_generate_params,
    callback: quill_stream_fn,
    user: *mut std::ffi::c_void,
    out: *mut *mut quill_result,
) -> quill_status {
    guard(|| {
        let (s, cancel) = unsafe { session_mut(session) }?;
        // SAFETY: the session's thread only (contract).
        let chat = unsafe { &mut *(*session).chat.get() };
        let model = s.model().clone();
        let text = unsafe { c_text(text, "text", max_input_text(s)) }?;
        let p = unsafe { generate_params(&model, params) }?;
        if out.is_null() {
            return Err(arg("out"));
        }
        let o = options(&model, &p)?;
        let tokens = tokenize(&model, text, chat.history().is_empty())?;
        let special = model.special_ids();
        cancel.reset();
        let reply = match callback {
            None => chat.turn(s, &tokens, &o, Some(cancel), None)?,
            Some(cb) => {
                #[cfg(feature = "tokenizer")]
                let mut d = model.target_tokenizer()?.detokenizer(true);
                let mut stopped = false;
                let mut f = |e: crate::decode::StreamEvent| {
                    #[allow(unused_mut)]
                    let mut piece = String::new();
                    #[cfg(feature = "tokenizer")]
                    for &id in e.ids.iter().filter(|i| !special.contains(i)) {
                        if let Ok(p) = d.push(id) {
                            piece.push_str(&p);
                        }
                    }
                    // SAFETY: the caller's function, with pointers valid for the call.
                    let r = unsafe {
                        cb(
                            user,
                            0,
                            e.ids.as_ptr(),
                            e.ids.len(),
                            piece.as_ptr().cast::<c_char>(),
                            piece.len(),
                        )
                    };
                    if r != 0 {
                        stopped = true;
                        crate::decode::Flow::Stop
                    } else {
                        crate::decode::Flow::Continue
                    }
                };
                let reply = chat.turn(s, &tokens, &o, Some(cancel), Some(&mut f))?;
                // Held-back text (a trailing run of byte pieces), in one last call without ids.
                #[cfg(feature = "tokenizer")]
                if !stopped {
                    let rest = d.finish()?;
                    if !rest.is_empty() {
                        // SAFETY: as above.
                        unsafe { cb(user, 0, [].as_ptr(), 0, rest.as_ptr().cast(), rest.len()) };
                    }
                }
                reply
            }
        };
        let shown: Vec<u32> = reply
            .ids
            .iter()
            .copied()
            .filter(|i| !special.contains(i))
            .collect();
        let text = detokenize(&model, &shown, true)?;
        let hyp = ResultHyp {
            text: Some(CString::new(text.replace('\0', "")).expect("NULs removed")),
            ids: reply.ids,
            score: reply.score,
        };
        put(
            out,
            Box::into_raw(Box::new(quill_result {
                outputs: vec![vec![hyp]],
                stopped: cancel.is_cancelled(),
            })),
            "out",
        )
    })
}

/// Log callback: `level` 1 = warning, 2 = information; `message` is NUL-terminated UTF-8 valid
/// during the call.
pub type quill_log_fn =
    Option<unsafe extern "C" fn(user: *mut std::ffi::c_void, level: i32, message: *const c_char)>;

struct UserPtr(*mut std::ffi::c_void);

impl UserPtr {
    fn get(&self) -> *mut std::ffi::c_void {
        self.0
    }
}
// SAFETY: the caller of quill_set_log_callback promises its callback may run on any thread.
unsafe impl Send for UserPtr {}
unsafe impl Sync for UserPtr {}

/// Sends quill's diagnostics (warnings such as an unavailable `QUILL_FORCE_ISA` level) to
/// `callback` instead of standard error; NULL restores standard error. The callback may be called
/// from any thread. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_set_log_callback(
    callback: quill_log_fn,
    user: *mut std::ffi::c_void,
) -> quill_status {
    guard(|| {
        match callback {
            None => crate::log::set_sink(None),
            Some(f) => {
                let user = UserPtr(user);
                crate::log::set_sink(Some(Box::new(move |level, msg| {
                    let c = CString::new(msg.replace('\0', "")).expect("NULs removed");
                    // SAFETY: the caller's function, with a string valid for the call.
                    unsafe { f(user.get(), level as i32, c.as_ptr()) };
                })));
            }
        }
        Ok(())
    })
}

/// Asks the generation running on `session` (on another thread) to stop; it returns within
/// one decoding step (or one layer of a prefill) with what it produced and the result's
/// `stopped` flag set. The request is cleared when the next generation starts. Any thread, at
/// any time while the session is alive.
///
/// # Safety
/// `session` is a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_cancel(session: *const quill_session) -> quill_status {
    guard(|| {
        if session.is_null() {
            return Err(arg("session"));
        }
        // Only the cancel flag is touched: the session's state may be in use by its thread.
        let cancel = unsafe { &*std::ptr::addr_of!((*session).cancel) };
        cancel.cancel();
        Ok(())
    })
}

/// The session's mutable state, for the one thread using it.
///
/// # Safety
/// `s` is a live session used by no other thread (except `quill_session_cancel`).
unsafe fn session_mut<'a>(
    s: *mut quill_session,
) -> Result<
    (
        &'a mut crate::model::Session,
        &'a crate::model::CancelHandle,
    ),
    Error,
> {
    if s.is_null() {
        return Err(arg("session"));
    }
    // SAFETY: caller contract; the two fields are borrowed separately, and `cancel` only shared.
    unsafe { Ok((&mut *(*s).session.get(), &*std::ptr::addr_of!((*s).cancel))) }
}

/// Text → token ids with the model's tokenizer (`add_special` applies its post-processor). Writes
/// up to `capacity` ids to `ids` and the count to `*n_ids`; if they do not fit, returns
/// `QUILL_ERR_BUFFER_TOO_SMALL` with the needed count in `*n_ids` (`ids` may be NULL then).
/// Any thread.
///
/// # Safety
/// `text` NUL-terminated; `ids` writable for `capacity` ids (or NULL with capacity 0); `n_ids`
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_tokenize(
    model: *const quill_model,
    text: *const c_char,
    add_special: i32,
    ids: *mut u32,
    capacity: usize,
    n_ids: *mut usize,
) -> quill_status {
    guard(|| {
        let m = &unsafe { model.as_ref() }.ok_or_else(|| arg("model"))?.model;
        let text = unsafe { c_text(text, "text", QUILL_MAX_TEXT_BYTES) }?;
        if n_ids.is_null() {
            return Err(arg("n_ids"));
        }
        let v = tokenize(m, text, add_special != 0)?;
        unsafe { n_ids.write(v.len()) };
        if v.len() > capacity || (ids.is_null() && !v.is_empty()) {
            return Err(Error::BufferTooSmall(v.len()));
        }
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), ids, v.len()) };
        Ok(())
    })
}

#[cfg(feature = "tokenizer")]
fn tokenize(m: &crate::model::Model, text: &str, special: bool) -> Result<Vec<u32>, Error> {
    m.tokenizer()?.encode(text, special)
}

#[cfg(not(feature = "tokenizer"))]
fn tokenize(_: &crate::model::Model, _: &str, _: bool) -> Result<Vec<u32>, Error> {
    Err(no_tokenizer())
}

#[cfg(not(feature = "tokenizer"))]
fn no_tokenizer() -> Error {
    Error::Unsupported("this build of quill has no tokenizer (cargo feature `tokenizer`)".into())
}

#[cfg(feature = "tokenizer")]
fn detokenize(m: &crate::model::Model, ids: &[u32], skip: bool) -> Result<String, Error> {
    m.target_tokenizer()?.decode(ids, skip)
}

#[cfg(not(feature = "tokenizer"))]
fn detokenize(_: &crate::model::Model, _: &[u32], _: bool) -> Result<String, Error> {
    Err(no_tokenizer())
}

/// Token ids → UTF-8 text (with the target tokenizer when the model has two), NUL-terminated,
/// into `buf` of `capacity` bytes; `*len` receives the text length without the NUL. If it does
/// not fit, `QUILL_ERR_BUFFER_TOO_SMALL` and the needed length (without the NUL) in `*len`.
/// Any thread.
///
/// # Safety
/// `ids` readable for `n` ids; `buf` writable for `capacity` bytes (or NULL with 0); `len`
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_detokenize(
    model: *const quill_model,
    ids: *const u32,
    n: usize,
    skip_special: i32,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
) -> quill_status {
    guard(|| {
        let m = &unsafe { model.as_ref() }.ok_or_else(|| arg("model"))?.model;
        if ids.is_null() && n > 0 {
            return Err(arg("ids"));
        }
        if len.is_null() {
            return Err(arg("len"));
        }
        let ids = if n == 0 {
            &[][..]
        } else {
            unsafe { std::slice::from_raw_parts(ids, n) }
        };
        let text = detokenize(m, ids, skip_special != 0)?;
        unsafe { len.write(text.len()) };
        if text.len() + 1 > capacity || buf.is_null() {
            return Err(Error::BufferTooSmall(text.len() + 1));
        }
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            *buf.add(text.len()) = 0;
        }
        Ok(())
    })
}

/// Fills `params` with decoding defaults: the model's own (`quill.generation`) when `model` is
/// not NULL, else greedy with 256 new tokens.
///
/// # Safety
/// `model` NULL or live; `params` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_generate_default_params(
    model: *const quill_model,
    params: *mut quill_generate_params,
) -> quill_status {
    guard(|| {
        put(
            params,
            default_generate_params(unsafe { model.as_ref() }.map(|m| &m.model))?,
            "params",
        )
    })
}

/// The decoding parameters `quill_generate_default_params` gives.
fn default_generate_params(
    model: Option<&crate::model::Model>,
) -> Result<quill_generate_params, Error> {
    use crate::decode::{GenerateOptions, Strategy};
    let o = match model {
        Some(m) => GenerateOptions::model_defaults(m)?,
        None => GenerateOptions::default(),
    };
    let mut p = quill_generate_params {
        struct_size: std::mem::size_of::<quill_generate_params>(),
        max_new_tokens: o.max_new_tokens as u32,
        min_new_tokens: o.min_new_tokens as u32,
        beams: 1,
        n_best: 1,
        length_penalty: 1.0,
        sample: 0,
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: 0,
        repetition_penalty: o.repetition_penalty,
        no_repeat_ngram_size: o.no_repeat_ngram_size as u32,
    };
    match o.strategy {
        Strategy::Greedy => {}
        Strategy::Beam(b) => {
            p.beams = b.beams as u32;
            p.length_penalty = b.length_penalty;
        }
        Strategy::Sample(s) => {
            p.sample = 1;
            p.temperature = s.temperature;
            p.top_k = s.top_k as u32;
            p.top_p = s.top_p;
            p.min_p = s.min_p;
        }
    }
    Ok(p)
}

/// The caller's parameters, or the model's defaults for NULL.
///
/// # Safety
/// `params` is NULL or initialized by `quill_generate_default_params`.
unsafe fn generate_params(
    model: &crate::model::Model,
    params: *const quill_generate_params,
) -> Result<quill_generate_params, Error> {
    if params.is_null() {
        default_generate_params(Some(model))
    } else {
        unsafe { self::params(params, "params") }
    }
}

fn options(
    m: &crate::model::Model,
    p: &quill_generate_params,
) -> Result<crate::decode::GenerateOptions, Error> {
    use crate::decode::{BeamOptions, GenerateOptions, SampleOptions, Strategy};
    // Token-level defaults of the model (suppressed ids, forced ids...) stay; the struct's fields win.
    let mut o = GenerateOptions::model_defaults(m)?;
    o.max_new_tokens = p.max_new_tokens as usize;
    o.min_new_tokens = p.min_new_tokens as usize;
    o.repetition_penalty = p.repetition_penalty;
    o.no_repeat_ngram_size = p.no_repeat_ngram_size as usize;
    o.strategy = if p.sample != 0 {
        Strategy::Sample(SampleOptions {
            temperature: p.temperature,
            top_k: p.top_k as usize,
            top_p: p.top_p,
            min_p: p.min_p,
            seed: p.seed,
        })
    } else if p.beams > 1 {
        Strategy::Beam(BeamOptions {
            beams: p.beams as usize,
            length_penalty: p.length_penalty,
            early_stopping: false,
            n_best: (p.n_best as usize).clamp(1, p.beams as usize),
        })
    } else {
        Strategy::Greedy
    };
    Ok(o)
}

/// Runs a generation; `texts` decides whether results carry text.
fn run_generation(
    session: *mut quill_session,
    inputs: Vec<Vec<u32>>,
    with_text: bool,
    params: *const quill_generate_params,
    callback: quill_stream_fn,
    user: *mut std::ffi::c_void,
    out: *mut *mut quill_result,
) -> Result<(), Error> {
    let (s, cancel) = unsafe { session_mut(session) }?;
    let model = s.model().clone();
    let p = unsafe { generate_params(&model, params) }?;
    if out.is_null() {
        return Err(arg("out"));
    }
    let o = options(&model, &p)?;
    let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
    let special = model.special_ids();
    let generation = match callback {
        None => crate::decode::generate(s, &refs, &o, Some(cancel), None)?,
        Some(cb) => {
            #[cfg(feature = "tokenizer")]
            let tok = if with_text {
                Some(model.target_tokenizer()?)
            } else {
                None
            };
            #[cfg(feature = "tokenizer")]
            let mut detoks: Vec<_> = (0..inputs.len())
                .map(|_| tok.map(|t| t.detokenizer(true)))
                .collect();
            #[allow(unused_mut)] // assigned only with the tokenizer feature
            let mut failure = None;
            let mut stopped = false;
            let mut f = |e: crate::decode::StreamEvent| {
                #[allow(unused_mut)]
                let mut text = String::new();
                #[cfg(feature = "tokenizer")]
                if let Some(d) = detoks[e.input].as_mut() {
                    for &id in e.ids.iter().filter(|i| !special.contains(i)) {
                        match d.push(id) {
                            Ok(piece) => text.push_str(&piece),
                            Err(err) => failure = Some(err),
                        }
                    }
                }
                let text_ptr = if with_text {
                    text.as_ptr().cast::<c_char>()
                } else {
                    std::ptr::null()
                };
                // SAFETY: the caller's function, called with pointers valid for the call.
                let r = unsafe {
                    cb(
                        user,
                        e.input,
                        e.ids.as_ptr(),
                        e.ids.len(),
                        text_ptr,
                        text.len(),
                    )
                };
                if r != 0 {
                    stopped = true;
                    crate::decode::Flow::Stop
                } else {
                    crate::decode::Flow::Continue
                }
            };
            let g = crate::decode::generate(s, &refs, &o, Some(cancel), Some(&mut f))?;
            if let Some(e) = failure {
                return Err(e);
            }
            // Text the detokenizers still hold back (a trailing run of byte pieces): one last
            // call per input, with no ids, so the pieces add up to the result's text.
            #[cfg(feature = "tokenizer")]
            for (i, d) in detoks.iter_mut().enumerate() {
                if let Some(d) = d.as_mut().filter(|_| !stopped) {
                    let rest = d.finish()?;
                    if !rest.is_empty() {
                        // SAFETY: as above.
                        let r = unsafe {
                            cb(user, i, [].as_ptr(), 0, rest.as_ptr().cast(), rest.len())
                        };
                        stopped = r != 0;
                    }
                }
            }
            g
        }
    };
    let mut outputs = Vec::with_capacity(generation.outputs.len());
    for hyps in generation.outputs {
        let mut v = Vec::with_capacity(hyps.len());
        for h in hyps {
            let text = if with_text {
                let shown: Vec<u32> = h
                    .ids
                    .iter()
                    .copied()
                    .filter(|i| !special.contains(i))
                    .collect();
                let t = detokenize(&model, &shown, true)?;
                Some(CString::new(t.replace('\0', "")).expect("NULs removed"))
            } else {
                None
            };
            v.push(ResultHyp {
                ids: h.ids,
                text,
                score: h.score,
            });
        }
        outputs.push(v);
    }
    put(
        out,
        Box::into_raw(Box::new(quill_result {
            outputs,
            stopped: generation.stopped,
        })),
        "out",
    )
}

/// Generates from `n` UTF-8 texts (source sentences or prompts). On success `*out` is a new
/// result (free with `quill_result_free`). `callback` (may be NULL) streams final tokens and
/// their text. The session's thread only.
///
/// # Safety
/// `texts` holds `n` NUL-terminated strings; `params` NULL or initialized; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_generate_text(
    session: *mut quill_session,
    texts: *const *const c_char,
    n: usize,
    params: *const quill_generate_params,
    callback: quill_stream_fn,
    user: *mut std::ffi::c_void,
    out: *mut *mut quill_result,
) -> quill_status {
    guard(|| {
        let (s, _) = unsafe { session_mut(session) }?;
        let model = s.model().clone();
        if texts.is_null() {
            return Err(arg("texts"));
        }
        if n == 0 || n > s.limits().max_batch {
            return Err(Error::InvalidArgument(format!(
                "{n} inputs: this session takes 1 to {}",
                s.limits().max_batch
            )));
        }
        let mut inputs = Vec::with_capacity(n);
        for i in 0..n {
            let t = unsafe { c_text(*texts.add(i), "texts[i]", max_input_text(s)) }?;
            inputs.push(tokenize(&model, t, true)?);
        }
        run_generation(session, inputs, true, params, callback, user, out)
    })
}

/// Generates from `n` token-id sequences (`inputs[i]` of `lens[i]` ids). As
/// `quill_generate_text`, without text.
///
/// # Safety
/// `inputs[i]` readable for `lens[i]` ids; other pointers as for `quill_generate_text`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_generate_ids(
    session: *mut quill_session,
    inputs: *const *const u32,
    lens: *const usize,
    n: usize,
    params: *const quill_generate_params,
    callback: quill_stream_fn,
    user: *mut std::ffi::c_void,
    out: *mut *mut quill_result,
) -> quill_status {
    guard(|| {
        let limits = unsafe { session_mut(session) }?.0.limits();
        let v = unsafe { id_inputs(inputs, lens, n, limits) }?;
        run_generation(session, v, false, params, callback, user, out)
    })
}

/// Copies `n` id sequences, checking `n` and every length against the session's limits before
/// reading anything (so a wrong count cannot make quill read far past the caller's arrays).
unsafe fn id_inputs(
    inputs: *const *const u32,
    lens: *const usize,
    n: usize,
    limits: crate::model::Limits,
) -> Result<Vec<Vec<u32>>, Error> {
    if inputs.is_null() || lens.is_null() {
        return Err(arg("inputs or lens"));
    }
    if n == 0 || n > limits.max_batch {
        return Err(Error::InvalidArgument(format!(
            "{n} inputs: this session takes 1 to {}",
            limits.max_batch
        )));
    }
    for i in 0..n {
        let l = unsafe { *lens.add(i) };
        if l == 0 || l > limits.max_input_len {
            return Err(Error::InvalidArgument(format!(
                "input {i} has {l} tokens: this session takes 1 to {}",
                limits.max_input_len
            )));
        }
    }
    (0..n)
        .map(|i| {
            let (p, l) = unsafe { (*inputs.add(i), *lens.add(i)) };
            if p.is_null() && l > 0 {
                return Err(arg("inputs[i]"));
            }
            Ok(if l == 0 {
                Vec::new()
            } else {
                unsafe { std::slice::from_raw_parts(p, l) }.to_vec()
            })
        })
        .collect()
}

/// Number of inputs in a result (0 for NULL).
///
/// # Safety
/// `result` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_result_inputs(result: *const quill_result) -> usize {
    unsafe { result.as_ref() }.map_or(0, |r| r.outputs.len())
}

/// Number of hypotheses of input `input` (0 when out of range).
///
/// # Safety
/// `result` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_result_hypotheses(
    result: *const quill_result,
    input: usize,
) -> usize {
    unsafe { result.as_ref() }
        .and_then(|r| r.outputs.get(input))
        .map_or(0, Vec::len)
}

/// Nonzero when the generation was stopped (cancelled or by the callback) before its end.
///
/// # Safety
/// `result` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_result_stopped(result: *const quill_result) -> i32 {
    unsafe { result.as_ref() }.is_some_and(|r| r.stopped) as i32
}

unsafe fn hyp<'a>(
    result: *const quill_result,
    input: usize,
    h: usize,
) -> Result<&'a ResultHyp, Error> {
    let r = unsafe { result.as_ref() }.ok_or_else(|| arg("result"))?;
    r.outputs
        .get(input)
        .and_then(|v| v.get(h))
        .ok_or_else(|| Error::InvalidArgument(format!("no hypothesis {h} for input {input}")))
}

/// The ids of hypothesis `h` of input `input`: `*ids` points into the result (valid until it is
/// freed), `*n` is their count.
///
/// # Safety
/// `result` live; `ids` and `n` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_result_ids(
    result: *const quill_result,
    input: usize,
    h: usize,
    ids: *mut *const u32,
    n: *mut usize,
) -> quill_status {
    guard(|| {
        let x = unsafe { hyp(result, input, h) }?;
        if ids.is_null() || n.is_null() {
            return Err(arg("ids or n"));
        }
        unsafe {
            ids.write(x.ids.as_ptr());
            n.write(x.ids.len());
        }
        Ok(())
    })
}

/// The text of hypothesis `h` of input `input` (NUL-terminated UTF-8 owned by the result), or
/// `QUILL_ERR_INVALID_ARGUMENT` for a generation from ids.
///
/// # Safety
/// `result` live; `text` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_result_text(
    result: *const quill_result,
    input: usize,
    h: usize,
    text: *mut *const c_char,
) -> quill_status {
    guard(|| {
        let x = unsafe { hyp(result, input, h) }?;
        let t = x.text.as_ref().ok_or_else(|| {
            Error::InvalidArgument("this result was generated from ids: it has no text".into())
        })?;
        put(text, t.as_ptr(), "text")
    })
}

/// The score of hypothesis `h` of input `input` (sum of log-probabilities; length-normalized
/// under beam search).
///
/// # Safety
/// `result` live; `score` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_result_score(
    result: *const quill_result,
    input: usize,
    h: usize,
    score: *mut f32,
) -> quill_status {
    guard(|| {
        let x = unsafe { hyp(result, input, h) }?;
        put(score, x.score, "score")
    })
}

/// Frees a result (NULL is fine).
///
/// # Safety
/// `result` NULL or live and not used by any other call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_result_free(result: *mut quill_result) {
    // SAFETY: forwarded contract.
    unsafe { free_boxed(result) }
}

/// Low level: starts `n` inputs (seq2seq: encodes them; decoder-only: prefills the prompts,
/// after which `quill_session_logits` holds one row per input). The session's thread only.
///
/// # Safety
/// As for `quill_generate_ids`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_start(
    session: *mut quill_session,
    inputs: *const *const u32,
    lens: *const usize,
    n: usize,
) -> quill_status {
    guard(|| {
        let (s, cancel) = unsafe { session_mut(session) }?;
        let v = unsafe { id_inputs(inputs, lens, n, s.limits()) }?;
        let refs: Vec<&[u32]> = v.iter().map(Vec::as_slice).collect();
        cancel.reset();
        s.set_cancel(Some(cancel.clone()));
        let r = s.start(&refs);
        s.set_cancel(None);
        r
    })
}

/// Low level: appends `tokens[i]` to sequence `i` for every started sequence (`n` = their
/// number) and computes the next logits. The session's thread only.
///
/// # Safety
/// `tokens` readable for `n` ids.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_step(
    session: *mut quill_session,
    tokens: *const u32,
    n: usize,
) -> quill_status {
    guard(|| {
        let (s, _) = unsafe { session_mut(session) }?;
        if tokens.is_null() {
            return Err(arg("tokens"));
        }
        if n != s.batch() {
            return Err(Error::InvalidArgument(format!(
                "{n} tokens for {} started sequences",
                s.batch()
            )));
        }
        let t = unsafe { std::slice::from_raw_parts(tokens, n) };
        s.step(t).map(|_| ())
    })
}

/// Low level: the latest logits, `*rows` × `*vocab` floats at `*logits`, valid until the next
/// call on the session. The session's thread only.
///
/// # Safety
/// `session` live; the out pointers writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_logits(
    session: *mut quill_session,
    logits: *mut *const f32,
    rows: *mut usize,
    vocab: *mut usize,
) -> quill_status {
    guard(|| {
        let (s, _) = unsafe { session_mut(session) }?;
        if logits.is_null() || rows.is_null() || vocab.is_null() {
            return Err(arg("logits, rows or vocab"));
        }
        let v = s.model().config().vocab_size;
        let l = s.logits();
        unsafe {
            logits.write(l.as_ptr());
            rows.write(l.len() / v);
            vocab.write(v);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn params_of_older_callers_keep_the_new_fields_defaults() {
        // A caller built against the first header: its struct ends before max_memory.
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct V1 {
            struct_size: usize,
            max_batch: u32,
            max_input_len: u32,
            max_new_tokens: u32,
            beams: u32,
        }
        let old = V1 {
            struct_size: std::mem::size_of::<V1>(),
            max_batch: 3,
            max_input_len: 5,
            max_new_tokens: 7,
            beams: 2,
        };
        assert_eq!(old.struct_size, SESSION_PARAMS_V1);
        let mut p = quill_session_params {
            struct_size: 0,
            max_batch: 1,
            max_input_len: 0,
            max_new_tokens: 0,
            beams: 1,
            max_memory: 99,
        };
        let ptr = (&old as *const V1).cast::<quill_session_params>();
        unsafe { versioned_params(ptr, SESSION_PARAMS_V1, &mut p, "params") }.unwrap();
        assert_eq!(
            (p.max_batch, p.max_input_len, p.max_new_tokens, p.beams),
            (3, 5, 7, 2)
        );
        assert_eq!(p.max_memory, 99, "past the caller's struct: untouched");
        let short = V1 {
            struct_size: 16,
            ..old
        };
        let ptr = (&short as *const V1).cast::<quill_session_params>();
        assert!(unsafe { versioned_params(ptr, SESSION_PARAMS_V1, &mut p, "params") }.is_err());
        let new = quill_session_params {
            struct_size: std::mem::size_of::<quill_session_params>(),
            max_memory: 1 << 30,
            ..p
        };
        unsafe { versioned_params(&new, SESSION_PARAMS_V1, &mut p, "params") }.unwrap();
        assert_eq!(p.max_memory, 1 << 30);
    }

    #[test]
    fn version_constants_match_cargo() {
        let v = format!("{QUILL_VERSION_MAJOR}.{QUILL_VERSION_MINOR}.{QUILL_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        let c = unsafe { CStr::from_ptr(quill_version()) };
        assert_eq!(c.to_str().unwrap(), v);
    }

    #[test]
    fn status_names_cover_every_status() {
        for (s, name) in [
            (QUILL_OK, "QUILL_OK"),
            (QUILL_ERR_INTERNAL, "QUILL_ERR_INTERNAL"),
        ] {
            let c = unsafe { CStr::from_ptr(quill_status_str(s as c_int)) };
            assert_eq!(c.to_str().unwrap(), name);
        }
        let c = unsafe { CStr::from_ptr(quill_status_str(-5)) };
        assert_eq!(c.to_str().unwrap(), "QUILL_ERR_UNKNOWN");
    }

    #[test]
    fn log_callback_receives_warnings() {
        use std::sync::Mutex;
        static SEEN: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());
        unsafe extern "C" fn record(user: *mut std::ffi::c_void, level: i32, msg: *const c_char) {
            assert_eq!(user as usize, 7);
            let m = unsafe { CStr::from_ptr(msg) }.to_str().unwrap().to_string();
            SEEN.lock().unwrap().push((level, m));
        }
        assert_eq!(quill_set_log_callback(Some(record), 7 as *mut _), QUILL_OK);
        crate::log::log(crate::log::Level::Warn, "careful");
        assert_eq!(quill_set_log_callback(None, std::ptr::null_mut()), QUILL_OK);
        crate::log::log(crate::log::Level::Warn, "to stderr");
        assert_eq!(*SEEN.lock().unwrap(), vec![(1, "careful".to_string())]);
    }

    #[test]
    fn guard_catches_panics_and_keeps_messages() {
        let st = guard(|| panic!("boom"));
        assert_eq!(st, QUILL_ERR_INTERNAL);
        let msg = unsafe { CStr::from_ptr(quill_last_error()) };
        assert!(msg.to_str().unwrap().contains("boom"));
        let st = guard(|| Err(Error::InvalidArgument("nul\0inside".into())));
        assert_eq!(st, QUILL_ERR_INVALID_ARGUMENT);
        let msg = unsafe { CStr::from_ptr(quill_last_error()) };
        assert!(msg.to_str().unwrap().contains("nul\\0inside"));
    }
}
