//! The C ABI (`include/quill.h`, contract in `docs/c-api.md`).
//!
//! Rules every exported function follows: its body runs inside [`guard`], so no panic crosses the
//! boundary; it returns a [`quill_status`]; on failure the message is kept for
//! [`quill_last_error`] on the calling thread; outputs are written only on success.
//!
//! This module starts with the library-wide functions (versions, status names, last error); the
//! model, session and generation handles are added as the runtime lands.

#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};

use crate::error::Error;

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
    /// The C status for this error.
    pub fn status(&self) -> quill_status {
        match self {
            Error::Io { .. } => QUILL_ERR_IO,
            Error::UnknownDtype { .. } | Error::UnsupportedVersion { .. } => QUILL_ERR_UNSUPPORTED,
            Error::BadConfig { .. } => QUILL_ERR_CONFIG,
            Error::InvalidArgument(_) => QUILL_ERR_INVALID_ARGUMENT,
            Error::Cancelled => QUILL_ERR_CANCELLED,
            _ => QUILL_ERR_FORMAT,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

// The handle functions of the C API (model, session, generate) are the callers of `guard` and
// `set_last_error`; until they land, only the tests below use them.
#[allow(dead_code)]
fn set_last_error(msg: &str) {
    // Interior NULs cannot be represented in a C string; show them instead of truncating.
    let c = CString::new(msg.replace('\0', "\\0")).expect("NULs were replaced");
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

#[allow(dead_code)]
/// Runs an exported body: catches panics, records the message of a failure, returns the status.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Error>) -> quill_status {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => QUILL_OK,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            e.status()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error: {what}"));
            QUILL_ERR_INTERNAL
        }
    }
}

/// The library version, `"MAJOR.MINOR.PATCH"`, a static string. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The version as `MAJOR * 10000 + MINOR * 100 + PATCH`, to compare with
/// `QUILL_VERSION_NUMBER` from the header. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_version_number() -> u32 {
    QUILL_VERSION_NUMBER
}

/// The ABI version of the library; compare with `QUILL_ABI_VERSION` from the header before use.
/// Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_abi_version() -> u32 {
    QUILL_ABI_VERSION
}

/// A static, human-readable name for a status ("QUILL_ERR_FORMAT"); "QUILL_ERR_UNKNOWN" for a
/// value this library does not define. Takes an `int` so that any value is safe to pass.
/// Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_status_str(status: c_int) -> *const c_char {
    let s: &'static str = match status {
        0 => "QUILL_OK\0",
        1 => "QUILL_ERR_INVALID_ARGUMENT\0",
        2 => "QUILL_ERR_IO\0",
        3 => "QUILL_ERR_FORMAT\0",
        4 => "QUILL_ERR_UNSUPPORTED\0",
        5 => "QUILL_ERR_CONFIG\0",
        6 => "QUILL_ERR_BUFFER_TOO_SMALL\0",
        7 => "QUILL_ERR_OUT_OF_MEMORY\0",
        8 => "QUILL_ERR_CANCELLED\0",
        9 => "QUILL_ERR_INTERNAL\0",
        _ => "QUILL_ERR_UNKNOWN\0",
    };
    s.as_ptr().cast()
}

/// The message of the last failed call on the calling thread ("" if none). The pointer stays
/// valid until the next failing quill call on the same thread; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn quill_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
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
    fn guard_catches_panics_and_keeps_messages() {
        let st = guard(|| panic!("boom"));
        assert_eq!(st, QUILL_ERR_INTERNAL);
        let msg = unsafe { CStr::from_ptr(quill_last_error()) };
        assert!(msg.to_str().unwrap().contains("boom"));
        let st = guard(|| Err(Error::InvalidArgument("nul\0inside".into())));
        assert_eq!(st, QUILL_ERR_INVALID_ARGUMENT);
        let msg = unsafe { CStr::from_ptr(quill_last_error()) };
        assert!(msg.to_str().unwrap().contains("nul\\0inside"));
    }
}
