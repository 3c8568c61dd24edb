//! Backpropagation through time: the decoder's steps backwards, then the encoder's.

use super::*;

impl Lstm {
    /// Backpropagation through time from the logits' gradients (left in `acts.logits` by the
    /// loss) after [`Lstm::forward`] of the same `batch`: adds `∂loss/∂params` into `g`.
    pub fn backward(&self, ctx: Ctx, p: &[f32], g: &mut [f32], batch: &Batch, acts: &mut LstmActs) {
        let c = &self.config;
        let (b, s, t_len) = (batch.b, batch.s, batch.t);
        let (v, e, h) = (c.vocab_size, c.embed_dim(), c.d_model);
        let mut sc = std::mem::take(&mut acts.scratch);

        // ---- output projection
        let mut d_head = vec![0f32; b * t_len * h];
        lin_bwd(
            ctx,
            &mut sc,
            p,
            g,
            self.lm_head,
            self.lm_bias,
            &acts.logits,
            &acts.head_in,
            b * t_len,
            v,
            h,
            Dx::Set(&mut d_head),
        );

        // ---- decoder, backwards in time
        let layers = self.dec.len();
        let mut dh: Vec<Vec<f32>> = vec![vec![0f32; b * h]; layers];
        let mut dc: Vec<Vec<f32>> = vec![vec![0f32; b * h]; layers];
        let mut dfeed = vec![0f32; b * h];
        let mut d_mem = vec![0f32; b * s * h];
        let mut d_keys = vec![
            0f32;
            if matches!(self.scoring, ScoreP::Additive { .. }) {
                b * s * h
            } else {
                0
            }
        ];
        let mut d_emb = vec![0f32; b * t_len * e];
        let mut dg = vec![0f32; b * 4 * h];
        let mut dcp = vec![0f32; h];
        for t in (0..t_len).rev() {
            let st = &acts.steps[t];
            // h̃: from the logits and from the next step's input feeding.
            let mut dt = vec![0f32; b * h];
            for r in 0..b {
                dt[r * h..(r + 1) * h]
                    .copy_from_slice(&d_head[(r * t_len + t) * h..(r * t_len + t + 1) * h]);
            }
            (ctx.kern.add)(&mut dt, &dfeed);
            if !st.drop.is_empty() {
                ly::dropout_backward(&mut dt, &st.drop);
            }
            for (d, &y) in dt.iter_mut().zip(&st.tilde) {
                *d *= 1.0 - y * y;
            }
            let mut dcat = vec![0f32; b * 2 * h];
            lin_bwd(
                ctx,
                &mut sc,
                p,
                g,
                self.attn_out,
                None,
                &dt,
                &st.cat,
                b,
                h,
                2 * h,
                Dx::Set(&mut dcat),
            );
            // Attention.
            let mut dq = vec![0f32; b * h];
            let mut dtop = vec![0f32; b * h];
            for r in 0..b {
                let n = batch.src_len[r];
                let dctx = &dcat[r * 2 * h..r * 2 * h + h];
                dtop[r * h..(r + 1) * h].copy_from_slice(&dcat[r * 2 * h + h..(r + 1) * 2 * h]);
                let al = &st.alpha[r * s..r * s + n];
                let mem = &acts.mem[r * s * h..(r * s + n) * h];
                let mut da = vec![0f32; n];
                for j in 0..n {
                    da[j] = (ctx.kern.dot)(dctx, &mem[j * h..(j + 1) * h]);
                    (ctx.kern.axpy)(
                        al[j],
                        dctx,
                        &mut d_mem[(r * s + j) * h..(r * s + j + 1) * h],
                    );
                }
                let dot: f32 = al.iter().zip(&da).map(|(a, d)| a * d).sum();
                let qr = &st.q[r * h..(r + 1) * h];
                for j in 0..n {
                    let ds = al[j] * (da[j] - dot);
                    match self.scoring {
                        ScoreP::Additive { v: vo, .. } => {
                            let a = &st.a[(r * s + j) * h..(r * s + j + 1) * h];
                            let vv = slice(p, vo, h);
                            for z in 0..h {
                                g[vo + z] += ds * a[z];
                                let dpre = ds * vv[z] * (1.0 - a[z] * a[z]);
                                dq[r * h + z] += dpre;
                                d_keys[(r * s + j) * h + z] += dpre;
                            }
                        }
                        _ => {
                            (ctx.kern.axpy)(
                                ds,
                                &mem[j * h..(j + 1) * h],
                                &mut dq[r * h..(r + 1) * h],
                            );
                            (ctx.kern.axpy)(
                                ds,
                                qr,
                                &mut d_mem[(r * s + j) * h..(r * s + j + 1) * h],
                            );
                        }
                    }
                }
            }
            let top = &st.cells[layers - 1].h;
            match self.scoring {
                ScoreP::Dot => (ctx.kern.add)(&mut dtop, &dq),
                ScoreP::General(w) => lin_bwd(
                    ctx,
                    &mut sc,
                    p,
                    g,
                    w,
                    None,
                    &dq,
                    top,
                    b,
                    h,
                    h,
                    Dx::Add(&mut dtop),
                ),
                ScoreP::Additive { q: wq, qb, .. } => lin_bwd(
                    ctx,
                    &mut sc,
                    p,
                    g,
                    wq,
                    qb,
                    &dq,
                    top,
                    b,
                    h,
                    h,
                    Dx::Add(&mut dtop),
                ),
            }
            (ctx.kern.add)(&mut dh[layers - 1], &dtop);
            // The LSTM layers, top to bottom.
            for l in (0..layers).rev() {
                let cp = &self.dec[l];
                let cell = &st.cells[l];
                let mut dc_prev = vec![0f32; b * h];
                for r in 0..b {
                    cell_backward(
                        &cell.gates[r * 4 * h..(r + 1) * 4 * h],
                        &cell.c_prev[r * h..(r + 1) * h],
                        &cell.c[r * h..(r + 1) * h],
                        &dh[l][r * h..(r + 1) * h],
                        &mut dc[l][r * h..(r + 1) * h],
                        &mut dg[r * 4 * h..(r + 1) * 4 * h],
                        &mut dcp,
                    );
                    dc_prev[r * h..(r + 1) * h].copy_from_slice(&dcp);
                }
                dc[l] = dc_prev;
                let mut dx = vec![0f32; b * cp.inp];
                lin_bwd(
                    ctx,
                    &mut sc,
                    p,
                    g,
                    cp.ih,
                    Some(cp.b),
                    &dg,
                    &cell.x,
                    b,
                    4 * h,
                    cp.inp,
                    Dx::Set(&mut dx),
                );
                let mut dhp = vec![0f32; b * h];
                lin_bwd(
                    ctx,
                    &mut sc,
                    p,
                    g,
                    cp.hh,
                    None,
                    &dg,
                    &cell.h_prev,
                    b,
                    4 * h,
                    h,
                    Dx::Set(&mut dhp),
                );
                dh[l] = dhp;
                if l > 0 {
                    let below = &st.cells[l - 1];
                    if !below.drop.is_empty() {
                        ly::dropout_backward(&mut dx, &below.drop);
                    }
                    (ctx.kern.add)(&mut dh[l - 1], &dx);
                } else {
                    for r in 0..b {
                        let row = &dx[r * cp.inp..(r + 1) * cp.inp];
                        d_emb[(t * b + r) * e..(t * b + r + 1) * e].copy_from_slice(&row[..e]);
                        if c.input_feeding {
                            dfeed[r * h..(r + 1) * h].copy_from_slice(&row[e..]);
                        }
                    }
                }
            }
        }
        if !acts.dec_emb_drop.is_empty() {
            ly::dropout_backward(&mut d_emb, &acts.dec_emb_drop);
        }
        let ids_tm = time_major(&batch.tgt, b, t_len);
        ly::embedding_backward(
            &d_emb,
            e,
            &ids_tm,
            t_len * b,
            1.0,
            &mut g[self.dec_embed..self.dec_embed + v * e],
            None,
        );

        // ---- encoder: memory and final-state gradients, top layer first
        if let ScoreP::Additive { k, .. } = self.scoring {
            lin_bwd(
                ctx,
                &mut sc,
                p,
                g,
                k,
                None,
                &d_keys,
                &acts.mem,
                b * s,
                h,
                h,
                Dx::Add(&mut d_mem),
            );
        }
        let mut d_out = d_mem;
        for l in (0..self.enc.len()).rev() {
            let (fwd, bwd) = &self.enc[l];
            let la = &acts.enc[l];
            let u = fwd.units;
            let mut dx = vec![0f32; b * s * fwd.inp];
            // Final-state gradients: the decoder layer l's initial state.
            let (dh0, dc0) = (&dh[l], &dc[l]);
            let dirs: Vec<(&CellP, &DirActs, bool, usize)> =
                std::iter::once((fwd, &la.fwd, false, 0))
                    .chain(bwd.as_ref().map(|bw| (bw, &la.bwd, true, u)))
                    .collect();
            for (cp, d, reverse, off) in dirs {
                let mut dhr = vec![0f32; b * u];
                let mut dcr = vec![0f32; b * u];
                for r in 0..b {
                    dhr[r * u..(r + 1) * u].copy_from_slice(&dh0[r * h + off..r * h + off + u]);
                    dcr[r * u..(r + 1) * u].copy_from_slice(&dc0[r * h + off..r * h + off + u]);
                }
                let mut dgates = vec![0f32; b * s * 4 * u];
                let mut hprev_all = vec![0f32; b * s * u];
                let mut dgs = vec![0f32; b * 4 * u];
                let mut dcp = vec![0f32; u];
                let whh_t = transpose(slice(p, cp.hh, 4 * u * u), 4 * u, u);
                for step in (0..s).rev() {
                    let t = if reverse { s - 1 - step } else { step };
                    let prev_t = if reverse { t + 1 } else { t.wrapping_sub(1) };
                    dgs.fill(0.0);
                    for r in 0..b {
                        if t >= batch.src_len[r] {
                            continue; // padding passes the gradient through
                        }
                        let mut dhv = dhr[r * u..(r + 1) * u].to_vec();
                        (ctx.kern.add)(
                            &mut dhv,
                            &d_out[(r * s + t) * h + off..(r * s + t) * h + off + u],
                        );
                        let zeros = vec![0f32; u];
                        let c_prev = if prev_t < s {
                            &d.c[(prev_t * b + r) * u..][..u]
                        } else {
                            &zeros[..]
                        };
                        if prev_t < s {
                            hprev_all[(r * s + t) * u..][..u]
                                .copy_from_slice(&d.h[(prev_t * b + r) * u..][..u]);
                        }
                        cell_backward(
                            &d.gates[(t * b + r) * 4 * u..][..4 * u],
                            c_prev,
                            &d.c[(t * b + r) * u..][..u],
                            &dhv,
                            &mut dcr[r * u..(r + 1) * u],
                            &mut dgs[r * 4 * u..(r + 1) * 4 * u],
                            &mut dcp,
                        );
                        dcr[r * u..(r + 1) * u].copy_from_slice(&dcp);
                        dgates[(r * s + t) * 4 * u..][..4 * u]
                            .copy_from_slice(&dgs[r * 4 * u..(r + 1) * 4 * u]);
                    }
                    // dh of the previous step: dgates · W_hh (rows of padded steps stay).
                    let mut dhp = vec![0f32; b * 4 * u];
                    ly::matmul(ctx, &dgs, b, &whh_t, u, 4 * u, &mut dhp);
                    for r in 0..b {
                        if t < batch.src_len[r] {
                            dhr[r * u..(r + 1) * u].copy_from_slice(&dhp[r * u..(r + 1) * u]);
                        }
                    }
                }
                lin_bwd(
                    ctx,
                    &mut sc,
                    p,
                    g,
                    cp.ih,
                    Some(cp.b),
                    &dgates,
                    &la.x,
                    b * s,
                    4 * u,
                    cp.inp,
                    Dx::Add(&mut dx),
                );
                let mut dw = vec![0f32; 4 * u * u];
                let dgt = transpose(&dgates, b * s, 4 * u);
                let hpt = transpose(&hprev_all, b * s, u);
                ly::matmul(ctx, &dgt, 4 * u, &hpt, u, b * s, &mut dw);
                (ctx.kern.add)(&mut g[cp.hh..cp.hh + 4 * u * u], &dw);
            }
            if !la.drop.is_empty() {
                ly::dropout_backward(&mut dx, &la.drop);
            }
            d_out = dx;
        }
        ly::embedding_backward(
            &d_out,
            e,
            &batch.src,
            s,
            1.0,
            &mut g[self.enc_embed..self.enc_embed + v * e],
            None,
        );
        acts.scratch = sc;
    }
}

/// Backward of [`cell_forward`]: from `dh`, `dc` (gradient of this step's `c`, added to in
/// place) computes the pre-activation gate gradients `dg[4u]` and `dc_prev`.
fn cell_backward(
    a: &[f32],
    c_prev: &[f32],
    c: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dg: &mut [f32],
    dc_prev: &mut [f32],
) {
    let u = c.len();
    for j in 0..u {
        let (i, f, g, o) = (a[j], a[u + j], a[2 * u + j], a[3 * u + j]);
        let tc = c[j].tanh();
        let d_o = dh[j] * tc;
        let dcj = dc[j] + dh[j] * o * (1.0 - tc * tc);
        dg[j] = dcj * g * i * (1.0 - i);
        dg[u + j] = dcj * c_prev[j] * f * (1.0 - f);
        dg[2 * u + j] = dcj * i * (1.0 - g * g);
        dg[3 * u + j] = d_o * o * (1.0 - o);
        dc_prev[j] = dcj * f;
        dc[j] = dcj;
    }
}

/// Backward of `y = x·Wᵀ (+ b)` with `W` at `w` (`[out, inp]`), bias at `b` (after `w`).
#[allow(clippy::too_many_arguments)]
fn lin_bwd(
    ctx: Ctx,
    s: &mut Scratch,
    p: &[f32],
    g: &mut [f32],
    w: usize,
    b: Option<usize>,
    dy: &[f32],
    x: &[f32],
    n: usize,
    out: usize,
    inp: usize,
    dx: Dx,
) {
    let (dw, db) = ly::linear_grads(g, w, b, out, inp);
    ly::linear_backward(
        ctx,
        s,
        dy,
        x,
        n,
        slice(p, w, out * inp),
        out,
        inp,
        dx,
        dw,
        db,
    );
}
