"""Python bindings for quill, over its C API with ctypes (no compiler needed).

    import quill
    model = quill.Model("model.quill")
    session = model.session()                      # sized to fit the model
    print(session.generate(["Open the file"])[0][0].text)   # the model's own decoding defaults
    for piece in session.stream("Open the file", beams=1):
        print(piece, end="", flush=True)

The shared library is the one bundled in the wheel (next to this file), else $QUILL_LIBRARY,
else the system's library path (`libquill`). Errors raise QuillError (with .status and the
library's message).
"""
import ctypes
import ctypes.util
import json
import os
import queue
import threading
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Union

__all__ = ["Model", "Session", "Hypothesis", "QuillError", "library"]


def _load():
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libquill.so")
    path = os.environ.get("QUILL_LIBRARY") or (bundled if os.path.exists(bundled) else None) \
        or ctypes.util.find_library("quill")
    if not path:
        raise OSError("libquill not found: install the quill wheel, or set QUILL_LIBRARY to the path of "
                      "libquill.so")
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
                ("copied_bytes", ctypes.c_uint64), ("max_positions", ctypes.c_uint32), ("bos_id", ctypes.c_uint32),
                ("eos_id", ctypes.c_uint32), ("pad_id", ctypes.c_uint32), ("decoder_start_id", ctypes.c_uint32),
                ("n_eos_ids", ctypes.c_uint32), ("has_target_tokenizer", ctypes.c_int32)]


_NO_ID = 0xFFFFFFFF


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
_c.quill_chat_turn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(_GenerateParams), _STREAM,
                               ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
_c.quill_chat_add.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
_c.quill_chat_set_tools.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_c.quill_session_reset.argtypes = [ctypes.c_void_p]
_c.quill_model_params_init.argtypes = [ctypes.POINTER(_ModelParams), ctypes.c_size_t]
_c.quill_session_params_init.argtypes = [ctypes.POINTER(_SessionParams), ctypes.c_size_t]
_c.quill_generate_params_init.argtypes = [ctypes.c_void_p, ctypes.POINTER(_GenerateParams), ctypes.c_size_t]
_c.quill_session_limits.argtypes = [ctypes.c_void_p, ctypes.POINTER(_SessionParams)]
_c.quill_session_generate_params.argtypes = [ctypes.c_void_p, ctypes.POINTER(_GenerateParams), ctypes.c_size_t]
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

    _h = None  # so that close() works on an object whose __init__ failed

    def __init__(self, path: str, threads: int = 0, in_memory: bool = False):
        p = _ModelParams()
        _check(_c.quill_model_params_init(ctypes.byref(p), ctypes.sizeof(p)))
        p.threads, p.in_memory = threads, int(in_memory)
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
        eos = (ctypes.c_uint32 * max(i.n_eos_ids, 1))()
        n = ctypes.c_size_t()
        _check(_c.quill_model_eos_ids(self._h, eos, i.n_eos_ids, ctypes.byref(n)))
        some = lambda v: None if v == _NO_ID else v
        return {"arch": ["seq2seq", "decoder-only", "lstm-seq2seq"][i.arch], "vocab_size": i.vocab_size,
                "d_model": i.d_model, "encoder_layers": i.encoder_layers, "decoder_layers": i.decoder_layers,
                "threads": i.threads, "has_tokenizer": bool(i.has_tokenizer), "isa": i.isa.decode(),
                "file_bytes": i.file_bytes, "max_positions": i.max_positions or None,
                "bos_id": some(i.bos_id), "eos_ids": list(eos[: n.value]), "pad_id": some(i.pad_id),
                "decoder_start_id": some(i.decoder_start_id),
                "has_target_tokenizer": bool(i.has_target_tokenizer)}

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

    def session(self, max_batch: int = 1, max_input_len: int = 0, max_new_tokens: int = 0,
                beams: int = 0, max_memory: int = 0) -> "Session":
        """A session; a length or `beams` of 0 fits the model (its positions, its default decoding)."""
        return Session(self, max_batch, max_input_len, max_new_tokens, beams, max_memory)


class Session:
    """All mutable state of one user of a model: use from one thread at a time (`cancel` from any)."""

    _h = None  # so that close() works on an object whose __init__ failed

    def __init__(self, model: Model, max_batch: int = 1, max_input_len: int = 0, max_new_tokens: int = 0,
                 beams: int = 0, max_memory: int = 0):
        p = _SessionParams()
        _check(_c.quill_session_params_init(ctypes.byref(p), ctypes.sizeof(p)))
        p.max_batch, p.max_input_len, p.max_new_tokens = max_batch, max_input_len, max_new_tokens
        p.beams, p.max_memory = beams, max_memory
        h = ctypes.c_void_p()
        _check(_c.quill_session_new(model._h, ctypes.byref(p), ctypes.byref(h)))
        self._h, self.model = h, model

    @property
    def limits(self) -> dict:
        """What the session was sized for (each 0 asked for replaced by what it fitted)."""
        p = _SessionParams(ctypes.sizeof(_SessionParams))
        _check(_c.quill_session_limits(self._h, ctypes.byref(p)))
        return {"max_batch": p.max_batch, "max_input_len": p.max_input_len, "max_new_tokens": p.max_new_tokens,
                "beams": p.beams, "max_memory": p.max_memory}

    def close(self):
        if self._h:
            _c.quill_session_free(self._h)
            self._h = None

    __del__ = close

    def cancel(self):
        """Stops the running generation (any thread)."""
        _check(_c.quill_session_cancel(self._h))

    _OPTIONS = ("max_new_tokens", "min_new_tokens", "beams", "n_best", "length_penalty", "sample", "temperature",
                "top_k", "top_p", "min_p", "seed", "repetition_penalty", "no_repeat_ngram_size")

    def _params(self, **options):
        """The model's decoding defaults (lowered to what the session holds) with the options
        given; None when none is (the C API then uses those defaults itself)."""
        unknown = set(options) - set(self._OPTIONS)
        if unknown:
            raise TypeError("unknown decoding options: %s" % ", ".join(sorted(unknown)))
        if not options:
            return None
        p = _GenerateParams()
        _check(_c.quill_session_generate_params(self._h, ctypes.byref(p), ctypes.sizeof(p)))
        for k, v in options.items():
            setattr(p, k, int(v) if k == "sample" else v)
        return ctypes.byref(p)

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
            _check(_c.quill_generate_text(self._h, arr, len(inputs), p, cb, None, ctypes.byref(out)))
        else:
            bufs = [(ctypes.c_uint32 * max(len(v), 1))(*v) for v in inputs]
            ptrs = (_u32p * len(inputs))(*[ctypes.cast(b, _u32p) for b in bufs])
            lens = (ctypes.c_size_t * len(inputs))(*[len(v) for v in inputs])
            _check(_c.quill_generate_ids(self._h, ptrs, lens, len(inputs), p, cb, None, ctypes.byref(out)))
        return self._collect(out, texts, errors)

    def chat(self, message: Optional[str], callback=None, **options) -> Hypothesis:
        """One turn of a conversation with a decoder-only model (the session keeps the earlier
        turns' cache). A model with a chat template takes `message` as the user's message and
        formats the conversation with it (`None`: reply to the messages so far, e.g. a tool's
        result added with `chat_add("tool", ...)`); without one, `message` goes to the model as
        it is. `callback(ids, text)` streams the reply. `reset()` starts a new conversation."""
        p = self._params(**options)
        out = ctypes.c_void_p()
        errors = []

        def on_tokens(_user, _input, ids, n, text, text_len):
            try:
                return 1 if callback(list(ids[:n]), ctypes.string_at(text, text_len).decode()) else 0
            except BaseException as e:
                errors.append(e)
                return 1

        cb = _STREAM(on_tokens) if callback else _STREAM()
        text = None if message is None else message.encode()
        _check(_c.quill_chat_turn(self._h, text, p, cb, None, ctypes.byref(out)))
        return self._collect(out, True, errors)[0][0]

    def chat_add(self, role: str, content: str):
        """Adds a message with `role` ("system", "user", "assistant") to the conversation without
        generating: a system message, or earlier turns to continue from. Needs a model with a
        chat template."""
        _check(_c.quill_chat_add(self._h, role.encode(), content.encode()))

    def chat_set_tools(self, tools: Optional[list]):
        """Offers `tools` (the list `transformers`' `apply_chat_template` takes) to the model
        through its chat template; `None` removes them. Needs a model with a chat template."""
        _check(_c.quill_chat_set_tools(self._h, None if tools is None else json.dumps(tools).encode()))

    def reset(self):
        """Forgets the conversation and the started sequences."""
        _check(_c.quill_session_reset(self._h))

    def _collect(self, out, texts, errors) -> List[List[Hypothesis]]:
        """Reads and frees a result; re-raises a callback's exception after freeing it."""
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
