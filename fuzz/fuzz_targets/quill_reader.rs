//! The `.quill` reader on arbitrary bytes: open (full validation), every tensor view, the
//! metadata, and building a model from whatever opened. Any panic, overflow or out-of-bounds
//! read is a bug; errors are the expected outcome for almost every input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quill::{Model, OpenOptions, QuillFile};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = QuillFile::from_bytes(data) else {
        return;
    };
    let _ = file.metadata().len();
    let _ = file.tokenizer_json();
    for t in file.tensors() {
        // Every view the file hands out must be readable in full.
        if let Ok(v) = t.to_f32_vec() {
            std::hint::black_box(v);
        }
        let _ = file.matrix(t.name);
    }
    if file.quill().is_some() {
        let options = OpenOptions {
            threads: 1,
            ..Default::default()
        };
        let _ = Model::from_file(file, &options);
    }
});
