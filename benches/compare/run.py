#!/usr/bin/env python3
"""quill against CTranslate2 and llama.cpp, side by side in one run (docs/performance.md).

    bash ../shared/tools/ref-setup.sh install          # the peers' venv in $REF_DIR (~/quill-ref)
    cargo build --release
    $REF_DIR/venv/bin/python benches/compare/models.py # same random weights for every engine
    $REF_DIR/venv/bin/python benches/compare/run.py [--reps 7] [--only b1,b4] [--out FILE]

Benchmarks (docs/performance.md has the figures):
  b1  batch 1, greedy, 32-token input, exactly 128 new tokens: Marian-base int8/f32, Llama-135M
      int8/f32 (llama.cpp Q8_0/F32), at 1 thread and at 2 threads
  b2  CTranslate2's own setup: 32 inputs sorted by length, beam 4, 48 tokens each: target tok/s
      and peak RSS, Marian-base int8
  b3  Bergamot's tiny student shape: 1 thread, beam 1, batch 32, int8
  b4  time from opening the model file to the first token (a fresh process per run)
  bw  batch-1 int8 decoding against the memory-bandwidth bound: bytes one step reads (weights
      and KV caches, from the .quill header) over this machine's measured read bandwidth
Each engine runs in its own worker process (worker.py), loaded and warmed up once; the driver
asks the engines in turn, rotating their order, so that every repetition sees the same machine
state for all of them; ratios are taken repetition by repetition, and medians reported.
"""
import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REF = os.environ.get("REF_DIR", os.path.expanduser("~/quill-ref"))
PY = sys.executable
N_SRC, N_NEW = 32, 128
MARIAN_V, LLAMA_V, TINY_V = 32000, 49152, 32000


def ids(vocab, n, seed, first=None, eos=None):
    r = random.Random(seed)
    x = [r.randrange(300, vocab - 10) for _ in range(n)]
    if first is not None:
        x[0] = first
    if eos is not None:
        x[-1] = eos
    return x


def batch_inputs(vocab, n, lo, hi, seed):
    """n inputs of lengths in [lo, hi], ending in end-of-sequence (id 0), sorted by length."""
    r = random.Random(seed)
    return sorted((ids(vocab, r.randint(lo, hi), seed + i, eos=0) for i in range(n)), key=len)


def model_path(engine, name, q):
    if engine == "quill":
        return os.path.join(REF, "quill", "%s-%s.quill" % (name, q))
    if engine == "ctranslate2":
        return os.path.join(REF, "ct2", "%s-%s" % (name, {"f32": "float32"}.get(q, q)))
    return os.path.join(REF, "gguf", "%s-%s.gguf" % (name, {"int8": "q8_0"}.get(q, q)))


def other_busy():
    """Other processes running right now (the machine's two vCPUs are shared)."""
    busy = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            st = open("/proc/%s/stat" % pid).read()
            if st[st.rfind(")") + 2] == "R" and open("/proc/%s/cmdline" % pid, "rb").read():
                busy.append(st[st.find("(") + 1:st.rfind(")")])
        except OSError:
            pass
    return busy


def wait_quiet(max_wait=120, need=3):
    t0 = time.time()
    quiet = 0
    while time.time() - t0 < max_wait and quiet < need:
        quiet = quiet + 1 if not [b for b in other_busy() if b != "worker.py"] else 0
        time.sleep(1)
    return quiet >= need


class Worker:
    def __init__(self, engine, path, threads):
        self.engine, self.path, self.threads = engine, path, threads
        self.p = subprocess.Popen([PY, os.path.join(HERE, "worker.py"), engine, path, str(threads)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.p.stdout.readline())["ready"]

    def ask(self, req):
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("%s worker died on %s" % (self.engine, self.path))
        return json.loads(line)

    def run(self, inputs, n_new, beams):
        r = self.ask({"op": "run", "inputs": inputs, "n_new": n_new, "beams": beams})
        assert r["tokens"] == [n_new] * len(inputs), (self.engine, r["tokens"])
        return r["t"]

    def close(self):
        rss = self.ask({"op": "rss"})
        self.ask_quit()
        return rss

    def ask_quit(self):
        self.p.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.p.stdin.flush()
        self.p.wait()


def med(xs):
    return statistics.median(xs)


def side_by_side(label, engines, inputs, n_new, beams, threads, reps, one_token):
    """engines: [(engine, path)]. Returns one record with per-engine and per-repetition figures."""
    wait_quiet()
    workers = [Worker(e, p, threads) for e, p in engines]
    for w in workers:  # warm-up
        w.run(inputs, n_new, beams)
    full = {w.engine: [] for w in workers}
    one = {w.engine: [] for w in workers}
    busy = set()
    # Batch-1 runs at 1 thread also measure the read bandwidth just before quill's repetition, so
    # the bandwidth-bound fraction pairs each run with the memory speed of that moment (the
    # machine's neighbours move both by tens of percent within minutes). The probe's 1 GiB sweep
    # leaves quill's run with caches cold, which can only lower quill's figures.
    bw = [] if one_token and threads == 1 else None
    for r in range(reps):
        order = workers[r % len(workers):] + workers[: r % len(workers)]
        for w in order:
            if bw is not None and w.engine == "quill":
                bw.append(read_bandwidth(3))
            full[w.engine].append(w.run(inputs, n_new, beams))
            if one_token:
                one[w.engine].append(w.run(inputs, 1, beams))
        busy.update(b for b in other_busy() if b != "worker.py")
    n_tok = n_new * len(inputs)
    rec = {"bench": label, "threads": threads, "batch": len(inputs), "beams": beams, "n_new": n_new,
           "input_lens": [len(x) for x in inputs], "reps": reps, "engines": {}, "other_running": sorted(busy)}
    if bw:
        rec["read_gb_s"] = bw
    for w in workers:
        rss = w.close()
        tok_s = [n_tok / t for t in full[w.engine]]
        e = {"path": os.path.basename(w.path), "tok_s": tok_s, "tok_s_median": med(tok_s),
             "peak_rss_mib": rss["peak_kib"] / 1024, "peak_rss_above_start_mib": (rss["peak_kib"] - rss["base_kib"]) / 1024}
        if one_token:
            e["first_token_s_median"] = med(one[w.engine])
            e["decode_tok_s"] = (n_new - 1) / (med(full[w.engine]) - med(one[w.engine]))
            # (a repetition where 128 tokens took no longer than 1, on a noisy moment, has no figure)
            e["decode_tok_s_runs"] = [(n_new - 1) / (f - o) if f > o else None
                                      for f, o in zip(full[w.engine], one[w.engine])]
        rec["engines"][w.engine] = e
    q = full.get("quill")
    if q:
        rec["ratios"] = {}
        for eng, ts in full.items():
            if eng != "quill":
                rs = [t_peer / t_q for t_q, t_peer in zip(q, ts)]  # quill tok/s over the peer's, per repetition
                rec["ratios"][eng] = {"median": med(rs), "min": min(rs), "max": max(rs)}
    show(rec)
    return rec


def show(rec):
    head = "%s  threads %d  batch %d  beams %d" % (rec["bench"], rec["threads"], rec["batch"], rec["beams"])
    print("\n" + head + ("  (other processes ran: %s)" % ", ".join(rec["other_running"]) if rec["other_running"] else ""))
    for eng, e in rec["engines"].items():
        extra = ""
        if "decode_tok_s" in e:
            extra = "  decode-only %.1f tok/s  first token %.1f ms" % (e["decode_tok_s"], 1000 * e["first_token_s_median"])
        ratio = rec.get("ratios", {}).get(eng)
        print("  %-12s %-28s %8.1f tok/s%s  peak RSS %.0f MiB (+%.0f)%s" % (
            eng, e["path"], e["tok_s_median"], extra, e["peak_rss_mib"], e["peak_rss_above_start_mib"],
            "  quill = %.2fx (%.2f-%.2f)" % (ratio["median"], ratio["min"], ratio["max"]) if ratio else ""))
    sys.stdout.flush()


def evict(path):
    """Drops a model's files (a file, or every file of a folder) from the page cache, so that the
    next open reads them from disk through the engine's own code, as a device's first launch
    does. How an engine reads its file decides how the kernel caches it (folio sizes), which
    moves every later open: a file left cached by whatever wrote it would time the writer."""
    os.sync()
    files = [path] if os.path.isfile(path) else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def open_to_first(label, engines, prompt, reps):
    wait_quiet()
    for _, path in engines:
        evict(path)
    times = {e: [] for e, _ in engines}
    for r in range(reps + 1):  # the first round reads the files back into the page cache: not counted
        for e, path in engines[r % len(engines):] + engines[: r % len(engines)]:
            p = subprocess.run([PY, os.path.join(HERE, "worker.py"), e, path, "1", "--open"],
                               input=json.dumps({"inputs": [prompt]}) + "\n", capture_output=True, text=True,
                               check=True)
            if r:
                times[e].append(json.loads(p.stdout)["t"])
    rec = {"bench": label, "threads": 1, "reps": reps, "engines": {}}
    print("\n" + label)
    for e, path in engines:
        rec["engines"][e] = {"path": os.path.basename(path), "open_to_first_token_ms": [1000 * t for t in times[e]],
                             "median_ms": 1000 * med(times[e])}
        print("  %-12s %-28s %7.1f ms (min %.1f)" % (e, os.path.basename(path), 1000 * med(times[e]),
                                                   1000 * min(times[e])))
    return rec


BW_PROBE = r"""
import sys, time
import numpy as np
a = np.ones(1 << 28, dtype=np.float32)
for line in sys.stdin:
    best = float("inf")
    for _ in range(int(line)):
        t0 = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t0)
    print(a.nbytes / best / 1e9, flush=True)
"""
_BW = []


def read_bandwidth(sums=5):
    """One thread's read bandwidth, GB/s: the best of `sums` numpy sums over 1 GiB of float32.
    The array lives in a helper process: in this one it would raise the peak RSS that the
    workers, forked from here, inherit (`ru_maxrss` survives fork and exec)."""
    if not _BW:
        _BW.append(subprocess.Popen([PY, "-c", BW_PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    p = _BW[0]
    p.stdin.write("%d\n" % sums)
    p.stdin.flush()
    return float(p.stdout.readline())


def bytes_per_step(path, n_src, pos):
    """Bytes one batch-1 decoding step reads from a .quill file's tensors: every decoder tensor
    but the cross-attention K/V projections (applied once per input), the output projection
    (the tied embedding, read whole), final norms, plus the f32 KV caches at position `pos`."""
    import struct

    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    cfg = json.loads(header["__metadata__"]["quill.config"])
    total = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        size = t["data_offsets"][1] - t["data_offsets"][0]
        if name.startswith("decoder.") and not (".cross_attn.k." in name or ".cross_attn.v." in name):
            total += size
        elif name.startswith(("embed.", "lm_head.", "final_norm", "decoder_norm")):
            total += size
    d, layers = cfg["d_model"], cfg.get("decoder_layers") or cfg.get("layers")
    kv = cfg.get("kv_heads") or cfg["heads"]
    kv_dim = d // cfg["heads"] * kv
    total += layers * 2 * kv_dim * 4 * pos  # self-attention cache
    if cfg.get("encoder_layers"):
        total += layers * 2 * d * 4 * n_src  # cross-attention cache
    return total


def bandwidth_fractions(results):
    """Decode speed over the bandwidth bound. Where a b1 record carries the read bandwidth measured
    before each of quill's repetitions, the fraction is the median of the per-repetition ones;
    otherwise (older records) it uses the bandwidth measured here, after the run."""
    bw = read_bandwidth()
    rec = {"bench": "bandwidth bound", "read_gb_s": bw, "rows": []}
    print("\nread bandwidth (1 thread, numpy sum of 1 GiB): %.1f GB/s now;"
          " fractions use the bandwidth read just before each run" % bw)
    for r in results:
        if r["bench"].startswith("b1") and r["threads"] == 1 and "quill" in r["engines"]:
            e = r["engines"]["quill"]
            path = os.path.join(REF, "quill", e["path"])
            b = bytes_per_step(path, N_SRC, (N_SRC if "llama" in r["bench"] else 0) + N_NEW // 2)
            runs = [(gb_s, tok_s) for gb_s, tok_s in zip(r.get("read_gb_s", []), e.get("decode_tok_s_runs", []))
                    if tok_s]
            if runs:
                fraction = med([tok_s * b / (gb_s * 1e9) for gb_s, tok_s in runs])
                run_bw = med([gb_s for gb_s, _ in runs])
            else:
                fraction, run_bw = e["decode_tok_s"] * b / (bw * 1e9), bw
            bound = run_bw * 1e9 / b
            row = {"bench": r["bench"], "bytes_per_token": b, "read_gb_s": run_bw, "bound_tok_s": bound,
                   "decode_tok_s": e["decode_tok_s"], "fraction": fraction}
            rec["rows"].append(row)
            print("  %-24s %6.1f MB/token  read %5.1f GB/s  bound %6.1f tok/s  quill decode %6.1f tok/s = %3.0f %%" % (
                r["bench"], b / 1e6, run_bw, bound, e["decode_tok_s"], 100 * fraction))
    return rec


def have_llama_cpp():
    return subprocess.run([PY, "-c", "import llama_cpp"], capture_output=True).returncode == 0


def environment():
    info = subprocess.run([os.path.join(ROOT, "target", "release", "quill"), "info"], capture_output=True,
                          text=True).stdout
    versions = subprocess.run([PY, "-c", "import importlib.metadata as m\nfor d in ['ctranslate2', 'llama_cpp_python']:\n"
                               "    try: print(d, m.version(d))\n    except Exception: print(d, 'missing')"],
                              capture_output=True, text=True).stdout
    cpu = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": cpu[0] if cpu else platform.processor(),
            "vcpus": os.cpu_count(), "quill_info": info.strip(), "peers": versions.strip(), "commit": commit.strip()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--only", default="b1,b2,b3,b4,bw")
    ap.add_argument("--threads", default="1,2", help="thread counts for b1")
    ap.add_argument("--out", default=os.path.join(REF, "compare-results.json"))
    a = ap.parse_args()
    only, reps = a.only.split(","), a.reps
    llama = have_llama_cpp()
    env = environment()
    print(json.dumps(env, indent=1))
    out = {"env": env, "results": []}
    marian_src = ids(MARIAN_V, N_SRC, 42, eos=0)
    llama_prompt = ids(LLAMA_V, N_SRC, 42, first=1)

    def save():
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)

    if "b1" in only:
        for threads in [int(t) for t in a.threads.split(",")]:
            for q in ["int8", "f32"]:
                engines = [("quill", model_path("quill", "marian-base", q)),
                           ("ctranslate2", model_path("ctranslate2", "marian-base", q))]
                out["results"].append(side_by_side("b1 marian-base %s" % q, engines, [marian_src], N_NEW, 1, threads,
                                                   reps, True))
                save()
                engines = [("quill", model_path("quill", "llama-135m", q)),
                           ("ctranslate2", model_path("ctranslate2", "llama-135m", q))]
                if llama:
                    engines.append(("llama.cpp", model_path("llama.cpp", "llama-135m", q)))
                out["results"].append(side_by_side("b1 llama-135m %s" % q, engines, [llama_prompt], N_NEW, 1, threads,
                                                   reps, True))
                save()
    if "b2" in only:
        inputs = batch_inputs(MARIAN_V, 32, 8, 48, 7)
        engines = [("quill", model_path("quill", "marian-base", "int8")),
                   ("ctranslate2", model_path("ctranslate2", "marian-base", "int8"))]
        out["results"].append(side_by_side("b2 marian-base int8 batch 32 beam 4", engines, inputs, 48, 4, 1,
                                           max(5, reps // 2), False))
        save()
    if "b3" in only:
        inputs = batch_inputs(TINY_V, 32, 8, 48, 11)
        engines = [("quill", model_path("quill", "bergamot-tiny", "int8")),
                   ("ctranslate2", model_path("ctranslate2", "bergamot-tiny", "int8"))]
        out["results"].append(side_by_side("b3 bergamot-tiny int8 batch 32", engines, inputs, 48, 1, 1, reps, False))
        save()
    if "b4" in only:
        for name, prompt in [("marian-base", marian_src), ("llama-135m", llama_prompt)]:
            engines = [("quill", model_path("quill", name, "int8")),
                       ("ctranslate2", model_path("ctranslate2", name, "int8"))]
            if llama and name == "llama-135m":
                engines.append(("llama.cpp", model_path("llama.cpp", name, "int8")))
            out["results"].append(open_to_first("b4 open to first token %s int8" % name, engines, prompt, reps))
            save()
    if "bw" in only:
        if not out["results"] and os.path.exists(a.out):
            out["results"] = json.load(open(a.out))["results"]
        out["results"] = [r for r in out["results"] if r["bench"] != "bandwidth bound"]
        out["results"].append(bandwidth_fractions(out["results"]))
        save()
    print("\nwrote", a.out)


if __name__ == "__main__":
    main()
