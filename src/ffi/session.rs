//! `quill_session`: the KV cache and scratch of one user of a model, sized once; cancellation
//! from any thread; the low-level loop (start, step, logits).

use super::model::{model_ref, quill_model};
use super::quill_status;
use super::{Versioned, arg, free_boxed, guard, put, read_versioned, write_sized, write_versioned};
use crate::error::Error;

/// A session: the KV cache and scratch of one user of a model. One thread at a time, except
/// `quill_session_cancel`, which any thread may call at any time.
pub struct quill_session {
    session: std::cell::UnsafeCell<crate::model::Session>,
    cancel: crate::model::CancelHandle,
    /// The conversation of `quill_chat_turn` (decoder-only models).
    chat: std::cell::UnsafeCell<crate::decode::Chat>,
    /// ... and its messages, for a model with a chat template (made at its first use).
    conversation: std::cell::UnsafeCell<ConversationSlot>,
}

/// The conversation of a session whose model has a chat template (none without the `chat`
/// feature).
#[cfg(feature = "chat")]
pub(crate) type ConversationSlot = Option<crate::chat::Conversation>;
#[cfg(not(feature = "chat"))]
pub(crate) type ConversationSlot = Option<std::convert::Infallible>;

/// Limits a session is sized for (all memory is allocated when it is created). 0 for a length
/// or for `beams` means "fit the model": 512 input tokens, the model's default number of new
/// tokens and of beams (its `quill.generation`), shortened to what its positions hold.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct quill_session_params {
    pub struct_size: usize,
    /// Inputs per call (at least 1).
    pub max_batch: u32,
    pub max_input_len: u32,
    pub max_new_tokens: u32,
    pub beams: u32,
    /// Bytes the session may use (KV cache, scratch, decoding state); 0 = half the physical
    /// memory. Limits that need more fail with `QUILL_ERR_OUT_OF_MEMORY`. (Appended after the
    /// first release: a 24-byte struct gets 0.)
    pub max_memory: u64,
}

// SAFETY: repr(C), struct_size first, integers only.
unsafe impl Versioned for quill_session_params {
    const FIRST_SIZE: usize = 24;
    const NAME: &'static str = "quill_session_params";
}

/// What `quill_session_params_init` gives (and what NULL params mean): one input at a time,
/// everything else fitted to the model.
fn default_session_params() -> quill_session_params {
    quill_session_params {
        struct_size: std::mem::size_of::<quill_session_params>(),
        max_batch: 1,
        max_input_len: 0,
        max_new_tokens: 0,
        beams: 0,
        max_memory: 0,
    }
}

/// Fills `size` bytes of `params` with session defaults (1 input; lengths and beams 0, which fit
/// the model) and sets `params->struct_size` to the bytes written: pass
/// `sizeof(quill_session_params)`. Any thread.
///
/// # Safety
/// `params` is NULL or points at `size` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_params_init(
    params: *mut quill_session_params,
    size: usize,
) -> quill_status {
    guard(|| unsafe { write_versioned(params, size, default_session_params()) })
}

/// Programs built against the first header call this; through this header the name is a macro
/// for `quill_session_params_init(params, sizeof(quill_session_params))`. Fills only the fields of the first
/// release's struct (24 bytes, without `max_memory`), never more. Any thread.
///
/// # Safety
/// `params` is NULL or points at at least 24 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_default_params(
    params: *mut quill_session_params,
) -> quill_status {
    guard(|| unsafe {
        write_versioned(
            params,
            quill_session_params::FIRST_SIZE,
            default_session_params(),
        )
    })
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
        let m = model_ref(model)?;
        let p = if params.is_null() {
            default_session_params()
        } else {
            unsafe { read_versioned(params, default_session_params()) }?
        };
        if out.is_null() {
            return Err(arg("out"));
        }
        let requested = crate::model::Limits {
            max_batch: p.max_batch as usize,
            max_input_len: p.max_input_len as usize,
            max_new_tokens: p.max_new_tokens as usize,
            beams: p.beams as usize,
            max_memory: usize::try_from(p.max_memory).unwrap_or(usize::MAX),
        };
        let limits = crate::decode::fit_limits(m, requested)?;
        let session = crate::model::Session::new(m, limits)?;
        let h = quill_session {
            session: std::cell::UnsafeCell::new(session),
            cancel: crate::model::CancelHandle::new(),
            chat: std::cell::UnsafeCell::new(crate::decode::Chat::new()),
            conversation: std::cell::UnsafeCell::new(None),
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

/// The session's state, for the one thread using it: the session, its conversation and its
/// cancel flag.
pub(crate) struct SessionParts<'a> {
    pub session: &'a mut crate::model::Session,
    pub chat: &'a mut crate::decode::Chat,
    pub conversation: &'a mut ConversationSlot,
    pub cancel: &'a crate::model::CancelHandle,
}

impl SessionParts<'_> {
    /// Ends the conversation (its messages too): the session's cache is about to hold
    /// something else.
    pub fn forget_chat(&mut self) {
        *self.chat = crate::decode::Chat::new();
        *self.conversation = None;
    }
}

/// # Safety
/// `s` is NULL or a live session used by no other thread (except `quill_session_cancel`).
pub(crate) unsafe fn session_mut<'a>(s: *mut quill_session) -> Result<SessionParts<'a>, Error> {
    if s.is_null() {
        return Err(arg("session"));
    }
    // SAFETY: caller contract; the fields are borrowed separately, `cancel` only shared.
    unsafe {
        Ok(SessionParts {
            session: &mut *(*s).session.get(),
            chat: &mut *(*s).chat.get(),
            conversation: &mut *(*s).conversation.get(),
            cancel: &*std::ptr::addr_of!((*s).cancel),
        })
    }
}

/// Forgets the session's started sequences and its conversation, and clears a pending cancel
/// (its memory stays allocated). The session's thread.
///
/// # Safety
/// `session` is a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_reset(session: *mut quill_session) -> quill_status {
    guard(|| {
        let mut p = unsafe { session_mut(session) }?;
        p.session.reset();
        p.forget_chat();
        p.cancel.reset();
        Ok(())
    })
}

/// Asks the generation running on `session` (on another thread) to stop; it returns within
/// one decoding step (or one layer of a prefill) with what it produced and the result's
/// `stopped` flag set. A cancel made while no generation runs stops the next one as it starts
/// (so one that races with the start is never lost); the request is cleared when the
/// generation it stopped returns, and by `quill_session_reset`. Any thread, at any time while
/// the session is alive.
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

/// The limits `session` was made with, each 0 of its parameters replaced by what it fitted to
/// the model, and `max_memory` by the budget applied (bytes). Set `params->struct_size` first;
/// at most that many bytes are written. The session's thread.
///
/// # Safety
/// `session` live; `params` points at a struct whose `struct_size` is set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_limits(
    session: *mut quill_session,
    params: *mut quill_session_params,
) -> quill_status {
    guard(|| {
        let p = unsafe { session_mut(session) }?;
        let l = p.session.limits();
        let v = quill_session_params {
            struct_size: std::mem::size_of::<quill_session_params>(),
            max_batch: l.max_batch as u32,
            max_input_len: l.max_input_len as u32,
            max_new_tokens: l.max_new_tokens as u32,
            beams: l.beams as u32,
            max_memory: p.session.memory_budget() as u64,
        };
        unsafe { write_sized(params, v) }
    })
}

/// Copies `n` id sequences, checking `n` and every length against the session's limits before
/// reading anything (so a wrong count cannot make quill read far past the caller's arrays).
///
/// # Safety
/// `inputs[i]` readable for `lens[i]` ids, for `i < n` (once `n` is within the limits).
pub(crate) unsafe fn id_inputs(
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
            "{n} inputs: this session takes 1 to {} (max_batch in its parameters)",
            limits.max_batch
        )));
    }
    for i in 0..n {
        let l = unsafe { *lens.add(i) };
        if l == 0 || l > limits.max_input_len {
            return Err(Error::InvalidArgument(format!(
                "input {i} has {l} tokens: this session takes 1 to {} (max_input_len in its \
                 parameters)",
                limits.max_input_len
            )));
        }
    }
    (0..n)
        .map(|i| {
            let (p, l) = unsafe { (*inputs.add(i), *lens.add(i)) };
            if p.is_null() {
                return Err(arg("inputs[i]"));
            }
            Ok(unsafe { std::slice::from_raw_parts(p, l) }.to_vec())
        })
        .collect()
}

/// Low level: starts `n` inputs (seq2seq: encodes them, after which the decoder waits for its
/// first token, `quill_model_info.decoder_start_id`; decoder-only: prefills the prompts, after
/// which `quill_session_logits` holds one row per input). A pending cancel stops it
/// (`QUILL_ERR_CANCELLED`). The session's thread only. docs/c-api.md shows the whole loop.
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
        let mut p = unsafe { session_mut(session) }?;
        let v = unsafe { id_inputs(inputs, lens, n, p.session.limits()) }?;
        let refs: Vec<&[u32]> = v.iter().map(Vec::as_slice).collect();
        p.forget_chat();
        p.session.set_cancel(Some(p.cancel.clone()));
        let r = if p.cancel.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            p.session.start(&refs)
        };
        p.session.set_cancel(None);
        p.cancel.reset();
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
        let p = unsafe { session_mut(session) }?;
        if tokens.is_null() {
            return Err(arg("tokens"));
        }
        if n != p.session.batch() {
            return Err(Error::InvalidArgument(format!(
                "{n} tokens for {} started sequences (one token per sequence)",
                p.session.batch()
            )));
        }
        let t = unsafe { std::slice::from_raw_parts(tokens, n) };
        p.session.step(t).map(|_| ())
    })
}

/// Low level: the latest logits, `*rows` × `*vocab` floats at `*logits`, valid until the next
/// call on the session. When there are none yet (before `quill_session_start`, before a seq2seq
/// decoder's first step, after `quill_session_reset`) it returns `QUILL_OK` with `*rows` 0. The
/// session's thread only.
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
        let p = unsafe { session_mut(session) }?;
        if logits.is_null() || rows.is_null() || vocab.is_null() {
            return Err(arg("logits, rows or vocab"));
        }
        let v = p.session.model().config().vocab_size;
        let l = p.session.logits();
        put(logits, l.as_ptr(), "logits")?;
        put(rows, l.len() / v, "rows")?;
        put(vocab, v, "vocab")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::quill_status::*;

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
            canary: u64,
        }
        let mut old = V1 {
            struct_size: 0xFFFF,
            max_batch: 3,
            max_input_len: 5,
            max_new_tokens: 7,
            beams: 2,
            canary: 0xDEAD_BEEF,
        };
        // Every access goes through one raw pointer, as a C caller's would (Miri runs this).
        let o: *mut V1 = &mut old;
        let ptr = o.cast::<quill_session_params>();
        // The first header's function writes the first release's 24 bytes, whatever
        // struct_size held.
        assert_eq!(unsafe { quill_session_default_params(ptr) }, QUILL_OK);
        unsafe {
            assert_eq!((*o).struct_size, 24);
            assert_eq!(
                (*o).canary,
                0xDEAD_BEEF,
                "wrote past the first release's struct"
            );
            (*o).max_batch = 3;
            (*o).canary = 99; // where max_memory is now: past the caller's struct, never read
        }
        let p = unsafe { read_versioned(ptr, default_session_params()) }.unwrap();
        assert_eq!((p.max_batch, p.max_memory), (3, 0));
        unsafe { (*o).struct_size = 16 };
        assert!(unsafe { read_versioned(ptr, default_session_params()) }.is_err());
        let mut new: quill_session_params = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<quill_session_params>();
        assert_eq!(
            unsafe { quill_session_params_init(&mut new, size) },
            QUILL_OK
        );
        assert_eq!((new.struct_size, new.max_batch, new.beams), (size, 1, 0));
        new.max_memory = 1 << 30;
        let p = unsafe { read_versioned(&new, default_session_params()) }.unwrap();
        assert_eq!(p.max_memory, 1 << 30);
    }
}
