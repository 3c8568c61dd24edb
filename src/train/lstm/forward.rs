//! The LSTM's teacher-forced forward pass: the encoder directions, the decoder steps with
//! attention and input feeding, the output projection.

use super::*;

impl Lstm {
    fn dropout_on(&self, rng: &Option<&mut Rng>) -> bool {
        rng.is_some() && self.dropout > 0.0
    }

    /// Runs one encoder direction over `x[B·S, in]` (batch-major), writing its half of `out`.
    #[allow(clippy::too_many_arguments)]
    fn enc_direction(
        &self,
        ctx: Ctx,
        p: &[f32],
        cp: &CellP,
        x: &[f32],
        batch: &Batch,
        reverse: bool,
        d: &mut DirActs,
        out: &mut [f32],
        off: usize,
    ) {
        let (b, s, u, h) = (batch.b, batch.s, cp.units, self.config.d_model);
        let proj = fit(&mut d.proj, b * s * 4 * u);
        ly::linear_forward(
            ctx,
            x,
            b * s,
            slice(p, cp.ih, 4 * u * cp.inp),
            Some(slice(p, cp.b, 4 * u)),
            4 * u,
            cp.inp,
            proj,
        );
        fit(&mut d.gates, s * b * 4 * u);
        fit(&mut d.h, s * b * u);
        fit(&mut d.c, s * b * u);
        let mut hprev = vec![0f32; b * u];
        let mut cprev = vec![0f32; b * u];
        let mut gh = vec![0f32; b * 4 * u];
        for step in 0..s {
            let t = if reverse { s - 1 - step } else { step };
            ly::matmul(
                ctx,
                &hprev,
                b,
                slice(p, cp.hh, 4 * u * u),
                4 * u,
                u,
                &mut gh,
            );
            for r in 0..b {
                let g = &mut d.gates[(t * b + r) * 4 * u..][..4 * u];
                let (hs, cs) = (
                    &mut d.h[(t * b + r) * u..][..u],
                    &mut d.c[(t * b + r) * u..][..u],
                );
                if t >= batch.src_len[r] {
                    // Padding: the state passes through.
                    g.fill(0.0);
                    hs.copy_from_slice(&hprev[r * u..(r + 1) * u]);
                    cs.copy_from_slice(&cprev[r * u..(r + 1) * u]);
                    out[(r * s + t) * h + off..][..u].fill(0.0);
                    continue;
                }
                for (k, gv) in g.iter_mut().enumerate() {
                    *gv = d.proj[(r * s + t) * 4 * u + k] + gh[r * 4 * u + k];
                }
                cell_forward(g, &cprev[r * u..(r + 1) * u], cs, hs);
                out[(r * s + t) * h + off..][..u].copy_from_slice(hs);
            }
            hprev.copy_from_slice(&d.h[t * b * u..(t + 1) * b * u]);
            cprev.copy_from_slice(&d.c[t * b * u..(t + 1) * b * u]);
        }
    }

    /// The final state of a direction: after its last step (forward: step S−1, which holds
    /// each row's state at its last real token; backward: step 0).
    fn final_state<'a>(
        d: &'a DirActs,
        batch: &Batch,
        u: usize,
        reverse: bool,
    ) -> (&'a [f32], &'a [f32]) {
        let t = if reverse { 0 } else { batch.s - 1 };
        let n = batch.b * u;
        (&d.h[t * n..(t + 1) * n], &d.c[t * n..(t + 1) * n])
    }

    /// Teacher-forced forward pass; logits `[B·T, V]` in `acts.logits`.
    pub fn forward(
        &self,
        ctx: Ctx,
        p: &[f32],
        batch: &Batch,
        acts: &mut LstmActs,
        mut rng: Option<&mut Rng>,
    ) {
        let c = &self.config;
        let (b, s, t_len) = (batch.b, batch.s, batch.t);
        let (v, e, h) = (c.vocab_size, c.embed_dim(), c.d_model);
        let drop = self.dropout_on(&rng);

        // ---- encoder
        acts.enc.resize_with(self.enc.len(), EncLayer::default);
        let mut x = vec![0f32; b * s * e];
        ly::embedding_forward(
            slice(p, self.enc_embed, v * e),
            e,
            &batch.src,
            s,
            1.0,
            None,
            &mut x,
        );
        let mut width = e;
        let mut init_h = vec![0f32; self.dec.len() * b * h];
        let mut init_c = vec![0f32; self.dec.len() * b * h];
        for (l, (fwd, bwd)) in self.enc.iter().enumerate() {
            let la = &mut acts.enc[l];
            match rng.as_deref_mut() {
                Some(r) if drop => {
                    ly::dropout_forward(&mut x, self.dropout, r, fit(&mut la.drop, b * s * width))
                }
                _ => la.drop.clear(),
            }
            la.x = x;
            let mut out = vec![0f32; b * s * h];
            self.enc_direction(ctx, p, fwd, &la.x, batch, false, &mut la.fwd, &mut out, 0);
            if let Some(bw) = bwd {
                self.enc_direction(
                    ctx,
                    p,
                    bw,
                    &la.x,
                    batch,
                    true,
                    &mut la.bwd,
                    &mut out,
                    fwd.units,
                );
            }
            let u = fwd.units;
            let (hf, cf) = Self::final_state(&la.fwd, batch, u, false);
            for r in 0..b {
                let at = (l * b + r) * h;
                init_h[at..at + u].copy_from_slice(&hf[r * u..(r + 1) * u]);
                init_c[at..at + u].copy_from_slice(&cf[r * u..(r + 1) * u]);
            }
            if bwd.is_some() {
                let (hb, cb) = Self::final_state(&la.bwd, batch, u, true);
                for r in 0..b {
                    let at = (l * b + r) * h + u;
                    init_h[at..at + u].copy_from_slice(&hb[r * u..(r + 1) * u]);
                    init_c[at..at + u].copy_from_slice(&cb[r * u..(r + 1) * u]);
                }
            }
            la.out = out.clone();
            x = out;
            width = h;
        }
        acts.mem = x;
        if let ScoreP::Additive { k, .. } = self.scoring {
            let keys = fit(&mut acts.keys, b * s * h);
            ly::matmul(ctx, &acts.mem, b * s, slice(p, k, h * h), h, h, keys);
        }

        // ---- decoder, time-major
        let de = fit(&mut acts.dec_emb, b * t_len * e);
        // Embed as [T][B][E]: transpose the batch-major ids.
        let ids_tm = time_major(&batch.tgt, b, t_len);
        ly::embedding_forward(
            slice(p, self.dec_embed, v * e),
            e,
            &ids_tm,
            t_len * b,
            1.0,
            None,
            de,
        );
        match rng.as_deref_mut() {
            Some(r) if drop => ly::dropout_forward(
                &mut acts.dec_emb,
                self.dropout,
                r,
                fit(&mut acts.dec_emb_drop, b * t_len * e),
            ),
            _ => acts.dec_emb_drop.clear(),
        }
        acts.steps.resize_with(t_len, DecStep::default);
        let layers = self.dec.len();
        let mut hs: Vec<Vec<f32>> = (0..layers)
            .map(|l| init_h[l * b * h..(l + 1) * b * h].to_vec())
            .collect();
        let mut cs: Vec<Vec<f32>> = (0..layers)
            .map(|l| init_c[l * b * h..(l + 1) * b * h].to_vec())
            .collect();
        let mut feed = vec![0f32; b * h];
        let head_in = fit(&mut acts.head_in, b * t_len * h);
        let mut gh = vec![0f32; b * 4 * h];
        for t in 0..t_len {
            let st = &mut acts.steps[t];
            st.cells.resize_with(layers, DecCell::default);
            for (l, cp) in self.dec.iter().enumerate() {
                let xin: Vec<f32> = if l == 0 {
                    let mut xin = vec![0f32; b * cp.inp];
                    for r in 0..b {
                        let row = &mut xin[r * cp.inp..(r + 1) * cp.inp];
                        row[..e].copy_from_slice(&acts.dec_emb[(t * b + r) * e..][..e]);
                        if c.input_feeding {
                            row[e..].copy_from_slice(&feed[r * h..(r + 1) * h]);
                        }
                    }
                    xin
                } else {
                    // The layer below's output, through its dropout mask.
                    let below = &st.cells[l - 1];
                    let mut xin = below.h.clone();
                    if !below.drop.is_empty() {
                        ly::dropout_backward(&mut xin, &below.drop);
                    }
                    xin
                };
                st.cells[l].x = xin;
                let cell = &mut st.cells[l];
                cell.h_prev = hs[l].clone();
                cell.c_prev = cs[l].clone();
                let g = fit(&mut cell.gates, b * 4 * h);
                ly::linear_forward(
                    ctx,
                    &cell.x,
                    b,
                    slice(p, cp.ih, 4 * h * cp.inp),
                    Some(slice(p, cp.b, 4 * h)),
                    4 * h,
                    cp.inp,
                    g,
                );
                ly::matmul(
                    ctx,
                    &cell.h_prev,
                    b,
                    slice(p, cp.hh, 4 * h * h),
                    4 * h,
                    h,
                    &mut gh,
                );
                (ctx.kern.add)(g, &gh);
                fit(&mut cell.c, b * h);
                fit(&mut cell.h, b * h);
                for r in 0..b {
                    cell_forward(
                        &mut cell.gates[r * 4 * h..(r + 1) * 4 * h],
                        &cell.c_prev[r * h..(r + 1) * h],
                        &mut cell.c[r * h..(r + 1) * h],
                        &mut cell.h[r * h..(r + 1) * h],
                    );
                }
                hs[l].copy_from_slice(&cell.h);
                cs[l].copy_from_slice(&cell.c);
                // Dropout between stacked layers: a mask for the next layer's input.
                match rng.as_deref_mut() {
                    Some(rg) if drop && l + 1 < layers => {
                        let mut ones = vec![1f32; b * h];
                        ly::dropout_forward(
                            &mut ones,
                            self.dropout,
                            rg,
                            fit(&mut cell.drop, b * h),
                        );
                    }
                    _ => cell.drop.clear(),
                }
            }
            // Attention over the memory.
            let top = st.cells[layers - 1].h.clone();
            let q = fit(&mut st.q, b * h);
            match self.scoring {
                ScoreP::Dot => q.copy_from_slice(&top),
                ScoreP::General(w) => ly::matmul(ctx, &top, b, slice(p, w, h * h), h, h, q),
                ScoreP::Additive { q: wq, qb, .. } => ly::linear_forward(
                    ctx,
                    &top,
                    b,
                    slice(p, wq, h * h),
                    qb.map(|o| slice(p, o, h)),
                    h,
                    h,
                    q,
                ),
            }
            fit(&mut st.alpha, b * s);
            fit(&mut st.cat, b * 2 * h);
            if matches!(self.scoring, ScoreP::Additive { .. }) {
                fit(&mut st.a, b * s * h);
            }
            for r in 0..b {
                let n = batch.src_len[r];
                let mem = &acts.mem[r * s * h..(r * s + n) * h];
                let qr = &st.q[r * h..(r + 1) * h];
                let al = &mut st.alpha[r * s..(r + 1) * s];
                al.fill(0.0);
                for j in 0..n {
                    al[j] = match self.scoring {
                        ScoreP::Additive { v: vo, .. } => {
                            let a = &mut st.a[(r * s + j) * h..(r * s + j + 1) * h];
                            let kj = &acts.keys[(r * s + j) * h..(r * s + j + 1) * h];
                            for z in 0..h {
                                a[z] = (qr[z] + kj[z]).tanh();
                            }
                            (ctx.kern.dot)(slice(p, vo, h), a)
                        }
                        _ => (ctx.kern.dot)(qr, &mem[j * h..(j + 1) * h]),
                    };
                }
                (ctx.kern.softmax)(&mut al[..n]);
                let cat = &mut st.cat[r * 2 * h..(r + 1) * 2 * h];
                cat[..h].fill(0.0);
                for j in 0..n {
                    (ctx.kern.axpy)(al[j], &mem[j * h..(j + 1) * h], &mut cat[..h]);
                }
                cat[h..].copy_from_slice(&top[r * h..(r + 1) * h]);
            }
            let tl = fit(&mut st.tilde, b * h);
            ly::matmul(
                ctx,
                &st.cat,
                b,
                slice(p, self.attn_out, 2 * h * h),
                h,
                2 * h,
                tl,
            );
            tl.iter_mut().for_each(|z| *z = z.tanh());
            let mut out = st.tilde.clone();
            match rng.as_deref_mut() {
                Some(rg) if drop => {
                    ly::dropout_forward(&mut out, self.dropout, rg, fit(&mut st.drop, b * h))
                }
                _ => st.drop.clear(),
            }
            feed.copy_from_slice(&out);
            for r in 0..b {
                head_in[(r * t_len + t) * h..(r * t_len + t + 1) * h]
                    .copy_from_slice(&out[r * h..(r + 1) * h]);
            }
        }
        let logits = fit(&mut acts.logits, b * t_len * v);
        ly::linear_forward(
            ctx,
            &acts.head_in,
            b * t_len,
            slice(p, self.lm_head, v * h),
            self.lm_bias.map(|o| slice(p, o, v)),
            v,
            h,
            logits,
        );
    }
}
