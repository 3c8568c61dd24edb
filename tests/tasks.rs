//! The shipped models of the content tasks (`models/*.quill`), run the way the README runs them:
//! each with its own generation metadata and nothing else (issue 19).
//!
//! - the summarizer: a short summary from its defaults; ROUGE of its outputs on 100 test pairs
//!   equals Google's `rouge-score` on the same outputs (`tests/fixtures/summarize/golden.json`,
//!   made by `tests/reference/summ_goldens.py`);
//! - the dialogue model: its template is the one `transformers` renders in
//!   `tests/fixtures/chat/quill_chat_en.json`, and a 3-turn conversation prefills each turn's new
//!   text only, after the cache of the turns before.

use std::path::PathBuf;

use quill::chat::{ChatTemplate, Conversation, Message};
use quill::decode::{GenerateOptions, generate, text};
use quill::{Limits, Model, OpenOptions, Session};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn open(name: &str) -> Model {
    let opts = OpenOptions {
        threads: 1,
        ..Default::default()
    };
    Model::open(root().join("models").join(name), &opts).unwrap()
}

fn task(m: &Model) -> String {
    let g = m.file().quill().unwrap().generation.clone().unwrap();
    g["task"].as_str().unwrap().to_string()
}

/// `quill run`'s path: the task's input, the model's defaults, the visible text.
fn run(m: &Model, input: &str) -> String {
    let ids = text::task_input(m, input).unwrap();
    let o = GenerateOptions::model_defaults(m).unwrap();
    let beams = match &o.strategy {
        quill::decode::Strategy::Beam(b) => b.beams,
        _ => 1,
    };
    let limits = Limits {
        max_input_len: ids.len(),
        max_new_tokens: o.max_new_tokens,
        beams,
        ..Default::default()
    }
    .fit(m);
    let mut s = Session::new(m, limits).unwrap();
    let out = generate(&mut s, &[&ids], &o, None, None).unwrap();
    text::text_of(m, &out.outputs[0][0].ids).unwrap()
}

#[test]
fn the_summarizer_runs_from_its_metadata() {
    let m = open("summarize-en.quill");
    assert_eq!(task(&m), "summarization");
    let long = "GNU Wget is a free software package for retrieving files using HTTP, HTTPS and \
                FTP, the most widely-used Internet protocols. It is a non-interactive \
                command-line tool, so it may easily be called from scripts, cron jobs, \
                terminals without X Window System support, etc.";
    let summary = run(&m, long);
    let words = summary.split_whitespace().count();
    assert!((2..=20).contains(&words), "{summary:?}");
}

/// ROUGE as `quill eval` computes it equals `rouge-score`'s on the summarizer's real outputs,
/// and the model still gives those outputs.
#[test]
fn summarizer_rouge_equals_rouge_score_on_its_outputs() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/summarize/golden.json")).unwrap(),
    )
    .unwrap();
    let pairs = golden["pairs"].as_array().unwrap();
    let field = |k: &str| -> Vec<String> {
        pairs
            .iter()
            .map(|p| p[k].as_str().unwrap().to_string())
            .collect()
    };
    let (sources, refs, hyps) = (field("source"), field("reference"), field("hypothesis"));
    let (h, r): (Vec<&str>, Vec<&str>) = hyps
        .iter()
        .zip(&refs)
        .map(|(h, r)| (h.as_str(), r.as_str()))
        .unzip();
    let r = quill::eval::rouge::corpus_rouge(&h, &r);
    let want = &golden["rouge_score"];
    for (key, got) in [
        ("rouge1", r.rouge1),
        ("rouge2", r.rouge2),
        ("rougeL", r.rouge_l),
    ] {
        let w = want[key].as_f64().unwrap();
        assert!(
            (got - w).abs() < 1e-9,
            "{key}: quill {got}, rouge-score {w}"
        );
    }
    // The outputs are the shipped model's (on another ISA a near tie may flip a few).
    let m = open("summarize-en.quill");
    let o = GenerateOptions::model_defaults(&m).unwrap();
    let now = quill::eval::translate(&m, &sources, &o, 16).unwrap();
    let same = now.texts.iter().zip(&hyps).filter(|(a, b)| a == b).count();
    assert!(
        same * 100 >= hyps.len() * 95,
        "{same} of {} outputs",
        hyps.len()
    );
}

#[test]
fn the_dialogue_model_keeps_its_cache_across_three_turns() {
    let m = open("chat-en.quill");
    assert_eq!(task(&m), "dialogue");
    let t = ChatTemplate::of_model(&m)
        .unwrap()
        .expect("a chat template");
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/chat/quill_chat_en.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(t.spec().template, fixture["template"].as_str().unwrap());

    let o = GenerateOptions::model_defaults(&m).unwrap();
    let limits = Limits {
        max_input_len: 384,
        max_new_tokens: o.max_new_tokens,
        ..Default::default()
    }
    .fit(&m);
    let mut s = Session::new(&m, limits).unwrap();
    let mut conv = Conversation::new(t);
    let mut fed = String::new();
    for (turn, msg) in [
        "hi! how are you doing today?",
        "what do you like to do for fun?",
        "that sounds fun, where do you usually go?",
    ]
    .iter()
    .enumerate()
    {
        conv.push(Message::new("user", msg));
        let prompt = ChatTemplate::of_model(&m)
            .unwrap()
            .unwrap()
            .render(conv.messages(), true)
            .unwrap();
        let whole = text::encode(&m, &prompt, false).unwrap().len();
        let new_text = prompt
            .strip_prefix(fed.as_str())
            .expect("the cache is a prefix");
        let new = text::encode(&m, new_text, false).unwrap().len();
        let reply = conv.reply(&mut s, &o, None, None).unwrap();
        assert_eq!(conv.last_prefill(), new, "turn {turn}");
        if turn > 0 {
            assert!(
                new < whole,
                "turn {turn}: {new} of {whole} tokens prefilled"
            );
        }
        assert_eq!(s.cached_len(), conv.history().len() - 1, "turn {turn}");
        let said = &conv.messages().last().unwrap().content;
        assert!(!said.trim().is_empty(), "turn {turn}: an empty reply");
        assert_eq!(said, &text::text_of(&m, &reply.ids).unwrap());
        fed = prompt + &text::decode(&m, &reply.ids, false).unwrap();
    }
}
