//! Energy floors: the roofline floor of a decode step, hardware profiles, and the ladder.
//!
//! A decode step reads every weight once (shared by the batch) and each row's cached keys and
//! values, and multiplies each weight twice per token (2 FLOPs). The roofline floor charges
//! those bytes at the memory's energy per bit and those FLOPs at the hardware's energy per
//! FLOP. It counts nothing else (caches, interconnect, idle and static power), so real hardware
//! cannot reach it; nor is it a hard physical bound. The ladder sets a measured energy per
//! token against it and against the Landauer yardstick k_B·T·ln 2 per bit.
//!
//! ```
//! use landauer_physics::floor::{hardware_profile, roofline_floor, ModelShape};
//!
//! // An 8B bf16 model: 16 GB of weights per step, on the H100 SXM profile (3.97 pJ/bit).
//! let shape = ModelShape {
//!     weight_bytes_per_step: 16_000_000_000,
//!     matmul_params: 8_000_000_000,
//!     layers: 32,
//!     q_dim: 4096,
//!     kv_dim: 1024,
//!     kv_bytes_per_elem: 2,
//! };
//! let hw = hardware_profile("h100-sxm").unwrap();
//! let f = roofline_floor(&shape, hw, 1, 0.0);
//! // 16e9 bytes × 8 bits × 3.97 pJ/bit ≈ 0.51 J to stream the weights once.
//! assert!((f.memory_j_per_token - 0.508).abs() < 0.001);
//! ```

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The shapes of a model that set what a decode step must move and compute.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelShape {
    /// Weight bytes one decode step must read (every weight tensor except a token embedding
    /// that is only gathered), in the file's quantization.
    pub weight_bytes_per_step: u64,
    /// Weight elements multiplied per token (the same tensors, as elements): 2 FLOPs each.
    pub matmul_params: u64,
    /// Transformer blocks (each with its own attention and KV cache).
    pub layers: u32,
    /// Query width: attention heads × head dimension.
    pub q_dim: u32,
    /// Key/value width: KV heads × head dimension.
    pub kv_dim: u32,
    /// Bytes per cached key/value element assumed for the floor (2: f16, as llama.cpp and
    /// vLLM store it).
    pub kv_bytes_per_elem: u32,
}

impl ModelShape {
    /// Bytes of cache per position: 2 (K and V) × layers × kv_dim × kv_bytes_per_elem.
    pub fn kv_bytes_per_position(&self) -> f64 {
        2.0 * self.layers as f64 * self.kv_dim as f64 * self.kv_bytes_per_elem as f64
    }

    /// FLOPs to decode one token over `context` cached positions:
    /// 2 × matmul_params + 4 × layers × q_dim × context (QKᵀ and AV, 2 FLOPs per
    /// multiply-add each).
    pub fn flops_per_token(&self, context: f64) -> f64 {
        2.0 * self.matmul_params as f64 + 4.0 * self.layers as f64 * self.q_dim as f64 * context
    }
}

/// One hardware constant with its uncertainty and where it comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Constant {
    /// The figure used for the floor.
    pub value: f64,
    /// The lowest figure the sources allow.
    pub low: f64,
    /// The highest figure the sources allow.
    pub high: f64,
    /// Where the figures come from: a datasheet, a paper (venue, year), a measurement, or
    /// "derived: ..." with the arithmetic.
    pub source: String,
}

/// The constants of one piece of hardware that the roofline floor needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HardwareProfile {
    /// Short identifier, e.g. "h100-sxm".
    pub id: String,
    /// Full name, e.g. "NVIDIA H100 SXM5 80GB".
    pub name: String,
    /// "gpu" or "cpu".
    pub kind: String,
    /// Case-insensitive substrings of a device name (as NVML / CUDA report it) that identify
    /// this hardware; empty: never recognized automatically. An entry starting with '!' is an
    /// exclusion: the profile is not recognized when that substring occurs ("!3090 Ti").
    #[serde(default)]
    pub match_names: Vec<String>,
    /// Memory technology: "HBM3", "GDDR6X", "DDR5", ...
    pub memory: String,
    /// Peak memory bandwidth, GB/s (1e9 bytes per second).
    pub memory_bandwidth_gb_s: Constant,
    /// Energy to move one bit through DRAM/HBM, picojoules.
    pub memory_pj_per_bit: Constant,
    /// Energy of one FLOP, picojoules.
    pub compute_pj_per_flop: Constant,
    /// Which precision and how the compute constant was derived.
    pub compute_note: String,
    /// Board (GPU) or package (CPU) power limit, watts, where one applies.
    pub board_power_w: Option<Constant>,
    /// Anything else a reader of the figures should know.
    #[serde(default)]
    pub notes: String,
}

/// The file layout of data/hardware.toml: an array of `[[hardware]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HardwareFile {
    #[serde(default)]
    hardware: Vec<HardwareProfile>,
}

const SHIPPED_PROFILES: &str = include_str!("../data/hardware.toml");

/// The profiles shipped with landauer (data/hardware.toml, embedded in the binary and parsed
/// once).
pub fn hardware_profiles() -> &'static [HardwareProfile] {
    static PROFILES: OnceLock<Vec<HardwareProfile>> = OnceLock::new();
    PROFILES.get_or_init(|| {
        parse_hardware_profiles(SHIPPED_PROFILES)
            .unwrap_or_else(|e| panic!("the shipped data/hardware.toml is invalid: {e}"))
    })
}

/// Parses a hardware TOML (the format of data/hardware.toml: an array of tables
/// `[[hardware]]`) and checks it: every constant finite, 0 < low <= value <= high, with a
/// non-empty source; ids, names and kinds ("gpu" or "cpu") present; ids unique; no empty
/// match name. The error is one line saying which profile and field is wrong.
pub fn parse_hardware_profiles(text: &str) -> Result<Vec<HardwareProfile>, String> {
    let file: HardwareFile = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!(" line {}", line_of(text, s.start)))
            .unwrap_or_default();
        let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        format!("hardware TOML{line}: {msg}")
    })?;
    let mut seen: Vec<&str> = Vec::new();
    for (i, p) in file.hardware.iter().enumerate() {
        let who = if p.id.trim().is_empty() {
            format!("hardware profile #{}", i + 1)
        } else {
            format!("hardware profile '{}'", p.id)
        };
        if p.id.trim().is_empty() {
            return Err(format!("{who}: id is empty"));
        }
        if seen.contains(&p.id.as_str()) {
            return Err(format!("{who}: duplicate id"));
        }
        seen.push(&p.id);
        if p.name.trim().is_empty() {
            return Err(format!("{who}: name is empty"));
        }
        if p.kind != "gpu" && p.kind != "cpu" {
            return Err(format!(
                "{who}: kind must be \"gpu\" or \"cpu\", got {:?}",
                p.kind
            ));
        }
        if p.memory.trim().is_empty() {
            return Err(format!("{who}: memory is empty"));
        }
        if p.compute_note.trim().is_empty() {
            return Err(format!("{who}: compute_note is empty"));
        }
        let mut positive = 0;
        for m in &p.match_names {
            let body = m.strip_prefix('!').unwrap_or(m);
            if body.trim().is_empty() {
                return Err(format!("{who}: match_names has an empty entry {m:?}"));
            }
            if !m.starts_with('!') {
                positive += 1;
            }
        }
        if positive == 0 && !p.match_names.is_empty() {
            return Err(format!(
                "{who}: match_names has exclusions ('!...') but no name to match"
            ));
        }
        check_constant(&who, "memory_bandwidth_gb_s", &p.memory_bandwidth_gb_s)?;
        check_constant(&who, "memory_pj_per_bit", &p.memory_pj_per_bit)?;
        check_constant(&who, "compute_pj_per_flop", &p.compute_pj_per_flop)?;
        if let Some(c) = &p.board_power_w {
            check_constant(&who, "board_power_w", c)?;
        }
    }
    Ok(file.hardware)
}

/// 1-based line number of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    1 + text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn check_constant(who: &str, field: &str, c: &Constant) -> Result<(), String> {
    if !(c.value.is_finite() && c.low.is_finite() && c.high.is_finite()) {
        return Err(format!(
            "{who}: {field}: value, low and high must be finite (got {}, {}, {})",
            c.value, c.low, c.high
        ));
    }
    if c.low <= 0.0 {
        return Err(format!(
            "{who}: {field}: low must be above zero, got {}",
            c.low
        ));
    }
    if c.low > c.value {
        return Err(format!(
            "{who}: {field}: low {} is above value {}",
            c.low, c.value
        ));
    }
    if c.value > c.high {
        return Err(format!(
            "{who}: {field}: value {} is above high {}",
            c.value, c.high
        ));
    }
    if c.source.trim().is_empty() {
        return Err(format!("{who}: {field}: source is empty"));
    }
    Ok(())
}

/// The shipped profile with this id (exact, or failing that ignoring ASCII case). The error
/// lists the known ids.
pub fn hardware_profile(id: &str) -> Result<&'static HardwareProfile, String> {
    let all = hardware_profiles();
    all.iter()
        .find(|p| p.id == id)
        .or_else(|| all.iter().find(|p| p.id.eq_ignore_ascii_case(id)))
        .ok_or_else(|| {
            let known: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
            format!("unknown hardware '{id}'; known: {}", known.join(", "))
        })
}

/// The shipped profile whose match_names occur (case-insensitively) in `device_name`, none
/// of its exclusions ('!...') occurring. When several profiles match, the longest matching
/// name wins (so an "H100 NVL" entry would beat "H100"); on a tie, the first profile.
pub fn recognize_hardware(device_name: &str) -> Option<&'static HardwareProfile> {
    recognize_in(hardware_profiles(), device_name)
}

fn recognize_in<'a>(
    profiles: &'a [HardwareProfile],
    device_name: &str,
) -> Option<&'a HardwareProfile> {
    let name = device_name.to_lowercase();
    let mut best: Option<(usize, &HardwareProfile)> = None;
    for p in profiles {
        let excluded = p.match_names.iter().any(|m| {
            m.strip_prefix('!')
                .is_some_and(|x| name.contains(&x.to_lowercase()))
        });
        if excluded {
            continue;
        }
        let longest = p
            .match_names
            .iter()
            .filter(|m| !m.starts_with('!'))
            .filter(|m| !m.trim().is_empty() && name.contains(&m.to_lowercase()))
            .map(|m| m.len())
            .max();
        if let Some(len) = longest {
            if best.is_none_or(|(b, _)| len > b) {
                best = Some((len, p));
            }
        }
    }
    best.map(|(_, p)| p)
}

/// The roofline floor of one decode step, per token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Floor {
    /// The hardware profile's id.
    pub hardware: String,
    /// Rows decoded together in one step.
    pub batch: usize,
    /// Mean cached positions per row during decode.
    pub context: f64,
    /// Weight bytes read once per step (shared by the batch).
    pub weight_bytes_per_step: f64,
    /// Cached key/value bytes each row reads per step: kv_bytes_per_position × context.
    pub kv_bytes_per_row: f64,
    /// Bytes one step moves: the weights once + batch × kv_bytes_per_row.
    pub bytes_per_step: f64,
    /// FLOPs per token (matmuls and attention over the context).
    pub flops_per_token: f64,
    /// Memory energy per token: bytes_per_step × 8 × pJ/bit × 1e-12 / batch.
    pub memory_j_per_token: f64,
    /// Compute energy per token: flops_per_token × pJ/FLOP × 1e-12.
    pub compute_j_per_token: f64,
    /// The floor: memory + compute, joules per token.
    pub j_per_token: f64,
    /// The same with the profile's low constants.
    pub j_per_token_low: f64,
    /// The same with the profile's high constants.
    pub j_per_token_high: f64,
    /// Tokens per watt-hour at the floor: 3600 / j_per_token (infinite if that is 0).
    pub min_tokens_per_wh: f64,
    /// Time floor: seconds per step at the profile's peak memory bandwidth
    /// (bytes_per_step / bandwidth).
    pub memory_bound_step_s: f64,
}

/// The roofline floor of decoding `batch` rows at a mean of `context` cached positions on
/// `hw`. A batch of 0 is taken as 1; a context below 0 (or NaN) as 0.
pub fn roofline_floor(
    shape: &ModelShape,
    hw: &HardwareProfile,
    batch: usize,
    context: f64,
) -> Floor {
    let batch = batch.max(1);
    let context = if context > 0.0 { context } else { 0.0 };
    let b = batch as f64;
    let weight_bytes_per_step = shape.weight_bytes_per_step as f64;
    let kv_bytes_per_row = shape.kv_bytes_per_position() * context;
    let bytes_per_step = weight_bytes_per_step + b * kv_bytes_per_row;
    let flops_per_token = shape.flops_per_token(context);
    let memory_j = |pj_per_bit: f64| bytes_per_step * 8.0 * pj_per_bit * 1e-12 / b;
    let compute_j = |pj_per_flop: f64| flops_per_token * pj_per_flop * 1e-12;
    let (mem, cmp) = (&hw.memory_pj_per_bit, &hw.compute_pj_per_flop);
    let memory_j_per_token = memory_j(mem.value);
    let compute_j_per_token = compute_j(cmp.value);
    let j_per_token = memory_j_per_token + compute_j_per_token;
    Floor {
        hardware: hw.id.clone(),
        batch,
        context,
        weight_bytes_per_step,
        kv_bytes_per_row,
        bytes_per_step,
        flops_per_token,
        memory_j_per_token,
        compute_j_per_token,
        j_per_token,
        j_per_token_low: memory_j(mem.low) + compute_j(cmp.low),
        j_per_token_high: memory_j(mem.high) + compute_j(cmp.high),
        min_tokens_per_wh: crate::JOULES_PER_WH / j_per_token,
        memory_bound_step_s: bytes_per_step / (hw.memory_bandwidth_gb_s.value * 1e9),
    }
}

/// Inputs of the ladder for one run (or one sweep row).
#[derive(Debug, Clone, Default)]
pub struct LadderInput {
    /// Measured joules per generated token, if any.
    pub measured_j_per_token: Option<f64>,
    /// Idle-subtracted, where the meter allowed.
    pub active_j_per_token: Option<f64>,
    /// True when the measured energy is an estimate (CPU-time model), not a meter.
    pub estimated: bool,
    /// Mean entropy per generated token, bits.
    pub bits_per_token: f64,
    /// The yardstick's temperature, kelvin (300 by default at call sites).
    pub kelvin: f64,
    /// Mean die temperature the meter reported, °C (GPUs), if any.
    pub die_temperature_c: Option<f64>,
}

/// One rung of the ladder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rung {
    /// What the rung is ("measured", "roofline floor", "Landauer at 300 K", ...).
    pub name: String,
    /// Joules per token.
    pub j_per_token: f64,
    /// Lower end of the rung's range, where it has one.
    pub low: Option<f64>,
    /// Upper end of the rung's range, where it has one.
    pub high: Option<f64>,
    /// A short explanation of the rung.
    pub note: String,
}

/// How many times one main rung lies above the next.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RungRatio {
    /// Name of the higher rung in the ladder's order.
    pub upper: String,
    /// Name of the next main rung below it.
    pub lower: String,
    /// upper / lower.
    pub ratio: f64,
}

/// A measured energy per token set against the roofline floor and the Landauer yardstick.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ladder {
    /// Highest first: measured total, measured active, roofline floor (with its memory and
    /// compute parts as separate rungs after it, named "floor: memory" and "floor: compute"),
    /// Landauer at `kelvin`, Landauer at die temperature. Missing inputs give no rung: no
    /// measured rungs without measurements (or with values that are not finite and
    /// positive), no Landauer rungs without bits (0 bits scale to 0 J) and no die rung
    /// without a die temperature.
    pub rungs: Vec<Rung>,
    /// Ratios between consecutive main rungs (measured → active → floor → Landauer(kelvin) →
    /// Landauer(die)), skipping the floor-part rungs and any rung that is absent.
    pub ratios: Vec<RungRatio>,
    /// The floor the ladder was built on.
    pub floor: Floor,
    /// Mean entropy per generated token, bits.
    pub bits_per_token: f64,
    /// bits × k_B × kelvin × ln 2, joules per token.
    pub landauer_j_per_token: f64,
    /// bits × k_B × (die °C + 273.15) × ln 2, where a die temperature was reported.
    pub landauer_die_j_per_token: Option<f64>,
    /// measured / floor.
    pub measured_over_floor: Option<f64>,
    /// measured / Landauer at `kelvin`.
    pub measured_over_landauer: Option<f64>,
    /// floor / Landauer at `kelvin`; None when bits are 0.
    pub floor_over_landauer: Option<f64>,
    /// Tokens per watt-hour at the floor.
    pub min_tokens_per_wh: f64,
    /// Tokens per watt-hour measured.
    pub measured_tokens_per_wh: Option<f64>,
    /// The words every ladder must carry (what Landauer and the floor do and do not bound).
    pub caveats: Vec<String>,
}

/// Name of the floor's memory-part rung.
pub const RUNG_FLOOR_MEMORY: &str = "floor: memory";
/// Name of the floor's compute-part rung.
pub const RUNG_FLOOR_COMPUTE: &str = "floor: compute";
/// Name of the measured rung.
pub const RUNG_MEASURED: &str = "measured";
/// Name of the idle-subtracted measured rung.
pub const RUNG_ACTIVE: &str = "measured, active (idle subtracted)";
/// Name of the roofline-floor rung.
pub const RUNG_FLOOR: &str = "roofline floor";

/// Why Landauer is a yardstick here, not a bound.
pub const CAVEAT_LANDAUER: &str = "Landauer bounds the energy to erase a bit; a sampled token's \
entropy is not erased, so the Landauer rungs are a yardstick (a scale), not a bound on \
sampling.";
/// What the roofline floor counts and leaves out.
pub const CAVEAT_FLOOR: &str = "The roofline floor counts only the bytes moved through DRAM/HBM \
and the FLOPs at the profile's energy per FLOP; it ignores caches, interconnect and idle or \
static power, so real hardware cannot reach it, but it is not a hard physical bound either.";

/// Builds the ladder for one run from its measurements and its roofline floor.
pub fn ladder(input: &LadderInput, floor: Floor) -> Ladder {
    let usable = |x: Option<f64>| x.filter(|v| v.is_finite() && *v > 0.0);
    let measured = usable(input.measured_j_per_token);
    let active = usable(input.active_j_per_token);
    let bits = if input.bits_per_token.is_finite() && input.bits_per_token > 0.0 {
        input.bits_per_token
    } else {
        0.0
    };
    let kelvin = input.kelvin;
    let landauer_j_per_token = bits * crate::landauer_joules_per_bit(kelvin);
    let die_kelvin = input
        .die_temperature_c
        .filter(|c| c.is_finite())
        .map(|c| c + 273.15);
    let landauer_die_j_per_token = die_kelvin.map(|k| bits * crate::landauer_joules_per_bit(k));

    let mut rungs = Vec::new();
    // Main rungs in ladder order, for the ratios.
    let mut main: Vec<(String, f64)> = Vec::new();
    if let Some(m) = measured {
        let note = if input.estimated {
            "ESTIMATED (CPU-time model), not a meter reading: energy per generated token"
        } else {
            "meter reading: energy per generated token, idle power included"
        };
        rungs.push(rung(RUNG_MEASURED, m, None, None, note));
        main.push((RUNG_MEASURED.into(), m));
    }
    if let Some(a) = active {
        let note = if input.estimated {
            "ESTIMATED (CPU-time model), less the idle power"
        } else {
            "meter reading less the idle power measured before the run"
        };
        rungs.push(rung(RUNG_ACTIVE, a, None, None, note));
        main.push((RUNG_ACTIVE.into(), a));
    }
    let f = &floor;
    rungs.push(rung(
        RUNG_FLOOR,
        f.j_per_token,
        Some(f.j_per_token_low),
        Some(f.j_per_token_high),
        &format!(
            "memory + compute at the '{}' profile's constants, batch {}, context {}; range from \
             its low and high constants",
            f.hardware,
            f.batch,
            fmt_num(f.context)
        ),
    ));
    main.push((RUNG_FLOOR.into(), f.j_per_token));
    rungs.push(rung(
        RUNG_FLOOR_MEMORY,
        f.memory_j_per_token,
        None,
        None,
        &format!(
            "{} bytes per step (weights once, KV cache per row) × 8 × pJ/bit, over the batch \
             of {}",
            fmt_sig(f.bytes_per_step),
            f.batch
        ),
    ));
    rungs.push(rung(
        RUNG_FLOOR_COMPUTE,
        f.compute_j_per_token,
        None,
        None,
        &format!("{} FLOPs per token × pJ/FLOP", fmt_sig(f.flops_per_token)),
    ));
    if landauer_j_per_token > 0.0 && landauer_j_per_token.is_finite() {
        let name = format!("Landauer at {} K", fmt_num(kelvin));
        rungs.push(rung(
            &name,
            landauer_j_per_token,
            None,
            None,
            &format!(
                "{bits:.3} bits per token × k_B·T·ln 2 at {} K: a yardstick, not a bound",
                fmt_num(kelvin)
            ),
        ));
        main.push((name, landauer_j_per_token));
        if let (Some(j), Some(c)) = (landauer_die_j_per_token, input.die_temperature_c) {
            if j > 0.0 && j.is_finite() {
                let name = format!("Landauer at die temperature ({c:.0} °C)");
                rungs.push(rung(
                    &name,
                    j,
                    None,
                    None,
                    &format!(
                        "the same bits at the mean die temperature the meter reported, {:.1} K",
                        c + 273.15
                    ),
                ));
                main.push((name, j));
            }
        }
    }
    let ratios = main
        .windows(2)
        .filter(|w| w[1].1 > 0.0)
        .map(|w| RungRatio {
            upper: w[0].0.clone(),
            lower: w[1].0.clone(),
            ratio: w[0].1 / w[1].1,
        })
        .collect();

    let positive = |x: f64| x > 0.0 && x.is_finite();
    let over = |num: Option<f64>, den: f64| num.filter(|_| positive(den)).map(|n| n / den);
    let mut caveats = vec![CAVEAT_LANDAUER.to_string(), CAVEAT_FLOOR.to_string()];
    if input.estimated && (measured.is_some() || active.is_some()) {
        caveats.push(
            "The measured energy is ESTIMATED from CPU time (a model, not a meter): its ratios \
             to the floor and to Landauer are only as good as that model."
                .to_string(),
        );
    }
    Ladder {
        rungs,
        ratios,
        bits_per_token: bits,
        landauer_j_per_token,
        landauer_die_j_per_token: landauer_die_j_per_token.filter(|_| bits > 0.0),
        measured_over_floor: over(measured, floor.j_per_token),
        measured_over_landauer: over(measured, landauer_j_per_token),
        floor_over_landauer: over(Some(floor.j_per_token), landauer_j_per_token),
        min_tokens_per_wh: floor.min_tokens_per_wh,
        measured_tokens_per_wh: measured.map(|m| crate::JOULES_PER_WH / m),
        caveats,
        floor,
    }
}

fn rung(name: &str, j: f64, low: Option<f64>, high: Option<f64>, note: &str) -> Rung {
    Rung {
        name: name.to_string(),
        j_per_token: j,
        low,
        high,
        note: note.to_string(),
    }
}

/// A number as a person writes it: "300", "310.5".
fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A large count in scientific notation with 4 significant digits: "1.603e10".
fn fmt_sig(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-3) {
        format!("{x:.3e}")
    } else {
        fmt_num(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(a.abs())
    }

    fn constant(value: f64, low: f64, high: f64) -> Constant {
        Constant {
            value,
            low,
            high,
            source: "test".into(),
        }
    }

    /// A made-up architecture: 2 layers, q_dim 64, kv_dim 32, f16 cache.
    fn tiny_shape() -> ModelShape {
        ModelShape {
            weight_bytes_per_step: 1_000_000,
            matmul_params: 2_000_000,
            layers: 2,
            q_dim: 64,
            kv_dim: 32,
            kv_bytes_per_elem: 2,
        }
    }

    /// A made-up profile: 100 GB/s, 10 pJ/bit (5..20), 2 pJ/FLOP (1..4).
    fn tiny_profile() -> HardwareProfile {
        HardwareProfile {
            id: "toy".into(),
            name: "Toy".into(),
            kind: "gpu".into(),
            match_names: vec![],
            memory: "toy DRAM".into(),
            memory_bandwidth_gb_s: constant(100.0, 50.0, 100.0),
            memory_pj_per_bit: constant(10.0, 5.0, 20.0),
            compute_pj_per_flop: constant(2.0, 1.0, 4.0),
            compute_note: "test".into(),
            board_power_w: None,
            notes: String::new(),
        }
    }

    #[test]
    fn floor_by_hand() {
        let f = roofline_floor(&tiny_shape(), &tiny_profile(), 4, 10.0);
        // KV per position: K and V × 2 layers × 32 wide × 2 bytes = 256 bytes; 10 positions.
        let kv_row = (2.0 * 2.0 * 32.0 * 2.0) * 10.0;
        let bytes = 1_000_000.0 + 4.0 * kv_row;
        let flops = 2.0 * 2_000_000.0 + 4.0 * 2.0 * 64.0 * 10.0;
        let mem = bytes * 8.0 * 10.0e-12 / 4.0;
        let cmp = flops * 2.0e-12;
        assert_eq!(f.batch, 4);
        assert_eq!(f.hardware, "toy");
        assert!(
            close(f.kv_bytes_per_row, 2560.0, 1e-12),
            "{}",
            f.kv_bytes_per_row
        );
        assert!(close(f.bytes_per_step, 1_010_240.0, 1e-12));
        assert!(close(bytes, 1_010_240.0, 1e-12));
        assert!(close(f.flops_per_token, 4_005_120.0, 1e-12));
        assert!(close(flops, 4_005_120.0, 1e-12));
        assert!(close(f.memory_j_per_token, mem, 1e-12));
        assert!(close(f.compute_j_per_token, cmp, 1e-12));
        assert!(close(f.j_per_token, mem + cmp, 1e-12));
        let low = bytes * 8.0 * 5.0e-12 / 4.0 + flops * 1.0e-12;
        let high = bytes * 8.0 * 20.0e-12 / 4.0 + flops * 4.0e-12;
        assert!(close(f.j_per_token_low, low, 1e-12));
        assert!(close(f.j_per_token_high, high, 1e-12));
        assert!(close(f.min_tokens_per_wh, 3600.0 / (mem + cmp), 1e-12));
        assert!(close(f.memory_bound_step_s, bytes / 100.0e9, 1e-12));
        // Spelled out: 1,010,240 B × 80 pJ / 4 = 20.2048 µJ; 4,005,120 × 2 pJ = 8.01024 µJ.
        assert!(close(f.j_per_token, 20.2048e-6 + 8.01024e-6, 1e-12));
    }

    #[test]
    fn batch_amortizes_memory_not_compute() {
        let (shape, hw) = (tiny_shape(), tiny_profile());
        let floors: Vec<Floor> = [1, 2, 8, 64]
            .iter()
            .map(|&b| roofline_floor(&shape, &hw, b, 100.0))
            .collect();
        for w in floors.windows(2) {
            assert!(w[1].memory_j_per_token < w[0].memory_j_per_token);
            assert_eq!(w[1].compute_j_per_token, w[0].compute_j_per_token);
            assert!(w[1].j_per_token < w[0].j_per_token);
        }
        // The KV cache is per row, so memory J/token tends to the KV share, not to 0.
        let kv_only = shape.kv_bytes_per_position() * 100.0 * 8.0 * 10.0e-12;
        assert!(floors[3].memory_j_per_token > kv_only);
        // Batch 0 is taken as 1, and a negative context as 0.
        let z = roofline_floor(&shape, &hw, 0, -5.0);
        assert_eq!(z.batch, 1);
        assert_eq!(z.context, 0.0);
        assert_eq!(z.kv_bytes_per_row, 0.0);
    }

    #[test]
    fn shipped_profiles_parse_and_are_sound() {
        let all = hardware_profiles();
        for id in [
            "h100-sxm",
            "h200",
            "a100-sxm",
            "rtx-3090",
            "rtx-4090",
            "ddr5-server-cpu",
            "build-vm",
        ] {
            let p = hardware_profile(id).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.id, id);
        }
        for p in all {
            let mut cs = vec![
                ("bandwidth", &p.memory_bandwidth_gb_s),
                ("pJ/bit", &p.memory_pj_per_bit),
                ("pJ/FLOP", &p.compute_pj_per_flop),
            ];
            if let Some(b) = &p.board_power_w {
                cs.push(("board", b));
            }
            for (what, c) in cs {
                assert!(
                    c.low <= c.value && c.value <= c.high && c.low > 0.0,
                    "{} {what}: {c:?}",
                    p.id
                );
                assert!(!c.source.trim().is_empty(), "{} {what}", p.id);
            }
            assert!(!p.compute_note.is_empty(), "{}", p.id);
            if p.kind == "cpu" {
                assert!(
                    p.match_names.is_empty(),
                    "{}: CPUs are never recognized",
                    p.id
                );
            }
        }
        assert_eq!(hardware_profile("build-vm").unwrap().kind, "cpu");
        // The VM's bandwidth is landauer's own measurement.
        let vm = hardware_profile("build-vm").unwrap();
        assert_eq!(vm.memory_bandwidth_gb_s.value, 26.5);
        assert!(vm
            .memory_bandwidth_gb_s
            .source
            .contains("cpu-2026-11-26/summary.json"));
        let e = hardware_profile("tpu-v9").unwrap_err();
        assert!(
            e.starts_with("unknown hardware 'tpu-v9'; known: h100-sxm, h200"),
            "{e}"
        );
        assert_eq!(hardware_profile("H100-SXM").unwrap().id, "h100-sxm");
    }

    #[test]
    fn device_names_are_recognized() {
        let id = |n: &str| recognize_hardware(n).map(|p| p.id.as_str());
        assert_eq!(id("NVIDIA H100 80GB HBM3"), Some("h100-sxm"));
        assert_eq!(id("NVIDIA H200"), Some("h200"));
        assert_eq!(id("NVIDIA GeForce RTX 3090"), Some("rtx-3090"));
        assert_eq!(id("NVIDIA GeForce RTX 4090"), Some("rtx-4090"));
        assert_eq!(id("NVIDIA A100-SXM4-80GB"), Some("a100-sxm"));
        assert_eq!(id("nvidia geforce rtx 4090"), Some("rtx-4090"));
        assert_eq!(id("Some Unknown Thing"), None);
        // Different parts that share a name's prefix are not taken for these.
        assert_eq!(id("NVIDIA GeForce RTX 3090 Ti"), None);
        assert_eq!(id("NVIDIA GeForce RTX 4090 Laptop GPU"), None);
        assert_eq!(id("NVIDIA GH200 480GB"), None);
        assert_eq!(id("NVIDIA H100 PCIe"), None);
        assert_eq!(id("NVIDIA A100-SXM4-40GB"), None);
        assert_eq!(id("AMD EPYC 9654 96-Core Processor"), None);
    }

    #[test]
    fn longest_match_wins() {
        let mut a = tiny_profile();
        a.id = "h100".into();
        a.match_names = vec!["H100".into()];
        let mut b = tiny_profile();
        b.id = "h100-nvl".into();
        b.match_names = vec!["H100 NVL".into()];
        let ps = [a, b];
        assert_eq!(recognize_in(&ps, "NVIDIA H100 NVL").unwrap().id, "h100-nvl");
        assert_eq!(recognize_in(&ps, "NVIDIA H100 PCIe").unwrap().id, "h100");
    }

    const GOOD: &str = r#"
[[hardware]]
id = "x"
name = "X"
kind = "gpu"
memory = "HBM"
memory_bandwidth_gb_s = { value = 1.0, low = 1.0, high = 1.0, source = "s" }
memory_pj_per_bit = { value = 4.0, low = 2.0, high = 6.0, source = "s" }
compute_pj_per_flop = { value = 1.0, low = 0.5, high = 2.0, source = "s" }
compute_note = "n"
"#;

    #[test]
    fn parse_errors_name_profile_and_field() {
        let ok = parse_hardware_profiles(GOOD).unwrap();
        assert_eq!(ok.len(), 1);
        assert!(ok[0].match_names.is_empty() && ok[0].board_power_w.is_none());

        let bad = GOOD.replace("{ value = 4.0, low = 2.0,", "{ value = 4.0, low = 5.0,");
        let e = parse_hardware_profiles(&bad).unwrap_err();
        assert!(
            e.contains("'x'") && e.contains("memory_pj_per_bit") && e.contains("low 5"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");

        let dup = format!("{GOOD}{GOOD}");
        let e = parse_hardware_profiles(&dup).unwrap_err();
        assert!(e.contains("'x'") && e.contains("duplicate id"), "{e}");

        let no_source = GOOD.replace(
            "{ value = 1.0, low = 0.5, high = 2.0, source = \"s\" }",
            "{ value = 1.0, low = 0.5, high = 2.0, source = \" \" }",
        );
        let e = parse_hardware_profiles(&no_source).unwrap_err();
        assert!(
            e.contains("compute_pj_per_flop") && e.contains("source"),
            "{e}"
        );

        let above = GOOD.replace("high = 2.0", "high = 0.9");
        let e = parse_hardware_profiles(&above).unwrap_err();
        assert!(
            e.contains("compute_pj_per_flop: value 1 is above high 0.9"),
            "{e}"
        );

        let empty_match = GOOD.replace("kind = \"gpu\"", "kind = \"gpu\"\nmatch_names = [\"\"]");
        let e = parse_hardware_profiles(&empty_match).unwrap_err();
        assert!(e.contains("match_names"), "{e}");

        let kind = GOOD.replace("kind = \"gpu\"", "kind = \"tpu\"");
        assert!(parse_hardware_profiles(&kind).unwrap_err().contains("kind"));

        let missing = GOOD.replace("compute_note = \"n\"\n", "");
        let e = parse_hardware_profiles(&missing).unwrap_err();
        assert!(
            e.starts_with("hardware TOML") && e.contains("compute_note"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");

        let typo = GOOD.replace("compute_note", "compute_notes");
        assert!(parse_hardware_profiles(&typo).is_err());
    }

    fn input(bits: f64, die: Option<f64>) -> LadderInput {
        LadderInput {
            measured_j_per_token: Some(1.0),
            active_j_per_token: Some(0.5),
            estimated: false,
            bits_per_token: bits,
            kelvin: 300.0,
            die_temperature_c: die,
        }
    }

    #[test]
    fn ladder_order_and_ratios() {
        let floor = roofline_floor(&tiny_shape(), &tiny_profile(), 1, 10.0);
        let fj = floor.j_per_token;
        let l = ladder(&input(3.0, Some(60.0)), floor.clone());
        let names: Vec<&str> = l.rungs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "measured",
                "measured, active (idle subtracted)",
                "roofline floor",
                "floor: memory",
                "floor: compute",
                "Landauer at 300 K",
                "Landauer at die temperature (60 °C)",
            ]
        );
        let lj = 3.0 * crate::landauer_joules_per_bit(300.0);
        let dj = 3.0 * crate::landauer_joules_per_bit(333.15);
        assert!(close(l.landauer_j_per_token, lj, 1e-12));
        assert!(close(l.landauer_die_j_per_token.unwrap(), dj, 1e-12));
        let pairs: Vec<(&str, &str)> = l
            .ratios
            .iter()
            .map(|r| (r.upper.as_str(), r.lower.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("measured", "measured, active (idle subtracted)"),
                ("measured, active (idle subtracted)", "roofline floor"),
                ("roofline floor", "Landauer at 300 K"),
                ("Landauer at 300 K", "Landauer at die temperature (60 °C)"),
            ]
        );
        assert!(close(l.ratios[0].ratio, 2.0, 1e-12));
        assert!(close(l.ratios[1].ratio, 0.5 / fj, 1e-12));
        assert!(close(l.ratios[2].ratio, fj / lj, 1e-12));
        assert!(close(l.ratios[3].ratio, 300.0 / 333.15, 1e-12));
        assert!(close(l.measured_over_floor.unwrap(), 1.0 / fj, 1e-12));
        assert!(close(l.measured_over_landauer.unwrap(), 1.0 / lj, 1e-12));
        assert!(close(l.floor_over_landauer.unwrap(), fj / lj, 1e-12));
        assert!(close(l.measured_tokens_per_wh.unwrap(), 3600.0, 1e-12));
        assert_eq!(l.min_tokens_per_wh, floor.min_tokens_per_wh);
        let f = &l.rungs[2];
        assert_eq!(
            (f.low, f.high),
            (Some(floor.j_per_token_low), Some(floor.j_per_token_high))
        );
        assert!(l.caveats.iter().any(|c| c.contains("yardstick")));
        assert!(l
            .caveats
            .iter()
            .any(|c| c.contains("not a hard physical bound")));
        assert!(l.rungs[0].note.contains("meter"));

        // No die temperature: no die rung, and the last ratio ends at Landauer(kelvin).
        let l = ladder(&input(3.0, None), floor.clone());
        assert!(!l.rungs.iter().any(|r| r.name.contains("die")));
        assert_eq!(l.ratios.len(), 3);
        assert!(l.landauer_die_j_per_token.is_none());

        // No active measurement: measured steps straight to the floor.
        let mut i = input(3.0, None);
        i.active_j_per_token = None;
        i.estimated = true;
        i.kelvin = 310.5;
        let l = ladder(&i, floor.clone());
        assert_eq!(l.ratios[0].upper, "measured");
        assert_eq!(l.ratios[0].lower, "roofline floor");
        assert!(l.rungs.iter().any(|r| r.name == "Landauer at 310.5 K"));
        assert!(l.rungs[0].note.contains("ESTIMATED (CPU-time model)"));
        assert!(l.caveats.iter().any(|c| c.contains("ESTIMATED")));
    }

    #[test]
    fn zero_bits_give_no_landauer_ratio() {
        let floor = roofline_floor(&tiny_shape(), &tiny_profile(), 1, 10.0);
        let l = ladder(&input(0.0, Some(50.0)), floor.clone());
        assert_eq!(l.floor_over_landauer, None);
        assert_eq!(l.measured_over_landauer, None);
        assert_eq!(l.landauer_j_per_token, 0.0);
        assert!(!l.rungs.iter().any(|r| r.name.starts_with("Landauer")));
        assert!(l.ratios.iter().all(|r| r.ratio.is_finite()));
        // Nothing measured: the floor and its parts alone.
        let l = ladder(
            &LadderInput {
                kelvin: 300.0,
                ..Default::default()
            },
            floor,
        );
        let names: Vec<&str> = l.rungs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["roofline floor", "floor: memory", "floor: compute"]);
        assert!(l.ratios.is_empty());
        assert_eq!(l.measured_over_floor, None);
        assert_eq!(l.measured_tokens_per_wh, None);
    }

    #[test]
    fn published_8b_example() {
        // energy-anchors.md: an 8B bf16 model streams 16 GB of weights per decode step,
        // ~0.51 J per step at HBM2's 3.97 pJ/bit.
        let shape = ModelShape {
            weight_bytes_per_step: 16_000_000_000,
            matmul_params: 8_000_000_000,
            layers: 32,
            q_dim: 4096,
            kv_dim: 1024,
            kv_bytes_per_elem: 2,
        };
        let hw = hardware_profile("h100-sxm").unwrap();
        assert_eq!(hw.memory_pj_per_bit.value, 3.97);
        let f = roofline_floor(&shape, hw, 1, 0.0);
        assert!(
            close(f.memory_j_per_token, 0.51, 0.02),
            "{}",
            f.memory_j_per_token
        );
        // ... and at batch 512 the floor is ~0.012 J/token (weights 0.51/512 J plus
        // 16e9 FLOPs at 0.71 pJ).
        let f = roofline_floor(&shape, hw, 512, 0.0);
        assert!(close(f.j_per_token, 0.012, 0.05), "{}", f.j_per_token);
    }
}
