//! Text in, text out: the one place that turns texts into input ids and generated ids into the
//! text a user sees, at the end of a generation and while it streams. The C API, the CLI, the
//! trainer's evaluation and the bindings all go through here.
//!
//! What a user sees of a hypothesis: its ids without the model's control ids (end of sequence,
//! padding, start of sequence, decoder start; [`Model::special_ids`]), decoded with the target
//! tokenizer (the source one when the model has only one), special tokens skipped. Streaming
//! gives the same text piece by piece: a piece is never taken back, so text of byte-fallback
//! pieces (`<0xE2>`) is held until it is known to be complete, and [`TextStream::finish`] returns
//! what is still held.

use crate::error::{Error, Result};
use crate::model::Model;

/// Refuses a text input with nothing in it (empty or only whitespace), named `what`: a model
/// given nothing to translate, summarize or answer would still write something, and that answer
/// would look like one. (Token ids, `[bos]` say, remain the way to generate from nothing.)
pub fn require_text(text: &str, what: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{what} is empty{}: give the text to work on",
            if text.is_empty() {
                ""
            } else {
                " (only whitespace)"
            }
        )));
    }
    Ok(())
}

/// The ids of `ids` a user sees (control ids removed).
pub fn visible_ids(special: &[u32], ids: &[u32]) -> Vec<u32> {
    ids.iter()
        .copied()
        .filter(|i| !special.contains(i))
        .collect()
}

#[cfg(feature = "tokenizer")]
mod imp {
    use super::*;
    use crate::tokenizer::Detokenizer;

    /// `text` as input ids with the model's (source) tokenizer; `add_special` applies its
    /// post-processor (end-of-sequence, language tags...).
    pub fn encode(model: &Model, text: &str, add_special: bool) -> Result<Vec<u32>> {
        model.tokenizer()?.encode(text, add_special)
    }

    /// `text` as ids with the target tokenizer (what the decoder reads and writes; the same as
    /// [`encode`] for a model with one tokenizer): forced prefixes, stop sequences.
    pub fn encode_target(model: &Model, text: &str, add_special: bool) -> Result<Vec<u32>> {
        model.target_tokenizer()?.encode(text, add_special)
    }

    /// `ids` as text with the target tokenizer (`skip_special`: leave special tokens out).
    pub fn decode(model: &Model, ids: &[u32], skip_special: bool) -> Result<String> {
        model.target_tokenizer()?.decode(ids, skip_special)
    }

    /// The text a user sees of a generated hypothesis.
    pub fn text_of(model: &Model, ids: &[u32]) -> Result<String> {
        decode(model, &visible_ids(&model.special_ids(), ids), true)
    }

    /// Greedy generation from text ([`crate::decode::greedy`]): each input tokenized with the
    /// model's tokenizer, each output as the text a user sees.
    pub fn greedy(
        session: &mut crate::model::Session,
        texts: &[&str],
        max_new_tokens: usize,
    ) -> Result<Vec<String>> {
        let model = session.model().clone();
        let inputs: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| encode(&model, t, true))
            .collect::<Result<_>>()?;
        let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        crate::decode::greedy(session, &refs, max_new_tokens, &[])?
            .iter()
            .map(|ids| text_of(&model, ids))
            .collect()
    }

    /// The ids a model's task makes of a user's `text` (what `quill run` gives the model),
    /// after its generation metadata (`docs/format.md` §3):
    /// - `prompt`, a format with `{input}` (a language model's prompt, e.g.
    ///   `"Package: {input}\nDescription:"`): the format with the text in it;
    /// - else, task `dialogue` and a chat template: the template rendered for one user message,
    ///   with the generation prompt;
    /// - else the text as it is ([`encode`] with the tokenizer's special tokens).
    ///
    /// An empty input is an error ([`require_text`]). For many texts, [`TaskInput`] reads the
    /// metadata (and compiles the template) once.
    pub fn task_input(model: &Model, text: &str) -> Result<Vec<u32>> {
        TaskInput::new(model)?.ids(text)
    }

    /// A model's task as [`task_input`] applies it, read from the model once: its prompt format
    /// or its compiled chat template.
    pub struct TaskInput<'m> {
        model: &'m Model,
        prompt: Option<String>,
        #[cfg(feature = "chat")]
        template: Option<crate::chat::ChatTemplate>,
    }

    impl<'m> TaskInput<'m> {
        pub fn new(model: &'m Model) -> Result<TaskInput<'m>> {
            let g = model.file().quill().and_then(|m| m.generation.as_ref());
            let field = |k: &str| g.and_then(|g| g.get(k)).and_then(|v| v.as_str());
            let prompt = field("prompt").map(String::from);
            if prompt.as_ref().is_some_and(|p| !p.contains("{input}")) {
                return Err(Error::bad_meta(
                    "quill.generation",
                    "`prompt` has no `{input}` placeholder",
                ));
            }
            #[cfg(feature = "chat")]
            let template = match (&prompt, field("task")) {
                (None, Some("dialogue")) => crate::chat::ChatTemplate::of_model(model)?,
                _ => None,
            };
            Ok(TaskInput {
                model,
                prompt,
                #[cfg(feature = "chat")]
                template,
            })
        }

        /// The ids of `text` ([`task_input`]).
        pub fn ids(&self, text: &str) -> Result<Vec<u32>> {
            require_text(text, "the input")?;
            if let Some(p) = &self.prompt {
                return encode(self.model, &p.replace("{input}", text), true);
            }
            #[cfg(feature = "chat")]
            if let Some(t) = &self.template {
                let m = [crate::chat::Message::new("user", text)];
                return encode(self.model, &t.render(&m, true)?, false);
            }
            encode(self.model, text, true)
        }
    }

    /// Streams the text of several inputs' generations as their final ids arrive.
    pub struct TextStream<'m> {
        special: Vec<u32>,
        detoks: Vec<Detokenizer<'m>>,
    }

    impl<'m> TextStream<'m> {
        /// A stream for `inputs` inputs of `model`.
        pub fn new(model: &'m Model, inputs: usize) -> Result<TextStream<'m>> {
            let tok = model.target_tokenizer()?;
            Ok(TextStream {
                special: model.special_ids(),
                detoks: (0..inputs).map(|_| tok.detokenizer(true)).collect(),
            })
        }

        /// The text that `ids`, the next final ids of input `input`, add.
        pub fn push(&mut self, input: usize, ids: &[u32]) -> Result<String> {
            let d = self.detoks.get_mut(input).ok_or_else(|| {
                Error::InvalidArgument(format!("no input {input} in this stream"))
            })?;
            let mut text = String::new();
            for &id in ids.iter().filter(|i| !self.special.contains(i)) {
                text.push_str(&d.push(id)?);
            }
            Ok(text)
        }

        /// The text input `input` still holds back (a trailing run of byte pieces); after it,
        /// the pieces of the input add up to [`text_of`] its ids.
        pub fn finish(&mut self, input: usize) -> Result<String> {
            match self.detoks.get_mut(input) {
                Some(d) => d.finish(),
                None => Ok(String::new()),
            }
        }
    }
}

#[cfg(not(feature = "tokenizer"))]
mod imp {
    use super::*;

    fn no_tokenizer() -> Error {
        Error::Unsupported(
            "this build of quill has no tokenizer (cargo feature `tokenizer`): give token ids"
                .into(),
        )
    }

    pub fn encode(_: &Model, _: &str, _: bool) -> Result<Vec<u32>> {
        Err(no_tokenizer())
    }

    pub fn encode_target(_: &Model, _: &str, _: bool) -> Result<Vec<u32>> {
        Err(no_tokenizer())
    }

    pub fn task_input(_: &Model, _: &str) -> Result<Vec<u32>> {
        Err(no_tokenizer())
    }

    /// Without a tokenizer there is no text to shape.
    pub struct TaskInput<'m>(std::marker::PhantomData<&'m ()>);

    impl<'m> TaskInput<'m> {
        pub fn new(_: &'m Model) -> Result<TaskInput<'m>> {
            Err(no_tokenizer())
        }

        pub fn ids(&self, _: &str) -> Result<Vec<u32>> {
            Err(no_tokenizer())
        }
    }

    pub fn decode(_: &Model, _: &[u32], _: bool) -> Result<String> {
        Err(no_tokenizer())
    }

    pub fn text_of(_: &Model, _: &[u32]) -> Result<String> {
        Err(no_tokenizer())
    }

    pub fn greedy(_: &mut crate::model::Session, _: &[&str], _: usize) -> Result<Vec<String>> {
        Err(no_tokenizer())
    }

    /// Without a tokenizer there is no text to stream.
    pub struct TextStream<'m>(std::marker::PhantomData<&'m ()>);

    impl<'m> TextStream<'m> {
        pub fn new(_: &'m Model, _: usize) -> Result<TextStream<'m>> {
            Err(no_tokenizer())
        }
        pub fn push(&mut self, _: usize, _: &[u32]) -> Result<String> {
            Err(no_tokenizer())
        }
        pub fn finish(&mut self, _: usize) -> Result<String> {
            Err(no_tokenizer())
        }
    }
}

pub use imp::{TaskInput, TextStream, decode, encode, encode_target, greedy, task_input, text_of};
