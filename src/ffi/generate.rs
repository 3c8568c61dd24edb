//! Decoding parameters, generation (text or ids, streamed), and chat turns. The parameters'
//! defaults and checks are `decode::Params`'; the text of results and streams is
//! `decode::text`'s.

#[cfg(not(feature = "chat"))]
use std::convert::Infallible;
use std::ffi::c_char;

use super::model::{model_ref, quill_model};
use super::result::{ResultHyp, quill_result};
use super::session::{SessionParts, id_inputs, quill_session, session_mut};
use super::{QUILL_BYTES_PER_TOKEN, QUILL_MAX_TEXT_BYTES, quill_status};
use super::{Versioned, arg, c_string, c_text, guard, put, read_versioned, write_versioned};
use crate::decode::{Flow, Params, StreamEvent, TextStream, text};
use crate::error::Error;

/// Decoding options. Fill with `quill_generate_default_params` (which also applies the model's
/// own defaults when given the model), then change what you need. Every field is checked
/// whatever the strategy.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct quill_generate_params {
    pub struct_size: usize,
    /// 0: the model's default; at most the session's `max_new_tokens` (longer is shortened).
    pub max_new_tokens: u32,
    /// At most `max_new_tokens`.
    pub min_new_tokens: u32,
    /// 1: greedy or sampling; more: beam search (at most the session's `beams`). 0 is an error.
    pub beams: u32,
    /// Hypotheses returned per input (beam search); clamped into 1..beams.
    pub n_best: u32,
    /// Finite.
    pub length_penalty: f32,
    /// Nonzero: sample (temperature, top_k, top_p, min_p, seed); needs `beams` 1.
    pub sample: i32,
    /// Finite, ≥ 0.
    pub temperature: f32,
    pub top_k: u32,
    /// In (0, 1].
    pub top_p: f32,
    /// In [0, 1].
    pub min_p: f32,
    pub seed: u64,
    /// Finite, > 0 (1: off).
    pub repetition_penalty: f32,
    pub no_repeat_ngram_size: u32,
}

// SAFETY: repr(C), struct_size first, integers and floats only.
unsafe impl Versioned for quill_generate_params {
    const FIRST_SIZE: usize = 64;
    const NAME: &'static str = "quill_generate_params";
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

fn to_c(p: &Params) -> quill_generate_params {
    let u = |v: usize| v.min(u32::MAX as usize) as u32;
    quill_generate_params {
        struct_size: std::mem::size_of::<quill_generate_params>(),
        max_new_tokens: u(p.max_new_tokens),
        min_new_tokens: u(p.min_new_tokens),
        beams: u(p.beams),
        n_best: u(p.n_best),
        length_penalty: p.length_penalty,
        sample: p.sample as i32,
        temperature: p.temperature,
        top_k: u(p.top_k),
        top_p: p.top_p,
        min_p: p.min_p,
        seed: p.seed,
        repetition_penalty: p.repetition_penalty,
        no_repeat_ngram_size: u(p.no_repeat_ngram_size),
    }
}

fn from_c(p: &quill_generate_params) -> Params {
    Params {
        max_new_tokens: p.max_new_tokens as usize,
        min_new_tokens: p.min_new_tokens as usize,
        beams: p.beams as usize,
        n_best: p.n_best as usize,
        length_penalty: p.length_penalty,
        sample: p.sample != 0,
        temperature: p.temperature,
        top_k: p.top_k as usize,
        top_p: p.top_p,
        min_p: p.min_p,
        seed: p.seed,
        repetition_penalty: p.repetition_penalty,
        no_repeat_ngram_size: p.no_repeat_ngram_size as usize,
    }
}

/// The defaults: the model's own, or greedy with the model's default length (0) without one.
fn defaults(model: Option<&crate::model::Model>) -> Result<Params, Error> {
    match model {
        Some(m) => Params::model_defaults(m),
        None => Ok(Params::default()),
    }
}

/// Fills `size` bytes of `params` with decoding defaults — the model's own (`quill.generation`)
/// when `model` is not NULL, else greedy decoding with `max_new_tokens` 0 (the model's default
/// at generation time) — and sets `params->struct_size` to the bytes written: pass
/// `sizeof(quill_generate_params)`. Any thread.
///
/// # Safety
/// `model` NULL or live; `params` NULL or writable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_generate_params_init(
    model: *const quill_model,
    params: *mut quill_generate_params,
    size: usize,
) -> quill_status {
    guard(|| {
        let m = if model.is_null() {
            None
        } else {
            Some(model_ref(model)?)
        };
        unsafe { write_versioned(params, size, to_c(&defaults(m)?)) }
    })
}

/// Programs built against the first header call this; through this header the name is a macro
/// for `quill_generate_params_init(model, params, sizeof(quill_generate_params))`. Fills the first release's
/// struct (64 bytes), never more.
///
/// # Safety
/// `model` NULL or live; `params` NULL or writable for 64 bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_generate_default_params(
    model: *const quill_model,
    params: *mut quill_generate_params,
) -> quill_status {
    guard(|| {
        let m = if model.is_null() {
            None
        } else {
            Some(model_ref(model)?)
        };
        unsafe {
            write_versioned(
                params,
                quill_generate_params::FIRST_SIZE,
                to_c(&defaults(m)?),
            )
        }
    })
}

/// Fills `size` bytes of `params` with the model's decoding defaults lowered to what `session`
/// holds (its beams) — what NULL parameters mean to `quill_generate_text` and
/// `quill_generate_ids`, as a struct to change — and sets `params->struct_size` to the bytes
/// written. (For `quill_chat_turn`, set `beams` to 1.) The session's thread.
///
/// # Safety
/// `session` live; `params` NULL or writable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_session_generate_params(
    session: *mut quill_session,
    params: *mut quill_generate_params,
    size: usize,
) -> quill_status {
    guard(|| {
        let parts = unsafe { session_mut(session) }?;
        let p = Params::model_defaults(parts.session.model())?.within(parts.session.limits());
        unsafe { write_versioned(params, size, to_c(&p)) }
    })
}

/// The caller's parameters; NULL means the model's defaults, lowered (with a warning) to what
/// the session holds.
///
/// # Safety
/// `params` is NULL or points at `struct_size` readable bytes.
unsafe fn caller_params(
    parts: &SessionParts,
    params: *const quill_generate_params,
) -> Result<Params, Error> {
    let model = parts.session.model();
    let d = Params::model_defaults(model)?;
    if params.is_null() {
        return Ok(d.fit_session(parts.session.limits()));
    }
    Ok(from_c(&unsafe { read_versioned(params, to_c(&d)) }?))
}

/// Calls the caller's stream function; true when it asks to stop.
///
/// # Safety
/// `cb` is the caller's function; the pointers are valid for the call.
unsafe fn emit(
    cb: unsafe extern "C" fn(
        *mut std::ffi::c_void,
        usize,
        *const u32,
        usize,
        *const c_char,
        usize,
    ) -> i32,
    user: *mut std::ffi::c_void,
    input: usize,
    ids: &[u32],
    text: Option<&str>,
) -> bool {
    let (t, len) = text.map_or((std::ptr::null(), 0), |t| {
        (t.as_ptr().cast::<c_char>(), t.len())
    });
    // SAFETY: forwarded contract.
    unsafe { cb(user, input, ids.as_ptr(), ids.len(), t, len) != 0 }
}

/// Runs a generation; `with_text` decides whether results and streams carry text.
#[allow(clippy::too_many_arguments)]
fn run_generation(
    mut parts: SessionParts,
    inputs: Vec<Vec<u32>>,
    with_text: bool,
    params: *const quill_generate_params,
    callback: quill_stream_fn,
    user: *mut std::ffi::c_void,
    out: *mut *mut quill_result,
) -> Result<(), Error> {
    let p = unsafe { caller_params(&parts, params) }?;
    if out.is_null() {
        return Err(arg("out"));
    }
    let model = parts.session.model().clone();
    let o = p.options(&model, parts.session.limits())?;
    parts.forget_chat();
    let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
    let generation = match callback {
        None => crate::decode::generate(parts.session, &refs, &o, Some(parts.cancel), None)?,
        Some(cb) => {
            let mut stream = if with_text {
                Some(TextStream::new(&model, inputs.len())?)
            } else {
                None
            };
            let mut failure = None;
            let mut stopped = false;
            let mut f = |e: StreamEvent| {
                let text = match stream.as_mut().map(|s| s.push(e.input, e.ids)) {
                    Some(Ok(t)) => Some(t),
                    Some(Err(err)) => {
                        failure = Some(err);
                        return Flow::Stop;
                    }
                    None => None,
                };
                // SAFETY: the caller's function, with pointers valid for the call.
                stopped = unsafe { emit(cb, user, e.input, e.ids, text.as_deref()) };
                if stopped { Flow::Stop } else { Flow::Continue }
            };
            let g = crate::decode::generate(
                parts.session,
                &refs,
                &o,
                Some(parts.cancel),
                Some(&mut f),
            )?;
            if let Some(e) = failure {
                return Err(e);
            }
            // Text the stream still holds back: one last call per input, with no ids, so the
            // pieces add up to the result's text.
            if let Some(s) = stream.as_mut() {
                for i in 0..inputs.len() {
                    if stopped {
                        break;
                    }
                    let rest = s.finish(i)?;
                    if !rest.is_empty() {
                        stopped = unsafe { emit(cb, user, i, &[], Some(&rest)) };
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
            let text = match with_text {
                true => Some(c_string(&text::text_of(&model, &h.ids)?)),
                false => None,
            };
            v.push(ResultHyp {
                ids: h.ids,
                text,
                score: h.score,
            });
        }
        outputs.push(v);
    }
    let r = quill_result {
        outputs,
        stopped: generation.stopped,
    };
    put(out, Box::into_raw(Box::new(r)), "out")
}

/// The longest input text a session takes.
fn max_input_text(s: &crate::model::Session) -> usize {
    s.limits()
        .max_input_len
        .saturating_mul(QUILL_BYTES_PER_TOKEN)
        .min(QUILL_MAX_TEXT_BYTES)
}

/// Generates from `n` UTF-8 texts (source sentences or prompts); a text that is empty or only
/// whitespace is refused (`QUILL_ERR_INVALID_ARGUMENT`). Each text is the model's input as its
/// task defines it (`quill run`'s): a dialogue model's text is one user message in its chat
/// template, a `prompt` format wraps the text, other models take it as it is (`quill_generate_ids`
/// with `quill_tokenize` gives a raw prompt). On success `*out` is a new
/// result (free with `quill_result_free`). `callback` (may be NULL) streams final tokens and
/// their text. `params` NULL: the model's defaults, lowered to what the session holds. The
/// session's thread only.
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
        let parts = unsafe { session_mut(session) }?;
        if texts.is_null() {
            return Err(arg("texts"));
        }
        let max_batch = parts.session.limits().max_batch;
        if n == 0 || n > max_batch {
            return Err(Error::InvalidArgument(format!(
                "{n} inputs: this session takes 1 to {max_batch} (max_batch in its parameters)"
            )));
        }
        let model = parts.session.model().clone();
        let max = max_input_text(parts.session);
        let mut inputs = Vec::with_capacity(n);
        let task = text::TaskInput::new(&model)?;
        for i in 0..n {
            let t = unsafe { c_text(*texts.add(i), "texts[i]", max) }?;
            text::require_text(t, &format!("texts[{i}]"))?;
            inputs.push(task.ids(t)?);
        }
        run_generation(parts, inputs, true, params, callback, user, out)
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
        let parts = unsafe { session_mut(session) }?;
        let v = unsafe { id_inputs(inputs, lens, n, parts.session.limits()) }?;
        run_generation(parts, v, false, params, callback, user, out)
    })
}

/// The session's conversation under its model's chat template, made at its first use; None
/// when the model has no template.
#[cfg(feature = "chat")]
fn conversation<'c>(
    slot: &'c mut super::session::ConversationSlot,
    model: &crate::model::Model,
) -> Result<Option<&'c mut crate::chat::Conversation>, Error> {
    if slot.is_none() {
        *slot = crate::chat::ChatTemplate::of_model(model)?.map(crate::chat::Conversation::new);
    }
    Ok(slot.as_mut())
}

/// Without the `chat` feature no model has a usable template.
#[cfg(not(feature = "chat"))]
fn conversation<'c>(
    slot: &'c mut super::session::ConversationSlot,
    _: &crate::model::Model,
) -> Result<Option<&'c mut Infallible>, Error> {
    Ok(slot.as_mut())
}

/// Adds a message with `role` (`system`, `user`, `assistant`, or any role the template knows)
/// and `content` (both UTF-8) to the conversation of `session` without generating: a system
/// message before the first turn, or earlier turns to continue from. Needs a model with a chat
/// template (`QUILL_ERR_INVALID_ARGUMENT` otherwise). The template sees the message at the next
/// `quill_chat_turn`, which reports a role it refuses. The session's thread only.
///
/// # Safety
/// `session` live; `role` and `content` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_chat_add(
    session: *mut quill_session,
    role: *const c_char,
    content: *const c_char,
) -> quill_status {
    guard(|| {
        let parts = unsafe { session_mut(session) }?;
        let model = parts.session.model().clone();
        let limit = max_input_text(parts.session);
        let role = unsafe { c_text(role, "role", 64) }?;
        let content = unsafe { c_text(content, "content", limit) }?;
        if role.is_empty() {
            return Err(arg("role"));
        }
        let Some(c) = conversation(parts.conversation, &model)? else {
            return Err(Error::InvalidArgument(
                "quill_chat_add: the model has no chat template".into(),
            ));
        };
        #[cfg(feature = "chat")]
        {
            c.push(crate::chat::Message::new(role, content));
            Ok(())
        }
        #[cfg(not(feature = "chat"))]
        {
            let _ = (role, content);
            match *c {}
        }
    })
}

/// Offers `tools` to the model through its chat template: a JSON list as `transformers`'
/// `apply_chat_template` takes it (`[{"type":"function","function":{"name":…,
/// "description":…,"parameters":{…}}}]`), UTF-8 and NUL-terminated; NULL or `""` removes them.
/// The model answers a call as text in its own format (Qwen2.5: `<tool_call>{…}</tool_call>`);
/// give the result with `quill_chat_add(session, "tool", result)` and get the model's reply
/// with `quill_chat_turn(session, NULL, …)`. Needs a model with a chat template
/// (`QUILL_ERR_INVALID_ARGUMENT` otherwise, or when `tools` is not a JSON list). Changing the
/// tools mid-conversation makes the next turn prefill the whole conversation. The session's
/// thread only.
///
/// # Safety
/// `session` live; `tools` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn quill_chat_set_tools(
    session: *mut quill_session,
    tools: *const c_char,
) -> quill_status {
    guard(|| {
        let parts = unsafe { session_mut(session) }?;
        let model = parts.session.model().clone();
        let json = if tools.is_null() {
            ""
        } else {
            unsafe { c_text(tools, "tools", QUILL_MAX_TEXT_BYTES) }?
        };
        let Some(c) = conversation(parts.conversation, &model)? else {
            return Err(Error::InvalidArgument(
                "quill_chat_set_tools: the model has no chat template".into(),
            ));
        };
        #[cfg(feature = "chat")]
        {
            let tools = if json.trim().is_empty() {
                None
            } else {
                match serde_json::from_str::<serde_json::Value>(json) {
                    Ok(v @ serde_json::Value::Array(_)) => Some(v),
                    Ok(_) => return Err(arg("tools (a JSON list)")),
                    Err(e) => {
                        return Err(Error::InvalidArgument(format!(
                            "quill_chat_set_tools: tools is not JSON: {e}"
                        )));
                    }
                }
            };
            c.set_tools(tools);
            Ok(())
        }
        #[cfg(not(feature = "chat"))]
        {
            let _ = json;
            match *c {}
        }
    })
}

/// Chat with a decoder-only model: adds `text` (UTF-8) to the conversation kept in `session`
/// and generates the reply, prefilling only the new tokens after the cache of earlier turns.
/// A model with a chat template (`quill.chat_template`: converted from a checkpoint that ships
/// one) takes `text` as the user's message and formats the conversation with its template (see
/// `quill_chat_add` for system messages); `text` NULL then replies to the messages so far (a
/// tool's result added with `quill_chat_add`). Without a template, `text` is given to the model
/// as it is (formatted as the model expects its turns). Greedy or sampling (`params->beams` must be 1;
/// `params` NULL: the model's defaults with one beam); `callback` streams the reply. `*out` gets
/// a result with one input and one hypothesis (the reply). The conversation lives in one
/// sequence of the session, `max_input_len + max_new_tokens` tokens in all: a reply that reaches
/// the end stops there (not flagged `stopped`), and a turn that does not fit any more is
/// `QUILL_ERR_INVALID_ARGUMENT` (the conversation is then as before the call);
/// `quill_session_reset` starts a new conversation. The session's thread only.
///
/// # Safety
/// `session` live; `text` NULL or NUL-terminated; `params` NULL or initialized; `out` writable.
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
        let parts = unsafe { session_mut(session) }?;
        let model = parts.session.model().clone();
        let msg = if text.is_null() {
            None
        } else {
            Some(unsafe { c_text(text, "text", max_input_text(parts.session)) }?)
        };
        let p = if params.is_null() {
            // A chat turn is one sequence: the model's defaults without beam search.
            Params {
                beams: 1,
                n_best: 1,
                ..Params::model_defaults(&model)?
            }
        } else {
            unsafe { caller_params(&parts, params) }?
        };
        if out.is_null() {
            return Err(arg("out"));
        }
        let o = p.options(&model, parts.session.limits())?;
        let conversation = conversation(parts.conversation, &model)?;
        let mut stream = match callback {
            Some(_) => Some(TextStream::new(&model, 1)?),
            None => None,
        };
        let mut failure = None;
        let mut stopped = false;
        let mut f = |e: StreamEvent| {
            let (Some(cb), Some(stream)) = (callback, stream.as_mut()) else {
                return Flow::Continue;
            };
            let piece = match stream.push(0, e.ids) {
                Ok(t) => t,
                Err(err) => {
                    failure = Some(err);
                    return Flow::Stop;
                }
            };
            // SAFETY: the caller's function, with pointers valid for the call.
            stopped = unsafe { emit(cb, user, 0, e.ids, Some(&piece)) };
            if stopped { Flow::Stop } else { Flow::Continue }
        };
        let cb: Option<&mut dyn FnMut(StreamEvent) -> Flow> = match callback {
            Some(_) => Some(&mut f),
            None => None,
        };
        let cancel = Some(parts.cancel);
        let (reply, was_stopped) = match conversation {
            #[cfg(not(feature = "chat"))]
            Some(never) => match *never {},
            #[cfg(feature = "chat")]
            Some(c) => {
                let r = match msg {
                    Some(msg) => c.turn(parts.session, msg, &o, cancel, cb)?,
                    None => c.reply(parts.session, &o, cancel, cb)?,
                };
                (r, c.stopped())
            }
            None => {
                let msg = msg.ok_or_else(|| {
                    Error::InvalidArgument(
                        "text is NULL: only a model with a chat template replies to the \
                         messages so far"
                            .into(),
                    )
                })?;
                text::require_text(msg, "the message")?;
                let tokens = text::encode(&model, msg, parts.chat.history().is_empty())?;
                let r = parts.chat.turn(parts.session, &tokens, &o, cancel, cb)?;
                (r, parts.chat.stopped())
            }
        };
        if let Some(e) = failure {
            return Err(e);
        }
        if let (Some(cb), Some(stream)) = (callback, stream.as_mut()) {
            // Held-back text (a trailing run of byte pieces), in one last call without ids.
            let rest = stream.finish(0)?;
            if !stopped && !rest.is_empty() {
                unsafe { emit(cb, user, 0, &[], Some(&rest)) };
            }
        }
        let hyp = ResultHyp {
            text: Some(c_string(&text::text_of(&model, &reply.ids)?)),
            ids: reply.ids,
            score: reply.score,
        };
        let r = quill_result {
            outputs: vec![vec![hyp]],
            stopped: was_stopped,
        };
        put(out, Box::into_raw(Box::new(r)), "out")
    })
}
