//! `quill`: inspect, quantize (and later run, convert, evaluate, benchmark) models.
//!
//! A thin layer over the library: argument parsing and printing only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quill::QuillFile;
use quill::convert::quantize::{Target, quantize_file};
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

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
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
