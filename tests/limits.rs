//! Hostile parameters and files through the C API: absurd limits and inputs get a clear status
//! (or the documented clamping) with memory bounded, a model too large for memory fails cleanly,
//! and a model read into memory survives its file being truncated or rewritten (while a mapped
//! one dies of SIGBUS, the hazard docs/c-api.md describes). Uses the demo model
//! (models/en-de-ui.quill: seq2seq, d 256, vocabulary 8000).
#![cfg(all(target_os = "linux", feature = "tokenizer"))]

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;

use quill::ffi::quill_status::*;
use quill::ffi::*;

/// The tests measure the process's RSS: they run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn demo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/en-de-ui.quill")
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(quill_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    kb * 1024
}

fn open(path: &Path, threads: u32, in_memory: bool) -> Result<*mut quill_model, quill_status> {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut mp: quill_model_params = unsafe { std::mem::zeroed() };
    unsafe { quill_model_params_init(&mut mp, std::mem::size_of::<quill_model_params>()) };
    mp.threads = threads;
    mp.in_memory = in_memory as i32;
    let mut m = ptr::null_mut();
    match unsafe { quill_model_open(p.as_ptr(), &mp, &mut m) } {
        QUILL_OK => Ok(m),
        st => {
            assert!(m.is_null());
            Err(st)
        }
    }
}

fn session_params() -> quill_session_params {
    let mut p: quill_session_params = unsafe { std::mem::zeroed() };
    unsafe { quill_session_params_init(&mut p, std::mem::size_of::<quill_session_params>()) };
    p
}

fn session(
    m: *mut quill_model,
    p: &quill_session_params,
) -> Result<*mut quill_session, quill_status> {
    let mut s = ptr::null_mut();
    match unsafe { quill_session_new(m, p, &mut s) } {
        QUILL_OK => Ok(s),
        st => {
            assert!(s.is_null());
            Err(st)
        }
    }
}

fn greedy(m: *mut quill_model) -> quill_generate_params {
    let mut g: quill_generate_params = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe {
            quill_generate_params_init(m, &mut g, std::mem::size_of::<quill_generate_params>())
        },
        QUILL_OK
    );
    g.beams = 1;
    g.sample = 0;
    g
}

/// Translates `text`; returns the status and the ids of the best hypothesis.
fn translate(
    s: *mut quill_session,
    text: &str,
    g: &quill_generate_params,
) -> (quill_status, Vec<u32>) {
    let t = CString::new(text).unwrap();
    let mut r = ptr::null_mut();
    let st = unsafe { quill_generate_text(s, &t.as_ptr(), 1, g, None, ptr::null_mut(), &mut r) };
    if st != QUILL_OK {
        return (st, Vec::new());
    }
    let (mut ids, mut n) = (ptr::null(), 0usize);
    assert_eq!(
        unsafe { quill_result_ids(r, 0, 0, &mut ids, &mut n) },
        QUILL_OK
    );
    let v = unsafe { std::slice::from_raw_parts(ids, n) }.to_vec();
    unsafe { quill_result_free(r) };
    (st, v)
}

#[test]
fn absurd_session_limits_are_refused_before_allocating() {
    let _serial = serial();
    let m = open(&demo(), 1, false).unwrap();
    let before = rss_bytes();
    for (what, p) in [
        (
            "batch 10^6",
            quill_session_params {
                max_batch: 1_000_000,
                ..session_params()
            },
        ),
        (
            "input 10^9",
            quill_session_params {
                max_input_len: 1_000_000_000,
                ..session_params()
            },
        ),
        (
            "new tokens 10^9",
            quill_session_params {
                max_new_tokens: 1_000_000_000,
                ..session_params()
            },
        ),
        (
            "u32::MAX beams",
            quill_session_params {
                beams: u32::MAX,
                ..session_params()
            },
        ),
    ] {
        let st = session(m, &p).unwrap_err();
        assert_eq!(st, QUILL_ERR_INVALID_ARGUMENT, "{what}: {}", last_error());
    }
    // 10^4 beams fit the slot count but not the memory budget (~50 GB for this model).
    let p = quill_session_params {
        beams: 10_000,
        ..session_params()
    };
    assert_eq!(session(m, &p).unwrap_err(), QUILL_ERR_OUT_OF_MEMORY);
    let msg = last_error();
    assert!(msg.contains("MiB") && msg.contains("max_memory"), "{msg}");
    // An explicit budget is honoured both ways.
    let p = quill_session_params {
        max_memory: 1 << 20,
        ..session_params()
    };
    assert_eq!(session(m, &p).unwrap_err(), QUILL_ERR_OUT_OF_MEMORY);
    let p = quill_session_params {
        max_memory: 1 << 30,
        ..session_params()
    };
    let s = session(m, &p).unwrap();
    unsafe { quill_session_free(s) };
    assert!(
        rss_bytes() < before + (64 << 20),
        "refusals allocated memory"
    );
    unsafe { quill_model_free(m) };
}

#[test]
fn thread_counts() {
    let _serial = serial();
    // 0 = one per core; absurd counts are refused, not attempted.
    let m = open(&demo(), 0, false).unwrap();
    let mut info: quill_model_info = unsafe { std::mem::zeroed() };
    info.struct_size = std::mem::size_of::<quill_model_info>();
    assert_eq!(unsafe { quill_model_info_get(m, &mut info) }, QUILL_OK);
    let cores = std::thread::available_parallelism().unwrap().get() as u32;
    assert_eq!(info.threads, cores);
    unsafe { quill_model_free(m) };
    assert_eq!(
        open(&demo(), 10_000, false).unwrap_err(),
        QUILL_ERR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("at most 256"), "{}", last_error());
}

#[test]
fn absurd_generate_parameters() {
    let _serial = serial();
    let m = open(&demo(), 1, false).unwrap();
    let p = quill_session_params {
        max_new_tokens: 20,
        beams: 4,
        ..session_params()
    };
    let s = session(m, &p).unwrap();
    // max_new_tokens 10^9 is clamped to the session's 20 (documented), not refused.
    let mut g = greedy(m);
    g.max_new_tokens = 1_000_000_000;
    g.min_new_tokens = 1_000_000_000;
    let (st, ids) = translate(s, "Could not open the file.", &g);
    assert_eq!(st, QUILL_OK, "{}", last_error());
    assert!(!ids.is_empty() && ids.len() <= 21, "{} ids", ids.len());
    // 10^4 beams on a session made for 4: refused.
    let mut g = greedy(m);
    g.beams = 10_000;
    assert_eq!(translate(s, "Print", &g).0, QUILL_ERR_INVALID_ARGUMENT);
    // 10^6 inputs: refused from the count alone (the arrays are never read).
    let one = [5u32];
    let (ip, lp) = (one.as_ptr(), 1usize);
    let mut r = ptr::null_mut();
    let st = unsafe {
        quill_generate_ids(
            s,
            &ip,
            &lp,
            1_000_000,
            &greedy(m),
            None,
            ptr::null_mut(),
            &mut r,
        )
    };
    assert_eq!(st, QUILL_ERR_INVALID_ARGUMENT);
    // Non-finite and out-of-range sampling parameters.
    for (t, p) in [
        (f32::NAN, 1.0),
        (-1.0, 1.0),
        (1.0, f32::INFINITY),
        (1.0, -0.5),
    ] {
        let mut g = greedy(m);
        g.sample = 1;
        g.temperature = t;
        g.top_p = p;
        assert_eq!(
            translate(s, "Print", &g).0,
            QUILL_ERR_INVALID_ARGUMENT,
            "t {t} p {p}"
        );
    }
    // The session still works after all that.
    assert_eq!(translate(s, "Print", &greedy(m)).0, QUILL_OK);
    unsafe { quill_session_free(s) };
    unsafe { quill_model_free(m) };
}

#[test]
fn a_gigabyte_of_text_is_refused_without_tokenizing_it() {
    let _serial = serial();
    let m = open(&demo(), 1, false).unwrap();
    let s = session(m, &session_params()).unwrap();
    let text = CString::new(vec![b'a'; 1 << 30]).unwrap();
    let before = rss_bytes();
    let start = std::time::Instant::now();
    let mut r = ptr::null_mut();
    let st = unsafe {
        quill_generate_text(
            s,
            &text.as_ptr(),
            1,
            ptr::null(),
            None,
            ptr::null_mut(),
            &mut r,
        )
    };
    assert_eq!(st, QUILL_ERR_INVALID_ARGUMENT);
    assert!(
        last_error().contains("bytes, more than"),
        "{}",
        last_error()
    );
    let mut n = 0usize;
    let st = unsafe { quill_tokenize(m, text.as_ptr(), 1, ptr::null_mut(), 0, &mut n) };
    assert_eq!(st, QUILL_ERR_INVALID_ARGUMENT);
    let mut chat_result = ptr::null_mut();
    let st = unsafe {
        quill_chat_turn(
            s,
            text.as_ptr(),
            ptr::null(),
            None,
            ptr::null_mut(),
            &mut chat_result,
        )
    };
    assert_ne!(st, QUILL_OK);
    assert!(
        rss_bytes() < before + (16 << 20),
        "the refusals allocated memory"
    );
    // Refusing takes a strlen, not a tokenization (which would take minutes and ~100 GB).
    assert!(start.elapsed().as_secs() < 30);
    // The longest text a session takes (max_input_len × 64 bytes) is tokenized and refused for
    // its token count, or run.
    let ok = CString::new("a ".repeat(200)).unwrap();
    let st = unsafe {
        quill_generate_text(
            s,
            &ok.as_ptr(),
            1,
            &greedy(m),
            None,
            ptr::null_mut(),
            &mut r,
        )
    };
    assert_eq!(st, QUILL_OK, "{}", last_error());
    unsafe { quill_result_free(r) };
    unsafe { quill_session_free(s) };
    unsafe { quill_model_free(m) };
}

#[test]
fn session_memory_estimate_bounds_what_it_uses() {
    let _serial = serial();
    // A session used to its limits (every slot, every position) grows RSS by no more than the
    // budget it was checked against.
    use quill::decode::{BeamOptions, GenerateOptions, Strategy};
    use quill::{Limits, Model, OpenOptions, Session};
    let model = Model::open(
        demo(),
        &OpenOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let limits = Limits {
        max_batch: 2,
        max_input_len: 96,
        max_new_tokens: 48,
        beams: 4,
        ..Default::default()
    };
    let before = rss_bytes();
    let mut s = Session::new(&model, limits).unwrap();
    let inputs: Vec<Vec<u32>> = (0..2)
        .map(|i| (0..96).map(|t| 10 + (t * 7 + i) % 7000).collect())
        .collect();
    let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut o = GenerateOptions::model_defaults(&model).unwrap();
    o.max_new_tokens = 48;
    o.min_new_tokens = 48;
    o.strategy = Strategy::Beam(BeamOptions {
        beams: 4,
        n_best: 4,
        ..Default::default()
    });
    let g = quill::decode::generate(&mut s, &refs, &o, None, None).unwrap();
    assert_eq!(g.outputs[0][0].ids.len(), 48, "the cache was filled");
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown as usize <= s.memory_bytes() + (8 << 20),
        "RSS grew {grown} bytes, estimate {}",
        s.memory_bytes()
    );
}

#[test]
fn a_model_too_large_for_memory_fails_cleanly() {
    let _serial = serial();
    // A sparse 1 TiB file: read into memory it is refused before any allocation; mapped, its
    // (zero) header is refused.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.quill");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(1 << 40).unwrap();
    let before = rss_bytes();
    assert_eq!(open(&path, 1, true).unwrap_err(), QUILL_ERR_OUT_OF_MEMORY);
    assert!(last_error().contains("memory-mapped"), "{}", last_error());
    assert_ne!(open(&path, 1, false).unwrap_err(), QUILL_OK);
    assert!(rss_bytes() < before + (16 << 20));
}

fn truncate(p: &Path) {
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_len(0).unwrap();
}

/// Copies the demo model, opens the copy, translates, damages the file, translates again.
fn damage_while_open(in_memory: bool, damage: impl Fn(&Path)) -> (Vec<u32>, Vec<u32>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.quill");
    std::fs::copy(demo(), &path).unwrap();
    let m = open(&path, 1, in_memory).unwrap();
    let s = session(m, &session_params()).unwrap();
    let (st, first) = translate(s, "Could not open the file.", &greedy(m));
    assert_eq!(st, QUILL_OK);
    damage(&path);
    // A fresh session reads every weight again.
    unsafe { quill_session_free(s) };
    let s = session(m, &session_params()).unwrap();
    let (st, second) = translate(s, "Could not open the file.", &greedy(m));
    assert_eq!(st, QUILL_OK, "{}", last_error());
    unsafe { quill_session_free(s) };
    unsafe { quill_model_free(m) };
    (first, second)
}

#[test]
fn in_memory_models_survive_their_file_changing() {
    let _serial = serial();
    let (a, b) = damage_while_open(true, truncate);
    assert_eq!(a, b);
    let rewrite = |p: &Path| {
        let len = std::fs::metadata(p).unwrap().len() as usize;
        std::fs::write(p, vec![0x5au8; len]).unwrap()
    };
    let (a, b) = damage_while_open(true, rewrite);
    assert_eq!(a, b);
}

#[test]
fn mapped_models_die_of_sigbus_when_truncated() {
    let _serial = serial();
    // The documented hazard, shown in a child process (this test binary, running the ignored
    // test below): truncating a mapped model kills its process.
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "mapped_truncation_child",
            "--ignored",
            "--nocapture",
        ])
        .env("QUILL_TRUNCATION_CHILD", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGBUS),
        "child: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
#[ignore = "run by mapped_models_die_of_sigbus_when_truncated in a child process"]
fn mapped_truncation_child() {
    if std::env::var_os("QUILL_TRUNCATION_CHILD").is_none() {
        return;
    }
    damage_while_open(false, truncate);
    println!("survived");
}

/// An input longer than the model's positions: `quill eval` (eval::translate) cuts it to the
/// model's length, keeps end-of-sequence, and says how many it cut; a short one is untouched.
#[test]
fn evaluation_truncates_overlong_sources_and_counts_them() {
    let model = quill::Model::open(demo(), &Default::default()).unwrap();
    let long = "Click the button to save the file. ".repeat(60);
    let inputs = vec![long.clone(), "Save the file.".to_string()];
    let full = quill::decode::text::encode(&model, &long, true).unwrap();
    assert!(full.len() > 256, "{} tokens", full.len());
    let opts = quill::decode::GenerateOptions {
        max_new_tokens: 8,
        ..Default::default()
    };
    let out = quill::eval::translate(&model, &inputs, &opts, 2).unwrap();
    assert_eq!((out.truncated, out.max_input_len), (1, 256));
    assert!(out.texts.iter().all(|t| !t.is_empty()), "{:?}", out.texts);
    // The cut input is the first 255 ids of the text and end-of-sequence, and gives the same
    // output as that input given directly.
    let cut = [&full[..255], &[2u32][..]].concat();
    let mut s = quill::Session::new(&model, quill::Limits::default().fit(&model)).unwrap();
    let ids = quill::decode::greedy(&mut s, &[&cut], 8, &[]).unwrap();
    let direct = quill::decode::text::text_of(&model, &ids[0]).unwrap();
    assert_eq!(out.texts[0], direct);
}
