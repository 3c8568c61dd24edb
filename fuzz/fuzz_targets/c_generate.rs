//! The C API driven by arbitrary bytes, on a seq2seq (int8 Marian) and a decoder-only (Llama)
//! model. The first byte picks what to drive:
//! - generation with arbitrary session limits, decoding parameters, inputs (ids, some out of
//!   range, and text, some not UTF-8) and a streaming callback that stops at an arbitrary point;
//! - chat turns (a conversation of 1-4 turns, cancels before a turn, resets);
//! - the low-level loop: start, step with arbitrary tokens and counts, logits;
//! - tokenize / tokenize_target / detokenize with arbitrary text, ids and buffer sizes;
//! - opening a model from memory whose bytes were mutated or truncated, then using it.
//!
//! Every call must return a status: a panic caught at the boundary (`QUILL_ERR_INTERNAL`) is a
//! bug like a crash.
#![no_main]

use std::ffi::{CString, c_char, c_void};
use std::path::PathBuf;
use std::ptr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quill::convert::hf::{ConvertOptions, convert_hf};
use quill::convert::quantize::Target;
use quill::ffi::quill_status::*;
use quill::ffi::*;

struct Models {
    m: [*mut quill_model; 2],
    /// The Marian file's bytes, for opening mutated copies from memory.
    marian_bytes: Vec<u8>,
}
// SAFETY: quill models are immutable and may be shared between threads (docs/c-api.md).
unsafe impl Send for Models {}
unsafe impl Sync for Models {}

/// Converts two tiny Hugging Face fixtures (int8 Marian, f32 Llama) once per process.
fn models() -> &'static Models {
    static M: OnceLock<Models> = OnceLock::new();
    M.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf");
        let dir = std::env::temp_dir().join(format!("quill-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let open = |name: &str, quantize: Option<Target>| {
            let out = dir.join(format!("{name}.quill"));
            convert_hf(
                &root.join(name),
                &out,
                &ConvertOptions { quantize },
                &mut |_, _| {},
            )
            .expect("converting the fixture");
            let path = CString::new(out.to_str().unwrap()).unwrap();
            let mut p: quill_model_params = unsafe { std::mem::zeroed() };
            unsafe { quill_model_params_init(&mut p, std::mem::size_of::<quill_model_params>()) };
            p.threads = 1;
            let mut m = ptr::null_mut();
            assert_eq!(
                unsafe { quill_model_open(path.as_ptr(), &p, &mut m) },
                QUILL_OK
            );
            m
        };
        let m = [open("marian", Some(Target::Int8)), open("llama", None)];
        let marian_bytes = std::fs::read(dir.join("marian.quill")).unwrap();
        Models { m, marian_bytes }
    })
}

/// Reads the fuzzer's bytes as a stream of small numbers.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// A float that is usually ordinary and sometimes hostile (0, negative, huge, NaN, inf).
    fn f32(&mut self, typical: f32) -> f32 {
        match self.u8() % 8 {
            0 => f32::from_bits(self.u32()),
            1 => 0.0,
            2 => -typical,
            3 => f32::NAN,
            4 => f32::INFINITY,
            _ => typical * (self.u8() as f32 / 64.0),
        }
    }
}

struct Stop {
    after: u32,
    calls: u32,
}

unsafe extern "C" fn on_tokens(
    user: *mut c_void,
    _input: usize,
    ids: *const u32,
    n: usize,
    text: *const c_char,
    len: usize,
) -> i32 {
    let s = unsafe { &mut *(user as *mut Stop) };
    // The pointers must be readable for the lengths given.
    let ids = unsafe { std::slice::from_raw_parts(ids, n) };
    std::hint::black_box(ids.iter().sum::<u32>());
    if !text.is_null() {
        let t = unsafe { std::slice::from_raw_parts(text.cast::<u8>(), len) };
        assert!(std::str::from_utf8(t).is_ok(), "streamed text is not UTF-8");
    }
    s.calls += 1;
    (s.calls >= s.after) as i32
}

fn ok_or_refused(status: quill_status) -> bool {
    assert_ne!(
        status,
        QUILL_ERR_INTERNAL,
        "a panic reached the C boundary: {}",
        unsafe { std::ffi::CStr::from_ptr(quill_last_error()).to_string_lossy() }
    );
    status == QUILL_OK
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    match b.u8() % 16 {
        0..=6 => generation(&mut b),
        7..=9 => chat(&mut b),
        10..=12 => low_level(&mut b),
        13 | 14 => text(&mut b),
        _ => from_memory(&mut b),
    }
});

/// A session on `model` with arbitrary limits (None when refused).
fn session(b: &mut Bytes, model: *mut quill_model) -> Option<*mut quill_session> {
    let mut sp: quill_session_params = unsafe { std::mem::zeroed() };
    let size = match b.u8() % 8 {
        0 => 24, // the first release's struct
        1 => b.u8() as usize,
        _ => std::mem::size_of::<quill_session_params>(),
    };
    if !ok_or_refused(unsafe { quill_session_params_init(&mut sp, size) }) {
        return None;
    }
    sp.max_batch = 1 + (b.u8() % 4) as u32;
    sp.max_input_len = (b.u8() % 48) as u32;
    sp.max_new_tokens = (b.u8() % 16) as u32;
    sp.beams = (b.u8() % 6) as u32;
    if b.u8() % 4 == 0 {
        sp.max_memory = (b.u32() as u64) << (b.u8() % 16);
    }
    let mut session = ptr::null_mut();
    ok_or_refused(unsafe { quill_session_new(model, &sp, &mut session) }).then_some(session)
}

/// Arbitrary decoding parameters over the model's defaults.
fn params(b: &mut Bytes, model: *mut quill_model) -> quill_generate_params {
    let mut gp: quill_generate_params = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<quill_generate_params>();
    assert_eq!(
        unsafe { quill_generate_params_init(model, &mut gp, size) },
        QUILL_OK
    );
    gp.max_new_tokens = match b.u8() % 4 {
        0 => b.u16() as u32, // clamped to the session's
        _ => (b.u8() % 12) as u32,
    };
    gp.min_new_tokens = (b.u8() % 32) as u32;
    gp.beams = (b.u8() % 7) as u32;
    gp.n_best = (b.u8() % 7) as u32;
    gp.length_penalty = b.f32(1.0);
    gp.sample = (b.u8() % 3 == 0) as i32;
    gp.temperature = b.f32(1.0);
    gp.top_k = (b.u8() % 40) as u32;
    gp.top_p = b.f32(0.9);
    gp.min_p = b.f32(0.05);
    gp.seed = b.u32() as u64;
    gp.repetition_penalty = b.f32(1.2);
    gp.no_repeat_ngram_size = (b.u8() % 5) as u32;
    gp
}

/// Text of up to 40 arbitrary bytes (no NUL).
fn c_text(b: &mut Bytes) -> CString {
    let len = (b.u8() % 40) as usize;
    let bytes: Vec<u8> = (0..len).map(|_| b.u8()).filter(|&c| c != 0).collect();
    CString::new(bytes).unwrap()
}

/// Reads every hypothesis of a result (checking what the accessors hand out), then frees it.
fn read_result(model: *mut quill_model, result: *mut quill_result, n: usize, with_text: bool) {
    let inputs = unsafe { quill_result_inputs(result) };
    assert_eq!(inputs, n);
    for i in 0..inputs {
        let hyps = unsafe { quill_result_hypotheses(result, i) };
        assert!(hyps >= 1, "an input without a hypothesis");
        for h in 0..hyps {
            let (mut ids, mut len) = (ptr::null(), 0usize);
            assert_eq!(
                unsafe { quill_result_ids(result, i, h, &mut ids, &mut len) },
                QUILL_OK
            );
            let ids = unsafe { std::slice::from_raw_parts(ids, len) };
            let mut text = ptr::null();
            let st = unsafe { quill_result_text(result, i, h, &mut text) };
            assert_eq!(st == QUILL_OK, with_text);
            let mut buf = vec![0 as c_char; 256];
            let mut tl = 0usize;
            let st = unsafe {
                quill_detokenize(
                    model,
                    ids.as_ptr(),
                    ids.len(),
                    1,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut tl,
                )
            };
            ok_or_refused(st);
        }
    }
    unsafe { quill_result_free(result) };
}

fn generation(b: &mut Bytes) {
    let model = models().m[(b.u8() % 2) as usize];
    let Some(session) = session(b, model) else {
        return;
    };
    let gp = params(b, model);
    let null_params = b.u8() % 8 == 0;
    let n = 1 + (b.u8() % 5) as usize;
    let use_text = b.u8() % 2 == 0;
    let mut stop = Stop {
        after: 1 + (b.u8() % 16) as u32,
        calls: 0,
    };
    let callback: quill_stream_fn = if b.u8() % 2 == 0 {
        Some(on_tokens)
    } else {
        None
    };
    if b.u8() % 16 == 0 {
        // A cancel made before the generation: it must stop it, not be lost.
        assert_eq!(unsafe { quill_session_cancel(session) }, QUILL_OK);
    }
    let user = (&mut stop as *mut Stop).cast::<c_void>();
    let gpp: *const quill_generate_params = if null_params { ptr::null() } else { &gp };
    let mut result = ptr::null_mut();
    let status = if use_text {
        let texts: Vec<CString> = (0..n).map(|_| c_text(b)).collect();
        let ptrs: Vec<*const c_char> = texts.iter().map(|t| t.as_ptr()).collect();
        unsafe { quill_generate_text(session, ptrs.as_ptr(), n, gpp, callback, user, &mut result) }
    } else {
        let inputs: Vec<Vec<u32>> = (0..n)
            .map(|_| {
                let len = (b.u8() % 40) as usize;
                (0..len).map(|_| b.u16() as u32 % 1100).collect()
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
                gpp,
                callback,
                user,
                &mut result,
            )
        }
    };
    if ok_or_refused(status) {
        read_result(model, result, n, use_text);
    }
    still_works(session, model);
}

/// The session must still work after whatever happened (a reset, then a short generation with
/// the model's defaults).
fn still_works(session: *mut quill_session, model: *mut quill_model) {
    assert_eq!(unsafe { quill_session_reset(session) }, QUILL_OK);
    let mut gp: quill_generate_params = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<quill_generate_params>();
    assert_eq!(
        unsafe { quill_generate_params_init(model, &mut gp, size) },
        QUILL_OK
    );
    gp.max_new_tokens = 2;
    gp.min_new_tokens = 0;
    gp.beams = 1;
    let one = [5u32, 6, 7];
    let (p, l) = (one.as_ptr(), one.len());
    let mut r = ptr::null_mut();
    let st = unsafe { quill_generate_ids(session, &p, &l, 1, &gp, None, ptr::null_mut(), &mut r) };
    if ok_or_refused(st) {
        assert_eq!(
            unsafe { quill_result_stopped(r) },
            0,
            "a cleared cancel stopped it"
        );
        unsafe { quill_result_free(r) };
    }
    unsafe { quill_session_free(session) };
}

/// A conversation with the decoder-only model (and refusals from the seq2seq one).
fn chat(b: &mut Bytes) {
    let model = models().m[(b.u8() % 4 != 0) as usize];
    let Some(session) = session(b, model) else {
        return;
    };
    for _ in 0..1 + b.u8() % 4 {
        let gp = params(b, model);
        let gpp: *const quill_generate_params = if b.u8() % 3 == 0 { ptr::null() } else { &gp };
        match b.u8() % 16 {
            0 => assert_eq!(unsafe { quill_session_cancel(session) }, QUILL_OK),
            1 => assert_eq!(unsafe { quill_session_reset(session) }, QUILL_OK),
            _ => {}
        }
        let message = c_text(b);
        let mut stop = Stop {
            after: 1 + (b.u8() % 16) as u32,
            calls: 0,
        };
        let callback: quill_stream_fn = if b.u8() % 2 == 0 {
            Some(on_tokens)
        } else {
            None
        };
        let user = (&mut stop as *mut Stop).cast::<c_void>();
        let mut result = ptr::null_mut();
        let st =
            unsafe { quill_chat_turn(session, message.as_ptr(), gpp, callback, user, &mut result) };
        if ok_or_refused(st) {
            read_result(model, result, 1, true);
        }
    }
    still_works(session, model);
}

/// The low-level loop with arbitrary inputs, tokens and counts.
fn low_level(b: &mut Bytes) {
    let model = models().m[(b.u8() % 2) as usize];
    let Some(session) = session(b, model) else {
        return;
    };
    let n = (b.u8() % 5) as usize;
    let inputs: Vec<Vec<u32>> = (0..n.max(1))
        .map(|_| {
            let len = (b.u8() % 40) as usize;
            (0..len).map(|_| b.u16() as u32 % 1100).collect()
        })
        .collect();
    let ptrs: Vec<*const u32> = inputs.iter().map(|v| v.as_ptr()).collect();
    let lens: Vec<usize> = inputs.iter().map(Vec::len).collect();
    if b.u8() % 16 == 0 {
        assert_eq!(unsafe { quill_session_cancel(session) }, QUILL_OK);
    }
    let st = unsafe { quill_session_start(session, ptrs.as_ptr(), lens.as_ptr(), n) };
    if ok_or_refused(st) {
        for _ in 0..b.u8() % 32 {
            let count = if b.u8() % 8 == 0 {
                (b.u8() % 6) as usize
            } else {
                n
            };
            let tokens: Vec<u32> = (0..count.max(1)).map(|_| b.u16() as u32 % 1100).collect();
            let st = unsafe { quill_session_step(session, tokens.as_ptr(), count) };
            if !ok_or_refused(st) {
                continue;
            }
            let (mut logits, mut rows, mut vocab) = (ptr::null(), 0usize, 0usize);
            let st = unsafe { quill_session_logits(session, &mut logits, &mut rows, &mut vocab) };
            assert_eq!(st, QUILL_OK);
            // The rows must be readable.
            let l = unsafe { std::slice::from_raw_parts(logits, rows * vocab) };
            std::hint::black_box(l.iter().fold(0f32, |a, &x| a + x));
        }
    }
    still_works(session, model);
}

/// Text and ids through the tokenizers, into buffers of arbitrary sizes.
fn text(b: &mut Bytes) {
    let model = models().m[(b.u8() % 2) as usize];
    let t = c_text(b);
    let capacity = match b.u8() % 4 {
        0 => 0,
        1 => (b.u8() % 8) as usize,
        _ => 256,
    };
    let mut ids = vec![0u32; capacity.max(1)];
    let idp = if capacity == 0 && b.u8() % 2 == 0 {
        ptr::null_mut()
    } else {
        ids.as_mut_ptr()
    };
    let mut n = 0usize;
    let tokenize = if b.u8() % 2 == 0 {
        quill_tokenize
    } else {
        quill_tokenize_target
    };
    let st = unsafe {
        tokenize(
            model,
            t.as_ptr(),
            (b.u8() % 2) as i32,
            idp,
            capacity,
            &mut n,
        )
    };
    if st == QUILL_ERR_BUFFER_TOO_SMALL {
        assert!(n > capacity || idp.is_null());
    } else if ok_or_refused(st) {
        assert!(n <= capacity);
    }
    let mut given: Vec<u32> = (0..b.u8() % 24).map(|_| b.u16() as u32 % 1100).collect();
    given.extend_from_slice(&ids[..n.min(capacity)]);
    let cap = match b.u8() % 3 {
        0 => 0,
        1 => (b.u8() % 8) as usize,
        _ => 1024,
    };
    let mut buf = vec![0 as c_char; cap.max(1)];
    let bp = if cap == 0 {
        ptr::null_mut()
    } else {
        buf.as_mut_ptr()
    };
    let mut len = 0usize;
    let st = unsafe {
        quill_detokenize(
            model,
            given.as_ptr(),
            given.len(),
            (b.u8() % 2) as i32,
            bp,
            cap,
            &mut len,
        )
    };
    if ok_or_refused(st) {
        assert!(len < cap && buf[len] == 0, "the text and its NUL fit");
        let s = unsafe { std::slice::from_raw_parts(bp.cast::<u8>(), len) };
        assert!(
            std::str::from_utf8(s).is_ok(),
            "detokenized text is not UTF-8"
        );
    }
}

/// A Marian file with a few bytes changed, or cut short, opened from memory and used.
fn from_memory(b: &mut Bytes) {
    let mut bytes = models().marian_bytes.clone();
    for _ in 0..b.u8() % 6 {
        // Mostly in the header (the first few KiB), where the structure is.
        let at = if b.u8() % 4 == 0 {
            b.u32() as usize
        } else {
            b.u16() as usize
        } % bytes.len();
        bytes[at] = b.u8();
    }
    if b.u8() % 8 == 0 {
        let cut = (b.u32() as usize) % bytes.len();
        bytes.truncate(cut);
    }
    let layout = std::alloc::Layout::from_size_align(bytes.len().max(1), 64).unwrap();
    // SAFETY: a fresh 64-byte aligned block of `bytes.len()` bytes, freed below.
    let data = unsafe { std::alloc::alloc(layout) };
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len()) };
    let mut mp: quill_model_params = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<quill_model_params>();
    assert_eq!(unsafe { quill_model_params_init(&mut mp, size) }, QUILL_OK);
    mp.threads = 1; // no worker threads to start for every input
    let mut model = ptr::null_mut();
    let st = unsafe { quill_model_open_memory(data, bytes.len(), &mp, &mut model) };
    if ok_or_refused(st) {
        let mut info: quill_model_info = unsafe { std::mem::zeroed() };
        info.struct_size = std::mem::size_of::<quill_model_info>();
        ok_or_refused(unsafe { quill_model_info_get(model, &mut info) });
        if let Some(session) = session(b, model) {
            let one = [5u32, 6, 7];
            let (p, l) = (one.as_ptr(), one.len());
            let mut r = ptr::null_mut();
            let st = unsafe {
                quill_generate_ids(
                    session,
                    &p,
                    &l,
                    1,
                    ptr::null(),
                    None,
                    ptr::null_mut(),
                    &mut r,
                )
            };
            if ok_or_refused(st) {
                unsafe { quill_result_free(r) };
            }
            unsafe { quill_session_free(session) };
        }
        unsafe { quill_model_free(model) };
    }
    unsafe { std::alloc::dealloc(data, layout) };
}
