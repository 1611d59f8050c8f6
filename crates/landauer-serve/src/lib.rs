//! landauer's HTTP server: OpenAI's completions and chat completions, every response billed
//! in joules and bits, and Prometheus metrics for fleets.
//!
//! The engine runs on a thread of its own with a continuous batch
//! ([`landauer_engine::continuous`]): requests join the running batch between steps, up to
//! `max_batch` at once, from a bounded queue (a full queue answers 429 with Retry-After), and
//! leave it as soon as they finish. Each request's tokens go through the same recorder as
//! `landauer generate`'s trace, over one meter sampler that runs for the server's lifetime:
//! each response is billed its tokens' windows, a step's energy shared by the tokens it
//! produced, and the bills add up to the meter's energy over the engine's busy time
//! ([`ledger`], `landauer_busy_energy_joules_total`). Streamed
//! chunks carry each token's `entropy_bits`, `surprisal_bits` and `energy_j` in a `landauer`
//! object beside OpenAI's fields (unmodified clients parse them), and `usage` gains
//! `energy_j`, `prefill_energy_j`, `mean_entropy_bits`, `tokens_per_wh` and `landauer_gap`.
//!
//! ```no_run
//! # async fn example(loaded: landauer_studies::Loaded) -> anyhow::Result<()> {
//! // `loaded` on landauer's batched forward pass (`ModelOptions { batched: true, .. }`).
//! let server = landauer_serve::Server::start(loaded, landauer_serve::ServeConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server.serve(listener, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod ledger;
pub mod metrics;
mod worker;

use api::{ApiError, ChatRequest, CompletionRequest, JsonBody, OneOrMany, Sampling};
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use landauer_engine::{SamplingParams, StopReason};
use landauer_studies::{Loaded, MeterOptions, MeterSession, RunSettings};
use landauer_trace::{SummaryRecord, TokenRecord};
use ledger::Ledger;
use metrics::Metrics;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use worker::{Event, Job, Prompt, Worker};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The name clients ask for (`model` in requests; None: the model file's name without its
    /// extension).
    pub model_id: Option<String>,
    /// Requests that may wait for a row of the batch; one more gets 429.
    pub queue: usize,
    /// Most requests decoded together (rows of the continuous batch).
    pub max_batch: usize,
    /// Tokens per request, prompt and completion (None: the model's context); a smaller KV
    /// cache per row, for more rows in the same memory.
    pub max_context: Option<usize>,
    /// Largest request body, bytes (larger: 413).
    pub max_body_bytes: usize,
    /// One JSONL trace per request here.
    pub trace_dir: Option<PathBuf>,
    pub meter: MeterOptions,
    /// CPU threads of the engine (recorded in traces).
    pub threads: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            model_id: None,
            queue: 16,
            max_batch: 8,
            max_context: None,
            max_body_bytes: 1 << 20,
            trace_dir: None,
            meter: MeterOptions::default(),
            threads: 1,
        }
    }
}

/// What every handler shares.
struct App {
    model_id: String,
    jobs: std::sync::mpsc::SyncSender<Job>,
    queue: usize,
    metrics: Arc<Metrics>,
    ledger: Option<Arc<Mutex<Ledger>>>,
    ids: AtomicU64,
}

/// A started server: the engine's thread, waiting for requests.
pub struct Server {
    app: Arc<App>,
    max_body_bytes: usize,
}

impl Server {
    /// Starts the meter's sampler and the engine's thread, with the batch's KV cache
    /// allocated (refused here when the device's memory cannot hold `max_batch` rows).
    /// `loaded` must run landauer's batched forward pass.
    pub fn start(loaded: Loaded, cfg: ServeConfig) -> anyhow::Result<Server> {
        if cfg.queue == 0 {
            anyhow::bail!("--queue must be at least 1");
        }
        if cfg.max_batch == 0 {
            anyhow::bail!("--max-batch must be at least 1");
        }
        if let Some(d) = &cfg.trace_dir {
            std::fs::create_dir_all(d)
                .map_err(|e| anyhow::anyhow!("cannot create --trace-dir {}: {e}", d.display()))?;
        }
        let meter = MeterSession::start(&cfg.meter, &loaded.device)?;
        let info = loaded.engine.info();
        // The file's name without its extension (what a user types), else the model's own.
        let model_id = cfg.model_id.clone().unwrap_or_else(|| {
            std::path::Path::new(&loaded.model_path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .or_else(|| info.name.clone())
                .unwrap_or_else(|| "landauer".into())
        });
        let settings = RunSettings {
            model: model_id.clone(),
            context_length: loaded.engine.context_length(),
            threads: cfg.threads,
            idle_seconds: 0.0,
            idle_power_w: None,
            kelvin: landauer_physics::DEFAULT_KELVIN,
            sampling: landauer_trace::SamplingRecord {
                temperature: 0.0,
                top_k: None,
                top_p: None,
                seed: 0,
                greedy: true,
            },
            max_tokens: 0,
            chat: false,
            prompt: String::new(),
            prompt_text: String::new(),
            prompt_tokens: 0,
            prompt_token_ids: Vec::new(),
            batch: 1,
            top_n: 0,
            footprint: Default::default(),
            started_unix_s: 0.0,
        };
        let run_template = landauer_studies::session::run_record(&loaded, &meter, settings);
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue);
        let sampler = meter.sampler.map(Arc::new);
        let ledger = sampler.as_ref().map(|s| {
            Arc::new(Mutex::new(Ledger::new(
                s.clone(),
                metrics.busy_energy_joules.clone(),
                metrics.power_watts.clone(),
            )))
        });
        let worker = Worker {
            loaded,
            sampler,
            run_template,
            trace_dir: cfg.trace_dir.clone(),
            metrics: metrics.clone(),
            ledger: ledger.clone(),
            max_batch: cfg.max_batch,
            max_context: cfg.max_context,
            requests: 0,
        };
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("landauer-engine".into())
            .spawn(move || worker.run(rx, ready_tx))?;
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!(
                "--max-batch {}: {e} (--max-batch, --max-context)",
                cfg.max_batch
            ),
            Err(_) => anyhow::bail!("the engine's thread stopped while starting"),
        }
        Ok(Server {
            app: Arc::new(App {
                model_id,
                jobs: tx,
                queue: cfg.queue,
                metrics,
                ledger,
                ids: AtomicU64::new(0),
            }),
            max_body_bytes: cfg.max_body_bytes,
        })
    }

    /// The name clients ask for.
    pub fn model_id(&self) -> &str {
        &self.app.model_id
    }

    /// The routes: /v1/completions, /v1/chat/completions, /v1/models, /health, /metrics.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/completions", post(completions))
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/metrics", get(render_metrics))
            .fallback(|| async {
                ApiError {
                    status: axum::http::StatusCode::NOT_FOUND,
                    message: "no such endpoint: landauer serves /v1/completions, /v1/chat/completions, /v1/models, /health and /metrics".into(),
                    kind: "invalid_request_error",
                    param: None,
                    code: None,
                    retry_after: None,
                }
            })
            .layer(axum::extract::DefaultBodyLimit::max(self.max_body_bytes))
            .with_state(self.app.clone())
    }

    /// Serves on `listener` until `shutdown` completes; then finishes the responses under way
    /// (their traces are written as they go) and returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": app.model_id, "object": "model", "created": 0, "owned_by": "landauer"
    }]}))
}

async fn render_metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    if let Some(l) = &app.ledger {
        // The busy spans the meter has passed since the last step.
        l.lock().expect("ledger lock").settle();
    }
    (
        [("content-type", "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

/// Which endpoint a response answers.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Completion,
    Chat,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Kind::Completion => "/v1/completions",
            Kind::Chat => "/v1/chat/completions",
        }
    }
}

async fn completions(
    State(app): State<Arc<App>>,
    body: Result<JsonBody<CompletionRequest>, ApiError>,
) -> Response {
    let r = match body {
        Ok(JsonBody(req)) => (|| {
            let prompt = match req.prompt {
                OneOrMany::One(p) => p,
                OneOrMany::Many(mut v) if v.len() == 1 => v.remove(0),
                OneOrMany::Many(_) => {
                    return Err(ApiError::invalid(
                        "one prompt per request (send several requests)",
                        Some("prompt"),
                    ))
                }
            };
            Ok((Prompt::Text(prompt), req.logprobs, req.sampling))
        })(),
        Err(e) => Err(e),
    };
    respond(app, Kind::Completion, r).await
}

async fn chat(
    State(app): State<Arc<App>>,
    body: Result<JsonBody<ChatRequest>, ApiError>,
) -> Response {
    let r = match body {
        Ok(JsonBody(req)) => {
            if req.messages.is_empty() {
                Err(ApiError::invalid("messages is empty", Some("messages")))
            } else if let Some(m) = req
                .messages
                .iter()
                .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
            {
                Err(ApiError::invalid(
                    format!("unknown role {:?}: system, user or assistant", m.role),
                    Some("messages"),
                ))
            } else {
                let top = match (req.logprobs, req.top_logprobs) {
                    (true, n) => Some(n.unwrap_or(0)),
                    (false, _) => None,
                };
                Ok((Prompt::Chat(req.messages), top, req.sampling))
            }
        }
        Err(e) => Err(e),
    };
    respond(app, Kind::Chat, r).await
}

/// Queues a checked request and answers it, streamed or whole.
async fn respond(
    app: Arc<App>,
    kind: Kind,
    req: Result<(Prompt, Option<usize>, Sampling), ApiError>,
) -> Response {
    let count = |status: u16| {
        app.metrics
            .requests
            .with_label_values(&[kind.endpoint(), &status.to_string()])
            .inc()
    };
    let (prompt, logprobs, sampling) = match req {
        Ok(r) => r,
        Err(e) => {
            count(e.status.as_u16());
            return e.into_response();
        }
    };
    let (params, stop) = match check(&app, logprobs, &sampling) {
        Ok(c) => c,
        Err(e) => {
            count(e.status.as_u16());
            return e.into_response();
        }
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let job = Job {
        prompt,
        sampling: params,
        max_tokens: sampling.max_completion_tokens.or(sampling.max_tokens),
        top_n: logprobs.unwrap_or(0),
        events: tx,
        cancel: cancel.clone(),
    };
    app.metrics.queue_depth.inc();
    if let Err(e) = app.jobs.try_send(job) {
        app.metrics.queue_depth.dec();
        let e = match e {
            std::sync::mpsc::TrySendError::Full(_) => ApiError::busy(app.queue),
            std::sync::mpsc::TrySendError::Disconnected(_) => {
                ApiError::internal("the engine has stopped")
            }
        };
        count(e.status.as_u16());
        return e.into_response();
    }
    let id = app.ids.fetch_add(1, Ordering::Relaxed);
    let turn = Turn::new(kind, &app.model_id, id, stop, logprobs);
    if sampling.stream {
        count(200);
        stream(turn, rx, cancel).into_response()
    } else {
        let r = whole(turn, rx, cancel).await;
        count(match &r {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        });
        match r {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// The request's settings, checked: how to sample, and its stop strings.
fn check(
    app: &App,
    logprobs: Option<usize>,
    s: &Sampling,
) -> Result<(SamplingParams, Vec<String>), ApiError> {
    if let Some(m) = s.model.as_deref().filter(|m| *m != app.model_id) {
        return Err(ApiError::unknown_model(m, &app.model_id));
    }
    if logprobs.is_some_and(|n| n > 20) {
        return Err(ApiError::invalid(
            "logprobs must be 0 to 20",
            Some("logprobs"),
        ));
    }
    let stop = s.stop.clone().map(OneOrMany::into_vec).unwrap_or_default();
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop takes up to 4 non-empty strings",
            Some("stop"),
        ));
    }
    let sampling = SamplingParams {
        // OpenAI's default temperature is 1.
        temperature: s.temperature.unwrap_or(1.0),
        top_k: s.top_k,
        top_p: s.top_p,
        seed: s.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        }),
    };
    // The message names the setting (temperature, top-k or top-p).
    sampling
        .validate()
        .map_err(|e| ApiError::invalid(e.to_string(), None))?;
    Ok((sampling, stop))
}

/// One response in the making: its text so far, where stop strings cut it, what has been
/// sent.
struct Turn {
    kind: Kind,
    id: String,
    model: String,
    created: u64,
    stop: Vec<String>,
    logprobs: Option<usize>,
    text: String,
    /// Bytes of `text` already sent (streaming) or kept.
    sent: usize,
    /// Where a stop string cut the text.
    cut: Option<usize>,
    tokens: Vec<TokenRecord>,
    prompt_tokens: usize,
}

impl Turn {
    fn new(kind: Kind, model: &str, n: u64, stop: Vec<String>, logprobs: Option<usize>) -> Self {
        Turn {
            kind,
            id: match kind {
                Kind::Completion => format!("cmpl-{n}"),
                Kind::Chat => format!("chatcmpl-{n}"),
            },
            model: model.into(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            stop,
            logprobs,
            text: String::new(),
            sent: 0,
            cut: None,
            tokens: Vec::new(),
            prompt_tokens: 0,
        }
    }

    /// Adds a token's text; returns the text that may be sent now (held back while it could
    /// still be the start of a stop string), and whether a stop string has now ended it.
    fn push(&mut self, t: &TokenRecord) -> (String, bool) {
        if self.cut.is_some() {
            return (String::new(), false);
        }
        self.tokens.push(t.clone());
        match t.eos {
            true => self.push_text(""),
            false => self.push_text(&t.text),
        }
    }

    /// Adds text (a token's, or what the tokenizer held back at the end); as [`Self::push`].
    fn push_text(&mut self, text: &str) -> (String, bool) {
        if self.cut.is_some() {
            return (String::new(), false);
        }
        self.text.push_str(text);
        // A stop string can only end in the new text: search from where the longest one
        // could begin (on a character boundary).
        let longest = self.stop.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.sent.saturating_sub(longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        if let Some(at) = self
            .stop
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i))
            .min()
        {
            self.cut = Some(at);
            let piece = self.text[self.sent..at.max(self.sent)].to_string();
            self.sent = at.max(self.sent);
            return (piece, true);
        }
        let hold = self.stop.iter().map(|s| s.len() - 1).max().unwrap_or(0);
        let mut upto = self.text.len().saturating_sub(hold).max(self.sent);
        while !self.text.is_char_boundary(upto) {
            upto -= 1;
        }
        let piece = self.text[self.sent..upto].to_string();
        self.sent = upto;
        (piece, false)
    }

    /// The text held back at the end (no stop string came).
    fn rest(&mut self) -> String {
        let end = self.cut.unwrap_or(self.text.len());
        let piece = self.text[self.sent.min(end)..end].to_string();
        self.sent = end;
        piece
    }

    fn finish_reason(&self, reason: StopReason) -> &'static str {
        match (self.cut, reason) {
            (Some(_), _) | (None, StopReason::Eos) | (None, StopReason::Interrupted) => "stop",
            (None, StopReason::MaxTokens) | (None, StopReason::ContextFull) => "length",
        }
    }

    fn usage(&self, s: &SummaryRecord) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": s.tokens,
            "total_tokens": self.prompt_tokens + s.tokens,
            "energy_j": s.energy_j,
            "prefill_energy_j": s.prefill_energy_j,
            "mean_entropy_bits": s.mean_entropy_bits,
            "tokens_per_wh": s.tokens_per_wh,
            "landauer_gap": s.landauer_gap,
            "energy_estimated": s.estimated,
            "meter": s.meter,
        })
    }

    /// A token's figures, beside OpenAI's fields.
    fn landauer(t: &TokenRecord) -> Value {
        json!({
            "token_id": t.token_id,
            "entropy_bits": t.entropy_bits,
            "surprisal_bits": t.surprisal_bits,
            "energy_j": t.energy_j,
        })
    }

    /// The logprobs of the kept tokens, in the endpoint's format.
    fn logprobs(&self) -> Value {
        let Some(n) = self.logprobs else {
            return Value::Null;
        };
        let kept = self.tokens.iter().filter(|t| !t.eos);
        let top = |t: &TokenRecord| -> Vec<(String, f64)> {
            t.top
                .iter()
                .take(n)
                .map(|a| (a.text.clone(), a.prob.ln()))
                .collect()
        };
        match self.kind {
            Kind::Completion => {
                let (mut tokens, mut lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
                let mut at = 0;
                for t in kept {
                    tokens.push(json!(t.text));
                    lps.push(json!(t.prob.ln()));
                    tops.push(Value::Object(
                        top(t).into_iter().map(|(k, v)| (k, json!(v))).collect(),
                    ));
                    offsets.push(json!(at));
                    at += t.text.len();
                }
                json!({"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
            }
            Kind::Chat => json!({"content": kept.map(|t| json!({
                "token": t.text,
                "logprob": t.prob.ln(),
                "bytes": t.text.as_bytes(),
                "top_logprobs": top(t).into_iter().map(|(k, v)| json!({"token": k, "logprob": v})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()}),
        }
    }

    /// A streamed chunk: a piece of text (and the token it came with), or the end.
    fn chunk(
        &self,
        piece: &str,
        token: Option<&TokenRecord>,
        finish: Option<&str>,
        usage: Option<Value>,
    ) -> Value {
        let choice = match self.kind {
            Kind::Completion => {
                json!({"index": 0, "text": piece, "logprobs": null, "finish_reason": finish})
            }
            Kind::Chat => {
                let delta = match (finish, self.tokens.len() <= 1 && token.is_some()) {
                    (Some(_), _) => json!({}),
                    (None, true) => json!({"role": "assistant", "content": piece}),
                    (None, false) => json!({"content": piece}),
                };
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
        };
        let mut v = json!({
            "id": self.id,
            "object": match self.kind { Kind::Completion => "text_completion", Kind::Chat => "chat.completion.chunk" },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        if let Some(t) = token {
            v["landauer"] = Self::landauer(t);
        }
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }

    /// The whole response.
    fn whole(&self, s: &SummaryRecord, reason: StopReason) -> Value {
        let end = self.cut.unwrap_or(self.text.len());
        let text = &self.text[..end];
        let choice = match self.kind {
            Kind::Completion => {
                json!({"index": 0, "text": text, "logprobs": self.logprobs(), "finish_reason": self.finish_reason(reason)})
            }
            Kind::Chat => {
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": self.logprobs(), "finish_reason": self.finish_reason(reason)})
            }
        };
        json!({
            "id": self.id,
            "object": match self.kind { Kind::Completion => "text_completion", Kind::Chat => "chat.completion" },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage(s),
            "landauer": {"tokens": self.tokens.iter().map(Self::landauer).collect::<Vec<_>>()},
        })
    }
}

/// Waits for the whole response.
async fn whole(
    mut turn: Turn,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    cancel: Arc<AtomicBool>,
) -> Result<Value, ApiError> {
    while let Some(e) = rx.recv().await {
        match e {
            Event::Started { prompt_tokens } => turn.prompt_tokens = prompt_tokens,
            Event::Token(t) => {
                if turn.push(&t).1 {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
            Event::Done {
                summary,
                reason,
                tail,
            } => {
                turn.push_text(&tail);
                return Ok(turn.whole(&summary, reason));
            }
            Event::Error(e) => return Err(e),
        }
    }
    Err(ApiError::internal("the engine dropped the request"))
}

/// Streams the response as server-sent events, ending with `data: [DONE]`. A client that
/// goes away stops the generation after the current token.
fn stream(
    mut turn: Turn,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    cancel: Arc<AtomicBool>,
) -> impl IntoResponse {
    let (tx, out) = tokio::sync::mpsc::channel::<Result<SseEvent, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        let send = |v: Value| SseEvent::default().data(v.to_string());
        while let Some(e) = rx.recv().await {
            let event = match e {
                Event::Started { prompt_tokens } => {
                    turn.prompt_tokens = prompt_tokens;
                    continue;
                }
                Event::Token(t) => {
                    if turn.cut.is_some() {
                        continue;
                    }
                    let (piece, stopped) = turn.push(&t);
                    if stopped {
                        cancel.store(true, Ordering::Relaxed);
                    }
                    send(turn.chunk(&piece, Some(&t), None, None))
                }
                Event::Done {
                    summary,
                    reason,
                    tail,
                } => {
                    let (piece, _) = turn.push_text(&tail);
                    let rest = piece + &turn.rest();
                    if !rest.is_empty() {
                        let _ = tx.send(Ok(send(turn.chunk(&rest, None, None, None)))).await;
                    }
                    let last = turn.chunk(
                        "",
                        None,
                        Some(turn.finish_reason(reason)),
                        Some(turn.usage(&summary)),
                    );
                    let _ = tx.send(Ok(send(last))).await;
                    let _ = tx.send(Ok(SseEvent::default().data("[DONE]"))).await;
                    return;
                }
                Event::Error(e) => {
                    let _ = tx.send(Ok(send(e.body()))).await;
                    return;
                }
            };
            if tx.send(Ok(event)).await.is_err() {
                // The client is gone.
                cancel.store(true, Ordering::Relaxed);
                return;
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(out)).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> TokenRecord {
        serde_json::from_value(json!({
            "seq": 0, "index": 0, "position": 0, "token_id": 1, "text": text, "eos": false,
            "phase": "decode", "entropy_bits": 1.0, "sampling_entropy_bits": 0.0,
            "surprisal_bits": 1.0, "prob": 0.5, "top": [], "t_start_s": 0.0, "t_end_s": 0.0,
            "step_tokens": 1, "energy_j": null, "energy_estimated": false,
            "energy_resolved": false, "meter_gap": false, "landauer_j": 0.0,
            "landauer_gap": null
        }))
        .unwrap()
    }

    /// Stop strings that straddle tokens and multi-byte characters: the text before the
    /// first one, sent in pieces that never include a stop string's start.
    #[test]
    fn stop_strings_cut_across_tokens_and_characters() {
        let mut t = Turn::new(
            Kind::Completion,
            "m",
            0,
            vec!["é!".into(), "END".into()],
            None,
        );
        let mut sent = String::new();
        let mut stopped = false;
        for piece in ["Caf", "é", " ou", " thé", "é", "!", " and more"] {
            let (p, s) = t.push(&token(piece));
            sent.push_str(&p);
            stopped |= s;
        }
        sent.push_str(&t.rest());
        assert!(stopped);
        assert_eq!(sent, "Café ou thé");
        // No stop string: everything, held-back text included.
        let mut t = Turn::new(Kind::Chat, "m", 1, vec!["zzz".into()], None);
        let mut sent = String::new();
        for piece in ["üüü", "ber", " z", "z"] {
            sent.push_str(&t.push(&token(piece)).0);
        }
        sent.push_str(&t.rest());
        assert_eq!(sent, "üüüber zz");
    }
}
