//! landauer's reports on a trace (`landauer generate --trace`) or a sweep (`landauer sweep`):
//! the energy ladder, the figures, and the HTML page that holds them.
//!
//! ```
//! use landauer_physics::floor::ModelShape;
//! use landauer_reports::html;
//! use landauer_reports::ladder::{format_gap, gap_report, FootprintOverrides, HardwareChoice};
//! use landauer_trace::{read_input, SweepFile, SweepHeader, SweepRow};
//!
//! // A sweep of one batch size, as `landauer sweep --out DIR` writes it. Its header records
//! // the model's shapes, so that the floor needs no model file.
//! let header = SweepHeader {
//!     model: "tiny".into(),
//!     quantization: "Q4_1".into(),
//!     device: "cpu".into(),
//!     shape: Some(ModelShape {
//!         weight_bytes_per_step: 100_000_000,
//!         matmul_params: 135_000_000,
//!         layers: 30,
//!         q_dim: 576,
//!         kv_dim: 192,
//!         kv_bytes_per_elem: 2,
//!     }),
//!     ..Default::default()
//! };
//! let row = SweepRow {
//!     batch: 1,
//!     runs: 3,
//!     prompt_tokens: 8,
//!     generated_tokens: 64,
//!     prefill_s: 0.1,
//!     prefill_tokens_per_s: 80.0,
//!     prefill_energy_j: None,
//!     decode_window_s: 2.0,
//!     decode_tokens_per_s: 32.0,
//!     mean_power_w: Some(16.0),
//!     joules_per_token: Some(0.5),
//!     active_joules_per_token: None,
//!     tokens_per_wh: Some(7200.0),
//!     mean_entropy_bits: 2.0,
//!     bits_per_joule: Some(4.0),
//!     landauer_gap: None,
//!     steady: true,
//!     kwh_per_million_tokens: None,
//!     gco2_per_million_tokens: None,
//!     cost_per_million_tokens: None,
//!     die_temperature_c: None,
//! };
//! let file = SweepFile {
//!     landauer_version: "0.1.0".into(),
//!     header,
//!     method: "median of 3 runs".into(),
//!     caveats: Vec::new(),
//!     rows: vec![row],
//!     runs: Vec::new(),
//! };
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("sweep.json"), serde_json::to_string_pretty(&file)?)?;
//!
//! // Read it back as `landauer gap` and `landauer report` do, and set the measured 0.5 J per
//! // token beside the roofline floor. A CPU run without a named hardware profile gets the
//! // generic DDR5 server CPU.
//! let input = read_input(dir.path())?;
//! let (hw, fp) = (HardwareChoice::default(), FootprintOverrides::default());
//! let gap = gap_report(&input, &hw, &fp)?;
//! assert_eq!(gap.hardware.id, "ddr5-server-cpu");
//! let ladder = &gap.ladders[0].ladder;
//! assert!(ladder.floor.j_per_token > 0.0 && ladder.floor.j_per_token < 0.5);
//! assert_eq!(ladder.measured_over_floor, Some(0.5 / ladder.floor.j_per_token));
//! assert!(format_gap(&gap).starts_with("landauer gap: tiny Q4_1 on cpu\n"));
//!
//! // The HTML report: one page with the sweep's curves and the ladder, inline.
//! let report = html::build(&input, &hw, &fp, 96)?;
//! assert!(report.html.contains("<title>landauer sweep report: tiny</title>"));
//! let names: Vec<&str> = report.figures.iter().map(|(name, _)| *name).collect();
//! assert_eq!(names, ["sweep", "ladder"]);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! [`ladder`] computes the ladder: the measured energy per token, the roofline floor of the
//! model on its hardware (the bytes and FLOPs of a decode step at the hardware's energy per
//! bit and per FLOP), and the Landauer yardstick of the bits each token carries, with the
//! ratios between them; [`ladder::format_gap`] writes it as text. [`charts`] draws the
//! figures as SVG documents (and PNG files). [`html`] builds the self-contained HTML report
//! of a trace or a sweep from both.
//!
//! The inputs are plain values, not command-line flags, though error messages name the
//! `landauer` flags that fix them (`--hardware`, `--shapes-from`, `--grid-gco2-per-kwh`).

pub mod charts;
pub mod html;
pub mod ladder;
pub mod study_files;
pub mod sweep_files;
