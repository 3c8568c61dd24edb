//! Typed, bounds-checked views over the bytes of a model file.
//!
//! A [`TensorView`] is one safetensors tensor: name, dtype, shape and its bytes (in the mmap, in
//! the caller's buffer, or in an aligned copy). A [`Matrix`] is a weight matrix in any of the
//! layouts of `docs/format.md` §5 — F32, F16, BF16, Q8 (int8 + per-row scales) and Q4 (packed
//! int4 + per-group-of-32 scales) — ready for the kernels, which read it in place.
//! The scalar `dequantize_row` here is the definition of each layout; kernels are tested
//! against it.

pub mod bytes;

use half::{bf16, f16};

use crate::error::{Error, Result};
pub use bytes::{AlignedBuf, Element, cast_slice};

/// The element types of the safetensors format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
}

impl DType {
    /// Parses a safetensors dtype string ("F32", "BF16", ...).
    pub fn parse(s: &str) -> Option<DType> {
        Some(match s {
            "F64" => DType::F64,
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "I64" => DType::I64,
            "I32" => DType::I32,
            "I16" => DType::I16,
            "I8" => DType::I8,
            "U64" => DType::U64,
            "U32" => DType::U32,
            "U16" => DType::U16,
            "U8" => DType::U8,
            "BOOL" => DType::Bool,
            _ => return None,
        })
    }

    /// The safetensors dtype string.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F64 => "F64",
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::I16 => "I16",
            DType::I8 => "I8",
            DType::U64 => "U64",
            DType::U32 => "U32",
            DType::U16 => "U16",
            DType::U8 => "U8",
            DType::Bool => "BOOL",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tensor of a file: its bytes are validated against dtype and shape.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements as `T`; an error when the dtype is not `T`'s.
    pub fn as_slice<T: Element>(&self) -> Result<&'a [T]> {
        if self.dtype != T::DTYPE {
            return Err(Error::WrongTensorType {
                tensor: self.name.to_string(),
                expected: T::DTYPE.to_string(),
                found: self.dtype.to_string(),
            });
        }
        // The reader guarantees every tensor it hands out is 64-byte aligned and sized exactly.
        cast_slice(self.bytes).ok_or_else(|| Error::bad_tensor(self.name, "misaligned view"))
    }

    /// The elements converted to f32 (any float dtype); allocates. For small tensors (norms,
    /// biases) and for tools, not for weights on the hot path.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        Ok(match self.dtype {
            DType::F32 => self.as_slice::<f32>()?.to_vec(),
            DType::F16 => self.as_slice::<f16>()?.iter().map(|x| x.to_f32()).collect(),
            DType::BF16 => self
                .as_slice::<bf16>()?
                .iter()
                .map(|x| x.to_f32())
                .collect(),
            DType::F64 => self.as_slice::<f64>()?.iter().map(|&x| x as f32).collect(),
            other => {
                return Err(Error::WrongTensorType {
                    tensor: self.name.to_string(),
                    expected: "a float tensor (F32, F16, BF16, F64)".into(),
                    found: other.to_string(),
                });
            }
        })
    }
}

/// Number of 4-bit codes that share one scale in the Q4 layout.
pub const Q4_GROUP: usize = 32;

/// The 16 levels a 4-bit code stands for: value = `Q4_LEVELS[code] · scale`.
///
/// Not the uniform grid -8..7: these are the Lloyd–Max levels for groups of 32 Gaussian weights
/// normalized so that the largest magnitude is 127, rounded to integers (computed by
/// `tests/reference/q4_levels.py`). On Gaussian weights they give 7.4 % relative RMS error where
/// the best uniform symmetric grid gives 8.1 %, at the same size; being int8 values, they let
/// kernels expand codes with one table lookup (pshufb / tbl) and then use int8 dot products.
pub const Q4_LEVELS: [i8; 16] = [
    -113, -91, -73, -57, -42, -29, -16, -4, 9, 21, 35, 48, 64, 80, 100, 125,
];

/// The storage of a weight matrix `[rows, cols]` (rows = output features).
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    /// int8, row-major `[rows, cols]`, value = q · scales[row].
    Q8 {
        q: &'a [i8],
        scales: &'a [f32],
    },
    /// 4-bit codes, two per byte along a row (element 2j in the low nibble, 2j+1 in the high
    /// one); value = `Q4_LEVELS[code]` · scales[row, col / 32].
    Q4 {
        packed: &'a [u8],
        scales: &'a [f16],
    },
}

/// A weight matrix `[rows, cols]` viewed in place.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub rows: usize,
    pub cols: usize,
    pub weights: Weights<'a>,
}

impl Matrix<'_> {
    /// A short name of the storage type ("F32", "Q8", ...).
    pub fn kind(&self) -> &'static str {
        match self.weights {
            Weights::F32(_) => "F32",
            Weights::F16(_) => "F16",
            Weights::BF16(_) => "BF16",
            Weights::Q8 { .. } => "Q8",
            Weights::Q4 { .. } => "Q4",
        }
    }

    /// Writes row `r` as f32 into `out` (`out.len() == cols`). The reference definition of every
    /// layout.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let c = self.cols;
        assert!(
            r < self.rows && out.len() == c,
            "row {r} / len {} out of range",
            out.len()
        );
        match self.weights {
            Weights::F32(w) => out.copy_from_slice(&w[r * c..(r + 1) * c]),
            Weights::F16(w) => {
                for (o, x) in out.iter_mut().zip(&w[r * c..(r + 1) * c]) {
                    *o = x.to_f32();
                }
            }
            Weights::BF16(w) => {
                for (o, x) in out.iter_mut().zip(&w[r * c..(r + 1) * c]) {
                    *o = x.to_f32();
                }
            }
            Weights::Q8 { q, scales } => {
                let s = scales[r];
                for (o, &x) in out.iter_mut().zip(&q[r * c..(r + 1) * c]) {
                    *o = x as f32 * s;
                }
            }
            Weights::Q4 { packed, scales } => {
                let row = &packed[r * c / 2..(r + 1) * c / 2];
                let srow = &scales[r * c / Q4_GROUP..(r + 1) * c / Q4_GROUP];
                for (j, o) in out.iter_mut().enumerate() {
                    let byte = row[j / 2];
                    let nib = if j % 2 == 0 { byte & 0x0f } else { byte >> 4 };
                    *o = Q4_LEVELS[nib as usize] as f32 * srow[j / Q4_GROUP].to_f32();
                }
            }
        }
    }

    /// The whole matrix as f32, row-major; allocates.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        if self.cols > 0 {
            for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
                self.dequantize_row(r, row);
            }
        }
        out
    }
}
