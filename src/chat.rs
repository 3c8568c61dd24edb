//! Chat templates and conversations: the Jinja template a chat model ships (Hugging Face
//! `tokenizer_config.json` → `chat_template`, stored in the `.quill` file as
//! `quill.chat_template`, `docs/format.md` §3) renders a list of messages with roles into the
//! prompt text the model was trained on; a [`Conversation`] keeps the messages and feeds the
//! model only what each new turn adds to that text, after the KV cache of the turns before.
//!
//! Rendering follows `transformers`' `apply_chat_template`: a Jinja environment with
//! `trim_blocks` and `lstrip_blocks`, loop controls, the template's special tokens as
//! variables (`bos_token`, `eos_token`), `raise_exception(msg)` (an error naming the message),
//! `strftime_now(format)` (local time) and Python's string and dict methods (`.strip()`,
//! `.split()`, `.items()`...). Templates come from model files, so they run with a budget of
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
    /// `system`, `user`, `assistant` (or any role the template knows).
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
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
        let t = self.env.get_template("chat").expect("added in new");
        // As `apply_chat_template` passes them: `tools` and `documents` defined but none, a
        // special token the model lacks left undefined.
        let messages: Vec<minijinja::Value> = messages
            .iter()
            .map(|m| {
                minijinja::Value::from(std::collections::BTreeMap::from([
                    ("role", minijinja::Value::from(m.role.as_str())),
                    ("content", minijinja::Value::from(m.content.as_str())),
                ]))
            })
            .collect();
        let mut ctx = std::collections::BTreeMap::from([
            ("messages", minijinja::Value::from(messages)),
            (
                "add_generation_prompt",
                minijinja::Value::from(add_generation_prompt),
            ),
            ("tools", minijinja::Value::from(())),
            ("documents", minijinja::Value::from(())),
        ]);
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
            chat: Chat::new(),
            fed: String::new(),
            last_prefill: 0,
        }
    }

    /// Adds a message without generating: a system prompt, or earlier turns to continue from.
    pub fn push(&mut self, message: Message) {
        self.messages.push(message);
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
        let model = session.model().clone();
        let prompt = self.template.render(&self.messages, true)?;
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
        self.messages.push(Message {
            role: "assistant".into(),
            content: text::text_of(&model, &reply.ids)?,
        });
        Ok(reply)
    }
}
