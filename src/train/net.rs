//! The trainable networks behind one interface: a Transformer ([`super::model`]) or an LSTM
//! encoder-decoder ([`super::lstm`]).

use super::layers::{self as ly, Ctx, LossSums};
use super::lstm::{Lstm, LstmActs};
use super::model::{Acts, Batch, Param, Transformer};
use crate::format::{Arch, Config};
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub enum Net {
    Transformer(Box<Transformer>),
    Lstm(Box<Lstm>),
}

impl From<Transformer> for Net {
    fn from(t: Transformer) -> Net {
        Net::Transformer(Box::new(t))
    }
}

impl From<Lstm> for Net {
    fn from(l: Lstm) -> Net {
        Net::Lstm(Box::new(l))
    }
}

/// The activations of either network, reused from batch to batch.
#[derive(Default)]
pub struct NetActs {
    pub transformer: Acts,
    pub lstm: LstmActs,
}

impl NetActs {
    /// The logits of the last forward pass, `[B·T, V]`.
    pub fn logits(&self, net: &Net) -> &[f32] {
        match net {
            Net::Transformer(_) => &self.transformer.logits,
            Net::Lstm(_) => &self.lstm.logits,
        }
    }
}

impl Net {
    pub fn arch(&self) -> Arch {
        match self {
            Net::Transformer(t) => t.arch,
            Net::Lstm(_) => Arch::LstmSeq2Seq,
        }
    }

    pub fn config(&self) -> &Config {
        match self {
            Net::Transformer(t) => &t.config,
            Net::Lstm(l) => &l.config,
        }
    }

    pub fn params(&self) -> &[Param] {
        match self {
            Net::Transformer(t) => &t.params,
            Net::Lstm(l) => &l.params,
        }
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        match self {
            Net::Transformer(t) => t.len,
            Net::Lstm(l) => l.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn set_dropout(&mut self, p: f32) {
        match self {
            Net::Transformer(t) => t.dropout = p,
            Net::Lstm(l) => l.dropout = p,
        }
    }

    pub fn init(&self, seed: u64) -> Vec<f32> {
        match self {
            Net::Transformer(t) => t.init(seed),
            Net::Lstm(l) => l.init(seed),
        }
    }

    /// The longest sequence the positions cover (unlimited for the LSTM).
    pub fn max_len(&self) -> usize {
        match self {
            Net::Transformer(t) => t.max_len(),
            Net::Lstm(_) => usize::MAX,
        }
    }

    /// The forward pass without dropout: the logits are in `acts`.
    pub fn forward(&self, ctx: Ctx, p: &[f32], batch: &Batch, acts: &mut NetActs) {
        self.forward_with(ctx, p, batch, acts, None);
    }

    /// The forward pass; returns the logits `[B·T, V]` (kept in `acts`). `rng`: dropout (`None`:
    /// no dropout).
    fn forward_with<'a>(
        &self,
        ctx: Ctx,
        p: &[f32],
        batch: &Batch,
        acts: &'a mut NetActs,
        rng: Option<&mut Rng>,
    ) -> &'a mut Vec<f32> {
        match self {
            Net::Transformer(t) => {
                t.forward(ctx, p, batch, &mut acts.transformer, rng);
                &mut acts.transformer.logits
            }
            Net::Lstm(l) => {
                l.forward(ctx, p, batch, &mut acts.lstm, rng);
                &mut acts.lstm.logits
            }
        }
    }

    /// The loss of `batch` without gradients.
    pub fn eval_loss(
        &self,
        ctx: Ctx,
        p: &[f32],
        batch: &Batch,
        acts: &mut NetActs,
        smoothing: f32,
    ) -> LossSums {
        let logits = self.forward_with(ctx, p, batch, acts, None);
        let v = self.config().vocab_size;
        ly::cross_entropy(ctx, logits, v, &batch.labels, smoothing, None)
    }

    /// Forward, loss and backward of `batch`: adds `grad_scale · ∂Σloss/∂params` into `g`.
    /// `rng`: dropout (`None`: no dropout).
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &self,
        ctx: Ctx,
        p: &[f32],
        g: &mut [f32],
        batch: &Batch,
        acts: &mut NetActs,
        smoothing: f32,
        grad_scale: f32,
        rng: Option<&mut Rng>,
    ) -> LossSums {
        let logits = self.forward_with(ctx, p, batch, acts, rng);
        let v = self.config().vocab_size;
        // The logits become their gradients.
        let sums = ly::cross_entropy(ctx, logits, v, &batch.labels, smoothing, Some(grad_scale));
        match self {
            Net::Transformer(t) => t.backward(ctx, p, g, batch, &mut acts.transformer),
            Net::Lstm(l) => l.backward(ctx, p, g, batch, &mut acts.lstm),
        }
        sums
    }
}
