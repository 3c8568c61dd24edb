//! Encoding and decoding with real tokenizers (byte-level BPE, BPE with byte fallback,
//! Unigram): arbitrary text in, arbitrary ids back out, and the streaming detokenizer, whose
//! pieces must add up to the full decode for every id sequence.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quill::tokenizer::Tokenizer;

fn tokenizers() -> &'static [Tokenizer; 3] {
    static T: OnceLock<[Tokenizer; 3]> = OnceLock::new();
    T.get_or_init(|| {
        let load = |json: &str| Tokenizer::from_json(json).expect("fixture tokenizer");
        [
            load(include_str!(
                "../../tests/fixtures/tokenizers/gpt2_bytelevel_bpe/tokenizer.json"
            )),
            load(include_str!(
                "../../tests/fixtures/tokenizers/llama_bpe_bytefallback/tokenizer.json"
            )),
            load(include_str!(
                "../../tests/fixtures/tokenizers/t5_unigram/tokenizer.json"
            )),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tok = &tokenizers()[(mode % 3) as usize];
    let special = mode & 4 != 0;
    if mode & 8 == 0 {
        // Text in: bytes that are not UTF-8 must be refused, not mangled.
        match tok.encode_bytes(rest, special) {
            Ok(ids) => {
                assert!(std::str::from_utf8(rest).is_ok());
                let _ = tok.decode(&ids, !special).expect("decoding its own ids");
            }
            Err(_) => {}
        }
    } else {
        // Ids in (some past the vocabulary: those must be refused).
        let vocab = tok.vocab_size() as u32;
        let ids: Vec<u32> = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32 % (vocab + 8))
            .collect();
        let full = tok.decode(&ids, special);
        assert_eq!(full.is_err(), ids.iter().any(|&i| i >= vocab));
        let Ok(full) = full else {
            return;
        };
        let mut d = tok.detokenizer(special);
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&d.push(id).expect("valid id"));
        }
        streamed.push_str(&d.finish().expect("valid ids"));
        assert_eq!(
            streamed, full,
            "streamed pieces differ from the full decode of {ids:?}"
        );
    }
});
