//! `quill_result`: what a generation produced, read through accessors, freed once.

use std::ffi::{CString, c_char};

use super::quill_status;
use super::{arg, free_boxed, guard, guard_value, put};
use crate::error::Error;

/// The outcome of a generation: per input, hypotheses (best first) with ids, text and score.
/// Read-only: any number of threads may read one result.
pub struct quill_result {
    pub(crate) outputs: Vec<Vec<ResultHyp>>,
    pub(crate) stopped: bool,
}

pub(crate) struct ResultHyp {
    pub ids: Vec<u32>,
    pub text: Option<CString>,
    pub score: f32,
}

/// Number of inputs in a result (0 for NULL).
///
/// # Safety
/// `result` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_result_inputs(result: *const quill_result) -> usize {
    guard_value(0, || {
        unsafe { result.as_ref() }.map_or(0, |r| r.outputs.len())
    })
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
    guard_value(0, || {
        unsafe { result.as_ref() }
            .and_then(|r| r.outputs.get(input))
            .map_or(0, Vec::len)
    })
}

/// Nonzero when the generation was stopped (cancelled or by the callback) before its end.
///
/// # Safety
/// `result` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_result_stopped(result: *const quill_result) -> i32 {
    guard_value(0, || {
        unsafe { result.as_ref() }.is_some_and(|r| r.stopped) as i32
    })
}

unsafe fn hyp<'a>(
    result: *const quill_result,
    input: usize,
    h: usize,
) -> Result<&'a ResultHyp, Error> {
    let r = unsafe { result.as_ref() }.ok_or_else(|| arg("result"))?;
    let hyps = r.outputs.get(input).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "no input {input}: the result has {} inputs",
            r.outputs.len()
        ))
    })?;
    hyps.get(h).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "no hypothesis {h} for input {input}: it has {}",
            hyps.len()
        ))
    })
}

/// The ids of hypothesis `h` of input `input`: `*ids` points into the result (valid until it is
/// freed), `*n` is their count. They are the generated ids, ending with the end-of-sequence id
/// when one ended the hypothesis (`quill_result_text` leaves special ids out); neither the
/// decoder start id nor a decoder-only model's prompt is included.
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
        put(ids, x.ids.as_ptr(), "ids")?;
        put(n, x.ids.len(), "n")
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
