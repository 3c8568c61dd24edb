//! Where quill's diagnostics go: a callback of the application's, else standard error.

use std::ffi::c_char;

use super::{c_string, guard, quill_status};

/// Log callback: `level` 1 = warning, 2 = information; `message` is NUL-terminated UTF-8 valid
/// during the call. It may call back into quill (also `quill_set_log_callback`).
pub type quill_log_fn =
    Option<unsafe extern "C" fn(user: *mut std::ffi::c_void, level: i32, message: *const c_char)>;

struct UserPtr(*mut std::ffi::c_void);

impl UserPtr {
    fn get(&self) -> *mut std::ffi::c_void {
        self.0
    }
}
// SAFETY: the caller of quill_set_log_callback promises its callback may run on any thread.
unsafe impl Send for UserPtr {}
unsafe impl Sync for UserPtr {}

/// Sends quill's diagnostics (warnings such as an unavailable `QUILL_FORCE_ISA` level, or a
/// model's default decoding lowered to fit a session) to `callback` instead of standard error;
/// NULL restores standard error. The callback runs on the thread that logs, with no lock of
/// quill's held. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn quill_set_log_callback(
    callback: quill_log_fn,
    user: *mut std::ffi::c_void,
) -> quill_status {
    guard(|| {
        match callback {
            None => crate::log::set_sink(None),
            Some(f) => {
                let user = UserPtr(user);
                crate::log::set_sink(Some(std::sync::Arc::new(move |level, msg| {
                    let c = c_string(msg);
                    // SAFETY: the caller's function, with a string valid for the call.
                    unsafe { f(user.get(), level as i32, c.as_ptr()) };
                })));
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::quill_status::*;
    use std::ffi::CStr;
    use std::sync::Mutex;

    static SEEN: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());

    #[test]
    fn log_callback_receives_warnings_and_may_call_back_into_quill() {
        unsafe extern "C" fn record(user: *mut std::ffi::c_void, level: i32, msg: *const c_char) {
            assert_eq!(user as usize, 7);
            let m = unsafe { CStr::from_ptr(msg) }.to_str().unwrap().to_string();
            SEEN.lock().unwrap().push((level, m));
            // Re-entering quill from the callback: replacing the callback itself must not
            // deadlock (the sink is called without a lock held).
            assert_eq!(quill_set_log_callback(None, std::ptr::null_mut()), QUILL_OK);
        }
        assert_eq!(quill_set_log_callback(Some(record), 7 as *mut _), QUILL_OK);
        crate::log::log(crate::log::Level::Warn, "careful");
        crate::log::log(
            crate::log::Level::Warn,
            "to stderr: the callback removed itself",
        );
        assert_eq!(*SEEN.lock().unwrap(), vec![(1, "careful".to_string())]);
    }
}
