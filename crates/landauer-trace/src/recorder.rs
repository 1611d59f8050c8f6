//! Turns engine events into records: entropy, surprisal, top-N, energy, the Landauer yardstick.

use crate::records::{Alternative, RunRecord, SummaryRecord, TokenRecord};
use crate::RecordSink;
use landauer_engine::{RunEnd, RunStart, SinkError, TokenEvent, TokenSink};
use landauer_meter::{EnergyMeter, EnergyReading};
use landauer_physics as physics;

/// The energy-attribution and statistics stage between the engine and the record sinks.
///
/// Each token's energy is the meter's reading when the token is received minus the reading
/// for the previous one (the run's start for the first): token windows tile the run, so the
/// per-token energies add up to the run's total.
pub struct Recorder {
    run: RunRecord,
    meter: Option<Box<dyn EnergyMeter>>,
    sinks: Vec<Box<dyn RecordSink>>,
    joules_per_bit: f64,
    last: Option<EnergyReading>,
    start: Option<EnergyReading>,
    acc: Totals,
    summary: Option<SummaryRecord>,
}

#[derive(Default)]
struct Totals {
    tokens: usize,
    entropy: f64,
    sampling_entropy: f64,
    surprisal: f64,
    energy: f64,
    prefill_energy: f64,
    energy_gaps: usize,
}

impl Recorder {
    /// `run` is written as the trace's first record when generation begins.
    pub fn new(run: RunRecord, meter: Option<Box<dyn EnergyMeter>>) -> Self {
        Self {
            joules_per_bit: physics::landauer_joules_per_bit(run.kelvin),
            run,
            meter,
            sinks: Vec::new(),
            last: None,
            start: None,
            acc: Totals::default(),
            summary: None,
        }
    }

    /// Adds a downstream sink (printer, trace file, ...).
    pub fn with_sink(mut self, sink: impl RecordSink + 'static) -> Self {
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

    fn read_meter(&mut self) -> Option<EnergyReading> {
        self.meter.as_mut().and_then(|m| m.read().ok())
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
}

/// The `n` most likely entries of `logits` as (id, logit), most likely first, in one pass.
fn top_n(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    if n == 0 {
        return best;
    }
    for (i, &x) in logits.iter().enumerate() {
        if x.is_nan() || (best.len() == n && x <= best[n - 1].1) {
            continue;
        }
        let at = best.partition_point(|&(_, y)| y >= x);
        best.insert(at, (i as u32, x));
        best.truncate(n);
    }
    best
}

impl TokenSink for Recorder {
    fn begin(&mut self, start: &RunStart) -> Result<(), SinkError> {
        self.run.prompt_tokens = start.prompt_tokens;
        let r = self.read_meter();
        self.start = r;
        self.last = r;
        let run = self.run.clone();
        self.each(|s| s.run(&run))
    }

    fn token(&mut self, ev: &TokenEvent<'_>) -> Result<(), SinkError> {
        let stats = physics::softmax_stats(ev.logits);
        let (lse, entropy_bits) = (stats.log_sum_exp, stats.entropy_bits);
        let chosen = ev.logits[ev.token_id as usize] as f64;
        let prob = (chosen - lse).exp();
        let top = top_n(ev.logits, self.run.top_n)
            .into_iter()
            .map(|(id, x)| Alternative {
                token_id: id,
                text: ev.tokenizer.decode(&[id], false).unwrap_or_default(),
                prob: (x as f64 - lse).exp(),
            })
            .collect();
        let sampling_entropy_bits = ev.sampled.entropy_bits();

        let now = self.read_meter();
        let energy_j = match (self.last, now) {
            (Some(a), Some(b)) => Some(b.joules - a.joules),
            _ => None,
        };
        if now.is_some() {
            self.last = now;
        } else if self.meter.is_some() {
            self.acc.energy_gaps += 1;
        }
        let landauer_j = entropy_bits * self.joules_per_bit;
        let landauer_gap = match energy_j {
            Some(e) if landauer_j > 0.0 => Some(e / landauer_j),
            _ => None,
        };
        let surprisal_bits = physics::surprisal_bits(prob);

        self.acc.tokens += 1;
        self.acc.entropy += entropy_bits;
        self.acc.sampling_entropy += sampling_entropy_bits;
        self.acc.surprisal += surprisal_bits;
        if let Some(e) = energy_j {
            self.acc.energy += e;
            if ev.index == 0 {
                self.acc.prefill_energy += e;
            }
        }
        let estimated = self.run.estimated;
        let rec = TokenRecord {
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
            energy_j,
            energy_estimated: estimated && energy_j.is_some(),
            landauer_j,
            landauer_gap,
        };
        self.each(|s| s.token(&rec))
    }

    fn end(&mut self, end: &RunEnd) -> Result<(), SinkError> {
        let s = summarize(
            &self.run,
            &self.acc,
            end,
            self.joules_per_bit,
            self.meter.is_some(),
        );
        if !end.tail_text.is_empty() {
            let tail = end.tail_text.clone();
            self.each(|s| s.text_tail(&tail))?;
        }
        self.each(|sink| sink.summary(&s))?;
        self.summary = Some(s);
        Ok(())
    }
}

fn summarize(
    run: &RunRecord,
    acc: &Totals,
    end: &RunEnd,
    joules_per_bit: f64,
    metered: bool,
) -> SummaryRecord {
    let n = acc.tokens.max(1) as f64;
    let decode_tokens = acc.tokens.saturating_sub(1);
    let decode_s = end.total_s - end.prefill_s;
    let energy = (metered && acc.tokens > 0).then_some(acc.energy);
    let landauer_j = acc.entropy * joules_per_bit;
    let ratio = |a: Option<f64>, b: f64| a.filter(|_| b > 0.0).map(|a| a / b);
    let joules_per_token = energy.map(|e| e / n);
    SummaryRecord {
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
        prefill_energy_j: energy.map(|_| acc.prefill_energy),
        decode_energy_j: energy.map(|e| e - acc.prefill_energy),
        joules_per_token,
        decode_joules_per_token: energy
            .filter(|_| decode_tokens > 0)
            .map(|e| (e - acc.prefill_energy) / decode_tokens as f64),
        tokens_per_wh: joules_per_token
            .filter(|&j| j > 0.0)
            .map(physics::tokens_per_wh),
        mean_power_w: ratio(energy, end.total_s),
        mean_entropy_bits: acc.entropy / n,
        mean_sampling_entropy_bits: acc.sampling_entropy / n,
        mean_surprisal_bits: acc.surprisal / n,
        total_entropy_bits: acc.entropy,
        bits_per_joule: energy.filter(|&e| e > 0.0).map(|e| acc.entropy / e),
        landauer_j,
        landauer_gap: ratio(energy, landauer_j),
        meter: run.meter.clone(),
        estimated: run.estimated,
        energy_gaps: acc.energy_gaps,
    }
}

#[cfg(test)]
mod tests {
    use super::top_n;

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
}
