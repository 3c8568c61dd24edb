//! Chat templates against `transformers`: the real `chat_template` strings of six model families
//! (`tests/fixtures/chat/*.json`, provenance in each file), rendered by `apply_chat_template`
//! (`tests/reference/chat_goldens.py`), must come out of `quill::chat` byte for byte; the cases
//! the template refuses must be refused.
#![cfg(feature = "chat")]

use quill::chat::{ChatTemplate, Message, TemplateSpec};
use serde_json::Value;
use std::path::Path;

fn fixtures() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_stem().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn template(f: &Value) -> ChatTemplate {
    ChatTemplate::new(TemplateSpec {
        template: f["template"].as_str().unwrap().into(),
        bos_token: f["bos_token"].as_str().map(String::from),
        eos_token: f["eos_token"].as_str().map(String::from),
    })
    .unwrap()
}

/// The messages of a case (with their other fields: tool calls), its tools and the extra
/// variables it gives the template (`kwargs` of `apply_chat_template`).
fn case_input(case: &Value) -> (Vec<Message>, Option<Value>, serde_json::Map<String, Value>) {
    let msgs = serde_json::from_value(case["messages"].clone()).unwrap();
    let tools = case.get("tools").filter(|t| !t.is_null()).cloned();
    let kwargs = case
        .get("kwargs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    (msgs, tools, kwargs)
}

#[test]
fn six_families_render_like_transformers() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 6, "{} fixtures", fixtures.len());
    let (mut rendered, mut refused, mut tools) = (0, 0, 0);
    let mut cases = 0;
    for (family, f) in &fixtures {
        let t = template(f);
        for case in f["cases"].as_array().unwrap() {
            cases += 1;
            let name = format!("{family}/{}", case["name"].as_str().unwrap());
            let (msgs, tool_list, kwargs) = case_input(case);
            tools += usize::from(tool_list.is_some() || !kwargs.is_empty());
            let add = case["add_generation_prompt"].as_bool().unwrap();
            let got = t.render_with(&msgs, add, tool_list.as_ref(), &kwargs);
            if case.get("error").is_some_and(|e| e == true) {
                let e = got.expect_err(&name);
                assert!(matches!(e, quill::Error::InvalidArgument(_)), "{name}: {e}");
                // The template's own message reaches the caller.
                let want = case["error_message"].as_str().unwrap();
                assert!(e.to_string().contains(want), "{name}: {e} (want {want})");
                refused += 1;
            } else {
                let want = case["rendered"].as_str().unwrap();
                assert_eq!(got.unwrap(), want, "{name}");
                rendered += 1;
            }
        }
    }
    // Every case ran: the refusals of Gemma and Mistral, and the tool calls, tool results and
    // extra variables of Llama 3.1 and Qwen2.5.
    assert_eq!(rendered + refused, cases);
    assert!(
        refused >= 3 && tools >= 7,
        "{rendered} rendered, {refused} refused, {tools} with tools or variables"
    );
}

#[test]
fn broken_and_runaway_templates_are_errors() {
    let spec = |t: &str| TemplateSpec {
        template: t.into(),
        bos_token: None,
        eos_token: None,
    };
    // A syntax error names the metadata key.
    let e = ChatTemplate::new(spec("{% for m in messages %}{{ m.content }}")).unwrap_err();
    assert!(e.to_string().contains("quill.chat_template"), "{e}");
    // A template that would loop for hours runs out of its budget instead.
    let t = ChatTemplate::new(spec(
        "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}x{% endfor %}{% endfor %}{% endfor %}",
    ))
    .unwrap();
    let start = std::time::Instant::now();
    let e = t.render(&[Message::new("user", "hi")], true).unwrap_err();
    assert!(e.to_string().contains("fuel"), "{e}");
    assert!(start.elapsed().as_secs() < 30);
    // An undefined special token is undefined, not the string "None".
    let t = ChatTemplate::new(spec(
        "{% if bos_token is defined %}B{% endif %}{{ messages[0]['content'] }}",
    ))
    .unwrap();
    assert_eq!(
        t.render(&[Message::new("user", "hi")], false).unwrap(),
        "hi"
    );
}

/// The tiny Qwen2 fixture converted with the real Qwen2.5 template in its
/// `tokenizer_config.json` (and an added-token object as `eos_token`): the `.quill` path and the
/// template's fixture.
fn qwen_with_template(dir: &Path) -> (std::path::PathBuf, Value) {
    qwen_with_generation(dir, None)
}

/// [`qwen_with_template`] with `extra` merged into its `generation_config.json`.
fn qwen_with_generation(dir: &Path, extra: Option<Value>) -> (std::path::PathBuf, Value) {
    use quill::convert::hf::{ConvertOptions, convert_hf};
    let qwen = fixtures()
        .into_iter()
        .find(|(n, _)| n == "qwen2_5")
        .unwrap()
        .1;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/qwen2");
    let hf = dir.join("qwen2");
    std::fs::create_dir(&hf).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, hf.join(p.file_name().unwrap())).unwrap();
    }
    let cfg_path = hf.join("tokenizer_config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["chat_template"] = qwen["template"].clone();
    cfg["eos_token"] = serde_json::json!({"content": "<|endoftext|>", "special": true});
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    if let Some(Value::Object(extra)) = extra {
        let gen_path = hf.join("generation_config.json");
        let mut g: Value =
            serde_json::from_str(&std::fs::read_to_string(&gen_path).unwrap()).unwrap();
        g.as_object_mut().unwrap().extend(extra);
        std::fs::write(&gen_path, g.to_string()).unwrap();
    }
    let out = dir.join("qwen2.quill");
    convert_hf(&hf, &out, &ConvertOptions::default(), &mut |_, _| {}).unwrap();
    (out, qwen)
}

/// A converted checkpoint keeps its `chat_template`; a conversation of three turns then
/// prefills each turn's new text only, after the cache of the turns before.
#[test]
fn converted_templates_drive_conversations_that_prefill_only_new_turns() {
    use quill::decode::{GenerateOptions, text};
    use quill::{Limits, Model, OpenOptions, Session};

    let dir = tempfile::tempdir().unwrap();
    let (out, qwen) = qwen_with_template(dir.path());
    let m = Model::open(
        &out,
        &OpenOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();

    let t = ChatTemplate::of_model(&m)
        .unwrap()
        .expect("the template was converted");
    assert_eq!(t.spec().template, qwen["template"].as_str().unwrap());
    assert_eq!(t.spec().eos_token.as_deref(), Some("<|endoftext|>"));
    assert_eq!(t.spec().bos_token.as_deref(), Some("<|endoftext|>"));

    let limits = Limits {
        max_batch: 1,
        max_input_len: 512,
        max_new_tokens: 256,
        beams: 1,
        ..Default::default()
    };
    let mut s = Session::new(&m, limits).unwrap();
    let o = GenerateOptions {
        max_new_tokens: 5,
        ..Default::default()
    };
    let mut conv = quill::chat::Conversation::new(t);
    conv.push(Message::new("system", "You are terse."));
    let mut fed = String::new();
    for (turn, msg) in ["Hello there.", "What is a cache?", "Thanks!"]
        .iter()
        .enumerate()
    {
        conv.push(Message::new("user", msg));
        let check = ChatTemplate::of_model(&m).unwrap().unwrap();
        let prompt = check.render(conv.messages(), true).unwrap();
        let whole = text::encode(&m, &prompt, false).unwrap().len();
        let new = text::encode(&m, prompt.strip_prefix(fed.as_str()).unwrap(), false)
            .unwrap()
            .len();
        let reply = conv.reply(&mut s, &o, None, None).unwrap();
        assert_eq!(conv.last_prefill(), new, "turn {turn}");
        if turn > 0 {
            assert!(
                new < whole / 2,
                "turn {turn}: {new} of {whole} tokens prefilled"
            );
        }
        // The cache holds the conversation but the last reply's final id (fed with the next turn).
        assert_eq!(s.cached_len(), conv.history().len() - 1, "turn {turn}");
        assert_eq!(conv.messages().last().unwrap().role, "assistant");
        assert_eq!(
            conv.messages().last().unwrap().content,
            text::text_of(&m, &reply.ids).unwrap()
        );
        fed = prompt + &text::decode(&m, &reply.ids, false).unwrap();
    }
    assert_eq!(conv.messages().len(), 7);
}

/// `quill_chat_add` and `quill_chat_turn` on a model with a template give the replies of the
/// Rust conversation; on a model without one, `quill_chat_add` is refused and `quill_chat_turn`
/// takes the text as it is.
#[test]
fn the_c_api_formats_turns_with_the_template() {
    use quill::ffi::*;
    use std::ffi::{CStr, CString};
    use std::ptr::null_mut;

    let dir = tempfile::tempdir().unwrap();
    let (path, _) = qwen_with_template(dir.path());
    let m = quill::Model::open(&path, &quill::OpenOptions::default()).unwrap();
    let mut s = quill::Session::new(&m, quill::Limits::default().fit(&m)).unwrap();
    let o = quill::decode::GenerateOptions {
        max_new_tokens: 6,
        ..Default::default()
    };
    let mut conv = quill::chat::Conversation::new(ChatTemplate::of_model(&m).unwrap().unwrap());
    conv.push(Message::new("system", "Be brief."));
    let turns = ["Hi!", "Tell me more."];
    let want: Vec<String> = turns
        .iter()
        .map(|t| {
            let r = conv.turn(&mut s, t, &o, None, None).unwrap();
            quill::decode::text::text_of(&m, &r.ids).unwrap()
        })
        .collect();
    assert!(want.iter().all(|w| !w.is_empty()), "{want:?}");
    // An empty message is refused and leaves the conversation as it was.
    let e = conv.turn(&mut s, "  ", &o, None, None).unwrap_err();
    assert!(e.to_string().contains("the message is empty"), "{e}");
    assert_eq!(conv.messages().len(), 5);

    let c = |t: &str| CString::new(t).unwrap();
    // A model and a session with default parameters, through the C API.
    let open = |p: &Path| unsafe {
        let mut model = null_mut();
        assert_eq!(
            quill_model_open(
                c(p.to_str().unwrap()).as_ptr(),
                std::ptr::null(),
                &mut model
            ),
            quill_status::QUILL_OK
        );
        let mut session = null_mut();
        assert_eq!(
            quill_session_new(model, std::ptr::null(), &mut session),
            quill_status::QUILL_OK
        );
        (model, session)
    };
    unsafe {
        let (model, session) = open(&path);
        let mut gp: quill_generate_params = std::mem::zeroed();
        quill_generate_params_init(
            std::ptr::null(),
            &mut gp,
            std::mem::size_of::<quill_generate_params>(),
        );
        gp.max_new_tokens = 6;
        gp.beams = 1;
        gp.n_best = 1;
        assert_eq!(
            quill_chat_add(session, c("system").as_ptr(), c("Be brief.").as_ptr()),
            quill_status::QUILL_OK
        );
        assert_eq!(
            quill_chat_add(session, c("").as_ptr(), c("x").as_ptr()),
            quill_status::QUILL_ERR_INVALID_ARGUMENT
        );
        for (t, want) in turns.iter().zip(&want) {
            let mut r = null_mut();
            assert_eq!(
                quill_chat_turn(session, c(t).as_ptr(), &gp, None, null_mut(), &mut r),
                quill_status::QUILL_OK
            );
            let mut text = std::ptr::null();
            assert_eq!(
                quill_result_text(r, 0, 0, &mut text),
                quill_status::QUILL_OK
            );
            assert_eq!(CStr::from_ptr(text).to_str().unwrap(), want);
            quill_result_free(r);
        }
        quill_session_free(session);
        quill_model_free(model);

        // Without a template: the text goes as it is, and messages with roles are refused.
        let plain = plain_llama(dir.path());
        let (model, session) = open(&plain);
        assert_eq!(
            quill_chat_add(session, c("system").as_ptr(), c("Be brief.").as_ptr()),
            quill_status::QUILL_ERR_INVALID_ARGUMENT
        );
        let mut r = null_mut();
        assert_eq!(
            quill_chat_turn(session, c("w5 w6").as_ptr(), &gp, None, null_mut(), &mut r),
            quill_status::QUILL_OK
        );
        quill_result_free(r);
        quill_session_free(session);
        quill_model_free(model);
    }
}

/// What `quill run` makes of its input, from the generation metadata: a dialogue model's input
/// is one user message in its chat template; a `prompt` format wraps the input; without
/// either, the input is encoded as it is.
#[test]
fn the_task_in_the_generation_metadata_shapes_the_input() {
    use quill::decode::text;
    use quill::{Model, OpenOptions};

    let open = |extra: Option<Value>, name: &str| {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join(name);
        std::fs::create_dir(&sub).unwrap();
        let (path, _) = qwen_with_generation(&sub, extra);
        let m = Model::open(&path, &OpenOptions::default()).unwrap();
        (dir, m)
    };
    let input = "What is a cache?";

    let (_d, m) = open(Some(serde_json::json!({"task": "dialogue"})), "dialogue");
    let rendered = ChatTemplate::of_model(&m)
        .unwrap()
        .unwrap()
        .render(&[Message::new("user", input)], true)
        .unwrap();
    assert!(rendered.ends_with("<|im_start|>assistant\n"), "{rendered}");
    let want = text::encode(&m, &rendered, false).unwrap();
    assert_eq!(text::task_input(&m, input).unwrap(), want);

    for empty in ["", " \n "] {
        let e = text::task_input(&m, empty).unwrap_err().to_string();
        assert!(e.contains("the input is empty"), "{e}");
    }

    // The same model without a task: the text as it is.
    let (_d, m) = open(None, "plain");
    assert_eq!(
        text::task_input(&m, input).unwrap(),
        text::encode(&m, input, true).unwrap()
    );

    let prompt = serde_json::json!({"task": "generation", "prompt": "Q: {input}\nA:"});
    let (_d, m) = open(Some(prompt), "prompt");
    assert_eq!(
        text::task_input(&m, input).unwrap(),
        text::encode(&m, "Q: What is a cache?\nA:", true).unwrap()
    );

    let (_d, m) = open(Some(serde_json::json!({"prompt": "no slot"})), "bad");
    let e = text::task_input(&m, input).unwrap_err().to_string();
    assert!(e.contains("{input}"), "{e}");
}

/// `stop_strings` in a model's generation metadata (`transformers`' name: one string or a list)
/// end its generations, keeping the tokens that made the string; `quill run --stop` does the
/// same for a model without them. The string is chosen from the model's own unconstrained
/// greedy output: the text of one of its tokens that does not occur before it.
#[test]
fn stop_strings_in_the_generation_metadata_end_generation() {
    use quill::decode::{GenerateOptions, generate, text};
    use quill::{Limits, Model, OpenOptions, Session};

    let dir = tempfile::tempdir().unwrap();
    let convert = |name: &str, extra: Value| {
        let sub = dir.path().join(name);
        std::fs::create_dir(&sub).unwrap();
        qwen_with_generation(&sub, Some(extra)).0
    };
    let greedy = |path: &Path| {
        let m = Model::open(path, &OpenOptions::default()).unwrap();
        let mut s = Session::new(&m, Limits::default()).unwrap();
        let o = GenerateOptions::model_defaults(&m).unwrap();
        let input = text::encode(&m, "Tell me about caches.", true).unwrap();
        let g = generate(&mut s, &[&input], &o, None, None).unwrap();
        (m, g.outputs[0][0].ids.clone())
    };
    let plain = convert("plain", serde_json::json!({"max_new_tokens": 24}));
    let (m, full) = greedy(&plain);
    assert_eq!(full.len(), 24, "the fixture's greedy output meets no EOS");
    let eos = m.config().eos_ids.clone();
    let text_of = |ids: &[u32]| text::decode(&m, ids, true).unwrap();
    let (stop, keep) = (3..full.len())
        .find_map(|k| {
            let (before, with) = (text_of(&full[..k - 1]), text_of(&full[..k]));
            let new = with.strip_prefix(before.as_str())?.trim();
            (new.chars().count() >= 2 && !before.contains(new) && !eos.contains(&full[k - 1]))
                .then(|| (new.to_string(), k))
        })
        .expect("a token whose text is new");

    for stops in [
        serde_json::json!(stop),
        serde_json::json!(["never there", stop]),
    ] {
        let path = convert(
            &format!("stop{}", stops.is_array()),
            serde_json::json!({"max_new_tokens": 24, "stop_strings": stops}),
        );
        let (_m, ids) = greedy(&path);
        assert_eq!(ids, full[..keep], "stop_strings {stops}");
    }

    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_quill"))
            .args(["run", plain.to_str().unwrap(), "Tell me about caches."])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    };
    assert_eq!(run(&[]), text::text_of(&m, &full).unwrap().trim_end());
    assert_eq!(
        run(&["--stop", &stop]),
        text::text_of(&m, &full[..keep]).unwrap().trim_end()
    );

    let bad = convert("bad", serde_json::json!({"stop_strings": 7}));
    let e = Model::open(&bad, &OpenOptions::default())
        .and_then(|m| GenerateOptions::model_defaults(&m))
        .unwrap_err()
        .to_string();
    assert!(e.contains("stop_strings"), "{e}");
}

/// The tiny Llama fixture converted as it is: a decoder-only model without a chat template.
fn plain_llama(dir: &Path) -> std::path::PathBuf {
    let plain = dir.join("plain.quill");
    quill::convert::hf::convert_hf(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/llama"),
        &plain,
        &Default::default(),
        &mut |_, _| {},
    )
    .unwrap();
    plain
}

/// The tools of the first case of a template's fixture that has some.
fn first_tools(fixture: &Value) -> Value {
    fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|c| c.get("tools").filter(|t| !t.is_null()))
        .unwrap()
        .clone()
}

/// Tools in a conversation: the prompt is the template's rendering with the tools (which the
/// Qwen2.5 fixture holds to `transformers`), a tool's result is a message the model replies to,
/// and only what each step adds is prefilled; `quill chat --tools` does the same from the
/// command line, a `/tool` line being a result.
#[test]
fn tools_reach_the_prompt_and_tool_results_get_replies() {
    use quill::decode::{GenerateOptions, text};
    use quill::{Limits, Model, OpenOptions, Session};

    let dir = tempfile::tempdir().unwrap();
    let (path, qwen) = qwen_with_template(dir.path());
    let tools = first_tools(&qwen);
    let m = Model::open(&path, &OpenOptions::default()).unwrap();
    let t = ChatTemplate::of_model(&m).unwrap().unwrap();
    let mut s = Session::new(&m, Limits::default().fit(&m)).unwrap();
    let o = GenerateOptions {
        max_new_tokens: 4,
        ..Default::default()
    };
    let mut conv = quill::chat::Conversation::new(ChatTemplate::of_model(&m).unwrap().unwrap());
    conv.set_tools(Some(tools.clone()));
    let no_vars = serde_json::Map::new();
    conv.push(Message::new("user", "What's the weather in Paris?"));
    let prompt = t
        .render_with(conv.messages(), true, Some(&tools), &no_vars)
        .unwrap();
    assert!(
        prompt.contains("<tools>\n{\"type\": \"function\""),
        "{prompt}"
    );
    conv.reply(&mut s, &o, None, None).unwrap();
    let first = text::encode(&m, &prompt, false).unwrap();
    assert_eq!(conv.history()[..first.len()], first[..]);

    conv.push(Message::new("tool", "22°C, sunny"));
    let before = conv.history().len();
    let prompt2 = t
        .render_with(conv.messages(), true, Some(&tools), &no_vars)
        .unwrap();
    assert!(
        prompt2.contains("<tool_response>\n22°C, sunny\n</tool_response>"),
        "{prompt2}"
    );
    conv.reply(&mut s, &o, None, None).unwrap();
    assert!(
        conv.last_prefill() < before / 4,
        "{} tokens prefilled after {before}",
        conv.last_prefill()
    );
    assert_eq!(conv.messages().len(), 4);

    let tools_file = dir.path().join("tools.json");
    std::fs::write(&tools_file, tools.to_string()).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_quill"))
        .args([
            "chat",
            path.to_str().unwrap(),
            "--max-new-tokens",
            "4",
            "--tools",
        ])
        .arg(&tools_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all("What's the weather in Paris?\n/tool 22°C, sunny\n".as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        2,
        "{out:?}"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_quill"))
        .args([
            "chat",
            path.to_str().unwrap(),
            "--tools",
            "/nonexistent.json",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

/// Tools through the C API: `quill_chat_set_tools`, then a turn, then a tool's result added with
/// `quill_chat_add` and answered by `quill_chat_turn(NULL)`, give the Rust conversation's
/// replies; bad tools, and a NULL turn without a template or without messages, are refused.
#[test]
fn the_c_api_offers_tools_and_replies_to_tool_results() {
    use quill::ffi::*;
    use std::ffi::{CStr, CString};
    use std::ptr::{null, null_mut};

    let dir = tempfile::tempdir().unwrap();
    let (path, qwen) = qwen_with_template(dir.path());
    let tools = first_tools(&qwen);
    let m = quill::Model::open(&path, &quill::OpenOptions::default()).unwrap();
    let mut s = quill::Session::new(&m, quill::Limits::default().fit(&m)).unwrap();
    let o = quill::decode::GenerateOptions {
        max_new_tokens: 6,
        ..Default::default()
    };
    let mut conv = quill::chat::Conversation::new(ChatTemplate::of_model(&m).unwrap().unwrap());
    conv.set_tools(Some(tools.clone()));
    let text_of = |r: &quill::decode::Hypothesis| quill::decode::text::text_of(&m, &r.ids).unwrap();
    conv.push(Message::new("user", "What's the weather in Paris?"));
    let want1 = text_of(&conv.reply(&mut s, &o, None, None).unwrap());
    conv.push(Message::new("tool", "22°C, sunny"));
    let want2 = text_of(&conv.reply(&mut s, &o, None, None).unwrap());

    let c = |t: &str| CString::new(t).unwrap();
    unsafe {
        let (mut model, mut session) = (null_mut(), null_mut());
        let p = c(path.to_str().unwrap());
        assert_eq!(
            quill_model_open(p.as_ptr(), null(), &mut model),
            quill_status::QUILL_OK
        );
        assert_eq!(
            quill_session_new(model, null(), &mut session),
            quill_status::QUILL_OK
        );
        let mut gp: quill_generate_params = std::mem::zeroed();
        quill_generate_params_init(
            null(),
            &mut gp,
            std::mem::size_of::<quill_generate_params>(),
        );
        (gp.max_new_tokens, gp.beams, gp.n_best) = (6, 1, 1);
        let turn = |session: *mut quill_session, text: Option<&CString>| {
            let mut r = null_mut();
            let t = text.map_or(null(), |t| t.as_ptr());
            let status = quill_chat_turn(session, t, &gp, None, null_mut(), &mut r);
            if status != quill_status::QUILL_OK {
                return Err(status);
            }
            let mut out = null();
            assert_eq!(quill_result_text(r, 0, 0, &mut out), quill_status::QUILL_OK);
            let s = CStr::from_ptr(out).to_str().unwrap().to_string();
            quill_result_free(r);
            Ok(s)
        };
        assert_eq!(
            turn(session, None),
            Err(quill_status::QUILL_ERR_INVALID_ARGUMENT)
        );
        for bad in ["{\"type\": \"function\"}", "[unclosed"] {
            assert_eq!(
                quill_chat_set_tools(session, c(bad).as_ptr()),
                quill_status::QUILL_ERR_INVALID_ARGUMENT,
                "{bad}"
            );
        }
        let json = c(&tools.to_string());
        assert_eq!(
            quill_chat_set_tools(session, json.as_ptr()),
            quill_status::QUILL_OK
        );
        assert_eq!(
            turn(session, Some(&c("What's the weather in Paris?"))).unwrap(),
            want1
        );
        assert_eq!(
            quill_chat_add(session, c("tool").as_ptr(), c("22°C, sunny").as_ptr()),
            quill_status::QUILL_OK
        );
        assert_eq!(turn(session, None).unwrap(), want2);
        quill_session_free(session);
        quill_model_free(model);

        // Without a template: no tools, and no reply without text.
        let plain = plain_llama(dir.path());
        let p = c(plain.to_str().unwrap());
        assert_eq!(
            quill_model_open(p.as_ptr(), null(), &mut model),
            quill_status::QUILL_OK
        );
        assert_eq!(
            quill_session_new(model, null(), &mut session),
            quill_status::QUILL_OK
        );
        assert_eq!(
            quill_chat_set_tools(session, json.as_ptr()),
            quill_status::QUILL_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            turn(session, None),
            Err(quill_status::QUILL_ERR_INVALID_ARGUMENT)
        );
        quill_session_free(session);
        quill_model_free(model);
    }
}
