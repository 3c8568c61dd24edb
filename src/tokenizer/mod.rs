//! The tokenizer stored in the model file: Hugging Face `tokenizer.json` semantics, run by the
//! `tokenizers` crate itself (pure Rust build), so ids are exactly the model authors' ids.
//!
//! - [`Tokenizer`]: text → ids (with the model's post-processor: `</s>`, `<s>`, ...) and back.
//! - [`Detokenizer`]: incremental decoding for streaming: each new id yields the text it adds,
//!   never half a UTF-8 character, with Metaspace / byte-level spaces and byte-fallback pieces
//!   right. The pieces of a sequence concatenate to its full decode.
//! - [`sentencepiece`]: import of SentencePiece `.model` files (Unigram and BPE, byte fallback).
//!
//! Try it: `quill run model.quill "Open the file"`.

pub mod sentencepiece;

use crate::error::{Error, Result};

/// A tokenizer: encode text, decode ids.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    vocab_size: usize,
    /// Ids of byte-fallback pieces (`<0x41>`), sorted: streaming holds them back (below).
    byte_ids: Vec<u32>,
    /// Ids of special tokens, sorted.
    special_ids: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({} ids)", self.vocab_size)
    }
}

fn tk_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{what}: {e}"))
}

/// Checks every `Precompiled` normalizer's charsmap of a `tokenizer.json`: `tokenizers` panics
/// on a malformed one (while loading it, or later while normalizing text) where it should
/// return an error.
fn check_precompiled(json: &str) -> Result<()> {
    fn walk(v: &serde_json::Value) -> std::result::Result<(), String> {
        match v {
            serde_json::Value::Object(o) => {
                if o.get("type").and_then(|t| t.as_str()) == Some("Precompiled") {
                    // Its Deserialize borrows the charsmap string: parse from text.
                    let text = serde_json::to_string(v).map_err(|e| e.to_string())?;
                    serde_json::from_str::<spm_precompiled::Precompiled>(&text)
                        .map_err(|e| format!("a Precompiled normalizer is malformed: {e}"))?;
                    let map = o
                        .get("precompiled_charsmap")
                        .and_then(|m| m.as_str())
                        .and_then(|m| base64::decode(m).ok())
                        .ok_or("a Precompiled normalizer has no charsmap")?;
                    check_charsmap(&map)
                        .map_err(|e| format!("a Precompiled normalizer is malformed: {e}"))?;
                }
                o.values().try_for_each(walk)
            }
            serde_json::Value::Array(a) => a.iter().try_for_each(walk),
            _ => Ok(()),
        }
    }
    if !json.contains("Precompiled") {
        return Ok(());
    }
    let bad = |reason: String| Error::bad_meta("quill.tokenizer", reason);
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(format!("not a valid tokenizer.json: {e}")))?;
    walk(&v).map_err(bad)
}

/// Walks a SentencePiece charsmap (`u32` trie size in bytes, the double-array trie, then the
/// NUL-separated replacement strings) the way `spm_precompiled` reads it while normalizing:
/// from the root, every byte 1..=255 is tried at every reachable state (input text may hold any
/// of them), so each state's 256-unit block must lie inside the array, and each leaf's value
/// must point inside the strings at a character boundary (it is used to slice them).
fn check_charsmap(map: &[u8]) -> std::result::Result<(), String> {
    let bytes = map.get(..4).ok_or("shorter than its header")?;
    let n = u32::from_le_bytes(bytes.try_into().expect("4 bytes")) as usize / 4;
    let trie = map.get(4..4 + 4 * n).ok_or("shorter than its trie")?;
    let units: Vec<usize> = trie
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .collect();
    let strings = std::str::from_utf8(&map[4 + 4 * n..]).map_err(|_| "strings not UTF-8")?;
    // The unit layout of darts-clone, as spm_precompiled decodes it.
    let offset = |u: usize| (u >> 10) << ((u & (1 << 9)) >> 6);
    let label = |u: usize| u & ((1 << 31) | 0xFF);
    let has_leaf = |u: usize| (u >> 8) & 1 == 1;
    let value = |u: usize| u & ((1 << 31) - 1);
    let root = *units.first().ok_or("empty trie")?;
    let mut seen = vec![false; n];
    let mut todo = vec![offset(root)];
    while let Some(p) = todo.pop() {
        if (p | 0xFF) >= n {
            return Err(format!("trie state {p} outside the array of {n} units"));
        }
        if std::mem::replace(&mut seen[p], true) {
            continue;
        }
        for c in 1..=0xFFusize {
            let unit = units[p ^ c];
            if label(unit) != c {
                continue;
            }
            let next = (p ^ c) ^ offset(unit);
            if has_leaf(unit) {
                let v = value(*units.get(next).ok_or("a leaf outside the array")?);
                if !strings.is_char_boundary(v) {
                    return Err(format!("a replacement at byte {v}, not a character start"));
                }
            }
            todo.push(next);
        }
    }
    Ok(())
}

impl Tokenizer {
    /// Parses a `tokenizer.json`.
    pub fn from_json(json: &str) -> Result<Tokenizer> {
        check_precompiled(json)?;
        let bad = |e: String| {
            Error::bad_meta(
                "quill.tokenizer",
                format!("not a valid tokenizer.json: {e}"),
            )
        };
        // `tokenizers` panics instead of failing on a syntax error inside a `decoder` object
        // (an `expect` in its decoder deserializer; found by the c_generate fuzzer): the syntax
        // is checked first, without building anything, and a panic that still happens is an
        // error like any other malformed file.
        serde_json::from_str::<serde::de::IgnoredAny>(json).map_err(|e| bad(e.to_string()))?;
        let parsed =
            std::panic::catch_unwind(|| json.parse::<tokenizers::Tokenizer>()).map_err(|p| {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                bad(format!("the tokenizer library refused it ({what})"))
            })?;
        Ok(Self::wrap(parsed.map_err(|e| bad(e.to_string()))?))
    }

    pub(crate) fn wrap(inner: tokenizers::Tokenizer) -> Tokenizer {
        let vocab_size = inner.get_vocab_size(true);
        let is_byte = |t: &str| {
            t.len() == 6
                && t.starts_with("<0x")
                && t.ends_with('>')
                && t[3..5].bytes().all(|b| b.is_ascii_hexdigit())
        };
        let mut byte_ids: Vec<u32> = inner
            .get_vocab(true)
            .into_iter()
            .filter_map(|(t, id)| is_byte(&t).then_some(id))
            .collect();
        byte_ids.sort_unstable();
        let mut special_ids: Vec<u32> = inner
            .get_added_tokens_decoder()
            .iter()
            .filter_map(|(&id, t)| t.special.then_some(id))
            .collect();
        special_ids.sort_unstable();
        Tokenizer {
            inner,
            vocab_size,
            byte_ids,
            special_ids,
        }
    }

    /// The tokenizer as `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(|e| tk_err("serializing the tokenizer", e))
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Text → ids. `add_special_tokens` applies the post-processor (e.g. T5's `</s>`, Llama's
    /// `<s>`).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|e| tk_err("encoding", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Bytes → ids; an error if the bytes are not UTF-8.
    pub fn encode_bytes(&self, text: &[u8], add_special_tokens: bool) -> Result<Vec<u32>> {
        let text = std::str::from_utf8(text)
            .map_err(|e| Error::InvalidArgument(format!("input text is not valid UTF-8: {e}")))?;
        self.encode(text, add_special_tokens)
    }

    /// Ids → text. `skip_special_tokens` drops special tokens (`<s>`, `</s>`, `<pad>`, ...).
    /// An id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.check_ids(ids)?;
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| tk_err("decoding", e))
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&i| i as usize >= self.vocab_size) {
            Some(bad) => Err(Error::InvalidArgument(format!(
                "token id {bad} is not below the tokenizer's vocabulary size {}",
                self.vocab_size
            ))),
            None => Ok(()),
        }
    }

    /// The id of a token string (special tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// A streaming decoder for one sequence.
    pub fn detokenizer(&self, skip_special_tokens: bool) -> Detokenizer<'_> {
        Detokenizer {
            tok: self,
            skip: skip_special_tokens,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
            emitted: 0,
        }
    }
}

/// Incremental decoding of one sequence.
///
/// Each [`Detokenizer::push`] decodes a short window of the latest ids twice — up to the last
/// emitted id, and up to the new one — and emits the difference, once it no longer ends in an
/// incomplete character (U+FFFD from a partial byte sequence). Decoding from a window start, not
/// from one id alone, keeps the decoder's context: Metaspace's leading space, byte-level pieces,
/// byte-fallback runs that only together form a character.
///
/// Byte-fallback pieces are held back until a piece of another kind follows (or the sequence
/// ends): the decoder turns a run of bytes that is not valid UTF-8 into one U+FFFD per byte, so
/// text decoded from the start of a run (a tab, say) may change when the run goes on. Skipped
/// special tokens do not end a run (the decoder never sees them), so they are held back too.
pub struct Detokenizer<'t> {
    tok: &'t Tokenizer,
    skip: bool,
    ids: Vec<u32>,
    /// Start of the decoding window.
    prefix: usize,
    /// End of what has been emitted, as an index into `ids`.
    read: usize,
    /// Bytes of text emitted so far.
    emitted: usize,
}

impl Detokenizer<'_> {
    /// Adds one id; returns the text it completes (possibly empty, when it only starts a
    /// character or is a skipped special token).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.tok.check_ids(&[id])?;
        self.ids.push(id);
        let skipped = self.skip && self.tok.special_ids.binary_search(&id).is_ok();
        if skipped || self.tok.byte_ids.binary_search(&id).is_ok() {
            return Ok(String::new());
        }
        let window = &self.ids[self.prefix..];
        let before = self
            .tok
            .inner
            .decode(&window[..self.read - self.prefix], self.skip)
            .map_err(|e| tk_err("decoding", e))?;
        let after = self
            .tok
            .inner
            .decode(window, self.skip)
            .map_err(|e| tk_err("decoding", e))?;
        if after.len() > before.len() && after.starts_with(&before) && !after.ends_with('\u{FFFD}')
        {
            let piece = after[before.len()..].to_string();
            // Keep a little context (the last emitted id) for the next window.
            self.prefix = self.read;
            self.read = self.ids.len();
            self.emitted += piece.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }

    /// Everything not yet emitted (call at the end of the sequence): the rest of the full
    /// decode, so that the pieces always add up to `decode(ids)`.
    pub fn finish(&mut self) -> Result<String> {
        let full = self.tok.decode(&self.ids, self.skip)?;
        let rest = full.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = full.len();
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(rest)
    }

    /// The ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
