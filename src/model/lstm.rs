//! The LSTM encoder-decoder with attention (`lstm-seq2seq`; names and equations in
//! `docs/lstm.md`): embeddings; an encoder of stacked LSTM layers, optionally bidirectional,
//! whose final states start the decoder layers; a decoder LSTM with Luong input feeding;
//! attention over the encoder outputs (dot, general, additive); `h̃ = tanh(W_out [c; h])`; the
//! output projection.
//!
//! Its "cache" is the recurrent state per slot (`h`, `c` per layer, the fed-back `h̃`) plus the
//! encoder outputs per input, all allocated when the session is created.

use crate::error::{Error, Result};
use crate::format::names::{self, LstmCell};
use crate::format::{Config, LstmAttention, MatrixRef, QuillFile};
use crate::kernels::{ActScratch, Kernels, Pool};

/// One LSTM layer (one direction): `gates = x·W_ihᵀ + h·W_hhᵀ + bias`, gate order i, f, g, o.
pub(crate) struct Cell {
    pub ih: MatrixRef,
    pub hh: MatrixRef,
    /// `b_ih + b_hh`, `[4·units]`.
    pub bias: Vec<f32>,
    pub units: usize,
}

pub(crate) enum Scoring {
    Dot,
    /// `decoder.attn.in`: the query is `W h`.
    General(MatrixRef),
    /// `v · tanh(W_q h + b_q + W_k m)`.
    Additive {
        query: MatrixRef,
        query_bias: Option<Vec<f32>>,
        key: MatrixRef,
        v: Vec<f32>,
    },
}

pub(crate) struct LstmWeights {
    pub enc_embed: MatrixRef,
    pub dec_embed: MatrixRef,
    /// Per encoder layer: forward cell, backward cell (bidirectional).
    pub encoder: Vec<(Cell, Option<Cell>)>,
    pub decoder: Vec<Cell>,
    pub scoring: Scoring,
    /// `[H, 2H]` over `[context; h]`.
    pub attn_out: MatrixRef,
    pub lm_head: MatrixRef,
    pub lm_bias: Option<Vec<f32>>,
}

use super::shaped_matrix as matrix;

fn vector(file: &QuillFile, name: &str, len: usize) -> Result<Vec<f32>> {
    let t = file.tensor(name)?;
    if t.numel() != len || t.shape.len() > 2 {
        return Err(Error::WrongTensorType {
            tensor: name.into(),
            expected: format!("a vector of {len}"),
            found: format!("shape {:?}", t.shape),
        });
    }
    t.to_f32_vec()
}

fn cell(file: &QuillFile, p: &LstmCell, units: usize, inp: usize) -> Result<Cell> {
    Ok(Cell {
        ih: matrix(file, &p.ih(), 4 * units, inp)?,
        hh: matrix(file, &p.hh(), 4 * units, units)?,
        bias: vector(file, &p.bias(), 4 * units)?,
        units,
    })
}

/// Gathers and checks the weights of an `lstm-seq2seq` model.
pub(crate) fn load(file: &QuillFile, c: &Config) -> Result<LstmWeights> {
    let (v, e, h) = (c.vocab_size, c.embed_dim(), c.d_model);
    let embed = |stack: names::Stack| -> Result<MatrixRef> {
        let own = stack.embed();
        if file.contains(&own) {
            matrix(file, &own, v, e)
        } else {
            matrix(file, names::EMBED, v, e)
        }
    };
    let (enc_embed, dec_embed) = (embed(names::ENCODER)?, embed(names::DECODER)?);
    let dir_units = if c.bidirectional { h / 2 } else { h };
    let mut encoder = Vec::with_capacity(c.encoder_layers);
    for l in 0..c.encoder_layers {
        let inp = if l == 0 { e } else { h };
        let fwd = cell(file, &LstmCell::encoder(l, false), dir_units, inp)?;
        let bwd = if c.bidirectional {
            Some(cell(file, &LstmCell::encoder(l, true), dir_units, inp)?)
        } else {
            None
        };
        encoder.push((fwd, bwd));
    }
    let mut decoder = Vec::with_capacity(c.decoder_layers);
    for l in 0..c.decoder_layers {
        let inp = match l {
            0 if c.input_feeding => e + h,
            0 => e,
            _ => h,
        };
        decoder.push(cell(file, &LstmCell::decoder(l), h, inp)?);
    }
    let scoring = match c.attention.expect("validated") {
        LstmAttention::Dot => Scoring::Dot,
        LstmAttention::General => Scoring::General(matrix(file, names::LSTM_ATTN_IN, h, h)?),
        LstmAttention::Additive => {
            let query_bias = names::bias(names::LSTM_ATTN_QUERY);
            Scoring::Additive {
                query: matrix(file, &names::weight(names::LSTM_ATTN_QUERY), h, h)?,
                query_bias: if file.contains(&query_bias) {
                    Some(vector(file, &query_bias, h)?)
                } else {
                    None
                },
                key: matrix(file, names::LSTM_ATTN_KEY, h, h)?,
                v: vector(file, names::LSTM_ATTN_V, h)?,
            }
        }
    };
    let lm_head = if file.contains(names::LM_HEAD) {
        matrix(file, names::LM_HEAD, v, h)?
    } else if e == h {
        dec_embed
    } else {
        return Err(Error::MissingTensor(format!(
            "lm_head.weight (the output projection can only be the embedding table when \
             embed_dim = d_model; here {e} ≠ {h})"
        )));
    };
    let lm_bias = if file.contains(names::LM_HEAD_BIAS) {
        Some(vector(file, names::LM_HEAD_BIAS, v)?)
    } else {
        None
    };
    Ok(LstmWeights {
        enc_embed,
        dec_embed,
        encoder,
        decoder,
        scoring,
        attn_out: matrix(file, names::LSTM_ATTN_OUT, h, 2 * h)?,
        lm_head,
        lm_bias,
    })
}

/// The recurrent state of every slot and the encoder outputs of every input, plus scratch.
pub(crate) struct LstmState {
    h_units: usize,
    slots: usize,
    max_in: usize,
    /// `[layers][slots][H]`
    h: Vec<f32>,
    c: Vec<f32>,
    /// The attentional state fed back (input feeding), `[slots][H]`.
    feed: Vec<f32>,
    /// Encoder outputs `[max_batch][max_in][H]`, and their additive-attention keys.
    mem: Vec<f32>,
    keys: Vec<f32>,
    // Scratch.
    x: Vec<f32>,
    gates: Vec<f32>,
    gh: Vec<f32>,
    hrows: Vec<f32>,
    q: Vec<f32>,
    cat: Vec<f32>,
    tilde: Vec<f32>,
    scores: Vec<f32>,
    /// Encoder: input projections of a whole sequence, its outputs per direction.
    enc_in: Vec<f32>,
    enc_proj: Vec<f32>,
    enc_out: Vec<f32>,
    pub acts: ActScratch,
}

impl LstmState {
    /// The f32 elements [`LstmState::new`] allocates (its byte scratch aside).
    pub fn floats(c: &Config, slots: usize, max_batch: usize, max_in: usize) -> usize {
        let (h, e, layers) = (c.d_model, c.embed_dim(), c.decoder_layers);
        let width = (e + h).max(2 * h);
        let additive = matches!(c.attention, Some(LstmAttention::Additive));
        2 * layers * slots * h
            + slots * h
            + (1 + additive as usize) * max_batch * max_in * h
            + slots.max(max_in) * width
            + slots * (2 * 4 * h + 5 * h)
            + max_in * (1 + e.max(h) + 4 * h + h)
    }

    pub fn new(c: &Config, slots: usize, max_batch: usize, max_in: usize) -> LstmState {
        let (h, e, layers) = (c.d_model, c.embed_dim(), c.decoder_layers);
        let width = (e + h).max(2 * h);
        let z = |n: usize| vec![0f32; n];
        LstmState {
            h_units: h,
            slots,
            max_in,
            h: z(layers * slots * h),
            c: z(layers * slots * h),
            feed: z(slots * h),
            mem: z(max_batch * max_in * h),
            keys: z(if matches!(c.attention, Some(LstmAttention::Additive)) {
                max_batch * max_in * h
            } else {
                0
            }),
            x: z(slots.max(max_in) * width),
            gates: z(slots * 4 * h),
            gh: z(slots * 4 * h),
            hrows: z(slots * h),
            q: z(slots * h),
            cat: z(slots * 2 * h),
            tilde: z(slots * h),
            scores: z(max_in),
            enc_in: z(max_in * e.max(h)),
            enc_proj: z(max_in * 4 * h),
            enc_out: z(max_in * h),
            acts: ActScratch::with_capacity(slots.max(max_in), width.max(4 * h)),
        }
    }

    /// Makes slot `to` continue from slot `from`'s state.
    pub fn copy_slot(&mut self, layers: usize, from: usize, to: usize) {
        let h = self.h_units;
        for l in 0..layers {
            let (a, b) = ((l * self.slots + from) * h, (l * self.slots + to) * h);
            self.h.copy_within(a..a + h, b);
            self.c.copy_within(a..a + h, b);
        }
        self.feed.copy_within(from * h..(from + 1) * h, to * h);
    }
}

/// The pieces of the model an LSTM pass needs.
pub(crate) struct Ctx<'a> {
    pub file: &'a QuillFile,
    pub kern: &'static Kernels,
    pub pool: &'a Pool,
    pub config: &'a Config,
    pub w: &'a LstmWeights,
}

impl<'a> Ctx<'a> {
    fn of(m: &'a super::ModelInner, w: &'a LstmWeights) -> Ctx<'a> {
        Ctx {
            file: &m.file,
            kern: m.kernels,
            pool: &m.pool,
            config: &m.config,
            w,
        }
    }
}

impl Ctx<'_> {
    /// `y[rows, w.rows] = x[rows, w.cols] · Wᵀ`.
    fn linear(&self, w: MatrixRef, x: &[f32], rows: usize, y: &mut [f32], acts: &mut ActScratch) {
        let m = self.file.resolve(w);
        let y = &mut y[..rows * m.rows];
        self.kern
            .linear(self.pool, &x[..rows * m.cols], rows, &m, y, acts);
    }

    /// Runs one direction of one encoder layer over `n` steps of input `x[n, in]`, writing
    /// `out[t][off..off + units]` (row stride `stride`) and leaving the final `h` and `c`.
    #[allow(clippy::too_many_arguments)]
    fn run_direction(
        &self,
        cell: &Cell,
        x: &[f32],
        n: usize,
        reverse: bool,
        st: &mut LstmState,
        out_off: usize,
        stride: usize,
        h_fin: &mut [f32],
        c_fin: &mut [f32],
    ) {
        let u = cell.units;
        let mut proj = std::mem::take(&mut st.enc_proj);
        self.linear(cell.ih, x, n, &mut proj, &mut st.acts);
        h_fin[..u].fill(0.0);
        c_fin[..u].fill(0.0);
        let mut gh = std::mem::take(&mut st.gh);
        for step in 0..n {
            let t = if reverse { n - 1 - step } else { step };
            let g = &mut proj[t * 4 * u..(t + 1) * 4 * u];
            self.linear(cell.hh, &h_fin[..u], 1, &mut gh, &mut st.acts);
            (self.kern.add)(g, &gh[..4 * u]);
            (self.kern.add)(g, &cell.bias);
            (self.kern.lstm_cell)(g, &mut c_fin[..u], &mut h_fin[..u]);
            st.enc_out[t * stride + out_off..t * stride + out_off + u].copy_from_slice(&h_fin[..u]);
        }
        st.gh = gh;
        st.enc_proj = proj;
    }

    /// Encodes input `input` (`ids`), storing its outputs and starting `slots` from its final
    /// states. `cancelled` is checked between layers.
    pub fn encode(
        &self,
        st: &mut LstmState,
        input: usize,
        ids: &[u32],
        slots: &[usize],
        cancelled: &dyn Fn() -> bool,
    ) -> bool {
        let c = self.config;
        let (h, e) = (c.d_model, c.embed_dim());
        let n = ids.len();
        let embed = self.file.resolve(self.w.enc_embed);
        let mut x = std::mem::take(&mut st.enc_in);
        for (t, &id) in ids.iter().enumerate() {
            embed.dequantize_row(id as usize, &mut x[t * e..(t + 1) * e]);
        }
        let mut width = e;
        let mut hf = vec![0f32; h];
        let mut cf = vec![0f32; h];
        for (l, (fwd, bwd)) in self.w.encoder.iter().enumerate() {
            if l > 0 && cancelled() {
                st.enc_in = x;
                return false;
            }
            let u = fwd.units;
            self.run_direction(fwd, &x[..n * width], n, false, st, 0, h, &mut hf, &mut cf);
            if let Some(b) = bwd {
                let (mut hb, mut cb) = (vec![0f32; u], vec![0f32; u]);
                self.run_direction(b, &x[..n * width], n, true, st, u, h, &mut hb, &mut cb);
                hf[u..2 * u].copy_from_slice(&hb);
                cf[u..2 * u].copy_from_slice(&cb);
            }
            // Bridge: this layer's final state starts the decoder layer of the same depth.
            for &slot in slots {
                let at = (l * st.slots + slot) * h;
                st.h[at..at + h].copy_from_slice(&hf);
                st.c[at..at + h].copy_from_slice(&cf);
            }
            // The outputs feed the next layer.
            x[..n * h].copy_from_slice(&st.enc_out[..n * h]);
            width = h;
        }
        st.enc_in = x;
        let mem = &mut st.mem[input * st.max_in * h..][..n * h];
        mem.copy_from_slice(&st.enc_out[..n * h]);
        if let Scoring::Additive { key, .. } = &self.w.scoring {
            let mut keys = std::mem::take(&mut st.keys);
            let dst = &mut keys[input * st.max_in * h..][..n * h];
            self.linear(
                *key,
                &st.mem[input * st.max_in * h..][..n * h],
                n,
                dst,
                &mut st.acts,
            );
            st.keys = keys;
        }
        for &slot in slots {
            st.feed[slot * h..(slot + 1) * h].fill(0.0);
        }
        true
    }

    /// One decoder step: `tokens[r]` enters slot `slots[r]` (reading input `inputs[r]`, whose
    /// encoder output has `src_len[r]` rows); writes `logits[r]`. With `align`, each slot's
    /// attention weights go to `align[slot][..src_len]` (row stride `max_in`).
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        st: &mut LstmState,
        slots: &[usize],
        tokens: &[u32],
        inputs: &[usize],
        src_len: &[usize],
        logits: &mut [f32],
        mut align: Option<&mut [f32]>,
    ) {
        let c = self.config;
        let (h, e, v) = (c.d_model, c.embed_dim(), c.vocab_size);
        let r = slots.len();
        let xw = if c.input_feeding { e + h } else { e };
        let embed = self.file.resolve(self.w.dec_embed);
        let mut x = std::mem::take(&mut st.x);
        for (i, (&slot, &t)) in slots.iter().zip(tokens).enumerate() {
            let row = &mut x[i * xw..(i + 1) * xw];
            embed.dequantize_row(t as usize, &mut row[..e]);
            if c.input_feeding {
                row[e..].copy_from_slice(&st.feed[slot * h..(slot + 1) * h]);
            }
        }
        let mut width = xw;
        let (mut gates, mut gh, mut hrows) = (
            std::mem::take(&mut st.gates),
            std::mem::take(&mut st.gh),
            std::mem::take(&mut st.hrows),
        );
        for (l, cell) in self.w.decoder.iter().enumerate() {
            self.linear(cell.ih, &x[..r * width], r, &mut gates, &mut st.acts);
            for (i, &slot) in slots.iter().enumerate() {
                let at = (l * st.slots + slot) * h;
                hrows[i * h..(i + 1) * h].copy_from_slice(&st.h[at..at + h]);
            }
            self.linear(cell.hh, &hrows[..r * h], r, &mut gh, &mut st.acts);
            for (i, &slot) in slots.iter().enumerate() {
                let g = &mut gates[i * 4 * h..(i + 1) * 4 * h];
                (self.kern.add)(g, &gh[i * 4 * h..(i + 1) * 4 * h]);
                (self.kern.add)(g, &cell.bias);
                let at = (l * st.slots + slot) * h;
                (self.kern.lstm_cell)(g, &mut st.c[at..at + h], &mut st.h[at..at + h]);
                x[i * h..(i + 1) * h].copy_from_slice(&st.h[at..at + h]);
            }
            width = h;
        }
        st.gates = gates;
        st.gh = gh;
        st.hrows = hrows;

        // Attention: x holds the top hidden state of each row.
        let mut q = std::mem::take(&mut st.q);
        match &self.w.scoring {
            Scoring::Dot => q[..r * h].copy_from_slice(&x[..r * h]),
            Scoring::General(w) => self.linear(*w, &x[..r * h], r, &mut q, &mut st.acts),
            Scoring::Additive {
                query, query_bias, ..
            } => {
                self.linear(*query, &x[..r * h], r, &mut q, &mut st.acts);
                if let Some(b) = query_bias {
                    for row in q[..r * h].chunks_exact_mut(h) {
                        (self.kern.add)(row, b);
                    }
                }
            }
        }
        let mut scores = std::mem::take(&mut st.scores);
        let mut tmp = std::mem::take(&mut st.tilde);
        for i in 0..r {
            let (input, n) = (inputs[i], src_len[i]);
            let mem = &st.mem[input * st.max_in * h..][..n * h];
            let qi = &q[i * h..(i + 1) * h];
            match &self.w.scoring {
                Scoring::Additive { v: vv, .. } => {
                    let keys = &st.keys[input * st.max_in * h..][..n * h];
                    let t = &mut tmp[..h];
                    for s in 0..n {
                        t.copy_from_slice(&keys[s * h..(s + 1) * h]);
                        (self.kern.add)(t, qi);
                        for z in t.iter_mut() {
                            *z = z.tanh();
                        }
                        scores[s] = (self.kern.dot)(vv, t);
                    }
                }
                _ => {
                    for s in 0..n {
                        scores[s] = (self.kern.dot)(qi, &mem[s * h..(s + 1) * h]);
                    }
                }
            }
            (self.kern.softmax)(&mut scores[..n]);
            let cat = &mut st.cat[i * 2 * h..(i + 1) * 2 * h];
            cat[..h].fill(0.0);
            for s in 0..n {
                (self.kern.axpy)(scores[s], &mem[s * h..(s + 1) * h], &mut cat[..h]);
            }
            cat[h..].copy_from_slice(&x[i * h..(i + 1) * h]);
            if let Some(a) = align.as_deref_mut() {
                let slot = slots[i];
                a[slot * st.max_in..slot * st.max_in + n].copy_from_slice(&scores[..n]);
            }
        }
        st.scores = scores;
        st.q = q;
        st.x = x;
        // h̃ = tanh(W_out [c; h]), fed back and projected to the vocabulary.
        let cat = std::mem::take(&mut st.cat);
        self.linear(
            self.w.attn_out,
            &cat[..r * 2 * h],
            r,
            &mut tmp,
            &mut st.acts,
        );
        st.cat = cat;
        for z in tmp[..r * h].iter_mut() {
            *z = z.tanh();
        }
        for (i, &slot) in slots.iter().enumerate() {
            st.feed[slot * h..(slot + 1) * h].copy_from_slice(&tmp[i * h..(i + 1) * h]);
        }
        self.linear(self.w.lm_head, &tmp[..r * h], r, logits, &mut st.acts);
        if let Some(b) = &self.w.lm_bias {
            for row in logits[..r * v].chunks_exact_mut(v) {
                (self.kern.add)(row, b);
            }
        }
        st.tilde = tmp;
    }
}

/// The LSTM of a session: its recurrent state, logits and alignment, sized once from the limits.
pub(crate) struct LstmNet {
    model: super::Model,
    w: std::sync::Arc<LstmWeights>,
    st: LstmState,
    out: super::Outputs,
    /// Per row of a step: its slot, input and source length (allocated once).
    rows: [Vec<usize>; 3],
}

impl LstmNet {
    /// Bytes the network takes for `limits`.
    pub fn bytes_for(c: &Config, limits: &super::Limits) -> u128 {
        let slots = limits.max_batch * limits.beams;
        let floats = LstmState::floats(c, slots, limits.max_batch, limits.max_input_len)
            + slots * c.vocab_size
            + slots * limits.max_input_len;
        let width = (c.embed_dim() + c.d_model)
            .max(2 * c.d_model)
            .max(4 * c.d_model);
        4 * floats as u128 + (slots.max(limits.max_input_len) * width) as u128
    }

    pub fn new(
        model: &super::Model,
        w: std::sync::Arc<LstmWeights>,
        limits: &super::Limits,
    ) -> LstmNet {
        let c = &model.inner.config;
        let slots = limits.max_batch * limits.beams;
        LstmNet {
            model: model.clone(),
            w,
            st: LstmState::new(c, slots, limits.max_batch, limits.max_input_len),
            out: super::Outputs::new(vec![0.0; slots * c.vocab_size], slots, limits.max_input_len),
            rows: std::array::from_fn(|_| Vec::with_capacity(slots)),
        }
    }
}

impl super::Network for LstmNet {
    fn encode(
        &mut self,
        b: &super::Batch,
        beams: usize,
        cancel: Option<&super::CancelHandle>,
    ) -> Result<bool> {
        let model = self.model.clone();
        let net = Ctx::of(&model.inner, &self.w);
        let cancelled = || cancel.is_some_and(|c| c.is_cancelled());
        let mut slots = Vec::with_capacity(beams);
        for (input, g) in b.groups.iter().enumerate() {
            slots.clear();
            slots.extend(input * beams..(input + 1) * beams);
            let ids = &b.tokens[g.row0..g.row0 + g.len];
            if !net.encode(&mut self.st, input, ids, &slots, &cancelled) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn decode(&mut self, b: &super::Batch, _cancel: Option<&super::CancelHandle>) -> bool {
        let model = self.model.clone();
        let net = Ctx::of(&model.inner, &self.w);
        let [slots, inputs, src_len] = &mut self.rows;
        slots.clear();
        inputs.clear();
        src_len.clear();
        for g in b.groups {
            debug_assert_eq!(g.len, 1, "an LSTM decodes one token per sequence at a time");
            slots.push(g.slot);
            inputs.push(b.input_of[g.slot]);
            src_len.push(b.src_len[b.input_of[g.slot]]);
        }
        let (logits, align) = self.out.both_mut();
        net.step(
            &mut self.st,
            slots,
            b.tokens,
            inputs,
            src_len,
            logits,
            align,
        );
        true
    }

    fn copy_slot(&mut self, from: usize, to: usize, _len: usize) {
        let layers = self.model.inner.config.decoder_layers;
        self.st.copy_slot(layers, from, to);
    }

    fn outputs(&self) -> &super::Outputs {
        &self.out
    }

    fn outputs_mut(&mut self) -> &mut super::Outputs {
        &mut self.out
    }
}
