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

    /// Runs `f` on one of this pool's workers, with the workers serving rayon's parallel
    /// iterators and joins inside it (inline when already on one). With one thread there is no
    /// pool: `f` runs on the caller's thread, and callers should then loop sequentially instead
    /// of using parallel iterators (they would reach rayon's global pool).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// The least work (weight bytes × activation rows) worth a task of its own when a product is
    /// split over the workers. Called on one of this pool's workers (a session runs its passes
    /// there), a split is a `rayon::join`: the calling worker runs one half and takes the other
    /// back if no idle worker stole it, so a small split costs about a microsecond. Called from
    /// any other thread, every split hands the whole product to the pool and waits for it (tens of
    /// µs, two thread wake-ups), so only large products are split.
    pub fn split_work(&self) -> usize {
        match &self.pool {
            Some(pool) if pool.current_thread_index().is_some() => 16 * 1024,
            _ => 512 * 1024,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn splits_are_finer_on_the_pools_own_workers() {
        let two = Pool::new(2).unwrap();
        let outside = two.split_work();
        assert!(two.install(|| two.split_work()) < outside);
        // Another pool's worker is not this pool's: the coarse threshold applies there.
        let other = Pool::new(2).unwrap();
        assert_eq!(other.install(|| two.split_work()), outside);
        assert_eq!(Pool::single().split_work(), outside);
        // A split on a worker runs every column once, in tasks of at least `min_cols`.
        let mut y = vec![0f32; 3 * 100];
        let tasks = AtomicUsize::new(0);
        two.install(|| {
            two.split_columns(Out::new(&mut y, 3, 100), 16, &|c0, mut part| {
                tasks.fetch_add(1, Ordering::Relaxed);
                for r in 0..part.rows() {
                    for (j, v) in part.row(r).iter_mut().enumerate() {
                        *v += (c0 + j) as f32;
                    }
                }
            })
        });
        assert_eq!(tasks.load(Ordering::Relaxed), 2);
        for row in y.chunks(100) {
            assert!(row.iter().enumerate().all(|(j, &v)| v == j as f32));
        }
    }
}
