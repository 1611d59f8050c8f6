//! A thread per meter that polls it at a fixed interval and keeps every reading.

use crate::attribution::CounterSample;
use crate::{thread_cpu_seconds, EnergyMeter, MeterPart, Telemetry};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a meter is, for records.
#[derive(Debug, Clone)]
pub struct MeterInfo {
    pub name: String,
    pub description: String,
    pub estimated: bool,
}

/// A failed read, at seconds on the sampler's clock.
#[derive(Debug, Clone)]
pub struct MeterFault {
    pub t: f64,
    pub message: String,
}

/// Telemetry (temperature, clocks, instantaneous power) at seconds on the sampler's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TelemetrySample {
    pub t: f64,
    pub telemetry: Telemetry,
}

/// How often the sampler asks a meter for telemetry (slower calls than the energy counter).
pub const TELEMETRY_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Shared {
    samples: Vec<CounterSample>,
    faults: Vec<MeterFault>,
    telemetry: Vec<TelemetrySample>,
    /// The meter's per-part totals at its last successful read.
    parts: Vec<MeterPart>,
    /// Readings and faults let go by [`MeterSampler::forget_before`]: indices handed out
    /// count them, so that a reader's position stays valid.
    dropped: usize,
    dropped_faults: usize,
}

/// Polls a meter on its own thread, stamping each reading with a monotonic clock
/// (seconds since [`MeterSampler::epoch`]).
pub struct MeterSampler {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<f64>>,
    epoch: Instant,
    info: MeterInfo,
    interval: Duration,
}

/// What the sampler saw, handed back when it stops.
#[derive(Debug, Clone)]
pub struct SamplerReport {
    /// The readings still held: index `first_sample` onwards.
    pub samples: Vec<CounterSample>,
    pub faults: Vec<MeterFault>,
    /// Readings and faults let go before the first held one ([`MeterSampler::forget_before`]).
    pub first_sample: usize,
    pub first_fault: usize,
    /// CPU time the sampler thread used, seconds.
    pub cpu_s: f64,
    /// How long it ran, seconds.
    pub wall_s: f64,
    pub telemetry: Vec<TelemetrySample>,
    /// Per-part totals at the last reading (empty for single-part meters).
    pub parts: Vec<MeterPart>,
}

impl MeterSampler {
    /// Starts polling `meter` every `interval`.
    pub fn start(mut meter: Box<dyn EnergyMeter>, interval: Duration) -> Self {
        let info = MeterInfo {
            name: meter.name().to_string(),
            description: meter.describe(),
            estimated: meter.estimated(),
        };
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let handle = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("meter-{}", info.name))
                .spawn(move || {
                    let cpu0 = thread_cpu_seconds().unwrap_or(0.0);
                    let mut telemetry_due = Some(epoch);
                    loop {
                        // Read first, then check for stop: the last reading is taken after
                        // the stop request, so it covers the whole measured span.
                        let r = meter.read();
                        let now = Instant::now();
                        let parts = if r.is_ok() { meter.parts() } else { Vec::new() };
                        // Telemetry every TELEMETRY_INTERVAL; never again once a meter has none.
                        let tel = match telemetry_due {
                            Some(due) if now >= due => {
                                let t = meter.telemetry();
                                telemetry_due = t.map(|_| now + TELEMETRY_INTERVAL);
                                t
                            }
                            _ => None,
                        };
                        {
                            let mut s = shared.lock().expect("sampler lock");
                            if let Some(telemetry) = tel {
                                s.telemetry.push(TelemetrySample {
                                    t: now.duration_since(epoch).as_secs_f64(),
                                    telemetry,
                                });
                            }
                            if !parts.is_empty() {
                                s.parts = parts;
                            }
                            match r {
                                Ok(r) => s.samples.push(CounterSample {
                                    t: r.at.duration_since(epoch).as_secs_f64(),
                                    joules: r.joules,
                                }),
                                Err(e) => s.faults.push(MeterFault {
                                    t: now.duration_since(epoch).as_secs_f64(),
                                    message: e.to_string(),
                                }),
                            }
                        }
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        std::thread::park_timeout(interval);
                    }
                    thread_cpu_seconds().unwrap_or(0.0) - cpu0
                })
                .expect("spawn the meter sampler thread")
        };
        Self {
            shared,
            stop,
            handle: Some(handle),
            epoch,
            info,
            interval,
        }
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    pub fn info(&self) -> &MeterInfo {
        &self.info
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Appends the readings taken since the first `from` to `out` (those still held); returns
    /// how many there have been in all (pass it as `from` next time).
    pub fn samples_since(&self, from: usize, out: &mut Vec<CounterSample>) -> usize {
        let s = self.shared.lock().expect("sampler lock");
        let local = from.saturating_sub(s.dropped);
        if local < s.samples.len() {
            out.extend_from_slice(&s.samples[local..]);
        }
        s.dropped + s.samples.len()
    }

    /// Like [`Self::samples_since`], and the faults since the first `faults_from` too, read
    /// together so that no reading is seen before a fault that preceded it.
    pub fn poll_since(
        &self,
        (from, faults_from): (usize, usize),
        out: &mut Vec<CounterSample>,
        faults: &mut Vec<MeterFault>,
    ) -> (usize, usize) {
        let s = self.shared.lock().expect("sampler lock");
        let local = from.saturating_sub(s.dropped);
        if local < s.samples.len() {
            out.extend_from_slice(&s.samples[local..]);
        }
        let local = faults_from.saturating_sub(s.dropped_faults);
        if local < s.faults.len() {
            faults.extend_from_slice(&s.faults[local..]);
        }
        (
            s.dropped + s.samples.len(),
            s.dropped_faults + s.faults.len(),
        )
    }

    /// The index of the update point in effect at `t` (seconds on the sampler's clock): take
    /// the last reading at or before `t` (the first held one when none is), then walk back
    /// to the first reading of its run of equal `joules` values (where that value first
    /// appeared), but not past the first held reading.
    ///
    /// A reader of a window that starts at `t` starts there: an
    /// [`EnergyTimeline`](crate::attribution::EnergyTimeline) built from the readings from
    /// this index on has the same update points from there on as one built from every
    /// reading, so it interpolates the same energy for any time from `t` on, and readers
    /// whose windows tile a span add up to the span's energy. (Starting at a later reading
    /// that only repeats the value would interpolate from that reading instead.)
    pub fn index_at(&self, t: f64) -> usize {
        let s = self.shared.lock().expect("sampler lock");
        s.dropped + update_point_at(&s.samples, t)
    }

    /// How many faults there have been.
    pub fn fault_count(&self) -> usize {
        let s = self.shared.lock().expect("sampler lock");
        s.dropped_faults + s.faults.len()
    }

    /// The telemetry readings from `a` to `b` + 0.1 s, and the one in effect at `a` (readings
    /// come every 100 ms: a shorter window may have none of its own).
    pub fn telemetry_between(&self, a: f64, b: f64) -> Vec<TelemetrySample> {
        let s = self.shared.lock().expect("sampler lock");
        let before = s.telemetry.iter().rposition(|t| t.t < a);
        s.telemetry
            .iter()
            .enumerate()
            .filter(|(i, t)| Some(*i) == before || (t.t >= a && t.t <= b + 0.1))
            .map(|(_, t)| *t)
            .collect()
    }

    /// Lets go of what was read before `t`, so that a sampler that runs for days (a
    /// server's) holds only what its readers still need: keeps the readings from the update
    /// point in effect at `t` on (the one [`Self::index_at`] gives for `t`, so that no index
    /// it hands out for `t` or later is already let go of), the faults at or after `t`, and
    /// the telemetry reading in effect at `t` and those after it. Indices already handed out
    /// stay valid.
    pub fn forget_before(&self, t: f64) {
        let mut s = self.shared.lock().expect("sampler lock");
        let keep_from = update_point_at(&s.samples, t);
        s.samples.drain(..keep_from);
        s.dropped += keep_from;
        let faults = s.faults.partition_point(|f| f.t < t);
        s.faults.drain(..faults);
        s.dropped_faults += faults;
        let tel = s.telemetry.partition_point(|x| x.t < t).saturating_sub(1);
        s.telemetry.drain(..tel);
    }

    /// The latest telemetry reading, if the meter has any.
    pub fn latest_telemetry(&self) -> Option<TelemetrySample> {
        self.shared
            .lock()
            .expect("sampler lock")
            .telemetry
            .last()
            .copied()
    }

    /// The meter's per-part totals at its latest reading (empty for single-part meters).
    pub fn parts(&self) -> Vec<MeterPart> {
        self.shared.lock().expect("sampler lock").parts.clone()
    }

    /// Waits until the counter has updated after `t` (seconds on the sampler's clock), so that
    /// the energy up to `t` is measured rather than held at the last update; gives up after
    /// `timeout`. Returns whether it saw the update.
    pub fn wait_past(&self, t: f64, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            {
                let s = self.shared.lock().expect("sampler lock");
                let v = &s.samples;
                // The value at `t`: the last reading before it, else the first after it.
                let i = v.partition_point(|x| x.t <= t);
                if let Some(base) = v.get(i.saturating_sub(1)) {
                    if v[i..].iter().any(|x| x.joules != base.joules) {
                        return true;
                    }
                }
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(self.interval.min(Duration::from_millis(5)));
        }
    }

    /// The timeline of every reading so far, once the counter has updated past `t` (or
    /// `timeout` passed): what the energy of a window ending at `t` is read from.
    pub fn timeline_through(
        &self,
        t: f64,
        timeout: Duration,
    ) -> crate::attribution::EnergyTimeline {
        self.wait_past(t, timeout);
        let mut all = Vec::new();
        self.samples_since(0, &mut all);
        crate::attribution::EnergyTimeline::from_samples(&all)
    }

    /// Waits until the counter has changed `updates` times (or `timeout` passes) and returns
    /// its update period: the median interval between changes.
    pub fn probe_resolution(&self, updates: usize, timeout: Duration) -> Option<f64> {
        let start = Instant::now();
        loop {
            let mut all = Vec::new();
            self.samples_since(0, &mut all);
            let tl = crate::attribution::EnergyTimeline::from_samples(&all);
            if tl.points().len() > updates || start.elapsed() >= timeout {
                return tl.update_period();
            }
            std::thread::sleep(self.interval);
        }
    }

    /// Measures idle power: waits `seconds` while polling and returns the mean power over
    /// them, watts (None when the counter did not update in that time).
    pub fn measure_idle(&self, seconds: f64) -> Option<f64> {
        let a = self.epoch.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        // One more poll so that the window's end is covered.
        std::thread::sleep(self.interval * 2);
        let b = a + seconds;
        let mut all = Vec::new();
        self.samples_since(0, &mut all);
        let tl = crate::attribution::EnergyTimeline::from_samples(&all);
        tl.update_period()?;
        tl.mean_power(a, b)
    }

    /// Stops the thread after one last reading and returns everything it saw.
    pub fn stop(mut self) -> SamplerReport {
        self.stop.store(true, Ordering::Release);
        let cpu_s = match self.handle.take() {
            Some(h) => {
                h.thread().unpark();
                h.join().unwrap_or(0.0)
            }
            None => 0.0,
        };
        let wall_s = self.epoch.elapsed().as_secs_f64();
        let mut s = self.shared.lock().expect("sampler lock");
        SamplerReport {
            samples: std::mem::take(&mut s.samples),
            faults: std::mem::take(&mut s.faults),
            first_sample: s.dropped,
            first_fault: s.dropped_faults,
            cpu_s,
            wall_s,
            telemetry: std::mem::take(&mut s.telemetry),
            parts: std::mem::take(&mut s.parts),
        }
    }
}

/// The position in `samples` (polls in time order) of the update point in effect at `t`: the
/// last poll at or before `t` (the first poll when none is), walked back to the first poll of
/// its run of equal `joules` values, never before `samples[0]`. 0 when `samples` is empty.
fn update_point_at(samples: &[CounterSample], t: f64) -> usize {
    let last = samples.partition_point(|x| x.t <= t).saturating_sub(1);
    let Some(value) = samples.get(last).map(|x| x.joules) else {
        return 0;
    };
    samples[..last]
        .iter()
        .rposition(|x| x.joules != value)
        .map_or(0, |i| i + 1)
}

impl Drop for MeterSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EnergyReading, MeterError};

    /// A counter that rises 1 J per read and fails on reads 5 and 6.
    struct Flaky(u32);
    impl EnergyMeter for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn describe(&self) -> String {
            "test".into()
        }
        fn estimated(&self) -> bool {
            false
        }
        fn read(&mut self) -> Result<EnergyReading, MeterError> {
            self.0 += 1;
            if self.0 == 5 || self.0 == 6 {
                return Err(MeterError::CpuTime(std::io::Error::other(
                    "simulated fault",
                )));
            }
            Ok(EnergyReading {
                joules: self.0 as f64,
                at: Instant::now(),
            })
        }
    }

    /// Two parts rising 1 J and 2 J per read, with telemetry.
    struct TwoGpus(u32);
    impl EnergyMeter for TwoGpus {
        fn name(&self) -> &'static str {
            "two"
        }
        fn describe(&self) -> String {
            "test".into()
        }
        fn estimated(&self) -> bool {
            false
        }
        fn read(&mut self) -> Result<EnergyReading, MeterError> {
            self.0 += 1;
            Ok(EnergyReading {
                joules: 3.0 * self.0 as f64,
                at: Instant::now(),
            })
        }
        fn parts(&self) -> Vec<MeterPart> {
            vec![
                MeterPart {
                    name: "a".into(),
                    joules: self.0 as f64,
                },
                MeterPart {
                    name: "b".into(),
                    joules: 2.0 * self.0 as f64,
                },
            ]
        }
        fn telemetry(&mut self) -> Option<Telemetry> {
            Some(Telemetry {
                temperature_c: Some(40.0 + self.0 as f64),
                ..Default::default()
            })
        }
    }

    #[test]
    fn keeps_parts_and_samples_telemetry_slower_than_energy() {
        let s = MeterSampler::start(Box::new(TwoGpus(0)), Duration::from_millis(2));
        std::thread::sleep(Duration::from_millis(350));
        let live = s.parts();
        assert_eq!(live.len(), 2);
        assert!(s.latest_telemetry().is_some());
        let r = s.stop();
        let (a, b) = (r.parts[0].joules, r.parts[1].joules);
        assert_eq!(b, 2.0 * a);
        assert_eq!(a + b, r.samples.last().unwrap().joules);
        // Telemetry every ~100 ms, energy every ~2 ms.
        assert!(
            (2..=6).contains(&r.telemetry.len()),
            "{} telemetry samples in 350 ms",
            r.telemetry.len()
        );
        assert!(r.samples.len() > 5 * r.telemetry.len());
        let temps: Vec<f64> = r
            .telemetry
            .iter()
            .map(|t| t.telemetry.temperature_c.unwrap())
            .collect();
        assert!(temps.windows(2).all(|w| w[1] > w[0]));
    }

    /// A counter that steps by 1 J every 50 ms.
    struct Slow(Instant);
    impl EnergyMeter for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn describe(&self) -> String {
            "test".into()
        }
        fn estimated(&self) -> bool {
            false
        }
        fn read(&mut self) -> Result<EnergyReading, MeterError> {
            let at = Instant::now();
            Ok(EnergyReading {
                joules: (at.duration_since(self.0).as_secs_f64() / 0.05).floor(),
                at,
            })
        }
    }

    #[test]
    fn waits_for_the_counter_to_pass_a_time() {
        let s = MeterSampler::start(Box::new(Slow(Instant::now())), Duration::from_millis(2));
        let now = s.epoch().elapsed().as_secs_f64();
        let t0 = Instant::now();
        assert!(s.wait_past(now, Duration::from_secs(2)));
        let waited = t0.elapsed().as_secs_f64();
        assert!(waited <= 0.2, "waited {waited} s for a 50 ms counter");
        let r = s.stop();
        assert!(r
            .samples
            .iter()
            .any(|x| x.t > now && x.joules > r.samples[0].joules));
        // A counter that never moves: gives up at the timeout.
        struct Stuck;
        impl EnergyMeter for Stuck {
            fn name(&self) -> &'static str {
                "stuck"
            }
            fn describe(&self) -> String {
                "test".into()
            }
            fn estimated(&self) -> bool {
                false
            }
            fn read(&mut self) -> Result<EnergyReading, MeterError> {
                Ok(EnergyReading {
                    joules: 1.0,
                    at: Instant::now(),
                })
            }
        }
        let s = MeterSampler::start(Box::new(Stuck), Duration::from_millis(2));
        assert!(!s.wait_past(0.0, Duration::from_millis(30)));
    }

    #[test]
    fn polls_until_stopped_and_records_faults() {
        let s = MeterSampler::start(Box::new(Flaky(0)), Duration::from_millis(2));
        let period = s.probe_resolution(10, Duration::from_secs(5)).unwrap();
        assert!(period > 0.0015 && period < 0.5, "period {period}");
        std::thread::sleep(Duration::from_millis(20));
        let r = s.stop();
        assert!(r.samples.len() >= 10);
        assert_eq!(r.faults.len(), 2);
        assert!(r.faults[0].message.contains("simulated fault"));
        // Time-ordered, and the counter went on after the faults.
        assert!(r
            .samples
            .windows(2)
            .all(|w| w[1].t >= w[0].t && w[1].joules > w[0].joules));
        assert!(r.cpu_s >= 0.0 && r.cpu_s < r.wall_s);
    }

    /// What a long-running sampler lets go of leaves every index handed out valid: a reader
    /// resumes where it was, `index_at` points at the reading in effect, and the faults
    /// before the cut are gone from what is held but still counted.
    #[test]
    fn forgetting_keeps_indices_and_the_reading_in_effect() {
        let s = MeterSampler::start(Box::new(Flaky(0)), Duration::from_millis(2));
        while s.samples_since(0, &mut Vec::new()) < 12 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut all = Vec::new();
        let n = s.samples_since(0, &mut all);
        let cut = all[8].t;
        assert_eq!(s.fault_count(), 2, "reads 5 and 6 failed");
        s.forget_before(cut + 1e-9);
        // Held from the reading in effect at the cut (index 8) on.
        let mut held = Vec::new();
        let m = s.samples_since(0, &mut held);
        assert!(m >= n);
        assert_eq!(held[0], all[8]);
        assert_eq!(s.index_at(cut + 1e-9), 8);
        // A reader at index 10 gets readings 10.. as before.
        let mut from10 = Vec::new();
        s.samples_since(10, &mut from10);
        assert_eq!(&from10[..n - 10], &all[10..n]);
        // The faults (before the cut) are let go of, still counted.
        let (mut fresh, mut faults) = (Vec::new(), Vec::new());
        let (_, f) = s.poll_since((0, 0), &mut fresh, &mut faults);
        assert_eq!((f, faults.len()), (2, 0));
        let r = s.stop();
        assert_eq!((r.first_sample, r.first_fault), (8, 2));
        assert_eq!(r.samples[0], all[8]);
    }

    fn polls(values: &[f64]) -> Vec<CounterSample> {
        values
            .iter()
            .enumerate()
            .map(|(i, &joules)| CounterSample {
                t: 0.01 * i as f64,
                joules,
            })
            .collect()
    }

    /// The update point in effect at a time inside a run of repeated values is the first
    /// poll of that run, not the last poll before the time.
    #[test]
    fn update_point_is_the_first_poll_of_a_run_of_repeats() {
        // Runs start at 0, 3, 4 and 8; polls at 0.01 s steps.
        let v = polls(&[1.0, 1.0, 1.0, 2.0, 5.0, 5.0, 5.0, 5.0, 7.0, 7.0]);
        let at = |t: f64| update_point_at(&v, t);
        assert_eq!(at(0.025), 0);
        assert_eq!(at(0.035), 3, "an update point is its own run's start");
        for t in [0.04, 0.045, 0.055, 0.065, 0.075] {
            assert_eq!(at(t), 4, "at {t}");
        }
        assert_eq!(at(0.085), 8);
        assert_eq!(at(5.0), 8, "after the last poll: the last run's start");
        assert_eq!(at(-1.0), 0, "before the first poll: the first poll");
        // Not past the first poll held, even when the run began before it.
        assert_eq!(update_point_at(&v[5..], 0.075), 0);
        assert_eq!(update_point_at(&v[5..], 0.085), 3);
        assert_eq!(update_point_at(&[], 1.0), 0);
    }

    /// Polls every 7 ms (with a phase) of a counter that updates every 50 ms with a power
    /// that changes at each update: runs of 7 or 8 equal values.
    fn stepped_polls() -> Vec<CounterSample> {
        let mut out = Vec::new();
        let (mut joules, mut step) = (0.0, 0);
        for i in 0..400 {
            let t = 0.0013 + 0.007 * i as f64;
            while 0.05 * (step + 1) as f64 <= t {
                step += 1;
                joules += 3.0 + (step % 5) as f64 * 1.7;
            }
            out.push(CounterSample { t, joules });
        }
        out
    }

    /// Timelines read from `index_at`'s start agree with the timeline of every poll, so
    /// readers whose windows tile a span add up to the span's energy.
    #[test]
    fn timelines_from_the_update_point_agree_with_the_whole_history() {
        use crate::attribution::EnergyTimeline;
        use rand::{Rng, SeedableRng};

        let all = stepped_polls();
        let whole = EnergyTimeline::from_samples(&all);
        let from = |t: f64| EnergyTimeline::from_samples(&all[update_point_at(&all, t)..]);
        // Times whose last poll repeats the value before it (not an update point).
        let (a, m, b) = (0.52, 1.13, 2.33);
        for t in [a, m, b] {
            let last = all.partition_point(|x| x.t <= t) - 1;
            assert_eq!(
                all[last].joules,
                all[last - 1].joules,
                "{t} is inside a run"
            );
            let i = update_point_at(&all, t);
            assert!(i < last && all[i].joules == all[last].joules);
            assert!(all[i - 1].joules != all[i].joules);
        }
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * y.abs();

        // Windows of 1 to 60 ms inside [a, b], read from a's start.
        let reader = from(a);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut t = a;
        while t < b {
            let end = (t + rng.random_range(0.001..0.060)).min(b);
            let (x, y) = (reader.window(t, end).joules, whole.window(t, end).joules);
            assert!(close(x, y), "[{t}, {end}]: {x} vs {y}");
            t = end;
        }

        // Two readers, [a, m] and [m, b], each from its own start.
        let span = whole.window(a, b).joules;
        let sum = from(a).window(a, m).joules + from(m).window(m, b).joules;
        assert!(close(sum, span), "{sum} vs {span}");

        // Starting at the last poll before the window instead does not add up.
        let late =
            |t: f64| EnergyTimeline::from_samples(&all[all.partition_point(|x| x.t <= t) - 1..]);
        let off = late(a).window(a, m).joules + late(m).window(m, b).joules;
        assert!((off - span).abs() > 1e-6 * span, "{off} vs {span}");
    }

    /// A counter that reads `n / 4` joules at its n-th read (from 0): runs of four equal
    /// readings, starting at the indices that are multiples of 4.
    struct Quarters(u32);
    impl EnergyMeter for Quarters {
        fn name(&self) -> &'static str {
            "quarters"
        }
        fn describe(&self) -> String {
            "test".into()
        }
        fn estimated(&self) -> bool {
            false
        }
        fn read(&mut self) -> Result<EnergyReading, MeterError> {
            let n = self.0;
            self.0 += 1;
            Ok(EnergyReading {
                joules: (n / 4) as f64,
                at: Instant::now(),
            })
        }
    }

    /// After `forget_before(t)`, `index_at` for `t` or later points at a held reading, the
    /// update point in effect, and a reader from there gets that update point first.
    #[test]
    fn forgetting_keeps_the_update_point_in_effect() {
        let s = MeterSampler::start(Box::new(Quarters(0)), Duration::from_millis(1));
        while s.samples_since(0, &mut Vec::new()) < 24 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut all = Vec::new();
        s.samples_since(0, &mut all);
        assert!(all.windows(2).all(|w| w[1].t > w[0].t));
        // Between reading i and the next.
        let mid = |i: usize| (all[i].t + all[i + 1].t) / 2.0;
        assert_eq!(
            s.index_at(mid(10)),
            8,
            "reading 10 repeats reading 8's value"
        );

        s.forget_before(mid(10));
        let mut held = Vec::new();
        s.samples_since(0, &mut held);
        assert_eq!(
            held[0], all[8],
            "held from the update point in effect at the cut"
        );
        for i in 10..22 {
            let at = s.index_at(mid(i));
            assert_eq!(at, i / 4 * 4, "at reading {i}");
            let mut from = Vec::new();
            s.samples_since(at, &mut from);
            assert_eq!(from[0], all[at], "reading {at} is held");
            assert!(all[at - 1].joules != from[0].joules, "an update point");
        }
        // Forgetting again inside the same run keeps that run's start.
        s.forget_before(mid(11));
        assert_eq!(s.index_at(mid(11)), 8);
        let r = s.stop();
        assert_eq!(r.first_sample, 8);
        assert_eq!(r.samples[0], all[8]);
    }
}
