//! `landauer serve` driven by the openai Python package (PyPI, in a venv this test makes):
//! scripts/openai-clients.py checks whole and streamed completions and chats, parallel
//! clients against the same requests alone, and every response's joules against /metrics;
//! then SIGTERM stops the server cleanly.

mod common;

use common::*;
use landauer_engine::tiny::TinyConfig;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The openai package's version the test installs.
const OPENAI: &str = "openai==3.60.0";

/// Kills the server if the test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// A venv with the openai package, made once and kept in the cache; None when it cannot be
/// made here (no PyPI).
fn openai_venv() -> Option<PathBuf> {
    let dir = std::env::var_os("LANDAUER_OPENAI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/landauer/openai-venv")
        });
    let python = dir.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import openai"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return Some(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(dir.join("bin/pip"))
            .args(["install", "-q", OPENAI])
            .status()
            .is_ok_and(|s| s.success());
    (made && ready(&python)).then_some(python)
}

/// Starts `landauer serve` on a free port with `args`; returns it, its stderr and its URL.
fn spawn_server(args: &[&str]) -> (Running, BufReader<std::process::ChildStderr>, String) {
    let mut child = landauer()
        .args(["serve", "--port", "0", "--meter", "estimate"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let server = Running(child);
    let mut line = String::new();
    let base = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "the server exited");
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break url.to_string();
        }
    };
    (server, err, base)
}

/// SIGTERM to the server.
fn terminate(server: &Running) {
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
}

#[test]
fn the_openai_client_gets_billed_responses() {
    let Some(python) = openai_venv() else {
        assert!(
            std::env::var_os("LANDAUER_REQUIRE_OPENAI").is_none(),
            "the openai package could not be installed"
        );
        eprintln!("SKIPPED: no venv with {OPENAI} (PyPI unreachable?)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let traces = dir.path().join("traces");
    let (server, mut err, base) = spawn_server(&[
        "--model-id",
        "tiny",
        "--model",
        model.to_str().unwrap(),
        "--trace-dir",
        traces.to_str().unwrap(),
    ]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/openai-clients.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([&base, "tiny"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["responses"], 16);
    // The parallel requests shared decode steps, and were billed what the meter measured.
    assert!(
        summary["parallel_mean_batch"].as_f64().unwrap() > 1.0,
        "{summary}"
    );
    assert!(summary["busy_j"].as_f64().unwrap() > 0.0, "{summary}");
    // One trace per response.
    assert_eq!(std::fs::read_dir(&traces).unwrap().count(), 16);

    // SIGTERM: the server stops and says so.
    let mut server = server;
    terminate(&server);
    let status = server.0.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("landauer: stopped"), "{rest}");
}

#[test]
fn sigterm_finishes_the_responses_under_way() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TinyConfig {
        context: 4096,
        ..Default::default()
    };
    let model = tiny_model(dir.path(), &cfg);
    let traces = dir.path().join("traces");
    let (mut server, _err, base) = spawn_server(&[
        "--model",
        model.to_str().unwrap(),
        "--trace-dir",
        traces.to_str().unwrap(),
    ]);
    // Without --model-id, clients ask for the file's name without its extension.
    let models: serde_json::Value = ureq::get(&format!("{base}/v1/models"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(models["data"][0]["id"], "tiny-llama-4096");
    // A long streamed response; SIGTERM once it has begun.
    let body = serde_json::json!({"prompt": "Once upon a time", "max_tokens": 4000,
                                  "temperature": 0, "stream": true});
    let resp = ureq::post(&format!("{base}/v1/completions"))
        .send_json(body)
        .unwrap();
    let mut lines = BufReader::new(resp.into_reader()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("data: "), "{first}");
    terminate(&server);
    // The response runs to its end.
    let rest: Vec<String> = lines
        .map(|l| l.unwrap())
        .filter(|l| l.starts_with("data: "))
        .collect();
    assert_eq!(rest.last().map(String::as_str), Some("data: [DONE]"));
    let finish: serde_json::Value =
        serde_json::from_str(rest[rest.len() - 2].strip_prefix("data: ").unwrap()).unwrap();
    let tokens = finish["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(tokens > 100, "{finish}");
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status}");
    // Its trace is whole, and SIGTERM did not cut the generation (it ran to its token limit
    // or the model's end of sequence).
    let trace = read_jsonl(&traces.join("request-000000.jsonl"));
    let summary = trace.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_ne!(summary["stop_reason"], "interrupted", "{summary}");
    let n = trace.iter().filter(|r| r["type"] == "token").count() as u64;
    assert_eq!(n, tokens);
}

#[test]
fn a_batch_that_cannot_be_served_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TinyConfig {
        context: 4096,
        ..Default::default()
    };
    let model = tiny_model(dir.path(), &cfg);
    for (rows, says) in [
        ("0", "--max-batch must be at least 1"),
        (
            "10000000",
            "use fewer rows or tokens (--max-batch, --max-context)",
        ),
    ] {
        let out = landauer()
            .args([
                "serve",
                "--port",
                "0",
                "--meter",
                "none",
                "--max-batch",
                rows,
            ])
            .args(["--model", model.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--max-batch {rows} was served");
        assert!(err.contains(says), "--max-batch {rows}: {err}");
        assert!(
            err.lines().filter(|l| !l.trim().is_empty()).count() <= 2,
            "{err}"
        );
    }
}
