//! The meter's energy over the engine's busy time, read apart from any response: what the
//! responses' bills must add up to.
//!
//! The engine thread hands over the span of every step it runs ([`ContinuousBatch::last_span`]
//! in landauer-engine); the ledger reads the shared meter sampler over those spans, as one
//! timeline, once the counter has updated past them. Each response is billed its tokens'
//! windows, a step's energy shared by the tokens it produced, so the bills add up to this
//! figure; a drift between the two would be an attribution bug (a window counted twice or
//! not at all), not a measurement.
//!
//! [`ContinuousBatch::last_span`]: landauer_engine::continuous::ContinuousBatch::last_span

use landauer_meter::attribution::{CounterSample, EnergyTimeline};
use landauer_meter::sampler::MeterSampler;
use prometheus::{Counter, Gauge};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

pub struct Ledger {
    sampler: Arc<MeterSampler>,
    counter: Counter,
    /// Mean power over the busy time read since the last whole second of it.
    power: Gauge,
    /// Busy seconds and joules read since `power` was last set.
    recent: (f64, f64),
    /// Busy spans not yet read, seconds on the sampler's clock (adjacent ones merged).
    pending: VecDeque<(f64, f64)>,
    /// The readings from the update point in effect at the first pending span on (None
    /// while nothing is pending: it restarts there, so that it does not grow while idle).
    timeline: Option<EnergyTimeline>,
    /// Readings taken into the timeline so far (the sampler's count).
    seen: usize,
    /// Time of the latest reading taken.
    last_poll: f64,
}

impl Ledger {
    /// A ledger over `sampler`, adding what it reads to `counter` and setting `power` to
    /// the mean power of the busy time read lately (up to about a second of it).
    pub fn new(sampler: Arc<MeterSampler>, counter: Counter, power: Gauge) -> Self {
        Ledger {
            sampler,
            counter,
            power,
            recent: (0.0, 0.0),
            pending: VecDeque::new(),
            timeline: None,
            seen: 0,
            last_poll: f64::NEG_INFINITY,
        }
    }

    /// A span the engine was busy.
    pub fn busy(&mut self, (a, b): (Instant, Instant)) {
        let epoch = self.sampler.epoch();
        let secs = |t: Instant| t.saturating_duration_since(epoch).as_secs_f64();
        let (a, b) = (secs(a), secs(b));
        if self.timeline.is_none() {
            self.seen = self.sampler.index_at(a);
            self.timeline = Some(EnergyTimeline::default());
        }
        match self.pending.back_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ => self.pending.push_back((a, b)),
        }
    }

    /// Reads the spans the counter has updated past into the counter.
    pub fn settle(&mut self) {
        let Some(timeline) = self.timeline.as_mut() else {
            return;
        };
        let mut fresh: Vec<CounterSample> = Vec::new();
        self.seen = self.sampler.samples_since(self.seen, &mut fresh);
        for s in fresh {
            self.last_poll = self.last_poll.max(s.t);
            timeline.push(s);
        }
        // As the recorder does: a span is read once the counter has updated past its end, or
        // has been polled well past it without changing.
        let period = timeline.update_period().unwrap_or(0.0);
        while let Some(&(a, b)) = self.pending.front() {
            let updated = timeline.last_update().is_some_and(|u| u >= b);
            let stale = self.last_poll >= b + (2.0 * period).max(0.25);
            if !(updated || stale) {
                break;
            }
            let j = timeline.window(a, b).joules.max(0.0);
            self.counter.inc_by(j);
            self.pending.pop_front();
            self.recent.0 += b - a;
            self.recent.1 += j;
            if self.recent.0 > 0.0 {
                self.power.set(self.recent.1 / self.recent.0);
            }
            // The next reading starts afresh once a second has been read.
            if self.recent.0 >= 1.0 {
                self.recent = (0.0, 0.0);
            }
        }
        if self.pending.is_empty() {
            self.timeline = None;
        }
    }
}
