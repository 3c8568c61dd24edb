//! SentencePiece `.model` import on arbitrary bytes: the protobuf decoder, the conversion to a
//! `tokenizer.json`, and, when that parses, a few encodes and decodes with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quill::tokenizer::Tokenizer;
use quill::tokenizer::sentencepiece::SpModel;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = SpModel::parse(data) else {
        return;
    };
    let Ok(json) = model.to_tokenizer_json(true, true) else {
        return;
    };
    // Building and running a tokenizer costs ~1 ms per thousand pieces: only for small models,
    // which the fuzzer's seeds are.
    if model.pieces.len() > 300 {
        return;
    }
    let Ok(tok) = Tokenizer::from_json(&json) else {
        return;
    };
    for text in ["Hello world", "  two  spaces ", "ünïcødé ✓ 漢字", ""] {
        if let Ok(ids) = tok.encode(text, true) {
            let _ = tok.decode(&ids, false);
        }
    }
});
