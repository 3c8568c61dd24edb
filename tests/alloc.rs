//! Decoding allocates nothing per generated token: a counting global allocator watches
//! `Session::step` after the session (and the threads' scratch) has warmed up; Transformers and
//! LSTMs alike.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use quill::convert::hf::{ConvertOptions, convert_hf};
use quill::convert::quantize::Target;
use quill::{Arch, Limits, Model, OpenOptions, Session};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn steps_allocate(name: &str, quantize: Option<Target>, threads: usize, batch: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.quill");
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    convert_hf(&src, &out, &ConvertOptions { quantize }, &mut |_, _| {}).unwrap();
    let model = Model::open(
        &out,
        &OpenOptions {
            threads,
            ..Default::default()
        },
    )
    .unwrap();
    let mut s = Session::new(
        &model,
        Limits {
            max_batch: batch,
            max_input_len: 16,
            max_new_tokens: 40,
            beams: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let inputs: Vec<Vec<u32>> = (0..batch)
        .map(|b| (0..10).map(|i| 20 + b as u32 + i).collect())
        .collect();
    let refs: Vec<&[u32]> = inputs.iter().map(|v| v.as_slice()).collect();
    s.start(&refs).unwrap();
    let tokens = vec![model.config().decoder_start_id.unwrap_or(5); batch];
    if model.arch() != Arch::DecoderOnly {
        s.step(&tokens).unwrap();
    }
    for _ in 0..3 {
        s.step(&tokens).unwrap(); // warm-up: thread-local scratch grows once
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..20 {
        s.step(&tokens).unwrap();
    }
    ALLOCS.load(Ordering::SeqCst) - before
}

#[test]
fn decoding_steps_do_not_allocate() {
    for (name, q, threads, batch) in [
        ("hf/marian", None, 1, 1),
        ("hf/marian", Some(Target::Int8), 1, 2),
        ("hf/llama", Some(Target::Int4), 1, 1),
        ("hf/t5", None, 1, 1),
        // f32 rows of 256 bytes: the 1000-column output projection is split over both threads.
        ("hf/gpt2", None, 2, 2),
        ("lstm/bi-general-feed", Some(Target::Int8), 1, 2),
        ("lstm/bi-additive-feed", None, 1, 1),
    ] {
        let n = steps_allocate(name, q, threads, batch);
        assert_eq!(
            n, 0,
            "{name} {q:?} threads={threads} batch={batch}: {n} allocations in 20 steps"
        );
    }
}
