"""The shared end-to-end cases through the Python binding (run by tests/c_api.rs, or by hand:
QUILL_LIBRARY=... QUILL_TEST_MODEL=... QUILL_EXPECTED=... QUILL_TEST_TEXT=... pytest)."""
import os

import pytest

import quill

MODEL = os.environ["QUILL_TEST_MODEL"]
TEXT = os.environ["QUILL_TEST_TEXT"]
EXPECTED = dict(line.split(":", 1) for line in open(os.environ["QUILL_EXPECTED"]).read().splitlines())


def ids(name):
    return [int(x) for x in EXPECTED[name].split(",") if x]


@pytest.fixture(scope="module")
def model():
    with quill.Model(MODEL, threads=1) as m:
        yield m


def test_open_and_info(model):
    info = model.info
    assert info["arch"] == "seq2seq" and info["vocab_size"] == 1000 and info["has_tokenizer"]


def test_tokenize_roundtrip(model):
    assert model.tokenize(TEXT) == ids("tokenize")
    assert isinstance(model.detokenize(ids("greedy")), str)


def test_greedy_beam_sample_batch(model):
    s = model.session(max_batch=2, max_input_len=64, max_new_tokens=32, beams=4)
    src = ids("tokenize")
    assert s.generate([src], max_new_tokens=24)[0][0].ids == ids("greedy")
    beam = s.generate([src], max_new_tokens=24, beams=4, n_best=2)[0]
    assert [h.ids for h in beam] == [ids("beam0"), ids("beam1")]
    assert beam[0].score >= beam[1].score
    assert s.generate([src], max_new_tokens=24, sample=True, seed=7, top_k=50)[0][0].ids == ids("sample")
    # min_new_tokens holds end-of-sequence back: exactly that many tokens
    out = s.generate([src, src[:2]], max_new_tokens=30, min_new_tokens=30)
    assert len(ids("greedy")) < 30 and [len(b[0].ids) for b in out] == [30, 30]
    batch = s.generate([src, src[:-3]], max_new_tokens=24)
    assert [b[0].ids for b in batch] == [ids("batch0"), ids("batch1")]


def test_streaming_adds_up(model):
    s = model.session(max_input_len=64, max_new_tokens=32)
    pieces = list(s.stream(TEXT, max_new_tokens=24))
    full = s.generate([TEXT], max_new_tokens=24)[0][0].text
    assert "".join(pieces) == full


def test_cancel_and_errors(model):
    s = model.session(max_input_len=64, max_new_tokens=32)
    seen = []

    def cb(_i, new, _t):
        seen.extend(new)
        if len(seen) >= 3:
            s.cancel()
        return False

    s.generate([ids("tokenize")], callback=cb, max_new_tokens=24)
    assert s.stopped and len(seen) <= 4
    with pytest.raises(quill.QuillError) as e:
        quill.Model("/nonexistent.quill")
    assert e.value.status == 2
    with pytest.raises(quill.QuillError):
        model.detokenize([123456])
    with pytest.raises(ValueError):
        s.generate([ids("tokenize")], callback=lambda *a: (_ for _ in ()).throw(ValueError("from the callback")))


def test_a_failing_constructor_raises_one_error_and_nothing_else(model):
    import gc
    import sys

    unraisable = []
    old, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with pytest.raises(quill.QuillError) as e:
            quill.Model("/nonexistent/model.quill")
        assert e.value.status == 2  # QUILL_ERR_IO
        with pytest.raises(quill.QuillError) as e:
            model.session(max_input_len=1 << 30)
        assert e.value.status == 1  # QUILL_ERR_INVALID_ARGUMENT
        gc.collect()
    finally:
        sys.unraisablehook = old
    assert unraisable == [], [u.exc_value for u in unraisable]


def test_all_defaults_fit_the_model(model):
    s = model.session()
    assert s.limits["beams"] >= 1 and s.limits["max_new_tokens"] >= 1
    assert s.generate([TEXT])[0][0].text
    info = model.info
    assert info["eos_ids"] == [0] and info["decoder_start_id"] == 999 and info["max_positions"]


def test_chat_add_sets_the_system_message(model):
    """The shipped chat model: a system message, then a turn with the model's defaults, gives the
    C API's reply; an empty role, or a model without a chat template, is refused."""
    with quill.Model(os.environ["QUILL_CHAT_MODEL"], threads=1) as m:
        s = m.session(max_batch=1, beams=1)
        s.chat_add("system", os.environ["QUILL_CHAT_SYSTEM"])
        assert s.chat(os.environ["QUILL_CHAT_MESSAGE"]).ids == ids("chat")
        with pytest.raises(quill.QuillError):
            s.chat_add("", "x")
    with pytest.raises(quill.QuillError) as e:
        model.session().chat_add("system", "x")
    assert "chat template" in str(e.value)


def test_chat_set_tools(model):
    """Tools reach a model with a chat template (the chat model's own template does not print
    them, so its reply is the one without tools); a tool's result gets a reply with chat(None);
    a model without a template refuses tools."""
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {}}}]
    with quill.Model(os.environ["QUILL_CHAT_MODEL"], threads=1) as m:
        s = m.session(max_batch=1, beams=1)
        s.chat_set_tools(tools)
        s.chat_add("system", os.environ["QUILL_CHAT_SYSTEM"])
        assert s.chat(os.environ["QUILL_CHAT_MESSAGE"]).ids == ids("chat")
        s.chat_add("user", "And now?")
        assert s.chat(None).text is not None
        s.chat_set_tools(None)
        with pytest.raises(quill.QuillError):
            s.chat_set_tools("not a list")
    with pytest.raises(quill.QuillError) as e:
        model.session().chat_set_tools(tools)
    assert "chat template" in str(e.value)
