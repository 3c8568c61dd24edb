//! `quill-train`: from a corpus to a shipped `.quill` model. Argument parsing, progress, logs
//! and files; the work is in `quill::train`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quill::convert::quantize::Target;
use quill::decode::{BeamOptions, GenerateOptions, Strategy};
use quill::eval;
use quill::format::{Arch, Norm, Positions};
use quill::train::data::{self, Holdout, Split, Task};
use quill::train::optim::{AdamWOptions, Schedule};
use quill::train::run::Options;

mod metrics;
mod setup;
use metrics::{Log, evaluate, plot};

/// Train a Transformer translation model (TSV of source<TAB>target) or language model (plain
/// text), and write `.quill` files the runtime loads unchanged.
#[derive(Parser, Debug)]
#[command(name = "quill-train", version)]
struct Args {
    /// Training corpus: `source<TAB>target` lines (seq2seq) or text (lm).
    #[arg(long)]
    train: PathBuf,
    /// Dev set (same format); without it, --holdout takes dev and test out of --train.
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Test set, scored with BLEU and chrF at the end (seq2seq).
    #[arg(long)]
    test: Option<PathBuf>,
    /// Per mille of the training lines held out for dev, and as many for test (by a hash of each line).
    #[arg(long)]
    holdout: Option<u32>,
    /// Output folder: checkpoint.quill, model.quill (f32), model-<q>.quill, metrics.jsonl, curves.png.
    #[arg(long, short)]
    out: PathBuf,
    /// seq2seq (encoder-decoder) or lm (decoder-only).
    #[arg(long, default_value = "seq2seq")]
    task: String,
    /// transformer, or lstm (seq2seq only: the LSTM encoder-decoder with attention, docs/lstm.md).
    #[arg(long, default_value = "transformer")]
    arch: String,
    /// LSTM: attention scoring, dot, general or additive.
    #[arg(long, default_value = "general")]
    attention: String,
    /// LSTM: bidirectional encoder.
    #[arg(long)]
    bidirectional: bool,
    /// LSTM: no input feeding (by default the previous attentional state joins each decoder input).
    #[arg(long)]
    no_input_feeding: bool,
    /// LSTM: width of the embeddings (default: --d-model).
    #[arg(long)]
    embed_dim: Option<usize>,

    /// Continue a run from its checkpoint (all other model and training flags are ignored, except --steps, --epochs, --threads and the evaluation flags).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Fine-tune: start from this f32 (or f16/bf16) `.quill` model, keeping its architecture and tokenizer.
    #[arg(long)]
    init: Option<PathBuf>,

    /// Tokenizer to train: bpe or unigram.
    #[arg(long, default_value = "unigram")]
    tokenizer: String,
    /// Use this tokenizer.json instead of training one (ids 0-3 must be <pad> <unk> </s> <s>).
    #[arg(long)]
    tokenizer_json: Option<PathBuf>,
    /// Special tokens of the trained tokenizer besides <pad> <unk> </s> <s>, with ids 4, 5...
    /// in this order: never split, never made of text (e.g. a chat template's
    /// `<|im_start|>,<|im_end|>`).
    #[arg(long, value_delimiter = ',')]
    special_tokens: Vec<String>,
    /// Vocabulary size of the trained tokenizer (shared by source and target).
    #[arg(long, default_value_t = 8000)]
    vocab: usize,
    /// Lines of the corpus the tokenizer is trained on (the first ones).
    #[arg(long, default_value_t = 200_000)]
    tokenizer_lines: usize,

    /// A quill Config as JSON (docs/format.md §4) instead of the model flags below.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    d_model: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Key/value heads (grouped-query attention); default: --heads.
    #[arg(long)]
    kv_heads: Option<usize>,
    #[arg(long, default_value_t = 1024)]
    ffn: usize,
    #[arg(long, default_value_t = 3)]
    encoder_layers: usize,
    #[arg(long, default_value_t = 3)]
    decoder_layers: usize,
    /// relu, gelu, gelu_tanh or silu.
    #[arg(long, default_value = "relu")]
    activation: String,
    /// Gated feed-forward (SwiGLU with --activation silu).
    #[arg(long)]
    gated: bool,
    /// layer or rms.
    #[arg(long, default_value = "layer")]
    norm: String,
    /// Normalize after each residual add (the original Transformer) instead of before.
    #[arg(long)]
    post_norm: bool,
    /// sinusoidal, learned or rotary.
    #[arg(long, default_value = "sinusoidal")]
    positions: String,
    /// Longest sequence the positions cover.
    #[arg(long, default_value_t = 256)]
    max_positions: usize,
    /// No biases in linear layers and norms.
    #[arg(long)]
    no_bias: bool,
    /// A separate output projection instead of the embedding table.
    #[arg(long)]
    untied: bool,

    /// Stop after this many updates (0: no limit).
    #[arg(long, default_value_t = 0)]
    steps: u64,
    /// Stop after this many passes over the corpus (0: no limit).
    #[arg(long, default_value_t = 0)]
    epochs: u64,
    /// Stop after this many minutes of training (0: no limit).
    #[arg(long, default_value_t = 0.0)]
    minutes: f64,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1000)]
    warmup: u64,
    /// inverse-sqrt, cosine (to --min-lr-ratio at --steps) or constant.
    #[arg(long, default_value = "inverse-sqrt")]
    schedule: String,
    #[arg(long, default_value_t = 0.1)]
    min_lr_ratio: f64,
    /// Tokens per batch, padding included (source + target).
    #[arg(long, default_value_t = 4096)]
    batch_tokens: usize,
    /// Batches accumulated per update.
    #[arg(long, default_value_t = 1)]
    accum: usize,
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    #[arg(long, default_value_t = 0.1)]
    label_smoothing: f32,
    #[arg(long, default_value_t = 0.1)]
    dropout: f32,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0.9)]
    beta1: f64,
    #[arg(long, default_value_t = 0.98)]
    beta2: f64,
    /// Longest sentence kept (tokens); LM: the block length.
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    #[arg(long, default_value_t = 1_000_000)]
    chunk_lines: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,

    /// Evaluate on the dev set every this many updates (0: only at the end).
    #[arg(long, default_value_t = 1000)]
    eval_every: u64,
    /// Dev sentences translated for BLEU/chrF at each evaluation (0: loss only).
    #[arg(long, default_value_t = 200)]
    eval_sentences: usize,
    /// Beams of the test-set translation at the end (the exported model's default).
    #[arg(long, default_value_t = 4)]
    beams: usize,
    /// Save a checkpoint every this many updates (and always at the end).
    #[arg(long, default_value_t = 1000)]
    save_every: u64,
    /// Print a log line every this many updates.
    #[arg(long, default_value_t = 100)]
    log_every: u64,
    /// Decoding defaults and task merged into the exported models' `quill.generation` (JSON,
    /// e.g. `{"task":"summarization","max_new_tokens":48,"no_repeat_ngram_size":3}`; docs/format.md
    /// §3); also with --resume.
    #[arg(long)]
    generation: Option<String>,
    /// A chat model's Jinja template (a file), stored as the exported models' chat template
    /// (`quill chat`, `quill_chat_turn`); its `bos_token`/`eos_token` are `<s>`/`</s>`.
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// Quantized exports besides f32: comma-separated int8, int4, f16, bf16.
    #[arg(long, default_value = "int8")]
    quantize: String,
    /// Draw the training and dev curves into <out>/curves.png.
    #[arg(long)]
    plot: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quill-train: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn parse_norm(s: &str) -> Res<Norm> {
    Ok(match s {
        "layer" => Norm::LayerNorm,
        "rms" => Norm::RmsNorm,
        _ => return Err(format!("--norm {s}: expected layer or rms").into()),
    })
}

fn parse_positions(s: &str) -> Res<Positions> {
    Ok(match s {
        "sinusoidal" => Positions::Sinusoidal,
        "learned" => Positions::Learned,
        "rotary" => Positions::Rotary,
        _ => return Err(format!("--positions {s}: expected sinusoidal, learned or rotary").into()),
    })
}

fn options(a: &Args) -> Res<Options> {
    let schedule = match a.schedule.as_str() {
        "inverse-sqrt" => Schedule::InverseSqrt { warmup: a.warmup },
        "cosine" => {
            if a.steps == 0 {
                return Err("--schedule cosine needs --steps".into());
            }
            Schedule::Cosine {
                warmup: a.warmup,
                total: a.steps,
                min_ratio: a.min_lr_ratio,
            }
        }
        "constant" => Schedule::Constant { warmup: a.warmup },
        s => {
            return Err(
                format!("--schedule {s}: expected inverse-sqrt, cosine or constant").into(),
            );
        }
    };
    if !(0.0..1.0).contains(&a.dropout) || !(0.0..1.0).contains(&a.label_smoothing) {
        return Err("--dropout and --label-smoothing must be in [0, 1)".into());
    }
    Ok(Options {
        seed: a.seed,
        lr: a.lr,
        schedule,
        adam: AdamWOptions {
            beta1: a.beta1,
            beta2: a.beta2,
            eps: 1e-9,
            weight_decay: a.weight_decay,
        },
        clip: a.clip,
        label_smoothing: a.label_smoothing,
        dropout: a.dropout,
        accum: a.accum.max(1),
        budget: a.batch_tokens,
        max_len: a.max_len,
        chunk_lines: a.chunk_lines.max(1),
        holdout: a.holdout.map(|p| Holdout { per_mille: p }),
    })
}

fn run(a: Args) -> Res<()> {
    std::fs::create_dir_all(&a.out)?;
    let seq2seq = match a.task.as_str() {
        "seq2seq" => true,
        "lm" => false,
        t => return Err(format!("--task {t}: expected seq2seq or lm").into()),
    };
    let arch = match (seq2seq, a.arch.as_str()) {
        (true, "transformer") => Arch::Seq2Seq,
        (false, "transformer") => Arch::DecoderOnly,
        (true, "lstm") => Arch::LstmSeq2Seq,
        (false, "lstm") => return Err("--arch lstm trains seq2seq models only".into()),
        (_, x) => return Err(format!("--arch {x}: expected transformer or lstm").into()),
    };
    let opts = options(&a)?;
    let ckpt = a.out.join("checkpoint.quill");

    let mut trainer = setup::trainer(&a, arch, seq2seq, &opts)?;
    let c = trainer.model.config();
    eprintln!(
        "model: {} d={} heads={} ffn={} layers={}+{} vocab={} params={} threads={}",
        trainer.model.arch().as_str(),
        c.d_model,
        c.heads,
        c.ffn_dim,
        c.encoder_layers,
        c.decoder_layers,
        c.vocab_size,
        trainer.model.len(),
        trainer.threads()
    );

    let dev_src = setup::split(&trainer, &a.dev, Split::Dev);
    let test_src = setup::split(&trainer, &a.test, Split::Test);
    let dev = setup::dev_set(&trainer, &dev_src, a.eval_sentences)?;
    let mut log = Log::open(&a.out, trainer.state.step)?;

    let bar = if a.quiet {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    } else if a.steps > 0 {
        ProgressBar::new(a.steps)
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} eta {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(trainer.state.step);

    let start = Instant::now();
    let (mut win_loss, mut win_tok, mut win_nll, mut win_tokens, mut win_t) =
        (0.0, 0usize, 0.0, 0usize, Instant::now());
    loop {
        let done_steps = a.steps > 0 && trainer.state.step >= a.steps;
        let done_epochs = a.epochs > 0 && trainer.epochs_done() >= a.epochs;
        let done_time = a.minutes > 0.0 && start.elapsed().as_secs_f64() > a.minutes * 60.0;
        if done_steps || done_epochs || done_time {
            break;
        }
        let r = trainer.step()?;
        win_loss += r.loss.loss;
        win_nll += r.loss.nll;
        win_tok += r.loss.tokens;
        win_tokens += r.tokens;
        bar.set_position(r.step);
        if r.step.is_multiple_of(a.log_every.max(1)) {
            let secs = win_t.elapsed().as_secs_f64();
            let loss = win_loss / win_tok.max(1) as f64;
            let ppl = (win_nll / win_tok.max(1) as f64).exp();
            let tps = win_tokens as f64 / secs.max(1e-9);
            bar.set_message(format!(
                "loss {loss:.3} ppl {ppl:.1} {tps:.0} tok/s lr {:.2e} ep {}",
                r.lr, r.epoch
            ));
            if bar.is_hidden() && !a.quiet {
                eprintln!("step {} loss {loss:.3} ppl {ppl:.1} {tps:.0} tok/s", r.step);
            }
            log.train.push((r.step as f64, loss));
            log.write(serde_json::json!({
                "kind": "train", "step": r.step, "epoch": r.epoch, "loss": loss, "ppl": ppl,
                "lr": r.lr, "grad_norm": r.grad_norm, "tokens_per_s": tps,
                "elapsed_s": trainer.state.seconds,
            }))?;
            (win_loss, win_tok, win_nll, win_tokens, win_t) = (0.0, 0, 0.0, 0, Instant::now());
        }
        if a.eval_every > 0 && r.step.is_multiple_of(a.eval_every) {
            evaluate(&mut trainer, &dev, &bar, &mut log)?;
        }
        if a.save_every > 0 && r.step.is_multiple_of(a.save_every) {
            trainer.save_checkpoint(&ckpt)?;
        }
    }
    bar.finish_and_clear();
    trainer.save_checkpoint(&ckpt)?;
    eprintln!(
        "trained {} updates, {:.1} M tokens, {:.0} tokens/s over the run",
        trainer.state.step,
        trainer.state.tokens as f64 / 1e6,
        trainer.state.tokens as f64 / trainer.state.seconds.max(1e-9)
    );
    if a.eval_every == 0 || !trainer.state.step.is_multiple_of(a.eval_every) {
        evaluate(&mut trainer, &dev, &bar, &mut log)?;
    }

    // Exports.
    let f32_path = a.out.join("model.quill");
    trainer.export(&f32_path, None)?;
    eprintln!("wrote {}", f32_path.display());
    for q in a
        .quantize
        .split(',')
        .map(str::trim)
        .filter(|q| !q.is_empty())
    {
        let target = Target::parse(q)?;
        let path = a.out.join(format!("model-{q}.quill"));
        trainer.export(&path, Some(target))?;
        eprintln!(
            "wrote {} ({:.1} MB)",
            path.display(),
            std::fs::metadata(&path)?.len() as f64 / 1e6
        );
    }

    // Test set: the exported f32 model, decoded by the runtime with its defaults.
    if let (Some((p, h)), Task::Seq2Seq { .. }) = (&test_src, trainer.state.task) {
        let pairs = data::read_pairs(p, *h)?;
        let model = trainer.runtime_model()?;
        let mut o = GenerateOptions::model_defaults(&model)?;
        if a.beams > 1 {
            o.strategy = Strategy::Beam(BeamOptions {
                beams: a.beams,
                ..Default::default()
            });
        }
        let (scores, _) = eval::evaluate(&model, &pairs, &o, 16)?;
        let r = &scores.rouge;
        eprintln!(
            "test: {} sentences, BLEU {:.2}, chrF {:.2}, ROUGE-1/2/L {:.2}/{:.2}/{:.2} (f32, {} \
             beams{})",
            scores.sentences,
            scores.bleu,
            scores.chrf,
            r.rouge1,
            r.rouge2,
            r.rouge_l,
            a.beams,
            match scores.truncated {
                0 => String::new(),
                n => format!("; {n} sources cut to {} tokens", scores.max_input_len),
            }
        );
        log.write(serde_json::json!({
            "kind": "test", "step": trainer.state.step, "bleu": scores.bleu, "chrf": scores.chrf,
            "rouge1": r.rouge1, "rouge2": r.rouge2, "rougeL": r.rouge_l,
            "sentences": scores.sentences, "truncated": scores.truncated, "beams": a.beams,
        }))?;
    }
    if a.plot {
        plot(
            &a.out.join("curves.png"),
            &log,
            trainer.state.options.label_smoothing,
        )?;
    }
    Ok(())
}
