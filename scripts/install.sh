#!/usr/bin/env bash
# Installs quill as a C library: the header (and the C++ wrapper quill.hpp), libquill.so.<ABI>
# (its SONAME) with the libquill.so link, libquill.a, a pkg-config file and a CMake package.
#
#   scripts/install.sh /usr/local        # builds in release mode first
#   QUILL_LIB_DIR=target/debug scripts/install.sh /tmp/q   # installs libraries built already
#
# Then: cc app.c $(pkg-config --cflags --libs quill), or find_package(quill) and link
# quill::quill (or quill::quill_static).
set -euo pipefail
prefix="${1:?usage: scripts/install.sh PREFIX}"
cd "$(dirname "$0")/.."
if [ -z "${QUILL_LIB_DIR:-}" ]; then
  cargo build --release --lib
  QUILL_LIB_DIR=target/release
fi
version=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
abi=$(grep -m1 'pub const QUILL_ABI_VERSION' src/ffi/mod.rs | grep -o '[0-9]*;' | tr -d ';')
prefix="$(mkdir -p "$prefix" && cd "$prefix" && pwd)"
install -d "$prefix/lib/pkgconfig" "$prefix/include" "$prefix/lib/cmake/quill"
install -m 644 include/quill.h "$prefix/include/quill.h"
install -m 644 bindings/cpp/quill.hpp "$prefix/include/quill.hpp"
install -m 755 "$QUILL_LIB_DIR/libquill.so" "$prefix/lib/libquill.so.$abi"
ln -sf "libquill.so.$abi" "$prefix/lib/libquill.so"
install -m 644 "$QUILL_LIB_DIR/libquill.a" "$prefix/lib/libquill.a"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" packaging/quill.pc.in > "$prefix/lib/pkgconfig/quill.pc"
sed -e "s|@ABI@|$abi|g" -e "s|@VERSION@|$version|" packaging/quillConfig.cmake.in > "$prefix/lib/cmake/quill/quillConfig.cmake"
echo "installed quill $version (ABI $abi) into $prefix"
