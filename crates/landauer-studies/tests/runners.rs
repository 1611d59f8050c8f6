//! The bench and sweep runners on a tiny random-weight model, without the command line.

use landauer_meter::MeterChoice;
use landauer_studies::{
    bench, sweep, BenchConfig, Collect, Loaded, MeterOptions, ModelOptions, SweepConfig,
};

fn tiny_options(dir: &std::path::Path, batched: bool) -> ModelOptions {
    let path = dir.join("tiny.gguf");
    landauer_engine::tiny::write_tiny_llama(&path, &Default::default()).unwrap();
    ModelOptions {
        model: Some(path.display().to_string()),
        batched,
        ..Default::default()
    }
}

fn tiny(dir: &std::path::Path, batched: bool) -> Loaded {
    Loaded::load(&tiny_options(dir, batched), &mut ()).unwrap()
}

fn meter(choice: MeterChoice) -> MeterOptions {
    MeterOptions {
        choice,
        ..Default::default()
    }
}

#[test]
fn a_bench_runs_every_round_traced_and_untraced_and_keeps_its_traces() {
    let dir = tempfile::tempdir().unwrap();
    let opts = tiny_options(dir.path(), false);
    let mut model = Loaded::load(&opts, &mut ()).unwrap();
    let traces = dir.path().join("traces");
    let cfg = BenchConfig {
        runs: 3,
        warmup: 0,
        max_tokens: 5,
        trace_dir: Some(traces.clone()),
        meter: meter(MeterChoice::Estimate),
        exact_check: Some(opts),
        ..Default::default()
    };
    let mut seen = Collect::default();
    let r = bench::run(&mut model, 1, &cfg, &mut seen).unwrap();
    // The last traced run's tokens, scored in exact mode: the default mode's entropy error.
    let e = r
        .entropy_error_vs_exact
        .as_ref()
        .expect("checked against exact mode");
    assert_eq!(e.tokens, 5);
    assert!(e.mean_bits <= e.p95_bits && e.p95_bits <= e.max_bits && e.max_bits < 1.0);
    assert_eq!(r.generated_tokens, 5);
    assert_eq!(r.tracing_on.decode_tokens_per_s.len(), 3);
    assert_eq!(r.tracing_off.decode_tokens_per_s.len(), 3);
    // Rounds alternate which configuration runs first.
    let order: Vec<bool> = seen.bench_runs.iter().map(|b| b.traced).collect();
    assert_eq!(order, [true, false, false, true, true, false]);
    let e = r.energy.as_ref().expect("the estimate meter measures");
    assert!(e.estimated && e.decode_joules_per_token.len() == 3);
    assert!(r.roofline.as_ref().unwrap().read_bandwidth_bytes_per_s > 0.0);
    // The kept traces describe their runs (the prompt, the context, when).
    let landauer_trace::Input::Trace(t) =
        landauer_trace::read_input(&traces.join("run0.jsonl")).unwrap()
    else {
        panic!("a trace")
    };
    assert_eq!(t.run.prompt_tokens, t.run.prompt_token_ids[0].len());
    assert!(t.run.prompt_tokens > 0 && t.run.context_length > 0 && t.run.started_unix_s > 1e9);
    for i in 0..3 {
        assert!(traces.join(format!("run{i}.jsonl")).is_file());
        assert!(traces.join(format!("run{i}.csv")).is_file());
    }
    // The report is the JSON bench.json holds, and reads back.
    let back: landauer_studies::BenchReport =
        serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back.generated_tokens, 5);
    assert_eq!(back.tracing_on.decode_tokens_per_s.len(), 3);
}

#[test]
fn a_bench_of_a_batch_traces_every_row_and_counts_decode_tokens_per_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = tiny(dir.path(), true);
    let traces = dir.path().join("traces");
    let cfg = BenchConfig {
        runs: 1,
        warmup: 0,
        max_tokens: 4,
        batch: 3,
        trace_dir: Some(traces.clone()),
        meter: meter(MeterChoice::Estimate),
        ..Default::default()
    };
    let r = bench::run(&mut model, 1, &cfg, &mut ()).unwrap();
    assert_eq!((r.batch, r.generated_tokens), (3, 12));
    let landauer_trace::Input::Trace(t) =
        landauer_trace::read_input(&traces.join("run0.jsonl")).unwrap()
    else {
        panic!("a trace")
    };
    assert_eq!(t.run.batch, 3);
    assert_eq!(t.run.prompt_token_ids.len(), 3);
    assert_eq!(t.run.prompt_tokens, 3 * t.run.prompt_token_ids[0].len());
    let mut rows: Vec<usize> = t.tokens.iter().map(|k| k.seq).collect();
    rows.sort();
    rows.dedup();
    assert_eq!((t.tokens.len(), rows), (12, vec![0, 1, 2]));
    assert_eq!(t.summary.as_ref().expect("a summary").tokens, 12);
    let e = r.energy.as_ref().expect("the estimate meter measures");
    assert!(e.decode_joules_per_token[0] > 0.0);
    // A step's weights are read once for its 3 rows.
    let roof = r.roofline.as_ref().unwrap();
    let weights = r.weight_bytes_per_token as f64 / 3.0;
    assert!((roof.bytes_per_token - weights - roof.kv_bytes_per_token_mean).abs() < 1.0);
    assert!(roof.kv_bytes_per_token_mean > 0.0);
}

#[test]
fn a_sweep_reports_after_every_batch_size_or_every_round() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = tiny(dir.path(), true);
    for interleave in [false, true] {
        let cfg = SweepConfig {
            batch: vec![2, 1, 3],
            max_tokens: 4,
            runs: 2,
            interleave,
            meter: meter(MeterChoice::None),
            ..Default::default()
        };
        let mut seen = Collect::default();
        let file = sweep::run(&mut model, 1, &cfg, &mut seen).unwrap();
        // Warm-ups and measured batches: (runs + 1) per batch size.
        assert_eq!(seen.units_done, 9);
        // Files are rewritten after each batch size, or interleaved after each round.
        assert_eq!(seen.sweep_updates, if interleave { 2 } else { 3 });
        let batches: Vec<usize> = file.rows.iter().map(|r| r.batch).collect();
        assert_eq!(batches, [2, 1, 3]);
        assert!(file
            .rows
            .iter()
            .all(|r| r.runs == 2 && r.joules_per_token.is_none()));
        assert_eq!(file.header.interleaved, interleave);
        assert_eq!(file.runs[2].decode_tokens_per_s.len(), 2);
        // Every row of a batch generates max_tokens.
        assert_eq!(file.rows[2].generated_tokens, 3 * 4);
        if interleave {
            // Round k of every batch size starts before round k + 1 of any.
            assert!(file.runs[2].started_s[0] < file.runs[0].started_s[1]);
        }
    }
}

#[test]
fn bad_settings_fail_before_any_work() {
    let bad = SweepConfig {
        batch: vec![1, 0],
        ..Default::default()
    };
    assert!(bad.check().unwrap_err().to_string().contains("--batch"));
    let bad = SweepConfig {
        kelvin: -3.0,
        ..Default::default()
    };
    assert!(bad.check().unwrap_err().to_string().contains("--kelvin"));
    let bad = BenchConfig {
        runs: 0,
        ..Default::default()
    };
    assert!(bad.check().unwrap_err().to_string().contains("--runs"));
    // A synthetic model's type is in its name: a study cannot requantize it.
    let bad = landauer_studies::study::StudyConfig {
        models: vec![ModelOptions {
            model: Some("synthetic:llama-3.2-1b".into()),
            ..Default::default()
        }],
        quantize: vec![None, Some("q8_0".into())],
        ..Default::default()
    };
    let err = landauer_studies::study::run(&bad, 1, &mut ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--quantizations q8_0") && err.contains("synthetic:llama-3.2-1b:q8_0"),
        "{err}"
    );
}

#[test]
fn entropy_errors_are_mean_p95_and_max_of_the_differences() {
    use landauer_studies::bench::EntropyError;
    let pairs: Vec<(f64, f64)> = (0..20).map(|i| (i as f64 * 0.01, 0.0)).collect();
    let e = EntropyError::of(&pairs).unwrap();
    assert_eq!(e.tokens, 20);
    assert!((e.mean_bits - 0.095).abs() < 1e-12);
    // The 19th of 20 sorted differences.
    assert_eq!(e.p95_bits, 0.18);
    assert_eq!(e.max_bits, 0.19);
    assert_eq!(EntropyError::of(&[]), None);
}

#[test]
fn a_study_measures_every_cell_against_the_models_highest_precision() {
    use landauer_studies::study::{self, StudyConfig};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StudyConfig {
        models: vec![tiny_options(dir.path(), true)],
        quantize: vec![None, Some("f16".into())],
        reference_tokens: 40,
        ..Default::default()
    };
    cfg.sweep.batch = vec![1, 2];
    cfg.sweep.max_tokens = 4;
    cfg.sweep.meter = meter(MeterChoice::None);
    let mut seen = Collect::default();
    let f = study::run(&cfg, 1, &mut seen).unwrap();
    assert_eq!(f.cells.len(), 4, "two quantizations × two batch sizes");
    // After each quantization, and once more with the divergences.
    assert_eq!(seen.study_updates, 3);
    let (stored, f16) = (&f.cells[0], &f.cells[2]);
    assert_eq!(
        (stored.quantization.as_str(), stored.bits_per_weight),
        ("Q8_0", 8.5)
    );
    assert_eq!(f16.quantization, "F16");
    // F16 holds the Q8_0 weights exactly, so it is the reference, and both read alike.
    assert_eq!(f16.quality_reference.as_deref(), Some("f16"));
    assert_eq!(f16.kl_bits, Some(0.0));
    assert_eq!(f16.top1_agreement, Some(1.0));
    assert!(stored.kl_bits.unwrap() >= 0.0 && stored.kl_bits.unwrap() < 0.05);
    assert_eq!(stored.reference_tokens, 40);
    assert!(
        stored.cross_entropy_bits > 0.0 && stored.perplexity == stored.cross_entropy_bits.exp2()
    );
    // Each cell's entropies against exact mode on its own weights: F16 weights already run
    // with f32 activations, Q8_0's with 8-bit ones.
    let (es, ef) = (
        stored.entropy_error_vs_exact.as_ref().unwrap(),
        f16.entropy_error_vs_exact.as_ref().unwrap(),
    );
    assert_eq!(es.tokens, 40);
    assert!(es.max_bits > ef.max_bits, "{es:?} vs {ef:?}");
    // The same quality on every batch size of a cell.
    assert_eq!(f.cells[0].cross_entropy_bits, f.cells[1].cross_entropy_bits);
}
