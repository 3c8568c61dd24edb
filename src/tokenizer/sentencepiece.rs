//! Import of SentencePiece `.model` files (Unigram and BPE, with byte fallback) as a
//! `tokenizer.json`, so that many Marian, T5 and Llama checkpoints that ship only a `.model` can
//! be converted. The goal is SentencePiece's own ids, not an approximation:
//!
//! - normalization: the model's precompiled character map (`Precompiled`), then, if the model
//!   removes extra whitespace, stripping and collapsing runs of spaces;
//! - `▁` for spaces, with the dummy prefix when the model adds it (`Metaspace`);
//! - Unigram: the pieces and scores as they are; BPE: merges ordered by the score of the merged
//!   piece, which is the order in which SentencePiece's BPE applies them;
//! - control symbols (`<s>`, `</s>`, `<pad>`) are not matched in input text (SentencePiece does
//!   not either); user-defined symbols are.
//!
//! The `.model` file is a protocol buffer (`sentencepiece_model.proto`); the few fields needed
//! are read by the small decoder below.

use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Piece types of `sentencepiece_model.proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

#[derive(Clone, Debug)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// The parts of a SentencePiece model that tokenization depends on.
#[derive(Clone, Debug)]
pub struct SpModel {
    pub pieces: Vec<Piece>,
    /// 1 = Unigram, 2 = BPE, 3 = word, 4 = char.
    pub model_type: u64,
    pub byte_fallback: bool,
    pub unk_id: Option<usize>,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

/// Score of pieces that must not be used to segment text (Unigram).
const EXCLUDED: f64 = -1e9;

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(format!("SentencePiece model: {}", msg.into()))
}

/// A protocol-buffer field: number and value.
enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let f = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("length overflow"))?;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            t => return Err(bad(format!("unsupported wire type {t}"))),
        };
        Ok(Some((key >> 3, f)))
    }
}

impl SpModel {
    /// Parses the bytes of a `.model` file.
    pub fn parse(bytes: &[u8]) -> Result<SpModel> {
        let mut m = SpModel {
            pieces: Vec::new(),
            model_type: 1,
            byte_fallback: false,
            unk_id: None,
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        };
        let mut unk_id = 0u64;
        let mut r = Reader { buf: bytes, pos: 0 };
        while let Some((num, f)) = r.next()? {
            match (num, f) {
                (1, Field::Bytes(b)) => m.pieces.push(parse_piece(b)?),
                (2, Field::Bytes(b)) => {
                    let mut t = Reader { buf: b, pos: 0 };
                    while let Some((n, f)) = t.next()? {
                        match (n, f) {
                            (3, Field::Varint(v)) => m.model_type = v,
                            (35, Field::Varint(v)) => m.byte_fallback = v != 0,
                            (40, Field::Varint(v)) => unk_id = v,
                            _ => {}
                        }
                    }
                }
                (3, Field::Bytes(b)) => {
                    let mut t = Reader { buf: b, pos: 0 };
                    while let Some((n, f)) = t.next()? {
                        match (n, f) {
                            (2, Field::Bytes(c)) => m.precompiled_charsmap = c.to_vec(),
                            (3, Field::Varint(v)) => m.add_dummy_prefix = v != 0,
                            (4, Field::Varint(v)) => m.remove_extra_whitespaces = v != 0,
                            (5, Field::Varint(v)) => m.escape_whitespaces = v != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if m.pieces.is_empty() {
            return Err(bad("no pieces (is this a SentencePiece .model file?)"));
        }
        if !matches!(m.model_type, 1 | 2) {
            return Err(bad(format!(
                "model type {} is not supported (Unigram or BPE)",
                m.model_type
            )));
        }
        m.unk_id = m
            .pieces
            .iter()
            .position(|p| p.kind == PieceType::Unknown)
            .or(Some(unk_id as usize).filter(|&u| u < m.pieces.len()));
        Ok(m)
    }

    /// The equivalent `tokenizer.json`. `add_bos` / `add_eos` add a post-processor that puts the
    /// model's `<s>` / `</s>` control pieces around each sequence (Llama / T5 conventions).
    pub fn to_tokenizer_json(&self, add_bos: bool, add_eos: bool) -> Result<String> {
        let unk = self.unk_id.map(|i| self.pieces[i].piece.clone());
        let mut normalizers = Vec::new();
        if !self.precompiled_charsmap.is_empty() {
            // SentencePiece applies its map by longest match over the whole string, so a base
            // letter composes with the first of several combining marks (e + ◌́ + ◌̂ → é + ◌̂);
            // `Precompiled` works grapheme by grapheme and would miss that. Composing first (NFC,
            // which the map's NFKC subsumes) gives the same result.
            normalizers.push(json!({"type": "NFC"}));
            normalizers.push(json!({"type": "Precompiled", "precompiled_charsmap": base64::encode(&self.precompiled_charsmap)}));
        }
        if self.remove_extra_whitespaces {
            // Only spaces: SentencePiece keeps other whitespace (U+0085, tabs after mapping...).
            normalizers
                .push(json!({"type": "Replace", "pattern": {"Regex": "^ +| +$"}, "content": ""}));
            normalizers
                .push(json!({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}));
        }
        let scheme = if self.add_dummy_prefix {
            "always"
        } else {
            "never"
        };
        let bpe = self.model_type == 2;
        if bpe {
            // BPE runs over the whole text (no split at spaces), so the spaces are escaped by the
            // normalizer, and the dummy prefix is added even before a leading space, as
            // SentencePiece does (Metaspace would not add it there).
            if self.add_dummy_prefix {
                normalizers.push(json!({"type": "Prepend", "prepend": "▁"}));
            }
            normalizers
                .push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));
        }
        let (model, split) = match self.model_type {
            1 => (
                json!({
                    "type": "Unigram",
                    "unk_id": self.unk_id,
                    // SentencePiece never matches control or unused pieces in text: give them a
                    // score no segmentation would choose while a normal piece fits.
                    "vocab": self.pieces.iter().map(|p| {
                        let score = match p.kind {
                            PieceType::Control | PieceType::Unused | PieceType::Unknown => EXCLUDED,
                            _ => p.score as f64,
                        };
                        json!([p.piece, score])
                    }).collect::<Vec<_>>(),
                    "byte_fallback": self.byte_fallback,
                }),
                true,
            ),
            _ => (self.bpe_model(unk.as_deref()), false),
        };
        // Control pieces stay out of the text matcher; user-defined pieces are matched.
        let added: Vec<Value> = self
            .pieces
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind == PieceType::UserDefined)
            .map(|(i, p)| {
                json!({"id": i, "content": p.piece, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": false})
            })
            .collect();
        let control = |name: &str| {
            self.pieces
                .iter()
                .position(|p| p.piece == name && p.kind == PieceType::Control)
        };
        let post = match (
            add_bos.then(|| control("<s>")).flatten(),
            add_eos.then(|| control("</s>")).flatten(),
        ) {
            (None, None) => Value::Null,
            (bos, eos) => {
                let mut single = Vec::new();
                let mut pair = Vec::new();
                let mut special = serde_json::Map::new();
                for (id, name) in [(bos, "<s>"), (eos, "</s>")] {
                    if let Some(id) = id {
                        special.insert(
                            name.into(),
                            json!({"id": name, "ids": [id], "tokens": [name]}),
                        );
                    }
                }
                if bos.is_some() {
                    single.push(json!({"SpecialToken": {"id": "<s>", "type_id": 0}}));
                    pair.push(json!({"SpecialToken": {"id": "<s>", "type_id": 0}}));
                }
                single.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
                pair.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
                if eos.is_some() {
                    single.push(json!({"SpecialToken": {"id": "</s>", "type_id": 0}}));
                    pair.push(json!({"SpecialToken": {"id": "</s>", "type_id": 0}}));
                }
                pair.push(json!({"Sequence": {"id": "B", "type_id": 1}}));
                if eos.is_some() {
                    pair.push(json!({"SpecialToken": {"id": "</s>", "type_id": 1}}));
                }
                json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special})
            }
        };
        let mut decoders = Vec::new();
        if bpe {
            decoders.push(json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}));
        }
        if self.byte_fallback {
            decoders.push(json!({"type": "ByteFallback"}));
            decoders.push(json!({"type": "Fuse"}));
        }
        if bpe {
            let strip = usize::from(self.add_dummy_prefix);
            decoders.push(json!({"type": "Strip", "content": " ", "start": strip, "stop": 0}));
        } else {
            decoders.push(json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}));
        }
        let pre_tokenizer = if bpe {
            Value::Null
        } else {
            json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split})
        };
        let tok = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": if normalizers.is_empty() { Value::Null } else { json!({"type": "Sequence", "normalizers": normalizers}) },
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post,
            "decoder": {"type": "Sequence", "decoders": decoders},
            "model": model,
        });
        // Validate by loading it.
        let text = tok.to_string();
        super::Tokenizer::from_json(&text)?;
        Ok(text)
    }

    /// BPE: every split `(left, right)` of a piece into two pieces is a merge, ranked by the
    /// merged piece's score (higher first), then by the ids of the two halves.
    fn bpe_model(&self, unk: Option<&str>) -> Value {
        let index: std::collections::HashMap<&str, usize> = self
            .pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.piece.as_str(), i))
            .collect();
        let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
        for (id, p) in self.pieces.iter().enumerate() {
            if p.kind != PieceType::Normal {
                continue;
            }
            for (cut, _) in p.piece.char_indices().skip(1) {
                let (l, r) = p.piece.split_at(cut);
                if let (Some(&li), Some(&ri)) = (index.get(l), index.get(r)) {
                    merges.push((p.score, id, li, ri));
                }
            }
        }
        merges.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        let vocab: serde_json::Map<String, Value> = self
            .pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.piece.clone(), json!(i)))
            .collect();
        json!({
            "type": "BPE",
            "dropout": null,
            "unk_token": unk,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": true,
            "byte_fallback": self.byte_fallback,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges.iter().map(|m| json!([self.pieces[m.2].piece, self.pieces[m.3].piece])).collect::<Vec<_>>(),
        })
    }
}

fn parse_piece(b: &[u8]) -> Result<Piece> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(s)) => {
                p.piece = String::from_utf8(s.to_vec()).map_err(|_| bad("a piece is not UTF-8"))?;
            }
            (2, Field::Fixed32(v)) => p.score = f32::from_bits(v),
            (3, Field::Varint(v)) => {
                p.kind = match v {
                    1 => PieceType::Normal,
                    2 => PieceType::Unknown,
                    3 => PieceType::Control,
                    4 => PieceType::UserDefined,
                    5 => PieceType::Unused,
                    6 => PieceType::Byte,
                    t => return Err(bad(format!("unknown piece type {t}"))),
                }
            }
            _ => {}
        }
    }
    Ok(p)
}
