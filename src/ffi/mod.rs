//! The C ABI (`include/quill.h`, contract in `docs/c-api.md`): marshalling only. What a default
//! is and what is valid lives below (`decode::params`, `decode::text`, `model`), so the C API, the
//! CLI and the Rust API cannot drift apart.
//!
//! Rules every exported function follows: its body runs inside [`guard`] (or [`guard_value`] for
//! the few that return a value instead of a status), so no panic crosses the boundary; on failure
//! the message is kept for [`quill_last_error`] on the calling thread; outputs are written only on
//! success. Parameter structs are versioned by their first field, `struct_size`: quill reads and
//! writes at most the caller's `struct_size` bytes ([`read_versioned`], [`write_versioned`]).
//!
//! One file per object, as the header groups them: this file (status, versions, messages, the
//! panic boundary), [`model`], [`session`] (limits, cancellation, the low-level loop),
//! [`tokenize`], [`generate`] (decoding parameters, generation, chat), [`result`], [`log`].

#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};

use crate::error::Error;

// One file per object, in the header's order: cbindgen follows these declarations (the
// comments between them also keep rustfmt from sorting them).
// Models: open, describe, free.
pub mod model;
// Sessions: limits, cancellation, the low-level loop.
pub mod session;
// Text and ids.
pub mod tokenize;
// Decoding parameters, generation, chat.
pub mod generate;
// What a generation produced.
pub mod result;
// Diagnostics.
pub mod log;

pub use generate::*;
pub use log::*;
pub use model::*;
pub use result::*;
pub use session::*;
pub use tokenize::*;

/// Major version of the library (`MAJOR.MINOR.PATCH`).
pub const QUILL_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const QUILL_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const QUILL_VERSION_PATCH: u32 = 0;
/// The version as one comparable number: `MAJOR * 10000 + MINOR * 100 + PATCH`.
pub const QUILL_VERSION_NUMBER: u32 =
    QUILL_VERSION_MAJOR * 10000 + QUILL_VERSION_MINOR * 100 + QUILL_VERSION_PATCH;
/// The ABI this header describes. A library whose `quill_abi_version()` differs is incompatible.
pub const QUILL_ABI_VERSION: u32 = 1;

/// Result of every fallible function. Values are fixed forever; new ones are only appended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum quill_status {
    /// Success.
    QUILL_OK = 0,
    /// An argument is NULL, out of range, not UTF-8, or a params struct has a wrong size.
    QUILL_ERR_INVALID_ARGUMENT = 1,
    /// The operating system refused a file operation.
    QUILL_ERR_IO = 2,
    /// The model file is malformed, truncated or inconsistent.
    QUILL_ERR_FORMAT = 3,
    /// The model file needs a feature or format version this build does not have.
    QUILL_ERR_UNSUPPORTED = 4,
    /// The model configuration is invalid.
    QUILL_ERR_CONFIG = 5,
    /// A caller buffer is too small; the needed size was reported.
    QUILL_ERR_BUFFER_TOO_SMALL = 6,
    /// Memory could not be allocated.
    QUILL_ERR_OUT_OF_MEMORY = 7,
    /// The operation was cancelled.
    QUILL_ERR_CANCELLED = 8,
    /// A bug in quill was caught at the boundary (please report it with the message).
    QUILL_ERR_INTERNAL = 9,
}

use quill_status::*;

impl Error {
    /// The C status for this error. Every variant is named: a new one must choose its status.
    pub fn status(&self) -> quill_status {
        match self {
            Error::Io { .. } => QUILL_ERR_IO,
            Error::Truncated(_)
            | Error::BadHeader(_)
            | Error::BadTensor { .. }
            | Error::BadMetadata { .. }
            | Error::BadQuantization { .. }
            | Error::MissingTensor(_)
            | Error::WrongTensorType { .. } => QUILL_ERR_FORMAT,
            Error::UnknownDtype { .. } | Error::UnsupportedVersion { .. } => QUILL_ERR_UNSUPPORTED,
            Error::Unsupported(_) => QUILL_ERR_UNSUPPORTED,
            Error::BadConfig { .. } => QUILL_ERR_CONFIG,
            Error::InvalidArgument(_) => QUILL_ERR_INVALID_ARGUMENT,
            Error::BufferTooSmall(_) => QUILL_ERR_BUFFER_TOO_SMALL,
            Error::Cancelled => QUILL_ERR_CANCELLED,
            Error::OutOfMemory(_) => QUILL_ERR_OUT_OF_MEMORY,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    // Interior NULs cannot be represented in a C string; show them instead of truncating.
    let c = CString::new(msg.replace('\0', "\\0")).expect("NULs were replaced");
    // During thread teardown the message has nowhere to go; the status still tells.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs an exported body: catches panics, records the message of a failure, returns the status.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Error>) -> quill_status {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => QUILL_OK,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            e.status()
        }
        Err(panic) => {
            set_last_error(&format!(
                "internal error (a bug in quill; please report it): {}",
                panic_message(panic)
            ));
            QUILL_ERR_INTERNAL
        }
    }
}

/// Runs an exported body that returns a value rather than a status; a panic gives `fallback`.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// The library version, `"MAJOR.MINOR.PATCH"`, a static string. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_version() -> *const c_char {
    guard_value(c"".as_ptr(), || {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    })
}

/// The version as `MAJOR * 10000 + MINOR * 100 + PATCH`, to compare with
/// `QUILL_VERSION_NUMBER` from the header. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_version_number() -> u32 {
    guard_value(0, || QUILL_VERSION_NUMBER)
}

/// The ABI version of the library; compare with `QUILL_ABI_VERSION` from the header before use.
/// Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_abi_version() -> u32 {
    guard_value(0, || QUILL_ABI_VERSION)
}

/// A static, human-readable name for a status ("QUILL_ERR_FORMAT"); "QUILL_ERR_UNKNOWN" for a
/// value this library does not define. Takes an `int` so that any value is safe to pass.
/// Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_status_str(status: c_int) -> *const c_char {
    guard_value(c"QUILL_ERR_UNKNOWN".as_ptr(), || {
        let s: &'static std::ffi::CStr = match status {
            0 => c"QUILL_OK",
            1 => c"QUILL_ERR_INVALID_ARGUMENT",
            2 => c"QUILL_ERR_IO",
            3 => c"QUILL_ERR_FORMAT",
            4 => c"QUILL_ERR_UNSUPPORTED",
            5 => c"QUILL_ERR_CONFIG",
            6 => c"QUILL_ERR_BUFFER_TOO_SMALL",
            7 => c"QUILL_ERR_OUT_OF_MEMORY",
            8 => c"QUILL_ERR_CANCELLED",
            9 => c"QUILL_ERR_INTERNAL",
            _ => c"QUILL_ERR_UNKNOWN",
        };
        s.as_ptr()
    })
}

/// The message of the last failed call on the calling thread ("" if none). The pointer stays
/// valid until the next failing quill call on the same thread; copy it to keep it. Safe to call
/// at any time, also while the thread is exiting (then it returns "").
#[unsafe(no_mangle)]
pub extern "C" fn quill_last_error() -> *const c_char {
    guard_value(c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|e| e.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    })
}

// ------------------------------------------------------------------------------------------
// Helpers shared by the object files.

pub(crate) fn arg(what: &str) -> Error {
    Error::InvalidArgument(format!("{what} is NULL"))
}

/// A parameter struct of the C API: `#[repr(C)]`, plain integers, floats and pointers (valid for
/// any bytes), whose first field is `size_t struct_size`.
///
/// # Safety
/// Implementors are `#[repr(C)]` with `struct_size: usize` first and no field invalid for any
/// bit pattern (no references, bools or enums).
pub(crate) unsafe trait Versioned: Copy {
    /// `sizeof` the struct in the first release that had it: the least a caller may pass.
    const FIRST_SIZE: usize;
    /// The name callers know it by, for messages.
    const NAME: &'static str;
}

/// The caller's `struct_size`, checked to be at least the first release's.
///
/// # Safety
/// `p` is non-NULL and points at a readable `size_t`.
unsafe fn caller_size<T: Versioned>(p: *const T) -> Result<usize, Error> {
    // SAFETY: caller contract; struct_size is the first field.
    let size = unsafe { p.cast::<usize>().read_unaligned() };
    if size < T::FIRST_SIZE {
        return Err(Error::InvalidArgument(format!(
            "{}.struct_size is {size}, expected at least {} (sizeof({}) in the first release): \
             set it to sizeof({}), or fill the struct with its _init function",
            T::NAME,
            T::FIRST_SIZE,
            T::NAME,
            T::NAME
        )));
    }
    Ok(size)
}

/// Reads a caller's struct: its `struct_size` bytes (at least the first release's size; of a
/// larger struct from a newer header, the fields this library knows) over `defaults`, so the
/// fields an older caller's header lacks keep their defaults.
///
/// # Safety
/// `p` is NULL or points at `struct_size` readable bytes.
pub(crate) unsafe fn read_versioned<T: Versioned>(p: *const T, defaults: T) -> Result<T, Error> {
    if p.is_null() {
        return Err(arg(T::NAME));
    }
    let size = unsafe { caller_size(p) }?;
    let n = size.min(std::mem::size_of::<T>());
    let mut out = defaults;
    // SAFETY: `n` bytes are readable at `p` (the caller's struct) and writable at `out`; T is
    // valid for any bytes (trait contract).
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut out as *mut T).cast::<u8>(), n) };
    Ok(out)
}

/// Writes `v` into a caller's struct of `size` bytes: at most `size` bytes (at most the whole of
/// `T`), with `struct_size` set to the bytes written. `size` below the first release's size is
/// an error.
///
/// # Safety
/// `p` is NULL or points at `size` writable bytes.
pub(crate) unsafe fn write_versioned<T: Versioned>(
    p: *mut T,
    size: usize,
    v: T,
) -> Result<(), Error> {
    if p.is_null() {
        return Err(arg(T::NAME));
    }
    if size < T::FIRST_SIZE {
        return Err(Error::InvalidArgument(format!(
            "size {size} for {}: expected at least {} (sizeof({}) in the first release)",
            T::NAME,
            T::FIRST_SIZE,
            T::NAME
        )));
    }
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: caller contract: `n <= size` bytes are writable at `p`; the copy is untyped.
    unsafe {
        std::ptr::copy_nonoverlapping((&v as *const T).cast::<u8>(), p.cast::<u8>(), n);
        p.cast::<usize>().write_unaligned(n);
    }
    Ok(())
}

/// Writes `v` into a caller's struct whose `struct_size` the caller set (size-in, as for
/// `quill_model_info_get`).
///
/// # Safety
/// `p` is NULL or points at a struct of `struct_size` writable bytes.
pub(crate) unsafe fn write_sized<T: Versioned>(p: *mut T, v: T) -> Result<(), Error> {
    if p.is_null() {
        return Err(arg(T::NAME));
    }
    let size = unsafe { caller_size(p) }?;
    unsafe { write_versioned(p, size, v) }
}

/// Longest text `quill_tokenize` takes: tokenizing costs about 100 bytes of transient memory
/// per input byte, so this bounds it near 1.6 GiB; split longer texts.
pub const QUILL_MAX_TEXT_BYTES: usize = 16 << 20;

/// Bytes per token allowed in a generation's input text: a text longer than
/// `max_input_len × QUILL_BYTES_PER_TOKEN` is refused before it is tokenized (it could only be
/// refused after, for having more than `max_input_len` tokens).
pub const QUILL_BYTES_PER_TOKEN: usize = 64;

/// A UTF-8 string of at most `max` bytes (checked before validating it).
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
pub(crate) unsafe fn c_text<'a>(
    s: *const c_char,
    what: &str,
    max: usize,
) -> Result<&'a str, Error> {
    if s.is_null() {
        return Err(arg(what));
    }
    // SAFETY: caller contract.
    let bytes = unsafe { std::ffi::CStr::from_ptr(s) }.to_bytes();
    if bytes.len() > max {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes, more than the {max} taken here",
            bytes.len()
        )));
    }
    std::str::from_utf8(bytes)
        .map_err(|e| Error::InvalidArgument(format!("{what} is not valid UTF-8: {e}")))
}

/// Writes `v` through `out` (checked non-NULL).
pub(crate) fn put<T>(out: *mut T, v: T, what: &str) -> Result<(), Error> {
    if out.is_null() {
        return Err(arg(what));
    }
    // SAFETY: non-NULL, and the caller provides writable storage for a T.
    unsafe { out.write(v) };
    Ok(())
}

/// Copies `v` into the caller's buffer `buf` of `capacity` ids and its length into `*n` (named
/// `buf_name` and `n_name` in errors). The length is written also when the buffer is too small
/// (`QUILL_ERR_BUFFER_TOO_SMALL`: the size to ask for); a NULL buffer with a nonzero capacity,
/// or a NULL `n`, is an invalid argument and nothing is written.
pub(crate) fn fill_ids(
    v: &[u32],
    buf: *mut u32,
    capacity: usize,
    n: *mut usize,
    (buf_name, n_name): (&str, &str),
) -> Result<(), Error> {
    if buf.is_null() && capacity > 0 {
        return Err(arg(buf_name));
    }
    put(n, v.len(), n_name)?;
    if v.len() > capacity {
        return Err(Error::BufferTooSmall(v.len()));
    }
    // SAFETY: `buf` is writable for `capacity >= v.len()` ids (contract), and non-NULL when
    // `v` is not empty (NULL only with capacity 0).
    if !v.is_empty() {
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), buf, v.len()) };
    }
    Ok(())
}

/// A C string of `s` for the caller to read (NULs, which C cannot hold, removed).
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "")).expect("NULs removed")
}

/// Drops a handle made by `Box::into_raw` (NULL is fine); a panic in a destructor is caught.
///
/// # Safety
/// `p` is NULL or a live handle of this library not used by any other call.
pub(crate) unsafe fn free_boxed<T>(p: *mut T) {
    if !p.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(unsafe { Box::from_raw(p) })
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn version_constants_match_cargo() {
        let v = format!("{QUILL_VERSION_MAJOR}.{QUILL_VERSION_MINOR}.{QUILL_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        let c = unsafe { CStr::from_ptr(quill_version()) };
        assert_eq!(c.to_str().unwrap(), v);
    }

    #[test]
    fn status_names_cover_every_status() {
        for (s, name) in [
            (QUILL_OK, "QUILL_OK"),
            (QUILL_ERR_INTERNAL, "QUILL_ERR_INTERNAL"),
        ] {
            let c = unsafe { CStr::from_ptr(quill_status_str(s as c_int)) };
            assert_eq!(c.to_str().unwrap(), name);
        }
        let c = unsafe { CStr::from_ptr(quill_status_str(-5)) };
        assert_eq!(c.to_str().unwrap(), "QUILL_ERR_UNKNOWN");
    }

    #[test]
    fn each_error_kind_has_its_own_status() {
        let cases = [
            (Error::Truncated("x".into()), QUILL_ERR_FORMAT),
            (
                Error::BadConfig {
                    field: "f".into(),
                    reason: "r".into(),
                },
                QUILL_ERR_CONFIG,
            ),
            (Error::Unsupported("x".into()), QUILL_ERR_UNSUPPORTED),
            (Error::OutOfMemory("x".into()), QUILL_ERR_OUT_OF_MEMORY),
            (Error::Cancelled, QUILL_ERR_CANCELLED),
            (Error::BufferTooSmall(3), QUILL_ERR_BUFFER_TOO_SMALL),
            (
                Error::InvalidArgument("x".into()),
                QUILL_ERR_INVALID_ARGUMENT,
            ),
        ];
        for (e, s) in cases {
            assert_eq!(e.status(), s, "{e}");
        }
    }

    #[test]
    fn guard_catches_panics_and_keeps_messages() {
        let st = guard(|| panic!("boom"));
        assert_eq!(st, QUILL_ERR_INTERNAL);
        let msg = unsafe { CStr::from_ptr(quill_last_error()) };
        assert!(msg.to_str().unwrap().contains("boom"));
        let st = guard(|| Err(Error::InvalidArgument("nul\0inside".into())));
        assert_eq!(st, QUILL_ERR_INVALID_ARGUMENT);
        let msg = unsafe { CStr::from_ptr(quill_last_error()) };
        assert!(msg.to_str().unwrap().contains("nul\\0inside"));
        assert_eq!(guard_value(7, || -> i32 { panic!("boom") }), 7);
    }

    /// Every `extern "C"` function's body goes through the panic boundary: `guard`,
    /// `guard_value` or `free_boxed` (which catches the destructor's panic).
    #[test]
    fn every_export_runs_inside_the_panic_boundary() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/ffi");
        let mut exports = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let src = std::fs::read_to_string(&path).unwrap();
            let mut rest = src.as_str();
            while let Some(at) = rest.find("extern \"C\" fn quill_") {
                rest = &rest[at..];
                let name: String = rest["extern \"C\" fn ".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let body = &rest[rest.find('{').unwrap() + 1..];
                let mut first = body.trim_start();
                while first.starts_with("//") {
                    first = first[first.find('\n').unwrap()..].trim_start();
                }
                assert!(
                    ["guard(", "guard_value(", "unsafe { free_boxed("]
                        .iter()
                        .any(|g| first.starts_with(g)),
                    "{}: {name} does not start with guard(...): {}",
                    path.display(),
                    &first[..first.len().min(60)]
                );
                exports += 1;
                rest = body;
            }
        }
        assert!(exports >= 32, "found only {exports} exports");
    }
}
