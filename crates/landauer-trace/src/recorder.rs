//! Turns engine events into records: entropy, surprisal, top-N, energy, the Landauer yardstick.

use crate::records::{Alternative, PartEnergy, RunRecord, SummaryRecord, TokenRecord};
use crate::RecordSink;
use landauer_engine::{Needs, RunEnd, RunStart, SinkError, TokenEvent, TokenSink};
use landauer_meter::attribution::{CounterSample, EnergyTimeline};
use landauer_meter::sampler::{MeterFault, MeterSampler, TelemetrySample};
use landauer_meter::MeterPart;
use landauer_physics as physics;
use std::collections::VecDeque;

/// Shortest steady-state window whose J/token is reported (ML.ENERGY: windows under ~2 s
/// are noisy).
pub const MIN_STEADY_WINDOW_S: f64 = 2.0;

/// The statistics and energy-attribution stage between the engine and the record sinks.
///
/// Text goes to the sinks at once; a token's record waits until the meter has updated past
/// the token's end, then gets E(end) − E(start) interpolated between counter updates. Token
/// windows tile the run, so the tokens' energies add up to the run's total.
pub struct Recorder {
    run: RunRecord,
    sampler: Option<SamplerRef>,
    metered: bool,
    sinks: Vec<Box<dyn RecordSink + Send>>,
    joules_per_bit: f64,
    /// The run's start on the sampler's clock.
    offset: f64,
    timeline: EnergyTimeline,
    /// Readings and faults taken from the sampler so far (its indices).
    seen: usize,
    faults_seen: usize,
    last_poll: f64,
    /// The meter's faults during this run.
    faults: Vec<MeterFault>,
    pending: VecDeque<TokenRecord>,
    acc: Totals,
    summary: Option<SummaryRecord>,
    /// The meter's per-part totals when the run began.
    parts_start: Vec<MeterPart>,
    parts_end: Vec<MeterPart>,
    telemetry: Vec<TelemetrySample>,
    /// Each token id's text, decoded once (top-n alternatives repeat from step to step, and
    /// the tokenizer's decoder chain costs microseconds a call).
    texts: std::collections::HashMap<u32, String>,
}

/// The meter's sampler: the run's own, stopped at its end, or one that outlives it (a
/// server's, shared by many runs one after another or at once).
enum SamplerRef {
    Owned(MeterSampler),
    Shared(std::sync::Arc<MeterSampler>),
}

impl std::ops::Deref for SamplerRef {
    type Target = MeterSampler;
    fn deref(&self) -> &MeterSampler {
        match self {
            SamplerRef::Owned(s) => s,
            SamplerRef::Shared(s) => s,
        }
    }
}

#[derive(Default)]
struct Totals {
    tokens: usize,
    entropy: f64,
    sampling_entropy: f64,
    surprisal: f64,
    energy: f64,
    prefill_energy: f64,
    /// Tokens chosen by the prompt pass (one per batch row).
    prefill_tokens: usize,
    unresolved: usize,
}

impl Recorder {
    /// `run` is written as the trace's first record when generation begins. `sampler` is
    /// the running meter (None: energy not measured).
    pub fn new(run: RunRecord, sampler: Option<MeterSampler>) -> Self {
        Self::with_sampler(run, sampler.map(SamplerRef::Owned))
    }

    /// Like [`Self::new`], with a sampler that outlives the run and that other recorders may
    /// read at the same time: the run reads it from its start on, and leaves it running.
    /// The summary then has no sampler CPU figure (the sampler is not the run's alone).
    pub fn with_shared_sampler(run: RunRecord, sampler: std::sync::Arc<MeterSampler>) -> Self {
        Self::with_sampler(run, Some(SamplerRef::Shared(sampler)))
    }

    fn with_sampler(run: RunRecord, sampler: Option<SamplerRef>) -> Self {
        Self {
            joules_per_bit: physics::landauer_joules_per_bit(run.kelvin),
            run,
            metered: sampler.is_some(),
            sampler,
            sinks: Vec::new(),
            offset: 0.0,
            timeline: EnergyTimeline::default(),
            seen: 0,
            faults_seen: 0,
            parts_start: Vec::new(),
            parts_end: Vec::new(),
            telemetry: Vec::new(),
            last_poll: f64::NEG_INFINITY,
            faults: Vec::new(),
            pending: VecDeque::new(),
            acc: Totals::default(),
            summary: None,
            texts: std::collections::HashMap::new(),
        }
    }

    /// Adds a downstream sink (printer, trace file, ...).
    pub fn with_sink(mut self, sink: impl RecordSink + Send + 'static) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    pub fn run_record(&self) -> &RunRecord {
        &self.run
    }

    /// The summary of the finished run.
    pub fn summary(&self) -> Option<&SummaryRecord> {
        self.summary.as_ref()
    }

    fn each(
        &mut self,
        mut f: impl FnMut(&mut dyn RecordSink) -> std::io::Result<()>,
    ) -> Result<(), SinkError> {
        for s in &mut self.sinks {
            f(s.as_mut())?;
        }
        Ok(())
    }

    fn absorb(&mut self, samples: &[CounterSample]) {
        for s in samples {
            self.timeline.push(*s);
            self.last_poll = self.last_poll.max(s.t);
        }
    }

    fn pull(&mut self) {
        if let Some(sampler) = &self.sampler {
            let mut fresh = Vec::new();
            let (seen, faults) =
                sampler.poll_since((self.seen, self.faults_seen), &mut fresh, &mut self.faults);
            (self.seen, self.faults_seen) = (seen, faults);
            self.absorb(&fresh);
        }
    }

    /// Sets a record's energy from the timeline: E(end) − E(start).
    fn attribute(&mut self, rec: &mut TokenRecord) {
        if !self.metered || self.timeline.points().is_empty() {
            return;
        }
        let (a, b) = (self.offset + rec.t_start_s, self.offset + rec.t_end_s);
        let mut w = self.timeline.window(a, b);
        // The tokens of one batch step share its energy equally (ML.ENERGY's token-count
        // attribution).
        w.joules /= rec.step_tokens.max(1) as f64;
        rec.energy_j = Some(w.joules);
        rec.energy_resolved = w.resolved;
        rec.energy_estimated = self.run.estimated;
        rec.meter_gap = self.faults.iter().any(|f| f.t >= a && f.t <= b);
        rec.landauer_gap = (rec.landauer_j > 0.0).then(|| w.joules / rec.landauer_j);
        self.acc.energy += w.joules;
        if rec.index == 0 {
            self.acc.prefill_energy += w.joules;
        }
        if !w.resolved {
            self.acc.unresolved += 1;
        }
    }

    /// Writes the records whose energy is known: the counter has updated past their end (or
    /// has been polled well past it without changing). With `all`, writes every one.
    fn emit_ready(&mut self, all: bool) -> Result<(), SinkError> {
        let period = self.timeline.update_period().unwrap_or(0.0);
        while let Some(front) = self.pending.front() {
            let end = self.offset + front.t_end_s;
            let updated = self.timeline.last_update().is_some_and(|u| u >= end);
            let stale = self.last_poll >= end + (2.0 * period).max(0.25);
            if !(all || !self.metered || updated || stale) {
                break;
            }
            let mut rec = self.pending.pop_front().expect("front exists");
            self.attribute(&mut rec);
            self.each(|s| s.token(&rec))?;
        }
        Ok(())
    }
}

/// The `n` most likely entries of `logits` as (id, logit), most likely first, in one pass
/// (ties: the lower id first).
fn top_n(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    if n == 0 {
        return best;
    }
    // Most chunks hold nothing above the current n-th best: their maximum (a loop the
    // compiler vectorizes) says so without looking at each entry.
    const CHUNK: usize = 64;
    for (c, chunk) in logits.chunks(CHUNK).enumerate() {
        if best.len() == n {
            let cut = best[n - 1].1;
            if chunk.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) <= cut {
                continue;
            }
        }
        for (k, &x) in chunk.iter().enumerate() {
            if x.is_nan() || (best.len() == n && x <= best[n - 1].1) {
                continue;
            }
            let at = best.partition_point(|&(_, y)| y >= x);
            best.insert(at, ((c * CHUNK + k) as u32, x));
            best.truncate(n);
        }
    }
    best
}

impl TokenSink for Recorder {
    fn begin(&mut self, start: &RunStart) -> Result<(), SinkError> {
        self.run.prompt_tokens = start.prompt_tokens;
        // The wall-clock time of the run's time zero, which every token's t_*_s counts from
        // (so that another instrument's readings line up with the tokens).
        let since = start.at.elapsed().as_secs_f64();
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            self.run.started_unix_s = now.as_secs_f64() - since;
        }
        if let Some(s) = &self.sampler {
            self.offset = start.at.saturating_duration_since(s.epoch()).as_secs_f64();
            self.parts_start = s.parts();
            if let SamplerRef::Shared(s) = s {
                // What came before this run is not its own: from the reading in effect at
                // its start on.
                self.seen = s.index_at(self.offset);
                self.faults_seen = s.fault_count();
            }
        }
        self.pull();
        let run = self.run.clone();
        self.each(|s| s.run(&run))
    }

    fn needs(&self) -> Needs {
        Needs {
            logits: false,
            stats: true,
            top_n: self.run.top_n,
        }
    }

    fn token(&mut self, ev: &TokenEvent<'_>) -> Result<(), SinkError> {
        let stats = ev
            .softmax_stats()
            .ok_or("the engine sent a token without its logits or their statistics")?;
        let (lse, entropy_bits) = (stats.log_sum_exp, stats.entropy_bits);
        let prob = (ev.chosen_logit as f64 - lse).exp();
        let texts = &mut self.texts;
        let top = match (ev.top, ev.logits) {
            (Some(top), _) => top.iter().take(self.run.top_n).copied().collect(),
            (None, Some(logits)) => top_n(logits, self.run.top_n),
            (None, None) => Vec::new(),
        };
        let top = top
            .into_iter()
            .map(|(id, x)| Alternative {
                token_id: id,
                text: texts
                    .entry(id)
                    .or_insert_with(|| ev.tokenizer.decode(&[id], false).unwrap_or_default())
                    .clone(),
                prob: (x as f64 - lse).exp(),
            })
            .collect();
        let sampling_entropy_bits = ev.sampled.entropy_bits();
        let surprisal_bits = physics::surprisal_bits(prob);
        let tel = self
            .sampler
            .as_ref()
            .and_then(|s| s.latest_telemetry())
            .map(|t| t.telemetry)
            .unwrap_or_default();
        self.acc.tokens += 1;
        if ev.phase == landauer_engine::Phase::Prefill {
            self.acc.prefill_tokens += 1;
        }
        self.acc.entropy += entropy_bits;
        self.acc.sampling_entropy += sampling_entropy_bits;
        self.acc.surprisal += surprisal_bits;

        if !ev.is_eos && !ev.text.is_empty() {
            self.each(|s| s.text(ev.text))?;
        }
        self.pending.push_back(TokenRecord {
            seq: ev.seq,
            index: ev.index,
            position: ev.position,
            token_id: ev.token_id,
            text: ev.text.to_string(),
            eos: ev.is_eos,
            phase: match ev.phase {
                landauer_engine::Phase::Prefill => "prefill".into(),
                landauer_engine::Phase::Decode => "decode".into(),
            },
            entropy_bits,
            sampling_entropy_bits,
            surprisal_bits,
            prob,
            top,
            t_start_s: ev.t_start_s,
            t_end_s: ev.t_end_s,
            step_tokens: ev.step_tokens,
            energy_j: None,
            energy_estimated: false,
            energy_resolved: false,
            meter_gap: false,
            landauer_j: entropy_bits * self.joules_per_bit,
            landauer_gap: None,
            temperature_c: tel.temperature_c,
            sm_clock_mhz: tel.sm_clock_mhz,
            mem_clock_mhz: tel.mem_clock_mhz,
            power_instant_w: tel.power_instant_w,
        });
        self.pull();
        self.emit_ready(false)
    }

    fn end(&mut self, end: &RunEnd) -> Result<(), SinkError> {
        let mut sampler_cpu = None;
        if let Some(sampler) = &self.sampler {
            // Energy after the counter's last update would be held flat: wait (a few update
            // periods at most) for an update past the run's end, so the last tokens are measured.
            let period = self
                .timeline
                .update_period()
                .or(self.run.meter_resolution_s)
                .unwrap_or(0.1);
            sampler.wait_past(
                self.offset + end.total_s,
                std::time::Duration::from_secs_f64((3.0 * period).clamp(0.02, 1.0)),
            );
        }
        if let Some(SamplerRef::Shared(sampler)) = &self.sampler {
            // Read on; the sampler goes on for the runs after this one.
            self.parts_end = sampler.parts();
            self.telemetry = sampler.telemetry_between(self.offset, self.offset + end.total_s);
            self.pull();
        }
        if let Some(SamplerRef::Owned(sampler)) = self.sampler.take() {
            let report = sampler.stop();
            let from = self.seen.saturating_sub(report.first_sample);
            let fresh: Vec<CounterSample> = report.samples.get(from..).unwrap_or(&[]).to_vec();
            self.absorb(&fresh);
            let from = self.faults_seen.saturating_sub(report.first_fault);
            self.faults
                .extend_from_slice(report.faults.get(from..).unwrap_or(&[]));
            sampler_cpu = Some((report.cpu_s, report.wall_s));
            self.parts_end = report.parts;
            let (a, b) = (self.offset, self.offset + end.total_s);
            // The readings during the run, and the one in effect when it began (telemetry
            // comes every 100 ms: a shorter run may see no reading of its own).
            let before = report.telemetry.iter().rposition(|t| t.t < a);
            self.telemetry = report
                .telemetry
                .into_iter()
                .enumerate()
                .filter(|(i, t)| Some(*i) == before || (t.t >= a && t.t <= b + 0.1))
                .map(|(_, t)| t)
                .collect();
        }
        self.emit_ready(true)?;
        if !end.tail_text.is_empty() {
            let tail = end.tail_text.clone();
            self.each(|s| s.text(&tail))?;
        }
        let s = self.summarize(end, sampler_cpu);
        self.each(|sink| sink.summary(&s))?;
        self.summary = Some(s);
        Ok(())
    }
}

impl Recorder {
    fn summarize(&self, end: &RunEnd, sampler_cpu: Option<(f64, f64)>) -> SummaryRecord {
        let acc = &self.acc;
        let metered = self.metered && !self.timeline.points().is_empty();
        let n = acc.tokens.max(1) as f64;
        let decode_tokens = acc.tokens - acc.prefill_tokens.min(acc.tokens);
        let decode_s = end.total_s - end.prefill_s;
        let energy = (metered && acc.tokens > 0).then_some(acc.energy);
        let landauer_j = acc.entropy * self.joules_per_bit;
        let ratio = |a: Option<f64>, b: f64| a.filter(|_| b > 0.0).map(|a| a / b);
        let joules_per_token = energy.map(|e| e / n);
        let idle = self.run.idle_power_w;
        let decode_energy = energy.map(|e| e - acc.prefill_energy);
        let steady_ok = decode_s >= MIN_STEADY_WINDOW_S && decode_tokens > 0;
        let steady = decode_energy
            .filter(|_| steady_ok)
            .map(|e| e / decode_tokens as f64);
        let steady_note = if steady_ok {
            format!("steady-state decode window of {decode_s:.2} s ({decode_tokens} tokens)")
        } else {
            format!(
                "decode lasted {decode_s:.2} s, under the {MIN_STEADY_WINDOW_S} s a steady-state figure needs; generate more tokens"
            )
        };
        let tel = &self.telemetry;
        let mean = |f: &dyn Fn(&TelemetrySample) -> Option<f64>| {
            let v: Vec<f64> = tel.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let mut caveats = Vec::new();
        if self.run.synthetic {
            caveats.push(
                "synthetic model (random weights): energy and speed are real; entropy, surprisal and the Landauer figures are meaningless".to_string(),
            );
        }
        if self.run.estimated {
            caveats.push(format!(
                "energy is ESTIMATED by the {} meter, not measured",
                self.run.meter
            ));
        }
        if !steady_ok {
            caveats.push(steady_note.clone());
        }
        if acc.unresolved > 0 {
            caveats.push(format!(
                "{} of {} tokens were shorter than one counter update: their energies are time-proportional shares",
                acc.unresolved, acc.tokens
            ));
        }
        SummaryRecord {
            per_million_tokens: joules_per_token.map(|j| self.run.footprint.per_million_tokens(j)),
            energy_by_part: part_energies(&self.parts_start, &self.parts_end, energy),
            temperature_c_mean: mean(&|t| t.telemetry.temperature_c),
            temperature_c_max: tel
                .iter()
                .filter_map(|t| t.telemetry.temperature_c)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))),
            sm_clock_mhz_mean: mean(&|t| t.telemetry.sm_clock_mhz),
            power_instant_w_mean: mean(&|t| t.telemetry.power_instant_w),
            caveats,
            tokens: acc.tokens,
            prompt_tokens: end.prompt_tokens,
            stop_reason: serde_json::to_value(end.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            prefill_s: end.prefill_s,
            prefill_tokens_per_s: (end.prefill_s > 0.0)
                .then(|| end.prompt_tokens as f64 / end.prefill_s),
            decode_s,
            decode_tokens_per_s: (decode_tokens > 0 && decode_s > 0.0)
                .then(|| decode_tokens as f64 / decode_s),
            wall_s: end.total_s,
            energy_j: energy,
            active_energy_j: energy.zip(idle).map(|(e, p)| e - p * end.total_s),
            idle_power_w: idle,
            prefill_energy_j: energy.map(|_| acc.prefill_energy),
            decode_energy_j: decode_energy,
            joules_per_token,
            decode_joules_per_token: decode_energy
                .filter(|_| decode_tokens > 0)
                .map(|e| e / decode_tokens as f64),
            tokens_per_wh: joules_per_token
                .filter(|&j| j > 0.0)
                .map(physics::tokens_per_wh),
            mean_power_w: ratio(energy, end.total_s),
            steady_window_s: decode_s,
            steady_joules_per_token: steady,
            steady_active_joules_per_token: steady
                .zip(idle)
                .map(|(j, p)| j - p * decode_s / decode_tokens as f64),
            steady_note,
            mean_entropy_bits: acc.entropy / n,
            mean_sampling_entropy_bits: acc.sampling_entropy / n,
            mean_surprisal_bits: acc.surprisal / n,
            total_entropy_bits: acc.entropy,
            bits_per_joule: energy.filter(|&e| e > 0.0).map(|e| acc.entropy / e),
            landauer_j,
            landauer_gap: ratio(energy, landauer_j),
            meter: self.run.meter.clone(),
            estimated: self.run.estimated,
            meter_resolution_s: self.timeline.update_period(),
            unresolved_tokens: acc.unresolved,
            meter_faults: self.faults.len(),
            sampler_cpu_s: sampler_cpu.map(|c| c.0),
            sampler_cpu_fraction: sampler_cpu.filter(|c| c.1 > 0.0).map(|c| c.0 / c.1),
        }
    }
}

/// Splits `total` among the meter's parts by their counter increase over the run.
fn part_energies(start: &[MeterPart], end: &[MeterPart], total: Option<f64>) -> Vec<PartEnergy> {
    let Some(total) = total else {
        return Vec::new();
    };
    let deltas: Vec<(String, f64)> = end
        .iter()
        .map(|e| {
            let s = start
                .iter()
                .find(|s| s.name == e.name)
                .map_or(0.0, |s| s.joules);
            (e.name.clone(), (e.joules - s).max(0.0))
        })
        .collect();
    let sum: f64 = deltas.iter().map(|d| d.1).sum();
    deltas
        .into_iter()
        .map(|(name, d)| {
            let share = if sum > 0.0 { d / sum } else { 0.0 };
            PartEnergy {
                name,
                joules: total * share,
                share,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::top_n;

    #[test]
    fn parts_split_the_total_by_their_increase() {
        let p = |name: &str, joules| landauer_meter::MeterPart {
            name: name.into(),
            joules,
        };
        let start = [p("GPU 0", 100.0), p("GPU 1", 50.0)];
        let end = [p("GPU 0", 130.0), p("GPU 1", 60.0)];
        let parts = super::part_energies(&start, &end, Some(20.0));
        assert_eq!(parts.len(), 2);
        assert!((parts[0].share - 0.75).abs() < 1e-12);
        assert!((parts[0].joules - 15.0).abs() < 1e-12);
        assert!((parts[1].joules - 5.0).abs() < 1e-12);
        assert!(super::part_energies(&start, &end, None).is_empty());
        assert!(super::part_energies(&[], &[], Some(1.0)).is_empty());
    }

    #[test]
    fn top_n_is_sorted_and_complete() {
        let logits = [0.1f32, 5.0, -3.0, 5.0, 2.0, f32::NAN, 4.0];
        assert_eq!(
            top_n(&logits, 3).iter().map(|x| x.0).collect::<Vec<_>>(),
            [1, 3, 6]
        );
        assert_eq!(top_n(&logits, 10).len(), 6);
        assert!(top_n(&logits, 0).is_empty());
    }

    #[test]
    fn top_n_of_a_large_vocabulary_equals_a_full_sort() {
        // Many chunks, repeated values (ties across chunks), NaN and -inf entries.
        let logits: Vec<f32> = (0..49_155u32)
            .map(|i| match i % 1009 {
                7 => f32::NAN,
                8 => f32::NEG_INFINITY,
                _ => ((i.wrapping_mul(2_654_435_761) >> 16) % 5000) as f32 * 0.01,
            })
            .collect();
        let mut sorted: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, x)| !x.is_nan())
            .map(|(i, &x)| (i as u32, x))
            .collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for n in [1, 5, 20] {
            assert_eq!(top_n(&logits, n), sorted[..n].to_vec(), "n={n}");
        }
    }
}
