//! Tokenizers for new models: BPE or Unigram trained on the corpus with the `tokenizers` crate's
//! trainers, SentencePiece-style (NFKC, `▁` marks word starts), so that the runtime's tokenizer
//! (Hugging Face `tokenizer.json` semantics) reads them unchanged.

use std::str::FromStr;

use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::BpeTrainerBuilder;
use tokenizers::models::unigram::UnigramTrainerBuilder;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

/// The control tokens of a trained vocabulary, with ids 0, 1, 2, 3.
pub const SPECIALS: [&str; 4] = ["<pad>", "<unk>", "</s>", "<s>"];
pub const PAD: u32 = 0;
pub const UNK: u32 = 1;
pub const EOS: u32 = 2;
pub const BOS: u32 = 3;

/// The subword model to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bpe,
    Unigram,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind> {
        match s {
            "bpe" => Ok(Kind::Bpe),
            "unigram" => Ok(Kind::Unigram),
            _ => Err(Error::InvalidArgument(format!(
                "tokenizer `{s}`: expected bpe or unigram"
            ))),
        }
    }
}

fn skeleton(kind: Kind, append_eos: bool) -> String {
    let model = match kind {
        Kind::Bpe => serde_json::json!({
            "type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "vocab": {}, "merges": []
        }),
        Kind::Unigram => serde_json::json!({
            "type": "Unigram", "unk_id": null, "vocab": [], "byte_fallback": false
        }),
    };
    let meta = serde_json::json!({
        "type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true
    });
    let post = if append_eos {
        serde_json::json!({
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "</s>", "type_id": 1}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [EOS], "tokens": ["</s>"]}}
        })
    } else {
        serde_json::Value::Null
    };
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "NFKC"},
        "pre_tokenizer": meta,
        "post_processor": post,
        "decoder": meta,
        "model": model
    })
    .to_string()
}

/// Trains a `kind` tokenizer of `vocab_size` entries on `texts` and returns its
/// `tokenizer.json`. The control tokens of [`SPECIALS`] take ids 0–3; `append_eos`: encoding
/// with special tokens appends `</s>` (the source side of a seq2seq model).
pub fn train(
    kind: Kind,
    vocab_size: usize,
    append_eos: bool,
    extra_specials: &[String],
    texts: impl Iterator<Item = String> + Send,
) -> Result<String> {
    let err = |e: Box<dyn std::error::Error + Send + Sync>| {
        Error::InvalidArgument(format!("tokenizer training failed: {e}"))
    };
    let mut tok = Tokenizer::from_str(&skeleton(kind, append_eos)).map_err(err)?;
    for s in extra_specials {
        if s.trim().is_empty() || SPECIALS.contains(&s.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "special token `{s}`: empty, or one of the control tokens {SPECIALS:?}"
            )));
        }
    }
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| s.to_string())
        .chain(extra_specials.iter().cloned())
        .map(|s| AddedToken::from(s, true))
        .collect();
    let mut trainer: TrainerWrapper = match kind {
        Kind::Bpe => BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(specials)
            .limit_alphabet(200)
            .build()
            .into(),
        Kind::Unigram => UnigramTrainerBuilder::default()
            .vocab_size(vocab_size as u32)
            .show_progress(false)
            .special_tokens(specials)
            .unk_token(Some("<unk>".into()))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("unigram trainer: {e}")))?
            .into(),
    };
    // The special tokens are not text: taken out of the corpus, the trainer cannot make a
    // piece of one (which would take its id before the special token list places it).
    let texts = texts.map(|mut t| {
        for s in extra_specials {
            if t.contains(s.as_str()) {
                t = t.replace(s.as_str(), " ");
            }
        }
        t
    });
    tok.train(&mut trainer, texts).map_err(err)?;
    for (i, s) in SPECIALS
        .iter()
        .copied()
        .chain(extra_specials.iter().map(String::as_str))
        .enumerate()
    {
        if tok.token_to_id(s) != Some(i as u32) {
            return Err(Error::InvalidArgument(format!(
                "tokenizer training put `{s}` at {:?}, not {i}",
                tok.token_to_id(s)
            )));
        }
    }
    tok.to_string(false).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Extra special tokens follow the control tokens, are matched whole in text (never split
    /// into pieces, whatever the corpus makes of their characters) and are dropped from text
    /// decoded without special tokens.
    #[test]
    fn extra_special_tokens_take_the_next_ids_and_stay_whole() {
        let line =
            "<|im_start|>user where is the cache<|im_end|><|im_start|>assistant here<|im_end|>";
        let texts = (0..50).map(|i| format!("{line} {i}"));
        let extra = ["<|im_start|>".to_string(), "<|im_end|>".to_string()];
        let json = train(Kind::Unigram, 120, false, &extra, texts).unwrap();
        let t = crate::tokenizer::Tokenizer::from_json(&json).unwrap();
        let ids = t.encode("<|im_start|>user where<|im_end|>", false).unwrap();
        assert_eq!((ids[0], *ids.last().unwrap()), (4, 5), "{ids:?}");
        assert_eq!(ids.iter().filter(|&&i| i == 4 || i == 5).count(), 2);
        assert_eq!(t.decode(&ids, true).unwrap(), "user where");

        let bad = train(
            Kind::Bpe,
            50,
            false,
            &["</s>".to_string()],
            std::iter::empty(),
        );
        assert!(bad.unwrap_err().to_string().contains("</s>"));
    }
}
