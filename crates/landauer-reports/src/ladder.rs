//! The ladder from measured energy down to the roofline floor and Landauer (what
//! `landauer gap` prints, and the report's ladder section).
//!
//! Takes a trace (`generate --trace`) or a sweep (`sweep --out DIR`), picks a hardware
//! profile (named, else recognized from the GPU's name), and sets the run's J/token beside
//! the roofline floor of its model on that hardware and the Landauer yardstick of its bits.
//! Error messages name the command-line flags that fix them (`--hardware`, `--shapes-from`).

use anyhow::Context;
use landauer_physics::floor::{self, HardwareProfile, Ladder, LadderInput, ModelShape};
use landauer_physics::footprint::Footprint;
use landauer_trace::{Input, Study, Sweep, Trace};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// How the floor's hardware and model shapes are chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardwareChoice {
    /// Hardware profile for the roofline floor (an id of
    /// [`landauer_physics::floor::hardware_profiles`]). None: recognized from the GPU's name
    /// for CUDA runs; a generic DDR5 server CPU for CPU runs.
    pub hardware: Option<String>,
    /// Where to read the model's shapes when the input predates them: a .gguf file or
    /// `synthetic:ARCH[:QUANT]`. None: the model path the input records, if it exists.
    pub shapes_from: Option<String>,
}

/// The grid behind the money and carbon figures, where it differs from the input's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FootprintOverrides {
    /// Grid carbon intensity, grams of CO2 per kWh.
    pub grid_gco2_per_kwh: Option<f64>,
    /// Electricity price per kWh (any currency).
    pub price_per_kwh: Option<f64>,
}

impl FootprintOverrides {
    /// The overrides over `base` (the defaults, or what a trace recorded), checked.
    pub fn over(&self, base: Footprint) -> anyhow::Result<Footprint> {
        Footprint::new(
            self.grid_gco2_per_kwh.unwrap_or(base.grid_gco2_per_kwh),
            self.price_per_kwh.unwrap_or(base.price_per_kwh),
        )
        .map_err(anyhow::Error::msg)
    }
}

/// The model's shapes: recorded in the input, else read from `shapes_from` (`--shapes-from`)
/// or the recorded model path.
pub fn shapes(
    recorded: Option<ModelShape>,
    model_path: &str,
    args: &HardwareChoice,
) -> anyhow::Result<ModelShape> {
    if let (Some(s), None) = (&recorded, &args.shapes_from) {
        return Ok(s.clone());
    }
    let source = args.shapes_from.as_deref().unwrap_or(model_path);
    let info = if landauer_engine::synthetic::SyntheticSpec::is_synthetic(source) {
        landauer_engine::synthetic::SyntheticSpec::parse(source)?
            .open()
            .info()
    } else if Path::new(source).is_file() {
        landauer_engine::gguf::GgufFile::open(source)?.info()
    } else {
        anyhow::bail!(
            "the input does not record its model's shapes and its model {source:?} is not here; pass --shapes-from FILE.gguf or synthetic:ARCH:QUANT"
        );
    };
    info.shape.with_context(|| {
        format!("{source} lacks the attention metadata (block_count, head_count) the floor needs")
    })
}

/// The hardware profile: named, else recognized from a GPU's name, else (CPU runs) the
/// generic DDR5 server CPU. Returns how it was chosen, in words.
pub fn choose_hardware(
    named: Option<&str>,
    device: &str,
    device_name: Option<&str>,
    nvml_names: Option<&str>,
) -> anyhow::Result<(&'static HardwareProfile, String)> {
    if let Some(id) = named {
        let p = floor::hardware_profile(id).map_err(anyhow::Error::msg)?;
        return Ok((p, "chosen with --hardware".into()));
    }
    if let Some(p) = device_name.and_then(floor::recognize_hardware) {
        return Ok((
            p,
            format!(
                "recognized from the device name {:?}",
                device_name.unwrap_or("")
            ),
        ));
    }
    // A CPU-side run metered by NVML: the GPUs' names as NVML reported them.
    if let Some(p) = nvml_names.and_then(floor::recognize_hardware) {
        return Ok((
            p,
            format!(
                "recognized from NVML's GPU names ({})",
                nvml_names.unwrap_or("")
            ),
        ));
    }
    if device.starts_with("cuda") {
        let known: Vec<&str> = floor::hardware_profiles()
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        anyhow::bail!(
            "the GPU {:?} matches no hardware profile; pick the nearest with --hardware ({})",
            device_name.unwrap_or("unknown"),
            known.join(", ")
        );
    }
    let p = floor::hardware_profile("ddr5-server-cpu").map_err(anyhow::Error::msg)?;
    Ok((
        p,
        "assumed for a CPU run (CPUs are not recognized by name; --hardware build-vm is this project's build machine)".into(),
    ))
}

/// One ladder with what it was computed from.
#[derive(Serialize)]
pub struct LadderRow {
    /// Sequences decoded together.
    pub batch: usize,
    /// Which measured figure the top rung is, in words.
    pub measured_from: String,
    pub ladder: Ladder,
}

/// Everything `gap` says about an input.
#[derive(Serialize)]
pub struct GapReport {
    pub input: String,
    pub model: String,
    pub quantization: String,
    pub device: String,
    pub hardware: &'static HardwareProfile,
    pub hardware_chosen: String,
    pub shape: ModelShape,
    pub estimated: bool,
    pub synthetic: bool,
    pub kelvin: f64,
    pub footprint: Footprint,
    pub ladders: Vec<LadderRow>,
}

/// Computes the ladder(s) of an input: one for a trace, one per batch size for a sweep.
pub fn gap_report(
    input: &Input,
    hw: &HardwareChoice,
    footprint: &FootprintOverrides,
) -> anyhow::Result<GapReport> {
    match input {
        Input::Trace(t) => trace_gap(t, hw, footprint),
        Input::Sweep(s) => sweep_gap(s, hw, footprint),
        Input::Study(s) => study_gap(s, hw, footprint),
    }
}

fn trace_gap(t: &Trace, hw: &HardwareChoice, fp: &FootprintOverrides) -> anyhow::Result<GapReport> {
    let run = &t.run;
    let shape = shapes(run.shape.clone(), &run.model_path, hw)?;
    let nvml = (run.meter == "nvml").then_some(run.meter_description.as_str());
    let (profile, chosen) = choose_hardware(
        hw.hardware.as_deref(),
        &run.device,
        run.device_name.as_deref(),
        nvml,
    )?;
    let batch = run.batch.max(1);
    let n = t.tokens.len();
    if n == 0 {
        anyhow::bail!(
            "{} has no token records: nothing was generated",
            t.path.display()
        );
    }
    // Decode context: each row's prompt plus, on average, half of its generated tokens.
    let context = run.prompt_tokens as f64 / batch as f64 + (n as f64 / batch as f64) / 2.0;
    let (input, from) = trace_measured(t);
    let floor = floor::roofline_floor(&shape, profile, batch, context);
    let ladder = floor::ladder(&input, floor);
    Ok(GapReport {
        input: t.path.display().to_string(),
        model: run.model.clone(),
        quantization: run.quantization.clone(),
        device: run
            .device_name
            .clone()
            .unwrap_or_else(|| run.device.clone()),
        hardware: profile,
        hardware_chosen: chosen,
        shape,
        estimated: run.estimated,
        synthetic: run.synthetic,
        kelvin: run.kelvin,
        footprint: fp.over(run.footprint)?,
        ladders: vec![LadderRow {
            batch,
            measured_from: from,
            ladder,
        }],
    })
}

/// What a trace measured, as its ladder's input, and which figure that is, in words: the
/// summary's steady-state (else decode) J/token, or for an interrupted run (no summary) the
/// mean of its token records, which must not be empty.
fn trace_measured(t: &Trace) -> (LadderInput, String) {
    let run = &t.run;
    let n = t.tokens.len();
    let (measured, active, from, bits, die) = match &t.summary {
        Some(s) => {
            let (m, a, from) = match s.steady_joules_per_token {
                Some(j) => (
                    Some(j),
                    s.steady_active_joules_per_token,
                    "steady-state decode J/token".to_string(),
                ),
                None => (
                    s.decode_joules_per_token.or(s.joules_per_token),
                    s.active_energy_j.map(|e| e / s.tokens.max(1) as f64),
                    "decode J/token (the run was too short for a steady-state window)".into(),
                ),
            };
            (m, a, from, s.mean_entropy_bits, s.temperature_c_mean)
        }
        None => {
            let e: Vec<f64> = t.tokens.iter().filter_map(|t| t.energy_j).collect();
            let m = (!e.is_empty()).then(|| e.iter().sum::<f64>() / e.len() as f64);
            let bits = t.tokens.iter().map(|t| t.entropy_bits).sum::<f64>() / n as f64;
            let temps: Vec<f64> = t.tokens.iter().filter_map(|t| t.temperature_c).collect();
            let die = (!temps.is_empty()).then(|| temps.iter().sum::<f64>() / temps.len() as f64);
            (
                m,
                None,
                "mean of the token records (the trace has no summary: interrupted run)".into(),
                bits,
                die,
            )
        }
    };
    let from = if measured.is_some() {
        from
    } else {
        "nothing: the run had no energy meter (--meter none)".to_string()
    };
    let input = LadderInput {
        measured_j_per_token: measured,
        active_j_per_token: active,
        estimated: run.estimated,
        bits_per_token: bits,
        kelvin: run.kelvin,
        die_temperature_c: die,
    };
    (input, from)
}

/// One ladder per cell of a study: its measured J/token over the floor of its own model's
/// shapes at its batch size. The bits are the cell's cross-entropy on the reference text
/// (the information its tokens carried); the context is a decode window's mean (16 prompt
/// tokens plus half the generated ones).
fn study_gap(s: &Study, hw: &HardwareChoice, fp: &FootprintOverrides) -> anyhow::Result<GapReport> {
    let f = &s.file;
    let (profile, chosen) = choose_hardware(
        hw.hardware.as_deref(),
        &f.device,
        f.device_name.as_deref(),
        None,
    )?;
    let mut ladders = Vec::new();
    let mut first_shape = None;
    for c in &f.cells {
        let shape = shapes(c.shape.clone(), &c.model_path, hw)?;
        let context = 16.0 + f.max_tokens as f64 / 2.0;
        let floor = floor::roofline_floor(&shape, profile, c.batch.max(1), context);
        first_shape.get_or_insert(shape);
        ladders.push(LadderRow {
            batch: c.batch,
            measured_from: format!(
                "{} {}: decode-window J/token (median of the runs)",
                c.model,
                c.quantize.as_deref().unwrap_or("as stored")
            ),
            ladder: floor::ladder(
                &LadderInput {
                    measured_j_per_token: c.joules_per_token,
                    active_j_per_token: None,
                    estimated: f.estimated,
                    bits_per_token: c.cross_entropy_bits,
                    kelvin: f.kelvin,
                    die_temperature_c: None,
                },
                floor,
            ),
        });
    }
    let mut models: Vec<&str> = f.cells.iter().map(|c| c.model.as_str()).collect();
    models.dedup();
    Ok(GapReport {
        input: s.path.display().to_string(),
        model: models.join(", "),
        quantization: "each cell's".into(),
        device: f.device_name.clone().unwrap_or_else(|| f.device.clone()),
        hardware: profile,
        hardware_chosen: chosen,
        shape: first_shape.context("the study has no cells")?,
        estimated: f.estimated,
        synthetic: f.cells.iter().any(|c| c.synthetic),
        kelvin: f.kelvin,
        footprint: fp.over(f.footprint)?,
        ladders,
    })
}

fn sweep_gap(s: &Sweep, hw: &HardwareChoice, fp: &FootprintOverrides) -> anyhow::Result<GapReport> {
    let h = &s.file.header;
    let shape = shapes(h.shape.clone(), &h.model, hw)?;
    let device = h.device.clone();
    let device_name = h.device_name.clone();
    let (profile, chosen) = choose_hardware(
        hw.hardware.as_deref(),
        &device,
        device_name.as_deref(),
        None,
    )?;
    let ladders = s
        .rows()
        .iter()
        .map(|r| {
            let b = r.batch.max(1) as f64;
            let context = r.prompt_tokens as f64 / b + r.generated_tokens as f64 / b / 2.0;
            let floor = floor::roofline_floor(&shape, profile, r.batch.max(1), context);
            LadderRow {
                batch: r.batch,
                measured_from: "decode-window J/token (median of the runs)".into(),
                ladder: floor::ladder(
                    &LadderInput {
                        measured_j_per_token: r.joules_per_token,
                        active_j_per_token: r.active_joules_per_token,
                        estimated: h.estimated,
                        bits_per_token: r.mean_entropy_bits,
                        kelvin: h.kelvin,
                        die_temperature_c: r.die_temperature_c,
                    },
                    floor,
                ),
            }
        })
        .collect();
    Ok(GapReport {
        input: s.path.display().to_string(),
        model: h.model.clone(),
        quantization: h.quantization.clone(),
        device: device_name.unwrap_or(device),
        hardware: profile,
        hardware_chosen: chosen,
        shape,
        estimated: h.estimated,
        synthetic: h.synthetic,
        kelvin: h.kelvin,
        footprint: fp.over(h.footprint)?,
        ladders,
    })
}

/// A joule figure in engineering notation.
pub fn joules(j: f64) -> String {
    if j == 0.0 {
        "0 J".into()
    } else {
        format!("{j:.3e} J")
    }
}

/// The ladder as text: a table of rungs with their ratios, for the terminal.
pub fn format_gap(g: &GapReport) -> String {
    let mut out = format_hardware_and_model(g);
    for row in &g.ladders {
        out.push_str(&format_ladder(row, &g.footprint));
    }
    out.push_str(&format_notes(g));
    out
}

/// The ladder text's head: the model, the hardware profile and its constants, the model's
/// bytes and FLOPs per token.
fn format_hardware_and_model(g: &GapReport) -> String {
    let mut out = String::new();
    let mut say = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    say(format!(
        "landauer gap: {} {} on {}",
        g.model, g.quantization, g.device
    ));
    say(format!(
        "hardware: {} ({}), {}",
        g.hardware.name, g.hardware.id, g.hardware_chosen
    ));
    let hw = g.hardware;
    say(format!(
        "  memory {} at {} GB/s, {} pJ/bit [{} .. {}]; compute {} pJ/FLOP [{} .. {}] (sources: landauer gap --list-hardware)",
        hw.memory,
        hw.memory_bandwidth_gb_s.value,
        hw.memory_pj_per_bit.value,
        hw.memory_pj_per_bit.low,
        hw.memory_pj_per_bit.high,
        hw.compute_pj_per_flop.value,
        hw.compute_pj_per_flop.low,
        hw.compute_pj_per_flop.high,
    ));
    say(format!(
        "model: {:.1} MB of weights per decode step, {:.1} kB of KV cache per position (f16), {:.3e} FLOPs per token + attention",
        g.shape.weight_bytes_per_step as f64 / 1e6,
        g.shape.kv_bytes_per_position() / 1e3,
        2.0 * g.shape.matmul_params as f64
    ));
    out
}

/// One ladder as text: its rungs, their ratios, the floor's tokens/Wh and the footprint.
fn format_ladder(row: &LadderRow, footprint: &Footprint) -> String {
    let mut out = String::new();
    let mut say = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let l = &row.ladder;
    say(String::new());
    say(format!(
        "batch {} (mean context {:.0} positions per row); measured: {}",
        row.batch, l.floor.context, row.measured_from
    ));
    for r in &l.rungs {
        let range = match (r.low, r.high) {
            (Some(lo), Some(hi)) => format!("  [{} .. {}]", joules(lo), joules(hi)),
            _ => String::new(),
        };
        say(format!(
            "  {:<40} {:>12}/token{range}  {}",
            r.name,
            joules(r.j_per_token),
            r.note
        ));
    }
    for q in &l.ratios {
        say(format!("  {} / {} = {:.3e}", q.upper, q.lower, q.ratio));
    }
    let said = l
        .ratios
        .iter()
        .any(|q| q.upper == floor::RUNG_MEASURED && q.lower == floor::RUNG_FLOOR);
    if let Some(x) = l.measured_over_floor.filter(|_| !said) {
        say(format!("  measured / roofline floor = {x:.3e}"));
    }
    say(format!(
        "  theoretical minimum: {:.3e} J/token = {:.4e} tokens/Wh at the floor{}",
        l.floor.j_per_token,
        l.min_tokens_per_wh,
        match l.measured_tokens_per_wh {
            Some(t) => format!(" (measured: {t:.1} tokens/Wh)"),
            None => String::new(),
        }
    ));
    if let Some(rung) = l.rungs.first().filter(|_| l.measured_over_floor.is_some()) {
        say(format!(
            "  {} at the measured rate; {} at the floor",
            footprint.line(rung.j_per_token),
            footprint
                .line(l.floor.j_per_token)
                .replace("per million tokens: ", ""),
        ));
    }
    out
}

/// The ladder text's tail: the footprint's grid, and notes on the energy, the model and the
/// first ladder's caveats.
fn format_notes(g: &GapReport) -> String {
    let mut out = String::new();
    let mut say = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    say(String::new());
    say(format!("money and carbon at {}", g.footprint.describe()));
    if g.estimated {
        say("note: the measured energy is ESTIMATED (CPU-time model), not metered".into());
    }
    if g.synthetic {
        say("note: synthetic model (random weights): its bits, and so the Landauer rungs, are meaningless; the floor and the energy are real".into());
    }
    if let Some(l) = g.ladders.first() {
        for c in &l.ladder.caveats {
            say(format!("note: {c}"));
        }
    }
    out
}

/// The hardware profiles as text: each constant with its range and source, and the GPU names
/// that recognize the profile (`landauer gap --list-hardware`).
pub fn format_hardware_list() -> String {
    let mut out = String::new();
    for p in floor::hardware_profiles() {
        let _ = writeln!(out, "{} — {} ({})", p.id, p.name, p.kind);
        let mut c = |name: &str, k: &floor::Constant, unit: &str| {
            let _ = writeln!(
                out,
                "  {name:<18} {} {unit} [{} .. {}]  source: {}",
                k.value, k.low, k.high, k.source
            );
        };
        c("memory bandwidth", &p.memory_bandwidth_gb_s, "GB/s");
        c("memory energy", &p.memory_pj_per_bit, "pJ/bit");
        c("compute energy", &p.compute_pj_per_flop, "pJ/FLOP");
        if let Some(w) = &p.board_power_w {
            c("board power", w, "W");
        }
        if !p.match_names.is_empty() {
            let _ = writeln!(out, "  recognized from    {}", p.match_names.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footprint_overrides_replace_only_what_they_give() {
        let base = Footprint::new(400.0, 0.2).unwrap();
        let none = FootprintOverrides::default().over(base).unwrap();
        assert_eq!((none.grid_gco2_per_kwh, none.price_per_kwh), (400.0, 0.2));
        let grid = FootprintOverrides {
            grid_gco2_per_kwh: Some(50.0),
            price_per_kwh: None,
        };
        let f = grid.over(base).unwrap();
        assert_eq!((f.grid_gco2_per_kwh, f.price_per_kwh), (50.0, 0.2));
        let bad = FootprintOverrides {
            grid_gco2_per_kwh: Some(-1.0),
            price_per_kwh: None,
        };
        assert!(bad
            .over(base)
            .unwrap_err()
            .to_string()
            .contains("--grid-gco2-per-kwh"));
    }

    #[test]
    fn hardware_is_named_recognized_or_assumed() {
        let (p, why) = choose_hardware(Some("h100-sxm"), "cpu", None, None).unwrap();
        assert_eq!(
            (p.id.as_str(), why.as_str()),
            ("h100-sxm", "chosen with --hardware")
        );
        let (p, why) = choose_hardware(None, "cpu", None, None).unwrap();
        assert_eq!(p.id, "ddr5-server-cpu");
        assert!(why.starts_with("assumed for a CPU run"));
        let e = choose_hardware(None, "cuda:0", Some("Abacus 9000"), None).unwrap_err();
        assert!(e.to_string().contains("matches no hardware profile"), "{e}");
        assert!(choose_hardware(Some("abacus"), "cpu", None, None).is_err());
    }

    #[test]
    fn joules_and_the_hardware_list() {
        assert_eq!(joules(0.0), "0 J");
        assert_eq!(joules(0.0123), "1.230e-2 J");
        let list = format_hardware_list();
        assert!(list.starts_with(&floor::hardware_profiles()[0].id));
        assert!(list.contains("ddr5-server-cpu") && list.ends_with('\n'));
    }
}
