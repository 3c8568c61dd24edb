//! The worker threads a model owns.
//!
//! quill never uses rayon's global pool, which the host application may also use: each `Pool`
//! is its own rayon pool, sized when the model is opened. One thread means no pool at all: the
//! work runs on the caller's thread. rayon's idle workers sleep on a condition variable after a
//! brief spin, so an idle model costs no CPU.

use super::Out;
use crate::error::{Error, Result};

/// Largest thread count accepted (far above any phone or edge box; guards absurd requests).
pub const MAX_THREADS: usize = 256;

pub struct Pool {
    threads: usize,
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} threads)", self.threads)
    }
}

impl Pool {
    /// A pool of `threads` workers; 0 means one per available core.
    pub fn new(threads: usize) -> Result<Pool> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n if n > MAX_THREADS => {
                return Err(Error::InvalidArgument(format!(
                    "threads = {n}: at most {MAX_THREADS}"
                )));
            }
            n => n,
        };
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("quill-{i}"))
                    .build()
                    .map_err(|e| {
                        Error::InvalidArgument(format!("cannot start {threads} threads: {e}"))
                    })?,
            )
        } else {
            None
        };
        Ok(Pool { threads, pool })
    }

    /// A pool that runs everything on the caller's thread.
    pub fn single() -> Pool {
        Pool {
            threads: 1,
            pool: None,
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` with this pool's workers serving rayon's parallel iterators inside it. With one
    /// thread there is no pool: `f` runs on the caller's thread, and callers should then loop
    /// sequentially instead of using parallel iterators (they would reach rayon's global pool).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Runs `f(first_column, window)` over column windows of `out` of at least `min_cols` columns
    /// (the last may be shorter), one task per thread at most. Splits by `rayon::join` inside the
    /// pool, which needs no heap allocation (a decoding step allocates nothing).
    pub fn split_columns(&self, out: Out, min_cols: usize, f: &(dyn Fn(usize, Out) + Sync)) {
        let n = out.cols();
        let tasks = (n / min_cols.max(1)).clamp(1, self.threads);
        match &self.pool {
            Some(pool) if tasks > 1 => {
                // Column counts rounded to 16 so SIMD kernels see whole blocks where possible.
                let per = n.div_ceil(tasks).next_multiple_of(16);
                pool.install(|| split(out, 0, per, f));
            }
            _ => f(0, out),
        }
    }
}

/// Halves `out` until each part has at most `per` columns, running the halves with `join`.
fn split(out: Out, c0: usize, per: usize, f: &(dyn Fn(usize, Out) + Sync)) {
    let n = out.cols();
    if n <= per {
        f(c0, out);
        return;
    }
    let half = (n.div_ceil(2)).next_multiple_of(16).min(n);
    let (left, right) = out.split_cols(half);
    rayon::join(
        || split(left, c0, per, f),
        || split(right, c0 + half, per, f),
    );
}
