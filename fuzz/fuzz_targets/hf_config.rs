//! `quill convert`'s configuration stage: an arbitrary `config.json` (and sometimes a
//! `generation_config.json`) read against the tensors of a real tiny checkpoint, up to the plan
//! of tensors to write. The first byte picks the checkpoint and whether a generation config
//! follows (after a NUL).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quill::QuillFile;
use quill::convert::hf::plan_from_bytes;

static CHECKPOINTS: [&[u8]; 5] = [
    include_bytes!("../../tests/fixtures/hf/marian/model.safetensors"),
    include_bytes!("../../tests/fixtures/hf/t5/model.safetensors"),
    include_bytes!("../../tests/fixtures/hf/gpt2/model.safetensors"),
    include_bytes!("../../tests/fixtures/hf/llama/model.safetensors"),
    include_bytes!("../../tests/fixtures/lstm/uni-dot/model.safetensors"),
];

/// The checkpoints, validated once (aligned copies, so their tensors are used in place).
fn checkpoint(i: usize) -> &'static QuillFile {
    static FILES: OnceLock<Vec<QuillFile>> = OnceLock::new();
    &FILES.get_or_init(|| {
        CHECKPOINTS
            .iter()
            .map(|b| QuillFile::from_bytes(b).expect("fixture checkpoint"))
            .collect()
    })[i]
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let file = checkpoint((pick & 0x7f) as usize % CHECKPOINTS.len());
    let (config, generation) = match rest.iter().position(|&b| b == 0) {
        Some(i) if pick & 0x80 != 0 => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Ok((arch, cfg, n)) = plan_from_bytes(config, generation, file) {
        // What was accepted must be a configuration the runtime accepts too.
        cfg.validate(arch)
            .expect("plan_from_bytes returned an invalid config");
        assert!(n > 0);
    }
});
