//! `/metrics` in Prometheus' text format, so that a fleet of servers is watched by an existing
//! Prometheus: counters of energy, tokens and bits, requests by outcome, the queue, batch
//! sizes and power.

use prometheus::{
    Counter, Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The server's metrics, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    pub energy_joules: Counter,
    pub prefill_energy_joules: Counter,
    pub tokens: IntCounterVec,
    pub entropy_bits: Counter,
    pub requests: IntCounterVec,
    pub queue_depth: IntGauge,
    /// Requests in the running batch (decoding, or waiting for their prompt pass).
    pub running: IntGauge,
    pub batch_size: Histogram,
    /// The meter's energy over the engine's busy time ([`crate::ledger`]).
    pub busy_energy_joules: Counter,
    pub power_watts: Gauge,
    pub responses: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        // Every metric is registered once, here: a failure is a programming error.
        fn add<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
            r.register(Box::new(m.clone())).expect("registered once");
            m
        }
        let counter = |name: &str, help: &str| {
            add(&registry, Counter::new(name, help).expect("valid metric"))
        };
        let labelled = |name: &str, help: &str, labels: &[&str]| {
            add(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let energy_joules = counter(
            "landauer_energy_joules_total",
            "Energy the meter attributed to generated tokens, joules (prefill included)",
        );
        let prefill_energy_joules = counter(
            "landauer_prefill_energy_joules_total",
            "Energy of prompt passes (each response's first token), joules",
        );
        let entropy_bits = counter(
            "landauer_entropy_bits_total",
            "Shannon entropy of the generated tokens' distributions, bits",
        );
        let power_watts = add(
            &registry,
            Gauge::new(
                "landauer_power_watts",
                "Mean power while the engine worked, over up to its latest second of busy time, watts",
            )
            .expect("valid metric"),
        );
        let tokens = labelled("landauer_tokens_total", "Tokens, by phase", &["phase"]);
        let requests = labelled(
            "landauer_requests_total",
            "HTTP requests, by endpoint and status",
            &["endpoint", "status"],
        );
        let queue_depth = add(
            &registry,
            IntGauge::new("landauer_queue_depth", "Requests waiting for the engine")
                .expect("valid metric"),
        );
        let running = add(
            &registry,
            IntGauge::new("landauer_running_requests", "Requests in the running batch")
                .expect("valid metric"),
        );
        let busy_energy_joules = counter(
            "landauer_busy_energy_joules_total",
            "Energy the meter measured while the engine worked (every step), joules: what the responses' energy_j add up to",
        );
        let batch_size = add(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "landauer_batch_size",
                    "Requests decoded together, one observation per decode step",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
                ]),
            )
            .expect("valid metric"),
        );
        let responses = add(
            &registry,
            IntCounter::new("landauer_responses_total", "Completed responses")
                .expect("valid metric"),
        );
        Metrics {
            registry,
            energy_joules,
            prefill_energy_joules,
            tokens,
            entropy_bits,
            requests,
            queue_depth,
            running,
            batch_size,
            busy_energy_joules,
            power_watts,
            responses,
        }
    }

    /// Adds a finished response's figures.
    pub fn record(&self, s: &landauer_trace::SummaryRecord) {
        self.responses.inc();
        let prefill = s.tokens.min(1) as u64;
        self.tokens.with_label_values(&["prefill"]).inc_by(prefill);
        self.tokens
            .with_label_values(&["decode"])
            .inc_by(s.tokens as u64 - prefill);
        // Counters only rise (a reading error could make a window's energy negative).
        self.entropy_bits.inc_by(s.total_entropy_bits.max(0.0));
        if let Some(j) = s.energy_j {
            self.energy_joules.inc_by(j.max(0.0));
        }
        if let Some(j) = s.prefill_energy_j {
            self.prefill_energy_joules.inc_by(j.max(0.0));
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of valid metrics");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
