//! The run's metrics: `metrics.jsonl`, the curves kept for the chart, dev evaluations.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use indicatif::ProgressBar;
use quill::decode::{GenerateOptions, Strategy};
use quill::eval;
use quill::train::plot::{Chart, Series, write_png};
use quill::train::run::Trainer;

use super::Res;
use super::setup::DevSet;

pub(crate) struct Log {
    pub(crate) file: File,
    pub(crate) train: Vec<(f64, f64)>,
    pub(crate) dev: Vec<(f64, f64)>,
    pub(crate) bleu: Vec<(f64, f64)>,
    pub(crate) chrf: Vec<(f64, f64)>,
}

impl Log {
    pub(crate) fn write(&mut self, v: serde_json::Value) -> Res<()> {
        writeln!(self.file, "{v}")?;
        Ok(())
    }

    /// Appends to `metrics.jsonl` in `out`, and takes up the curves an earlier session of this
    /// run wrote, up to update `up_to` (a resumed run).
    pub(crate) fn open(out: &Path, up_to: u64) -> Res<Log> {
        let mut log = Log {
            file: File::options()
                .create(true)
                .append(true)
                .open(out.join("metrics.jsonl"))?,
            train: Vec::new(),
            dev: Vec::new(),
            bleu: Vec::new(),
            chrf: Vec::new(),
        };
        // Curves of earlier sessions of this run (resume).
        if let Ok(text) = std::fs::read_to_string(out.join("metrics.jsonl")) {
            for v in text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            {
                let step = v["step"].as_f64().unwrap_or(0.0);
                if step > up_to as f64 {
                    continue;
                }
                match v["kind"].as_str() {
                    Some("train") => log
                        .train
                        .push((step, v["loss"].as_f64().unwrap_or(f64::NAN))),
                    Some("dev") => {
                        log.dev.push((step, v["loss"].as_f64().unwrap_or(f64::NAN)));
                        if let Some(b) = v["bleu"].as_f64() {
                            log.bleu.push((step, b));
                            log.chrf
                                .push((step, v["chrf"].as_f64().unwrap_or(f64::NAN)));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(log)
    }
}

pub(crate) fn evaluate(
    trainer: &mut Trainer,
    dev: &DevSet,
    bar: &ProgressBar,
    log: &mut Log,
) -> Res<()> {
    if dev.batches.is_empty() {
        return Ok(());
    }
    let (pairs, sentences) = (&dev.pairs, dev.sentences);
    let l = trainer.loss(&dev.batches);
    let loss = l.loss / l.tokens.max(1) as f64;
    let ppl = (l.nll / l.tokens.max(1) as f64).exp();
    let step = trainer.state.step;
    let mut entry = serde_json::json!({"kind": "dev", "step": step, "loss": loss, "ppl": ppl});
    let mut line = format!("step {step}: dev loss {loss:.3}, ppl {ppl:.2}");
    log.dev.push((step as f64, loss));
    if sentences > 0 && !pairs.is_empty() {
        let model = trainer.runtime_model()?;
        let mut o = GenerateOptions::model_defaults(&model)?;
        o.strategy = Strategy::Greedy;
        let subset = &pairs[..sentences.min(pairs.len())];
        let (scores, hyps) = eval::evaluate(&model, subset, &o, 32)?;
        line += &format!(
            ", BLEU {:.2}, chrF {:.2} (greedy, {} sentences)",
            scores.bleu,
            scores.chrf,
            subset.len()
        );
        entry["bleu"] = scores.bleu.into();
        entry["chrf"] = scores.chrf.into();
        log.bleu.push((step as f64, scores.bleu));
        log.chrf.push((step as f64, scores.chrf));
        for i in 0..3.min(subset.len()) {
            line += &format!(
                "\n  src: {}\n  ref: {}\n  out: {}",
                subset[i].0, subset[i].1, hyps[i]
            );
        }
    }
    bar.suspend(|| eprintln!("{line}"));
    log.write(entry)
}

/// The training curves; `smoothing`: the run's label smoothing (what its loss includes).
pub(crate) fn plot(path: &Path, log: &Log, smoothing: f32) -> Res<()> {
    let loss = [
        Series {
            label: "train loss",
            points: &log.train,
        },
        Series {
            label: "dev loss",
            points: &log.dev,
        },
    ];
    let scores = [
        Series {
            label: "dev BLEU",
            points: &log.bleu,
        },
        Series {
            label: "dev chrF",
            points: &log.chrf,
        },
    ];
    let title = if smoothing > 0.0 {
        format!("Loss (cross-entropy per token, label smoothing {smoothing})")
    } else {
        "Loss (cross-entropy per token)".to_string()
    };
    let mut charts = vec![Chart {
        title: &title,
        x_label: "update",
        y_label: "loss",
        series: &loss,
        log_y: false,
    }];
    if !log.bleu.is_empty() {
        charts.push(Chart {
            title: "Dev translation quality (greedy)",
            x_label: "update",
            y_label: "score",
            series: &scores,
            log_y: false,
        });
    }
    write_png(path, &charts, 900, 420)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
