//! The server on a tiny random-weight model, over loopback HTTP: OpenAI's shapes, streamed
//! and whole, the same text as the engine alone, stop strings, per-token bits and joules that
//! add up to the usage and to /metrics, and a corpus of bad requests that each get a 4xx
//! (OpenAI-shaped) while the server goes on serving.

use landauer_engine::{Engine, GenerateOptions, SamplingParams, SinkError, TokenEvent, TokenSink};
use landauer_meter::MeterChoice;
use landauer_serve::{ServeConfig, Server};
use landauer_studies::{Loaded, MeterOptions, ModelOptions};
use serde_json::{json, Value};
use std::path::Path;

/// Starts a server on a free loopback port; returns its base URL.
fn start(model: &Path, queue: usize) -> String {
    start_with(model, queue, 4, None)
}

/// Starts a server on `model` with `queue` places, `max_batch` rows and per-request traces
/// in `traces`.
fn start_with(model: &Path, queue: usize, max_batch: usize, traces: Option<&Path>) -> String {
    let loaded = Loaded::load(
        &ModelOptions {
            model: Some(model.display().to_string()),
            batched: true,
            ..Default::default()
        },
        &mut (),
    )
    .unwrap();
    let server = Server::start(
        loaded,
        ServeConfig {
            model_id: Some("tiny".into()),
            queue,
            max_batch,
            max_body_bytes: 64 * 1024,
            trace_dir: traces.map(Path::to_path_buf),
            meter: MeterOptions {
                choice: MeterChoice::Estimate,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            server.serve(l, std::future::pending()).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

/// POSTs JSON; returns the status and the body as JSON (or as a string).
fn post(url: &str, body: &str) -> (u16, Value) {
    let r = ureq::post(url)
        .set("content-type", "application/json")
        .send_string(body);
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{url}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The `data:` payloads of a server-sent event stream.
fn sse(url: &str, body: &Value) -> Vec<String> {
    let text = ureq::post(url)
        .send_json(body.clone())
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("data: ").map(String::from))
        .collect()
}

/// The engine alone, greedy: the text of `max_tokens` tokens (or up to end-of-sequence).
fn alone(model: &Path, prompt: &str, max_tokens: usize) -> String {
    let mut engine = Engine::load(model, None, &landauer_engine::Device::Cpu).unwrap();
    let tokens = engine.encode(prompt).unwrap();
    struct Text(String);
    impl TokenSink for Text {
        fn token(&mut self, e: &TokenEvent<'_>) -> Result<(), SinkError> {
            if !e.is_eos {
                self.0.push_str(e.text);
            }
            Ok(())
        }
        fn end(&mut self, e: &landauer_engine::RunEnd) -> Result<(), SinkError> {
            self.0.push_str(&e.tail_text);
            Ok(())
        }
    }
    let mut t = Text(String::new());
    let opts = GenerateOptions {
        max_tokens,
        sampling: SamplingParams::greedy(),
        ignore_eos: false,
        stop: None,
        stats_rows: usize::MAX,
    };
    engine.generate(&tokens, &opts, &mut t).unwrap();
    t.0
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

#[test]
fn serves_openai_shapes_billed_in_joules_and_bits() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    landauer_engine::tiny::write_tiny_llama(&model, &Default::default()).unwrap();
    let base = start(&model, 4);
    let mut billed = 0.0;

    assert_eq!(
        ureq::get(&format!("{base}/health"))
            .call()
            .unwrap()
            .into_json::<Value>()
            .unwrap(),
        json!({"status": "ok"})
    );
    let models: Value = ureq::get(&format!("{base}/v1/models"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(models["data"][0]["id"], "tiny");

    // A whole completion: the engine's own greedy text, its tokens' joules adding up to usage.
    let (status, r) = post(
        &format!("{base}/v1/completions"),
        &json!({"model": "tiny", "prompt": "The cat sat on", "max_tokens": 12, "temperature": 0, "logprobs": 2}).to_string(),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "text_completion");
    let text = r["choices"][0]["text"].as_str().unwrap();
    assert_eq!(text, alone(&model, "The cat sat on", 12));
    let usage = &r["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() >= 1);
    let energy = usage["energy_j"].as_f64().unwrap();
    let tokens = r["landauer"]["tokens"].as_array().unwrap();
    let sum: f64 = tokens.iter().map(|t| t["energy_j"].as_f64().unwrap()).sum();
    assert!(
        energy > 0.0 && (sum - energy).abs() <= 1e-9 * energy,
        "{sum} vs {energy}"
    );
    assert!(usage["mean_entropy_bits"].as_f64().unwrap() > 0.0);
    // The prefill is part of the total, and tokens/Wh is the tokens over the joules.
    let prefill = usage["prefill_energy_j"].as_f64().unwrap();
    assert!(prefill > 0.0 && prefill <= energy, "{usage}");
    let n = usage["completion_tokens"].as_f64().unwrap();
    let per_wh = usage["tokens_per_wh"].as_f64().unwrap();
    assert!(
        (per_wh - n * 3600.0 / energy).abs() <= 1e-6 * per_wh,
        "{usage}"
    );
    assert!(tokens
        .iter()
        .all(|t| t["surprisal_bits"].as_f64().unwrap() >= 0.0));
    let lp = &r["choices"][0]["logprobs"];
    assert_eq!(
        lp["tokens"].as_array().unwrap().len(),
        lp["token_logprobs"].as_array().unwrap().len()
    );
    billed += energy;

    // A streamed chat: one chunk per token with its bits and joules, then the finish with
    // usage, then [DONE]; the same text as the whole answer.
    let chat = json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
                      "max_tokens": 10, "temperature": 0});
    let (status, whole) = post(&format!("{base}/v1/chat/completions"), &chat.to_string());
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    billed += whole["usage"]["energy_j"].as_f64().unwrap();
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let events = sse(&format!("{base}/v1/chat/completions"), &streamed);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        content,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let last = chunks.last().unwrap();
    assert!(last["choices"][0]["finish_reason"].is_string());
    let e = last["usage"]["energy_j"].as_f64().unwrap();
    let per_token: f64 = chunks
        .iter()
        .filter_map(|c| c["landauer"]["energy_j"].as_f64())
        .sum();
    assert!((per_token - e).abs() <= 1e-9 * e, "{per_token} vs {e}");
    assert!(chunks
        .iter()
        .filter(|c| c.get("landauer").is_some())
        .all(|c| c["landauer"]["entropy_bits"].as_f64().unwrap() >= 0.0));
    billed += e;

    // A stop string cuts the text before it.
    let cut_at = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    let stop: String = text[cut_at..].chars().take(3).collect();
    if !stop.trim().is_empty() {
        let (status, r) = post(
            &format!("{base}/v1/completions"),
            &json!({"prompt": "The cat sat on", "max_tokens": 12, "temperature": 0, "stop": stop})
                .to_string(),
        );
        assert_eq!(status, 200);
        let t = r["choices"][0]["text"].as_str().unwrap();
        assert_eq!(t, &text[..text.find(&stop).unwrap()]);
        assert_eq!(r["choices"][0]["finish_reason"], "stop");
        billed += r["usage"]["energy_j"].as_f64().unwrap();
    }

    // Bad requests: each a 4xx in OpenAI's shape, and the server goes on.
    let long = "word ".repeat(400);
    let big = format!("{{\"prompt\": \"{}\"}}", "x".repeat(100_000));
    let corpus: Vec<(&str, String, u16)> = vec![
        ("/v1/completions", "{not json".into(), 400),
        ("/v1/completions", "{}".into(), 400),
        ("/v1/completions", json!({"prompt": 5}).to_string(), 400),
        (
            "/v1/completions",
            json!({"prompt": "hi", "model": "gpt-4"}).to_string(),
            404,
        ),
        (
            "/v1/completions",
            json!({"prompt": "hi", "temperature": -1}).to_string(),
            400,
        ),
        (
            "/v1/completions",
            json!({"prompt": "hi", "max_tokens": 100000}).to_string(),
            400,
        ),
        (
            "/v1/completions",
            json!({"prompt": "hi", "max_tokens": 0}).to_string(),
            400,
        ),
        ("/v1/completions", json!({"prompt": long}).to_string(), 400),
        (
            "/v1/completions",
            json!({"prompt": ["a", "b"]}).to_string(),
            400,
        ),
        (
            "/v1/completions",
            json!({"prompt": "hi", "logprobs": 50}).to_string(),
            400,
        ),
        ("/v1/completions", big, 413),
        (
            "/v1/chat/completions",
            json!({"messages": []}).to_string(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "wizard", "content": "x"}]}).to_string(),
            400,
        ),
        ("/v1/nothing", "{}".into(), 404),
    ];
    for (path, body, want) in &corpus {
        let (status, r) = post(&format!("{base}{path}"), body);
        assert_eq!(status, *want, "{path} {}: {r}", &body[..body.len().min(60)]);
        assert!(r["error"]["message"].is_string(), "{r}");
        assert!(r["error"]["type"].is_string(), "{r}");
    }
    let (status, r) = post(
        &format!("{base}/v1/completions"),
        &json!({"prompt": "Still here?", "max_tokens": 3, "temperature": 0}).to_string(),
    );
    assert_eq!(status, 200, "{r}");
    billed += r["usage"]["energy_j"].as_f64().unwrap();

    // /metrics: the energy billed to responses, and the refusals, counted.
    let m = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let total = metric(&m, "landauer_energy_joules_total");
    assert!(
        (total - billed).abs() <= 1e-3 * billed,
        "{total} vs {billed}"
    );
    assert!(
        m.contains(r#"landauer_requests_total{endpoint="/v1/completions",status="400"}"#),
        "{m}"
    );
    assert!(metric(&m, "landauer_entropy_bits_total") > 0.0);
    assert_eq!(metric(&m, "landauer_queue_depth"), 0.0);
    assert!(metric(&m, "landauer_power_watts") > 0.0);
    // Requests one after another: every decode step had one row.
    assert!(metric(&m, "landauer_batch_size_count") > 0.0);
    assert_eq!(
        metric(&m, "landauer_batch_size_sum"),
        metric(&m, "landauer_batch_size_count")
    );
    // What the responses were billed is what the meter measured while the engine worked.
    let busy = metric(&m, "landauer_busy_energy_joules_total");
    assert!((busy - total).abs() <= 1e-3 * busy, "{busy} vs {total}");
    assert_eq!(metric(&m, "landauer_running_requests"), 0.0);
}

/// The summary record of a finished request's trace (waiting for it to be written).
fn summary_of(trace: &Path) -> Value {
    for _ in 0..600 {
        if let Ok(text) = std::fs::read_to_string(trace) {
            if let Some(s) = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|r| r["type"] == "summary")
            {
                return s;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no summary in {}", trace.display())
}

#[test]
fn parallel_requests_share_the_batch_and_their_bills_add_up_to_the_meter() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    let cfg = landauer_engine::tiny::TinyConfig {
        context: 1024,
        ..Default::default()
    };
    landauer_engine::tiny::write_tiny_llama(&model, &cfg).unwrap();
    let base = start_with(&model, 8, 4, None);
    let url = format!("{base}/v1/completions");
    // Six requests at once into four rows: two wait for rows to free; some streamed.
    let prompts: Vec<String> = (0..6)
        .map(|i| format!("Story {i}: once upon a time"))
        .collect();
    let n = 120;
    let go = std::sync::Arc::new(std::sync::Barrier::new(prompts.len()));
    let handles: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (url, go) = (url.clone(), go.clone());
            let body =
                json!({"prompt": p, "max_tokens": n, "temperature": 0, "stream": i % 2 == 1});
            std::thread::spawn(move || {
                go.wait();
                if i % 2 == 1 {
                    let events = sse(&url, &body);
                    let chunks: Vec<Value> = events[..events.len() - 1]
                        .iter()
                        .map(|e| serde_json::from_str(e).unwrap())
                        .collect();
                    let text: String = chunks
                        .iter()
                        .filter_map(|c| c["choices"][0]["text"].as_str())
                        .collect();
                    let usage = chunks.last().unwrap()["usage"].clone();
                    (text, usage)
                } else {
                    let (status, r) = post(&url, &body.to_string());
                    assert_eq!(status, 200, "{r}");
                    (
                        r["choices"][0]["text"].as_str().unwrap().to_string(),
                        r["usage"].clone(),
                    )
                }
            })
        })
        .collect();
    let results: Vec<(String, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut billed = 0.0;
    for (p, (text, usage)) in prompts.iter().zip(&results) {
        assert_eq!(text, &alone(&model, p, n), "{p}: differs from alone");
        billed += usage["energy_j"].as_f64().unwrap();
    }
    let m = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    // Rows decoded together: some step had more than one.
    let steps = metric(&m, "landauer_batch_size_count");
    let single = m
        .lines()
        .find(|l| l.starts_with(r#"landauer_batch_size_bucket{le="1"}"#))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap();
    assert!(single < steps, "every step had one row:\n{m}");
    assert!(metric(&m, "landauer_batch_size_sum") / steps > 1.0);
    // Per-response energies add up to the meter's energy over the busy time (a step's energy
    // shared by its tokens, each counted once).
    let busy = metric(&m, "landauer_busy_energy_joules_total");
    assert!(busy > 0.0);
    assert!(
        (busy - billed).abs() <= 1e-3 * busy,
        "billed {billed} J, metered {busy} J"
    );
    assert!(
        (metric(&m, "landauer_energy_joules_total") - billed).abs() <= 1e-9 * billed,
        "{m}"
    );
}

#[test]
fn a_full_queue_answers_429_and_a_client_that_leaves_frees_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    let cfg = landauer_engine::tiny::TinyConfig {
        context: 4096,
        ..Default::default()
    };
    landauer_engine::tiny::write_tiny_llama(&model, &cfg).unwrap();
    let traces = dir.path().join("traces");
    // One row and one place in the queue.
    let base = start_with(&model, 1, 1, Some(&traces));
    // Long enough (4,000 tokens) that the queued request is still waiting when the third comes.
    let long =
        json!({"prompt": "Once upon a time", "max_tokens": 4000, "temperature": 0}).to_string();

    // One request runs, one waits in the single place, the next is turned away.
    let url = format!("{base}/v1/completions");
    let running: Vec<_> = (0..2)
        .map(|i| {
            let (url, body) = (url.clone(), long.clone());
            let t = std::thread::spawn(move || post(&url, &body).0);
            if i == 0 {
                // The first is the engine's before the second queues.
                let t0 = std::time::Instant::now();
                while !traces.join("request-000000.jsonl").exists() {
                    assert!(
                        t0.elapsed().as_secs() < 20,
                        "the first request never started"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            t
        })
        .collect();
    let depth = || {
        let m = ureq::get(&format!("{base}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        metric(&m, "landauer_queue_depth")
    };
    let t0 = std::time::Instant::now();
    while depth() < 1.0 {
        assert!(
            t0.elapsed().as_secs() < 20,
            "the second request never queued"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let busy = ureq::post(&url)
        .set("content-type", "application/json")
        .send_string(&long);
    match busy {
        Err(ureq::Error::Status(429, r)) => {
            assert_eq!(r.header("retry-after"), Some("1"));
            let v: Value = r.into_json().unwrap();
            assert_eq!(v["error"]["code"], "queue_full");
        }
        other => panic!("expected 429, got {other:?}"),
    }
    for t in running {
        assert_eq!(t.join().unwrap(), 200);
    }

    // A streaming client that leaves after two chunks: its generation stops early.
    let mut stream = json!({"prompt": "Once upon a time", "max_tokens": 3000, "temperature": 0});
    stream["stream"] = json!(true);
    let resp = ureq::post(&url).send_json(stream).unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(resp.into_reader()));
    let mut data = 0;
    while data < 2 {
        if lines.next().unwrap().unwrap().starts_with("data: ") {
            data += 1;
        }
    }
    drop(lines);
    let s = summary_of(&traces.join("request-000002.jsonl"));
    assert_eq!(s["stop_reason"], "interrupted", "{s}");
    assert!(s["tokens"].as_u64().unwrap() < 3000, "{s}");
    // And the engine is free for the next one.
    let (status, _) = post(&url, &json!({"prompt": "Hi", "max_tokens": 2}).to_string());
    assert_eq!(status, 200);
}
