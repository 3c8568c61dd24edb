//! The Transformer's backward pass: the forward pass's steps in reverse, from the logits'
//! gradients to every parameter's.

use super::*;

impl Transformer {
    #[allow(clippy::too_many_arguments)]
    fn norm_bwd(
        &self,
        gr: &mut Grad,
        np: &NormP,
        dout: &[f32],
        x: &[f32],
        mean: &[f32],
        rstd: &[f32],
        dx: &mut [f32],
    ) {
        let d = self.config.d_model;
        let (w, _) = norm_slices(gr.p, np, d);
        let (dw, db) = ly::linear_grads(gr.g, np.w, np.b, d, 1);
        ly::norm_backward(self.config.norm, dout, x, d, w, mean, rstd, dx, dw, db);
    }

    /// Backward of [`Self::sub_end`]: from `dx` (gradient of the stream after the sub-layer)
    /// computes `d_o` (gradient of the sub-layer output) and leaves in `dx` the gradient of the
    /// stream before it through the residual path.
    #[allow(clippy::too_many_arguments)]
    fn sub_end_bwd(
        &self,
        gr: &mut Grad,
        np: &NormP,
        sa: &SubActs,
        dx: &mut [f32],
        ds: &mut [f32],
        d_o: &mut [f32],
    ) {
        if !self.config.pre_norm {
            ds.fill(0.0);
            self.norm_bwd(gr, np, dx, &sa.s, &sa.mean, &sa.rstd, ds);
            dx.copy_from_slice(ds);
        }
        d_o.copy_from_slice(dx);
        if !sa.mask.is_empty() {
            ly::dropout_backward(d_o, &sa.mask);
        }
    }

    /// Backward of [`Self::sub_begin`]: adds the gradient of the sub-layer input into `dx`.
    fn sub_begin_bwd(&self, gr: &mut Grad, np: &NormP, sa: &SubActs, da: &[f32], dx: &mut [f32]) {
        if self.config.pre_norm {
            self.norm_bwd(gr, np, da, &sa.x, &sa.mean, &sa.rstd, dx);
        } else {
            (crate::kernels::scalar::add)(dx, da);
        }
    }

    /// Backward of [`Self::stack_forward`] from `dout` (gradient of the stack output, in
    /// `w.dx` on entry). Adds the memory's gradient into `w.d_enc` for a decoder with
    /// cross-attention.
    #[allow(clippy::too_many_arguments)]
    fn stack_backward(
        &self,
        gr: &mut Grad,
        st: &StackP,
        inp: &StackIn,
        acts: &StackActs,
        w: &mut Acts,
    ) {
        let c = &st.config;
        let d = c.d_model;
        let n = inp.ids.len();
        let b = n / inp.l;
        let (qd, kvd, f) = (
            c.heads * c.head_dim(),
            c.kv_heads() * c.head_dim(),
            c.ffn_dim,
        );
        let mut dx = std::mem::take(&mut w.dx);
        dx.resize(n * d, 0.0);
        let ds = fit(&mut w.ds, n * d);
        if let Some(np) = &st.final_norm {
            ds.fill(0.0);
            self.norm_bwd(gr, np, &dx, &acts.last, &acts.fin_mean, &acts.fin_rstd, ds);
            dx.copy_from_slice(ds);
        }
        fit(&mut w.d_o, n * d);
        fit(&mut w.da, n * d);
        for (lp, la) in st.layers.iter().zip(acts.layers.iter()).rev() {
            // ---- feed-forward
            self.sub_end_bwd(gr, &lp.ffn_norm, &la.fa, &mut dx, &mut w.ds, &mut w.d_o);
            let ff = &lp.ffn;
            let dact = fit(&mut w.dact, n * f);
            gr.linear(&ff.down, &w.d_o, &la.act, n, Dx::Set(dact));
            let dh = fit(&mut w.dh, n * f);
            match &ff.gate {
                Some(gl) => {
                    let dg = fit(&mut w.dg, n * f);
                    for i in 0..n * f {
                        let a = ly::act_grad(c.activation, la.g[i]);
                        let mut av = [la.g[i]];
                        gr.ctx.kern.activate(c.activation.into(), &mut av);
                        dg[i] = w.dact[i] * la.h[i] * a;
                        dh[i] = w.dact[i] * av[0];
                    }
                    gr.linear(gl, &w.dg, &la.fa.a, n, Dx::Set(&mut w.da));
                    gr.linear(&ff.up, &w.dh, &la.fa.a, n, Dx::Add(&mut w.da));
                }
                None => {
                    ly::act_backward(c.activation, &la.h, &w.dact, dh);
                    gr.linear(&ff.up, &w.dh, &la.fa.a, n, Dx::Set(&mut w.da));
                }
            }
            self.sub_begin_bwd(gr, &lp.ffn_norm, &la.fa, &w.da, &mut dx);

            // ---- cross-attention
            if let (Some((cp, cn)), Some((mem, s, src_len))) = (&lp.cross, inp.memory) {
                self.sub_end_bwd(gr, cn, &la.ca, &mut dx, &mut w.ds, &mut w.d_o);
                let datt = fit(&mut w.datt, n * qd);
                gr.linear(&cp.o, &w.d_o, &la.cross.att, n, Dx::Set(datt));
                let shape = st.attn_shape(b, inp.l, s, false);
                ly::attention_backward(
                    gr.ctx,
                    &shape,
                    &w.datt,
                    &la.cross.q,
                    &la.cross.k,
                    &la.cross.v,
                    src_len,
                    &la.cross.probs,
                    fit(&mut w.dq, n * qd),
                    fit(&mut w.dk, b * s * kvd),
                    fit(&mut w.dv, b * s * kvd),
                );
                gr.linear(&cp.q, &w.dq, &la.ca.a, n, Dx::Set(&mut w.da));
                let d_enc = &mut w.d_enc[..b * s * d];
                gr.linear(&cp.k, &w.dk, mem, b * s, Dx::Add(d_enc));
                gr.linear(&cp.v, &w.dv, mem, b * s, Dx::Add(d_enc));
                self.sub_begin_bwd(gr, cn, &la.ca, &w.da, &mut dx);
            }

            // ---- self-attention
            self.sub_end_bwd(gr, &lp.self_norm, &la.sa, &mut dx, &mut w.ds, &mut w.d_o);
            let at = &lp.self_attn;
            let datt = fit(&mut w.datt, n * qd);
            gr.linear(&at.o, &w.d_o, &la.attn.att, n, Dx::Set(datt));
            let shape = st.attn_shape(b, inp.l, inp.l, inp.causal);
            ly::attention_backward(
                gr.ctx,
                &shape,
                &w.datt,
                &la.attn.q,
                &la.attn.k,
                &la.attn.v,
                inp.lens,
                &la.attn.probs,
                fit(&mut w.dq, n * qd),
                fit(&mut w.dk, n * kvd),
                fit(&mut w.dv, n * kvd),
            );
            if let Some((cos, _, neg)) = &self.rope {
                let (hd, h, gh) = (c.head_dim(), c.heads, c.kv_heads());
                ly::rope_apply(
                    gr.ctx.kern,
                    &mut w.dq,
                    h,
                    hd,
                    inp.l,
                    cos,
                    neg,
                    c.rope_interleaved,
                );
                ly::rope_apply(
                    gr.ctx.kern,
                    &mut w.dk,
                    gh,
                    hd,
                    inp.l,
                    cos,
                    neg,
                    c.rope_interleaved,
                );
            }
            gr.linear(&at.q, &w.dq, &la.sa.a, n, Dx::Set(&mut w.da));
            gr.linear(&at.k, &w.dk, &la.sa.a, n, Dx::Add(&mut w.da));
            gr.linear(&at.v, &w.dv, &la.sa.a, n, Dx::Add(&mut w.da));
            self.sub_begin_bwd(gr, &lp.self_norm, &la.sa, &w.da, &mut dx);
        }
        // ---- embeddings
        if !acts.emb_mask.is_empty() {
            ly::dropout_backward(&mut dx, &acts.emb_mask);
        }
        if let Some(np) = &st.embed_norm {
            let ds = fit(&mut w.ds, n * d);
            ds.fill(0.0);
            self.norm_bwd(gr, np, &dx, &acts.emb, &acts.emb_mean, &acts.emb_rstd, ds);
            dx.copy_from_slice(ds);
        }
        let scale = if c.scale_embedding {
            (d as f32).sqrt()
        } else {
            1.0
        };
        let (emb_g, pos_g) = match st.pos {
            Some((off, rows)) if c.positions == Positions::Learned => {
                // The embedding table and the position table are disjoint ranges.
                let (lo, hi) = gr.g.split_at_mut(off.max(st.embed));
                if off > st.embed {
                    (
                        &mut lo[st.embed..],
                        Some((&mut hi[..rows * d], c.position_offset)),
                    )
                } else {
                    (
                        &mut hi[..],
                        Some((&mut lo[off..off + rows * d], c.position_offset)),
                    )
                }
            }
            _ => (&mut gr.g[st.embed..], None),
        };
        ly::embedding_backward(&dx, d, inp.ids, inp.l, scale, emb_g, pos_g);
        w.dx = dx;
    }

    /// Backward from the logits' gradients (left in `acts.logits` by the loss) after
    /// [`Transformer::forward`] of the same `batch`: adds `∂loss/∂params` into `g`.
    pub fn backward(&self, ctx: Ctx, p: &[f32], g: &mut [f32], batch: &Batch, acts: &mut Acts) {
        let c = &self.config;
        let (d, v) = (c.d_model, c.vocab_size);
        let n = batch.b * batch.t;
        let gr = &mut Grad {
            ctx,
            p,
            g,
            s: std::mem::take(&mut acts.scratch),
        };
        // Output projection.
        let lm = Lin {
            w: self.lm_head,
            b: self.lm_bias,
            out: v,
            inp: d,
        };
        let mut dx = std::mem::take(&mut acts.dx);
        let dxs = fit(&mut dx, n * d);
        gr.linear(&lm, &acts.logits, &acts.head_in, n, Dx::Set(dxs));
        if c.logits_scale != 1.0 {
            (ctx.kern.scale)(dxs, c.logits_scale as f32);
        }
        acts.dx = dx;
        if self.encoder.is_some() {
            let zeros = fit(&mut acts.d_enc, batch.b * batch.s * d);
            zeros.fill(0.0);
        }
        let dec = std::mem::take(&mut acts.dec);
        let enc_out = std::mem::take(&mut acts.enc.out);
        {
            let memory = self.encoder.as_ref().map(|_| &enc_out[..]);
            let inp = StackIn::decoder(batch, memory);
            self.stack_backward(gr, &self.decoder, &inp, &dec, acts);
        }
        acts.dec = dec;
        acts.enc.out = enc_out;
        if let Some(enc) = &self.encoder {
            let inp = StackIn::encoder(batch);
            std::mem::swap(&mut acts.dx, &mut acts.d_enc);
            let ea = std::mem::take(&mut acts.enc);
            self.stack_backward(gr, enc, &inp, &ea, acts);
            acts.enc = ea;
        }
        acts.scratch = std::mem::take(&mut gr.s);
    }
}

/// What every backward step reads and writes: the parameters, their gradients (added to), the
/// kernels and the scratch of the matrix products.
struct Grad<'a> {
    ctx: Ctx<'a>,
    p: &'a [f32],
    g: &'a mut [f32],
    s: Scratch,
}

impl Grad<'_> {
    /// Backward of linear layer `l` over `n` rows of input `x`, from the output gradient `dy`.
    fn linear(&mut self, l: &Lin, dy: &[f32], x: &[f32], n: usize, dx: Dx) {
        let w = &self.p[l.w..l.w + l.out * l.inp];
        let (dw, db) = ly::linear_grads(self.g, l.w, l.b, l.out, l.inp);
        ly::linear_backward(self.ctx, &mut self.s, dy, x, n, w, l.out, l.inp, dx, dw, db);
    }
}
