//! Decoding: from logits to ids, shared by every architecture.
//!
//! - Strategies: greedy, beam search (Hugging Face `transformers` semantics, see [`BeamOptions`]),
//!   sampling (temperature, top-k, top-p, min-p) with a seeded generator.
//! - Logits processors ([`GenerateOptions`]): repetition penalty, no-repeat n-grams, suppressed
//!   tokens and sequences, minimum new tokens (end-of-sequence masked before it), forced first and
//!   last tokens, several end-of-sequence ids.
//! - Streaming: a callback receives each input's new tokens as soon as they are final — under
//!   beam search, the prefix every hypothesis that can still win shares — and can stop.
//! - Cancellation: a [`CancelHandle`] another thread can trigger; checked at every step and
//!   between the layers of a prefill or encoder pass.
//!
//! Try it: `quill run model.quill "Open the file" --beams 4`.

mod beam;
mod params;
mod processors;
pub mod text;

use crate::error::{Error, Result};
use crate::format::Arch;
pub use crate::model::CancelHandle;
use crate::model::Session;
pub use crate::rng::Rng;
pub use params::{Params, fit_limits};
pub use text::TextStream;

/// How the next token is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    Greedy,
    Beam(BeamOptions),
    Sample(SampleOptions),
}

/// Beam search as in Hugging Face `transformers`: at each step the `2·beams` best continuations
/// (by summed log-probability) are considered; an end-of-sequence continuation ranked among the
/// first `beams` closes a hypothesis whose score is `sum_logprobs / generated_len^length_penalty`
/// (generated tokens, end-of-sequence included); the search of an input ends when `beams`
/// hypotheses are closed and then as [`EarlyStopping`] says. CTranslate2 differs: it normalizes
/// by `length^length_penalty` only at the end and stops when the best running beam finishes.
#[derive(Clone, Debug, PartialEq)]
pub struct BeamOptions {
    pub beams: usize,
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    /// Hypotheses returned per input (≤ beams).
    pub n_best: usize,
}

impl Default for BeamOptions {
    fn default() -> Self {
        BeamOptions {
            beams: 4,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            n_best: 1,
        }
    }
}

/// When the beam search of an input ends once `beams` hypotheses are closed (`transformers`'
/// `early_stopping`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EarlyStopping {
    /// `false`: when the best running beam, scored at its current length, cannot beat the worst
    /// closed hypothesis.
    #[default]
    Heuristic,
    /// `true`: at once.
    Finished,
    /// `"never"`: when the best running beam cannot beat the worst closed hypothesis even at the
    /// longest length it could reach (with a positive length penalty; otherwise as
    /// `Heuristic`): canonical beam search.
    Never,
}

impl EarlyStopping {
    /// `generation_config.json`'s value: `true`, `false` or `"never"`.
    pub fn from_json(v: &serde_json::Value) -> Result<EarlyStopping> {
        match v {
            serde_json::Value::Bool(true) => Ok(EarlyStopping::Finished),
            serde_json::Value::Bool(false) | serde_json::Value::Null => {
                Ok(EarlyStopping::Heuristic)
            }
            serde_json::Value::String(s) if s == "never" => Ok(EarlyStopping::Never),
            other => Err(Error::bad_config(
                "early_stopping",
                format!("expected true, false or \"never\", found {other}"),
            )),
        }
    }
}

/// Sampling: logits / temperature, then top-k, top-p (nucleus) and min-p filters, in that order.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOptions {
    /// Positive; below 1e-5 sampling becomes greedy.
    pub temperature: f32,
    /// 0: off.
    pub top_k: usize,
    /// 1.0: off.
    pub top_p: f32,
    /// 0.0: off.
    pub min_p: f32,
    pub seed: u64,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 0,
        }
    }
}

/// Everything that shapes a generation.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    pub strategy: Strategy,
    pub max_new_tokens: usize,
    /// End-of-sequence is masked until this many tokens were generated.
    pub min_new_tokens: usize,
    /// Above 1 it discourages tokens already in the sequence (CTRL-style: logits of seen tokens
    /// are divided by it when positive, multiplied when negative). 1.0: off.
    pub repetition_penalty: f32,
    /// No n-gram of this size occurs twice in the generated sequence. 0: off.
    pub no_repeat_ngram_size: usize,
    /// Never generated.
    pub suppress_tokens: Vec<u32>,
    /// Sequences never generated (the last id is masked when the others were just produced).
    pub bad_words_ids: Vec<Vec<u32>>,
    /// The first generated token (mBART-style target language).
    pub forced_bos_token_id: Option<u32>,
    /// The token generated when `max_new_tokens` is reached.
    pub forced_eos_token_id: Option<u32>,
    /// End-of-sequence ids; empty: the model's.
    pub eos_token_ids: Vec<u32>,
    /// Forced start of every output (seq2seq target prefix, after the decoder start id).
    pub prefix: Vec<u32>,
    /// Generation of a hypothesis ends once its text contains one of these (needs the model's
    /// tokenizer).
    pub stop_strings: Vec<String>,
    /// Return, for each generated token of a seq2seq model, its cross-attention weights over the
    /// source tokens (last decoder layer, averaged over heads).
    pub return_alignment: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            strategy: Strategy::Greedy,
            max_new_tokens: 256,
            min_new_tokens: 0,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            suppress_tokens: Vec::new(),
            bad_words_ids: Vec::new(),
            forced_bos_token_id: None,
            forced_eos_token_id: None,
            eos_token_ids: Vec::new(),
            prefix: Vec::new(),
            stop_strings: Vec::new(),
            return_alignment: false,
        }
    }
}

/// One generated sequence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hypothesis {
    /// Generated ids (the prefix included, the decoder start id and the prompt not), ending with
    /// the end-of-sequence id when one was produced.
    pub ids: Vec<u32>,
    /// The log-probability of each id (after logits processors).
    pub logprobs: Vec<f32>,
    /// Sum of log-probabilities; for beam search, divided by `len^length_penalty`.
    pub score: f32,
    /// With `return_alignment`: per generated id, its weights over the source tokens.
    pub alignment: Vec<Vec<f32>>,
}

/// The result of a generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// Per input, the hypotheses, best first.
    pub outputs: Vec<Vec<Hypothesis>>,
    /// True when a [`CancelHandle`] or the stream callback stopped the generation early; the
    /// outputs then hold what was produced.
    pub stopped: bool,
}

/// What the stream callback receives: input `input` gained the final tokens `ids`.
#[derive(Debug)]
pub struct StreamEvent<'a> {
    pub input: usize,
    pub ids: &'a [u32],
}

/// Return [`Flow::Stop`] from a stream callback to end the generation cleanly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

pub(crate) type Callback<'a> = &'a mut dyn FnMut(StreamEvent) -> Flow;

impl GenerateOptions {
    fn validate(&self, vocab: usize) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if self.min_new_tokens > self.max_new_tokens {
            return bad(format!(
                "min_new_tokens ({}) is above max_new_tokens ({})",
                self.min_new_tokens, self.max_new_tokens
            ));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetition_penalty must be > 0, found {}",
                self.repetition_penalty
            ));
        }
        let ids = self
            .suppress_tokens
            .iter()
            .chain(self.bad_words_ids.iter().flatten())
            .chain(self.forced_bos_token_id.iter())
            .chain(self.forced_eos_token_id.iter())
            .chain(self.eos_token_ids.iter())
            .chain(self.prefix.iter());
        for &id in ids {
            if id as usize >= vocab {
                return bad(format!(
                    "token id {id} in the options is not below the vocabulary size {vocab}"
                ));
            }
        }
        match &self.strategy {
            Strategy::Greedy => {}
            Strategy::Beam(b) => {
                if b.beams == 0 || b.n_best == 0 || b.n_best > b.beams {
                    return bad(format!(
                        "beams = {}, n_best = {}: need 1 ≤ n_best ≤ beams",
                        b.beams, b.n_best
                    ));
                }
                if !b.length_penalty.is_finite() {
                    return bad("length_penalty must be finite".into());
                }
            }
            Strategy::Sample(s) => {
                if !(s.temperature.is_finite() && s.temperature >= 0.0) {
                    return bad(format!("temperature must be ≥ 0, found {}", s.temperature));
                }
                if !(s.top_p > 0.0 && s.top_p <= 1.0 && (0.0..=1.0).contains(&s.min_p)) {
                    return bad(format!(
                        "top_p must be in (0, 1] and min_p in [0, 1], found {} and {}",
                        s.top_p, s.min_p
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Clears a cancel request when the generation (or chat turn) it was made for returns, however
/// it returns.
struct ClearOnReturn<'a>(Option<&'a CancelHandle>);

impl Drop for ClearOnReturn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.reset();
        }
    }
}

/// Runs a generation on `session` for `inputs` (source sentences or prompts, as ids).
///
/// `cancel` stops it within one step (or one layer of the encoder or prefill); a cancel made
/// before the call stops it at once, so a request that races with the start is never lost. The
/// request is cleared when the generation returns.
pub fn generate(
    session: &mut Session,
    inputs: &[&[u32]],
    options: &GenerateOptions,
    cancel: Option<&CancelHandle>,
    callback: Option<Callback>,
) -> Result<Generation> {
    let _clear = ClearOnReturn(cancel);
    let model = session.model().clone();
    let c = model.config();
    options.validate(c.vocab_size)?;
    let beams = match &options.strategy {
        Strategy::Beam(b) => b.beams,
        _ => 1,
    };
    if beams > session.limits().beams {
        return Err(Error::InvalidArgument(format!(
            "{beams} beams: the session was created for at most {}",
            session.limits().beams
        )));
    }
    let eos: Vec<u32> = if options.eos_token_ids.is_empty() {
        c.eos_ids.clone()
    } else {
        options.eos_token_ids.clone()
    };
    let max_new = options.max_new_tokens.min(session.limits().max_new_tokens);
    let start = if model.arch() == Arch::DecoderOnly {
        None
    } else {
        c.decoder_start_id
    };
    let ctx = beam::Context {
        options,
        eos: &eos,
        max_new,
        decoder_start: start,
        cancel,
        stop: stop_strings(&model, options)?,
    };
    beam::run(session, inputs, beams, &ctx, callback, beam::Begin::Fresh)
}

fn stop_strings<'a>(
    model: &'a crate::model::Model,
    o: &'a GenerateOptions,
) -> Result<Option<beam::StopStrings<'a>>> {
    if o.stop_strings.is_empty() {
        return Ok(None);
    }
    // Stop strings are matched on text: the model needs its tokenizer (refused here, not at the
    // first token).
    text::decode(model, &[], true)?;
    Ok(Some(beam::StopStrings {
        model,
        strings: &o.stop_strings,
        special: model.special_ids(),
    }))
}

/// A conversation with a decoder-only model: each turn prefills only its new tokens after the
/// KV cache of the turns before (and the last token of the previous reply, which generation
/// produced but did not feed back).
#[derive(Clone, Debug, Default)]
pub struct Chat {
    history: Vec<u32>,
    pending: Option<u32>,
    /// The last turn was stopped (cancelled or by its callback) before its end.
    stopped: bool,
}

impl Chat {
    pub fn new() -> Chat {
        Chat::default()
    }

    /// Every id of the conversation so far (turns and replies).
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// True when the last turn was stopped (by `cancel` or its callback) before its end.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds `tokens` (the next message, already formatted with the model's chat template) and
    /// generates the reply (greedy or sampling: one hypothesis). `cancel` as for [`generate`]:
    /// a request made before the call is honoured, and cleared when the turn returns.
    pub fn turn(
        &mut self,
        session: &mut Session,
        tokens: &[u32],
        options: &GenerateOptions,
        cancel: Option<&CancelHandle>,
        callback: Option<Callback>,
    ) -> Result<Hypothesis> {
        self.stopped = false;
        let _clear = ClearOnReturn(cancel);
        let model = session.model().clone();
        if model.arch() != Arch::DecoderOnly {
            return Err(Error::InvalidArgument(
                "chat needs a decoder-only model".into(),
            ));
        }
        if matches!(options.strategy, Strategy::Beam(_)) {
            return Err(Error::InvalidArgument(
                "chat turns use greedy decoding or sampling".into(),
            ));
        }
        options.validate(model.config().vocab_size)?;
        if cancel.is_some_and(|c| c.is_cancelled()) {
            // Cancelled before it began: an empty reply, the conversation unchanged.
            self.stopped = true;
            return Ok(Hypothesis::default());
        }
        let mut new: Vec<u32> = self.pending.take().into_iter().collect();
        new.extend_from_slice(tokens);
        session.set_cancel(cancel.cloned());
        let prefilled = if self.history.is_empty() {
            session.start(&[&new])
        } else {
            session.extend(&new)
        };
        session.set_cancel(None);
        prefilled?;
        self.history.extend_from_slice(tokens);
        let eos: Vec<u32> = if options.eos_token_ids.is_empty() {
            model.config().eos_ids.clone()
        } else {
            options.eos_token_ids.clone()
        };
        let limits = session.limits();
        let room =
            (limits.max_input_len + limits.max_new_tokens).saturating_sub(session.cached_len());
        let ctx = beam::Context {
            options,
            eos: &eos,
            max_new: options.max_new_tokens.min(room),
            decoder_start: None,
            cancel,
            stop: stop_strings(&model, options)?,
        };
        let history = self.history.clone();
        let out = beam::run(
            session,
            &[&[]],
            1,
            &ctx,
            callback,
            beam::Begin::Continue { history: &history },
        )?;
        self.stopped = out.stopped;
        let reply = out
            .outputs
            .into_iter()
            .next()
            .and_then(|h| h.into_iter().next())
            .expect("one hypothesis");
        self.history.extend_from_slice(&reply.ids);
        self.pending = reply.ids.last().copied();
        Ok(reply)
    }
}

/// Greedy decoding and nothing else: ids in, generated ids out (without the decoder start id or
/// the prompt; the end-of-sequence id included when it was produced). `suppress` ids are never
/// chosen; the model's end-of-sequence ids end a sequence; none of its generation defaults
/// apply (for those, [`generate`] with [`GenerateOptions::model_defaults`]).
pub fn greedy(
    session: &mut Session,
    inputs: &[&[u32]],
    max_new_tokens: usize,
    suppress: &[u32],
) -> Result<Vec<Vec<u32>>> {
    let o = GenerateOptions {
        max_new_tokens,
        suppress_tokens: suppress.to_vec(),
        ..GenerateOptions::default()
    };
    let g = generate(session, inputs, &o, None, None)?;
    Ok(g.outputs
        .into_iter()
        .map(|h| h.into_iter().next().map(|h| h.ids).unwrap_or_default())
        .collect())
}

/// Draws one token from `logits` with the sampling options (for callers that run their own loop,
/// and for tests of the distribution). Returns the id and its log-probability.
pub fn sample_logits(options: &SampleOptions, logits: &[f32], rng: &mut Rng) -> (u32, f32) {
    let mut l = logits.to_vec();
    processors::sample(options, &mut l, rng, &mut Vec::new())
}

impl GenerateOptions {
    /// The model's default decoding options (`quill.generation`, Hugging Face
    /// `generation_config.json` keys): beams, sampling, penalties, suppressed and forced tokens.
    /// Keys quill does not know are ignored; a malformed value is an error naming the key.
    pub fn model_defaults(model: &crate::model::Model) -> Result<GenerateOptions> {
        let mut o = GenerateOptions::default();
        let Some(g) = model.file().quill().and_then(|m| m.generation.as_ref()) else {
            return Ok(o);
        };
        let bad =
            |k: &str| Error::bad_meta("quill.generation", format!("`{k}` has an unexpected value"));
        let ids = |v: &serde_json::Value, k: &str| -> Result<Vec<u32>> {
            match v {
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_u64().map(|n| n as u32).ok_or_else(|| bad(k)))
                    .collect(),
                x => x.as_u64().map(|n| vec![n as u32]).ok_or_else(|| bad(k)),
            }
        };
        // `transformers`' `stop_strings`: one string or a list of them.
        let strings = |v: &serde_json::Value| -> Option<Vec<String>> {
            match v {
                serde_json::Value::String(s) => Some(vec![s.clone()]),
                serde_json::Value::Array(a) => {
                    a.iter().map(|x| x.as_str().map(String::from)).collect()
                }
                _ => None,
            }
        };
        for (k, v) in g {
            if v.is_null() {
                continue;
            }
            match k.as_str() {
                "max_new_tokens" => o.max_new_tokens = v.as_u64().ok_or_else(|| bad(k))? as usize,
                "min_new_tokens" => o.min_new_tokens = v.as_u64().ok_or_else(|| bad(k))? as usize,
                "repetition_penalty" => {
                    o.repetition_penalty = v.as_f64().ok_or_else(|| bad(k))? as f32
                }
                "no_repeat_ngram_size" => {
                    o.no_repeat_ngram_size = v.as_u64().ok_or_else(|| bad(k))? as usize
                }
                "suppress_tokens" => o.suppress_tokens = ids(v, k)?,
                "bad_words_ids" => {
                    o.bad_words_ids = v
                        .as_array()
                        .ok_or_else(|| bad(k))?
                        .iter()
                        .map(|b| ids(b, k))
                        .collect::<Result<_>>()?
                }
                "forced_bos_token_id" => o.forced_bos_token_id = Some(ids(v, k)?[0]),
                "forced_eos_token_id" => o.forced_eos_token_id = ids(v, k)?.first().copied(),
                "eos_token_id" => o.eos_token_ids = ids(v, k)?,
                "stop_strings" => o.stop_strings = strings(v).ok_or_else(|| bad(k))?,
                _ => {}
            }
        }
        o.stop_strings.retain(|s| !s.is_empty());
        if !o.stop_strings.is_empty() && text::decode(model, &[], true).is_err() {
            // Stop strings are matched on text: a build or a model without the tokenizer
            // decodes ids only, and the model's strings cannot apply there.
            o.stop_strings.clear();
        }
        let beams = g.get("num_beams").and_then(|v| v.as_u64()).unwrap_or(1) as usize;
        let sample = g
            .get("do_sample")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if sample {
            let f = |k: &str, d: f64| g.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
            o.strategy = Strategy::Sample(SampleOptions {
                temperature: f("temperature", 1.0) as f32,
                top_k: f("top_k", 0.0) as usize,
                top_p: f("top_p", 1.0) as f32,
                min_p: f("min_p", 0.0) as f32,
                seed: 0,
            });
        } else if beams > 1 {
            o.strategy = Strategy::Beam(BeamOptions {
                beams,
                length_penalty: g
                    .get("length_penalty")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(1.0) as f32,
                early_stopping: EarlyStopping::from_json(
                    g.get("early_stopping").unwrap_or(&serde_json::Value::Null),
                )?,
                n_best: 1,
            });
        }
        Ok(o)
    }
}
