#!/usr/bin/env bash
# Builds the Java binding:
#   bindings/java/build.sh OUT_DIR QUILL_INCLUDE_DIR QUILL_LIB_DIR
# → OUT_DIR/classes          the library (dev.quill), Java 8 bytecode
#   OUT_DIR/libquill_jni.so  the JNI glue, linked with -lquill from QUILL_LIB_DIR (rpath to it)
#   OUT_DIR/test-classes     the test (test/QuillTest.java)
# Environment: JAVA_HOME (default: found from javac), CC (default: cc), JAVAC_RELEASE (default 8).
set -euo pipefail

if [ "$#" -ne 3 ]; then
  echo "usage: $0 OUT_DIR QUILL_INCLUDE_DIR QUILL_LIB_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
include=$(cd "$2" && pwd)
lib=$(cd "$3" && pwd)

if [ -z "${JAVA_HOME:-}" ]; then
  javac_path=$(command -v javac) || { echo "javac not found: install a JDK or set JAVA_HOME" >&2; exit 1; }
  JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$javac_path")")")
fi
javac="$JAVA_HOME/bin/javac"
[ -x "$javac" ] || { echo "no javac at $javac (JAVA_HOME=$JAVA_HOME)" >&2; exit 1; }
[ -f "$JAVA_HOME/include/jni.h" ] || { echo "no jni.h under $JAVA_HOME/include" >&2; exit 1; }
case "$(uname -s)" in
  Darwin) jni_os=darwin; shared=(-dynamiclib); lib_name=libquill_jni.dylib ;;
  *) jni_os=linux; shared=(-shared -Wl,-z,defs); lib_name=libquill_jni.so ;;
esac

# 1. The classes, with the JNI header of dev.quill.Native (the glue is checked against it).
rm -rf "$out/classes" "$out/test-classes" "$out/jni-include"
"$javac" --release "${JAVAC_RELEASE:-8}" -Xlint:all,-options -Werror -encoding UTF-8 \
  -d "$out/classes" -h "$out/jni-include" "$here"/src/dev/quill/*.java

# 2. The glue.
"${CC:-cc}" -std=c11 -O2 -g -fPIC -Wall -Wextra -Werror "${shared[@]}" \
  -DQUILL_JNI_CHECK_HEADER -I"$out/jni-include" \
  -I"$JAVA_HOME/include" -I"$JAVA_HOME/include/$jni_os" -I"$include" \
  -o "$out/$lib_name" "$here/jni/quill_jni.c" \
  -L"$lib" -lquill -Wl,-rpath,"$lib"

# 3. The test.
"$javac" -Xlint:all,-try -Werror -encoding UTF-8 -cp "$out/classes" -d "$out/test-classes" "$here/test/QuillTest.java"

echo "built $out/$lib_name, $out/classes, $out/test-classes"
