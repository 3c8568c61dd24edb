//! The shipped models of the content tasks (`models/*.quill`), run the way the README runs them:
//! each with its own generation metadata and nothing else (issue 19).
//!
//! - the summarizer: a short summary from its defaults; ROUGE of its outputs on 100 test pairs
//!   equals Google's `rouge-score` on the same outputs, without and with its stemmer
//!   (`tests/fixtures/summarize/golden.json`, made by `tests/reference/summ_goldens.py`), and
//!   `quill eval --rouge-stemmer` reports the stemmed figures;
//! - the keyword-to-text model: a description of several sentences from its defaults; ROUGE
//!   of its outputs on 50 test pairs equals `rouge-score` (`tests/fixtures/describe/golden.json`,
//!   the same script), and `quill eval --perplexity` reports the library's perplexity;
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

/// The summarizer's golden: its (source, reference, hypothesis) triples and rouge-score's figures.
struct Golden {
    sources: Vec<String>,
    refs: Vec<String>,
    hyps: Vec<String>,
    json: Value,
}

fn golden() -> Golden {
    golden_of("summarize")
}

/// The golden of `tests/fixtures/{task}/golden.json`.
fn golden_of(task: &str) -> Golden {
    let path = root().join("tests/fixtures").join(task).join("golden.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let field = |k: &str| -> Vec<String> {
        json["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[k].as_str().unwrap().to_string())
            .collect()
    };
    Golden {
        sources: field("source"),
        refs: field("reference"),
        hyps: field("hypothesis"),
        json,
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn assert_rouge(got: quill::eval::rouge::Rouge, want: &Value) {
    for (key, got) in [
        ("rouge1", got.rouge1),
        ("rouge2", got.rouge2),
        ("rougeL", got.rouge_l),
    ] {
        let w = want[key].as_f64().unwrap();
        assert!(
            (got - w).abs() < 1e-9,
            "{key}: quill {got}, rouge-score {w}"
        );
    }
}

/// ROUGE as `quill eval` computes it equals `rouge-score`'s on the summarizer's real outputs,
/// without and with its stemmer (`use_stemmer=True`), and the model still gives those outputs.
#[test]
fn summarizer_rouge_equals_rouge_score_on_its_outputs() {
    rouge_equals_rouge_score_on_the_outputs_of("summarize", "summarize-en.quill");
}

/// The same for the keyword-to-text model's outputs.
#[test]
fn describer_rouge_equals_rouge_score_on_its_outputs() {
    rouge_equals_rouge_score_on_the_outputs_of("describe", "describe-en.quill");
}

fn rouge_equals_rouge_score_on_the_outputs_of(task: &str, model: &str) {
    let g = golden_of(task);
    let r = quill::eval::rouge::corpus_rouge(&strs(&g.hyps), &strs(&g.refs));
    assert_rouge(r, &g.json["rouge_score"]);
    let r = quill::eval::rouge::corpus_rouge_stemmed(&strs(&g.hyps), &strs(&g.refs));
    assert_rouge(r, &g.json["rouge_score_stemmed"]);
    // The outputs are the shipped model's (on another ISA a near tie may flip a few).
    let m = open(model);
    let o = GenerateOptions::model_defaults(&m).unwrap();
    let now = quill::eval::translate(&m, &g.sources, &o, 16).unwrap();
    let same = now
        .texts
        .iter()
        .zip(&g.hyps)
        .filter(|(a, b)| a == b)
        .count();
    assert!(
        same * 100 >= g.hyps.len() * 95,
        "{same} of {} outputs",
        g.hyps.len()
    );
}

/// `quill eval` scores ROUGE without stemming by default and with it under `--rouge-stemmer`,
/// and its report says which.
#[test]
fn quill_eval_rouge_stemmer_flag() {
    let g = golden();
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("test.tsv");
    let n = 12;
    let lines: Vec<String> = (0..n)
        .map(|i| format!("{}\t{}\n", g.sources[i], g.refs[i]))
        .collect();
    std::fs::write(&test, lines.concat()).unwrap();
    let refs = strs(&g.refs[..n]);
    for stem in [false, true] {
        let hyps_path = dir.path().join("hyps.txt");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_quill"));
        cmd.arg("eval")
            .arg(root().join("models/summarize-en.quill"))
            .arg(&test)
            .args(["--threads", "1", "--output"])
            .arg(&hyps_path);
        if stem {
            cmd.arg("--rouge-stemmer");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["rouge_stemmer"], stem);
        let hyps = std::fs::read_to_string(&hyps_path).unwrap();
        let hyps: Vec<&str> = hyps.lines().collect();
        let (plain, stemmed) = (
            quill::eval::rouge::corpus_rouge(&hyps, &refs),
            quill::eval::rouge::corpus_rouge_stemmed(&hyps, &refs),
        );
        // These pairs score differently with the stemmer, so the report shows which was used.
        assert!(plain.rouge1 != stemmed.rouge1, "{plain:?}");
        let want = if stem { stemmed } else { plain };
        assert_rouge(want, &report);
    }
}

#[test]
fn the_describer_runs_from_its_metadata() {
    let m = open("describe-en.quill");
    assert_eq!(task(&m), "generation");
    let text = run(&m, "wget: retrieves files from the web");
    let words = text.split_whitespace().count();
    assert!(words >= 10, "{text:?}");
}

/// `quill eval --perplexity` on an encoder-decoder reports the library's perplexity of the
/// references given their sources (the library is held to `transformers` in
/// tests/perplexity.rs).
#[test]
fn quill_eval_perplexity_of_the_describer() {
    let g = golden_of("describe");
    let n = 10;
    let pairs: Vec<(String, String)> = (0..n)
        .map(|i| (g.sources[i].clone(), g.refs[i].clone()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("test.tsv");
    let lines: Vec<String> = pairs.iter().map(|(s, r)| format!("{s}\t{r}\n")).collect();
    std::fs::write(&test, lines.concat()).unwrap();
    let path = root().join("models/describe-en.quill");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quill"))
        .arg("eval")
        .arg(&path)
        .arg(&test)
        .args(["--perplexity", "--threads", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = quill::eval::perplexity_pairs(&open("describe-en.quill"), &pairs, 16).unwrap();
    assert_eq!(report["pairs"], n);
    assert_eq!(report["tokens"], want.tokens);
    let ppl = report["perplexity"].as_f64().unwrap();
    assert!(
        (ppl - want.perplexity).abs() < 1e-9 * ppl,
        "{ppl} vs {}",
        want.perplexity
    );
    assert!((2.0..1000.0).contains(&ppl), "{ppl}");
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
