//! The committed C header must be exactly what cbindgen generates from `src/ffi` now.
//! To fix a failure: `cargo build` (outside CI it refreshes `include/quill.h`), then commit it.

#[test]
fn committed_header_matches_a_fresh_generation() {
    let fresh = include_str!(concat!(env!("OUT_DIR"), "/quill.h"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/quill.h");
    let committed = std::fs::read_to_string(path).expect("include/quill.h is committed");
    assert!(
        committed == fresh,
        "include/quill.h is stale: run `cargo build` and commit the regenerated header"
    );
}
