//! Chat templates and conversations: the Jinja template a chat model ships (Hugging Face
//! `tokenizer_config.json` → `chat_template`, stored in the `.quill` file as
//! `quill.chat_template`, `docs/format.md` §3) renders a list of messages with roles into the
//! prompt text the model was trained on; a [`Conversation`] keeps the messages and feeds the
//! model only what each new turn adds to that text, after the KV cache of the turns before.
//!
//! Rendering follows `transformers`' `apply_chat_template`: a Jinja environment with
//! `trim_blocks` and `lstrip_blocks`, loop controls, the template's special tokens as
//! variables (`bos_token`, `eos_token`), `raise_exception(msg)` (an error naming the message),
//! `strftime_now(format)` (local time), `tojson` as Python's `json.dumps` writes JSON, and
//! Python's string and dict methods (`.strip()`, `.split()`, `.items()`...); messages may carry
//! tool calls, and `tools` and extra variables reach the template ([`ChatTemplate::render_with`]). Templates come from model files, so they run with a budget of
//! instructions (a template that loops forever is an error, not a hang).
//!
//! The engine-only build leaves this module out (feature `chat`).

use crate::decode::{Callback, text};
use crate::decode::{CancelHandle, Chat, GenerateOptions, Hypothesis};
use crate::error::{Error, Result};
use crate::format::keys;
use crate::model::{Model, Session};
use serde::{Deserialize, Serialize};

/// Instructions a template may execute for one rendering (minijinja's fuel): a real template
/// spends a few hundred per message.
const FUEL: u64 = 20_000_000;

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` (or any role the template knows: `tool`, `ipython`).
    pub role: String,
    #[serde(default)]
    pub content: String,
    /// The message's other fields, which the template reads as they are: an assistant's
    /// `tool_calls` (`[{"type":"function","function":{"name":…,"arguments":{…}}}]`), a tool
    /// result's `tool_call_id` or `name`. Empty for plain messages.
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            extra: serde_json::Map::new(),
        }
    }

    /// The message with field `key` (e.g. `tool_calls`) set to `value`.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Message {
        self.extra.insert(key.into(), value);
        self
    }
}

/// What a `.quill` file stores under `quill.chat_template` (a JSON object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// The Jinja source.
    pub template: String,
    /// The strings the template sees as `bos_token` and `eos_token` (absent: undefined).
    #[serde(default)]
    pub bos_token: Option<String>,
    #[serde(default)]
    pub eos_token: Option<String>,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    spec: TemplateSpec,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("spec", &self.spec)
            .finish()
    }
}

fn jinja_error(what: &str, e: &minijinja::Error) -> String {
    // minijinja's Display names the kind and the line; the detail follows in `detail()`.
    match e.detail() {
        Some(d) if !e.to_string().contains(d) => format!("{what}: {e}: {d}"),
        _ => format!("{what}: {e}"),
    }
}

/// `strftime(format)` of the local time, as Python's `datetime.now().strftime`.
fn strftime_now(format: &str) -> std::result::Result<String, minijinja::Error> {
    let bad = || {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "strftime_now: the format cannot be formatted",
        )
    };
    let fmt = std::ffi::CString::new(format).map_err(|_| bad())?;
    let mut buf = vec![0u8; 256 + 8 * format.len()];
    // SAFETY: `localtime_r` writes the `tm` it is given; `strftime` writes at most `buf.len()`
    // bytes into `buf` and reads the NUL-terminated `fmt`.
    let n = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return Err(bad());
        }
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm)
    };
    if n == 0 && !format.is_empty() {
        return Err(bad());
    }
    buf.truncate(n);
    String::from_utf8(buf).map_err(|_| bad())
}

/// A JSON value as the template sees it: objects keep their keys' order.
fn jinja_value(v: &serde_json::Value) -> minijinja::Value {
    use serde_json::Value as J;
    match v {
        J::Null => minijinja::Value::from(()),
        J::Bool(b) => minijinja::Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => minijinja::Value::from(i),
            (_, Some(u), _) => minijinja::Value::from(u),
            (_, _, f) => minijinja::Value::from(f.unwrap_or(f64::NAN)),
        },
        J::String(s) => minijinja::Value::from(s.as_str()),
        J::Array(a) => a.iter().map(jinja_value).collect(),
        J::Object(o) => {
            minijinja::Value::from_pairs(o.iter().map(|(k, v)| (k.as_str(), jinja_value(v))))
        }
    }
}

/// `tojson` as `transformers` defines it for chat templates: Python's `json.dumps` with
/// `ensure_ascii=False` — `", "` and `": "` between items, or one item a line under `indent` —
/// and no HTML escaping (MiniJinja's own `tojson` escapes `<`, `>`, `&` and `'`).
fn tojson(
    value: &minijinja::Value,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<String, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    dump(value, indent, ensure_ascii.unwrap_or(false), 0, &mut out)?;
    Ok(out)
}

fn dump(
    v: &minijinja::Value,
    indent: Option<usize>,
    ascii: bool,
    depth: usize,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    use minijinja::value::ValueKind;
    use std::fmt::Write;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => match v.as_i64() {
            Some(i) if !v.to_string().contains('.') => write!(out, "{i}").unwrap(),
            _ => {
                let f = f64::try_from(v.clone())?;
                out.push_str(&python_float(f));
            }
        },
        ValueKind::String => json_string(v.as_str().unwrap_or_default(), ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<minijinja::Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                dump(item, indent, ascii, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let keys: Vec<minijinja::Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                json_string(&k.to_string(), ascii, out);
                out.push_str(": ");
                dump(&v.get_item(k)?, indent, ascii, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        _ => {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("tojson: a {} cannot be written as JSON", v.kind()),
            ));
        }
    }
    Ok(())
}

/// A JSON string as Python writes it: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control
/// characters as `\u00XX`; with `ascii`, every non-ASCII character as `\uXXXX` (surrogate pairs
/// beyond the BMP).
fn json_string(s: &str, ascii: bool, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(out, "\\u{u:04x}").unwrap();
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it: the shortest digits that read back, with `.0` on
/// whole numbers and an exponent of at least two digits outside [1e-4, 1e16).
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').expect("`{:e}` has an exponent");
        let exp: i32 = exp.parse().expect("an integer exponent");
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let s = format!("{f}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

impl ChatTemplate {
    /// Compiles `spec.template`; a syntax error is an error naming the line.
    pub fn new(spec: TemplateSpec) -> Result<ChatTemplate> {
        let bad = |e: &minijinja::Error| {
            Error::bad_meta(
                keys::CHAT_TEMPLATE,
                jinja_error("the chat template does not compile", e),
            )
        };
        let mut env = minijinja::Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| bad(&e))?,
        );
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_function("strftime_now", |f: String| strftime_now(&f));
        env.add_filter(
            "tojson",
            |v: minijinja::Value, kw: minijinja::value::Kwargs| tojson(&v, kw),
        );
        env.add_template_owned("chat", spec.template.clone())
            .map_err(|e| bad(&e))?;
        Ok(ChatTemplate { env, spec })
    }

    /// The template of `model` (`quill.chat_template`), if its file has one.
    pub fn of_model(model: &Model) -> Result<Option<ChatTemplate>> {
        let Some(raw) = model.file().metadata().get(keys::CHAT_TEMPLATE) else {
            return Ok(None);
        };
        let spec: TemplateSpec = serde_json::from_str(raw)
            .map_err(|e| Error::bad_meta(keys::CHAT_TEMPLATE, e.to_string()))?;
        ChatTemplate::new(spec).map(Some)
    }

    pub fn spec(&self) -> &TemplateSpec {
        &self.spec
    }

    /// The prompt text of `messages`; `add_generation_prompt` appends the start of the
    /// assistant's turn. What the template refuses (`raise_exception`: a role it does not take,
    /// roles out of order) is an invalid argument with the template's message.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with(
            messages,
            add_generation_prompt,
            None,
            &serde_json::Map::new(),
        )
    }

    /// [`ChatTemplate::render`] with `tools` (the JSON list `apply_chat_template` takes:
    /// `[{"type":"function","function":{"name","description","parameters"}}]`) and `extra`
    /// variables for the template (e.g. Llama 3.1's `builtin_tools`, `date_string`).
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let t = self.env.get_template("chat").expect("added in new");
        // As `apply_chat_template` passes them: `tools` and `documents` defined but none when
        // not given, a special token the model lacks left undefined.
        let messages: Vec<minijinja::Value> = messages
            .iter()
            .map(|m| {
                let fixed = [
                    ("role", minijinja::Value::from(m.role.as_str())),
                    ("content", minijinja::Value::from(m.content.as_str())),
                ];
                let rest = m
                    .extra
                    .iter()
                    .filter(|(k, _)| k.as_str() != "role" && k.as_str() != "content")
                    .map(|(k, v)| (k.as_str(), jinja_value(v)));
                minijinja::Value::from_pairs(fixed.into_iter().chain(rest))
            })
            .collect();
        let mut ctx: Vec<(&str, minijinja::Value)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), jinja_value(v)))
            .collect();
        ctx.extend([
            ("messages", minijinja::Value::from(messages)),
            (
                "add_generation_prompt",
                minijinja::Value::from(add_generation_prompt),
            ),
            (
                "tools",
                tools.map_or(minijinja::Value::from(()), jinja_value),
            ),
            ("documents", minijinja::Value::from(())),
        ]);
        let mut ctx: std::collections::BTreeMap<&str, minijinja::Value> = ctx.into_iter().collect();
        for (k, v) in [
            ("bos_token", &self.spec.bos_token),
            ("eos_token", &self.spec.eos_token),
        ] {
            if let Some(v) = v {
                ctx.insert(k, minijinja::Value::from(v.as_str()));
            }
        }
        t.render(ctx).map_err(|e| {
            let msg = match e.kind() {
                minijinja::ErrorKind::InvalidOperation => {
                    jinja_error("the chat template refused the messages", &e)
                }
                _ => jinja_error("the chat template failed", &e),
            };
            Error::InvalidArgument(msg)
        })
    }
}

/// A conversation with a decoder-only chat model: the messages so far, and a [`Chat`] whose
/// KV cache holds their rendered text. Each [`Conversation::reply`] renders every message with
/// the template and prefills only the text after what the cache already holds; a template
/// that rewrites earlier turns (so the old text is no longer a prefix) costs one prefill of the
/// whole conversation, never a wrong prompt.
#[derive(Debug)]
pub struct Conversation {
    template: ChatTemplate,
    messages: Vec<Message>,
    /// The tools the template lists (`set_tools`), if any.
    tools: Option<serde_json::Value>,
    chat: Chat,
    /// The text whose tokens the session's cache holds (the last reply's final id included).
    fed: String,
    last_prefill: usize,
}

impl Conversation {
    pub fn new(template: ChatTemplate) -> Conversation {
        Conversation {
            template,
            messages: Vec::new(),
            tools: None,
            chat: Chat::new(),
            fed: String::new(),
            last_prefill: 0,
        }
    }

    /// Adds a message without generating: a system prompt, earlier turns to continue from, or
    /// a tool's result (role `tool`, or `ipython` for Llama 3.1) before [`Conversation::reply`].
    pub fn push(&mut self, message: Message) {
        self.messages.push(message);
    }

    /// The tools the template offers the model (`apply_chat_template`'s `tools`: a JSON list of
    /// `{"type":"function","function":{"name","description","parameters"}}`), or none. The
    /// model answers a call as text in its own format (Qwen2.5: `<tool_call>{…}</tool_call>`),
    /// which stays the assistant's message; push the result as a `tool` message and
    /// [`Conversation::reply`]. Changing the tools mid-conversation re-renders its start, so
    /// the next reply prefills the whole conversation again.
    pub fn set_tools(&mut self, tools: Option<serde_json::Value>) {
        self.tools = tools;
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Every id the model has been given or has generated in this conversation.
    pub fn history(&self) -> &[u32] {
        self.chat.history()
    }

    /// Tokens the last [`Conversation::reply`] prefilled (its new text only, unless the
    /// template rewrote earlier turns).
    pub fn last_prefill(&self) -> usize {
        self.last_prefill
    }

    /// True when the last reply was stopped (cancelled, or by its callback) before its end.
    pub fn stopped(&self) -> bool {
        self.chat.stopped()
    }

    /// Forgets the messages (the session's cache is restarted by the next reply).
    pub fn clear(&mut self) {
        self.messages.clear();
        self.chat = Chat::new();
        self.fed.clear();
    }

    /// Adds the user's message `text` and generates the reply ([`Conversation::reply`]); when
    /// that fails, the message is taken back and the conversation is as it was.
    pub fn turn(
        &mut self,
        session: &mut Session,
        text: &str,
        options: &GenerateOptions,
        cancel: Option<&CancelHandle>,
        callback: Option<Callback>,
    ) -> Result<Hypothesis> {
        text::require_text(text, "the message")?;
        self.messages.push(Message::new("user", text));
        let r = self.reply(session, options, cancel, callback);
        if r.is_err() || self.messages.last().is_some_and(|m| m.role == "user") {
            self.messages.pop();
        }
        r
    }

    /// Generates the assistant's reply to the messages so far and adds it to them. Options as
    /// for [`Chat::turn`] (greedy or sampling).
    pub fn reply(
        &mut self,
        session: &mut Session,
        options: &GenerateOptions,
        cancel: Option<&CancelHandle>,
        callback: Option<Callback>,
    ) -> Result<Hypothesis> {
        if self.messages.is_empty() {
            return Err(Error::InvalidArgument(
                "the conversation has no message to reply to".into(),
            ));
        }
        let model = session.model().clone();
        let prompt = self.template.render_with(
            &self.messages,
            true,
            self.tools.as_ref(),
            &serde_json::Map::new(),
        )?;
        let (new_text, restart) = match prompt.strip_prefix(self.fed.as_str()) {
            Some(rest) if !self.chat.history().is_empty() => (rest, false),
            _ => (prompt.as_str(), true),
        };
        // The template writes the special tokens (`bos_token`...) itself, as `transformers`
        // tokenizes a rendered chat: no post-processor.
        let tokens = text::encode(&model, new_text, false)?;
        if restart {
            self.chat = Chat::new();
        }
        let before = self.chat.history().len();
        let reply = self
            .chat
            .turn(session, &tokens, options, cancel, callback)?;
        if self.chat.history().len() == before {
            // Cancelled before it began: the conversation is unchanged.
            self.last_prefill = 0;
            return Ok(reply);
        }
        self.last_prefill = tokens.len();
        self.fed = prompt;
        self.fed.push_str(&text::decode(&model, &reply.ids, false)?);
        self.messages.push(Message::new(
            "assistant",
            &text::text_of(&model, &reply.ids)?,
        ));
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's `json.dumps` of the same values (python3 3.11), as `transformers`' `tojson` writes
    /// them.
    #[test]
    fn tojson_writes_what_python_json_dumps_writes() {
        let floats = [
            1.0,
            1e-5,
            1e16,
            1e15,
            0.0001,
            0.1,
            -0.0,
            1.5e300,
            123456.789,
            2.5e-7,
            1.0 / 3.0,
            100.0,
        ];
        let want = [
            "1.0",
            "1e-05",
            "1e+16",
            "1000000000000000.0",
            "0.0001",
            "0.1",
            "-0.0",
            "1.5e+300",
            "123456.789",
            "2.5e-07",
            "0.3333333333333333",
            "100.0",
        ];
        for (f, w) in floats.into_iter().zip(want) {
            assert_eq!(python_float(f), w, "{f}");
        }
        let v: serde_json::Value = serde_json::from_str(
            r#"{"a":[1,{"b":null,"c":true}],"e":[],"f":{},"s":"\"\\\n\t\u0001é😀"}"#,
        )
        .unwrap();
        let dump_of = |v: &serde_json::Value, indent, ascii| {
            let mut out = String::new();
            dump(&jinja_value(v), indent, ascii, 0, &mut out).unwrap();
            out
        };
        assert_eq!(
            dump_of(&v, Some(2), false),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": null,\n      \"c\": true\n    }\n  ],\n  \"e\": [],\n  \"f\": {},\n  \"s\": \"\\\"\\\\\\n\\t\\u0001é😀\"\n}"
        );
        let s = serde_json::json!({"s": "é😀\u{7f}"});
        assert_eq!(
            dump_of(&s, None, true),
            r#"{"s": "\u00e9\ud83d\ude00\u007f"}"#
        );
    }
}
