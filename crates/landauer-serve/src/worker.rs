//! The engine's thread: it owns the model and runs a continuous batch. Between steps it takes
//! requests from the bounded queue while the batch has room; every step it prefills
//! newcomers and decodes one token of every running request; each token, with its bits and
//! joules, goes back to its request's handler. A finished response's recorder is closed on a
//! thread of its own, which waits for the meter to pass its last token (so that the engine
//! never waits on the meter).

use crate::api::{ApiError, Message};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use landauer_engine::continuous::{ContinuousBatch, Finished, RowOptions};
use landauer_engine::{
    Needs, RunEnd, RunStart, SamplingParams, SinkError, StopReason, TokenEvent, TokenSink,
};
use landauer_meter::sampler::MeterSampler;
use landauer_studies::Loaded;
use landauer_trace::{JsonlTrace, RecordSink, Recorder, RunRecord, SummaryRecord, TokenRecord};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

/// The prompt of a request: text as given, or a conversation for the chat template.
pub enum Prompt {
    Text(String),
    Chat(Vec<Message>),
}

/// One request, as the handler hands it to the engine.
pub struct Job {
    pub prompt: Prompt,
    pub sampling: SamplingParams,
    /// None: up to the context.
    pub max_tokens: Option<usize>,
    /// Alternatives recorded per token.
    pub top_n: usize,
    pub events: UnboundedSender<Event>,
    /// Set by the handler (a stop string was generated, the client went away): the request
    /// leaves the batch before the next step, and its row serves the next one.
    pub cancel: Arc<AtomicBool>,
}

/// What the engine sends back about a request.
pub enum Event {
    /// The prompt was accepted: its length in tokens.
    Started {
        prompt_tokens: usize,
    },
    Token(Box<TokenRecord>),
    Done {
        summary: Box<SummaryRecord>,
        reason: StopReason,
        /// Text the tokenizer held back to the end (an incomplete character).
        tail: String,
    },
    Error(ApiError),
}

/// The engine's side: the model, the server's meter, the template of every run record.
pub struct Worker {
    pub loaded: Loaded,
    pub sampler: Option<Arc<MeterSampler>>,
    pub run_template: RunRecord,
    pub trace_dir: Option<PathBuf>,
    pub metrics: Arc<Metrics>,
    /// The energy of the engine's busy time (None without a meter).
    pub ledger: Option<Arc<Mutex<Ledger>>>,
    /// Most requests decoded together.
    pub max_batch: usize,
    /// Tokens per request, prompt and completion (None: the model's context).
    pub max_context: Option<usize>,
    /// Requests taken so far (names their traces).
    pub requests: u64,
}

/// Passes the recorder's token records to the request's handler.
struct ToHandler {
    events: UnboundedSender<Event>,
    cancel: Arc<AtomicBool>,
}

impl RecordSink for ToHandler {
    fn token(&mut self, t: &TokenRecord) -> std::io::Result<()> {
        if self.events.send(Event::Token(Box::new(t.clone()))).is_err() {
            // The client is gone: stop generating for it.
            self.cancel.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A request's row sink: its recorder, whose end is left to the closing thread.
struct Billing {
    recorder: Recorder,
    events: UnboundedSender<Event>,
}

impl TokenSink for Billing {
    fn needs(&self) -> Needs {
        self.recorder.needs()
    }
    fn begin(&mut self, s: &RunStart) -> Result<(), SinkError> {
        self.recorder.begin(s)
    }
    fn token(&mut self, e: &TokenEvent<'_>) -> Result<(), SinkError> {
        self.recorder.token(e)
    }
    fn end(&mut self, _: &RunEnd) -> Result<(), SinkError> {
        // Ended by `close`, off the engine's thread.
        Ok(())
    }
}

/// What turns a job into a row: the run records' template, the meter, where traces go.
struct Intake {
    sampler: Option<Arc<MeterSampler>>,
    run_template: RunRecord,
    trace_dir: Option<PathBuf>,
    metrics: Arc<Metrics>,
    requests: u64,
}

/// A finished response on its way to its handler.
struct Closing {
    billing: Billing,
    end: RunEnd,
}

impl Worker {
    /// Serves jobs until every sender is gone and the batch has finished. `ready` gets
    /// whether the batch could be set up (its KV cache allocated).
    pub fn run(self, jobs: Receiver<Job>, ready: Sender<Result<(), String>>) {
        let Worker {
            mut loaded,
            sampler,
            run_template,
            trace_dir,
            metrics,
            ledger,
            max_batch,
            max_context,
            requests,
        } = self;
        let mut intake = Intake {
            sampler,
            run_template,
            trace_dir,
            metrics: metrics.clone(),
            requests,
        };
        let (close_tx, close_rx) = std::sync::mpsc::channel::<Closing>();
        let closer = {
            let metrics = metrics.clone();
            let sampler = intake.sampler.clone();
            std::thread::Builder::new()
                .name("landauer-billing".into())
                .spawn(move || close_all(close_rx, &metrics, sampler.as_deref()))
        };
        let closer = match closer {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot start a thread: {e}")));
                return;
            }
        };
        let engine = &mut loaded.engine;
        let mut batch = match ContinuousBatch::with_context(engine, max_batch, max_context) {
            Ok(b) => b,
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let mut events: HashMap<u64, UnboundedSender<Event>> = HashMap::new();
        let mut open = true;
        while open || !batch.is_empty() {
            // Newcomers, while there is room; wait for one when there is nothing to do.
            if batch.is_empty() {
                match jobs.recv() {
                    Ok(job) => take(&mut intake, &mut batch, &mut events, job),
                    Err(_) => open = false,
                }
            }
            while open && batch.has_room() {
                match jobs.try_recv() {
                    Ok(job) => take(&mut intake, &mut batch, &mut events, job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            if batch.is_empty() {
                continue;
            }
            match batch.step() {
                Ok(done) => {
                    if batch.last_decode_rows() > 0 {
                        metrics.batch_size.observe(batch.last_decode_rows() as f64);
                    }
                    if let (Some(ledger), Some(span)) = (&ledger, batch.last_span()) {
                        let mut l = ledger.lock().expect("ledger lock");
                        l.busy(span);
                        l.settle();
                    }
                    for Finished { id, sink, end } in done {
                        events.remove(&id);
                        let _ = close_tx.send(Closing { billing: sink, end });
                    }
                }
                Err(e) => {
                    // The model failed (out of memory, a device error): every request in
                    // the batch is told, and the server goes on with the next ones.
                    for (id, sink) in batch.abandon() {
                        events.remove(&id);
                        let _ = sink
                            .events
                            .send(Event::Error(ApiError::internal(e.to_string())));
                    }
                    // Any other request the batch held (none should be left) is told too.
                    for (_, tx) in events.drain() {
                        let _ = tx.send(Event::Error(ApiError::internal(e.to_string())));
                    }
                }
            }
            metrics.running.set(batch.len() as i64);
        }
        metrics.running.set(0);
        drop(close_tx);
        let _ = closer.join();
    }
}

/// Checks a job and admits it to the batch, or answers its handler with what is wrong.
fn take(
    w: &mut Intake,
    batch: &mut ContinuousBatch<'_, Billing>,
    events: &mut HashMap<u64, UnboundedSender<Event>>,
    job: Job,
) {
    w.metrics.queue_depth.dec();
    let tx = job.events.clone();
    match admit(w, batch, job) {
        Ok(id) => {
            events.insert(id, tx);
        }
        Err(e) => {
            let _ = tx.send(Event::Error(e));
        }
    }
}

fn admit(
    w: &mut Intake,
    batch: &mut ContinuousBatch<'_, Billing>,
    job: Job,
) -> Result<u64, ApiError> {
    let engine = batch.engine();
    let text = match &job.prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(messages) => {
            let conversation: Vec<(&str, &str)> = messages
                .iter()
                .map(|m| (m.role.as_str(), m.content.as_str()))
                .collect();
            engine
                .chat_conversation(&conversation, false)
                .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))?
        }
    };
    let tokens = engine
        .encode(&text)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let context = batch.context();
    if tokens.is_empty() {
        return Err(ApiError::invalid("the prompt is empty", Some("prompt")));
    }
    if tokens.len() >= context {
        return Err(ApiError::invalid(
            format!(
                "the prompt is {} tokens; this server's context is {context}: shorten it",
                tokens.len()
            ),
            Some("prompt"),
        ));
    }
    let room = context - tokens.len();
    let max_tokens = match job.max_tokens {
        Some(n) if n > room => {
            return Err(ApiError::invalid(
                format!(
                    "max_tokens is {n}, but the context leaves {room} after the {}-token prompt",
                    tokens.len()
                ),
                Some("max_tokens"),
            ))
        }
        Some(0) => {
            return Err(ApiError::invalid(
                "max_tokens must be at least 1",
                Some("max_tokens"),
            ))
        }
        Some(n) => n,
        None => room,
    };
    let n = w.requests;
    w.requests += 1;
    let mut run = w.run_template.clone();
    run.prompt = text.clone();
    run.prompt_text = text;
    run.prompt_tokens = tokens.len();
    run.prompt_token_ids = vec![tokens.clone()];
    run.max_tokens = max_tokens;
    run.top_n = job.top_n;
    run.chat = matches!(job.prompt, Prompt::Chat(_));
    run.sampling = landauer_trace::SamplingRecord {
        temperature: job.sampling.temperature,
        top_k: job.sampling.top_k,
        top_p: job.sampling.top_p,
        seed: job.sampling.seed,
        greedy: job.sampling.is_greedy(),
    };
    let mut recorder = match &w.sampler {
        Some(s) => Recorder::with_shared_sampler(run, s.clone()),
        None => Recorder::new(run, None),
    }
    .with_sink(ToHandler {
        events: job.events.clone(),
        cancel: job.cancel.clone(),
    });
    if let Some(dir) = &w.trace_dir {
        let trace = JsonlTrace::create(&dir.join(format!("request-{n:06}.jsonl")))
            .map_err(|e| ApiError::internal(format!("cannot write the trace: {e}")))?;
        recorder = recorder.with_sink(trace);
    }
    let opts = RowOptions {
        max_tokens,
        sampling: job.sampling,
        ignore_eos: false,
        stop: Some(job.cancel.clone()),
    };
    let billing = Billing {
        recorder,
        events: job.events.clone(),
    };
    let prompt_tokens = tokens.len();
    let id = batch
        .admit(tokens, opts, billing)
        .map_err(|(e, _)| ApiError::internal(e.to_string()))?;
    let _ = job.events.send(Event::Started { prompt_tokens });
    Ok(id)
}

/// Ends each finished response's recorder (waiting for the meter to pass its last token),
/// adds it to the metrics and sends the handler its summary.
fn close_all(rx: Receiver<Closing>, metrics: &Metrics, sampler: Option<&MeterSampler>) {
    for Closing { mut billing, end } in rx {
        let events = billing.events.clone();
        let summary = billing
            .recorder
            .end(&end)
            .map_err(|e| ApiError::internal(e.to_string()))
            .and_then(|_| {
                billing
                    .recorder
                    .summary()
                    .cloned()
                    .ok_or_else(|| ApiError::internal("the run ended without a summary"))
            });
        match summary {
            Ok(summary) => {
                metrics.record(&summary);
                let _ = events.send(Event::Done {
                    summary: Box::new(summary),
                    reason: end.reason,
                    tail: end.tail_text.clone(),
                });
            }
            Err(e) => {
                let _ = events.send(Event::Error(e));
            }
        }
        if let Some(s) = sampler {
            // What no response in progress can need any more.
            let now = s.epoch().elapsed().as_secs_f64();
            s.forget_before(now - 60.0);
        }
    }
}
