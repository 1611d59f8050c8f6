//! Attributing a cumulative counter's energy to time windows (tokens, phases).
//!
//! Energy counters update in steps (NVML every ~20-100 ms, RAPL every ~1 ms); a sampler
//! polls them faster than that. The cumulative energy between updates is interpolated
//! linearly from the update points — the first poll that saw each new value — so the energy
//! of any window is E(end) − E(start). Windows that tile a span add up to the span's energy
//! exactly (the sum telescopes), and a window shorter than one update gets a time-proportional
//! share of the update that contains it and is flagged unresolved.

/// One poll of a cumulative energy counter: seconds on the run's clock, joules since the
/// meter was opened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterSample {
    pub t: f64,
    pub joules: f64,
}

/// The energy of one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowEnergy {
    pub joules: f64,
    /// False when the window is shorter than the counter's update period: its energy is a
    /// time-proportional share of an update, not a measurement of the window itself.
    pub resolved: bool,
}

/// A counter's history reduced to its update points, ready to interpolate.
#[derive(Debug, Clone, Default)]
pub struct EnergyTimeline {
    points: Vec<CounterSample>,
    /// Median interval between update points, recomputed as the timeline grows (at every
    /// point up to 64, then at each doubling), so that reading it per token costs nothing.
    period: Option<f64>,
}

impl EnergyTimeline {
    /// Builds the timeline from polls in time order. The first poll is kept, then every poll
    /// whose value differs from the previous one (the update points).
    pub fn from_samples(samples: &[CounterSample]) -> Self {
        let mut t = Self::default();
        for s in samples {
            t.push(*s);
        }
        t
    }

    /// Adds the next poll (in time order); keeps it only if the value changed.
    pub fn push(&mut self, s: CounterSample) {
        match self.points.last() {
            Some(last) if s.joules == last.joules || s.t <= last.t => {}
            _ => {
                self.points.push(s);
                let n = self.points.len();
                if n <= 64 || n.is_power_of_two() {
                    self.period = median_gap(&self.points);
                }
            }
        }
    }

    pub fn points(&self) -> &[CounterSample] {
        &self.points
    }

    /// The counter's effective update period: the median interval between update points
    /// (over the first 64 points, then refreshed each time the timeline doubles).
    pub fn update_period(&self) -> Option<f64> {
        self.period
    }

    /// Time of the last update point: energy before it is known, after it extrapolated.
    pub fn last_update(&self) -> Option<f64> {
        self.points.last().map(|p| p.t)
    }

    /// Cumulative energy at `t`, interpolated linearly between update points (held at the
    /// first and last values outside them).
    pub fn energy_at(&self, t: f64) -> f64 {
        let p = &self.points;
        match p.len() {
            0 => 0.0,
            _ if t <= p[0].t => p[0].joules,
            n if t >= p[n - 1].t => p[n - 1].joules,
            _ => {
                let i = p.partition_point(|x| x.t <= t);
                let (a, b) = (p[i - 1], p[i]);
                a.joules + (b.joules - a.joules) * (t - a.t) / (b.t - a.t)
            }
        }
    }

    /// Energy of the window [`start`, `end`].
    pub fn window(&self, start: f64, end: f64) -> WindowEnergy {
        let joules = self.energy_at(end) - self.energy_at(start);
        let resolved = self.update_period().is_some_and(|p| end - start >= p);
        WindowEnergy { joules, resolved }
    }

    /// Mean power over [`start`, `end`], watts.
    pub fn mean_power(&self, start: f64, end: f64) -> Option<f64> {
        (end > start).then(|| (self.energy_at(end) - self.energy_at(start)) / (end - start))
    }
}

fn median_gap(points: &[CounterSample]) -> Option<f64> {
    let mut gaps: Vec<f64> = points.windows(2).map(|w| w[1].t - w[0].t).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_by(f64::total_cmp);
    Some(gaps[gaps.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A power profile with a known integral: a ramp from 80 W, then a step to 200 W.
    fn power(t: f64) -> f64 {
        if t < 1.5 {
            80.0 + 40.0 * t
        } else {
            200.0
        }
    }
    fn energy(t: f64) -> f64 {
        if t < 1.5 {
            80.0 * t + 20.0 * t * t
        } else {
            energy(1.5 - 1e-12) + 200.0 * (t - 1.5)
        }
    }

    /// Polls every 2 ms (with a phase) a counter that updates every 100 ms.
    fn simulated_polls(until: f64) -> Vec<CounterSample> {
        let period = 0.100;
        let mut out = Vec::new();
        let mut t = 0.0007;
        while t <= until {
            let last_update = (t / period).floor() * period;
            out.push(CounterSample {
                t,
                joules: energy(last_update),
            });
            t += 0.002;
        }
        out
    }

    #[test]
    fn per_token_energy_matches_the_integral_and_sums_exactly() {
        let timeline = EnergyTimeline::from_samples(&simulated_polls(3.2));
        let period = timeline.update_period().unwrap();
        assert!((period - 0.1).abs() < 0.0021, "update period {period}");

        // Tokens of 3 to 40 ms tiling [0.3, 3.0].
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut windows = Vec::new();
        let mut t: f64 = 0.3;
        while t < 3.0 {
            let d: f64 = rng.random_range(0.003..0.040);
            windows.push((t, (t + d).min(3.0)));
            t += d;
        }
        let mut sum = 0.0;
        for &(a, b) in &windows {
            let w = timeline.window(a, b);
            sum += w.joules;
            assert!(
                !w.resolved,
                "a {:.0} ms token cannot be resolved by a 100 ms counter",
                (b - a) * 1e3
            );
            // Away from the step, power changes slowly and the interpolation is accurate
            // (the poll phase shifts update points by under 2 ms).
            let analytic = energy(b) - energy(a);
            if (a - 1.5).abs() > 0.2 && (b - 1.5).abs() > 0.2 {
                let tol = 0.02 * analytic + power(b) * 0.0021 * 0.05;
                assert!(
                    (w.joules - analytic).abs() <= tol,
                    "[{a:.3},{b:.3}] {} vs {analytic}",
                    w.joules
                );
            } else {
                // Near the step the token gets its share of the update's mean power.
                assert!(w.joules >= 80.0 * (b - a) * 0.99 && w.joules <= 200.0 * (b - a) * 1.01);
            }
        }
        // The per-token energies add up to the span's energy.
        let span = timeline.energy_at(3.0) - timeline.energy_at(0.3);
        assert!((sum - span).abs() <= 1e-9 * span, "{sum} vs {span}");
        // ...which is within one update of the true integral.
        let truth = energy(3.0) - energy(0.3);
        assert!(
            (span - truth).abs() / truth < 0.001 + 200.0 * 0.002 / truth,
            "{span} vs {truth}"
        );
    }

    #[test]
    fn long_windows_are_resolved() {
        // 20 s: 200 update points, past the 64 after which the period is refreshed at
        // each doubling only.
        let timeline = EnergyTimeline::from_samples(&simulated_polls(20.0));
        assert!(timeline.points().len() > 128);
        let period = timeline.update_period().unwrap();
        assert!((period - 0.1).abs() < 0.0021, "update period {period}");
        let w = timeline.window(0.2, 0.5);
        assert!(w.resolved);
        let analytic = energy(0.5) - energy(0.2);
        assert!((w.joules - analytic).abs() / analytic < 0.01);
        let p = timeline.mean_power(0.2, 0.5).unwrap();
        assert!((p - analytic / 0.3).abs() < 1.0);
    }

    #[test]
    fn empty_and_single_point_timelines() {
        let t = EnergyTimeline::from_samples(&[]);
        assert_eq!(t.energy_at(1.0), 0.0);
        assert_eq!(t.update_period(), None);
        let t = EnergyTimeline::from_samples(&[CounterSample {
            t: 0.0,
            joules: 5.0,
        }]);
        assert_eq!(t.window(0.0, 1.0).joules, 0.0);
        assert!(!t.window(0.0, 1.0).resolved);
    }
}
