//! The engine's thread: it owns the model and takes one request at a time from a bounded
//! queue, and sends each token, with its bits and joules, back to the request's handler.

use crate::api::{ApiError, Message};
use crate::metrics::Metrics;
use landauer_engine::{GenerateOptions, SamplingParams, StopReason};
use landauer_meter::sampler::MeterSampler;
use landauer_studies::Loaded;
use landauer_trace::{JsonlTrace, RecordSink, Recorder, RunRecord, SummaryRecord, TokenRecord};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    /// Set by the handler (a stop string was generated, the client went away): the engine
    /// stops after the current token.
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
    /// Requests taken so far (names their traces).
    pub requests: u64,
}

/// Passes the recorder's token and summary records to the request's handler.
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

impl Worker {
    /// Serves jobs until every sender is gone.
    pub fn run(mut self, jobs: std::sync::mpsc::Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            self.metrics.queue_depth.dec();
            let events = job.events.clone();
            if let Err(e) = self.one(job) {
                let _ = events.send(Event::Error(e));
            }
        }
    }

    fn one(&mut self, job: Job) -> Result<(), ApiError> {
        let engine = &mut self.loaded.engine;
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
        let context = engine.context_length();
        if tokens.is_empty() {
            return Err(ApiError::invalid("the prompt is empty", Some("prompt")));
        }
        if tokens.len() >= context {
            return Err(ApiError::invalid(
                format!(
                    "the prompt is {} tokens; this model's context is {context}: shorten it",
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
        let n = self.requests;
        self.requests += 1;
        let mut run = self.run_template.clone();
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
        let mut recorder = match &self.sampler {
            Some(s) => Recorder::with_shared_sampler(run, s.clone()),
            None => Recorder::new(run, None),
        }
        .with_sink(ToHandler {
            events: job.events.clone(),
            cancel: job.cancel.clone(),
        });
        if let Some(dir) = &self.trace_dir {
            let trace = JsonlTrace::create(&dir.join(format!("request-{n:06}.jsonl")))
                .map_err(|e| ApiError::internal(format!("cannot write the trace: {e}")))?;
            recorder = recorder.with_sink(trace);
        }
        let _ = job.events.send(Event::Started {
            prompt_tokens: tokens.len(),
        });
        let opts = GenerateOptions {
            max_tokens,
            sampling: job.sampling,
            ignore_eos: false,
            stop: Some(job.cancel.clone()),
            stats_rows: usize::MAX,
        };
        let end = engine
            .generate(&tokens, &opts, &mut recorder)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let summary = recorder
            .summary()
            .cloned()
            .ok_or_else(|| ApiError::internal("the run ended without a summary"))?;
        self.metrics.record(&summary);
        if let Some(s) = &self.sampler {
            // What no run in progress can need any more.
            let now = s.epoch().elapsed().as_secs_f64();
            s.forget_before(now - 60.0);
        }
        let _ = job.events.send(Event::Done {
            summary: Box::new(summary),
            reason: end.reason,
        });
        Ok(())
    }
}
