//! `quill run` and `quill chat`: decoding flags, text in and out, streaming to the terminal.

#[cfg(feature = "tokenizer")]
use std::io::Write;

use quill::decode::{BeamOptions, GenerateOptions, SampleOptions, Strategy, generate};
#[cfg(feature = "tokenizer")]
use quill::decode::{Chat, Flow, StreamEvent, text};
use quill::{Limits, Model, Session};

/// Decoding flags shared by `run` and `chat`. Unset flags take the model's defaults.
#[derive(clap::Args, Clone, Debug)]
pub struct DecodeArgs {
    /// Most tokens to generate.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Beam search with this many beams.
    #[arg(long)]
    pub beams: Option<usize>,
    /// Hypotheses to print per input (beam search).
    #[arg(long, default_value_t = 1)]
    pub n_best: usize,
    #[arg(long)]
    pub length_penalty: Option<f32>,
    /// Sample instead of searching (with --temperature, --top-k, --top-p, --min-p, --seed).
    #[arg(long)]
    pub sample: bool,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    #[arg(long)]
    pub no_repeat_ngram_size: Option<usize>,
    /// End a hypothesis once its text contains this string (the string is kept, as
    /// `transformers` does); repeat for several. Replaces the model's `stop_strings`.
    #[arg(long = "stop", value_name = "STRING")]
    pub stop: Vec<String>,
    /// Print text as it is generated (first input only).
    #[arg(long)]
    pub stream: bool,
}

impl DecodeArgs {
    pub fn options(&self, model: &Model) -> quill::Result<GenerateOptions> {
        let mut o = GenerateOptions::model_defaults(model)?;
        if let Some(n) = self.max_new_tokens {
            o.max_new_tokens = n;
        }
        if let Some(p) = self.repetition_penalty {
            o.repetition_penalty = p;
        }
        if let Some(n) = self.no_repeat_ngram_size {
            o.no_repeat_ngram_size = n;
        }
        if !self.stop.is_empty() {
            o.stop_strings = self
                .stop
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect();
        }
        if self.sample {
            o.strategy = Strategy::Sample(SampleOptions {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                seed: self.seed,
            });
        } else if let Some(b) = self.beams {
            o.strategy = if b <= 1 {
                Strategy::Greedy
            } else {
                Strategy::Beam(BeamOptions {
                    beams: b,
                    n_best: self.n_best.min(b),
                    ..Default::default()
                })
            };
        }
        if let Strategy::Beam(b) = &mut o.strategy {
            b.n_best = self.n_best.clamp(1, b.beams);
            if let Some(lp) = self.length_penalty {
                b.length_penalty = lp;
            }
        }
        Ok(o)
    }
}

fn beams_of(o: &GenerateOptions) -> usize {
    match &o.strategy {
        Strategy::Beam(b) => b.beams,
        _ => 1,
    }
}

/// A session for `batch` inputs of up to `input_len` tokens decoded with `o` (its length
/// shortened to what the model's positions hold).
fn session_for(
    m: &Model,
    batch: usize,
    input_len: usize,
    beams: usize,
    o: &mut GenerateOptions,
) -> quill::Result<Session> {
    let limits = Limits {
        max_batch: batch.max(1),
        max_input_len: input_len.max(1),
        max_new_tokens: o.max_new_tokens,
        beams,
        ..Default::default()
    }
    .fit(m);
    o.max_new_tokens = o.max_new_tokens.min(limits.max_new_tokens);
    Session::new(m, limits)
}

/// Generates from token ids and prints ids (one line per hypothesis).
pub fn run_ids(m: &Model, ids: &[u32], args: &DecodeArgs) -> quill::Result<()> {
    let mut o = args.options(m)?;
    let mut s = session_for(m, 1, ids.len(), beams_of(&o), &mut o)?;
    let out = generate(&mut s, &[ids], &o, None, None)?;
    for h in &out.outputs[0] {
        println!(
            "{}",
            h.ids
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(())
}

#[cfg(feature = "tokenizer")]
pub fn run_text(m: &Model, text: &[String], args: &DecodeArgs) -> quill::Result<()> {
    let mut o = args.options(m)?;
    let task = text::TaskInput::new(m)?;
    let inputs: Vec<Vec<u32>> = text
        .iter()
        .map(|t| task.ids(t))
        .collect::<quill::Result<_>>()?;
    let longest = inputs.iter().map(Vec::len).max().unwrap_or(1);
    let mut s = session_for(m, text.len(), longest, beams_of(&o), &mut o)?;
    let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
    let out = if args.stream {
        // The first input's text as it is generated.
        let mut stream = text::TextStream::new(m, 1)?;
        let mut err = None;
        let mut cb = |e: StreamEvent| {
            if e.input == 0 {
                match stream.push(0, e.ids) {
                    Ok(p) => {
                        print!("{p}");
                        let _ = std::io::stdout().flush();
                    }
                    Err(x) => err = Some(x),
                }
            }
            Flow::Continue
        };
        let out = generate(&mut s, &refs, &o, None, Some(&mut cb))?;
        if let Some(e) = err {
            return Err(e);
        }
        println!("{}", stream.finish(0)?);
        out
    } else {
        generate(&mut s, &refs, &o, None, None)?
    };
    for (i, hyps) in out.outputs.iter().enumerate() {
        if args.stream && i == 0 {
            continue;
        }
        for h in hyps {
            if hyps.len() > 1 {
                println!("{:.4}\t{}", h.score, text::text_of(m, &h.ids)?);
            } else {
                println!("{}", text::text_of(m, &h.ids)?);
            }
        }
    }
    Ok(())
}

#[cfg(not(feature = "tokenizer"))]
pub fn run_text(_: &Model, _: &[String], _: &DecodeArgs) -> quill::Result<()> {
    Err(quill::Error::InvalidArgument(
        "this build has no tokenizer (feature `tokenizer`): use --ids".into(),
    ))
}

/// Reads messages from standard input, one per line, and streams each reply; the KV cache is
/// kept across turns. With the model's chat template each line is a user message; without one,
/// the line is the model's input as it is.
#[cfg(feature = "tokenizer")]
pub fn chat(
    m: &Model,
    args: &DecodeArgs,
    system: Option<&str>,
    tools: Option<serde_json::Value>,
    max_context: usize,
) -> quill::Result<()> {
    let mut o = args.options(m)?;
    let mut s = session_for(m, 1, max_context, 1, &mut o)?;
    #[cfg(feature = "chat")]
    let mut conv = quill::chat::ChatTemplate::of_model(m)?.map(quill::chat::Conversation::new);
    #[cfg(not(feature = "chat"))]
    let mut conv: Option<std::convert::Infallible> = None;
    match (&mut conv, system) {
        #[cfg(feature = "chat")]
        (Some(c), Some(sys)) => c.push(quill::chat::Message::new("system", sys)),
        (None, Some(_)) => {
            return Err(quill::Error::InvalidArgument(
                "--system needs a model with a chat template".into(),
            ));
        }
        _ => {}
    }
    match (&mut conv, tools) {
        #[cfg(feature = "chat")]
        (Some(c), Some(t)) => c.set_tools(Some(t)),
        (None, Some(_)) => {
            return Err(quill::Error::InvalidArgument(
                "--tools needs a model with a chat template".into(),
            ));
        }
        _ => {}
    }
    let mut chat = Chat::new();
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        eprint!("> ");
        if stdin
            .read_line(&mut line)
            .map_err(|e| quill::Error::InvalidArgument(e.to_string()))?
            == 0
        {
            return Ok(());
        }
        let msg = line.trim_end_matches('\n');
        let mut stream = text::TextStream::new(m, 1)?;
        let mut cb = |e: StreamEvent| {
            if let Ok(p) = stream.push(0, e.ids) {
                print!("{p}");
                let _ = std::io::stdout().flush();
            }
            Flow::Continue
        };
        match &mut conv {
            #[cfg(feature = "chat")]
            Some(c) => {
                let message = match msg.strip_prefix("/tool ") {
                    Some(result) => quill::chat::Message::new("tool", result),
                    None => quill::chat::Message::new("user", msg),
                };
                c.push(message);
                c.reply(&mut s, &o, None, Some(&mut cb))?;
            }
            #[cfg(not(feature = "chat"))]
            Some(never) => match *never {},
            None => {
                let ids = text::encode(m, msg, chat.history().is_empty())?;
                chat.turn(&mut s, &ids, &o, None, Some(&mut cb))?;
            }
        }
        println!("{}", stream.finish(0)?);
    }
}

#[cfg(not(feature = "tokenizer"))]
pub fn chat(
    _: &Model,
    _: &DecodeArgs,
    _: Option<&str>,
    _: Option<serde_json::Value>,
    _: usize,
) -> quill::Result<()> {
    Err(quill::Error::InvalidArgument(
        "chat needs the tokenizer (feature `tokenizer`)".into(),
    ))
}
