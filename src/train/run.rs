//! A training run: the model, its parameters and optimizer, the data loader, the steps, and the
//! files it writes (checkpoints that resume exactly, and `.quill` exports).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::data::{Cursor, Holdout, Loader, LoaderOptions, Task};
use super::layers::{Ctx, LossSums};
use super::lstm::Lstm;
use super::model::{Batch, Transformer};
use super::net::{Net, NetActs};
use super::optim::{AdamW, AdamWOptions, Schedule, clip_grad_norm};
use crate::convert::quantize::{Target, quantize_file};
use crate::error::{Error, Result};
use crate::format::{QuillFile, Writer, keys};
use crate::kernels::{Pool, kernels};
use crate::model::{Model, OpenOptions};
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;

/// Metadata key of a checkpoint's training state (JSON of [`State`]).
pub const STATE_KEY: &str = "quill.train";
const ADAM_M: &str = "train.adam.m";
const ADAM_V: &str = "train.adam.v";

/// Hyperparameters of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Options {
    pub seed: u64,
    /// Peak learning rate.
    pub lr: f64,
    pub schedule: Schedule,
    pub adam: AdamWOptions,
    /// Largest global gradient norm (0: no clipping).
    pub clip: f64,
    pub label_smoothing: f32,
    pub dropout: f32,
    /// Batches whose gradients are summed before each update.
    pub accum: usize,
    /// Tokens per batch (padded, both sides).
    pub budget: usize,
    /// Longest sentence kept, in tokens.
    pub max_len: usize,
    /// Lines read and shuffled together.
    pub chunk_lines: usize,
    /// Dev and test held out of the training file (when no separate files are given).
    pub holdout: Option<Holdout>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 1,
            lr: 1e-3,
            schedule: Schedule::InverseSqrt { warmup: 1000 },
            adam: AdamWOptions::default(),
            clip: 1.0,
            label_smoothing: 0.1,
            dropout: 0.1,
            accum: 1,
            budget: 4096,
            max_len: 128,
            chunk_lines: 1_000_000,
            holdout: None,
        }
    }
}

/// What a checkpoint stores besides the weights and the optimizer moments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Updates done.
    pub step: u64,
    /// The next training batch.
    pub cursor: Cursor,
    pub task: Task,
    pub train_path: PathBuf,
    pub options: Options,
    /// Real tokens (source + target) trained on so far.
    pub tokens: u64,
    /// Seconds spent in training steps so far.
    pub seconds: f64,
}

/// What one update did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    pub step: u64,
    pub loss: LossSums,
    /// Real tokens (source + target) of the update.
    pub tokens: usize,
    pub grad_norm: f64,
    pub lr: f64,
    pub epoch: u64,
}

/// A training run in progress.
pub struct Trainer {
    pub model: Net,
    pub params: Vec<f32>,
    pub grads: Vec<f32>,
    pub opt: AdamW,
    pub tokenizer_json: String,
    pub tokenizer: Tokenizer,
    pub state: State,
    /// `quill.generation` of exported models (decoding defaults).
    pub generation: Option<String>,
    /// `quill.chat_template` of exported models (a chat model's template and its tokens).
    pub chat_template: Option<String>,
    pool: Pool,
    acts: NetActs,
    loader: Loader,
}

impl Trainer {
    /// A run starting at `params` (fresh or loaded) over the corpus at `state.train_path`,
    /// positioned at `state.cursor`.
    pub fn new(
        model: impl Into<Net>,
        params: Vec<f32>,
        tokenizer_json: String,
        state: State,
        threads: usize,
    ) -> Result<Trainer> {
        let mut model: Net = model.into();
        if params.len() != model.len() {
            return Err(Error::InvalidArgument(format!(
                "{} parameters for a model of {}",
                params.len(),
                model.len()
            )));
        }
        let tokenizer = Tokenizer::from_json(&tokenizer_json)?;
        let pool = Pool::new(threads)?;
        model.set_dropout(state.options.dropout);
        let lopts = LoaderOptions {
            task: state.task,
            budget: state.options.budget,
            max_len: state.options.max_len,
            chunk_lines: state.options.chunk_lines,
            holdout: state.options.holdout,
            seed: state.options.seed,
        };
        let loader = Loader::new(&state.train_path, lopts, state.cursor, &tokenizer, &pool)?;
        let opt = AdamW::new(state.options.adam, model.params(), model.len());
        Ok(Trainer {
            grads: vec![0.0; model.len()],
            model,
            params,
            opt,
            tokenizer_json,
            tokenizer,
            state,
            generation: None,
            chat_template: None,
            pool,
            acts: NetActs::default(),
            loader,
        })
    }

    /// Resumes the run a checkpoint saved: weights, optimizer moments, data position, options.
    /// `train_path` overrides the corpus path stored in it (the file must be the same).
    pub fn resume(path: &Path, train_path: Option<&Path>, threads: usize) -> Result<Trainer> {
        let file = QuillFile::read(path)?;
        let state_json = file.metadata().get(STATE_KEY).ok_or_else(|| {
            Error::bad_meta(
                STATE_KEY,
                "missing: this is a model, not a training checkpoint",
            )
        })?;
        let mut state: State = serde_json::from_str(state_json)
            .map_err(|e| Error::bad_meta(STATE_KEY, e.to_string()))?;
        if let Some(p) = train_path {
            state.train_path = p.to_path_buf();
        }
        let (model, params, tokenizer_json, generation) = load_model(&file)?;
        let mut t = Trainer::new(model, params, tokenizer_json, state, threads)?;
        t.generation = generation;
        t.chat_template = file.metadata().get(keys::CHAT_TEMPLATE).cloned();
        t.opt.m = file.tensor(ADAM_M)?.to_f32_vec()?;
        t.opt.v = file.tensor(ADAM_V)?.to_f32_vec()?;
        if t.opt.m.len() != t.model.len() || t.opt.v.len() != t.model.len() {
            return Err(Error::BadTensor {
                tensor: ADAM_M.into(),
                reason: "optimizer state does not match the model".into(),
            });
        }
        t.opt.t = t.state.step;
        Ok(t)
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Passes over the training corpus completed.
    pub fn epochs_done(&self) -> u64 {
        self.loader.epochs_done()
    }

    /// One update: `accum` batches forward and backward, gradient clipping, AdamW.
    pub fn step(&mut self) -> Result<StepReport> {
        let t0 = std::time::Instant::now();
        let accum = self.state.options.accum.max(1);
        let mut batches = Vec::with_capacity(accum);
        for _ in 0..accum {
            batches.push(self.loader.next_batch(&self.tokenizer, &self.pool)?);
        }
        // Normalize by the target tokens of the whole update: accumulation then equals one
        // large batch.
        let total: usize = batches.iter().map(Batch::target_tokens).sum();
        let scale = 1.0 / total.max(1) as f32;
        self.grads.fill(0.0);
        let step = self.state.step + 1;
        let mut rng = Rng::new(self.state.options.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut sums = LossSums::default();
        let mut tokens = 0;
        let (pool, kern) = (&self.pool, kernels());
        let ctx = Ctx { pool, kern };
        for b in &batches {
            let s = self.model.train_step(
                ctx,
                &self.params,
                &mut self.grads,
                b,
                &mut self.acts,
                self.state.options.label_smoothing,
                scale,
                Some(&mut rng),
            );
            sums.loss += s.loss;
            sums.nll += s.nll;
            sums.tokens += s.tokens;
            tokens += b.tokens();
        }
        let grad_norm = clip_grad_norm(&mut self.grads, self.state.options.clip);
        let lr = self.state.options.schedule.lr(self.state.options.lr, step);
        self.opt.step(ctx, &mut self.params, &self.grads, lr);
        self.state.step = step;
        self.state.cursor = self.loader.cursor();
        self.state.tokens += tokens as u64;
        self.state.seconds += t0.elapsed().as_secs_f64();
        if !sums.loss.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "the loss diverged at step {step} (lr {lr:.3e}): lower --lr or raise --warmup"
            )));
        }
        Ok(StepReport {
            step,
            loss: sums,
            tokens,
            grad_norm,
            lr,
            epoch: self.state.cursor.epoch,
        })
    }

    /// The loss over `batches` without updating anything.
    pub fn loss(&mut self, batches: &[Batch]) -> LossSums {
        let ctx = Ctx {
            pool: &self.pool,
            kern: kernels(),
        };
        let mut sums = LossSums::default();
        for b in batches {
            let s = self.model.eval_loss(
                ctx,
                &self.params,
                b,
                &mut self.acts,
                self.state.options.label_smoothing,
            );
            sums.loss += s.loss;
            sums.nll += s.nll;
            sums.tokens += s.tokens;
        }
        sums
    }

    /// The model as a `.quill` writer (f32 weights, config, tokenizer, decoding defaults).
    pub fn writer(&self) -> Result<Writer<'_>> {
        let m = &self.model;
        let mut w = Writer::quill(m.arch(), m.config())?;
        w.set_metadata(
            keys::PRODUCER,
            format!(
                "quill {} quill-train (step {})",
                crate::VERSION,
                self.state.step
            ),
        );
        if let Some(g) = &self.generation {
            w.set_metadata(keys::GENERATION, g.clone());
        }
        if let Some(t) = &self.chat_template {
            w.set_metadata(keys::CHAT_TEMPLATE, t.clone());
        }
        for p in m.params() {
            w.add(&p.name, &p.shape, &self.params[p.range()])?;
        }
        w.set_tokenizer(&self.tokenizer_json)?;
        Ok(w)
    }

    /// The current model, opened by the runtime from memory (for evaluation by decoding).
    pub fn runtime_model(&self) -> Result<Model> {
        let bytes = self.writer()?.to_bytes();
        let file = QuillFile::from_bytes(&bytes)?;
        Model::from_file(
            file,
            &OpenOptions {
                threads: self.pool.threads(),
                ..OpenOptions::default()
            },
        )
    }

    /// Saves a checkpoint: the model (a valid `.quill` file the runtime can run), the optimizer
    /// moments and the training state. Written atomically.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut w = self.writer()?;
        w.add(ADAM_M, &[self.model.len()], &self.opt.m)?;
        w.add(ADAM_V, &[self.model.len()], &self.opt.v)?;
        let state = serde_json::to_string(&self.state).expect("state serializes");
        w.set_metadata(STATE_KEY, state);
        w.write(path)
    }

    /// Writes the model for shipping: f32, or quantized to `target` (int8, int4, f16, bf16).
    pub fn export(&self, path: &Path, target: Option<Target>) -> Result<()> {
        let w = self.writer()?;
        match target {
            None => w.write(path),
            Some(t) => {
                let bytes = w.to_bytes();
                let file = QuillFile::from_bytes(&bytes)?;
                let (q, _) = quantize_file(&file, t)?;
                q.write(path)
            }
        }
    }
}

/// Reads a model for training from a `.quill` file: its layout, f32 parameters (from f32, f16
/// or bf16 tensors), tokenizer and decoding defaults.
pub fn load_model(file: &QuillFile) -> Result<(Net, Vec<f32>, String, Option<String>)> {
    let meta = file.require_quill()?;
    let has = |n: &str| file.contains(n);
    let shape_of = |n: &str| file.tensor(n).ok().map(|t| t.shape.to_vec());
    let model: Net = match meta.arch {
        crate::format::Arch::LstmSeq2Seq => Lstm::build(&meta.config, &has)?.into(),
        arch => Transformer::build(arch, &meta.config, &has, &shape_of)?.into(),
    };
    // A weight the trainer has no parameter for (Qwen3's q/k norms, say) would be dropped from
    // every model it writes: refuse instead, naming it.
    let known: std::collections::HashSet<&str> =
        model.params().iter().map(|p| p.name.as_str()).collect();
    if let Some(t) = file.tensors().find(|t| {
        !crate::format::names::is_quill_data(t.name)
            && !known.contains(t.name)
            && ![ADAM_M, ADAM_V].contains(&t.name)
    }) {
        return Err(Error::Unsupported(format!(
            "tensor `{}`: the trainer has no such weight, so this model cannot be trained or \
             fine-tuned here (it would be dropped)",
            t.name
        )));
    }
    let mut params = vec![0f32; model.len()];
    for p in model.params() {
        let t = file.tensor(&p.name)?;
        if !t.dtype.is_float() {
            return Err(Error::Unsupported(format!(
                "tensor `{}` is {}: training needs float weights (f32, f16 or bf16); start from the \
                 f32 export or the converted f32 model, not a quantized one",
                p.name,
                t.dtype.as_str()
            )));
        }
        if t.shape != p.shape.as_slice() {
            return Err(Error::WrongTensorType {
                tensor: p.name.clone(),
                expected: format!("{:?}", p.shape),
                found: format!("{:?}", t.shape),
            });
        }
        params[p.range()].copy_from_slice(&t.to_f32_vec()?);
    }
    let tokenizer = file
        .tokenizer_json()
        .ok_or_else(|| {
            Error::MissingTensor("quill.tokenizer (training needs the model's tokenizer)".into())
        })?
        .to_string();
    if file.target_tokenizer_json().is_some() {
        return Err(Error::Unsupported(
            "models with separate source and target tokenizers cannot be fine-tuned yet".into(),
        ));
    }
    let generation = file.metadata().get(keys::GENERATION).cloned();
    Ok((model, params, tokenizer, generation))
}
