//! Where quill's few diagnostics go: a callback the host application installs (the C API's
//! `quill_set_log_callback`), else standard error.

use std::sync::{Arc, RwLock};

/// Severity of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    Warn = 1,
    Info = 2,
}

/// A destination for messages; it may run on any thread.
pub type Sink = Arc<dyn Fn(Level, &str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Routes messages to `sink` (None: back to standard error).
pub fn set_sink(sink: Option<Sink>) {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = sink;
}

pub(crate) fn log(level: Level, msg: &str) {
    // The sink is called with no lock held, so it may log or replace itself.
    let sink = SINK.read().unwrap_or_else(|e| e.into_inner()).clone();
    match sink {
        Some(f) => f(level, msg),
        None if level == Level::Warn => eprintln!("quill: {msg}"),
        None => {}
    }
}
