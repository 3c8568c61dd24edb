"""Python bindings for quill, over its C API with ctypes (no compiler needed).

    import quill
    model = quill.Model("model.quill")
    session = model.session(max_batch=2, beams=4)
    print(session.generate(["Open the file"], beams=4)[0][0].text)
    for piece in session.stream("Open the file"):
        print(piece, end="", flush=True)

The shared library is found through $QUILL_LIBRARY, then the system's library path (`libquill`).
Errors raise QuillError (with .status and the library's message).
"""
import ctypes
import ctypes.util
import os
import queue
import threading
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Union

__all__ = ["Model", "Session", "Hypothesis", "QuillError", "library"]


def _load():
    path = os.environ.get("QUILL_LIBRARY") or ctypes.util.find_library("quill")
    if not path:
        raise OSError("libquill not found: set QUILL_LIBRARY to the path of libquill.so")
    return ctypes.CDLL(path)


library = _load()
_c = library
_u32p = ctypes.POINTER(ctypes.c_uint32)


class _ModelParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("threads", ctypes.c_uint32), ("in_memory", ctypes.c_int32),
                ("prefetch", ctypes.c_int32)]


class _SessionParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("max_batch", ctypes.c_uint32), ("max_input_len", ctypes.c_uint32),
                ("max_new_tokens", ctypes.c_uint32), ("beams", ctypes.c_uint32),
                ("max_memory", ctypes.c_uint64)]


class _GenerateParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("max_new_tokens", ctypes.c_uint32),
                ("min_new_tokens", ctypes.c_uint32), ("beams", ctypes.c_uint32), ("n_best", ctypes.c_uint32),
                ("length_penalty", ctypes.c_float), ("sample", ctypes.c_int32), ("temperature", ctypes.c_float),
                ("top_k", ctypes.c_uint32), ("top_p", ctypes.c_float), ("min_p", ctypes.c_float),
                ("seed", ctypes.c_uint64), ("repetition_penalty", ctypes.c_float),
                ("no_repeat_ngram_size", ctypes.c_uint32)]


class _ModelInfo(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("arch", ctypes.c_uint32), ("vocab_size", ctypes.c_uint32),
                ("d_model", ctypes.c_uint32), ("encoder_layers", ctypes.c_uint32),
                ("decoder_layers", ctypes.c_uint32), ("threads", ctypes.c_uint32),
                ("has_tokenizer", ctypes.c_int32), ("isa", ctypes.c_char_p), ("file_bytes", ctypes.c_uint64),
                ("copied_bytes", ctypes.c_uint64)]


_STREAM = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t, _u32p, ctypes.c_size_t,
                           ctypes.c_void_p, ctypes.c_size_t)

_c.quill_last_error.restype = ctypes.c_char_p
_c.quill_status_str.restype = ctypes.c_char_p
_c.quill_version.restype = ctypes.c_char_p
for _name in ["quill_result_inputs", "quill_result_hypotheses"]:
    getattr(_c, _name).restype = ctypes.c_size_t
_c.quill_generate_ids.argtypes = [ctypes.c_void_p, ctypes.POINTER(_u32p), ctypes.POINTER(ctypes.c_size_t),
                                  ctypes.c_size_t, ctypes.POINTER(_GenerateParams), _STREAM, ctypes.c_void_p,
                                  ctypes.POINTER(ctypes.c_void_p)]
_c.quill_generate_text.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t,
                                   ctypes.POINTER(_GenerateParams), _STREAM, ctypes.c_void_p,
                                   ctypes.POINTER(ctypes.c_void_p)]
for _name in ["quill_model_free", "quill_session_free", "quill_result_free"]:
    getattr(_c, _name).argtypes = [ctypes.c_void_p]
    getattr(_c, _name).restype = None
_c.quill_session_cancel.argtypes = [ctypes.c_void_p]
_c.quill_result_inputs.argtypes = [ctypes.c_void_p]
_c.quill_result_hypotheses.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_c.quill_result_stopped.argtypes = [ctypes.c_void_p]
_c.quill_result_ids.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(_u32p),
                                ctypes.POINTER(ctypes.c_size_t)]
_c.quill_result_text.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p)]
_c.quill_result_score.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_float)]
_c.quill_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, _u32p, ctypes.c_size_t,
                              ctypes.POINTER(ctypes.c_size_t)]
_c.quill_detokenize.argtypes = [ctypes.c_void_p, _u32p, ctypes.c_size_t, ctypes.c_int32, ctypes.c_char_p,
                                ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
_c.quill_model_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(_ModelParams), ctypes.POINTER(ctypes.c_void_p)]
_c.quill_session_new.argtypes = [ctypes.c_void_p, ctypes.POINTER(_SessionParams), ctypes.POINTER(ctypes.c_void_p)]
_c.quill_generate_default_params.argtypes = [ctypes.c_void_p, ctypes.POINTER(_GenerateParams)]
_c.quill_model_info_get.argtypes = [ctypes.c_void_p, ctypes.POINTER(_ModelInfo)]

QUILL_ERR_BUFFER_TOO_SMALL = 6


class QuillError(Exception):
    """A failed call: `.status` is the C status code, the message comes from the library."""

    def __init__(self, status: int):
        self.status = status
        name = _c.quill_status_str(status).decode()
        super().__init__("%s: %s" % (name, _c.quill_last_error().decode("utf-8", "replace")))


def _check(status: int):
    if status != 0:
        raise QuillError(status)


def version() -> str:
    return _c.quill_version().decode()


@dataclass
class Hypothesis:
    ids: List[int]
    score: float
    text: Optional[str] = None


class Model:
    """An open model. Thread-safe: share one Model between threads, give each thread a Session."""

    def __init__(self, path: str, threads: int = 0, in_memory: bool = False):
        p = _ModelParams(ctypes.sizeof(_ModelParams), threads, int(in_memory), 0)
        h = ctypes.c_void_p()
        _check(_c.quill_model_open(os.fsencode(path), ctypes.byref(p), ctypes.byref(h)))
        self._h = h

    def close(self):
        if self._h:
            _c.quill_model_free(self._h)
            self._h = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def info(self) -> dict:
        i = _ModelInfo(ctypes.sizeof(_ModelInfo))
        _check(_c.quill_model_info_get(self._h, ctypes.byref(i)))
        return {"arch": ["seq2seq", "decoder-only", "lstm-seq2seq"][i.arch], "vocab_size": i.vocab_size,
                "d_model": i.d_model, "encoder_layers": i.encoder_layers, "decoder_layers": i.decoder_layers,
                "threads": i.threads, "has_tokenizer": bool(i.has_tokenizer), "isa": i.isa.decode(),
                "file_bytes": i.file_bytes}

    def tokenize(self, text: str, add_special: bool = True) -> List[int]:
        n = ctypes.c_size_t()
        data = text.encode()
        s = _c.quill_tokenize(self._h, data, int(add_special), None, 0, ctypes.byref(n))
        if s not in (0, QUILL_ERR_BUFFER_TOO_SMALL):
            _check(s)
        buf = (ctypes.c_uint32 * max(n.value, 1))()
        _check(_c.quill_tokenize(self._h, data, int(add_special), buf, n.value, ctypes.byref(n)))
        return list(buf[: n.value])

    def detokenize(self, ids: Sequence[int], skip_special: bool = True) -> str:
        arr = (ctypes.c_uint32 * max(len(ids), 1))(*ids)
        n = ctypes.c_size_t()
        s = _c.quill_detokenize(self._h, arr, len(ids), int(skip_special), None, 0, ctypes.byref(n))
        if s not in (0, QUILL_ERR_BUFFER_TOO_SMALL):
            _check(s)
        buf = ctypes.create_string_buffer(n.value + 1)
        _check(_c.quill_detokenize(self._h, arr, len(ids), int(skip_special), buf, n.value + 1, ctypes.byref(n)))
        return buf.raw[: n.value].decode()

    def session(self, max_batch: int = 1, max_input_len: int = 512, max_new_tokens: int = 256,
                beams: int = 1) -> "Session":
        return Session(self, max_batch, max_input_len, max_new_tokens, beams)


class Session:
    """All mutable state of one user of a model: use from one thread at a time (`cancel` from any)."""

    def __init__(self, model: Model, max_batch: int, max_input_len: int, max_new_tokens: int, beams: int):
        p = _SessionParams(ctypes.sizeof(_SessionParams), max_batch, max_input_len, max_new_tokens, beams)
        h = ctypes.c_void_p()
        _check(_c.quill_session_new(model._h, ctypes.byref(p), ctypes.byref(h)))
        self._h, self.model = h, model

    def close(self):
        if self._h:
            _c.quill_session_free(self._h)
            self._h = None

    __del__ = close

    def cancel(self):
        """Stops the running generation (any thread)."""
        _check(_c.quill_session_cancel(self._h))

    def _params(self, max_new_tokens=None, min_new_tokens=None, beams=1, n_best=1, length_penalty=1.0, sample=False, temperature=1.0,
                top_k=0, top_p=1.0, min_p=0.0, seed=0, repetition_penalty=None, no_repeat_ngram_size=None):
        p = _GenerateParams()
        _check(_c.quill_generate_default_params(self.model._h, ctypes.byref(p)))
        if max_new_tokens is not None:
            p.max_new_tokens = max_new_tokens
        if min_new_tokens is not None:
            p.min_new_tokens = min_new_tokens
        p.beams, p.n_best, p.length_penalty = beams, n_best, length_penalty
        p.sample, p.temperature, p.top_k, p.top_p, p.min_p, p.seed = int(sample), temperature, top_k, top_p, min_p, seed
        if repetition_penalty is not None:
            p.repetition_penalty = repetition_penalty
        if no_repeat_ngram_size is not None:
            p.no_repeat_ngram_size = no_repeat_ngram_size
        return p

    def generate(self, inputs: Sequence[Union[str, Sequence[int]]], callback=None, **options) -> List[List[Hypothesis]]:
        """Generates for a batch of texts (→ hypotheses with text) or of id lists. `callback(input,
        ids, text)` receives final tokens as they come; return True from it to stop."""
        p = self._params(**options)
        out = ctypes.c_void_p()
        errors = []

        def on_tokens(_user, input_, ids, n, text, text_len):
            try:
                t = ctypes.string_at(text, text_len).decode() if text else None
                return 1 if callback(input_, list(ids[:n]), t) else 0
            except BaseException as e:  # never let an exception unwind through C
                errors.append(e)
                return 1

        cb = _STREAM(on_tokens) if callback else _STREAM()
        texts = bool(inputs) and isinstance(inputs[0], str)
        if texts:
            arr = (ctypes.c_char_p * len(inputs))(*[t.encode() for t in inputs])
            _check(_c.quill_generate_text(self._h, arr, len(inputs), ctypes.byref(p), cb, None, ctypes.byref(out)))
        else:
            bufs = [(ctypes.c_uint32 * max(len(v), 1))(*v) for v in inputs]
            ptrs = (_u32p * len(inputs))(*[ctypes.cast(b, _u32p) for b in bufs])
            lens = (ctypes.c_size_t * len(inputs))(*[len(v) for v in inputs])
            _check(_c.quill_generate_ids(self._h, ptrs, lens, len(inputs), ctypes.byref(p), cb, None,
                                         ctypes.byref(out)))
        if errors:
            _c.quill_result_free(out)
            raise errors[0]
        try:
            self.stopped = bool(_c.quill_result_stopped(out))
            result = []
            for i in range(_c.quill_result_inputs(out)):
                hyps = []
                for h in range(_c.quill_result_hypotheses(out, i)):
                    ids, n, score = _u32p(), ctypes.c_size_t(), ctypes.c_float()
                    _check(_c.quill_result_ids(out, i, h, ctypes.byref(ids), ctypes.byref(n)))
                    _check(_c.quill_result_score(out, i, h, ctypes.byref(score)))
                    text = None
                    if texts:
                        t = ctypes.c_char_p()
                        _check(_c.quill_result_text(out, i, h, ctypes.byref(t)))
                        text = t.value.decode()
                    hyps.append(Hypothesis(list(ids[: n.value]), score.value, text))
                result.append(hyps)
            return result
        finally:
            _c.quill_result_free(out)

    def stream(self, text: str, **options) -> Iterator[str]:
        """Yields the text of `text`'s best output piece by piece while it is generated (the
        generation runs on a worker thread; closing the iterator cancels it)."""
        q: "queue.Queue" = queue.Queue()
        done = object()

        def run():
            try:
                self.generate([text], callback=lambda _i, _ids, t: q.put(t) and False, **options)
            except BaseException as e:
                q.put(e)
            q.put(done)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                if item:
                    yield item
        finally:
            if worker.is_alive():
                self.cancel()
            worker.join()
