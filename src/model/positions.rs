//! Position information: sinusoidal tables (computed a chunk at a time on first use), rotary
//! tables, T5's relative-position buckets and bias tables. Shared by the runtime and the trainer,
//! each checked against its reference formula in the tests below.

use crate::format::RopeScaling;

/// The rows of [`sinusoids`], computed `SINUSOID_CHUNK` rows at a time when a position is first
/// used: a whole table (two of `[max_positions, d]` for an encoder-decoder, ~1 M `sin_cos` for
/// Marian) would be most of the time it takes to open a model.
pub(crate) struct Sinusoids {
    rows: usize,
    d: usize,
    chunks: Vec<std::sync::OnceLock<Vec<f32>>>,
}

const SINUSOID_CHUNK: usize = 64;

impl Sinusoids {
    pub fn new(rows: usize, d: usize) -> Self {
        Sinusoids {
            rows,
            d,
            chunks: (0..rows.div_ceil(SINUSOID_CHUNK))
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        }
    }

    /// How many positions the table has.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row `pos` (< `rows()`), equal to row `pos` of `sinusoids(rows, d)`.
    pub fn row(&self, pos: usize) -> &[f32] {
        assert!(
            pos < self.rows,
            "position {pos} past the {} sinusoids",
            self.rows
        );
        let r = pos % SINUSOID_CHUNK;
        &self.chunk(pos / SINUSOID_CHUNK)[r * self.d..(r + 1) * self.d]
    }

    /// Computes the rows below `upto` now (sessions call it when they are made, so that decoding
    /// never allocates).
    pub fn prepare(&self, upto: usize) {
        for c in 0..upto.min(self.rows).div_ceil(SINUSOID_CHUNK) {
            self.chunk(c);
        }
    }

    fn chunk(&self, c: usize) -> &[f32] {
        self.chunks[c].get_or_init(|| {
            let first = c * SINUSOID_CHUNK;
            let n = (self.rows - first).min(SINUSOID_CHUNK);
            sinusoid_rows(first, n, self.d)
        })
    }
}

/// Sinusoidal positions as in "Attention Is All You Need" with the Marian / fairseq layout:
/// row `p`, column `i < d/2`: `sin(p / 10000^(2i/d))`; column `d/2 + i`: the matching cosine.
/// Computed in f64, stored as f32.
#[cfg_attr(not(any(test, feature = "train")), allow(dead_code))]
pub(crate) fn sinusoids(rows: usize, d: usize) -> Vec<f32> {
    sinusoid_rows(0, rows, d)
}

/// Rows `first..first + n` of [`sinusoids`].
fn sinusoid_rows(first: usize, n: usize, d: usize) -> Vec<f32> {
    let half = d / 2;
    let div: Vec<f64> = (0..half)
        .map(|i| 10000f64.powf(2.0 * i as f64 / d as f64))
        .collect();
    let mut t = vec![0f32; n * d];
    // Row `first` directly, each next row by rotating the previous one by `1 / div` (angle
    // addition in f64): two `sin_cos` per column instead of one per entry, which made most of
    // the time it takes to make a session. Over a chunk the f64 values drift by ~1e-14 from
    // `sin(p / div)`, far below an f32 ulp (the test below bounds the difference).
    for (i, &dv) in div.iter().enumerate() {
        let (mut s, mut c) = (first as f64 / dv).sin_cos();
        let (ds, dc) = (1.0 / dv).sin_cos();
        for r in 0..n {
            t[r * d + i] = s as f32;
            t[r * d + half + i] = c as f32;
            (s, c) = (s * dc + c * ds, c * dc - s * ds);
        }
    }
    t
}

/// Rotary tables as Hugging Face computes them (in f32): `inv_freq[i] = 1 / θ^(2i/d)` (scaled:
/// [`RopeScaling::inverse_frequencies`]), angle = position · inv_freq[i]; cos and sin times the
/// scaling's attention factor.
pub(crate) fn rope_tables(
    len: usize,
    hd: usize,
    theta: f64,
    scaling: Option<&RopeScaling>,
) -> (Vec<f32>, Vec<f32>) {
    rope_tables_of(len, hd, theta, scaling, false)
}

/// [`rope_tables`] with LongRoPE's long factors when `long`.
pub(crate) fn rope_tables_of(
    len: usize,
    hd: usize,
    theta: f64,
    scaling: Option<&RopeScaling>,
    long: bool,
) -> (Vec<f32>, Vec<f32>) {
    let half = hd / 2;
    let inv = RopeScaling::frequencies(theta, hd, scaling, long);
    let mscale = scaling.map_or(1.0, RopeScaling::attention_factor);
    let mut cos = vec![0f32; len * half];
    let mut sin = vec![0f32; len * half];
    for p in 0..len {
        for i in 0..half {
            let a = p as f32 * inv[i];
            cos[p * half + i] = a.cos() * mscale;
            sin[p * half + i] = a.sin() * mscale;
        }
    }
    (cos, sin)
}

/// T5's bucket of a relative position (`key − query`), as in the reference implementation
/// (logarithmic buckets beyond `buckets / 2`, computed in f32).
pub(crate) fn t5_bucket(
    rel: i64,
    bidirectional: bool,
    buckets: usize,
    max_distance: usize,
) -> usize {
    let mut nb = buckets as i64;
    let mut ret = 0i64;
    let n = if bidirectional {
        nb /= 2;
        if rel > 0 {
            ret += nb;
        }
        rel.abs()
    } else {
        (-rel).max(0)
    };
    let max_exact = nb / 2;
    if n < max_exact {
        return (ret + n) as usize;
    }
    let log_ratio = (max_distance as f64 / max_exact as f64).ln() as f32;
    let large = max_exact
        + ((n as f32 / max_exact as f32).ln() / log_ratio * (nb - max_exact) as f32) as i64;
    (ret + large.min(nb - 1)) as usize
}

/// `[heads][2 · span]`: the bias of head `h` for relative position `rel` at `h · 2span + span + rel`,
/// from a stack's `[buckets, heads]` bias weights.
pub(crate) fn rel_table(
    weights: &[f32],
    heads: usize,
    buckets: usize,
    max_distance: usize,
    span: usize,
    bidirectional: bool,
) -> Vec<f32> {
    let mut t = vec![0f32; heads * 2 * span];
    for i in 0..2 * span {
        let rel = i as i64 - span as i64;
        let bucket = t5_bucket(rel, bidirectional, buckets, max_distance);
        for h in 0..heads {
            t[h * 2 * span + i] = weights[bucket * heads + h];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Hugging Face formula (Marian's `_init_weight`): `sin` / `cos` of `p / 10000^(2i/d)`
    /// in f64, rounded to f32, entry by entry.
    fn direct(rows: usize, d: usize) -> Vec<f32> {
        let half = d / 2;
        let mut t = vec![0f32; rows * d];
        for p in 0..rows {
            for i in 0..half {
                let a = p as f64 / 10000f64.powf(2.0 * i as f64 / d as f64);
                t[p * d + i] = a.sin() as f32;
                t[p * d + half + i] = a.cos() as f32;
            }
        }
        t
    }

    #[test]
    fn sinusoids_match_the_direct_formula() {
        // Marian-base's table (d 512, 512 positions) and an odd-sized one read through chunks.
        for (rows, d) in [(512, 512), (130, 6)] {
            let want = direct(rows, d);
            let table = Sinusoids::new(rows, d);
            let mut differ = 0;
            for p in 0..rows {
                for (i, (&a, &b)) in table
                    .row(p)
                    .iter()
                    .zip(&want[p * d..(p + 1) * d])
                    .enumerate()
                {
                    // At most one f32 ulp apart, and only where the exact value lies within
                    // the f64 drift of a rounding boundary.
                    let ulps = (a.to_bits() as i64 - b.to_bits() as i64).abs();
                    assert!(
                        ulps <= 1 || (a - b).abs() < 1e-12,
                        "row {p} col {i}: {a} vs {b}"
                    );
                    differ += (a != b) as usize;
                }
            }
            assert!(
                differ * 10_000 <= rows * d,
                "{differ} of {} entries differ",
                rows * d
            );
            assert_eq!(sinusoids(rows, d), {
                (0..rows)
                    .flat_map(|p| table.row(p).to_vec())
                    .collect::<Vec<_>>()
            });
        }
    }

    #[test]
    fn t5_buckets_match_the_reference_values() {
        // transformers 5.24's T5Attention._relative_position_bucket (32 buckets, max distance
        // 128), printed by tests/reference/t5_buckets.py.
        let bi = [
            (-200, 15),
            (-100, 15),
            (-20, 10),
            (-8, 8),
            (-7, 7),
            (-1, 1),
            (0, 0),
            (1, 17),
            (7, 23),
            (8, 24),
            (20, 26),
            (100, 31),
            (200, 31),
        ];
        for (rel, b) in bi {
            assert_eq!(t5_bucket(rel, true, 32, 128), b, "bidirectional {rel}");
        }
        let causal = [
            (-200, 31),
            (-100, 30),
            (-40, 23),
            (-16, 16),
            (-15, 15),
            (-1, 1),
            (0, 0),
            (5, 0),
        ];
        for (rel, b) in causal {
            assert_eq!(t5_bucket(rel, false, 32, 128), b, "causal {rel}");
        }
    }
}
