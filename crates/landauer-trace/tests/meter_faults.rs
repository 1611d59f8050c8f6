//! A meter that fails mid-run: generation goes on, the trace marks the gap, and the tokens'
//! energies still add up to the run's total.

use landauer_engine::tiny::{write_tiny_llama, TinyConfig};
use landauer_engine::{Device, Engine, GenerateOptions, SamplingParams};
use landauer_meter::sampler::MeterSampler;
use landauer_meter::{EnergyMeter, EnergyReading, MeterError};
use landauer_trace::{Record, RecordSink, Recorder, RunRecord, TokenRecord};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// 50 W of simulated power; reads 4 to 9 fail.
struct Flaky {
    opened: Instant,
    reads: u32,
}

impl EnergyMeter for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn describe(&self) -> String {
        "a test meter that fails for a while".into()
    }
    fn estimated(&self) -> bool {
        false
    }
    fn read(&mut self) -> Result<EnergyReading, MeterError> {
        self.reads += 1;
        if (4..=9).contains(&self.reads) {
            return Err(MeterError::Nvml("simulated driver hiccup".into()));
        }
        let at = Instant::now();
        Ok(EnergyReading {
            joules: 50.0 * at.duration_since(self.opened).as_secs_f64(),
            at,
        })
    }
    fn default_interval(&self) -> Duration {
        Duration::from_millis(5)
    }
}

/// A tiny random model with `context` positions, in candle's or the batched forward pass.
fn tiny_engine(context: usize, batched: bool) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let cfg = TinyConfig {
        context,
        ..Default::default()
    };
    write_tiny_llama(&path, &cfg).unwrap();
    let engine = if batched {
        Engine::load_batched(&path, None, &Device::Cpu)
    } else {
        Engine::load(&path, None, &Device::Cpu)
    };
    (dir, engine.unwrap())
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Record>>>);

impl RecordSink for Collect {
    fn token(&mut self, t: &TokenRecord) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap()
            .push(Record::Token(Box::new(t.clone())));
        Ok(())
    }
}

fn run_record() -> RunRecord {
    serde_json::from_value(serde_json::json!({
        "landauer_version": "test", "model": "tiny", "model_path": "", "model_sha256": "",
        "architecture": "llama", "quantization": "Q8_0", "parameters": 0, "context_length": 4096,
        "device": "cpu", "threads": 1, "meter": "flaky", "meter_description": "",
        "meter_reason": "test", "meter_resolution_s": null, "meter_interval_s": 0.005,
        "idle_seconds": 0.0, "idle_power_w": null, "estimated": false, "kelvin": 300.0,
        "landauer_j_per_bit": 2.87e-21,
        "sampling": {"temperature": 0.0, "top_k": null, "top_p": null, "seed": 0, "greedy": true},
        "max_tokens": 0, "chat": false, "prompt": "", "prompt_text": "", "prompt_tokens": 0,
        "top_n": 3, "started_unix_s": 0.0
    }))
    .unwrap()
}

#[test]
fn a_failing_meter_marks_the_gap_and_the_run_goes_on() {
    let (_dir, mut engine) = tiny_engine(4096, false);
    let prompt = engine.encode("The cat sat").unwrap();

    let meter = Flaky {
        opened: Instant::now(),
        reads: 0,
    };
    let sampler = MeterSampler::start(Box::new(meter), Duration::from_millis(5));
    let sink = Collect::default();
    let mut rec = Recorder::new(run_record(), Some(sampler)).with_sink(sink.clone());
    // Long enough (well past the faulty reads at ~15-45 ms) on any machine.
    let opts = GenerateOptions {
        max_tokens: 1000,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        stop: None,
        stats_rows: usize::MAX,
    };
    let end = engine.generate(&prompt, &opts, &mut rec).unwrap();
    assert_eq!(end.generated_tokens, 1000);
    let s = rec.summary().unwrap();
    assert_eq!(s.meter_faults, 6);
    let toks: Vec<TokenRecord> = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|r| match r {
            Record::Token(t) => (**t).clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(toks.len(), 1000);
    assert!(toks.iter().any(|t| t.meter_gap), "the gap must be marked");
    assert!(toks.iter().any(|t| !t.meter_gap));
    assert!(
        toks.iter().all(|t| t.energy_j.is_some()),
        "interpolated across the gap"
    );
    let sum: f64 = toks.iter().map(|t| t.energy_j.unwrap()).sum();
    let total = s.energy_j.unwrap();
    assert!((sum - total).abs() <= 1e-9 * total, "{sum} vs {total}");
    // 50 W over the run, within a poll interval at either end.
    let expected = 50.0 * end.total_s;
    assert!(
        (total - expected).abs() <= 50.0 * 0.011 + 0.01 * expected,
        "{total} vs {expected}"
    );
}

/// Two simulated GPUs at 30 W and 90 W, with a die temperature and clocks.
struct TwoGpus {
    opened: Instant,
    last: f64,
}

impl EnergyMeter for TwoGpus {
    fn name(&self) -> &'static str {
        "two-gpus"
    }
    fn describe(&self) -> String {
        "two simulated GPUs".into()
    }
    fn estimated(&self) -> bool {
        false
    }
    fn read(&mut self) -> Result<EnergyReading, MeterError> {
        let at = Instant::now();
        self.last = at.duration_since(self.opened).as_secs_f64();
        Ok(EnergyReading {
            joules: 120.0 * self.last,
            at,
        })
    }
    fn parts(&self) -> Vec<landauer_meter::MeterPart> {
        vec![
            landauer_meter::MeterPart {
                name: "GPU 0".into(),
                joules: 30.0 * self.last,
            },
            landauer_meter::MeterPart {
                name: "GPU 1".into(),
                joules: 90.0 * self.last,
            },
        ]
    }
    fn telemetry(&mut self) -> Option<landauer_meter::Telemetry> {
        Some(landauer_meter::Telemetry {
            temperature_c: Some(61.0),
            sm_clock_mhz: Some(1980.0),
            mem_clock_mhz: Some(2619.0),
            power_instant_w: Some(120.0),
        })
    }
    fn default_interval(&self) -> Duration {
        Duration::from_millis(2)
    }
}

#[test]
fn gpu_breakdown_and_telemetry_reach_the_trace() {
    let (_dir, mut engine) = tiny_engine(4096, false);
    let prompt = engine.encode("The cat sat").unwrap();
    let meter = TwoGpus {
        opened: Instant::now(),
        last: 0.0,
    };
    let sampler = MeterSampler::start(Box::new(meter), Duration::from_millis(2));
    // Let the first telemetry reading land before the run.
    std::thread::sleep(Duration::from_millis(20));
    let sink = Collect::default();
    let mut rec = Recorder::new(run_record(), Some(sampler)).with_sink(sink.clone());
    let opts = GenerateOptions {
        max_tokens: 400,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        stop: None,
        stats_rows: usize::MAX,
    };
    engine.generate(&prompt, &opts, &mut rec).unwrap();
    let s = rec.summary().unwrap().clone();
    let total = s.energy_j.unwrap();
    assert_eq!(s.energy_by_part.len(), 2);
    let (a, b) = (&s.energy_by_part[0], &s.energy_by_part[1]);
    assert_eq!((a.name.as_str(), b.name.as_str()), ("GPU 0", "GPU 1"));
    assert!((a.share - 0.25).abs() < 1e-9 && (b.share - 0.75).abs() < 1e-9);
    assert!((a.joules + b.joules - total).abs() < 1e-9 * total);
    assert_eq!(s.temperature_c_mean, Some(61.0));
    assert_eq!(s.temperature_c_max, Some(61.0));
    assert_eq!(s.sm_clock_mhz_mean, Some(1980.0));
    assert_eq!(s.power_instant_w_mean, Some(120.0));
    let toks = sink.0.lock().unwrap();
    assert_eq!(toks.len(), 400);
    for r in toks.iter() {
        let Record::Token(t) = r else { unreachable!() };
        assert_eq!(t.temperature_c, Some(61.0));
        assert_eq!(t.mem_clock_mhz, Some(2619.0));
    }
}

/// 50 W, but the counter only moves every 100 ms (like NVML's).
struct Stepped(Instant);

impl EnergyMeter for Stepped {
    fn name(&self) -> &'static str {
        "stepped"
    }
    fn describe(&self) -> String {
        "a 100 ms counter".into()
    }
    fn estimated(&self) -> bool {
        false
    }
    fn read(&mut self) -> Result<EnergyReading, MeterError> {
        let at = Instant::now();
        let t = at.duration_since(self.0).as_secs_f64();
        Ok(EnergyReading {
            joules: 50.0 * 0.1 * (t / 0.1).floor(),
            at,
        })
    }
    fn default_interval(&self) -> Duration {
        Duration::from_millis(2)
    }
}

#[test]
fn the_end_of_a_run_is_measured_not_held_at_the_last_update() {
    let (_dir, mut engine) = tiny_engine(256, false);
    let prompt = engine.encode("The cat sat").unwrap();
    for max_tokens in [40, 90, 150] {
        let sampler =
            MeterSampler::start(Box::new(Stepped(Instant::now())), Duration::from_millis(2));
        // Two updates before the run, so its start is interpolated too.
        std::thread::sleep(Duration::from_millis(230));
        let mut rec = Recorder::new(run_record(), Some(sampler));
        let opts = GenerateOptions {
            max_tokens,
            sampling: SamplingParams::greedy(),
            ignore_eos: true,
            stop: None,
            stats_rows: usize::MAX,
        };
        let end = engine.generate(&prompt, &opts, &mut rec).unwrap();
        let total = rec.summary().unwrap().energy_j.unwrap();
        let expected = 50.0 * end.total_s;
        // Interpolating a constant power between updates is exact up to the poll interval.
        assert!(
            (total - expected).abs() <= 50.0 * 0.006,
            "{max_tokens} tokens in {:.3} s: {total:.3} J measured vs {expected:.3} J",
            end.total_s
        );
    }
}

/// 50 W, read continuously.
struct Steady(Instant);

impl EnergyMeter for Steady {
    fn name(&self) -> &'static str {
        "steady"
    }
    fn describe(&self) -> String {
        "50 W".into()
    }
    fn estimated(&self) -> bool {
        false
    }
    fn read(&mut self) -> Result<EnergyReading, MeterError> {
        let at = Instant::now();
        Ok(EnergyReading {
            joules: 50.0 * at.duration_since(self.0).as_secs_f64(),
            at,
        })
    }
    fn default_interval(&self) -> Duration {
        Duration::from_millis(1)
    }
}

#[test]
fn a_batch_steps_energy_is_shared_among_its_tokens() {
    let (_dir, mut engine) = tiny_engine(256, true);
    let prompts: Vec<Vec<u32>> = ["The cat sat", "Hello", "Once upon a time, there was"]
        .iter()
        .map(|p| engine.encode(p).unwrap())
        .collect();
    let sampler = MeterSampler::start(Box::new(Steady(Instant::now())), Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(20));
    let sink = Collect::default();
    let mut rec = Recorder::new(run_record(), Some(sampler)).with_sink(sink.clone());
    let opts = GenerateOptions {
        max_tokens: 30,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        stop: None,
        stats_rows: usize::MAX,
    };
    let end = engine.generate_batch(&prompts, &opts, &mut rec).unwrap();
    let s = rec.summary().unwrap().clone();
    assert_eq!(s.tokens, 90);
    let toks = sink.0.lock().unwrap();
    let toks: Vec<&TokenRecord> = toks
        .iter()
        .map(|r| match r {
            Record::Token(t) => t.as_ref(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(toks.len(), 90);
    assert!(toks.iter().all(|t| t.step_tokens == 3));
    for seq in 0..3 {
        assert_eq!(toks.iter().filter(|t| t.seq == seq).count(), 30);
    }
    // Each token carries a third of its step's energy; together they are the run's total.
    let sum: f64 = toks.iter().map(|t| t.energy_j.unwrap()).sum();
    let total = s.energy_j.unwrap();
    assert!((sum - total).abs() <= 1e-9 * total, "{sum} vs {total}");
    for t in &toks {
        let step = 50.0 * (t.t_end_s - t.t_start_s);
        assert!(
            (t.energy_j.unwrap() - step / 3.0).abs() <= 1e-6 + 0.02 * step,
            "{t:?}"
        );
    }
    assert!((total - 50.0 * end.total_s).abs() <= 50.0 * 0.004 + 0.01 * total);
    // 3 prefill tokens; the decode rate counts all rows.
    let decode = (90 - 3) as f64 / s.decode_s;
    assert!((s.decode_tokens_per_s.unwrap() - decode).abs() < 1e-9 * decode);
}

/// A server's sampler runs for its lifetime and every request's recorder reads it: each run
/// gets the energy of its own window only (not what came before it, not the idle time between
/// runs), the sampler keeps running after a run ends, and what it has let go of does not
/// disturb a later run.
#[test]
fn runs_share_one_long_running_sampler() {
    let (_dir, mut engine) = tiny_engine(4096, false);
    let prompt = engine.encode("The cat sat").unwrap();
    let sampler = Arc::new(MeterSampler::start(
        Box::new(Steady(Instant::now())),
        Duration::from_millis(5),
    ));
    const W: f64 = 50.0;
    let opts = GenerateOptions {
        max_tokens: 300,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        stop: None,
        stats_rows: usize::MAX,
    };
    let mut totals = Vec::new();
    for round in 0..3 {
        // Idle time before each run, which no run may be billed for.
        std::thread::sleep(Duration::from_millis(150));
        if round == 2 {
            sampler.forget_before(sampler.epoch().elapsed().as_secs_f64() - 0.05);
        }
        let sink = Collect::default();
        let mut rec =
            Recorder::with_shared_sampler(run_record(), sampler.clone()).with_sink(sink.clone());
        let end = engine.generate(&prompt, &opts, &mut rec).unwrap();
        let s = rec.summary().unwrap();
        let total = s.energy_j.unwrap();
        // 50 W over the run's own window, within a poll interval at either end.
        let expected = W * end.total_s;
        assert!(
            (total - expected).abs() <= W * 0.011 + 0.01 * expected,
            "run {round}: {total} J vs {expected} J"
        );
        let sum: f64 = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|r| match r {
                Record::Token(t) => t.energy_j.unwrap(),
                _ => 0.0,
            })
            .sum();
        assert!((sum - total).abs() <= 1e-9 * total, "{sum} vs {total}");
        assert_eq!(s.sampler_cpu_s, None, "the sampler is not the run's alone");
        totals.push(total);
    }
    // Still sampling after the runs.
    let n = sampler.samples_since(0, &mut Vec::new());
    std::thread::sleep(Duration::from_millis(30));
    assert!(sampler.samples_since(0, &mut Vec::new()) > n);
}
