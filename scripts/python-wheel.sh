#!/usr/bin/env bash
# Builds the Python binding as a wheel that carries libquill.so (no Rust toolchain needed to
# install it):
#
#   scripts/python-wheel.sh [OUT_DIR]                        # builds the release library first
#   QUILL_LIB_DIR=target/debug scripts/python-wheel.sh dist  # bundles a library built already
#
# Then, in any virtualenv: pip install OUT_DIR/quill_ctypes-*.whl
set -euo pipefail
out="${1:-dist}"
cd "$(dirname "$0")/.."
if [ -z "${QUILL_LIB_DIR:-}" ]; then
  cargo build --release --lib
  QUILL_LIB_DIR=target/release
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp bindings/python/pyproject.toml bindings/python/setup.py "$stage/"
cp -r bindings/python/quill "$stage/quill"
rm -rf "$stage/quill/__pycache__"
install -m 755 "$QUILL_LIB_DIR/libquill.so" "$stage/quill/libquill.so"
# A debug build's symbols are most of its size (the release library is stripped already).
if command -v strip >/dev/null; then strip --strip-debug "$stage/quill/libquill.so"; fi
python3 -m pip wheel --quiet --no-deps --no-build-isolation -w "$out" "$stage"
ls "$out"/quill_ctypes-*.whl
