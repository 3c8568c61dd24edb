//! Training data: sentence pairs from a TSV (`source<TAB>target`, seq2seq) or plain text
//! (language models), read in chunks so files larger than memory stream through; each chunk is
//! tokenized, cut into length-bucketed batches under a token budget and shuffled with a seed.
//! A [`Cursor`] names the next batch exactly, so a resumed run sees the batches an uninterrupted
//! run would have seen.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::layers::IGNORE;
use super::model::Batch;
use super::tok::{EOS, PAD};
use crate::error::{Error, Result};
use crate::eval::{for_each_line, parse_pair};
use crate::kernels::Pool;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;

/// What the corpus trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    /// Translation-style pairs; the decoder starts from `start`.
    Seq2Seq { start: u32 },
    /// Next-token prediction over blocks of `block` tokens of running text.
    Lm { block: usize },
}

/// Which split a line of a corpus belongs to when dev and test are held out of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Dev,
    Test,
}

/// Holding out: a line goes to dev or test by a hash of its text, so the split is the same in
/// every run and does not depend on the order of the file. `per_mille` of the lines each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holdout {
    pub per_mille: u32,
}

impl Holdout {
    pub fn split(&self, line: &str) -> Split {
        // FNV-1a.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in line.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let r = (h % 1000) as u32;
        if r < self.per_mille {
            Split::Dev
        } else if r < 2 * self.per_mille {
            Split::Test
        } else {
            Split::Train
        }
    }
}

/// One tokenized example: source ids (with the tokenizer's special tokens) and target ids
/// (without; the batch adds the start and end tokens). Language models use `tgt` only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub src: Vec<u32>,
    pub tgt: Vec<u32>,
}

/// Tokenizes a pair; `None` when either side is longer than `max_len` tokens.
pub fn encode_pair(
    tok: &Tokenizer,
    src: &str,
    tgt: &str,
    max_len: usize,
) -> Result<Option<Example>> {
    let s = tok.encode(src, true)?;
    let t = tok.encode(tgt, false)?;
    Ok((s.len() <= max_len && t.len() < max_len && !s.is_empty())
        .then_some(Example { src: s, tgt: t }))
}

/// Pads a set of seq2seq examples into a batch: the decoder reads `start, t₁ … tₙ` and predicts
/// `t₁ … tₙ, </s>`.
pub fn collate(examples: &[&Example], start: u32) -> Batch {
    let b = examples.len();
    let s = examples.iter().map(|e| e.src.len()).max().unwrap_or(0);
    let t = examples.iter().map(|e| e.tgt.len() + 1).max().unwrap_or(0);
    let mut batch = Batch {
        b,
        s,
        src: vec![PAD; b * s],
        src_len: Vec::with_capacity(b),
        t,
        tgt: vec![PAD; b * t],
        tgt_len: Vec::with_capacity(b),
        labels: vec![IGNORE; b * t],
    };
    for (i, e) in examples.iter().enumerate() {
        batch.src[i * s..i * s + e.src.len()].copy_from_slice(&e.src);
        batch.src_len.push(e.src.len());
        let n = e.tgt.len() + 1;
        batch.tgt[i * t] = start;
        batch.tgt[i * t + 1..i * t + n].copy_from_slice(&e.tgt);
        batch.labels[i * t..i * t + n - 1].copy_from_slice(&e.tgt);
        batch.labels[i * t + n - 1] = EOS;
        batch.tgt_len.push(n);
    }
    batch
}

/// Cuts examples into batches of similar lengths whose padded size `B·(S + T)` stays within
/// `budget` tokens; the order of the batches is shuffled with `rng`, ties in length are broken
/// randomly too.
pub fn bucket(examples: &[Example], budget: usize, start: u32, rng: &mut Rng) -> Vec<Batch> {
    let mut order: Vec<(usize, u64)> = (0..examples.len()).map(|i| (i, rng.next_u64())).collect();
    order.sort_by_key(|&(i, r)| (examples[i].tgt.len(), examples[i].src.len(), r));
    let mut batches = Vec::new();
    let mut cur: Vec<&Example> = Vec::new();
    let (mut s, mut t) = (0, 0);
    for (i, _) in order {
        let e = &examples[i];
        let (s2, t2) = (s.max(e.src.len()), t.max(e.tgt.len() + 1));
        if !cur.is_empty() && (cur.len() + 1) * (s2 + t2) > budget {
            batches.push(collate(&cur, start));
            cur.clear();
            (s, t) = (e.src.len(), e.tgt.len() + 1);
        } else {
            (s, t) = (s2, t2);
        }
        cur.push(e);
    }
    if !cur.is_empty() {
        batches.push(collate(&cur, start));
    }
    shuffle(&mut batches, rng);
    batches
}

/// Cuts running text into blocks of `block + 1` tokens (inputs and shifted labels), `per_batch`
/// blocks a batch, shuffled.
pub fn blocks(stream: &[u32], block: usize, per_batch: usize, rng: &mut Rng) -> Vec<Batch> {
    let mut starts: Vec<usize> = (0..stream.len().saturating_sub(block + 1) / block + 1)
        .map(|i| i * block)
        .filter(|&s| s + block < stream.len())
        .collect();
    shuffle(&mut starts, rng);
    starts
        .chunks(per_batch.max(1))
        .map(|c| {
            let b = c.len();
            let mut batch = Batch {
                b,
                t: block,
                tgt_len: vec![block; b],
                ..Batch::default()
            };
            for &s in c {
                batch.tgt.extend_from_slice(&stream[s..s + block]);
                batch
                    .labels
                    .extend_from_slice(&stream[s + 1..s + block + 1]);
            }
            batch
        })
        .collect()
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Where the next training batch comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Passes over the corpus completed.
    pub epoch: u64,
    /// Byte offset of the current chunk in the file, and its number within the epoch.
    pub offset: u64,
    pub chunk: u64,
    /// Batches of the chunk already taken.
    pub batch: u64,
}

/// How a [`Loader`] reads and batches.
#[derive(Clone, Debug)]
pub struct LoaderOptions {
    pub task: Task,
    /// Padded tokens per batch (seq2seq), or tokens per batch (language models).
    pub budget: usize,
    /// Longest sequence kept (seq2seq, tokens per side).
    pub max_len: usize,
    /// Lines read (and shuffled together) at a time.
    pub chunk_lines: usize,
    pub holdout: Option<Holdout>,
    pub seed: u64,
}

/// Reads a corpus in chunks and hands out training batches forever, epoch after epoch.
pub struct Loader {
    path: PathBuf,
    opts: LoaderOptions,
    cursor: Cursor,
    batches: Vec<Batch>,
    next_offset: u64,
    /// Examples kept in the current chunk (for reporting).
    pub chunk_examples: usize,
}

impl Loader {
    /// A loader positioned at `cursor` (`Cursor::default()` for the start).
    pub fn new(
        path: &Path,
        opts: LoaderOptions,
        cursor: Cursor,
        tok: &Tokenizer,
        pool: &Pool,
    ) -> Result<Loader> {
        let mut l = Loader {
            path: path.to_path_buf(),
            opts,
            cursor,
            batches: Vec::new(),
            next_offset: 0,
            chunk_examples: 0,
        };
        l.load_chunk(tok, pool)?;
        if l.batches.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{}: no training examples (expected {})",
                path.display(),
                match l.opts.task {
                    Task::Seq2Seq { .. } => "lines `source<TAB>target`",
                    Task::Lm { .. } => "text longer than one block",
                }
            )));
        }
        Ok(l)
    }

    /// The position of the next batch.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Passes over the corpus completed (the current one counts once its last batch is taken).
    pub fn epochs_done(&self) -> u64 {
        let finished = self.next_offset == 0 && self.cursor.batch as usize >= self.batches.len();
        self.cursor.epoch + u64::from(finished)
    }

    fn load_chunk(&mut self, tok: &Tokenizer, pool: &Pool) -> Result<()> {
        let io = |e: std::io::Error| Error::io(self.path.display().to_string(), e);
        let mut f = BufReader::new(File::open(&self.path).map_err(io)?);
        f.seek(SeekFrom::Start(self.cursor.offset)).map_err(io)?;
        let mut lines = Vec::new();
        let mut read = self.cursor.offset;
        let mut buf = String::new();
        while lines.len() < self.opts.chunk_lines {
            buf.clear();
            let n = f.read_line(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            let line = buf.trim_end_matches(['\n', '\r']);
            if let Some(h) = self.opts.holdout
                && h.split(line) != Split::Train
            {
                continue;
            }
            lines.push(line.to_string());
        }
        let at_end = f.fill_buf().map_err(io)?.is_empty();
        self.next_offset = if at_end { 0 } else { read };
        let mut rng = Rng::new(
            self.opts.seed
                ^ (self.cursor.epoch.wrapping_mul(0x9E37_79B9) + self.cursor.chunk)
                    .wrapping_mul(0xA24B_AED4_963E_E407),
        );
        let encoded: Vec<Result<Option<Example>>> =
            par_map(pool, &lines, |line| match self.opts.task {
                Task::Seq2Seq { .. } => match parse_pair(line) {
                    Some((s, t)) => encode_pair(tok, s, t, self.opts.max_len),
                    None => Ok(None),
                },
                Task::Lm { .. } => {
                    let mut ids = tok.encode(line, false)?;
                    if ids.is_empty() {
                        return Ok(None);
                    }
                    ids.push(EOS);
                    Ok(Some(Example {
                        src: Vec::new(),
                        tgt: ids,
                    }))
                }
            });
        let examples: Vec<Example> = encoded
            .into_iter()
            .filter_map(|r| r.transpose())
            .collect::<Result<_>>()?;
        self.chunk_examples = examples.len();
        self.batches = match self.opts.task {
            Task::Seq2Seq { start } => bucket(&examples, self.opts.budget, start, &mut rng),
            Task::Lm { block } => {
                let stream: Vec<u32> = examples.into_iter().flat_map(|e| e.tgt).collect();
                blocks(&stream, block, self.opts.budget / block, &mut rng)
            }
        };
        Ok(())
    }

    /// The next batch; moves to the next chunk, and past the end of the file to the next epoch.
    pub fn next_batch(&mut self, tok: &Tokenizer, pool: &Pool) -> Result<Batch> {
        while self.cursor.batch as usize >= self.batches.len() {
            if self.next_offset == 0 {
                self.cursor = Cursor {
                    epoch: self.cursor.epoch + 1,
                    ..Cursor::default()
                };
            } else {
                self.cursor = Cursor {
                    offset: self.next_offset,
                    chunk: self.cursor.chunk + 1,
                    batch: 0,
                    ..self.cursor
                };
            }
            self.load_chunk(tok, pool)?;
        }
        let b = self.batches[self.cursor.batch as usize].clone();
        self.cursor.batch += 1;
        Ok(b)
    }
}

/// `f` over `items` in parallel inside `pool` (sequentially with one thread), order kept.
pub fn par_map<T: Sync, R: Send>(
    pool: &Pool,
    items: &[T],
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    if pool.threads() == 1 {
        items.iter().map(f).collect()
    } else {
        pool.install(|| items.par_iter().map(f).collect())
    }
}

/// Reads every pair of a TSV (or, with `holdout`, the pairs of one held-out split).
pub fn read_pairs(path: &Path, holdout: Option<(Holdout, Split)>) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for_each_line(path, |l| {
        if holdout.is_none_or(|(h, s)| h.split(l) == s)
            && let Some((s, t)) = parse_pair(l)
        {
            out.push((s.to_string(), t.to_string()));
        }
        true
    })?;
    Ok(out)
}

/// Reads the non-empty lines of a text file (or of one held-out split).
pub fn read_lines(path: &Path, holdout: Option<(Holdout, Split)>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for_each_line(path, |l| {
        if !l.trim().is_empty() && holdout.is_none_or(|(h, s)| h.split(l) == s) {
            out.push(l.to_string());
        }
        true
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: usize, t: usize) -> Example {
        Example {
            src: (0..s as u32).map(|i| 10 + i).collect(),
            tgt: (0..t as u32).map(|i| 20 + i).collect(),
        }
    }

    #[test]
    fn collate_pads_and_shifts() {
        let (a, b) = (ex(3, 2), ex(1, 3));
        let batch = collate(&[&a, &b], 3);
        assert_eq!((batch.b, batch.s, batch.t), (2, 3, 4));
        assert_eq!(batch.src, vec![10, 11, 12, 10, PAD, PAD]);
        assert_eq!(batch.tgt, vec![3, 20, 21, PAD, 3, 20, 21, 22]);
        assert_eq!(batch.labels, vec![20, 21, EOS, IGNORE, 20, 21, 22, EOS]);
        assert_eq!((batch.src_len, batch.tgt_len), (vec![3, 1], vec![3, 4]));
    }

    #[test]
    fn buckets_respect_the_budget_and_keep_every_example() {
        let mut rng = Rng::new(1);
        let examples: Vec<Example> = (0..500).map(|i| ex(1 + i % 37, 1 + (i * 7) % 41)).collect();
        let batches = bucket(&examples, 400, 3, &mut rng);
        let total: usize = batches.iter().map(|b| b.b).sum();
        assert_eq!(total, 500);
        for b in &batches {
            assert!(
                b.b == 1 || b.b * (b.s + b.t) <= 400,
                "{}x({}+{})",
                b.b,
                b.s,
                b.t
            );
        }
        // Same seed, same batches; another seed, another order.
        assert_eq!(bucket(&examples, 400, 3, &mut Rng::new(1)), batches);
        assert_ne!(bucket(&examples, 400, 3, &mut Rng::new(2)), batches);
    }

    #[test]
    fn lm_blocks_shift_labels_by_one() {
        let stream: Vec<u32> = (0..23).collect();
        let bs = blocks(&stream, 5, 2, &mut Rng::new(3));
        let n: usize = bs.iter().map(|b| b.b).sum();
        assert_eq!(n, 4); // blocks start at 0, 5, 10, 15 (each needs 6 tokens)
        for b in &bs {
            for i in 0..b.b {
                for j in 0..5 {
                    assert_eq!(b.labels[i * 5 + j], b.tgt[i * 5 + j] + 1);
                }
            }
        }
    }

    #[test]
    fn holdout_is_stable_and_near_its_rate() {
        let h = Holdout { per_mille: 50 };
        let lines: Vec<String> = (0..20_000)
            .map(|i| format!("line {i}\tZeile {i}"))
            .collect();
        let dev = lines.iter().filter(|l| h.split(l) == Split::Dev).count();
        let test = lines.iter().filter(|l| h.split(l) == Split::Test).count();
        assert!(
            (800..1200).contains(&dev) && (800..1200).contains(&test),
            "{dev} {test}"
        );
        assert_eq!(h.split("same"), h.split("same"));
    }
}
