//! Continuous batching: sequences join and leave a running batch between steps.
//!
//! A server does not know its batch in advance: requests arrive while others are half done.
//! [`ContinuousBatch`] keeps one row of landauer's batched forward pass per running sequence,
//! each at its own length ([`crate::batched::BatchedModel::forward_rows`]):
//! - a newcomer is prefilled alone, in the first free row, between decode steps (its prompt
//!   pass is its own window: the whole pass's time and energy produce its first token);
//! - then every running row decodes its next token in one pass per step, whatever the
//!   lengths (the tokens of a step share its window, as in [`Engine::generate_batch`]);
//! - a row that finishes (end of sequence, its token budget, the context, a stop flag) leaves
//!   at once: the last row's keys and values move into its place, so the running rows stay
//!   rows 0..n of the cache and the next step is no larger than the batch.
//!
//! Every sequence has its own sink, seed and sampling settings. The windows of one batch's
//! steps tile the time it is busy, so that the energy its sinks are given adds up to the
//! energy of that time. Greedy rows give the tokens they give alone.
//!
//! ```
//! use landauer_engine::continuous::{ContinuousBatch, RowOptions};
//! use landauer_engine::{Device, Engine, SamplingParams, TokenEvent, TokenSink, SinkError};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("tiny.gguf");
//! landauer_engine::tiny::write_tiny_llama(&path, &Default::default()).unwrap();
//! let mut engine = Engine::load_batched(&path, None, &Device::Cpu).unwrap();
//! let (a, b) = (engine.encode("The cat").unwrap(), engine.encode("Hello").unwrap());
//!
//! #[derive(Default, Debug)]
//! struct Ids(Vec<u32>);
//! impl TokenSink for Ids {
//!     fn token(&mut self, ev: &TokenEvent<'_>) -> Result<(), SinkError> {
//!         self.0.push(ev.token_id);
//!         Ok(())
//!     }
//! }
//! let opts = |n| RowOptions::new(n, SamplingParams::greedy());
//! let mut batch = ContinuousBatch::new(&mut engine, 4).unwrap();
//! batch.admit(a, opts(6), Ids::default()).unwrap();
//! batch.step().unwrap(); // prefills the first and decodes it
//! batch.admit(b, opts(3), Ids::default()).unwrap(); // joins the running batch
//! let mut done = Vec::new();
//! while !batch.is_empty() {
//!     done.extend(batch.step().unwrap());
//! }
//! assert_eq!(done.len(), 2);
//! assert!(done.iter().all(|f| f.sink.0.len() == f.end.generated_tokens));
//! ```

use crate::device_sampling::DeviceLogits;
use crate::generate::{host_values, row_stats};
use crate::model::Model;
use crate::sampler::{Sampler, SamplingParams};
use crate::tokenizer::TextStream;
use crate::{Engine, EngineError, Phase, Result, RunEnd, RunStart, StopReason, TokenEvent};
use crate::{SinkError, TokenSink};
use candle_core::{DType, Tensor};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Settings of one sequence in a continuous batch.
#[derive(Debug, Clone)]
pub struct RowOptions {
    pub max_tokens: usize,
    /// Its own sampling settings and seed.
    pub sampling: SamplingParams,
    /// Keep generating past EOS.
    pub ignore_eos: bool,
    /// Set from another thread (a stop string was generated, the client went away): the row
    /// leaves before the next step.
    pub stop: Option<Arc<AtomicBool>>,
}

impl RowOptions {
    pub fn new(max_tokens: usize, sampling: SamplingParams) -> Self {
        Self {
            max_tokens,
            sampling,
            ignore_eos: false,
            stop: None,
        }
    }
}

/// A sequence that left the batch: its sink (ended) and how it ended.
pub struct Finished<S> {
    /// What [`ContinuousBatch::admit`] returned for it.
    pub id: u64,
    pub sink: S,
    pub end: RunEnd,
}

/// Prompt tokens prefilled per step before the running rows decode again (at least one
/// newcomer is prefilled whatever its length): newcomers join quickly without holding the
/// running rows back for long.
pub const PREFILL_BUDGET: usize = 512;

struct Row<S> {
    id: u64,
    prompt: Vec<u32>,
    opts: RowOptions,
    sampler: Sampler,
    sink: S,
    /// Time zero of its events (the start of its prompt pass); None while it waits.
    t0: Option<Instant>,
    text: TextStream,
    /// Slots of the cache it has filled (prompt and fed tokens).
    len: usize,
    /// Its latest token, fed at the next step.
    last: u32,
    emitted: usize,
    prefill_s: f64,
    last_end_s: f64,
    done: Option<StopReason>,
}

impl<S> Row<S> {
    fn stopped(&self) -> bool {
        self.opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// A running batch whose rows come and go: see the module's documentation.
pub struct ContinuousBatch<'e, S: TokenSink> {
    engine: &'e mut Engine,
    max_batch: usize,
    /// Slots per row: the model's context.
    capacity: usize,
    /// Running rows; row i is cache row i.
    rows: Vec<Row<S>>,
    /// Admitted, waiting for their prompt pass.
    waiting: VecDeque<Row<S>>,
    /// The end of the last pass, while rows remain: the next step's window starts there.
    busy_since: Option<Instant>,
    next_id: u64,
    /// Rows decoded together in the last step's decode pass (0 when it had none).
    last_decode_rows: usize,
    /// From the start of the last step's first pass to the end of its last (None: it ran
    /// none).
    last_span: Option<(Instant, Instant)>,
}

impl<'e, S: TokenSink> ContinuousBatch<'e, S> {
    /// A batch of up to `max_batch` rows of the model's whole context each, its KV cache
    /// allocated now (refused up front where the device has too little memory free). The
    /// engine must run landauer's batched forward pass ([`Engine::load_batched`]).
    pub fn new(engine: &'e mut Engine, max_batch: usize) -> Result<Self> {
        Self::with_context(engine, max_batch, None)
    }

    /// Like [`Self::new`], with rows of `context` slots (prompt and generated tokens) where
    /// that is less than the model's context: a smaller cache, for more rows in the same
    /// memory.
    pub fn with_context(
        engine: &'e mut Engine,
        max_batch: usize,
        context: Option<usize>,
    ) -> Result<Self> {
        if max_batch == 0 {
            return Err(EngineError::Device("a batch needs at least one row".into()));
        }
        if context.is_some_and(|c| c < 2) {
            return Err(EngineError::Device(
                "a row needs a context of at least 2 tokens".into(),
            ));
        }
        let capacity = context.map_or(engine.context, |c| c.min(engine.context));
        // The cache for every row's whole context; the larger working set of a prompt pass
        // as long as the context and of a decode step of every row.
        let (kv, work) = match &engine.model {
            Model::Batched(m) => (
                m.kv_cache_bytes(max_batch, capacity),
                m.working_bytes(1, capacity, capacity)
                    .max(m.working_bytes(max_batch, 1, capacity)),
            ),
            _ => {
                return Err(EngineError::Device(
                    "continuous batching needs the batched forward pass: load with Engine::load_batched"
                        .into(),
                ))
            }
        };
        if let Some(free) = crate::device::free_memory(&engine.device) {
            if kv + work > free {
                return Err(EngineError::BatchTooLarge {
                    rows: max_batch,
                    slots: capacity,
                    need: kv + work,
                    kv,
                    free,
                });
            }
        }
        if let Model::Batched(m) = &mut engine.model {
            m.start(max_batch, capacity)?;
        }
        Ok(Self {
            engine,
            max_batch,
            capacity,
            rows: Vec::new(),
            waiting: VecDeque::new(),
            busy_since: None,
            next_id: 0,
            last_decode_rows: 0,
            last_span: None,
        })
    }

    /// The engine (its tokenizer, chat template, context), while the batch runs.
    pub fn engine(&self) -> &Engine {
        self.engine
    }

    /// Slots per row: the most tokens (prompt and generated) a sequence can have.
    pub fn context(&self) -> usize {
        self.capacity
    }

    /// Most rows at once.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Rows running and waiting for their prompt pass.
    pub fn len(&self) -> usize {
        self.rows.len() + self.waiting.len()
    }

    /// Nothing to do: no row runs or waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether another sequence can be admitted now.
    pub fn has_room(&self) -> bool {
        self.len() < self.max_batch
    }

    /// Rows decoded together in the last step's decode pass (0 when it had none).
    pub fn last_decode_rows(&self) -> usize {
        self.last_decode_rows
    }

    /// The time the last step's passes took, from the start of the first one's window to the
    /// end of the last one's (None: it ran none). The spans of successive steps tile the time
    /// the batch is busy, and the windows its sinks are given tile each span: a meter's
    /// energy over the spans is what the sinks are given in all.
    pub fn last_span(&self) -> Option<(Instant, Instant)> {
        self.last_span
    }

    /// Takes every sequence out of the batch, running or waiting, without ending its sink
    /// (after an error of the model, to tell each what happened).
    pub fn abandon(&mut self) -> Vec<(u64, S)> {
        self.busy_since = None;
        let rows = self.rows.drain(..).chain(self.waiting.drain(..));
        rows.map(|r| (r.id, r.sink)).collect()
    }

    /// Adds a sequence; it is prefilled at the next step. Returns its id, or the error and
    /// the sink back when it cannot be taken (an empty prompt, no room in the context, no
    /// free row, bad sampling settings).
    pub fn admit(
        &mut self,
        prompt: Vec<u32>,
        opts: RowOptions,
        sink: S,
    ) -> std::result::Result<u64, (EngineError, S)> {
        if prompt.is_empty() {
            return Err((EngineError::EmptyPrompt, sink));
        }
        if opts.max_tokens == 0 {
            return Err((EngineError::ZeroMaxTokens, sink));
        }
        if prompt.len() >= self.capacity {
            let e = EngineError::PromptTooLong {
                prompt: prompt.len(),
                context: self.capacity,
            };
            return Err((e, sink));
        }
        if !self.has_room() {
            let e = EngineError::Device(format!(
                "the batch is full ({} rows): wait for a row to finish",
                self.max_batch
            ));
            return Err((e, sink));
        }
        let sampler = match Sampler::new(opts.sampling.clone()) {
            Ok(s) => s,
            Err(e) => return Err((e, sink)),
        };
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Row {
            id,
            prompt,
            opts,
            sampler,
            sink,
            t0: None,
            text: TextStream::default(),
            len: 0,
            last: 0,
            emitted: 0,
            prefill_s: 0.0,
            last_end_s: 0.0,
            done: None,
        });
        Ok(id)
    }

    /// One step: rows whose stop flag is set leave; waiting sequences are prefilled (each
    /// alone, up to [`PREFILL_BUDGET`] prompt tokens, at least one); then every running row
    /// decodes one token in one pass. Returns the sequences that finished, their sinks
    /// ended. After an error of the model or of a sink, the step's rows are in no known
    /// state: [`Self::abandon`] hands every sequence back, and the batch goes on empty.
    pub fn step(&mut self) -> Result<Vec<Finished<S>>> {
        let mut finished = Vec::new();
        self.last_span = None;
        let first = self.busy_since.unwrap_or_else(Instant::now);
        let mut window = first;
        // Stopped rows leave before any work is done for them.
        for row in self.rows.iter_mut().filter(|r| r.stopped()) {
            row.done = Some(StopReason::Interrupted);
        }
        self.release(&mut finished)?;
        let mut waiting = VecDeque::new();
        for mut row in std::mem::take(&mut self.waiting) {
            match row.stopped() {
                true => {
                    let at = Instant::now();
                    begin(&mut row, at)?;
                    row.done = Some(StopReason::Interrupted);
                    finished.push(finish(row, &self.engine.tokenizer)?);
                }
                false => waiting.push_back(row),
            }
        }
        self.waiting = waiting;
        // Newcomers, one prompt pass each.
        let mut budget = 0usize;
        while let Some(row) = self.waiting.pop_front() {
            if budget > 0 && budget + row.prompt.len() > PREFILL_BUDGET {
                self.waiting.push_front(row);
                break;
            }
            budget += row.prompt.len();
            // In the batch before anything can fail, so that `abandon` hands its sink back.
            let r = self.rows.len();
            let input = Tensor::new(row.prompt.as_slice(), &self.engine.device)?.unsqueeze(0)?;
            self.rows.push(row);
            begin(&mut self.rows[r], window)?;
            let logits = batched(&mut self.engine.model)?.forward_rows(&input, r, &[0])?;
            self.rows[r].len = self.rows[r].prompt.len();
            window = self.sample(r..r + 1, &logits, window, Phase::Prefill)?;
        }
        self.release(&mut finished)?;
        // Every running row, one token.
        self.last_decode_rows = self.rows.len();
        if !self.rows.is_empty() {
            let lens: Vec<usize> = self.rows.iter().map(|r| r.len).collect();
            let last: Vec<u32> = self.rows.iter().map(|r| r.last).collect();
            let n = self.rows.len();
            let model = batched(&mut self.engine.model)?;
            let input = Tensor::from_vec(last, (n, 1), &self.engine.device)?;
            let logits = model.forward_rows(&input, 0, &lens)?;
            for row in &mut self.rows {
                row.len += 1;
            }
            window = self.sample(0..n, &logits, window, Phase::Decode)?;
            self.release(&mut finished)?;
        }
        if window > first {
            self.last_span = Some((first, window));
        }
        self.busy_since = (!self.is_empty()).then_some(window);
        Ok(finished)
    }

    /// Chooses the next token of rows `range` (the rows of `logits`, in order) and sends
    /// each its event; the pass's window runs from `start` to now. Returns the window's end.
    fn sample(
        &mut self,
        range: std::ops::Range<usize>,
        logits: &Tensor,
        start: Instant,
        phase: Phase,
    ) -> Result<Instant> {
        let n = range.len();
        let engine = &*self.engine;
        let rows = &mut self.rows[range];
        let needs: Vec<_> = rows.iter().map(|r| r.sink.needs()).collect();
        let want_logits = needs.iter().any(|n| n.logits);
        let want_stats: Vec<usize> = (0..n).filter(|&i| needs[i].stats).collect();
        let on_device = engine.samples_on_device();
        // On the device: each group of rows with the same settings planned together.
        let mut device = None;
        let mut dev_stats = vec![None; n];
        if on_device {
            let dl = DeviceLogits::new(logits)?;
            let mut plans = Vec::new();
            let mut place = vec![(0usize, 0usize); n];
            let mut groups: Vec<(SamplingParams, usize, Vec<usize>)> = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                let p = row.sampler.params();
                let key = |q: &SamplingParams| {
                    q.temperature == p.temperature && q.top_k == p.top_k && q.top_p == p.top_p
                };
                match groups
                    .iter_mut()
                    .find(|(q, top, _)| key(q) && *top == needs[i].top_n)
                {
                    Some(g) => g.2.push(i),
                    None => groups.push((p.clone(), needs[i].top_n, vec![i])),
                }
            }
            for (params, top_n, members) in &groups {
                let plan = dl.plan(members, params, *top_n)?;
                for (j, &i) in members.iter().enumerate() {
                    place[i] = (plans.len(), j);
                }
                plans.push(plan);
            }
            if !want_stats.is_empty() {
                let all = dl.stats()?;
                for &i in &want_stats {
                    dev_stats[i] = Some(all[i]);
                }
            }
            device = Some((dl, plans, place));
        }
        let flat = match (on_device, want_logits) {
            (false, _) | (true, true) => Some(logits.to_dtype(DType::F32)?.flatten_all()?),
            (true, false) => None,
        };
        let values = flat.as_ref().map(host_values).transpose()?;
        let host = values.as_ref().map(|v| v.as_slice());
        let vocab = logits.dim(logits.rank() - 1)?;
        let end = Instant::now();
        let stats = match (&device, host) {
            (None, Some(h)) => row_stats(h, vocab, &want_stats, usize::MAX),
            _ => dev_stats,
        };
        for (i, row) in rows.iter_mut().enumerate() {
            let logits_row = host.map(|h| &h[i * vocab..(i + 1) * vocab]);
            let (token, sampled, outcome) = match &mut device {
                Some((dl, plans, place)) => {
                    let (p, j) = place[i];
                    let (out, dist) = dl.sample_row(&mut plans[p], j, i, &mut row.sampler)?;
                    (out.token, dist, Some(out))
                }
                None => {
                    let (token, dist) = row.sampler.sample(logits_row.unwrap_or_default());
                    (token, dist, None)
                }
            };
            let chosen_logit = match &outcome {
                Some(o) => o.chosen_logit,
                None => logits_row.map_or(f32::NAN, |h| h[token as usize]),
            };
            let is_eos = engine.eos_tokens.contains(&token);
            let piece = match is_eos {
                true => String::new(),
                false => row.text.push(&engine.tokenizer, token),
            };
            let t0 = row.t0.expect("a running row has begun");
            let secs = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
            let (t_start, t_end) = (secs(start), secs(end));
            if phase == Phase::Prefill {
                row.prefill_s = t_end;
            }
            row.last_end_s = t_end;
            let ev = TokenEvent {
                seq: 0,
                index: row.emitted,
                position: row.len,
                token_id: token,
                text: &piece,
                is_eos,
                phase,
                logits: logits_row.filter(|_| needs[i].logits || !on_device),
                chosen_logit,
                top: outcome.as_ref().map(|o| o.top.as_slice()),
                sampled,
                tokenizer: &engine.tokenizer,
                t_start_s: t_start,
                t_end_s: t_end,
                step_tokens: n,
                stats: stats[i],
            };
            row.sink.token(&ev).map_err(sink_err)?;
            row.emitted += 1;
            row.last = token;
            row.done = if is_eos && !row.opts.ignore_eos {
                Some(StopReason::Eos)
            } else if row.emitted >= row.opts.max_tokens {
                Some(StopReason::MaxTokens)
            } else if row.len + 1 > self.capacity {
                // No slot left to feed this token into.
                Some(StopReason::ContextFull)
            } else {
                None
            };
        }
        Ok(end)
    }

    /// Finished rows leave; the last row moves into each one's place.
    fn release(&mut self, out: &mut Vec<Finished<S>>) -> Result<()> {
        for i in (0..self.rows.len()).rev() {
            if self.rows[i].done.is_none() {
                continue;
            }
            let last = self.rows.len() - 1;
            if i != last {
                let len = self.rows[last].len;
                batched(&mut self.engine.model)?.copy_row(last, i, len)?;
            }
            let row = self.rows.swap_remove(i);
            out.push(finish(row, &self.engine.tokenizer)?);
        }
        Ok(())
    }
}

fn batched(model: &mut Model) -> Result<&mut crate::batched::BatchedModel> {
    match model {
        Model::Batched(m) => Ok(m),
        _ => Err(EngineError::Device(
            "continuous batching needs the batched forward pass".into(),
        )),
    }
}

fn sink_err(e: SinkError) -> EngineError {
    EngineError::Sink(e.to_string())
}

/// Starts a row's events at `at`.
fn begin<S: TokenSink>(row: &mut Row<S>, at: Instant) -> Result<()> {
    row.t0 = Some(at);
    row.sink
        .begin(&RunStart {
            at,
            prompt_tokens: row.prompt.len(),
        })
        .map_err(sink_err)
}

/// Ends a row's events.
fn finish<S: TokenSink>(mut row: Row<S>, tokenizer: &tokenizers::Tokenizer) -> Result<Finished<S>> {
    let end = RunEnd {
        reason: row.done.unwrap_or(StopReason::Interrupted),
        prompt_tokens: row.prompt.len(),
        generated_tokens: row.emitted,
        prefill_s: row.prefill_s,
        total_s: row.last_end_s,
        tail_text: row.text.flush(tokenizer),
    };
    row.sink.end(&end).map_err(sink_err)?;
    Ok(Finished {
        id: row.id,
        sink: row.sink,
        end,
    })
}
