//! `quill`: run, convert, quantize, inspect, evaluate and benchmark models.
//!
//! A thin layer over the library: argument parsing and printing only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quill::QuillFile;
use quill::convert::hf::{ConvertOptions, convert_hf};
use quill::convert::quantize::{Target, quantize_file};
use quill::{Model, OpenOptions};

mod bench;
mod generate;

use generate::DecodeArgs;
use quill::format::Summary;
use quill::kernels::Isa;

#[derive(Parser)]
#[command(
    name = "quill",
    version,
    about = "Run, inspect and quantize quill models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate with a model (greedy): text in, text out; or token ids in and out with --ids.
    Run {
        model: PathBuf,
        /// Input texts (each one a source sentence or prompt).
        #[arg(required_unless_present = "ids", conflicts_with = "ids")]
        text: Vec<String>,
        /// Input token ids instead of text, comma-separated.
        #[arg(long, value_delimiter = ',')]
        ids: Option<Vec<u32>>,
        #[command(flatten)]
        decode: DecodeArgs,
        /// Worker threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Talk with a decoder-only model: one message per line on standard input; replies stream.
    /// A model with a chat template (converted from a checkpoint that ships one) gets each line
    /// as a user message formatted by it; others get the lines as they are.
    Chat {
        model: PathBuf,
        #[command(flatten)]
        decode: DecodeArgs,
        /// A system message first (needs the model's chat template).
        #[arg(long)]
        system: Option<String>,
        /// Tools the chat template offers the model: a JSON file holding the list
        /// `apply_chat_template` takes (`[{"type":"function","function":{...}}]`). A line
        /// starting with `/tool ` is then a tool's result, which the model replies to.
        #[arg(long, value_name = "FILE")]
        tools: Option<PathBuf>,
        /// Longest conversation, in tokens, the session holds.
        #[arg(long, default_value_t = 2048)]
        max_context: usize,
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Run a test set (TSV: source<TAB>reference: translation, summarization) and report BLEU,
    /// chrF (sacreBLEU compatible), ROUGE-1/2/L F1 (rouge-score compatible; no stemming unless
    /// --rouge-stemmer) and tokens/s as JSON. Decoding follows the model's defaults unless flags
    /// say. With --perplexity: the model's perplexity on TEST (a language model: its lines; an
    /// encoder-decoder: its references given their sources).
    Eval {
        model: PathBuf,
        test: PathBuf,
        #[command(flatten)]
        decode: DecodeArgs,
        /// Sentences decoded together.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Write the translations here, one per line.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Score perplexity instead of decoding. A language model: TEST's lines as text, each
        /// ended by end-of-sequence as quill-train reads a corpus, cut into windows of the
        /// model's positions (at most 1,024). An encoder-decoder: each reference given its
        /// source, ended by end-of-sequence (sides longer than the positions are cut).
        #[arg(long)]
        perplexity: bool,
        /// With --perplexity: also how far the model's next-token distributions are from this
        /// model's (the unquantized original): mean and largest KL divergence, top-1
        /// agreement, both perplexities.
        #[arg(long, value_name = "MODEL", requires = "perplexity")]
        reference: Option<PathBuf>,
        /// Score ROUGE with each token longer than three characters replaced by its Porter stem,
        /// as rouge-score's use_stemmer=True (the figure most summarization papers quote).
        #[arg(long, conflicts_with = "perplexity")]
        rouge_stemmer: bool,
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Import a Hugging Face checkpoint folder (Marian, BART, mBART, Pegasus, M2M100/NLLB, T5, mT5,
    /// GPT-2, Llama, Mistral, Qwen2, Qwen3, Phi-3).
    Convert {
        hf_dir: PathBuf,
        output: PathBuf,
        /// Quantize the weight matrices: int8, int4, f16 or bf16.
        #[arg(long)]
        quantize: Option<String>,
    },
    /// Measure a model: open time, time to first token, decode tokens/s, peak memory (JSON).
    Bench {
        model: PathBuf,
        /// Input tokens (random ids, fixed seed).
        #[arg(long, default_value_t = 32)]
        input_len: usize,
        /// Tokens generated, exactly (end-of-sequence is ignored).
        #[arg(long, default_value_t = 128)]
        new_tokens: usize,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also time beam search with this many beams (per-step cost next to greedy's).
        #[arg(long, default_value_t = 1)]
        beams: usize,
    },
    /// Show a model file: architecture, config, tensors by dtype, parameters, bytes, alignment.
    Inspect {
        file: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// List every tensor.
        #[arg(long)]
        tensors: bool,
    },
    /// This build and this machine: version, ABI, kernel level chosen and available, threads.
    Info {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Quantize every weight matrix of a model and report each tensor's error.
    Quantize {
        input: PathBuf,
        output: PathBuf,
        /// int8 (per output row), int4 (groups of 32, f16 scales), f16 or bf16.
        #[arg(long)]
        to: String,
        /// Print the per-tensor report as JSON lines.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quill: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens `path` with `threads` workers (0: one per core).
fn open(path: &std::path::Path, threads: usize) -> quill::Result<Model> {
    Model::open(
        path,
        &OpenOptions {
            threads,
            ..Default::default()
        },
    )
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Run {
            model,
            text,
            ids,
            decode,
            threads,
        } => {
            let m = open(&model, threads)?;
            match ids {
                Some(ids) => generate::run_ids(&m, &ids, &decode)?,
                None => generate::run_text(&m, &text, &decode)?,
            }
        }
        Command::Chat {
            model,
            decode,
            system,
            tools,
            max_context,
            threads,
        } => {
            let m = open(&model, threads)?;
            let tools = match tools {
                Some(p) => Some(
                    serde_json::from_str(&std::fs::read_to_string(&p)?)
                        .map_err(|e| format!("{}: not a JSON list of tools: {e}", p.display()))?,
                ),
                None => None,
            };
            generate::chat(&m, &decode, system.as_deref(), tools, max_context)?;
        }
        Command::Eval {
            model,
            test,
            decode,
            batch,
            output,
            perplexity,
            reference,
            rouge_stemmer,
            threads,
        } => {
            let m = open(&model, threads)?;
            let no_pairs = || format!("{}: no `source<TAB>reference` lines", test.display());
            if perplexity {
                // An encoder-decoder scores references given their sources; a language model,
                // lines of text.
                let (mut texts, mut pairs) = (Vec::new(), Vec::new());
                let (p, counts) = if m.arch() != quill::Arch::DecoderOnly {
                    pairs = quill::eval::read_pairs(&test)?;
                    if pairs.is_empty() {
                        return Err(no_pairs().into());
                    }
                    let p = quill::eval::perplexity_pairs(&m, &pairs, batch)?;
                    let counts = [("pairs", p.windows), ("truncated", p.truncated)];
                    (p, counts)
                } else {
                    quill::eval::for_each_line(&test, |l| {
                        if !l.trim().is_empty() {
                            texts.push(l.to_string());
                        }
                        true
                    })?;
                    if texts.is_empty() {
                        return Err(format!("{}: no text", test.display()).into());
                    }
                    let p = quill::eval::perplexity(&m, &texts, batch)?;
                    let counts = [("texts", texts.len()), ("windows", p.windows)];
                    (p, counts)
                };
                let mut report = serde_json::json!({
                    "model": model.display().to_string(),
                    "test": test.display().to_string(),
                    "tokens": p.tokens,
                    "nll": p.nll,
                    "perplexity": p.perplexity,
                    "tokens_per_s": p.tokens as f64 / p.seconds.max(1e-9),
                    "seconds": p.seconds,
                    "threads": m.threads(),
                });
                for (k, v) in counts {
                    report[k] = v.into();
                }
                if let Some(r) = reference {
                    let r_model = open(&r, threads)?;
                    let d = quill::eval::divergence(&m, &r_model, &texts, &pairs, batch)?;
                    report["reference"] = serde_json::json!({
                        "model": r.display().to_string(),
                        "perplexity": d.reference_perplexity,
                        "kl_mean": d.kl_mean,
                        "kl_max": d.kl_max,
                        "top1_agreement": d.top1_agreement,
                    });
                }
                println!("{report}");
                return Ok(());
            }
            let pairs = quill::eval::read_pairs(&test)?;
            if pairs.is_empty() {
                return Err(no_pairs().into());
            }
            let options = decode.options(&m)?;
            let (scores, hyps) =
                quill::eval::evaluate_with(&m, &pairs, &options, batch, rouge_stemmer)?;
            if let Some(out) = output {
                std::fs::write(out, hyps.join("\n") + "\n")?;
            }
            let b = scores.detail.expect("evaluate fills the BLEU detail");
            if scores.truncated > 0 {
                eprintln!(
                    "note: {} of {} sources are longer than the model takes: each was cut to its \
                     first {} tokens",
                    scores.truncated, scores.sentences, scores.max_input_len
                );
            }
            println!(
                "{}",
                serde_json::json!({
                    "model": model.display().to_string(),
                    "test": test.display().to_string(),
                    "sentences": scores.sentences,
                    "truncated": scores.truncated,
                    "bleu": scores.bleu,
                    "bleu_detail": {
                        "precisions": b.precisions, "bp": b.bp, "ratio": b.ratio,
                        "sys_len": b.sys_len, "ref_len": b.ref_len,
                    },
                    "chrf": scores.chrf,
                    "rouge1": scores.rouge.rouge1,
                    "rouge2": scores.rouge.rouge2,
                    "rougeL": scores.rouge.rouge_l,
                    "rouge_stemmer": scores.rouge_stemmer,
                    "tokens_per_s": scores.tokens_per_s,
                    "seconds": scores.seconds,
                    "threads": m.threads(),
                })
            );
        }
        Command::Convert {
            hf_dir,
            output,
            quantize,
        } => {
            let options = ConvertOptions {
                quantize: quantize.as_deref().map(Target::parse).transpose()?,
            };
            let mut last = 0;
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let report = convert_hf(&hf_dir, &output, &options, &mut |done, total| {
                let pct = done * 100 / total.max(1);
                if tty && (pct != last || done == total) {
                    last = pct;
                    eprint!("\rconverting: {done}/{total} tensors ({pct}%)");
                }
            })?;
            if tty {
                eprintln!();
            }
            let worst = report
                .quantization
                .iter()
                .map(|r| r.rel_rms)
                .fold(0f32, f32::max);
            let f = QuillFile::open(&output)?;
            println!(
                "{} ({}) -> {}: {} tensors, {} bytes{}",
                hf_dir.display(),
                report.model_type,
                output.display(),
                report.tensors,
                f.file_len(),
                if report.quantization.is_empty() {
                    String::new()
                } else {
                    format!(", worst relative RMS error {:.3}%", worst * 100.0)
                }
            );
        }
        Command::Bench {
            model,
            input_len,
            new_tokens,
            batch,
            threads,
            runs,
            beams,
        } => {
            let r = bench::run(&model, input_len, new_tokens, batch, threads, runs, beams)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Command::Info { json } => {
            let chosen = quill::kernels::kernels().isa;
            let available: Vec<&str> = Isa::available().iter().map(|i| i.name()).collect();
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let forced = std::env::var("QUILL_FORCE_ISA").ok();
            if json {
                let v = serde_json::json!({
                    "version": quill::VERSION,
                    "abi": quill::ffi::QUILL_ABI_VERSION,
                    "format": quill::format::FORMAT_MAJOR,
                    "isa": chosen.name(),
                    "isa_available": available,
                    "isa_forced": forced,
                    "arch": std::env::consts::ARCH,
                    "default_threads": cores,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "quill {} (C ABI {}, reads .quill format {})",
                    quill::VERSION,
                    quill::ffi::QUILL_ABI_VERSION,
                    quill::format::FORMAT_MAJOR
                );
                println!(
                    "kernels   {} on {}{}",
                    chosen.name(),
                    std::env::consts::ARCH,
                    forced
                        .map(|f| format!(" (QUILL_FORCE_ISA={f})"))
                        .unwrap_or_default()
                );
                println!("available {}", available.join(", "));
                println!("threads   {cores} by default (one per available core)");
            }
        }
        Command::Inspect {
            file,
            json,
            tensors,
        } => {
            let f = QuillFile::open(&file)?;
            let mut summary = Summary::of(&f);
            if json {
                if !tensors {
                    summary.tensors.clear();
                }
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{summary}");
                if tensors {
                    for t in &summary.tensors {
                        let copied = if t.copied { "  (copied)" } else { "" };
                        println!(
                            "  {:<48} {:<5} {:?} {} B{copied}",
                            t.name, t.kind, t.shape, t.bytes
                        );
                    }
                }
            }
        }
        Command::Quantize {
            input,
            output,
            to,
            json,
        } => {
            let target = Target::parse(&to)?;
            let src = QuillFile::open(&input)?;
            let (writer, reports) = quantize_file(&src, target)?;
            writer.write(&output)?;
            let (mut worst_rel, mut worst_name) = (0f32, String::new());
            for r in &reports {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"tensor": r.name, "from": r.from, "to": r.to,
                            "max_abs": r.max_abs, "rel_rms": r.rel_rms, "note": r.note})
                    );
                } else {
                    let note = r
                        .note
                        .as_deref()
                        .map(|n| format!("  ({n})"))
                        .unwrap_or_default();
                    println!(
                        "{:<48} {:>4} -> {:<4} max_abs {:.3e}  rel_rms {:.3}%{note}",
                        r.name,
                        r.from,
                        r.to,
                        r.max_abs,
                        r.rel_rms * 100.0
                    );
                }
                if r.rel_rms >= worst_rel {
                    (worst_rel, worst_name) = (r.rel_rms, r.name.clone());
                }
            }
            let out = QuillFile::open(&output)?;
            eprintln!(
                "wrote {} ({} bytes, was {}): {} matrices quantized, worst rel_rms {:.3}% ({worst_name})",
                output.display(),
                out.file_len(),
                src.file_len(),
                reports.len(),
                worst_rel * 100.0
            );
        }
    }
    Ok(())
}
