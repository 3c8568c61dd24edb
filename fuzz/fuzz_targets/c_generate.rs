//! Generation through the C API with arbitrary session limits, decoding parameters, inputs (ids,
//! some out of range, and text, some not UTF-8) and a streaming callback that stops at an
//! arbitrary point, on a seq2seq and a decoder-only model. Every call must return a status: a
//! panic caught at the boundary (`QUILL_ERR_INTERNAL`) is a bug like a crash.
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

struct Models([*mut quill_model; 2]);
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
        Models([open("marian", Some(Target::Int8)), open("llama", None)])
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
    let model = models().0[(b.u8() % 2) as usize];
    let mut sp: quill_session_params = unsafe { std::mem::zeroed() };
    unsafe { quill_session_params_init(&mut sp, std::mem::size_of::<quill_session_params>()) };
    sp.max_batch = 1 + (b.u8() % 4) as u32;
    sp.max_input_len = (b.u8() % 48) as u32;
    sp.max_new_tokens = (b.u8() % 24) as u32;
    sp.beams = 1 + (b.u8() % 5) as u32;
    let mut session = ptr::null_mut();
    if !ok_or_refused(unsafe { quill_session_new(model, &sp, &mut session) }) {
        return;
    }
    let mut gp: quill_generate_params = unsafe { std::mem::zeroed() };
    unsafe { quill_generate_params_init(model, &mut gp, std::mem::size_of::<quill_generate_params>()) };
    gp.max_new_tokens = b.u16() as u32;
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
    let user = (&mut stop as *mut Stop).cast::<c_void>();
    let mut result = ptr::null_mut();
    let status = if use_text {
        let texts: Vec<CString> = (0..n)
            .map(|_| {
                let len = (b.u8() % 40) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| b.u8()).filter(|&c| c != 0).collect();
                CString::new(bytes).unwrap()
            })
            .collect();
        let ptrs: Vec<*const c_char> = texts.iter().map(|t| t.as_ptr()).collect();
        unsafe { quill_generate_text(session, ptrs.as_ptr(), n, &gp, callback, user, &mut result) }
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
                &gp,
                callback,
                user,
                &mut result,
            )
        }
    };
    if ok_or_refused(status) {
        let inputs = unsafe { quill_result_inputs(result) };
        assert_eq!(inputs, n);
        for i in 0..inputs {
            let hyps = unsafe { quill_result_hypotheses(result, i) };
            for h in 0..hyps {
                let (mut ids, mut len) = (ptr::null(), 0usize);
                assert_eq!(
                    unsafe { quill_result_ids(result, i, h, &mut ids, &mut len) },
                    QUILL_OK
                );
                let ids = unsafe { std::slice::from_raw_parts(ids, len) };
                let mut text = ptr::null();
                let st = unsafe { quill_result_text(result, i, h, &mut text) };
                assert_eq!(st == QUILL_OK, use_text);
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
    // The session must still work after whatever happened (a reset, then a plain generation).
    assert_eq!(unsafe { quill_session_reset(session) }, QUILL_OK);
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
});
