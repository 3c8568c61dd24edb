#!/usr/bin/env python3
"""One engine in its own process, driven by run.py over stdin/stdout (one JSON object a line).

    worker.py ENGINE MODEL THREADS          # ENGINE: quill | ctranslate2 | llama.cpp
    worker.py ENGINE MODEL THREADS --open   # one cold open: open the file, make 1 token, exit

Requests: {"op": "run", "inputs": [[ids...], ...], "n_new": N, "beams": B}
          -> {"t": seconds, "tokens": [new tokens per input]}
          {"op": "rss"} -> {"peak_kib": ..., "base_kib": ...}  (ru_maxrss; base = after imports)
The clock runs inside the worker around the engine's own call, so pipes and JSON are not timed.
Every engine gets token ids (CTranslate2 gets the same ids as vocabulary strings) and makes
exactly N new tokens (end-of-sequence held back by a minimum length equal to the maximum).
"""
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Quill:
    def __init__(self, path, threads):
        sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
        os.environ.setdefault("QUILL_LIBRARY", os.path.join(ROOT, "target", "release", "libquill.so"))
        import quill

        self.base = rss_kib()
        self.model = quill.Model(path, threads=threads)
        self.session = None
        self.shape = None

    def run(self, inputs, n_new, beams):
        shape = (len(inputs), max(len(x) for x in inputs), n_new, beams)
        if self.session is None or any(a > b for a, b in zip(shape, self.shape)):
            # sized for the largest request seen: the session is made once per workload, as an app would
            self.session = self.model.session(max_batch=shape[0], max_input_len=shape[1], max_new_tokens=n_new,
                                              beams=beams)
            self.shape = shape
        out = self.session.generate(inputs, max_new_tokens=n_new, min_new_tokens=n_new, beams=beams)
        return [len(h[0].ids) for h in out]


class CTranslate2:
    def __init__(self, path, threads):
        import ctranslate2

        self.base = rss_kib()
        # a Translator's folder has shared (or source) vocabulary, a Generator's just "vocabulary"
        self.seq2seq = not os.path.exists(os.path.join(path, "vocabulary.json"))
        vocab = os.path.join(path, "shared_vocabulary.json" if self.seq2seq else "vocabulary.json")
        self.vocab = json.load(open(vocab, encoding="utf-8"))
        ct = "int8" if "int8" in os.path.basename(path) else "float32"
        cls = ctranslate2.Translator if self.seq2seq else ctranslate2.Generator
        self.engine = cls(path, device="cpu", compute_type=ct, intra_threads=threads, inter_threads=1)

    def run(self, inputs, n_new, beams):
        toks = [[self.vocab[i] for i in x] for x in inputs]
        if self.seq2seq:
            r = self.engine.translate_batch(toks, beam_size=beams, min_decoding_length=n_new,
                                            max_decoding_length=n_new, max_batch_size=len(toks))
            return [len(x.hypotheses[0]) for x in r]
        r = self.engine.generate_batch(toks, beam_size=beams, sampling_topk=1, min_length=n_new, max_length=n_new,
                                       include_prompt_in_result=False)
        return [len(x.sequences_ids[0]) for x in r]


class LlamaCpp:
    def __init__(self, path, threads):
        import llama_cpp
        import numpy as np
        from llama_cpp import Llama

        self.np, self.lib = np, llama_cpp
        self.base = rss_kib()
        self.llm = Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads,
                         logits_all=False, verbose=False, seed=0)
        self.n_vocab = self.llm.n_vocab()

    def argmax(self):
        ptr = self.lib.llama_get_logits_ith(self.llm.ctx, -1)
        return int(self.np.argmax(self.np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))))

    def run(self, inputs, n_new, beams):
        assert beams == 1, "llama.cpp is measured with greedy decoding only"
        lens = []
        for prompt in inputs:
            self.llm.reset()
            self.llm.eval(prompt)  # the prompt's pass gives the first new token
            out = [self.argmax()]
            while len(out) < n_new:
                self.llm.eval([out[-1]])
                out.append(self.argmax())
            lens.append(len(out))
        return lens


ENGINES = {"quill": Quill, "ctranslate2": CTranslate2, "llama.cpp": LlamaCpp}


def main():
    engine, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if "--open" in sys.argv:
        # imports first (an app has its libraries loaded), then the clock: open + first token
        prompt = json.loads(sys.stdin.readline())["inputs"]
        cls = ENGINES[engine]
        if engine == "quill":
            sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
            os.environ.setdefault("QUILL_LIBRARY", os.path.join(ROOT, "target", "release", "libquill.so"))
            import quill  # noqa: F401
        elif engine == "ctranslate2":
            import ctranslate2  # noqa: F401
        else:
            import llama_cpp  # noqa: F401
            import numpy  # noqa: F401
        t0 = time.perf_counter()
        e = cls(path, threads)
        n = e.run(prompt, 1, 1)
        t = time.perf_counter() - t0
        assert n == [1], n
        print(json.dumps({"t": t}), flush=True)
        return
    e = ENGINES[engine](path, threads)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "run":
            t0 = time.perf_counter()
            lens = e.run(req["inputs"], req["n_new"], req.get("beams", 1))
            t = time.perf_counter() - t0
            print(json.dumps({"t": t, "tokens": lens}), flush=True)
        elif req["op"] == "rss":
            print(json.dumps({"peak_kib": rss_kib(), "base_kib": e.base}), flush=True)
        elif req["op"] == "quit":
            break


if __name__ == "__main__":
    main()
