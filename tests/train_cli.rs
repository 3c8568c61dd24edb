//! `quill-train` and `quill eval` end to end on tiny corpora: the files a run writes, resuming
//! from its checkpoint, a language model with the Llama-style options, and the exported models
//! running in the runtime.

use std::path::Path;
use std::process::Command;

fn corpus(path: &Path, n: usize, tsv: bool) {
    let words = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut text = String::new();
    for _ in 0..n {
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let len = 2 + (next() % 5) as usize;
        let s: Vec<&str> = (0..len).map(|_| words[(next() % 8) as usize]).collect();
        let r: Vec<&str> = s.iter().rev().copied().collect();
        if tsv {
            text += &format!("{}\t{}\n", s.join(" "), r.join(" "));
        } else {
            text += &format!("{} {}\n", s.join(" "), r.join(" "));
        }
    }
    std::fs::write(path, text).unwrap();
}

fn train(args: &[&str]) -> String {
    train_expecting(args, true)
}

/// Runs quill-train with `args`, which must fail; its standard error.
fn train_fails(args: &[&str]) -> String {
    train_expecting(args, false)
}

/// Runs quill-train with `args` on one thread; asserts it succeeds (`ok`) or fails; its
/// standard error.
fn train_expecting(args: &[&str], ok: bool) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_quill-train"))
        .args(args)
        .args(["--threads", "1", "--quiet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.success(),
        ok,
        "quill-train {args:?}: {}\n{stderr}",
        out.status
    );
    stderr
}

fn lines_of_kind(metrics: &str, kind: &str) -> Vec<serde_json::Value> {
    metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == kind)
        .collect()
}

#[test]
fn seq2seq_run_writes_models_metrics_and_plot_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pairs.tsv");
    corpus(&data, 2000, true);
    let out = dir.path().join("run");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let small = [
        "--tokenizer",
        "bpe",
        "--vocab",
        "40",
        "--d-model",
        "32",
        "--heads",
        "2",
        "--ffn",
        "64",
        "--encoder-layers",
        "1",
        "--decoder-layers",
        "1",
        "--warmup",
        "10",
        "--lr",
        "3e-3",
        "--batch-tokens",
        "400",
        "--log-every",
        "5",
        "--eval-every",
        "10",
        "--eval-sentences",
        "20",
        "--beams",
        "2",
        "--max-positions",
        "64",
    ];
    let mut args = vec![
        "--train",
        d,
        "--holdout",
        "50",
        "-o",
        o,
        "--steps",
        "20",
        "--quantize",
        "int8,int4",
        "--plot",
    ];
    args.extend(small);
    let log = train(&args);
    assert!(log.contains("trained a bpe tokenizer"), "{log}");
    for f in [
        "checkpoint.quill",
        "model.quill",
        "model-int8.quill",
        "model-int4.quill",
        "tokenizer.json",
        "curves.png",
    ] {
        assert!(out.join(f).exists(), "{f} missing; log:\n{log}");
    }
    let png = std::fs::read(out.join("curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines_of_kind(&metrics, "train").len(), 4);
    let dev = lines_of_kind(&metrics, "dev");
    assert_eq!(dev.len(), 2);
    assert!(dev[1]["loss"].as_f64().unwrap() < dev[0]["loss"].as_f64().unwrap() + 0.5);
    assert!(dev[0]["bleu"].is_number() && dev[0]["chrf"].is_number());
    let test = lines_of_kind(&metrics, "test");
    assert_eq!(test.len(), 1);
    assert!(test[0]["sentences"].as_u64().unwrap() > 50, "{}", test[0]);

    // Resume to 30 updates: the step count continues, the log grows.
    let ckpt = out.join("checkpoint.quill");
    let mut args = vec![
        "--train",
        d,
        "-o",
        o,
        "--resume",
        ckpt.to_str().unwrap(),
        "--steps",
        "30",
        "--quantize",
        "",
        "--generation",
        r#"{"task":"summarization","max_new_tokens":20,"no_repeat_ngram_size":3}"#,
    ];
    args.extend([
        "--log-every",
        "5",
        "--eval-every",
        "0",
        "--eval-sentences",
        "0",
    ]);
    let log = train(&args);
    assert!(log.contains("trained 30 updates"), "{log}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = lines_of_kind(&metrics, "train")
        .iter()
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![5, 10, 15, 20, 25, 30]);
    // --generation merged over the run's defaults (beams kept) in the exported model.
    let f = quill::QuillFile::open(out.join("model.quill")).unwrap();
    let g = f.quill().unwrap().generation.clone().unwrap();
    assert_eq!(g["task"], "summarization");
    assert_eq!(
        (
            g["max_new_tokens"].as_u64(),
            g["no_repeat_ngram_size"].as_u64()
        ),
        (Some(20), Some(3))
    );
    assert!(g["num_beams"].as_u64().is_some(), "{g:?}");
    let e = train_fails(&[
        "--train",
        d,
        "-o",
        o,
        "--resume",
        ckpt.to_str().unwrap(),
        "--generation",
        r#"{"task":"poetry"}"#,
    ]);
    assert!(e.contains("task \"poetry\""), "{e}");

    // `quill eval` on the int8 export.
    let test_tsv = dir.path().join("test.tsv");
    corpus(&test_tsv, 30, true);
    let q = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args([
            "eval",
            out.join("model-int8.quill").to_str().unwrap(),
            test_tsv.to_str().unwrap(),
        ])
        .args(["--threads", "1", "--beams", "2", "--output"])
        .arg(dir.path().join("hyps.txt"))
        .output()
        .unwrap();
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let report: serde_json::Value = serde_json::from_slice(&q.stdout).unwrap();
    assert_eq!(report["sentences"], 30);
    let bleu = report["bleu"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&bleu) && report["tokens_per_s"].as_f64().unwrap() > 0.0);
    // ROUGE of the written outputs against the references (the metric itself is held to
    // rouge-score's goldens in src/eval/rouge.rs).
    let hyps = std::fs::read_to_string(dir.path().join("hyps.txt")).unwrap();
    let hyps: Vec<&str> = hyps.lines().collect();
    let refs: Vec<String> = quill::eval::read_pairs(&test_tsv)
        .unwrap()
        .into_iter()
        .map(|p| p.1)
        .collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let r = quill::eval::rouge::corpus_rouge(&hyps, &refs);
    for (key, want) in [
        ("rouge1", r.rouge1),
        ("rouge2", r.rouge2),
        ("rougeL", r.rouge_l),
    ] {
        let got = report[key].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{key}: {got} vs {want}");
    }
}

#[test]
fn epochs_stop_after_the_last_batch_of_the_last_pass() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pairs.tsv");
    corpus(&data, 300, true);
    let out = dir.path().join("run");
    let args = [
        "--train",
        data.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--epochs",
        "2",
        "--tokenizer",
        "bpe",
        "--vocab",
        "40",
        "--d-model",
        "32",
        "--heads",
        "2",
        "--ffn",
        "64",
        "--encoder-layers",
        "1",
        "--decoder-layers",
        "1",
        "--batch-tokens",
        "400",
        "--log-every",
        "1",
        "--eval-every",
        "0",
        "--eval-sentences",
        "0",
        "--quantize",
        "",
    ];
    train(&args);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let epochs: Vec<u64> = lines_of_kind(&metrics, "train")
        .iter()
        .map(|v| v["epoch"].as_u64().unwrap())
        .collect();
    // Two passes of the same number of batches, nothing of a third.
    let first = epochs.iter().filter(|&&e| e == 0).count();
    assert!(first > 1);
    assert_eq!(epochs.len(), 2 * first, "{epochs:?}");
}

#[test]
fn language_model_with_rotary_rmsnorm_swiglu_trains_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("text.txt");
    corpus(&data, 1500, false);
    let out = dir.path().join("lm");
    let args = [
        "--train",
        data.to_str().unwrap(),
        "--holdout",
        "50",
        "-o",
        out.to_str().unwrap(),
        "--task",
        "lm",
        "--tokenizer",
        "bpe",
        "--vocab",
        "40",
        "--d-model",
        "32",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--ffn",
        "64",
        "--decoder-layers",
        "2",
        "--positions",
        "rotary",
        "--norm",
        "rms",
        "--gated",
        "--activation",
        "silu",
        "--no-bias",
        "--untied",
        "--max-len",
        "16",
        "--max-positions",
        "64",
        "--steps",
        "40",
        "--warmup",
        "5",
        "--lr",
        "3e-3",
        "--batch-tokens",
        "256",
        "--log-every",
        "10",
        "--eval-every",
        "20",
        "--quantize",
        "int8",
    ];
    train(&args);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let train_loss: Vec<f64> = lines_of_kind(&metrics, "train")
        .iter()
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    assert!(
        train_loss.last().unwrap() < &(train_loss[0] * 0.8),
        "{train_loss:?}"
    );
    assert_eq!(lines_of_kind(&metrics, "dev").len(), 2);
    let file = quill::QuillFile::read(out.join("model.quill")).unwrap();
    assert!(file.contains("lm_head.weight") && file.contains("decoder.layers.0.ffn.gate.weight"));
    let run = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args([
            "run",
            out.join("model-int8.quill").to_str().unwrap(),
            "a b c",
            "--max-new-tokens",
            "8",
            "--threads",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // quill eval --perplexity on the training text: the JSON of eval::perplexity (held to
    // transformers in tests/perplexity.rs).
    let q = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(["eval", out.join("model-int8.quill").to_str().unwrap()])
        .args([data.to_str().unwrap(), "--perplexity", "--threads", "1"])
        .output()
        .unwrap();
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let report: serde_json::Value = serde_json::from_slice(&q.stdout).unwrap();
    let ppl = report["perplexity"].as_f64().unwrap();
    assert!(
        report["texts"].as_u64() == Some(1500) && ppl > 1.0 && ppl < 40.0,
        "{report}"
    );
}

/// A chat model's run: `--special-tokens` take ids 4... of the trained vocabulary and stay whole,
/// `--chat-template` is stored in the exports (and a template that does not compile stops the
/// run before it trains), `--generation` sets the task that makes `quill run` use it.
#[test]
fn chat_runs_store_their_template_and_special_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chat.txt");
    let lines: Vec<String> = (0..400)
        .map(|i| {
            format!(
                "<|user|>ping {}<|end|><|assistant|>pong {}<|end|>",
                i % 7,
                i % 7
            )
        })
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let template = dir.path().join("t.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}\
         {% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}\n",
    )
    .unwrap();
    let out = dir.path().join("chat");
    let (d, o, t) = (
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        template.to_str().unwrap(),
    );
    let args = [
        "--train",
        d,
        "--holdout",
        "50",
        "-o",
        o,
        "--task",
        "lm",
        "--vocab",
        "60",
        "--d-model",
        "32",
        "--heads",
        "2",
        "--ffn",
        "64",
        "--decoder-layers",
        "1",
        "--positions",
        "rotary",
        "--max-len",
        "32",
        "--max-positions",
        "128",
        "--steps",
        "5",
        "--eval-every",
        "0",
        "--quantize",
        "",
        "--chat-template",
        t,
        "--special-tokens",
        "<|system|>,<|user|>,<|assistant|>,<|end|>",
        "--generation",
        r#"{"task":"dialogue","eos_token_id":[2,7]}"#,
    ];
    train(&args);
    let m = quill::Model::open(out.join("model.quill"), &Default::default()).unwrap();
    let ids = quill::decode::text::encode(&m, "<|user|>ping 3<|end|>", false).unwrap();
    assert_eq!((ids[0], *ids.last().unwrap()), (5, 7), "{ids:?}");
    let t = quill::chat::ChatTemplate::of_model(&m).unwrap().unwrap();
    let msg = [quill::chat::Message::new("user", "ping 3")];
    assert_eq!(
        t.render(&msg, true).unwrap(),
        "<|user|>ping 3<|end|><|assistant|>"
    );
    assert_eq!(t.spec().eos_token.as_deref(), Some("</s>"));
    // quill run: the input as one user message in the template.
    let want = quill::decode::text::encode(&m, "<|user|>ping 3<|end|><|assistant|>", false);
    assert_eq!(
        quill::decode::text::task_input(&m, "ping 3").unwrap(),
        want.unwrap()
    );

    std::fs::write(&template, "{% for m in messages %}").unwrap();
    let e = train_fails(&args);
    assert!(
        e.contains("--chat-template") && !e.contains("trained"),
        "{e}"
    );
}
