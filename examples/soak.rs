//! Soak test of the C API: mixed random generations from several threads with random
//! cancellations, for a fixed time, recording the process's resident memory.
//!
//! ```sh
//! cargo run --release --example soak -- models/en-de-ui.quill 3600 soak.csv [threads]
//! ```
//!
//! Each worker thread owns a session that it replaces now and then (random limits), and calls
//! `quill_generate_text`, `quill_generate_ids` or `quill_chat_turn` with random decoding
//! parameters (greedy, beam, sampling; some invalid), random inputs (UI messages, empty, long,
//! not UTF-8, ids out of range) and sometimes a streaming callback that stops early. Another
//! thread cancels a random worker's session at random moments. Every 5 s a line goes to the CSV:
//! seconds, RSS in MiB, calls, successes, cancellations (or callback stops), refusals.
//!
//! It fails (exit 1) if any call returns `QUILL_ERR_INTERNAL` (a panic reached the boundary) or
//! the RSS of the last tenth of the run exceeds that of its second tenth by more than 10 %.
//! The RSS curve is drawn to `OUT.csv.png` with the trainer's plotting (`quill::train::plot`).

use std::ffi::{CString, c_char, c_void};
use std::io::Write;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quill::ffi::quill_status::*;
use quill::ffi::*;
use quill::rng::Rng;

const MESSAGES: &[&str] = &[
    "Could not open the file.",
    "Do you want to delete %s?",
    "Save changes to the document before closing?",
    "The connection was reset by the server.",
    "Print",
    "Show hidden files",
    "An unknown error occurred while copying “%s”.",
    "",
    "   ",
    "ünïcødé ✓ 漢字 🙂",
];

struct Stats {
    calls: AtomicU64,
    ok: AtomicU64,
    stopped: AtomicU64,
    refused: AtomicU64,
    internal: AtomicU64,
}

/// A worker's current session, which the canceller may cancel while the worker generates.
struct Slot(Mutex<*mut quill_session>);
// SAFETY: `quill_session_cancel` may be called from any thread on a live session; the mutex
// keeps the worker from freeing the session during such a call.
unsafe impl Sync for Slot {}

struct Model(*mut quill_model);
// SAFETY: a model is immutable and shared by any number of threads (docs/c-api.md).
unsafe impl Sync for Model {}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct StopAfter(u32);

unsafe extern "C" fn on_tokens(
    user: *mut c_void,
    _input: usize,
    _ids: *const u32,
    _n: usize,
    _text: *const c_char,
    _len: usize,
) -> i32 {
    let s = unsafe { &mut *(user as *mut StopAfter) };
    if s.0 == 0 {
        return 1;
    }
    s.0 -= 1;
    0
}

fn pick<'a, T>(rng: &mut Rng, v: &'a [T]) -> &'a T {
    &v[(rng.next_u64() % v.len() as u64) as usize]
}

fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

/// A new session with random limits, and its (max_batch, beams).
fn new_session(model: &Model, rng: &mut Rng) -> (*mut quill_session, u64, u64) {
    let mut p: quill_session_params = unsafe { std::mem::zeroed() };
    unsafe { quill_session_params_init(&mut p, std::mem::size_of::<quill_session_params>()) };
    p.max_batch = 1 + below(rng, 4) as u32;
    p.beams = 1 + below(rng, 4) as u32;
    p.max_input_len = [0, 16, 64][below(rng, 3) as usize];
    p.max_new_tokens = [0, 8, 48][below(rng, 3) as usize];
    let mut s = ptr::null_mut();
    let st = unsafe { quill_session_new(model.0, &p, &mut s) };
    assert_eq!(st, QUILL_OK, "session: {}", last_error());
    (s, p.max_batch as u64, p.beams as u64)
}

fn last_error() -> String {
    unsafe { std::ffi::CStr::from_ptr(quill_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn record(stats: &Stats, st: quill_status) {
    stats.calls.fetch_add(1, Ordering::Relaxed);
    match st {
        QUILL_OK => &stats.ok,
        QUILL_ERR_CANCELLED => &stats.stopped,
        QUILL_ERR_INTERNAL => {
            eprintln!("QUILL_ERR_INTERNAL: {}", last_error());
            &stats.internal
        }
        _ => {
            if std::env::var_os("SOAK_VERBOSE").is_some() {
                eprintln!("refused: {}", last_error());
            }
            &stats.refused
        }
    }
    .fetch_add(1, Ordering::Relaxed);
}

fn worker(model: &Model, slot: &Slot, stats: &Stats, seed: u64, until: Instant) {
    let mut rng = Rng::new(seed);
    let (s, mut batch, mut beams) = new_session(model, &mut rng);
    *slot.0.lock().unwrap() = s;
    while Instant::now() < until {
        if below(&mut rng, 25) == 0 {
            let s;
            (s, batch, beams) = new_session(model, &mut rng);
            let old = std::mem::replace(&mut *slot.0.lock().unwrap(), s);
            unsafe { quill_session_free(old) };
        }
        // Mostly calls the session can take; now and then one past its limits.
        let over = below(&mut rng, 10) == 0;
        let session = *slot.0.lock().unwrap();
        let mut gp: quill_generate_params = unsafe { std::mem::zeroed() };
        unsafe {
            quill_generate_params_init(
                model.0,
                &mut gp,
                std::mem::size_of::<quill_generate_params>(),
            )
        };
        gp.max_new_tokens = [1, 4, 16, 64, 100_000][below(&mut rng, 5) as usize];
        gp.beams = 1;
        match below(&mut rng, 3) {
            0 => {}
            1 => {
                gp.beams = 1 + below(&mut rng, beams + over as u64) as u32;
                gp.n_best = 1 + below(&mut rng, 3) as u32;
            }
            _ => {
                gp.sample = 1;
                gp.temperature = [0.0, 0.7, 1.0, 1.5][below(&mut rng, 4) as usize];
                gp.top_k = below(&mut rng, 50) as u32;
                gp.top_p = [1.0, 0.9, 0.5][below(&mut rng, 3) as usize];
                gp.seed = rng.next_u64();
            }
        }
        if below(&mut rng, 40) == 0 {
            gp.top_p = f32::NAN; // refused
        }
        let mut stop = StopAfter(below(&mut rng, 30) as u32);
        let user = (&mut stop as *mut StopAfter).cast::<c_void>();
        let cb: quill_stream_fn = if below(&mut rng, 3) == 0 {
            Some(on_tokens)
        } else {
            None
        };
        let mut result = ptr::null_mut();
        let n = 1 + below(&mut rng, batch + over as u64) as usize;
        let vocab = if over { 8300 } else { 8000 };
        let st = match below(&mut rng, 10) {
            0..=5 => {
                let texts: Vec<CString> = (0..n)
                    .map(|_| match below(&mut rng, 40) {
                        0 => CString::new("word ".repeat(2000)).unwrap(),
                        1 => CString::new(vec![0xffu8, 0xfe, b'a']).unwrap(),
                        _ => CString::new(*pick(&mut rng, MESSAGES)).unwrap(),
                    })
                    .collect();
                let ptrs: Vec<*const c_char> = texts.iter().map(|t| t.as_ptr()).collect();
                unsafe {
                    quill_generate_text(session, ptrs.as_ptr(), n, &gp, cb, user, &mut result)
                }
            }
            6..=8 => {
                let inputs: Vec<Vec<u32>> = (0..n)
                    .map(|_| {
                        let len = 1 + below(&mut rng, if over { 40 } else { 16 }) as usize;
                        (0..len).map(|_| below(&mut rng, vocab) as u32).collect()
                    })
                    .collect();
                let ptrs: Vec<*const u32> = inputs.iter().map(|v| v.as_ptr()).collect();
                let lens: Vec<usize> = inputs.iter().map(Vec::len).collect();
                unsafe {
                    quill_generate_ids(
                        session,
                        ptrs.as_ptr(),
                        lens.as_ptr(),
                        n,
                        &gp,
                        cb,
                        user,
                        &mut result,
                    )
                }
            }
            _ if over => {
                if below(&mut rng, 4) == 0 {
                    unsafe { quill_session_reset(session) };
                }
                let text = CString::new(*pick(&mut rng, MESSAGES)).unwrap();
                unsafe { quill_chat_turn(session, text.as_ptr(), &gp, cb, user, &mut result) }
            }
            _ => {
                let text = CString::new(*pick(&mut rng, MESSAGES)).unwrap();
                unsafe {
                    quill_generate_text(session, &text.as_ptr(), 1, &gp, cb, user, &mut result)
                }
            }
        };
        // A stop by the callback or a cancellation still returns a (partial) result.
        let st = if st == QUILL_OK && unsafe { quill_result_stopped(result) } != 0 {
            QUILL_ERR_CANCELLED
        } else {
            st
        };
        record(stats, st);
        unsafe { quill_result_free(result) };
    }
    let last = std::mem::replace(&mut *slot.0.lock().unwrap(), ptr::null_mut());
    unsafe { quill_session_free(last) };
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: soak MODEL SECONDS OUT.csv [THREADS]");
        std::process::exit(2);
    }
    let seconds: u64 = args[2].parse().expect("SECONDS");
    let threads: usize = args.get(4).map_or(4, |t| t.parse().expect("THREADS"));
    let path = CString::new(args[1].as_str()).unwrap();
    let mut mp: quill_model_params = unsafe { std::mem::zeroed() };
    unsafe { quill_model_params_init(&mut mp, std::mem::size_of::<quill_model_params>()) };
    mp.threads = 1;
    let mut m = ptr::null_mut();
    assert_eq!(
        unsafe { quill_model_open(path.as_ptr(), &mp, &mut m) },
        QUILL_OK,
        "{}",
        last_error()
    );
    let model = Model(m);
    let stats = Stats {
        calls: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        stopped: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        internal: AtomicU64::new(0),
    };
    let slots: Vec<Slot> = (0..threads)
        .map(|_| Slot(Mutex::new(ptr::null_mut())))
        .collect();
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let done = AtomicBool::new(false);
    let mut csv = std::fs::File::create(&args[3]).expect("CSV");
    writeln!(csv, "seconds,rss_mib,calls,ok,stopped,refused").unwrap();
    let mut points = Vec::new();
    std::thread::scope(|sc| {
        for (i, slot) in slots.iter().enumerate() {
            let (model, stats) = (&model, &stats);
            sc.spawn(move || worker(model, slot, stats, 1 + i as u64, until));
        }
        // The canceller: a random worker's session, every 5 to 300 ms.
        let (slots, done_ref) = (&slots, &done);
        sc.spawn(move || {
            let mut rng = Rng::new(99);
            while !done_ref.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5 + below(&mut rng, 295)));
                let slot = pick(&mut rng, slots);
                let guard = slot.0.lock().unwrap();
                if !guard.is_null() {
                    assert_eq!(unsafe { quill_session_cancel(*guard) }, QUILL_OK);
                }
            }
        });
        while Instant::now() < until {
            std::thread::sleep(Duration::from_secs(5).min(until - Instant::now()));
            let t = start.elapsed().as_secs_f64();
            let rss = rss_mib();
            points.push((t, rss));
            writeln!(
                csv,
                "{t:.1},{rss:.2},{},{},{},{}",
                stats.calls.load(Ordering::Relaxed),
                stats.ok.load(Ordering::Relaxed),
                stats.stopped.load(Ordering::Relaxed),
                stats.refused.load(Ordering::Relaxed)
            )
            .unwrap();
            csv.flush().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    unsafe { quill_model_free(model.0) };
    let median = |v: &[(f64, f64)]| {
        let mut r: Vec<f64> = v.iter().map(|p| p.1).collect();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(0.0)
    };
    let tenth = points.len() / 10;
    let (early, late) = (
        median(&points[tenth..2 * tenth.max(1)]),
        median(&points[points.len() - tenth.max(1)..]),
    );
    let internal = stats.internal.load(Ordering::Relaxed);
    println!(
        "soak: {} s, {threads} threads: {} calls ({} ok, {} stopped or cancelled, {} refused, {internal} internal errors); RSS median {early:.1} MiB in the second tenth, {late:.1} MiB in the last, max {:.1} MiB",
        seconds,
        stats.calls.load(Ordering::Relaxed),
        stats.ok.load(Ordering::Relaxed),
        stats.stopped.load(Ordering::Relaxed),
        stats.refused.load(Ordering::Relaxed),
        points.iter().map(|p| p.1).fold(0.0, f64::max),
    );
    let png = format!("{}.png", args[3]);
    let series = [quill::train::plot::Series {
        label: "RSS (MiB)",
        points: &points,
    }];
    let chart = quill::train::plot::Chart {
        title: "quill soak: resident memory",
        x_label: "seconds",
        y_label: "RSS, MiB",
        series: &series,
        log_y: false,
    };
    quill::train::plot::write_png(std::path::Path::new(&png), &[chart], 900, 420).unwrap();
    if internal > 0 || late > early * 1.10 {
        eprintln!("soak FAILED");
        std::process::exit(1);
    }
}
