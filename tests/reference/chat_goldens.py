#!/usr/bin/env python3
"""Chat-template goldens from Hugging Face transformers' apply_chat_template(tokenize=False).

Each tests/fixtures/chat/<family>.json holds model data copied once from a public source and left
as is here: "template" (the model's chat_template, byte-exact, checked against "template_sha256"),
"bos_token", "eos_token" and "source" (where the template came from and how it was cross-checked).
This script renders the cases built below (common_cases, extra_cases) with that template and
rewrites each file's "cases", plus the versions used. Run offline with the reference venv:

    ~/quill-ref/venv/bin/python tests/reference/chat_goldens.py tests/fixtures/chat

quill_chat_en.json is the template of models/chat-en.quill (tests/reference/dialogue_corpus.py,
which must render its corpus exactly as the template does: checked here).

(last run: transformers 5.24.0, tokenizers 0.23.3, jinja2 3.1.6, Python 3.11.7; no network: the
tokenizer is a tiny in-memory WordLevel model that only carries the family's bos/eos strings).

What the template sees, as apply_chat_template passes it: messages, tools (null unless the case
has "tools"), documents (null), add_generation_prompt, bos_token / eos_token when not null, and
the case's "kwargs". transformers compiles the template in a sandboxed jinja2 Environment with
trim_blocks=True, lstrip_blocks=True and the loopcontrols extension, overrides the tojson filter
with json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=False), and adds the
globals raise_exception(msg), strftime_now(fmt), namespace and dict. A case whose render raises
is recorded as {"error": true, "error_message": ...}.
"""
import copy
import hashlib
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jinja2  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

FAMILIES = ["llama3_1", "qwen2_5", "smollm2", "mistral_v0_2", "gemma2", "phi3_5", "quill_chat_en"]

# Families whose template raises on a system message.
NO_SYSTEM = {"gemma2"}

SYSTEM = {"role": "system", "content": "You are a concise assistant. Answer in one sentence."}
USER_1 = {"role": "user", "content": "What is the capital of France?"}
ASSISTANT_1 = {"role": "assistant", "content": "The capital of France is Paris."}
USER_2 = {"role": "user", "content": "And the capital of Italy?"}
ASSISTANT_2 = {"role": "assistant", "content": "The capital of Italy is Rome."}

# Leading/trailing spaces, tabs and newlines, non-ASCII text, quotes and markup characters.
MESSY_SYSTEM = {"role": "system", "content": "  Réponds en français, s'il te plaît.  \n"}
MESSY_TURNS = [
    {"role": "user", "content": "\n  Héllo wörld — 你好 🦀 \"quotes\" & <tags>  \n\n"},
    {"role": "assistant", "content": "  Bonjour ! Ça va ✓\t\n"},
    {"role": "user", "content": "Line one\nLine two\n\n  indented  "},
]

# An OpenAI-style tool; its description has characters that json.dumps keeps but an
# HTML-escaping tojson would not (<, >, &, ', non-ASCII).
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city, in °C or °F. Use <unit> & 'city' exactly.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
WEATHER_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
USER_WEATHER = {"role": "user", "content": "What's the weather in Paris?"}
TOOL_RESULT = {"role": "tool", "content": "22°C, sunny"}


def case(name, messages, add_generation_prompt, tools=None, kwargs=None):
    c = {"name": name, "messages": messages, "add_generation_prompt": add_generation_prompt}
    if tools is not None:
        c["tools"] = tools
    if kwargs is not None:
        c["kwargs"] = kwargs
    return c


def common_cases(family):
    """Every family: one user turn, system + turns (or its refusal), ending with the assistant,
    and messy whitespace and unicode with and without a generation prompt."""
    cases = [case("single_user", [USER_1], True)]
    if family in NO_SYSTEM:
        cases.append(case("system_rejected", [SYSTEM, USER_1, ASSISTANT_1, USER_2], True))
        cases.append(case("turns_without_system", [USER_1, ASSISTANT_1, USER_2], True))
    else:
        cases.append(case("system_and_turns", [SYSTEM, USER_1, ASSISTANT_1, USER_2], True))
    cases.append(case("ends_with_assistant", [USER_1, ASSISTANT_1, USER_2, ASSISTANT_2], False))
    messy_system = [] if family in NO_SYSTEM else [MESSY_SYSTEM]
    cases.append(case("whitespace_and_unicode", messy_system + MESSY_TURNS, True))
    cases.append(case("whitespace_and_unicode_no_prompt", messy_system + MESSY_TURNS + [MESSY_TURNS[1]], False))
    return cases


def extra_cases(family):
    """Cases that exercise what only some templates do (tools, errors, skipped messages)."""
    if family == "llama3_1":
        return [
            # Tools go into the first user message, each as tojson(indent=4).
            case("tools_in_first_user_message", [SYSTEM, USER_WEATHER], True, tools=[WEATHER_TOOL]),
            # A tool call renders its arguments with tojson; a string tool result "is iterable" -> tojson.
            case("tool_call_and_result",
                 [SYSTEM, USER_WEATHER, {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL]}, TOOL_RESULT],
                 True, tools=[WEATHER_TOOL]),
            # builtin_tools: reject('equalto', ...) | join, `| items`, <|python_tag|> and <|eom_id|>.
            case("builtin_tools_call",
                 [USER_WEATHER,
                  {"role": "assistant", "content": "",
                   "tool_calls": [{"type": "function", "function": {"name": "brave_search", "arguments": {"query": "weather in Paris"}}}]},
                  {"role": "ipython", "content": "Paris: 22°C, sunny"}],
                 True, kwargs={"builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"]}),
            case("date_string_given", [USER_1], True, kwargs={"date_string": "05 Dec 2025"}),
            case("two_tool_calls_rejected",
                 [USER_WEATHER, {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL, WEATHER_CALL]}], True),
        ]
    if family == "qwen2_5":
        return [
            case("tools_default_system", [USER_WEATHER], True, tools=[WEATHER_TOOL]),
            case("tools_with_system", [SYSTEM, USER_WEATHER], True, tools=[WEATHER_TOOL]),
            # Consecutive tool results share one user turn (loop.index0, messages[i - 1], loop.last).
            case("tool_calls_and_results",
                 [USER_WEATHER,
                  {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL, WEATHER_CALL]},
                  TOOL_RESULT, {"role": "tool", "content": "22°C, sunny (again)"},
                  {"role": "assistant", "content": "It is 22°C and sunny in Paris."}],
                 False, tools=[WEATHER_TOOL]),
        ]
    if family in ("mistral_v0_2", "gemma2"):
        return [case("roles_not_alternating", [USER_1, USER_2], True)]
    if family == "phi3_5":
        return [case("empty_system_skipped", [{"role": "system", "content": ""}, USER_1], True)]
    if family == "quill_chat_en":
        return [case("tool_role_refused", [USER_1, {"role": "tool", "content": "22°C"}], True)]
    return []


def make_tokenizer(bos_token, eos_token):
    """A tokenizer that exists only to carry bos/eos into apply_chat_template; nothing is downloaded."""
    vocab = {"<unk>": 0}
    for token in (bos_token, eos_token):
        if token is not None and token not in vocab:
            vocab[token] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {}
    if bos_token is not None:
        special["bos_token"] = bos_token
    if eos_token is not None:
        special["eos_token"] = eos_token
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special)


def render(tokenizer, template, c):
    try:
        text = tokenizer.apply_chat_template(
            copy.deepcopy(c["messages"]),
            tools=copy.deepcopy(c.get("tools")),
            chat_template=template,
            add_generation_prompt=c["add_generation_prompt"],
            tokenize=False,
            **copy.deepcopy(c.get("kwargs", {})),
        )
    except jinja2.exceptions.TemplateError as e:
        return {"error": True, "error_message": str(e)}
    return {"rendered": text}


def main(out_dir):
    out_dir = Path(out_dir)
    for family in FAMILIES:
        path = out_dir / f"{family}.json"
        doc = json.loads(path.read_text(encoding="utf-8"))
        template = doc["template"]
        digest = hashlib.sha256(template.encode("utf-8")).hexdigest()
        if digest != doc["template_sha256"]:
            sys.exit(f"{path}: template does not match template_sha256 ({digest})")
        tokenizer = make_tokenizer(doc["bos_token"], doc["eos_token"])
        cases = []
        for c in common_cases(family) + extra_cases(family):
            c.update(render(tokenizer, template, c))
            cases.append(c)
            if family == "quill_chat_en" and not c.get("error"):
                # The training corpus of models/chat-en.quill renders conversations in Python:
                # it must give the template's text.
                import dialogue_corpus
                text = dialogue_corpus.render(c["messages"])
                text += "<|assistant|>" if c["add_generation_prompt"] else ""
                if text != c["rendered"] or template != dialogue_corpus.CHAT_TEMPLATE:
                    sys.exit(f"{family} {c['name']}: dialogue_corpus.py renders {text!r}")
        model_data = ["family", "model", "source", "template_sha256", "template", "bos_token", "eos_token"]
        doc = {key: doc[key] for key in model_data}
        doc["transformers_version"] = version("transformers")
        doc["jinja2_version"] = version("jinja2")
        doc["cases"] = cases
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        errors = sum(1 for c in cases if c.get("error"))
        print(f"{path}: {len(cases)} cases ({errors} expected errors)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/chat")
