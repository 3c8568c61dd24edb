//! The one policy for defaults and validation of flat decoding parameters, shared by the C API
//! (`quill_generate_params`, `quill_session_params`), the bindings and the CLI, so that they
//! cannot drift apart.
//!
//! The rule everywhere: a count of 0 means "the model's default, within what the session holds".
//! Every other field is checked whatever the strategy, so a value that would be an error under
//! sampling is an error under greedy decoding too.

use crate::error::{Error, Result};
use crate::format::Arch;
use crate::model::{Limits, Model};

use super::{BeamOptions, EarlyStopping, GenerateOptions, SampleOptions, Strategy};

/// Decoding parameters as plain fields (what `quill_generate_params` carries).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// 0: the model's default (`quill.generation`, else 256), within the session's limit.
    pub max_new_tokens: usize,
    /// End-of-sequence is masked until this many tokens were generated; at most
    /// `max_new_tokens`.
    pub min_new_tokens: usize,
    /// 1: greedy decoding or sampling; more: beam search. 0 is an error.
    pub beams: usize,
    /// Hypotheses returned per input, clamped into `1..=beams`.
    pub n_best: usize,
    pub length_penalty: f32,
    /// Sample instead of taking the most likely token (needs `beams` = 1).
    pub sample: bool,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub seed: u64,
    pub repetition_penalty: f32,
    pub no_repeat_ngram_size: usize,
}

impl Default for Params {
    /// Greedy decoding with the model's default length.
    fn default() -> Self {
        Params {
            max_new_tokens: 0,
            min_new_tokens: 0,
            beams: 1,
            n_best: 1,
            length_penalty: 1.0,
            sample: false,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 0,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
        }
    }
}

impl Params {
    /// The model's own decoding defaults (`quill.generation`), as flat fields.
    pub fn model_defaults(model: &Model) -> Result<Params> {
        Ok(Params::from_options(&GenerateOptions::model_defaults(
            model,
        )?))
    }

    /// The flat fields of `o` (its token-level options have no flat field).
    pub fn from_options(o: &GenerateOptions) -> Params {
        let mut p = Params {
            max_new_tokens: o.max_new_tokens,
            min_new_tokens: o.min_new_tokens,
            repetition_penalty: o.repetition_penalty,
            no_repeat_ngram_size: o.no_repeat_ngram_size,
            ..Params::default()
        };
        match &o.strategy {
            Strategy::Greedy => {}
            Strategy::Beam(b) => {
                p.beams = b.beams;
                p.n_best = b.n_best;
                p.length_penalty = b.length_penalty;
            }
            Strategy::Sample(s) => {
                p.sample = true;
                p.temperature = s.temperature;
                p.top_k = s.top_k;
                p.top_p = s.top_p;
                p.min_p = s.min_p;
                p.seed = s.seed;
            }
        }
        p
    }

    /// Checks every field, whatever the strategy.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.beams == 0 {
            return bad(
                "beams is 0: use 1 for greedy decoding or sampling, more for beam search".into(),
            );
        }
        if self.sample && self.beams > 1 {
            return bad(format!(
                "sampling with {} beams: quill samples one sequence per input (set beams to 1)",
                self.beams
            ));
        }
        if self.max_new_tokens > 0 && self.min_new_tokens > self.max_new_tokens {
            return bad(format!(
                "min_new_tokens ({}) is above max_new_tokens ({})",
                self.min_new_tokens, self.max_new_tokens
            ));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!(
                "temperature must be a finite number ≥ 0, found {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], found {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], found {}", self.min_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetition_penalty must be a finite number > 0, found {}",
                self.repetition_penalty
            ));
        }
        if !self.length_penalty.is_finite() {
            return bad(format!(
                "length_penalty must be finite, found {}",
                self.length_penalty
            ));
        }
        Ok(())
    }

    /// These parameters with beams (and `n_best`) above what a session holds lowered to it.
    pub fn within(mut self, limits: Limits) -> Params {
        self.beams = self.beams.min(limits.beams).max(1);
        self.n_best = self.n_best.min(self.beams);
        self
    }

    /// [`Params::within`], with a warning when it lowers anything: for defaults the caller did
    /// not choose (the C API's NULL parameters).
    pub fn fit_session(self, limits: Limits) -> Params {
        if self.beams > limits.beams {
            crate::log::log(
                crate::log::Level::Warn,
                &format!(
                    "the model's default of {} beams is more than the session's {}: decoding \
                     with {} (create the session with beams 0 to fit the model)",
                    self.beams, limits.beams, limits.beams
                ),
            );
        }
        self.within(limits)
    }

    /// The options these parameters mean for `model` on a session with `limits`: validated,
    /// `max_new_tokens` 0 replaced by the model's default, every length within the session
    /// (lengths above it are shortened, as documented; beams above it are an error). The model's
    /// token-level defaults (suppressed and forced ids, end-of-sequence ids, `early_stopping`)
    /// stay.
    pub fn options(&self, model: &Model, limits: Limits) -> Result<GenerateOptions> {
        self.validate()?;
        if self.beams > limits.beams {
            return Err(Error::InvalidArgument(format!(
                "{} beams: the session was created for at most {} (beams in its parameters)",
                self.beams, limits.beams
            )));
        }
        let mut o = GenerateOptions::model_defaults(model)?;
        if self.max_new_tokens > 0 {
            o.max_new_tokens = self.max_new_tokens;
        }
        if self.min_new_tokens > o.max_new_tokens {
            return Err(Error::InvalidArgument(format!(
                "min_new_tokens ({}) is above the model's default max_new_tokens ({})",
                self.min_new_tokens, o.max_new_tokens
            )));
        }
        o.max_new_tokens = o.max_new_tokens.min(limits.max_new_tokens).max(1);
        o.min_new_tokens = self.min_new_tokens.min(o.max_new_tokens);
        o.repetition_penalty = self.repetition_penalty;
        o.no_repeat_ngram_size = self.no_repeat_ngram_size;
        let early_stopping = match &o.strategy {
            Strategy::Beam(b) => b.early_stopping,
            _ => EarlyStopping::Heuristic,
        };
        o.strategy = if self.sample {
            Strategy::Sample(SampleOptions {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                seed: self.seed,
            })
        } else if self.beams > 1 {
            Strategy::Beam(BeamOptions {
                beams: self.beams,
                length_penalty: self.length_penalty,
                early_stopping,
                n_best: self.n_best.clamp(1, self.beams),
            })
        } else {
            Strategy::Greedy
        };
        Ok(o)
    }
}

/// Session limits where 0 means "fit the model": `max_input_len` 0 is 512 tokens,
/// `max_new_tokens` 0 the model's default length (`quill.generation`, else 256), `beams` 0 the
/// model's default beams; each shortened to what the model's positions hold (a decoder-only
/// model's prompt and reply share them). Nonzero values are taken as given (and checked when the
/// session is made). `max_batch` 0 is an error there.
pub fn fit_limits(model: &Model, requested: Limits) -> Result<Limits> {
    let defaults = GenerateOptions::model_defaults(model)?;
    let d = Limits::default();
    let mut l = requested;
    if l.beams == 0 {
        l.beams = match defaults.strategy {
            Strategy::Beam(b) => b.beams,
            _ => 1,
        };
    }
    let Some(p) = model.max_positions() else {
        if l.max_input_len == 0 {
            l.max_input_len = d.max_input_len;
        }
        if l.max_new_tokens == 0 {
            l.max_new_tokens = defaults.max_new_tokens.max(1);
        }
        return Ok(l);
    };
    let (input_given, new_given) = (l.max_input_len > 0, l.max_new_tokens > 0);
    let want_new = if new_given {
        l.max_new_tokens
    } else {
        defaults.max_new_tokens.max(1)
    };
    let want_input = if input_given {
        l.max_input_len
    } else {
        d.max_input_len
    };
    if model.arch() == Arch::DecoderOnly {
        // Prompt and reply share the positions.
        match (input_given, new_given) {
            (true, true) => {}
            (true, false) => l.max_new_tokens = want_new.min(p.saturating_sub(want_input)).max(1),
            (false, true) => l.max_input_len = want_input.min(p.saturating_sub(want_new)).max(1),
            (false, false) => {
                let fitted = Limits {
                    max_input_len: want_input,
                    max_new_tokens: want_new,
                    ..l
                }
                .fit(model);
                l.max_input_len = fitted.max_input_len;
                l.max_new_tokens = fitted.max_new_tokens;
            }
        }
    } else {
        if !input_given {
            l.max_input_len = want_input.min(p);
        }
        if !new_given {
            // The decoder start id takes one position.
            l.max_new_tokens = want_new.min(p.saturating_sub(1)).max(1);
        }
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_checked_whatever_the_strategy() {
        assert!(Params::default().validate().is_ok());
        let greedy = Params::default();
        for bad in [
            Params { beams: 0, ..greedy },
            Params {
                temperature: f32::NAN,
                ..greedy
            },
            Params {
                temperature: -1.0,
                ..greedy
            },
            Params {
                top_p: 0.0,
                ..greedy
            },
            Params {
                min_p: 2.0,
                ..greedy
            },
            Params {
                repetition_penalty: 0.0,
                ..greedy
            },
            Params {
                length_penalty: f32::INFINITY,
                ..greedy
            },
            Params {
                max_new_tokens: 3,
                min_new_tokens: 4,
                ..greedy
            },
            Params {
                sample: true,
                beams: 2,
                ..greedy
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} was accepted");
        }
        // 0 new tokens is the default, not an error.
        assert!(
            Params {
                max_new_tokens: 0,
                min_new_tokens: 9,
                ..greedy
            }
            .validate()
            .is_ok()
        );
    }
}
