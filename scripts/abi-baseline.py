#!/usr/bin/env python3
"""Records the C ABI of include/quill.h in tests/c/abi_baseline.c, append-only.

The baseline is C that compiles only while every recorded promise holds: each exported
function's exact prototype (a function pointer of the recorded type initialized with it), each
struct field's offset and size, each struct's size lower bound, each status value, each
constant, each callback type. tests/c_api.rs compiles it against the current header with
-Werror (and checks that every exported symbol is recorded), so a change to anything released
fails the tests; an addition passes, and running this script appends it:

    python3 scripts/abi-baseline.py          # after adding to the C API: appends the new lines

(`QUILL_ABI_HEADER=tests/c/abi_v1/quill.h` records another header: the baseline was started
from the first released header, then today's.)

Lines already in the baseline are never rewritten or removed (a released line that no longer
compiles is an ABI break to undo, not a line to update). Needs a C compiler (`cc`).
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.environ.get("QUILL_ABI_HEADER") or os.path.join(ROOT, "include", "quill.h")
BASELINE = os.path.join(ROOT, "tests", "c", "abi_baseline.c")

PREAMBLE = """/* The released C ABI of quill, append-only: scripts/abi-baseline.py records it from
 * include/quill.h, and tests/c_api.rs compiles this file against the current header with
 * -Werror. A line that no longer compiles is an ABI break: undo the change, never the line. */
#include <quill.h>

#include <stddef.h>

#define SAME_TYPE(a, b) __builtin_types_compatible_p(a, b)
"""


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def parse(header):
    code = strip_comments(header)
    # Everything after the include guard's end is not part of the declarations (the trailer's
    # macros are checked as constants would be, not needed here).
    structs = {}
    for body, name in re.findall(r"typedef struct \{(.*?)\} (\w+);", code, flags=re.S):
        fields = []
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            if decl:
                fields.append(re.findall(r"(\w+)$", decl)[0])
        structs[name] = fields
    functions = []
    for ret, name, params in re.findall(r"\n([\w ]+?\*?)\s*\b(quill_\w+)\(([^;{]*?)\);", code, flags=re.S):
        params = " ".join(params.split())
        types = []
        for p in params.split(","):
            p = p.strip()
            if p == "void":
                types.append("void")
                continue
            # Drop the parameter name: the last identifier, keeping pointer stars.
            types.append(re.sub(r"\s*\b\w+$", "", p).strip())
        functions.append((" ".join(ret.split()), name, ", ".join(types)))
    statuses = re.findall(r"\b(QUILL_(?:OK|ERR_\w+)) = (\d+)", code)
    constants = [c for c in re.findall(r"#define (QUILL_\w+) ", code)
                 if not c.startswith("QUILL_VERSION") and c != "QUILL_DEFAULT_PARAMS_MACROS"]
    callbacks = re.findall(r"typedef ([^;(]+?)\s*\(\*(quill_\w+_fn)\)\(([^;]*?)\);", code, flags=re.S)
    return structs, functions, statuses, constants, callbacks


def measure(structs, constants):
    """Offsets, sizes and constant values, as the C compiler lays them out."""
    lines = ["#include <quill.h>", "#include <stdio.h>", "#include <stddef.h>", "int main(void) {"]
    for s, fields in structs.items():
        lines.append('  printf("size %s %%zu\\n", sizeof(%s));' % (s, s))
        for f in fields:
            lines.append('  printf("field %s %s %%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s *)0)->%s));'
                         % (s, f, s, f, s, f))
    for c in constants:
        lines.append('  printf("const %s %%llu\\n", (unsigned long long)(%s));' % (c, c))
    lines += ["  return 0;", "}"]
    with tempfile.TemporaryDirectory() as d:
        src, exe = os.path.join(d, "m.c"), os.path.join(d, "m")
        open(src, "w").write("\n".join(lines) + "\n")
        subprocess.run(["cc", "-std=c11", "-I", os.path.dirname(HEADER), src, "-o", exe], check=True)
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    return [l.split() for l in out.splitlines()]


def main():
    header = open(HEADER).read()
    structs, functions, statuses, constants, callbacks = parse(header)
    new = []
    for kind, *rest in measure(structs, constants):
        if kind == "size":
            s, n = rest
            new.append('_Static_assert(sizeof(%s) >= %s, "%s shrank");' % (s, n, s))
        elif kind == "field":
            s, f, off, size = rest
            new.append('_Static_assert(offsetof(%s, %s) == %s && sizeof(((%s *)0)->%s) == %s, "%s.%s moved");'
                       % (s, f, off, s, f, size, s, f))
        else:
            c, v = rest
            new.append('_Static_assert((unsigned long long)(%s) == %sull, "%s changed");' % (c, v, c))
    for name, value in statuses:
        new.append('_Static_assert(%s == %s, "status %s renumbered");' % (name, value, name))
    for ret, name, params in callbacks:
        new.append('_Static_assert(SAME_TYPE(%s, %s (*)(%s)), "%s changed");'
                   % (name, " ".join(ret.split()), " ".join(params.split()), name))
    for ret, name, types in functions:
        new.append("%s (*const check_%s)(%s) = %s;" % (ret, name, types, name))
    existing = open(BASELINE).read().splitlines() if os.path.exists(BASELINE) else PREAMBLE.splitlines()
    have = set(existing)
    added = [l for l in new if l not in have]
    open(BASELINE, "w").write("\n".join(existing + added) + "\n")
    print("%s: %d lines added" % (os.path.relpath(BASELINE, ROOT), len(added)))
    for l in added:
        print("  + " + l)


if __name__ == "__main__":
    sys.exit(main())
