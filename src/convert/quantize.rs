//! Weight quantization: f32/f16/bf16 → int8, int4, f16 or bf16, with an error report per tensor.
//!
//! - int8: symmetric per output row, `scale = max|w_row| / 127`, `q = round(w / scale)`.
//! - int4: 4-bit codes into the 16 fixed levels `Q4_LEVELS`, one f16 scale per group of 32 along
//!   a row, chosen to minimise the group's squared error (see [`quantize_q4`]); codes are picked
//!   with the f16-rounded scale, so the stored scale is exact.
//! - f16 / bf16: round to nearest even.
//!
//! Only matrices (2-D float tensors) are quantized; vectors (norms, biases) stay as they are,
//! since they are tiny and precision-sensitive. Try it: `quill quantize in.quill out.quill --to int8`.

use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::format::names;
use crate::format::{QuillFile, Writer};
use crate::tensor::{DType, Matrix, Q4_GROUP, Q4_LEVELS, TensorView, Weights};

/// What to quantize to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Int8,
    Int4,
    F16,
    BF16,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target> {
        Ok(match s {
            "int8" | "q8" => Target::Int8,
            "int4" | "q4" => Target::Int4,
            "f16" => Target::F16,
            "bf16" => Target::BF16,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown quantization \"{s}\" (expected int8, int4, f16 or bf16)"
                )));
            }
        })
    }
}

/// The error a tensor took on, measured against its original values.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorReport {
    pub name: String,
    pub from: String,
    pub to: String,
    /// Largest absolute difference.
    pub max_abs: f32,
    /// Root-mean-square of the difference relative to the RMS of the original.
    pub rel_rms: f32,
    /// Why a tensor was not converted as asked, if it was not.
    pub note: Option<String>,
}

/// int8 per output row. Returns `(q [rows*cols], scales [rows])`.
pub fn quantize_q8(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    assert_eq!(w.len(), rows * cols);
    let mut q = vec![0i8; w.len()];
    let mut scales = vec![0f32; rows];
    if cols == 0 {
        return (q, scales);
    }
    for ((row, qrow), s) in w
        .chunks_exact(cols)
        .zip(q.chunks_exact_mut(cols))
        .zip(&mut scales)
    {
        let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
        if max == 0.0 || !max.is_finite() {
            continue;
        }
        *s = max / 127.0;
        let inv = 127.0 / max;
        for (o, &x) in qrow.iter_mut().zip(row) {
            *o = (x * inv).round().clamp(-127.0, 127.0) as i8;
        }
    }
    (q, scales)
}

/// The code whose level is nearest to `y` (a value in units of the scale).
fn nearest_level(y: f32) -> u8 {
    // Midpoints between neighbouring levels; a binary search would not beat 15 compares.
    let mut code = 0u8;
    for k in 0..15 {
        let mid = (Q4_LEVELS[k] as f32 + Q4_LEVELS[k + 1] as f32) * 0.5;
        code += (y > mid) as u8;
    }
    code
}

/// int4 per group of 32 along each row (`cols` a multiple of 32). Returns
/// `(codes [rows*cols/2], scales [rows*cols/32])` in the layout of `docs/format.md` §5.
///
/// Each group's scale is chosen to minimise the group's squared error: candidates map the
/// largest-magnitude value onto an extreme level or onto ±110 … ±134 (steps of 2) in units of
/// the scale (a little clipping can pay), each candidate is
/// rounded to f16 first, every value takes its nearest level, and the best candidate is kept.
pub fn quantize_q4(w: &[f32], rows: usize, cols: usize) -> Result<(Vec<u8>, Vec<f16>)> {
    assert_eq!(w.len(), rows * cols);
    if !cols.is_multiple_of(Q4_GROUP) {
        return Err(Error::InvalidArgument(format!(
            "int4 needs rows whose length is a multiple of {Q4_GROUP}, found {cols}"
        )));
    }
    let zero_code = nearest_level(0.0);
    let mut packed = vec![zero_code | (zero_code << 4); w.len() / 2];
    let mut scales = vec![f16::ZERO; w.len() / Q4_GROUP];
    for ((group, out), s) in w
        .chunks_exact(Q4_GROUP)
        .zip(packed.chunks_exact_mut(Q4_GROUP / 2))
        .zip(&mut scales)
    {
        let peak = group
            .iter()
            .fold(0f32, |m, &x| if x.abs() > m.abs() { x } else { m });
        if peak == 0.0 {
            continue;
        }
        if !peak.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "weight {peak} cannot be quantized"
            )));
        }
        let mut best = (f32::INFINITY, f16::ZERO);
        let extremes = [Q4_LEVELS[15] as f32, Q4_LEVELS[0] as f32];
        let grid = (55..=67).flat_map(|k| [2.0 * k as f32, -2.0 * k as f32]);
        for target in extremes.into_iter().chain(grid) {
            let scale = f16::from_f32(peak / target);
            let sf = scale.to_f32();
            if !sf.is_finite() {
                return Err(Error::InvalidArgument(format!(
                    "a weight of magnitude {peak} does not fit an f16 int4 scale"
                )));
            }
            if sf == 0.0 {
                continue;
            }
            let err: f32 = group
                .iter()
                .map(|&x| (x - Q4_LEVELS[nearest_level(x / sf) as usize] as f32 * sf).powi(2))
                .sum();
            if err < best.0 {
                best = (err, scale);
            }
        }
        *s = best.1;
        let sf = best.1.to_f32();
        if sf == 0.0 {
            continue; // a group of subnormals: all zeros
        }
        for (o, pair) in out.iter_mut().zip(group.chunks_exact(2)) {
            *o = nearest_level(pair[0] / sf) | (nearest_level(pair[1] / sf) << 4);
        }
    }
    Ok((packed, scales))
}

/// `(max_abs, rel_rms)` of `approx` against `orig`.
pub fn error_stats(orig: &[f32], approx: &[f32]) -> (f32, f32) {
    let (mut max, mut err2, mut ref2) = (0f64, 0f64, 0f64);
    for (&a, &b) in orig.iter().zip(approx) {
        let d = (a as f64 - b as f64).abs();
        max = max.max(d);
        err2 += d * d;
        ref2 += a as f64 * a as f64;
    }
    let rel = if ref2 > 0.0 {
        (err2 / ref2).sqrt()
    } else {
        err2.sqrt()
    };
    (max as f32, rel as f32)
}

/// Quantizes one f32 matrix to `target`, adds it to `out`, and reports the error.
pub fn add_quantized<'a>(
    out: &mut Writer<'a>,
    name: &str,
    from: &str,
    w: &[f32],
    rows: usize,
    cols: usize,
    target: Target,
) -> Result<TensorReport> {
    let mut note = None;
    let (to, approx) = match target {
        Target::Int4 if cols.is_multiple_of(Q4_GROUP) => {
            let (packed, scales) = quantize_q4(w, rows, cols)?;
            let approx = Matrix {
                rows,
                cols,
                weights: Weights::Q4 {
                    packed: &packed,
                    scales: &scales,
                },
            }
            .to_f32_vec();
            out.add_q4(name, rows, cols, packed, scales)?;
            ("Q4", approx)
        }
        Target::Int8 | Target::Int4 => {
            if target == Target::Int4 {
                note = Some(format!(
                    "rows of {cols} are not a multiple of {Q4_GROUP}: kept int8"
                ));
            }
            let (q, scales) = quantize_q8(w, rows, cols);
            let approx = Matrix {
                rows,
                cols,
                weights: Weights::Q8 {
                    q: &q,
                    scales: &scales,
                },
            }
            .to_f32_vec();
            out.add_q8(name, rows, cols, q, scales)?;
            ("Q8", approx)
        }
        Target::F16 => {
            let h: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
            let approx = h.iter().map(|x| x.to_f32()).collect();
            out.add_owned(name, &[rows, cols], h)?;
            ("F16", approx)
        }
        Target::BF16 => {
            let h: Vec<bf16> = w.iter().map(|&x| bf16::from_f32(x)).collect();
            let approx = h.iter().map(|x| x.to_f32()).collect();
            out.add_owned(name, &[rows, cols], h)?;
            ("BF16", approx)
        }
    };
    let (max_abs, rel_rms) = error_stats(w, &approx);
    Ok(TensorReport {
        name: name.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        max_abs,
        rel_rms,
        note,
    })
}

/// What an int4 model stores at int8 instead: the token embedding, the output projection, the
/// attention projections and the feed-forward output (`ffn.down`); the feed-forward input
/// matrices (`ffn.up`, `ffn.gate`) are int4. Measured on the nine tiny goldens (first-step logits
/// cosine against transformers at f32): everything int4 reaches only 0.969 (T5); embeddings and
/// output at int8, 0.979; attention at int8 too, 0.989 (Mistral); with `ffn.down` at int8 as well,
/// every model is at or above 0.991. llama.cpp's Q4_K_M keeps the same tensors at higher
/// precision for the same reason. Names are quill's canonical ones.
pub fn int4_policy(name: &str, target: Target) -> Target {
    let embedding =
        name == "embed.weight" || name.ends_with(".embed.weight") || name == "lm_head.weight";
    let sensitive = name.contains("_attn.") || name.contains("ffn.down.");
    if target == Target::Int4 && (embedding || sensitive) {
        Target::Int8
    } else {
        target
    }
}

/// Whether a tensor is a weight matrix the quantizer converts.
fn is_float_matrix(t: &TensorView) -> bool {
    t.dtype.is_float() && t.shape.len() == 2 && !names::is_quill_data(t.name)
}

/// Quantizes every float matrix of `src` to `target` and copies everything else (metadata
/// included) unchanged. Returns the writer for the new file and one report per matrix.
pub fn quantize_file(src: &QuillFile, target: Target) -> Result<(Writer<'_>, Vec<TensorReport>)> {
    let mut out = Writer::new();
    for (k, v) in src.metadata() {
        out.set_metadata(k.clone(), v.clone());
    }
    out.set_metadata(
        crate::format::keys::PRODUCER,
        format!(
            "quill {} quantize --to {target:?}{}",
            crate::VERSION,
            src.metadata()
                .get(crate::format::keys::PRODUCER)
                .map(|p| format!(" from: {p}"))
                .unwrap_or_default()
        ),
    );
    let scale_of_quantized = |name: &str| {
        name.strip_suffix(names::SCALE_SUFFIX)
            .and_then(|w| src.tensor(w).ok())
            .is_some_and(|w| matches!(w.dtype, DType::I8 | DType::U8))
    };
    let mut reports = Vec::new();
    for t in src.tensors() {
        if scale_of_quantized(t.name) {
            continue; // written with its weight
        }
        if is_float_matrix(&t) {
            let w = t.to_f32_vec()?;
            let (rows, cols) = (t.shape[0], t.shape[1]);
            reports.push(add_quantized(
                &mut out,
                t.name,
                t.dtype.as_str(),
                &w,
                rows,
                cols,
                target,
            )?);
        } else if matches!(t.dtype, DType::I8 | DType::U8)
            && src.quill().is_some()
            && !names::is_quill_data(t.name)
        {
            let m = src.matrix(t.name)?;
            let same = matches!(
                (target, m.weights),
                (Target::Int8, Weights::Q8 { .. }) | (Target::Int4, Weights::Q4 { .. })
            );
            if !same {
                return Err(Error::InvalidArgument(format!(
                    "tensor `{}` is already {}: quantize from the f32/f16/bf16 model instead",
                    t.name,
                    m.kind()
                )));
            }
            out.add_matrix(t.name, &m)?;
        } else {
            out.add_raw(t.name, t.dtype, t.shape, t.bytes)?;
        }
    }
    Ok((out, reports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_round_trips_exact_grid_values() {
        // Row max 127 → scale 1: integers come back exactly.
        let w: Vec<f32> = (-127..=127).map(|x| x as f32).collect();
        let (q, s) = quantize_q8(&w, 1, w.len());
        assert_eq!(s, vec![1.0]);
        assert!(q.iter().zip(&w).all(|(&a, &b)| a as f32 == b));
    }

    #[test]
    fn q4_layout_is_low_nibble_first() {
        // Values sitting exactly on levels (scale 1) come back exactly, codes low nibble first.
        let mut w = vec![Q4_LEVELS[7] as f32; 32];
        w[0] = 125.0; // code 15
        w[1] = -113.0; // code 0
        w[2] = 9.0; // code 8
        let (p, s) = quantize_q4(&w, 1, 32).unwrap();
        assert_eq!(s[0].to_f32(), 1.0);
        assert_eq!(p[0], 0x0f);
        assert_eq!(p[1], 0x78);
        assert_eq!(p[2], 0x77);
    }

    #[test]
    fn nearest_level_picks_the_nearest() {
        for y in -140..=140 {
            let y = y as f32 + 0.25;
            let c = nearest_level(y) as usize;
            let d = (y - Q4_LEVELS[c] as f32).abs();
            assert!(Q4_LEVELS.iter().all(|&l| (y - l as f32).abs() >= d), "{y}");
        }
    }

    #[test]
    fn zero_rows_quantize_to_zero() {
        let (q, s) = quantize_q8(&[0.0; 8], 2, 4);
        assert!(q.iter().all(|&x| x == 0) && s == vec![0.0, 0.0]);
        let (p, s) = quantize_q4(&[0.0; 32], 1, 32).unwrap();
        assert!(s[0] == f16::ZERO);
        let m = Matrix {
            rows: 1,
            cols: 32,
            weights: Weights::Q4 {
                packed: &p,
                scales: &s,
            },
        };
        assert!(m.to_f32_vec().iter().all(|&x| x == 0.0));
    }
}
