#!/usr/bin/env python3
"""The dialogue corpus of models/chat-en.quill: the Chit-Chat Challenge conversations (BYU PCC
lab, MIT licence; 7,168 conversations between two people), one conversation a line, rendered
with the model's chat template (CHAT_TEMPLATE below, stored in the model by quill-train's
--chat-template), for `quill-train --task lm`.

    pip download --no-deps chitchat-dataset==0.9.0 -d DIR     # the wheel holds dataset.json
    python3 dialogue_corpus.py DIR/chitchat_dataset-0.9.0-py3-none-any.whl OUT

writes OUT/chat.{train,dev,test}.txt, a 94/3/3 % split by SHA-256 of the conversation id, and
OUT/chat_template.jinja (for quill-train --chat-template).
Each conversation: the two people's turns (consecutive messages of one person joined with a
space, whitespace collapsed) as alternating `user` and `assistant` messages, the first speaker
the user, rendered as

    <|user|>hi<|end|><|assistant|>hey how are you<|end|><|user|>...

The template has no newlines because quill-train's language-model corpus is one text a line.
Role and end-of-turn markers are special tokens (--special-tokens), so a reply decoded on its
own is exactly the text the template renders for it (the KV cache of a conversation is then
always a prefix of the next turn's prompt). tests/reference/chat_goldens.py checks that
transformers' apply_chat_template renders the same text from the same messages.
"""
import hashlib
import json
import os
import re
import sys
import zipfile

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('roles are system, user and assistant') }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def render(messages):
    """CHAT_TEMPLATE's text for messages without a generation prompt (what Jinja renders)."""
    return "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages)


def clean(text):
    text = re.sub(r"\s+", " ", text).strip()
    for s in SPECIAL_TOKENS:
        text = text.replace(s, "")
    return text


def conversations(data):
    for cid, conv in sorted(data.items()):
        messages = []
        for turn in conv["messages"]:
            text = clean(" ".join(u["text"] for u in turn))
            if not text:
                continue
            role = "user" if len(messages) % 2 == 0 else "assistant"
            messages.append({"role": role, "content": text})
        if len(messages) >= 2:
            yield cid, messages


def split_of(cid):
    h = int(hashlib.sha256(cid.encode()).hexdigest(), 16) % 100
    return "test" if h < 3 else "dev" if h < 6 else "train"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    if src.endswith(".whl"):
        with zipfile.ZipFile(src) as z:
            data = json.loads(z.read("chitchat_dataset/dataset.json"))
    else:
        data = json.load(open(src))
    os.makedirs(out, exist_ok=True)
    files = {s: open(os.path.join(out, f"chat.{s}.txt"), "w") for s in ("train", "dev", "test")}
    counts = dict.fromkeys(files, 0)
    turns = 0
    for cid, messages in conversations(data):
        s = split_of(cid)
        files[s].write(render(messages) + "\n")
        counts[s] += 1
        turns += len(messages)
    for f in files.values():
        f.close()
    with open(os.path.join(out, "chat_template.jinja"), "w") as f:
        f.write(CHAT_TEMPLATE)
    print(json.dumps({"conversations": counts, "turns": turns}))


if __name__ == "__main__":
    main()
