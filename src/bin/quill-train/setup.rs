//! Setting up a run: the trainer (new, fine-tuned from `--init`, or resumed) and the held-out
//! splits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use quill::eval;
use quill::format::{Activation, Arch, Config, LstmAttention, Positions, QuillFile, keys};
use quill::tokenizer::Tokenizer;
use quill::train::data::{self, Cursor, Holdout, Split, Task};
use quill::train::lstm::Lstm;
use quill::train::model::{Batch, Structure, Transformer, parse_activation};
use quill::train::net::Net;
use quill::train::run::{Options, State, Trainer, load_model};
use quill::train::tok;

use super::{Args, Res, parse_norm, parse_positions};

/// The trainer of this run: resumed from `--resume`, fine-tuned from `--init`, or a new model
/// (and its tokenizer, trained here unless `--tokenizer-json` gives one).
pub(crate) fn trainer(a: &Args, arch: Arch, seq2seq: bool, opts: &Options) -> Res<Trainer> {
    let template = a.chat_template.as_deref().map(chat_template).transpose()?;
    let mut trainer = if let Some(r) = &a.resume {
        eprintln!("resuming from {}", r.display());
        Trainer::resume(r, Some(&a.train), a.threads)?
    } else {
        let mut init_template = None;
        let (model, params, tokenizer_json, generation) = if let Some(init) = &a.init {
            let file = QuillFile::read(init)?;
            init_template = file.metadata().get(keys::CHAT_TEMPLATE).cloned();
            let (m, p, t, g) = load_model(&file)?;
            if m.arch() != arch {
                return Err(format!(
                    "--init {}: a {} model, but --task {} --arch {}",
                    init.display(),
                    m.arch().as_str(),
                    a.task,
                    a.arch
                )
                .into());
            }
            eprintln!("fine-tuning {} ({} parameters)", init.display(), p.len());
            (m, p, t, g)
        } else {
            let tokenizer_json = match &a.tokenizer_json {
                Some(p) => std::fs::read_to_string(p)?,
                None => {
                    let t0 = Instant::now();
                    let texts =
                        tokenizer_texts(&a.train, seq2seq, a.tokenizer_lines, opts.holdout)?;
                    let kind = tok::Kind::parse(&a.tokenizer)?;
                    let json =
                        tok::train(kind, a.vocab, seq2seq, &a.special_tokens, texts.into_iter())?;
                    eprintln!(
                        "trained a {} tokenizer in {:.1} s",
                        a.tokenizer,
                        t0.elapsed().as_secs_f64()
                    );
                    json
                }
            };
            std::fs::write(a.out.join("tokenizer.json"), &tokenizer_json)?;
            let vocab = Tokenizer::from_json(&tokenizer_json)?.vocab_size();
            let config = new_config(a, arch, vocab)?;
            let structure = Structure {
                bias: !a.no_bias,
                tied_output: !a.untied,
                embed_norm: false,
            };
            let model: Net = match arch {
                Arch::LstmSeq2Seq => Lstm::new(&config, !a.untied)?.into(),
                _ => Transformer::new(arch, &config, structure)?.into(),
            };
            let params = model.init(a.seed);
            // Room for outputs twice the longest training sentence, within the positions.
            let longest = (a.max_len.max(16) * 2).min(model.max_len().saturating_sub(1));
            let generation = if seq2seq {
                serde_json::json!({"num_beams": a.beams, "max_new_tokens": longest})
            } else {
                serde_json::json!({"max_new_tokens": 128})
            };
            (model, params, tokenizer_json, Some(generation.to_string()))
        };
        let task = if seq2seq {
            Task::Seq2Seq {
                start: model.config().decoder_start_id.unwrap_or(tok::BOS),
            }
        } else {
            Task::Lm {
                block: a.max_len.min(model.max_len()),
            }
        };
        let state = State {
            step: 0,
            cursor: Cursor::default(),
            task,
            train_path: a.train.clone(),
            options: opts.clone(),
            tokens: 0,
            seconds: 0.0,
        };
        let mut t = Trainer::new(model, params, tokenizer_json, state, a.threads)?;
        t.generation = generation;
        t.chat_template = init_template;
        t
    };
    if let Some(extra) = &a.generation {
        trainer.generation = Some(merge_generation(trainer.generation.as_deref(), extra)?);
    }
    if template.is_some() {
        trainer.chat_template = template;
    }
    Ok(trainer)
}

/// `quill.chat_template` for the Jinja template in `path`: the trained vocabulary's `<s>` and
/// `</s>` as `bos_token` and `eos_token`; compiled here, so a broken template fails the run
/// before it trains.
fn chat_template(path: &Path) -> Res<String> {
    let template = std::fs::read_to_string(path)
        .map_err(|e| format!("--chat-template {}: {e}", path.display()))?;
    let spec = serde_json::json!({
        "template": template.trim_end_matches('\n'),
        "bos_token": tok::SPECIALS[tok::BOS as usize],
        "eos_token": tok::SPECIALS[tok::EOS as usize],
    });
    #[cfg(feature = "chat")]
    {
        let s: quill::chat::TemplateSpec = serde_json::from_value(spec.clone())?;
        quill::chat::ChatTemplate::new(s)
            .map_err(|e| format!("--chat-template {}: {e}", path.display()))?;
    }
    Ok(spec.to_string())
}

/// `extra` (a JSON object, `--generation`) over `base` (the run's `quill.generation`).
fn merge_generation(base: Option<&str>, extra: &str) -> Res<String> {
    let object = |s: &str, what: &str| -> Res<serde_json::Map<String, serde_json::Value>> {
        match serde_json::from_str(s) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            _ => Err(format!("{what} is not a JSON object: {s}").into()),
        }
    };
    let mut g = match base {
        Some(b) => object(b, "the model's quill.generation")?,
        None => Default::default(),
    };
    g.extend(object(extra, "--generation")?);
    if let Some(t) = g.get("task") {
        let known = ["translation", "summarization", "generation", "dialogue"];
        if !t.as_str().is_some_and(|t| known.contains(&t)) {
            return Err(format!("--generation: task {t} is not one of {known:?}").into());
        }
    }
    Ok(serde_json::Value::Object(g).to_string())
}

/// A held-out split: a file of its own, or the lines of the training file that hash into it.
pub(crate) type Source = (PathBuf, Option<(Holdout, Split)>);

/// Where split `s` comes from: `file`, else the training file's hash split (`--holdout`).
pub(crate) fn split(trainer: &Trainer, file: &Option<PathBuf>, s: Split) -> Option<Source> {
    match (file, trainer.state.options.holdout) {
        (Some(p), _) => Some((p.clone(), None)),
        (None, Some(h)) => Some((trainer.state.train_path.clone(), Some((h, s)))),
        (None, None) => None,
    }
}

/// The dev set, evaluated every `--eval-every` updates.
pub(crate) struct DevSet {
    /// Seq2seq: the pairs, the first `sentences` of which are translated for BLEU and chrF.
    pub pairs: Vec<(String, String)>,
    pub sentences: usize,
    /// Batches for the loss.
    pub batches: Vec<Batch>,
}

/// Reads and batches the dev set from `src`.
pub(crate) fn dev_set(trainer: &Trainer, src: &Option<Source>, sentences: usize) -> Res<DevSet> {
    let (dev_pairs, dev_batches) = match (src, trainer.state.task) {
        (Some((p, h)), Task::Seq2Seq { start }) => {
            let pairs = data::read_pairs(p, *h)?;
            let mut ex = Vec::new();
            for (s, t) in &pairs {
                if let Some(e) =
                    data::encode_pair(&trainer.tokenizer, s, t, trainer.state.options.max_len)?
                {
                    ex.push(e);
                }
            }
            let mut rng = quill::rng::Rng::new(0);
            let batches = data::bucket(&ex, trainer.state.options.budget, start, &mut rng);
            (pairs, batches)
        }
        (Some((p, h)), Task::Lm { block }) => {
            let mut stream = Vec::new();
            for line in data::read_lines(p, *h)? {
                stream.extend(trainer.tokenizer.encode(&line, false)?);
                stream.push(tok::EOS);
            }
            let mut rng = quill::rng::Rng::new(0);
            let per = (trainer.state.options.budget / block).max(1);
            (Vec::new(), data::blocks(&stream, block, per, &mut rng))
        }
        (None, _) => (Vec::new(), Vec::new()),
    };
    if !dev_batches.is_empty() {
        let n: usize = dev_batches.iter().map(|b| b.b).sum();
        eprintln!("dev: {n} sequences");
    }
    Ok(DevSet {
        pairs: dev_pairs,
        sentences,
        batches: dev_batches,
    })
}

/// The config of a new model from the flags (or --config).
fn new_config(a: &Args, arch: Arch, vocab: usize) -> Res<Config> {
    if let Some(p) = &a.config {
        let json = std::fs::read_to_string(p)?;
        let mut c = Config::from_json(&json, arch)?;
        c.vocab_size = vocab;
        return Ok(c);
    }
    let seq2seq = arch != Arch::DecoderOnly;
    let lstm = arch == Arch::LstmSeq2Seq;
    let activation: Activation = parse_activation(&a.activation)?;
    let attention = match a.attention.as_str() {
        "dot" => LstmAttention::Dot,
        "general" => LstmAttention::General,
        "additive" => LstmAttention::Additive,
        x => return Err(format!("--attention {x}: expected dot, general or additive").into()),
    };
    let c = Config {
        vocab_size: vocab,
        d_model: a.d_model,
        encoder_layers: if seq2seq { a.encoder_layers } else { 0 },
        decoder_layers: a.decoder_layers,
        heads: if lstm { 0 } else { a.heads },
        kv_heads: a.kv_heads.filter(|_| !lstm),
        head_dim: None,
        ffn_dim: if lstm { 0 } else { a.ffn },
        decoder_heads: None,
        decoder_ffn_dim: None,
        activation,
        gated_ffn: a.gated,
        norm: parse_norm(&a.norm)?,
        norm_eps: 1e-5,
        pre_norm: !a.post_norm,
        positions: if lstm {
            Positions::None
        } else {
            parse_positions(&a.positions)?
        },
        max_positions: a.max_positions,
        position_offset: 0,
        rope_theta: 10_000.0,
        rope_scaling: None,
        rope_interleaved: false,
        relative_buckets: 0,
        relative_max_distance: 0,
        sliding_window: 0,
        sliding_layers: Vec::new(),
        attn_softcap: 0.0,
        final_softcap: 0.0,
        scale_embedding: !lstm,
        attention_scale: None,
        logits_scale: 1.0,
        bidirectional: lstm && a.bidirectional,
        embed_dim: a.embed_dim.filter(|_| lstm),
        attention: lstm.then_some(attention),
        input_feeding: lstm && !a.no_input_feeding,
        bos_id: Some(tok::BOS),
        eos_ids: vec![tok::EOS],
        pad_id: Some(tok::PAD),
        unk_id: Some(tok::UNK),
        decoder_start_id: seq2seq.then_some(tok::BOS),
    };
    c.validate(arch)?;
    Ok(c)
}

/// Texts the tokenizer is trained on: both sides of the first `lines` pairs, or the first
/// `lines` lines (read as a stream: the corpus may be larger than memory).
fn tokenizer_texts(
    path: &Path,
    seq2seq: bool,
    lines: usize,
    holdout: Option<Holdout>,
) -> Res<Vec<String>> {
    let mut out = Vec::new();
    let mut taken = 0;
    eval::for_each_line(path, |line| {
        if holdout.is_some_and(|h| h.split(line) != Split::Train) {
            return true;
        }
        if seq2seq {
            if let Some((s, t)) = eval::parse_pair(line) {
                out.push(s.to_string());
                out.push(t.to_string());
                taken += 1;
            }
        } else if !line.trim().is_empty() {
            out.push(line.to_string());
            taken += 1;
        }
        taken < lines
    })?;
    Ok(out)
}
