//! End-to-end tests of the `landauer` binary on tiny generated models (offline, no weights).

mod common;

use common::*;
use landauer_engine::tiny::TinyConfig;
use serde_json::Value;
use std::path::Path;

/// A tiny model with room for thousands of tokens.
fn long_context() -> TinyConfig {
    TinyConfig {
        context: 4096,
        ..Default::default()
    }
}

const KT_LN2_300: f64 = 1.380649e-23 * 300.0 * std::f64::consts::LN_2;

/// A JSON array of numbers.
fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn token_ids(trace: &[Value]) -> Vec<u64> {
    trace
        .iter()
        .filter(|r| r["type"] == "token")
        .map(|r| r["token_id"].as_u64().unwrap())
        .collect()
}

fn generate(model: &Path, out: &Path, extra: &[&str]) -> (std::process::Output, Vec<Value>) {
    let trace = out.join(format!(
        "t{}.jsonl",
        extra.join("_").replace(['/', ' '], "")
    ));
    let o = run(landauer()
        .args(["generate", "The cat sat on", "--model"])
        .arg(model)
        .arg("--trace")
        .arg(&trace)
        .args(extra));
    assert!(
        o.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let t = read_jsonl(&trace);
    (o, t)
}

#[test]
fn trace_has_every_field_and_consistent_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let csv = dir.path().join("t.csv");
    let (out, trace) = generate(
        &model,
        dir.path(),
        &[
            "--max-tokens",
            "12",
            "--seed",
            "7",
            "--temperature",
            "1.0",
            "--top-k",
            "40",
            "--top-p",
            "0.95",
            "--meter",
            "estimate",
            "--ignore-eos",
            "--csv",
            csv.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ESTIMATED"),
        "summary must label the estimate: {stderr}"
    );

    // run record first
    let run = &trace[0];
    assert_eq!(run["type"], "run");
    for k in [
        "model",
        "model_sha256",
        "architecture",
        "quantization",
        "parameters",
        "device",
        "meter",
        "kelvin",
        "sampling",
        "prompt",
        "landauer_version",
        "estimated",
    ] {
        assert!(!run[k].is_null(), "run record lacks {k}: {run}");
    }
    assert_eq!(run["architecture"], "llama");
    assert_eq!(run["quantization"], "Q8_0");
    assert_eq!(run["meter"], "cpu-time-estimate");
    assert_eq!(run["kv_cache"], "f16", "the CPU default");
    assert_eq!(run["estimated"], true);
    assert_eq!(run["sampling"]["seed"], 7);
    assert_eq!(run["sampling"]["top_k"], 40);
    assert_eq!(run["model_sha256"].as_str().unwrap().len(), 64);
    let vocab = 3 + 256 + 200;

    // tokens
    let toks: Vec<&Value> = trace.iter().filter(|r| r["type"] == "token").collect();
    assert_eq!(toks.len(), 12);
    let mut prev_end = 0.0;
    let mut energy_sum = 0.0;
    let mut entropy_sum = 0.0;
    for (i, t) in toks.iter().enumerate() {
        assert_eq!(t["index"].as_u64().unwrap() as usize, i);
        assert_eq!(t["phase"], if i == 0 { "prefill" } else { "decode" });
        let h = f(t, "entropy_bits");
        assert!(h > 0.0 && h <= (vocab as f64).log2() + 1e-9, "entropy {h}");
        let hs = f(t, "sampling_entropy_bits");
        assert!(
            hs >= 0.0 && hs <= 40f64.log2() + 1e-9,
            "sampling entropy {hs} over top-40"
        );
        let p = f(t, "prob");
        assert!(p > 0.0 && p <= 1.0);
        assert!(close(f(t, "surprisal_bits"), -p.log2(), 1e-9));
        let top = t["top"].as_array().unwrap();
        assert_eq!(top.len(), 5);
        let probs: Vec<f64> = top.iter().map(|a| f(a, "prob")).collect();
        assert!(
            probs.windows(2).all(|w| w[0] >= w[1]),
            "top not sorted: {probs:?}"
        );
        assert!(top
            .iter()
            .all(|a| a["text"].is_string() && a["token_id"].is_u64()));
        // the chosen token is at most as likely as the most likely one
        assert!(p <= probs[0] + 1e-12);
        // if the chosen token is in the top list, its probability agrees
        for a in top {
            if a["token_id"] == t["token_id"] {
                assert!(close(f(a, "prob"), p, 1e-9));
            }
        }
        let (ts, te) = (f(t, "t_start_s"), f(t, "t_end_s"));
        assert!(
            close(ts, prev_end, 1e-12) && te >= ts,
            "windows must tile: {ts} {te} {prev_end}"
        );
        prev_end = te;
        let e = f(t, "energy_j");
        assert!(e >= 0.0);
        assert_eq!(t["energy_estimated"], true);
        energy_sum += e;
        entropy_sum += h;
        assert!(close(f(t, "landauer_j"), h * KT_LN2_300, 1e-9));
        match t["landauer_gap"].as_f64() {
            Some(g) => assert!(close(g, e / (h * KT_LN2_300), 1e-9)),
            None => assert!(e == 0.0 || h == 0.0),
        }
        assert!(t["text"].is_string());
        assert!(t["energy_resolved"].is_boolean());
        assert_eq!(t["meter_gap"], false);
    }
    let unresolved = toks
        .iter()
        .filter(|t| t["energy_resolved"] == false)
        .count();

    // summary last
    let s = trace.last().unwrap();
    assert_eq!(s["type"], "summary");
    assert_eq!(s["tokens"], 12);
    assert_eq!(s["stop_reason"], "max_tokens");
    assert_eq!(s["estimated"], true);
    assert!(
        close(f(s, "energy_j"), energy_sum, 1e-9),
        "per-token energies must add up"
    );
    assert!(close(f(s, "joules_per_token"), energy_sum / 12.0, 1e-9));
    assert!(close(
        f(s, "tokens_per_wh"),
        3600.0 / (energy_sum / 12.0),
        1e-9
    ));
    assert!(close(f(s, "mean_entropy_bits"), entropy_sum / 12.0, 1e-9));
    let mean = |k: &str| toks.iter().map(|t| f(t, k)).sum::<f64>() / 12.0;
    assert!(close(
        f(s, "mean_surprisal_bits"),
        mean("surprisal_bits"),
        1e-9
    ));
    assert!(close(
        f(s, "mean_sampling_entropy_bits"),
        mean("sampling_entropy_bits"),
        1e-9
    ));
    assert!(close(f(s, "total_entropy_bits"), entropy_sum, 1e-9));
    assert!(close(
        f(s, "bits_per_joule"),
        entropy_sum / energy_sum,
        1e-9
    ));
    assert!(close(
        f(s, "landauer_gap"),
        energy_sum / (entropy_sum * KT_LN2_300),
        1e-9
    ));
    assert!(f(s, "decode_tokens_per_s") > 0.0);
    assert!(close(
        f(s, "decode_tokens_per_s"),
        11.0 / (prev_end - f(toks[0], "t_end_s")),
        1e-6
    ));
    assert!(
        f(s, "energy_j") > 0.0,
        "a run of 12 tokens burns measurable CPU time"
    );
    assert!(close(f(s, "prefill_s"), f(toks[0], "t_end_s"), 1e-12));
    assert!(close(
        f(s, "prefill_tokens_per_s"),
        f(s, "prompt_tokens") / f(s, "prefill_s"),
        1e-9
    ));
    assert!(close(
        f(s, "mean_power_w"),
        energy_sum / f(s, "wall_s"),
        1e-9
    ));
    assert!(close(
        f(s, "prefill_energy_j") + f(s, "decode_energy_j"),
        energy_sum,
        1e-9
    ));
    assert!(close(
        f(s, "prefill_energy_j"),
        f(toks[0], "energy_j"),
        1e-12
    ));
    assert_eq!(
        s["unresolved_tokens"].as_u64().unwrap() as usize,
        unresolved
    );
    assert_eq!(s["meter_faults"], 0);
    // The sampler polls every 10 ms and the estimate changes at every poll.
    let res = f(run, "meter_resolution_s");
    assert!(res > 0.005 && res < 0.1, "resolution {res}");
    assert_eq!(f(run, "meter_interval_s"), 0.01);
    let frac = f(s, "sampler_cpu_fraction");
    assert!((0.0..0.1).contains(&frac), "sampler CPU {frac}");
    // A 12-token run on a tiny model is far shorter than the 2 s steady-state window.
    assert!(s["steady_joules_per_token"].is_null());
    assert!(s["steady_note"]
        .as_str()
        .unwrap()
        .contains("generate more tokens"));

    // CSV: one row per token, same tokens
    let mut rdr = csv::Reader::from_path(&csv).unwrap();
    let headers = rdr.headers().unwrap().clone();
    for h in [
        "entropy_bits",
        "sampling_entropy_bits",
        "surprisal_bits",
        "prob",
        "energy_j",
        "energy_estimated",
        "landauer_gap",
        "top",
    ] {
        assert!(headers.iter().any(|x| x == h), "csv lacks {h}");
    }
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 12);
    let idx = headers.iter().position(|h| h == "token_id").unwrap();
    let csv_ids: Vec<u64> = rows.iter().map(|r| r[idx].parse().unwrap()).collect();
    assert_eq!(csv_ids, token_ids(&trace));
}

#[test]
fn the_kv_cache_type_is_chosen_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let args = ["--max-tokens", "4", "--greedy", "--meter", "none"];
    let (_, f16) = generate(&model, dir.path(), &args);
    let (_, f32) = generate(
        &model,
        dir.path(),
        &[&args[..], &["--kv-cache", "f32"]].concat(),
    );
    assert_eq!(
        (&f16[0]["kv_cache"], &f32[0]["kv_cache"]),
        (&"f16".into(), &"f32".into())
    );
    // The prompt's keys and values are rounded to f16 before the first token is scored.
    let first = |t: &[Value]| t[1]["entropy_bits"].as_f64().unwrap();
    assert_eq!(f16[1]["type"], "token");
    assert_ne!(first(&f16), first(&f32));
    // candle-transformers' forward pass keeps f32: asked for f16 it says so and records f32;
    // not asked, it says nothing.
    let trace = dir.path().join("candle.jsonl");
    let candle = |extra: &[&str]| {
        run(landauer()
            .env("LANDAUER_FORWARD", "candle")
            .args(["generate", "The cat sat on", "--model"])
            .arg(&model)
            .arg("--trace")
            .arg(&trace)
            .args(args)
            .args(extra))
    };
    let o = candle(&["--kv-cache", "f16"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "--kv-cache f16 applies to landauer's CPU forward pass; this model keeps an f32 cache"
        ),
        "{err}"
    );
    let first_line = std::fs::read_to_string(&trace).unwrap();
    let run_record: Value = serde_json::from_str(first_line.lines().next().unwrap()).unwrap();
    assert_eq!(run_record["kv_cache"], "f32");
    let o = candle(&[]);
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("--kv-cache"));
}

#[test]
fn sampling_on_the_device_writes_the_hosts_trace() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, "The cat sat on\nOnce upon a time\na b c\n").unwrap();
    let prompts = prompts.display().to_string();
    let trace = dir.path().join("t.jsonl");
    let traced = |args: &[&str], place: &str| -> Vec<Value> {
        let o = run(landauer()
            .arg("generate")
            .args(args)
            .arg("--model")
            .arg(&model)
            .arg("--trace")
            .arg(&trace)
            .args(["--meter", "none", "--top-n", "3", "--sample-on", place]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        read_jsonl(&trace)
    };
    // Top-p at a temperature (the sampler's growing window), and greedy in a batch.
    let runs: [&[&str]; 2] = [
        &[
            "The cat sat on",
            "-n",
            "8",
            "--temperature",
            "0.9",
            "--top-p",
            "0.9",
            "--seed",
            "5",
        ],
        &["--prompts", &prompts, "-n", "6", "--greedy"],
    ];
    for args in runs {
        let (host, dev) = (traced(args, "host"), traced(args, "device"));
        assert_eq!(
            (&host[0]["sampled_on"], &dev[0]["sampled_on"]),
            (&"host".into(), &"device".into())
        );
        let tokens = |t: &[Value]| -> Vec<Value> {
            t.iter().filter(|r| r["type"] == "token").cloned().collect()
        };
        let (h, d) = (tokens(&host), tokens(&dev));
        assert!(!h.is_empty());
        assert_eq!(h.len(), d.len());
        for (a, b) in h.iter().zip(&d) {
            for k in ["seq", "token_id", "text"] {
                assert_eq!(a[k], b[k], "{k}: {a} vs {b}");
            }
            // Sums in another order: figures agree to rounding.
            let near =
                |x: &Value, y: &Value| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-9;
            for k in [
                "entropy_bits",
                "sampling_entropy_bits",
                "surprisal_bits",
                "prob",
            ] {
                assert!(near(&a[k], &b[k]), "{k}: {} vs {}", a[k], b[k]);
            }
            let (ta, tb) = (a["top"].as_array().unwrap(), b["top"].as_array().unwrap());
            assert_eq!(ta.len(), 3);
            assert_eq!(ta.len(), tb.len());
            for (x, y) in ta.iter().zip(tb) {
                assert_eq!((&x["token_id"], &x["text"]), (&y["token_id"], &y["text"]));
                assert!(near(&x["prob"], &y["prob"]));
            }
        }
    }
    refuses(
        &["generate", "hi", "--sample-on", "gpu"],
        "--sample-on: \"gpu\" is not one of auto, host, device",
    );
}

#[test]
fn the_slow_path_is_said_once_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--max-tokens", "3", "--greedy", "--meter", "none"];
    let notes = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| l.contains("slower CPU kernels"))
            .count()
    };
    // Every matrix has a kernel: nothing said, nothing recorded.
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let (o, t) = generate(&model, dir.path(), &args);
    assert_eq!(
        (notes(&o), &t[0]["slow_tensors"]),
        (0, &serde_json::json!([]))
    );
    // F16 matrices 40 and 72 values wide (landauer's kernels take runs of 32; candle's run
    // these): each is named, with its type, in the run record; stderr says so once.
    let sub = tempfile::tempdir_in(dir.path()).unwrap();
    let cfg = TinyConfig {
        dtype: candle_core::quantized::GgmlDType::F16,
        hidden: 40,
        ffn: 72,
        ..Default::default()
    };
    let odd = tiny_model(sub.path(), &cfg);
    let (o, t) = generate(&odd, sub.path(), &args);
    let slow = t[0]["slow_tensors"].as_array().unwrap();
    // 2 layers x 7 matrices, and the tied embedding as the output layer.
    assert_eq!(slow.len(), 15, "{slow:?}");
    assert!(slow.iter().all(|s| s["type"] == "F16"));
    assert!(slow.iter().any(|s| s["name"] == "blk.1.ffn_down.weight"));
    assert!(slow.iter().any(|s| s["name"] == "token_embd.weight"));
    assert_eq!(notes(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    // candle-transformers' forward pass runs every matrix on candle's kernels.
    let trace = dir.path().join("candle.jsonl");
    let o = run(landauer()
        .env("LANDAUER_FORWARD", "candle")
        .args(["generate", "The cat sat on", "--model"])
        .arg(&model)
        .arg("--trace")
        .arg(&trace)
        .args(args));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(notes(&o), 1);
    let t = read_jsonl(&trace);
    assert_eq!(t[0]["slow_tensors"].as_array().unwrap().len(), 14);
}

#[test]
fn same_seed_same_text_and_greedy_ignores_seed() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let base = [
        "--max-tokens",
        "16",
        "--temperature",
        "1.0",
        "--ignore-eos",
        "-q",
    ];
    let ids = |seed: &str, extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend(["--seed", seed]);
        a.extend(extra);
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        token_ids(&generate(&model, sub.path(), &a).1)
    };
    let a = ids("1", &[]);
    assert_eq!(a, ids("1", &[]), "same seed must give the same tokens");
    assert_ne!(
        a,
        ids("2", &[]),
        "different seeds should differ over 16 tokens"
    );
    assert_eq!(ids("1", &["--greedy"]), ids("2", &["--greedy"]));
    // Greedy picks the most likely token every time, with nothing sampled.
    let sub = tempfile::tempdir_in(dir.path()).unwrap();
    let (_, t) = generate(
        &model,
        sub.path(),
        &["--greedy", "--max-tokens", "6", "--ignore-eos"],
    );
    for r in t.iter().filter(|r| r["type"] == "token") {
        assert_eq!(r["top"][0]["token_id"], r["token_id"]);
        assert_eq!(f(r, "sampling_entropy_bits"), 0.0);
    }
}

#[test]
fn chat_template_and_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let (out, t) = generate(
        &model,
        dir.path(),
        &["--chat", "--max-tokens", "3", "--json", "--seed", "3"],
    );
    let prompt_text = t[0]["prompt_text"].as_str().unwrap();
    assert!(
        prompt_text.starts_with("<|im_start|>user\nThe cat sat on<|im_end|>"),
        "{prompt_text}"
    );
    assert!(prompt_text.ends_with("<|im_start|>assistant\n"));
    assert_eq!(t[0]["chat"], true);
    // <|im_start|> and <|im_end|> are single special tokens, not strings of bytes: the chat
    // prompt costs far fewer tokens than its bytes would.
    let plain = t[0]["prompt_text"].as_str().unwrap().len() as u64;
    let n = t[0]["prompt_tokens"].as_u64().unwrap();
    assert!(n * 2 < plain, "{n} tokens for {plain} bytes");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON on stdout");
    assert_eq!(summary["tokens"], t.last().unwrap()["tokens"]);
    assert!(summary["joules_per_token"].is_number());
}

#[test]
fn meter_none_leaves_energy_null() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let (_, t) = generate(
        &model,
        dir.path(),
        &["--meter", "none", "--max-tokens", "3", "--ignore-eos"],
    );
    assert!(t[1]["energy_j"].is_null());
    assert!(t.last().unwrap()["energy_j"].is_null());
    assert_eq!(t.last().unwrap()["estimated"], false);
}

/// A bad input gives one line on stderr that starts with `landauer: error:`, a failure exit
/// status, and no panic.
fn refuses(args: &[&str], expect: &str) {
    let o = run(landauer().args(args));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} should fail");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("landauer: error:"), "{err}");
    assert!(
        lines[0].to_lowercase().contains(&expect.to_lowercase()),
        "{args:?}: expected {expect:?} in {err}"
    );
}

#[test]
fn bad_inputs_get_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = tiny_model(d, &TinyConfig::default());
    let m = model.to_str().unwrap();

    refuses(
        &["generate", "hi", "--model", "/no/such/model.gguf"],
        "not found",
    );
    refuses(
        &["generate", "hi", "--model", m, "--kv-cache", "f8"],
        "use f16 or f32",
    );

    let text = d.join("notes.gguf");
    std::fs::write(&text, "just some text, not a model").unwrap();
    refuses(
        &["generate", "hi", "--model", text.to_str().unwrap()],
        "not a GGUF file",
    );

    let bytes = std::fs::read(&model).unwrap();
    let cut = d.join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refuses(
        &["generate", "hi", "--model", cut.to_str().unwrap()],
        "truncated",
    );
    let header_only = d.join("header.gguf");
    std::fs::write(&header_only, &bytes[..100]).unwrap();
    refuses(
        &["generate", "hi", "--model", header_only.to_str().unwrap()],
        "download it again",
    );

    let falcon = tiny_model(
        d,
        &TinyConfig {
            architecture: "falcon".into(),
            ..Default::default()
        },
    );
    refuses(
        &["generate", "hi", "--model", falcon.to_str().unwrap()],
        "unsupported architecture `falcon`",
    );
    refuses(
        &["generate", "hi", "--model", falcon.to_str().unwrap()],
        "llama, mistral, qwen2, qwen3",
    );

    let short = tiny_model(
        d,
        &TinyConfig {
            context: 16,
            ..Default::default()
        },
    );
    let long_prompt = "The cat sat on the mat. ".repeat(20);
    refuses(
        &["generate", &long_prompt, "--model", short.to_str().unwrap()],
        "shorten the prompt",
    );

    refuses(
        &["generate", "hi", "--model", m, "--max-tokens", "0"],
        "--max-tokens",
    );
    refuses(
        &[
            "generate",
            "hi",
            "--model",
            m,
            "--tokenizer",
            "/no/such/tokenizer.json",
        ],
        "tokenizer",
    );
    let garbage = d.join("tokenizer.json");
    std::fs::write(&garbage, "{ not json").unwrap();
    refuses(
        &[
            "generate",
            "hi",
            "--model",
            m,
            "--tokenizer",
            garbage.to_str().unwrap(),
        ],
        "tokenizer",
    );
    refuses(
        &[
            "generate",
            "hi",
            "--model",
            m,
            "--trace",
            "/no/such/dir/t.jsonl",
        ],
        "/no/such/dir/t.jsonl",
    );
    refuses(
        &[
            "generate",
            "hi",
            "--model",
            m,
            "--csv",
            "/no/such/dir/t.csv",
        ],
        "writable",
    );
    refuses(
        &["generate", "hi", "--model", m, "--temperature=-1"],
        "temperature",
    );
    refuses(&["generate", "hi", "--model", m, "--top-p", "2"], "top-p");
    refuses(&["generate", "--model", m], "no prompt");
}

#[test]
fn ctrl_c_leaves_a_valid_trace_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &long_context());
    let trace = dir.path().join("int.jsonl");
    let child = landauer()
        .args([
            "generate",
            "The cat",
            "--ignore-eos",
            "--max-tokens",
            "4000",
            "-q",
            "--model",
        ])
        .arg(&model)
        .arg("--trace")
        .arg(&trace)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some tokens are on disk, then interrupt.
    let t0 = std::time::Instant::now();
    loop {
        let n = std::fs::read_to_string(&trace)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n > 5 {
            break;
        }
        assert!(t0.elapsed().as_secs() < 60, "no tokens after 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = read_jsonl(&trace);
    let s = t.last().unwrap();
    assert_eq!(s["type"], "summary");
    assert_eq!(s["stop_reason"], "interrupted");
    let n = t.iter().filter(|r| r["type"] == "token").count();
    assert_eq!(s["tokens"].as_u64().unwrap() as usize, n);
    assert!(n < 4000);
}

#[test]
fn every_supported_architecture_generates() {
    let dir = tempfile::tempdir().unwrap();
    for arch in landauer_engine::SUPPORTED_ARCHITECTURES {
        let model = tiny_model(
            dir.path(),
            &TinyConfig {
                architecture: arch.to_string(),
                ..Default::default()
            },
        );
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let (_, t) = generate(
            &model,
            sub.path(),
            &["--max-tokens", "4", "--ignore-eos", "--seed", "1", "-q"],
        );
        assert_eq!(t[0]["architecture"], *arch);
        // Every family runs on landauer's forward pass and kernels: nothing on the slow path.
        assert_eq!(t[0]["slow_tensors"], serde_json::json!([]), "{arch}");
        let toks = t.iter().filter(|r| r["type"] == "token").count();
        assert_eq!(toks, 4, "{arch}");
        assert!(t
            .iter()
            .filter(|r| r["type"] == "token")
            .all(|r| f(r, "entropy_bits") > 0.0));
    }
}

#[test]
fn a_tokenizer_json_replaces_the_embedded_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    // Save the GGUF's own tokenizer as tokenizer.json: loading it back must give the same run.
    let gguf = landauer_engine::gguf::GgufFile::open(&model).unwrap();
    let tok = landauer_engine::tokenizer::tokenizer_from_gguf(&gguf).unwrap();
    let json = dir.path().join("tokenizer.json");
    tok.save(&json, false).unwrap();
    let a = tempfile::tempdir_in(dir.path()).unwrap();
    let b = tempfile::tempdir_in(dir.path()).unwrap();
    let args = ["--max-tokens", "6", "--greedy", "--ignore-eos", "-q"];
    let (_, ta) = generate(&model, a.path(), &args);
    let mut with_json = args.to_vec();
    with_json.extend(["--tokenizer", json.to_str().unwrap()]);
    let (_, tb) = generate(&model, b.path(), &with_json);
    assert_eq!(ta[0]["prompt_tokens"], tb[0]["prompt_tokens"]);
    assert_eq!(token_ids(&ta), token_ids(&tb));
}

#[test]
fn idle_baseline_gives_active_energy_and_a_steady_window() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &long_context());
    let (_, t) = generate(
        &model,
        dir.path(),
        &[
            "--idle-seconds",
            "0.3",
            "--meter",
            "estimate",
            "--max-tokens",
            "3000",
            "--ignore-eos",
            "-q",
            "--seed",
            "1",
        ],
    );
    let run = &t[0];
    assert_eq!(f(run, "idle_seconds"), 0.3);
    let idle = f(run, "idle_power_w");
    // Idle, this process burns only the sampler's polls: far below one busy core's 10 W.
    assert!((0.0..1.0).contains(&idle), "idle power {idle}");
    let s = t.last().unwrap();
    assert!(close(
        f(s, "active_energy_j"),
        f(s, "energy_j") - idle * f(s, "wall_s"),
        1e-9
    ));
    if f(s, "decode_s") >= 2.0 {
        let steady = f(s, "steady_joules_per_token");
        assert!(close(steady, f(s, "decode_joules_per_token"), 1e-9));
        let decode_tokens = f(s, "tokens") - 1.0;
        assert!(close(
            f(s, "steady_active_joules_per_token"),
            steady - idle * f(s, "decode_s") / decode_tokens,
            1e-9
        ));
    } else {
        eprintln!(
            "decode lasted {} s: steady-state branch not reached",
            f(s, "decode_s")
        );
        assert!(s["steady_joules_per_token"].is_null());
    }
}

#[test]
fn meters_lists_what_this_machine_has() {
    let o = run(landauer().args(["meters", "--seconds", "0.3", "--json"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let probes: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = probes
        .iter()
        .map(|p| p["meter"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nvml", "rapl", "cpu-time-estimate"]);
    let est = &probes[2];
    assert_eq!(est["available"], true);
    assert_eq!(est["estimated"], true);
    assert!(f(est, "resolution_s") > 0.0);
    // Whether RAPL is here or not, the answer says what it is or why it is absent.
    assert!(!probes[1]["description"].as_str().unwrap().is_empty());
}

#[test]
fn nvml_absent_is_said_and_auto_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let o = run(landauer()
        .args([
            "generate",
            "hi",
            "--meter",
            "nvml",
            "--max-tokens",
            "2",
            "-q",
            "--model",
        ])
        .arg(&model));
    if o.status.success() {
        eprintln!("NVML is present here: --meter nvml ran");
    } else {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("NVML unavailable") && err.contains("--meter auto"),
            "{err}"
        );
    }
    // auto never fails: it says which meter it took and why.
    let (_, t) = generate(&model, dir.path(), &["--max-tokens", "2", "-q"]);
    let reason = t[0]["meter_reason"].as_str().unwrap();
    assert!(reason.starts_with("auto:"), "{reason}");
    match t[0]["meter"].as_str().unwrap() {
        "rapl" => assert!(reason.contains("RAPL counters readable")),
        "cpu-time-estimate" => assert!(reason.contains("fell back to the CPU-time estimate")),
        other => panic!("unexpected meter {other}"),
    }
}

#[test]
fn bench_reports_consistent_medians() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let out_file = dir.path().join("bench.json");
    let o = run(landauer()
        .args(["bench", "--runs", "3", "-n", "8", "--json", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(&out_file));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(r, written);
    assert_eq!(r["generated_tokens"], 8);
    assert_eq!(r["kv_cache"], "f16", "the CPU default");
    for cfg in ["tracing_off", "tracing_on"] {
        let runs: Vec<f64> = floats(&r[cfg]["decode_tokens_per_s"]);
        assert_eq!(runs.len(), 3);
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(f(&r[cfg], "decode_tokens_per_s_median"), sorted[1]);
        assert!(runs.iter().all(|&x| x > 0.0));
    }
    let off = f(&r["tracing_off"], "decode_tokens_per_s_median");
    let on = f(&r["tracing_on"], "decode_tokens_per_s_median");
    assert!(close(f(&r, "tracing_overhead"), off / on - 1.0, 1e-9));
    let per_round = |cfg: &str| -> Vec<f64> { floats(&r[cfg]["decode_tokens_per_s"]) };
    let mut paired: Vec<f64> = per_round("tracing_off")
        .iter()
        .zip(per_round("tracing_on"))
        .map(|(a, b)| a / b - 1.0)
        .collect();
    paired.sort_by(f64::total_cmp);
    assert!(close(f(&r, "tracing_overhead_paired"), paired[1], 1e-9));
    assert!(close(
        f(&r, "tracing_cost_fraction"),
        f(&r, "tracing_ms_per_token") * 1e-3 * off,
        1e-9
    ));
    assert!(f(&r, "tracing_ms_per_token") > 0.0);
    // Energy of traced and untraced runs alike (the labeled estimate here), 3 runs each.
    let e = &r["energy"];
    assert_eq!(e["estimated"], true);
    for key in [
        "decode_joules_per_token",
        "untraced_decode_joules_per_token",
    ] {
        let runs: Vec<f64> = floats(&e[key]);
        assert_eq!(runs.len(), 3, "{key}");
        assert!(runs.iter().all(|&j| j > 0.0), "{key}: {runs:?}");
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(f(e, &format!("{key}_median")), sorted[1], "{key}");
    }
    let j = f(e, "untraced_decode_joules_per_token_median");
    assert!(close(
        f(e, "untraced_decode_tokens_per_wh_median"),
        3600.0 / j,
        1e-9
    ));
    let j = f(e, "decode_joules_per_token_median");
    assert!(close(f(e, "decode_tokens_per_wh_median"), 3600.0 / j, 1e-9));
    // The CPU roofline: measured bandwidth over the bytes a decode token reads.
    let rl = &r["roofline"];
    let (bw, bytes) = (
        f(rl, "read_bandwidth_bytes_per_s"),
        f(rl, "bytes_per_token"),
    );
    assert!(bw > 1e8, "{rl}");
    assert!(close(
        bytes,
        f(&r, "weight_bytes_per_token") + f(rl, "kv_bytes_per_token_mean"),
        1e-9
    ));
    assert!(f(rl, "kv_bytes_per_token_mean") > 0.0);
    assert!(close(f(rl, "roofline_tokens_per_s"), bw / bytes, 1e-9));
    assert!(close(f(rl, "fraction_tracing_off"), off * bytes / bw, 1e-9));
}

#[test]
fn synthetic_models_generate_and_label_their_entropy_meaningless() {
    let dir = tempfile::tempdir().unwrap();
    for (model, params, arch) in [
        ("synthetic:smollm2-135m:q8_0", 134_515_008u64, "llama"),
        ("synthetic:qwen2.5-0.5b:q4_0", 494_032_768, "qwen2"),
    ] {
        let csv = dir.path().join(format!("{arch}.csv"));
        let (out, trace) = generate(
            Path::new(model),
            dir.path(),
            &[
                "-n",
                "3",
                "--ignore-eos",
                "--seed",
                "1",
                "--csv",
                csv.to_str().unwrap(),
            ],
        );
        let mut rows = csv::Reader::from_path(&csv).unwrap();
        let col = rows
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "synthetic")
            .unwrap();
        let flags: Vec<String> = rows
            .records()
            .map(|r| r.unwrap()[col].to_string())
            .collect();
        assert_eq!(
            flags,
            ["true", "true", "true"],
            "every CSV row says synthetic"
        );
        let run = &trace[0];
        assert_eq!(run["type"], "run");
        assert_eq!(run["synthetic"], true, "{model}");
        assert_eq!(run["model"], model);
        assert_eq!(run["architecture"], arch);
        assert_eq!(run["parameters"].as_u64(), Some(params));
        assert_eq!(run["device"], "cpu");
        assert_eq!(token_ids(&trace).len(), 3, "{model}");
        let summary = trace.last().unwrap();
        assert_eq!(summary["type"], "summary");
        let caveats = summary["caveats"].as_array().unwrap();
        assert!(
            caveats.iter().any(|c| c
                .as_str()
                .unwrap()
                .contains("entropy, surprisal and the Landauer figures are meaningless")),
            "{caveats:?}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("SYNTHETIC"), "{stderr}");
        assert!(stderr.contains("MEANINGLESS"), "{stderr}");
        assert!(stderr.contains("random weights"), "{stderr}");
        // Random weights over a real vocabulary: near-uniform, far above a trained model's.
        let h = summary["mean_entropy_bits"].as_f64().unwrap();
        assert!(h > 8.0 && h.is_finite(), "{model}: entropy {h}");
    }
}

#[test]
fn devices_and_synthetic_specs_are_checked() {
    refuses(
        &["generate", "hi", "--device", "tpu"],
        "`tpu` is not a device; use cpu, cuda or cuda:N",
    );
    if !landauer_engine::device::CUDA_BUILT {
        refuses(
            &["generate", "hi", "--device", "cuda:0"],
            "built without CUDA; build it with scripts/build-cuda.sh",
        );
    }
    refuses(
        &["generate", "hi", "--model", "synthetic:gpt-9"],
        "unknown architecture `gpt-9`; known: smollm2-135m",
    );
    refuses(
        &["generate", "hi", "--model", "synthetic:llama-3.1-8b:q2_x"],
        "unknown quantization `q2_x`",
    );
}

#[test]
fn synthetic_gguf_writes_a_file_both_engines_load() {
    use candle_core::quantized::{gguf_file, GgmlDType};
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_model(dir.path(), &TinyConfig::default());
    let out = dir.path().join("smol.gguf");
    std::fs::write(&out, "an old file, replaced").unwrap();
    let o = run(landauer()
        .args(["synthetic-gguf", "smollm2-135m:q4_k_m", "-o"])
        .arg(&out)
        .arg("--vocab-from")
        .arg(&source));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        out.to_str().unwrap()
    );
    let file_name = source.file_name().unwrap().to_str().unwrap();
    let mut f = std::fs::File::open(&out).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let tokens = content.metadata["tokenizer.ggml.tokens"]
        .to_vec()
        .unwrap()
        .len();
    assert!(
        stderr.contains(&format!("vocabulary {tokens} tokens from {file_name}")),
        "{stderr}"
    );
    assert!(!dir.path().join("smol.gguf.tmp").exists());
    let md = |k: &str| content.metadata[k].clone();
    assert_eq!(md("general.architecture").to_string().unwrap(), "llama");
    assert_eq!(md("general.file_type").to_u32().unwrap(), 15);
    assert_eq!(md("llama.rope.dimension_count").to_u32().unwrap(), 64);
    assert!(md("general.name")
        .to_string()
        .unwrap()
        .contains(&format!("vocabulary of {tokens} tokens from {file_name}")));
    let t = |n: &str| &content.tensor_infos[n];
    assert_eq!(t("token_embd.weight").shape.dims(), [tokens, 576]);
    // Q4_K_M on SmolLM2: 576-wide rows fall back (Q4_K to Q5_0, Q6_K to Q8_0); layer 0's
    // attn_v and ffn_down get more bits, layer 3's do not.
    assert_eq!(t("token_embd.weight").ggml_dtype, GgmlDType::Q8_0);
    assert_eq!(t("blk.0.attn_v.weight").ggml_dtype, GgmlDType::Q8_0);
    assert_eq!(t("blk.3.attn_v.weight").ggml_dtype, GgmlDType::Q5_0);
    assert_eq!(t("blk.0.ffn_down.weight").ggml_dtype, GgmlDType::Q6K);
    assert_eq!(t("blk.3.ffn_down.weight").ggml_dtype, GgmlDType::Q4K);
    assert_eq!(t("blk.3.ffn_up.weight").ggml_dtype, GgmlDType::Q5_0);
    // landauer runs the file, and knows it for a synthetic model.
    let (o, trace) = generate(
        &out,
        dir.path(),
        &["-n", "2", "--ignore-eos", "--seed", "1"],
    );
    assert_eq!(token_ids(&trace).len(), 2);
    assert_eq!(trace[0]["synthetic"], true);
    assert!(String::from_utf8_lossy(&o.stderr).contains("MEANINGLESS"));

    let bad = dir.path().join("bad.gguf");
    refuses(
        &[
            "synthetic-gguf",
            "gpt-9:q4_k_m",
            "-o",
            bad.to_str().unwrap(),
        ],
        "unknown architecture `gpt-9`",
    );
    refuses(
        &[
            "synthetic-gguf",
            "smollm2-135m:q3_x",
            "-o",
            bad.to_str().unwrap(),
        ],
        "unknown quantization `q3_x`",
    );
    refuses(
        &[
            "synthetic-gguf",
            "smollm2-135m:q8_0",
            "-o",
            bad.to_str().unwrap(),
            "--vocab-from",
            "/no/such/file.gguf",
        ],
        "--vocab-from /no/such/file.gguf: model file not found",
    );
    let nowhere = dir.path().join("no/such/dir/x.gguf");
    refuses(
        &[
            "synthetic-gguf",
            "smollm2-135m:q8_0",
            "-o",
            nowhere.to_str().unwrap(),
        ],
        "cannot create",
    );
    assert!(!bad.exists() && !dir.path().join("bad.gguf.tmp").exists());
}

#[test]
fn sweep_writes_one_row_per_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &long_context());
    let out = dir.path().join("sweep");
    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, "The cat sat\n\nOnce upon a time\nHello world\n").unwrap();
    let o = run(landauer()
        .args(["sweep", "--batch", "1,3", "-n", "6", "--model"])
        .arg(&model)
        .arg("--prompts")
        .arg(&prompts)
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(json["kv_cache"], "f16");
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (r, b) in rows.iter().zip([1u64, 3]) {
        assert_eq!(r["batch"].as_u64(), Some(b));
        assert_eq!(r["generated_tokens"].as_u64(), Some(6 * b));
        let tps = r["decode_tokens_per_s"].as_f64().unwrap();
        let jpt = r["joules_per_token"].as_f64().unwrap();
        let wh = r["tokens_per_wh"].as_f64().unwrap();
        assert!(tps > 0.0 && jpt > 0.0);
        assert!((wh - 3600.0 / jpt).abs() < 1e-6 * wh);
        let bits = r["mean_entropy_bits"].as_f64().unwrap();
        assert!(bits > 0.0);
        // One run per size: power = J/token x tokens/s over the same window, and the
        // Landauer gap is J/token over the bits' k_B T ln 2.
        let w = r["mean_power_w"].as_f64().unwrap();
        assert!((w - jpt * tps).abs() < 1e-6 * w, "{w} vs {}", jpt * tps);
        let gap = r["landauer_gap"].as_f64().unwrap();
        assert!((gap - jpt / (bits * KT_LN2_300)).abs() < 1e-6 * gap);
        assert!(r["bits_per_joule"].as_f64().unwrap() > 0.0);
        assert_eq!(r["steady"], false, "a 6-token window is not steady");
    }
    assert_eq!(
        json["estimated"], true,
        "no RAPL here: the estimate, labeled"
    );
    let mut csv = csv::Reader::from_path(out.join("sweep.csv")).unwrap();
    let headers: Vec<String> = csv.headers().unwrap().iter().map(String::from).collect();
    for col in [
        "batch",
        "decode_tokens_per_s",
        "joules_per_token",
        "tokens_per_wh",
    ] {
        assert!(headers.contains(&col.to_string()), "{col} in {headers:?}");
    }
    assert_eq!(csv.records().count(), 2);
    let svg = std::fs::read_to_string(out.join("sweep.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for text in [
        "tokens per watt-hour",
        "160 tokens/Wh",
        "ML.ENERGY",
        "batch size",
    ] {
        assert!(svg.contains(text), "{text} missing from the plot");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("decode tok/s") && stdout.contains("ESTIMATED"),
        "{stdout}"
    );
}

#[test]
fn an_interleaved_sweep_measures_every_batch_size_in_each_round() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &long_context());
    for interleave in [false, true] {
        let out = dir.path().join(format!("sweep-{interleave}"));
        let mut cmd = landauer();
        cmd.args([
            "sweep", "--batch", "2,1", "-n", "5", "--runs", "3", "--model",
        ])
        .arg(&model)
        .arg("--out")
        .arg(&out);
        if interleave {
            cmd.arg("--interleave");
        }
        let o = run(&mut cmd);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap())
                .unwrap();
        assert_eq!(json["interleaved"], interleave);
        let rows = json["rows"].as_array().unwrap();
        // Rows in the order asked for, each with all of its runs.
        assert_eq!(rows.len(), 2);
        for (r, b) in rows.iter().zip([2u64, 1]) {
            assert_eq!(r["batch"].as_u64(), Some(b));
            assert_eq!(r["runs"].as_u64(), Some(3));
            assert_eq!(r["generated_tokens"].as_u64(), Some(5 * b));
            assert!(r["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
        }
        // Every run's figure, per batch size in the same order; the row's is their median.
        let runs = json["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        // The order they ran in: round by round (batch 2, then 1, three times), or all of
        // batch 2's runs before batch 1's.
        let started = |i: usize| -> Vec<f64> { floats(&runs[i]["started_s"]) };
        let (b2, b1) = (started(0), started(1));
        let order: Vec<f64> = if interleave {
            (0..3).flat_map(|k| [b2[k], b1[k]]).collect()
        } else {
            b2.iter().chain(&b1).copied().collect()
        };
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{interleave}: {order:?}"
        );
        for (r, row) in runs.iter().zip(rows) {
            assert_eq!(r["batch"], row["batch"]);
            let mut v: Vec<f64> = floats(&r["decode_tokens_per_s"]);
            assert_eq!(v.len(), 3);
            v.sort_by(f64::total_cmp);
            assert_eq!(v[1], row["decode_tokens_per_s"].as_f64().unwrap());
        }
    }
}

#[test]
fn sweep_refuses_a_batch_that_cannot_fit() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &long_context());
    let m = model.to_str().unwrap();
    let out = dir.path().join("s");
    let o = out.to_str().unwrap();
    refuses(
        &[
            "sweep",
            "--batch",
            "1,2000000",
            "-n",
            "3000",
            "--model",
            m,
            "--out",
            o,
        ],
        "batch 2000000 needs",
    );
    refuses(
        &["sweep", "--batch", "0", "--model", m, "--out", o],
        "--batch needs batch sizes of at least 1",
    );
    refuses(
        &[
            "sweep",
            "--model",
            m,
            "--out",
            o,
            "--prompts",
            "/nonexistent/p.txt",
        ],
        "cannot read --prompts",
    );
}

#[test]
fn a_batch_from_a_prompts_file_traces_each_row_and_matches_each_alone() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &long_context());
    let prompts = ["The cat sat on", "A dog", "Once upon a time there was"];
    let file = dir.path().join("prompts.txt");
    std::fs::write(
        &file,
        format!("{}\n\n{}\n{}\n", prompts[0], prompts[1], prompts[2]),
    )
    .unwrap();
    let trace = dir.path().join("batch.jsonl");
    let common = ["--greedy", "--max-tokens", "5", "--ignore-eos"];
    let o = run(landauer()
        .args(["generate", "--prompts"])
        .arg(&file)
        .arg("--model")
        .arg(&model)
        .arg("--trace")
        .arg(&trace)
        .args(common));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for (r, p) in prompts.iter().enumerate() {
        assert!(stdout.contains(&format!("--- row {r}: {p}")), "{stdout}");
    }
    let t = read_jsonl(&trace);
    assert_eq!(t[0]["type"], "run");
    assert_eq!(t[0]["batch"], 3);
    let summary = t.iter().find(|r| r["type"] == "summary").unwrap();
    assert_eq!(summary["tokens"], 15, "{summary}");
    for (r, p) in prompts.iter().enumerate() {
        let rows: Vec<&Value> = t
            .iter()
            .filter(|x| x["type"] == "token" && x["seq"] == r)
            .collect();
        assert_eq!(rows.len(), 5, "row {r}");
        let ids: Vec<u64> = rows
            .iter()
            .map(|x| x["token_id"].as_u64().unwrap())
            .collect();
        // The same prompt decoded alone gives the same greedy tokens.
        let alone = dir.path().join(format!("alone{r}.jsonl"));
        let o = run(landauer()
            .args(["generate", p, "--model"])
            .arg(&model)
            .arg("--trace")
            .arg(&alone)
            .args(common));
        assert!(o.status.success());
        assert_eq!(ids, token_ids(&read_jsonl(&alone)), "row {r}");
    }
    // --prompts and a prompt together are refused.
    let o = run(landauer()
        .args(["generate", "x", "--prompts"])
        .arg(&file)
        .arg("--model")
        .arg(&model));
    assert!(!o.status.success());
}

#[test]
fn a_hugging_face_checkpoint_directory_runs_like_its_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TinyConfig {
        dtype: candle_core::quantized::GgmlDType::F16,
        ..long_context()
    };
    let gguf = tiny_model(dir.path(), &cfg);
    let ckpt = dir.path().join("checkpoint");
    landauer_engine::tiny::write_checkpoint(&gguf, &ckpt, 2).unwrap();
    let text = |model: &Path, trace: &Path| {
        let o = run(landauer()
            .args([
                "generate", "--greedy", "-n", "8", "-q", "--meter", "none", "--model",
            ])
            .arg(model)
            .arg("--trace")
            .arg(trace)
            .arg("Once upon a time"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let (t1, t2) = (dir.path().join("gguf.jsonl"), dir.path().join("ckpt.jsonl"));
    assert_eq!(text(&gguf, &t1), text(&ckpt, &t2), "the same greedy text");
    let run_record = &read_jsonl(&t2)[0];
    assert_eq!(run_record["model_path"], ckpt.display().to_string());
    assert_eq!(run_record["quantization"], "F16");
    assert_eq!(run_record["model_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(run_record["shape"], read_jsonl(&t1)[0]["shape"]);
    // The prompt's ids, for replaying the run elsewhere: the same through both front doors.
    let ids = run_record["prompt_token_ids"][0].as_array().unwrap();
    assert_eq!(
        ids.len() as u64,
        run_record["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        run_record["prompt_token_ids"],
        read_jsonl(&t1)[0]["prompt_token_ids"]
    );
    // Batches run on it too.
    let out = dir.path().join("sweep");
    let o = run(landauer()
        .args([
            "sweep", "--batch", "1,2", "-n", "3", "--meter", "none", "--model",
        ])
        .arg(&ckpt)
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A checkpoint without its weights: one line naming the directory and the fix.
    for f in std::fs::read_dir(&ckpt).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::fs::remove_file(ckpt.join("model.safetensors.index.json")).unwrap();
    let o = run(landauer()
        .args(["generate", "-n", "2", "--model"])
        .arg(&ckpt)
        .arg("x"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("no *.safetensors file") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn quantize_at_load_records_the_types_and_saves_a_file_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TinyConfig {
        hidden: 256,
        ffn: 512,
        dtype: candle_core::quantized::GgmlDType::F16,
        ..long_context()
    };
    let src = tiny_model(dir.path(), &cfg);
    let (trace, saved) = (dir.path().join("t.jsonl"), dir.path().join("q.gguf"));
    let o = run(landauer()
        .args([
            "generate", "--greedy", "-n", "4", "-q", "--meter", "none", "--model",
        ])
        .arg(&src)
        .args(["--quantize", "q5_k_m", "--save-gguf"])
        .arg(&saved)
        .arg("--trace")
        .arg(&trace)
        .arg("Once upon a time"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let r = &read_jsonl(&trace)[0];
    assert_eq!(r["quantize"], "q5_k_m");
    assert_eq!(r["quantized_from"], "F16");
    assert_eq!(r["tensor_types"]["attn_q"], "Q5_K");
    let bpw = r["bits_per_weight"].as_f64().unwrap();
    assert!(bpw > 5.5 && bpw < 6.6, "{bpw}");
    // The saved file is the model that ran.
    let o = run(landauer()
        .args([
            "generate", "--greedy", "-n", "4", "-q", "--meter", "none", "--model",
        ])
        .arg(&saved)
        .arg("Once upon a time"));
    assert_eq!(String::from_utf8(o.stdout).unwrap(), text);
    // A format with no kernels: refused before anything loads.
    let o =
        run(landauer()
            .args(["generate", "--model"])
            .arg(&src)
            .args(["--quantize", "iq2_xs", "x"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--quantize") && err.contains("q4_k_m"),
        "{err}"
    );
}

#[test]
fn exact_mode_is_recorded_and_refused_where_it_means_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &long_context());
    let trace = dir.path().join("t.jsonl");
    let o = run(landauer()
        .args([
            "generate", "--exact", "--greedy", "-n", "3", "-q", "--meter", "none", "--model",
        ])
        .arg(&model)
        .arg("--trace")
        .arg(&trace)
        .arg("Once upon a time"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = &read_jsonl(&trace)[0];
    assert_eq!(r["exact"], true);
    assert_eq!(r["quantization"], "Q8_0", "the model as stored");
    for (args, says) in [
        (
            vec!["--exact", "--model", "synthetic:smollm2-135m"],
            "synthetic",
        ),
        (
            vec!["--exact", "--quantize", "q8_0", "--model", "m.gguf"],
            "--quantize",
        ),
    ] {
        let o = run(landauer().arg("generate").args(&args).arg("x"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_study_writes_its_files_and_reports_and_ladders_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &long_context());
    let out = dir.path().join("study");
    let o = run(landauer()
        .args([
            "study",
            "--quantizations",
            "stored,f16,q4_0",
            "--batch",
            "1,2",
            "-n",
            "3",
        ])
        .args(["--reference-tokens", "32", "--meter", "estimate", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("q4_0") && table.contains("KL bits"),
        "{table}"
    );
    let study: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("study.json")).unwrap()).unwrap();
    assert_eq!(study["cells"].as_array().unwrap().len(), 6);
    assert_eq!(study["estimated"], true);
    let csv = std::fs::read_to_string(out.join("study.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7);
    assert!(std::fs::read_to_string(out.join("study.svg"))
        .unwrap()
        .contains("bits per weight"));
    // The report and the ladder read the directory.
    let html = dir.path().join("study.html");
    let o = run(landauer().arg("report").arg(&out).arg("-o").arg(&html));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("What each precision and size buys") && page.contains("q4_0"));
    let o = run(landauer().args(["gap", "--json"]).arg(&out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let gap: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        gap["ladders"].as_array().unwrap().len(),
        6,
        "one ladder per cell"
    );
    // --quantize and --exact belong to single runs.
    let o = run(landauer().args(["study", "--exact", "--model"]).arg(&model));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--quantizations"),
        "{err}"
    );
    // Bad quantization names are refused before any work.
    let o = run(landauer()
        .args(["study", "--quantizations", "q9_z", "--model"])
        .arg(&model));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--quantizations"),
        "{err}"
    );
}
