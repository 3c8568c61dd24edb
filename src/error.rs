//! quill's error type.
//!
//! Every fallible function in the crate returns [`Result`]. Each variant names what was expected,
//! what was found and, where it helps, what to do; the C API maps a variant to a stable
//! `quill_status` code with [`Error::status`] and exposes the `Display` text as the message.

use std::fmt;

/// Result with quill's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in quill, by kind. The message carries the specifics (the tensor,
/// the field, the numbers); the variant is what callers match on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused a file operation.
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The file is shorter than its own header says it is.
    Truncated(String),
    /// The header is not valid JSON, not UTF-8, or not shaped like a safetensors header.
    BadHeader(String),
    /// A tensor's dtype string is not one quill knows.
    UnknownDtype { tensor: String, dtype: String },
    /// A tensor's shape does not match its byte range, or its offsets are out of range or overlap.
    BadTensor { tensor: String, reason: String },
    /// `quill.format` names a major version this build cannot read.
    UnsupportedVersion { found: String, supported: u32 },
    /// A metadata key is missing or malformed (`quill.arch`, `quill.config`, ...).
    BadMetadata { key: String, reason: String },
    /// The model configuration is missing a field, has a wrong value, or contradicts itself.
    BadConfig { field: String, reason: String },
    /// A quantized weight is incomplete (no scales) or its scales do not fit it.
    BadQuantization { tensor: String, reason: String },
    /// A tensor was asked for that the file does not have.
    MissingTensor(String),
    /// A tensor exists but has a different dtype or shape than the caller needs.
    WrongTensorType {
        tensor: String,
        expected: String,
        found: String,
    },
    /// An argument is out of its allowed range.
    InvalidArgument(String),
    /// The work was cancelled through a `CancelHandle`.
    Cancelled,
    /// A caller's buffer is too small; the size it needs (elements or bytes).
    BufferTooSmall(usize),
    /// This build lacks a feature the call needs.
    Unsupported(String),
    /// The work needs more memory than its budget allows or the system will give.
    OutOfMemory(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_tensor(tensor: &str, reason: impl Into<String>) -> Self {
        Error::BadTensor {
            tensor: tensor.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_meta(key: &str, reason: impl Into<String>) -> Self {
        Error::BadMetadata {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_config(field: &str, reason: impl Into<String>) -> Self {
        Error::BadConfig {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_quant(tensor: &str, reason: impl Into<String>) -> Self {
        Error::BadQuantization {
            tensor: tensor.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{path}: {source}"),
            Error::Truncated(m) => write!(f, "truncated file: {m}"),
            Error::BadHeader(m) => write!(f, "malformed header: {m}"),
            Error::UnknownDtype { tensor, dtype } => write!(
                f,
                "tensor `{tensor}`: unknown dtype \"{dtype}\" (quill reads F64, F32, F16, BF16, \
                 I64, I32, I16, I8, U64, U32, U16, U8, BOOL)"
            ),
            Error::BadTensor { tensor, reason } => write!(f, "tensor `{tensor}`: {reason}"),
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "expected quill.format {supported}, found \"{found}\": this file needs a quill \
                 that reads format {found}"
            ),
            Error::BadMetadata { key, reason } => write!(f, "metadata `{key}`: {reason}"),
            Error::BadConfig { field, reason } => write!(f, "config field `{field}`: {reason}"),
            Error::BadQuantization { tensor, reason } => {
                write!(f, "quantized tensor `{tensor}`: {reason}")
            }
            Error::MissingTensor(t) => write!(f, "tensor `{t}` not found in the model file"),
            Error::WrongTensorType {
                tensor,
                expected,
                found,
            } => write!(f, "tensor `{tensor}`: expected {expected}, found {found}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Cancelled => write!(f, "cancelled"),
            Error::BufferTooSmall(n) => write!(f, "buffer too small: {n} needed"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            Error::OutOfMemory(m) => write!(f, "out of memory: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
