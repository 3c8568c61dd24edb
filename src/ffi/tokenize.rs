//! Text ↔ ids with the model's tokenizers, into caller buffers.

use std::ffi::c_char;

use super::model::{model_ref, quill_model};
use super::quill_status;
use super::{QUILL_MAX_TEXT_BYTES, arg, c_text, fill_ids, guard, put};
use crate::decode::text;
use crate::error::Error;

/// Most ids `quill_detokenize` reads in one call (the longest sequence a session can hold).
pub const QUILL_MAX_IDS: usize = 1 << 20;

/// Text → token ids with the model's tokenizer (the source one when the model has two;
/// `add_special` applies its post-processor). Writes up to `capacity` ids to `ids` and the count
/// to `*n_ids`; if they do not fit, returns `QUILL_ERR_BUFFER_TOO_SMALL` with the needed count
/// in `*n_ids` (`ids` may be NULL then). Any thread.
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
    guard(|| unsafe { tokenize_with(text::encode, model, text, add_special, ids, capacity, n_ids) })
}

/// `quill_tokenize` with `encode` (the source or the target tokenizer).
///
/// # Safety
/// As for `quill_tokenize`.
unsafe fn tokenize_with(
    encode: fn(&crate::model::Model, &str, bool) -> crate::error::Result<Vec<u32>>,
    model: *const quill_model,
    text: *const c_char,
    add_special: i32,
    ids: *mut u32,
    capacity: usize,
    n_ids: *mut usize,
) -> Result<(), Error> {
    let m = model_ref(model)?;
    let text = unsafe { c_text(text, "text", QUILL_MAX_TEXT_BYTES) }?;
    if n_ids.is_null() {
        return Err(arg("n_ids"));
    }
    let v = encode(m, text, add_special != 0)?;
    fill_ids(&v, ids, capacity, n_ids, ("ids", "n_ids"))
}

/// As `quill_tokenize`, with the target tokenizer: the vocabulary the decoder reads and writes
/// (for a forced target prefix or your own decoding loop). The same as `quill_tokenize` for a
/// model with one tokenizer (`quill_model_info.has_target_tokenizer` 0). Any thread.
///
/// # Safety
/// As for `quill_tokenize`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_tokenize_target(
    model: *const quill_model,
    text: *const c_char,
    add_special: i32,
    ids: *mut u32,
    capacity: usize,
    n_ids: *mut usize,
) -> quill_status {
    guard(|| unsafe {
        tokenize_with(
            text::encode_target,
            model,
            text,
            add_special,
            ids,
            capacity,
            n_ids,
        )
    })
}

/// Token ids → UTF-8 text (with the target tokenizer when the model has two), NUL-terminated,
/// into `buf` of `capacity` bytes; `*len` receives the text length without the NUL. If it does
/// not fit, `QUILL_ERR_BUFFER_TOO_SMALL` and the needed length (without the NUL) in `*len`.
/// At most `QUILL_MAX_IDS` ids. Any thread.
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
        let m = model_ref(model)?;
        if n > QUILL_MAX_IDS {
            // Checked before reading: a wrong count must not make quill read far past `ids`.
            return Err(Error::InvalidArgument(format!(
                "{n} ids: quill_detokenize takes at most {QUILL_MAX_IDS}"
            )));
        }
        if ids.is_null() && n > 0 {
            return Err(arg("ids"));
        }
        if len.is_null() {
            return Err(arg("len"));
        }
        if buf.is_null() && capacity > 0 {
            return Err(arg("buf"));
        }
        let ids = if n == 0 {
            &[][..]
        } else {
            unsafe { std::slice::from_raw_parts(ids, n) }
        };
        let text = text::decode(m, ids, skip_special != 0)?;
        put(len, text.len(), "len")?;
        if text.len() + 1 > capacity {
            return Err(Error::BufferTooSmall(text.len() + 1));
        }
        // SAFETY: `buf` is writable for `capacity > text.len()` bytes (contract).
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            *buf.add(text.len()) = 0;
        }
        Ok(())
    })
}
