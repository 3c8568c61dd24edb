//! The Transformer's forward pass over a padded batch: embeddings, the stacks' residual
//! sub-layers (self-attention, cross-attention, feed-forward), the output projection.

use super::*;

impl Transformer {
    fn norm_fwd(
        &self,
        p: &[f32],
        np: &NormP,
        x: &[f32],
        out: &mut [f32],
        mean: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
    ) {
        let d = self.config.d_model;
        let n = x.len() / d;
        let (w, b) = norm_slices(p, np, d);
        ly::norm_forward(
            crate::kernels::kernels(),
            self.config.norm,
            x,
            d,
            w,
            b,
            self.config.norm_eps as f32,
            out,
            fit(mean, n),
            fit(rstd, n),
        );
    }

    /// Sub-layer entry: keeps `x` and computes the sub-layer input.
    fn sub_begin(&self, p: &[f32], np: &NormP, x: &[f32], sa: &mut SubActs) {
        sa.x.clear();
        sa.x.extend_from_slice(x);
        let a = fit(&mut sa.a, x.len());
        if self.config.pre_norm {
            self.norm_fwd(p, np, x, a, &mut sa.mean, &mut sa.rstd);
        } else {
            a.copy_from_slice(x);
        }
    }

    /// Sub-layer exit: dropout on `o`, residual add, post-norm; the new stream goes to `x`.
    fn sub_end(
        &self,
        p: &[f32],
        np: &NormP,
        o: &mut [f32],
        sa: &mut SubActs,
        rng: Option<&mut Rng>,
        x: &mut [f32],
    ) {
        match rng {
            Some(rng) if self.dropout > 0.0 => {
                let mask = fit(&mut sa.mask, o.len());
                ly::dropout_forward(o, self.dropout, rng, mask);
            }
            _ => sa.mask.clear(),
        }
        if self.config.pre_norm {
            for ((y, &xv), &ov) in x.iter_mut().zip(&sa.x).zip(o.iter()) {
                *y = xv + ov;
            }
        } else {
            let s = fit(&mut sa.s, o.len());
            for ((s, &xv), &ov) in s.iter_mut().zip(&sa.x).zip(o.iter()) {
                *s = xv + ov;
            }
            let s = std::mem::take(&mut sa.s);
            self.norm_fwd(p, np, &s, x, &mut sa.mean, &mut sa.rstd);
            sa.s = s;
        }
    }

    fn stack_forward(
        &self,
        ctx: Ctx,
        p: &[f32],
        st: &StackP,
        inp: &StackIn,
        acts: &mut StackActs,
        mut rng: Option<&mut Rng>,
    ) {
        let c = &st.config;
        let d = c.d_model;
        let n = inp.ids.len();
        let b = n / inp.l;
        let scale = if c.scale_embedding {
            (d as f32).sqrt()
        } else {
            1.0
        };
        let emb = fit(&mut acts.emb, n * d);
        ly::embedding_forward(
            &p[st.embed..st.embed + c.vocab_size * d],
            d,
            inp.ids,
            inp.l,
            scale,
            self.pos_input(st, p).as_ref(),
            emb,
        );
        let mut x = vec![0f32; n * d];
        match &st.embed_norm {
            Some(np) => self.norm_fwd(
                p,
                np,
                &acts.emb,
                &mut x,
                &mut acts.emb_mean,
                &mut acts.emb_rstd,
            ),
            None => x.copy_from_slice(&acts.emb),
        }
        match rng.as_deref_mut() {
            Some(r) if self.dropout > 0.0 => {
                ly::dropout_forward(&mut x, self.dropout, r, fit(&mut acts.emb_mask, n * d))
            }
            _ => acts.emb_mask.clear(),
        }
        acts.layers.resize_with(st.layers.len(), LayerActs::default);
        let mut o = vec![0f32; n * d];
        for (lp, la) in st.layers.iter().zip(acts.layers.iter_mut()) {
            // ---- self-attention
            self.sub_begin(p, &lp.self_norm, &x, &mut la.sa);
            let at = &lp.self_attn;
            lin_fwd(ctx, p, &at.q, &la.sa.a, n, &mut la.attn.q);
            lin_fwd(ctx, p, &at.k, &la.sa.a, n, &mut la.attn.k);
            lin_fwd(ctx, p, &at.v, &la.sa.a, n, &mut la.attn.v);
            if let Some((cos, sin, _)) = &self.rope {
                let (hd, h, g) = (c.head_dim(), c.heads, c.kv_heads());
                ly::rope_apply(
                    ctx.kern,
                    &mut la.attn.q,
                    h,
                    hd,
                    inp.l,
                    cos,
                    sin,
                    c.rope_interleaved,
                );
                ly::rope_apply(
                    ctx.kern,
                    &mut la.attn.k,
                    g,
                    hd,
                    inp.l,
                    cos,
                    sin,
                    c.rope_interleaved,
                );
            }
            let shape = st.attn_shape(b, inp.l, inp.l, inp.causal);
            let qd = c.heads * c.head_dim();
            ly::attention_forward(
                ctx,
                &shape,
                &la.attn.q,
                &la.attn.k,
                &la.attn.v,
                inp.lens,
                fit(&mut la.attn.probs, b * c.heads * inp.l * inp.l),
                fit(&mut la.attn.att, n * qd),
            );
            lin_fwd_into(ctx, p, &at.o, &la.attn.att, n, &mut o);
            self.sub_end(
                p,
                &lp.self_norm,
                &mut o,
                &mut la.sa,
                rng.as_deref_mut(),
                &mut x,
            );

            // ---- cross-attention
            if let (Some((cp, cn)), Some((mem, s, src_len))) = (&lp.cross, inp.memory) {
                self.sub_begin(p, cn, &x, &mut la.ca);
                lin_fwd(ctx, p, &cp.q, &la.ca.a, n, &mut la.cross.q);
                lin_fwd(ctx, p, &cp.k, mem, b * s, &mut la.cross.k);
                lin_fwd(ctx, p, &cp.v, mem, b * s, &mut la.cross.v);
                let shape = st.attn_shape(b, inp.l, s, false);
                ly::attention_forward(
                    ctx,
                    &shape,
                    &la.cross.q,
                    &la.cross.k,
                    &la.cross.v,
                    src_len,
                    fit(&mut la.cross.probs, b * c.heads * inp.l * s),
                    fit(&mut la.cross.att, n * qd),
                );
                lin_fwd_into(ctx, p, &cp.o, &la.cross.att, n, &mut o);
                self.sub_end(p, cn, &mut o, &mut la.ca, rng.as_deref_mut(), &mut x);
            }

            // ---- feed-forward
            self.sub_begin(p, &lp.ffn_norm, &x, &mut la.fa);
            let f = &lp.ffn;
            lin_fwd(ctx, p, &f.up, &la.fa.a, n, &mut la.h);
            let act = fit(&mut la.act, n * c.ffn_dim);
            match &f.gate {
                Some(gl) => {
                    lin_fwd(ctx, p, gl, &la.fa.a, n, &mut la.g);
                    ly::act_forward(ctx.kern, c.activation, &la.g, act);
                    (ctx.kern.mul)(act, &la.h);
                }
                None => ly::act_forward(ctx.kern, c.activation, &la.h, act),
            }
            lin_fwd_into(ctx, p, &f.down, &la.act, n, &mut o);
            self.sub_end(
                p,
                &lp.ffn_norm,
                &mut o,
                &mut la.fa,
                rng.as_deref_mut(),
                &mut x,
            );
        }
        acts.last = x;
        let out = fit(&mut acts.out, n * d);
        match &st.final_norm {
            Some(np) => self.norm_fwd(
                p,
                np,
                &acts.last,
                out,
                &mut acts.fin_mean,
                &mut acts.fin_rstd,
            ),
            None => out.copy_from_slice(&acts.last),
        }
    }

    /// Runs the model on `batch`, leaving logits `[B·T, V]` in `acts.logits`. `rng`: dropout
    /// (training); `None` evaluates.
    pub fn forward(
        &self,
        ctx: Ctx,
        p: &[f32],
        batch: &Batch,
        acts: &mut Acts,
        mut rng: Option<&mut Rng>,
    ) {
        let c = &self.config;
        let d = c.d_model;
        if let Some(enc) = &self.encoder {
            let inp = StackIn::encoder(batch);
            self.stack_forward(ctx, p, enc, &inp, &mut acts.enc, rng.as_deref_mut());
        }
        let enc_out = self.encoder.as_ref().map(|_| &acts.enc.out[..]);
        let inp = StackIn::decoder(batch, enc_out);
        let mut dec = std::mem::take(&mut acts.dec);
        self.stack_forward(ctx, p, &self.decoder, &inp, &mut dec, rng);
        acts.dec = dec;
        let n = batch.b * batch.t;
        let head_in = fit(&mut acts.head_in, n * d);
        head_in.copy_from_slice(&acts.dec.out);
        if c.logits_scale != 1.0 {
            (ctx.kern.scale)(head_in, c.logits_scale as f32);
        }
        let v = c.vocab_size;
        let logits = fit(&mut acts.logits, n * v);
        ly::linear_forward(
            ctx,
            &acts.head_in,
            n,
            &p[self.lm_head..self.lm_head + v * d],
            self.lm_bias.map(|b| &p[b..b + v]),
            v,
            d,
            logits,
        );
    }
}

fn lin_fwd(ctx: Ctx, p: &[f32], l: &Lin, x: &[f32], n: usize, y: &mut Vec<f32>) {
    lin_fwd_into(ctx, p, l, x, n, fit(y, n * l.out));
}

fn lin_fwd_into(ctx: Ctx, p: &[f32], l: &Lin, x: &[f32], n: usize, y: &mut [f32]) {
    ly::linear_forward(
        ctx,
        x,
        n,
        &p[l.w..l.w + l.out * l.inp],
        l.b.map(|b| &p[b..b + l.out]),
        l.out,
        l.inp,
        &mut y[..n * l.out],
    );
}
