//! The tokenizer against Hugging Face `tokenizers` (tests/fixtures/tokenizers, 339 hard strings
//! × 3 real tokenizers) and SentencePiece (tests/fixtures/sentencepiece, made by
//! tests/reference/make_spm_fixtures.py), and streaming detokenization.
#![cfg(feature = "tokenizer")]

use std::path::{Path, PathBuf};

use quill::tokenizer::Tokenizer;
use quill::tokenizer::sentencepiece::SpModel;
use serde_json::Value;

const HF: [&str; 3] = ["gpt2_bytelevel_bpe", "t5_unigram", "llama_bpe_bytefallback"];

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn json(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

mod common;

use common::json_ids as ids;

fn hf(name: &str) -> (Tokenizer, Vec<Value>) {
    let t = Tokenizer::from_json(
        &std::fs::read_to_string(dir("tokenizers").join(name).join("tokenizer.json")).unwrap(),
    )
    .unwrap();
    let cases = json(dir("tokenizers").join(name).join("encodings.json"))["cases"]
        .as_array()
        .unwrap()
        .clone();
    (t, cases)
}

#[test]
fn simplest_case() {
    let (t, _) = hf("gpt2_bytelevel_bpe");
    let ids = t.encode("Open the file", true).unwrap();
    assert_eq!(t.decode(&ids, true).unwrap(), "Open the file");
}

#[test]
fn hugging_face_ids_and_texts_are_reproduced() {
    for name in HF {
        let (t, cases) = hf(name);
        assert!(cases.len() > 300);
        for c in &cases {
            let text = c["text"].as_str().unwrap();
            let what = format!("{name} case {} {:?}", c["id"], text);
            assert_eq!(t.encode(text, true).unwrap(), ids(&c["ids"]), "{what}: ids");
            assert_eq!(
                t.encode(text, false).unwrap(),
                ids(&c["ids_no_special"]),
                "{what}: ids without specials"
            );
            assert_eq!(
                t.decode(&ids(&c["ids"]), true).unwrap(),
                c["decoded"].as_str().unwrap(),
                "{what}: decoded"
            );
            assert_eq!(
                t.decode(&ids(&c["ids"]), false).unwrap(),
                c["decoded_with_special"].as_str().unwrap(),
                "{what}: decoded with specials"
            );
        }
    }
}

#[test]
fn streamed_pieces_add_up_to_the_full_decode() {
    for name in HF {
        let (t, cases) = hf(name);
        for c in &cases {
            let all = ids(&c["ids"]);
            for skip in [true, false] {
                let full = t.decode(&all, skip).unwrap();
                let mut d = t.detokenizer(skip);
                let mut streamed = String::new();
                for &id in &all {
                    let piece = d.push(id).unwrap();
                    streamed.push_str(&piece);
                    assert!(
                        full.starts_with(&streamed),
                        "{name} case {}: streamed {streamed:?} is not a prefix of {full:?}",
                        c["id"]
                    );
                }
                streamed.push_str(&d.finish().unwrap());
                assert_eq!(streamed, full, "{name} case {} skip={skip}", c["id"]);
            }
        }
    }
}

#[test]
fn streaming_never_splits_a_character() {
    let (t, _) = hf("llama_bpe_bytefallback");
    // CJK and emoji go through byte fallback here: several ids per character.
    let text = "日本語 👩‍👩‍👧 ok";
    let all = t.encode(text, false).unwrap();
    assert!(
        all.len() > text.chars().count(),
        "expected byte-fallback pieces"
    );
    let mut d = t.detokenizer(true);
    for id in all {
        let piece = d.push(id).unwrap();
        assert!(
            !piece.contains('\u{FFFD}'),
            "half a character streamed: {piece:?}"
        );
    }
}

#[test]
fn streaming_byte_fallback_runs_that_are_not_utf8() {
    // Found by the `tokenizer` fuzz target: a byte piece that decodes alone (a tab, a control
    // character) followed by bytes that together with it are not UTF-8 (the decoder then gives
    // U+FFFD per byte), with and without skipped special tokens inside the run.
    let (t, _) = hf("llama_bpe_bytefallback");
    let cases: [(&[u32], bool); 2] = [
        (&[924, 13, 192, 78, 734, 115, 160, 874, 2], false),
        (
            &[
                1, 379, 231, 133, 182, 231, 134, 141, 231, 133, 144, 231, 133, 174, 123, 134, 175,
                231, 134, 1739, 5, 0, 175, 231, 135, 142, 379, 234, 192, 166, 233, 177, 155,
            ],
            true,
        ),
    ];
    for (ids, skip) in cases {
        let full = t.decode(ids, skip).unwrap();
        let mut d = t.detokenizer(skip);
        let mut streamed = String::new();
        for &id in ids {
            streamed.push_str(&d.push(id).unwrap());
            assert!(full.starts_with(&streamed), "{streamed:?} / {full:?}");
        }
        streamed.push_str(&d.finish().unwrap());
        assert_eq!(streamed, full);
    }
}

#[test]
fn malformed_precompiled_charsmaps_are_errors_not_panics() {
    // Found by the `sentencepiece` fuzz target: `tokenizers` panics on these.
    // 3 bytes: no room for the trie's size.
    for charsmap in ["AAAA", "AAA="] {
        let json = format!(
            r#"{{"version":"1.0","normalizer":{{"type":"Sequence","normalizers":[{{"type":"Precompiled","precompiled_charsmap":"{charsmap}"}}]}},"model":{{"type":"WordLevel","vocab":{{"a":0}},"unk_token":"a"}}}}"#
        );
        match Tokenizer::from_json(&json) {
            Err(quill::Error::BadMetadata { reason, .. }) => {
                assert!(reason.contains("Precompiled"), "{reason}")
            }
            other => panic!("{charsmap}: {other:?}"),
        }
    }
}

#[test]
fn charsmaps_whose_trie_leaves_the_array_are_errors_not_panics() {
    // Found by the `sentencepiece` fuzz target: these parse, then `tokenizers` indexed outside
    // the charsmap's trie while normalizing text.
    for name in ["fuzz-trie-oob-1", "fuzz-trie-oob-2"] {
        let bytes = std::fs::read(dir("sentencepiece").join(format!("{name}.model"))).unwrap();
        let loaded = SpModel::parse(&bytes)
            .unwrap()
            .to_tokenizer_json(true, true)
            .and_then(|json| Tokenizer::from_json(&json));
        match loaded {
            Err(quill::Error::BadMetadata { reason, .. }) => {
                assert!(reason.contains("Precompiled"), "{name}: {reason}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn bad_ids_and_bytes_are_errors() {
    let (t, _) = hf("t5_unigram");
    assert!(t.decode(&[5, 4000], true).is_err());
    assert!(t.detokenizer(true).push(99_999).is_err());
    assert!(t.encode_bytes(b"ok \xff", true).is_err());
    assert!(Tokenizer::from_json("{\"model\": 3}").is_err());
}

/// A syntax error inside the `decoder` object makes the `tokenizers` crate panic (an `expect`
/// in its decoder deserializer; found by the c_generate fuzzer in a mutated model file): quill
/// refuses the file with an error instead.
#[test]
fn a_malformed_decoder_is_an_error_not_a_panic() {
    let json = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/marian/tokenizer.json"),
    )
    .unwrap();
    let at = json.find("\"decoder\"").unwrap();
    let brace = at + json[at..].find('{').unwrap();
    let broken = format!("{}{{x{}", &json[..brace], &json[brace + 1..]);
    let e = Tokenizer::from_json(&broken).unwrap_err().to_string();
    assert!(e.contains("not a valid tokenizer.json"), "{e}");
}

#[test]
fn sentencepiece_models_give_sentencepiece_ids() {
    let mut report = Vec::new();
    for name in ["unigram", "bpe"] {
        let bytes = std::fs::read(dir("sentencepiece").join(format!("{name}.model"))).unwrap();
        let sp = SpModel::parse(&bytes).unwrap();
        let t = Tokenizer::from_json(&sp.to_tokenizer_json(false, false).unwrap()).unwrap();
        let cases = json(dir("sentencepiece").join(format!("{name}.json")))["cases"]
            .as_array()
            .unwrap()
            .clone();
        let mut wrong = Vec::new();
        for c in &cases {
            let text = c["text"].as_str().unwrap();
            if t.encode(text, false).unwrap() != ids(&c["ids"]) {
                wrong.push(format!(
                    "{} {:?}: {:?} vs {:?}",
                    c["id"],
                    text,
                    t.encode(text, false).unwrap(),
                    ids(&c["ids"])
                ));
            }
            // Decoded text too, except where SentencePiece spells an unknown piece " ⁇ " (quill,
            // like Hugging Face's conversions, decodes it as its piece, "<unk>").
            let decoded = t.decode(&ids(&c["ids"]), true).unwrap();
            if !ids(&c["ids"]).contains(&3) && decoded != c["decoded"].as_str().unwrap() {
                wrong.push(format!(
                    "{} decode {:?}: {:?} vs {:?}",
                    c["id"], text, decoded, c["decoded"]
                ));
            }
        }
        if !wrong.is_empty() {
            report.push(format!(
                "{name}: {} of {} differ:\n{}",
                wrong.len(),
                cases.len(),
                wrong[..wrong.len().min(8)].join("\n")
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn sentencepiece_post_processor_adds_bos_and_eos() {
    let bytes = std::fs::read(dir("sentencepiece").join("bpe.model")).unwrap();
    let t = Tokenizer::from_json(
        &SpModel::parse(&bytes)
            .unwrap()
            .to_tokenizer_json(true, true)
            .unwrap(),
    )
    .unwrap();
    let ids = t.encode("Open", true).unwrap();
    assert_eq!((ids[0], *ids.last().unwrap()), (1, 2));
    assert!(SpModel::parse(b"\x0a\x05").is_err());
    assert!(SpModel::parse(b"not a model").is_err());
}
