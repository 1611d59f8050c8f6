//! `landauer report`: one self-contained HTML file for a trace or a sweep.
//!
//! Everything is inline: the figures are SVG drawn with plotters (landauer_reports::charts),
//! the token tooltips are CSS only, and there is no script and no network request, so the
//! file opens from disk, offline, and prints.

use crate::gap::HardwareArgs;
use crate::FootprintArgs;
use anyhow::Context;
use clap::Args;
use landauer_reports::charts::{self, LadderBar};
use landauer_reports::ladder::{self, GapReport};
use landauer_trace::TokenRecord;
use landauer_trace::{Input, Sweep, Trace};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct ReportArgs {
    /// A JSONL trace (generate --trace) or a sweep: its sweep.json or its directory.
    #[arg(value_name = "TRACE|SWEEP")]
    pub input: PathBuf,
    /// The HTML file to write.
    #[arg(long, short = 'o', default_value = "report.html")]
    pub output: PathBuf,
    /// Also write the main figures as PNG files beside the report (REPORT-ladder.png, ...).
    #[arg(long)]
    pub png: bool,
    /// Steps drawn in the Galton-board view (the first N tokens).
    #[arg(long, default_value_t = 96)]
    pub galton_steps: usize,
    #[command(flatten)]
    pub hardware: HardwareArgs,
    #[command(flatten)]
    pub footprint: FootprintArgs,
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '\n' => o.push_str("&#10;"),
            c if c.is_control() => {}
            c => o.push(c),
        }
    }
    o
}

/// A token's text as shown (escaped; whitespace kept by the container's pre-wrap).
fn token_html(s: &str) -> String {
    esc(s).replace("&#10;", "\n")
}

/// An alternative's text for a tooltip: visible whitespace, quoted.
fn quoted(s: &str) -> String {
    format!("{:?}", s)
}

const STYLE: &str = r#"
:root { --ink:#1d2330; --mute:#5b6475; --line:#d9dde5; --bg:#fbfbfd; --accent:#2a5bd7; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color:var(--ink); background:var(--bg); }
main { max-width: 1140px; margin: 0 auto; padding: 24px 20px 60px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0; color: var(--mute); }
nav { margin: 14px 0 8px; display:flex; flex-wrap:wrap; gap:6px 14px; font-size:14px; }
nav a { color: var(--accent); text-decoration:none; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 20px; margin:18px 0; }
section h2 { margin: 0 0 8px; font-size: 19px; }
section p.lead { margin: 0 0 12px; color: var(--mute); }
.cards { display:grid; grid-template-columns: repeat(auto-fill, minmax(170px,1fr)); gap:10px; }
.card { border:1px solid var(--line); border-radius:6px; padding:8px 10px; background:var(--bg); }
.card b { display:block; font-size:20px; }
.card span { color:var(--mute); font-size:13px; }
.text { white-space: pre-wrap; font: 16px/1.9 ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-word; }
.prompt { color: var(--mute); }
.tok { position: relative; border-radius: 3px; padding: 1px 0; cursor: default; }
.tok:hover { outline: 2px solid var(--accent); }
.tok:hover::after { content: attr(data-tip); position: absolute; left: 0; top: 1.9em; z-index: 10;
  white-space: pre; font: 13px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; color: #fff;
  background: #1d2330; padding: 8px 10px; border-radius: 6px; box-shadow: 0 4px 14px rgba(0,0,0,.25); pointer-events: none; }
.legend { display:flex; align-items:center; gap:8px; font-size:13px; color:var(--mute); margin-bottom:10px; }
.legend .bar { width: 220px; height: 12px; border-radius: 3px; background: linear-gradient(to right, hsl(45,95%,97%), hsl(25,95%,72%), hsl(5,85%,58%)); }
.row-label { font-size: 13px; color: var(--mute); margin-top: 10px; }
figure { margin: 8px 0 4px; }
figure svg { max-width: 100%; height: auto; display:block; }
figcaption { color: var(--mute); font-size: 13px; }
table { border-collapse: collapse; font-size: 14px; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
ul.caveats li { margin: 4px 0; }
.warn { color: #a4301b; font-weight: 600; }
footer { color: var(--mute); font-size: 13px; margin-top: 24px; }
"#;

/// The shade of a token by its entropy: pale at 0 bits, deep red at `max` bits.
fn shade(bits: f64, max: f64) -> String {
    let x = if max > 0.0 {
        (bits / max).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let hue = 45.0 - 40.0 * x;
    let light = 97.0 - 39.0 * x;
    format!("hsl({hue:.0},90%,{light:.0}%)")
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

/// A token's tooltip: its numbers and the alternatives the model weighed.
fn tooltip(t: &TokenRecord) -> String {
    let mut s = format!(
        "token {} {}\nentropy {:.3} bits · surprisal {:.3} bits · p {:.4}\nenergy {}{}",
        t.index,
        quoted(&t.text),
        t.entropy_bits,
        t.surprisal_bits,
        t.prob,
        fmt_opt(t.energy_j, |j| format!("{:.3} mJ", j * 1e3)),
        if t.energy_estimated {
            " (ESTIMATED)"
        } else {
            ""
        }
    );
    if !t.top.is_empty() {
        s.push_str("\nalternatives:");
        for a in &t.top {
            let mark = if a.token_id == t.token_id { "▶" } else { " " };
            let _ = write!(s, "\n {mark} {:<18} {:.4}", quoted(&a.text), a.prob);
        }
    }
    s
}

/// The text, each token shaded by its entropy, one block per batch row.
fn text_section(t: &Trace, out: &mut String) {
    let max_bits = t
        .tokens
        .iter()
        .map(|x| x.entropy_bits)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let batch = t.run.batch.max(1);
    let prompts: Vec<&str> = if batch > 1 {
        t.run.prompt.lines().collect()
    } else {
        vec![t.run.prompt.as_str()]
    };
    const MAX_ROWS: usize = 16;
    let _ = write!(
        out,
        r#"<section id="text"><h2>The text</h2><p class="lead">Each generated token is shaded by the entropy of the distribution it was drawn from (how unsure the model was); hover over a token for its entropy, surprisal, energy and the alternatives the model weighed.</p>
<div class="legend">0 bits<span class="bar"></span>{max_bits:.1} bits</div>"#
    );
    for seq in 0..batch.min(MAX_ROWS) {
        if batch > 1 {
            let _ = write!(out, r#"<div class="row-label">row {seq}</div>"#);
        }
        out.push_str(r#"<div class="text">"#);
        if let Some(p) = prompts.get(seq) {
            let _ = write!(out, r#"<span class="prompt">{}</span>"#, token_html(p));
        }
        for tok in t.tokens.iter().filter(|x| x.seq == seq) {
            let _ = write!(
                out,
                r#"<span class="tok" style="background:{}" data-tip="{}">{}</span>"#,
                shade(tok.entropy_bits, max_bits),
                esc(&tooltip(tok)),
                token_html(&tok.text)
            );
        }
        out.push_str("</div>");
    }
    if batch > MAX_ROWS {
        let _ = write!(
            out,
            r#"<p class="lead">{} more rows are in the trace.</p>"#,
            batch - MAX_ROWS
        );
    }
    out.push_str("</section>\n");
}

/// The figures a report holds, by name, for the HTML and for --png.
struct Figures(Vec<(&'static str, String)>);

impl Figures {
    fn add(&mut self, name: &'static str, svg: String) -> String {
        let html = charts::trim_svg_header(&svg).to_string();
        self.0.push((name, svg));
        html
    }
}

fn figure(out: &mut String, id: &str, title: &str, lead: &str, svg: &str, caption: &str) {
    let _ = writeln!(
        out,
        r#"<section id="{id}"><h2>{}</h2><p class="lead">{}</p><figure>{svg}<figcaption>{}</figcaption></figure></section>"#,
        esc(title),
        esc(lead),
        esc(caption)
    );
}

/// The ladder's main rungs as bars: the floor's memory and compute parts are said in the
/// floor's note instead of bars of their own, so that the ratios between consecutive bars
/// are the ratios between rungs.
fn ladder_bars(l: &landauer_physics::floor::Ladder) -> Vec<LadderBar> {
    use landauer_physics::floor::{RUNG_FLOOR, RUNG_FLOOR_COMPUTE, RUNG_FLOOR_MEMORY};
    let part = |name: &str| {
        l.rungs
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.j_per_token)
    };
    l.rungs
        .iter()
        .filter(|r| r.name != RUNG_FLOOR_MEMORY && r.name != RUNG_FLOOR_COMPUTE)
        .map(|r| LadderBar {
            label: r.name.clone(),
            j_per_token: r.j_per_token,
            low: r.low,
            high: r.high,
            note: match (r.name == RUNG_FLOOR, part(RUNG_FLOOR_MEMORY), part(RUNG_FLOOR_COMPUTE)) {
                (true, Some(m), Some(c)) => {
                    format!("memory {m:.2e} J + compute {c:.2e} J (bytes and FLOPs of a decode step at the profile's pJ/bit and pJ/FLOP)")
                }
                _ => r.note.clone(),
            },
        })
        .collect()
}

fn ladder_section(g: &GapReport, figs: &mut Figures, out: &mut String) -> anyhow::Result<()> {
    // The sweep's largest batch is the one nearest the floor; a trace has one ladder.
    let row = g
        .ladders
        .iter()
        .max_by_key(|r| r.batch)
        .context("no ladder")?;
    let l = &row.ladder;
    let svg = charts::ladder_svg(
        &format!(
            "J per token, batch {}: measured, roofline floor on {}, Landauer",
            row.batch, g.hardware.name
        ),
        &ladder_bars(l),
    )?;
    let svg = figs.add("ladder", svg);
    let _ = write!(
        out,
        r#"<section id="ladder"><h2>The ladder: how far above the floor, how far above Landauer</h2>
<p class="lead">Measured energy per token beside the roofline floor (the bytes a decode step must move × the memory's energy per bit, plus its FLOPs × the energy per FLOP, amortized over the batch) of this model on <b>{}</b> ({}), and the Landauer yardstick of the bits each token carries. Log scale.</p><figure>{svg}</figure>
<table><tr><th>rung</th><th class="num">J/token</th><th class="num">range</th><th>what it is</th></tr>"#,
        esc(&g.hardware.name),
        esc(&g.hardware_chosen)
    );
    for r in &l.rungs {
        let range = match (r.low, r.high) {
            (Some(a), Some(b)) => format!("{a:.2e} – {b:.2e}"),
            _ => String::new(),
        };
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{:.3e}</td><td class="num">{range}</td><td>{}</td></tr>"#,
            esc(&r.name),
            r.j_per_token,
            esc(&r.note)
        );
    }
    out.push_str("</table><p>");
    for q in &l.ratios {
        let _ = write!(
            out,
            "{} / {} = <b>{:.3e}</b><br>",
            esc(&q.upper),
            esc(&q.lower),
            q.ratio
        );
    }
    let _ = write!(
        out,
        "Theoretical minimum for this model on this hardware at batch {}: <b>{:.3e} J/token</b>, i.e. <b>{:.3e} tokens/Wh</b>{}.</p>",
        row.batch,
        l.floor.j_per_token,
        l.min_tokens_per_wh,
        match l.measured_tokens_per_wh {
            Some(t) => format!(" (measured: {t:.1} tokens/Wh)"),
            None => String::new(),
        }
    );
    let hw = g.hardware;
    let _ = write!(
        out,
        r#"<table><tr><th>hardware constant</th><th class="num">value</th><th class="num">range</th><th>source</th></tr>
<tr><td>memory bandwidth ({})</td><td class="num">{} GB/s</td><td class="num">{} – {}</td><td>{}</td></tr>
<tr><td>memory energy</td><td class="num">{} pJ/bit</td><td class="num">{} – {}</td><td>{}</td></tr>
<tr><td>compute energy</td><td class="num">{} pJ/FLOP</td><td class="num">{} – {}</td><td>{} ({})</td></tr></table>
<p class="lead">Model: {:.1} MB of weights read per decode step, {:.1} kB of f16 KV cache per cached position, {:.0} positions per row on average; {:.3e} FLOPs per token.</p></section>
"#,
        esc(&hw.memory),
        hw.memory_bandwidth_gb_s.value,
        hw.memory_bandwidth_gb_s.low,
        hw.memory_bandwidth_gb_s.high,
        esc(&hw.memory_bandwidth_gb_s.source),
        hw.memory_pj_per_bit.value,
        hw.memory_pj_per_bit.low,
        hw.memory_pj_per_bit.high,
        esc(&hw.memory_pj_per_bit.source),
        hw.compute_pj_per_flop.value,
        hw.compute_pj_per_flop.low,
        hw.compute_pj_per_flop.high,
        esc(&hw.compute_pj_per_flop.source),
        esc(&hw.compute_note),
        g.shape.weight_bytes_per_step as f64 / 1e6,
        g.shape.kv_bytes_per_position() / 1e3,
        l.floor.context,
        l.floor.flops_per_token,
    );
    Ok(())
}

fn card(out: &mut String, value: String, label: &str) {
    let _ = write!(
        out,
        r#"<div class="card"><b>{}</b><span>{}</span></div>"#,
        esc(&value),
        esc(label)
    );
}

/// How far above the floor and above Landauer, and the floor's tokens/Wh.
fn ladder_cards(out: &mut String, l: &landauer_physics::floor::Ladder) {
    card(
        out,
        fmt_opt(l.measured_over_floor, |v| format!("{v:.1}×")),
        "above the roofline floor",
    );
    card(
        out,
        format!("{:.3e}", l.min_tokens_per_wh),
        "tokens/Wh at the floor (theoretical minimum energy)",
    );
    card(
        out,
        fmt_opt(l.measured_over_landauer, |v| format!("{v:.2e}×")),
        "above k_B·T·ln 2 per bit",
    );
}

fn settings_table(out: &mut String, rows: &[(&str, String)]) {
    out.push_str("<table>");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    out.push_str("</table>");
}

fn caveats_html(out: &mut String, caveats: &[String]) {
    out.push_str(r#"<h3>Caveats</h3><ul class="caveats">"#);
    for c in caveats {
        let _ = write!(out, "<li>{}</li>", esc(c));
    }
    out.push_str("</ul>");
}

/// A civil UTC date-time from Unix seconds (Howard Hinnant's days-from-civil, inverted):
/// written by hand to avoid a date crate for one line of a report.
fn utc(unix_s: f64) -> String {
    let secs = unix_s.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn page_head(out: &mut String, title: &str, subtitle: &str, nav: &[(&str, &str)]) {
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title><style>{STYLE}</style></head><body><main>
<header><h1>{}</h1><p>{}</p></header><nav>"#,
        esc(title),
        esc(title),
        esc(subtitle)
    );
    for (id, label) in nav {
        let _ = write!(out, r##"<a href="#{id}">{}</a>"##, esc(label));
    }
    out.push_str("</nav>\n");
}

fn page_foot(out: &mut String) {
    let _ = writeln!(
        out,
        "<footer>Written by landauer {} (self-contained: no scripts, no network).</footer></main></body></html>",
        env!("CARGO_PKG_VERSION")
    );
}

fn footprint_cards(out: &mut String, g: &GapReport, j: Option<f64>, est: &str) {
    if let Some(j) = j {
        let m = g.footprint.per_million_tokens(j);
        card(
            out,
            format!("{:.3} kWh", m.kwh),
            &format!("per million tokens{est}"),
        );
        card(
            out,
            format!("{:.1} g CO2", m.gco2),
            &format!(
                "per million tokens at {} g/kWh",
                g.footprint.grid_gco2_per_kwh
            ),
        );
        card(
            out,
            format!("{:.4}", m.cost),
            &format!(
                "cost per million tokens at {}/kWh",
                g.footprint.price_per_kwh
            ),
        );
    }
}

fn trace_report(
    t: &Trace,
    g: &GapReport,
    galton_steps: usize,
    figs: &mut Figures,
) -> anyhow::Result<String> {
    let run = &t.run;
    let s = t.summary.as_ref();
    let est = if run.estimated { " (ESTIMATED)" } else { "" };
    let mut out = String::new();
    page_head(
        &mut out,
        &format!("landauer report: {}", run.model),
        &format!(
            "{} {} on {} · {} tokens · {}",
            run.model,
            run.quantization,
            run.device_name.as_deref().unwrap_or(&run.device),
            t.tokens.len(),
            utc(run.started_unix_s)
        ),
        &[
            ("summary", "summary"),
            ("text", "text"),
            ("sequence", "per token"),
            ("bits", "bits per token"),
            ("cumulative", "joules vs bits"),
            ("galton", "Galton board"),
            ("ladder", "ladder"),
            ("settings", "settings & caveats"),
        ],
    );
    // Summary cards.
    out.push_str(r#"<section id="summary"><h2>Summary</h2><div class="cards">"#);
    let n = t.tokens.len().max(1) as f64;
    let mean = |f: fn(&TokenRecord) -> f64| t.tokens.iter().map(f).sum::<f64>() / n;
    card(&mut out, format!("{}", t.tokens.len()), "tokens generated");
    let jpt = s
        .and_then(|s| s.joules_per_token)
        .or(g.ladders[0]
            .ladder
            .rungs
            .iter()
            .find(|r| r.name == landauer_physics::floor::RUNG_MEASURED)
            .map(|r| r.j_per_token))
        .filter(|_| t.tokens.iter().any(|x| x.energy_j.is_some()));
    card(
        &mut out,
        fmt_opt(jpt, |j| format!("{j:.4} J")),
        &format!("per token{est}"),
    );
    card(
        &mut out,
        fmt_opt(jpt.filter(|&j| j > 0.0), |j| format!("{:.0}", 3600.0 / j)),
        &format!("tokens per Wh{est}"),
    );
    card(
        &mut out,
        fmt_opt(s.and_then(|s| s.decode_tokens_per_s), |v| format!("{v:.1}")),
        "decode tokens/s",
    );
    card(
        &mut out,
        format!("{:.3}", mean(|x| x.entropy_bits)),
        "bits/token (mean entropy)",
    );
    card(
        &mut out,
        format!("{:.3}", mean(|x| x.surprisal_bits)),
        "bits/token (mean surprisal)",
    );
    let l = &g.ladders[0].ladder;
    ladder_cards(&mut out, l);
    footprint_cards(&mut out, g, jpt, est);
    let _ = writeln!(
        out,
        r#"</div><p class="lead">Money and carbon at {}.</p></section>"#,
        esc(&g.footprint.describe())
    );

    text_section(t, &mut out);
    // The per-token figures follow one sequence: row 0 of a batch.
    let row0: Vec<TokenRecord> = t.tokens.iter().filter(|x| x.seq == 0).cloned().collect();
    let which = if run.batch > 1 {
        format!(" (row 0 of {})", run.batch)
    } else {
        String::new()
    };
    let svg = figs.add("sequence", charts::sequence_svg(&row0)?);
    figure(
        &mut out,
        "sequence",
        &format!("Entropy, surprisal and energy along the sequence{which}"),
        "Entropy: how spread the model's distribution was (bits). Surprisal: how unlikely the token it took was under it. Energy: the meter's energy attributed to each token.",
        &svg,
        if t.tokens.iter().any(|x| !x.energy_resolved) {
            "Tokens shorter than one counter update get a time-proportional share of that update's energy, not a measurement of their own."
        } else {
            ""
        },
    );
    let svg = figs.add("bits", charts::bits_histogram_svg(&t.tokens)?);
    figure(
        &mut out,
        "bits",
        "The distribution of bits per token",
        "How many tokens carried how many bits: a calibrated model's mean surprisal on its own samples converges to its mean entropy.",
        &svg,
        "",
    );
    let svg = figs.add(
        "cumulative",
        charts::cumulative_svg(&row0, run.landauer_j_per_bit)?,
    );
    figure(
        &mut out,
        "cumulative",
        &format!("Cumulative joules against cumulative bits{which}"),
        &format!(
            "The run's energy as its bits accumulate, beside the Landauer line at {} K ({:.3e} J per bit). Landauer bounds the erasure of a bit; sampling does not erase the token's entropy, so the line is a yardstick, not a bound.",
            run.kelvin, run.landauer_j_per_bit
        ),
        &svg,
        "",
    );
    let svg = figs.add("galton", charts::galton_svg(&row0, galton_steps)?);
    figure(
        &mut out,
        "galton",
        &format!("The Galton board{which}"),
        &format!(
            "At each step (left to right) the model's {} most likely tokens are pegs, larger for likelier; the line is the path the sampler took through them (\"other\": a token outside the recorded alternatives). First {} steps.",
            run.top_n,
            galton_steps.min(row0.len())
        ),
        &svg,
        "",
    );
    ladder_section(g, figs, &mut out)?;

    // Settings and caveats.
    out.push_str(r#"<section id="settings"><h2>Settings, meter and caveats</h2>"#);
    let sm = &run.sampling;
    let mut rows: Vec<(&str, String)> = vec![
        ("model", format!("{} ({})", run.model, run.model_path)),
        ("sha256", run.model_sha256.clone()),
        (
            "architecture",
            format!(
                "{}, {}, {:.1}M parameters{}",
                run.architecture,
                run.quantization,
                run.parameters as f64 / 1e6,
                if run.synthetic {
                    " — SYNTHETIC (random weights)"
                } else {
                    ""
                }
            ),
        ),
        (
            "device",
            format!(
                "{}{} · {} thread(s)",
                run.device,
                run.device_name
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                run.threads
            ),
        ),
        (
            "meter",
            format!("{}: {}", run.meter, run.meter_description),
        ),
        ("meter chosen", run.meter_reason.clone()),
        (
            "resolution",
            format!(
                "counter updates every {} ms (probed before the run; {} ms over the run), polled every {} ms",
                fmt_opt(run.meter_resolution_s, |v| format!("{:.1}", v * 1e3)),
                fmt_opt(s.and_then(|s| s.meter_resolution_s), |v| format!("{:.1}", v * 1e3)),
                fmt_opt(run.meter_interval_s, |v| format!("{:.1}", v * 1e3)),
            ),
        ),
        (
            "idle",
            if run.idle_seconds > 0.0 {
                format!(
                    "{} W over {} s before the run",
                    fmt_opt(run.idle_power_w, |v| format!("{v:.2}")),
                    run.idle_seconds
                )
            } else {
                "not measured (no active energy)".into()
            },
        ),
        (
            "sampling",
            format!(
                "temperature {}, top-k {}, top-p {}, seed {}{}",
                sm.temperature,
                sm.top_k.map_or("off".into(), |k| k.to_string()),
                sm.top_p.map_or("off".into(), |p| p.to_string()),
                sm.seed,
                if sm.greedy { " (greedy)" } else { "" }
            ),
        ),
        (
            "prompt",
            format!(
                "{} tokens{}{}",
                run.prompt_tokens,
                if run.chat { ", chat template" } else { "" },
                if run.batch > 1 {
                    format!(", {} rows decoded as one batch", run.batch)
                } else {
                    String::new()
                }
            ),
        ),
        (
            "yardstick",
            format!(
                "k_B·T·ln 2 at {} K = {:.4e} J/bit",
                run.kelvin, run.landauer_j_per_bit
            ),
        ),
        ("trace", t.path.display().to_string()),
    ];
    if let Some(s) = s {
        rows.push(("steady state", s.steady_note.clone()));
        rows.push((
            "stop",
            format!(
                "{} after {} tokens, {:.2} s",
                s.stop_reason, s.tokens, s.wall_s
            ),
        ));
    }
    settings_table(&mut out, &rows);
    let mut caveats: Vec<String> = s.map(|s| s.caveats.clone()).unwrap_or_default();
    if s.is_none() {
        caveats.push("the trace has no summary line (the run was interrupted): figures come from its token records".into());
    }
    caveats.extend(l.caveats.iter().cloned());
    caveats_html(&mut out, &caveats);
    out.push_str("</section>\n");
    page_foot(&mut out);
    Ok(out)
}

fn sweep_report(s: &Sweep, g: &GapReport, figs: &mut Figures) -> anyhow::Result<String> {
    let h = &s.file.header;
    let rows = s.rows();
    let est = if h.estimated { " (ESTIMATED)" } else { "" };
    let mut out = String::new();
    let device = h.device_name.clone().unwrap_or_else(|| h.device.clone());
    page_head(
        &mut out,
        &format!("landauer sweep report: {}", h.model),
        &format!(
            "{} {} on {} · batch sizes {}",
            h.model,
            h.quantization,
            device,
            rows.iter()
                .map(|r| r.batch.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &[
            ("summary", "summary"),
            ("sweep", "batch-size curves"),
            ("ladder", "ladder"),
            ("settings", "settings & caveats"),
        ],
    );
    out.push_str(r#"<section id="summary"><h2>Summary</h2><div class="cards">"#);
    let best = rows
        .iter()
        .filter(|r| r.tokens_per_wh.is_some())
        .max_by(|a, b| a.tokens_per_wh.partial_cmp(&b.tokens_per_wh).unwrap())
        .or(rows.last())
        .context("no rows")?;
    card(
        &mut out,
        fmt_opt(best.tokens_per_wh, |v| format!("{v:.0}")),
        &format!("tokens/Wh at batch {}{est}", best.batch),
    );
    card(
        &mut out,
        format!("{:.1}", best.decode_tokens_per_s),
        &format!("decode tokens/s at batch {}", best.batch),
    );
    let l = &g
        .ladders
        .iter()
        .find(|r| r.batch == best.batch)
        .unwrap_or(&g.ladders[0])
        .ladder;
    ladder_cards(&mut out, l);
    footprint_cards(&mut out, g, best.joules_per_token, est);
    let _ = writeln!(
        out,
        r#"</div><p class="lead">Money and carbon at {}.</p></section>"#,
        esc(&g.footprint.describe())
    );
    let svg = figs.add("sweep", charts::sweep_curves_svg(&s.title(), rows)?);
    let _ = write!(
        out,
        r#"<section id="sweep"><h2>Tokens per watt-hour and speed against batch size</h2><p class="lead">With the founding figures (a desk RTX 3090 at ~160 tokens/Wh, an A100 cluster at ~1,500) and the ML.ENERGY leaderboard's Llama-3.1-8B on one H100 (vLLM) for reference.</p><figure>{svg}</figure>
<table><tr><th class="num">batch</th><th class="num">decode tok/s</th><th class="num">power W</th><th class="num">J/token</th><th class="num">tokens/Wh</th><th class="num">floor J/token</th><th class="num">× floor</th><th class="num">bits/token</th><th class="num">kWh/Mtok</th><th class="num">g CO2/Mtok</th><th class="num">cost/Mtok</th><th>steady</th></tr>"#
    );
    for (r, lr) in rows.iter().zip(&g.ladders) {
        let pm = r
            .joules_per_token
            .map(|j| g.footprint.per_million_tokens(j));
        let _ = write!(
            out,
            r#"<tr><td class="num">{}</td><td class="num">{:.1}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{:.3e}</td><td class="num">{}</td><td class="num">{:.3}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            r.batch,
            r.decode_tokens_per_s,
            fmt_opt(r.mean_power_w, |v| format!("{v:.1}")),
            fmt_opt(r.joules_per_token, |v| format!("{v:.4}")),
            fmt_opt(r.tokens_per_wh, |v| format!("{v:.0}")),
            lr.ladder.floor.j_per_token,
            fmt_opt(lr.ladder.measured_over_floor, |v| format!("{v:.1}")),
            r.mean_entropy_bits,
            fmt_opt(pm.map(|m| m.kwh), |v| format!("{v:.3}")),
            fmt_opt(pm.map(|m| m.gco2), |v| format!("{v:.1}")),
            fmt_opt(pm.map(|m| m.cost), |v| format!("{v:.4}")),
            if r.steady { "yes" } else { "no" }
        );
    }
    out.push_str("</table></section>\n");
    ladder_section(g, figs, &mut out)?;
    out.push_str(r#"<section id="settings"><h2>Settings, meter and caveats</h2>"#);
    // Each value as JSON writes it (numbers in serde_json's shortest form), "–" for none.
    let v = |k: &str| {
        let value = match k {
            "method" => serde_json::Value::String(s.file.method.clone()),
            _ => serde_json::to_value(h)
                .ok()
                .and_then(|h| h.get(k).cloned())
                .unwrap_or_default(),
        };
        match value {
            serde_json::Value::Null => "–".to_string(),
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }
    };
    settings_table(
        &mut out,
        &[
            (
                "model",
                format!(
                    "{} ({}, {} parameters)",
                    v("model"),
                    v("quantization"),
                    v("parameters")
                ),
            ),
            (
                "device",
                format!(
                    "{} ({}), {} thread(s)",
                    v("device"),
                    v("device_name"),
                    v("threads")
                ),
            ),
            ("meter", format!("{} — {}", v("meter"), v("meter_reason"))),
            (
                "resolution",
                format!("counter updates every {} s", v("meter_resolution_s")),
            ),
            ("idle power", format!("{} W", v("idle_power_w"))),
            ("tokens per row", v("max_tokens")),
            ("method", v("method")),
            ("sweep", s.path.display().to_string()),
        ],
    );
    let mut caveats = s.file.caveats.clone();
    caveats.extend(l.caveats.iter().cloned());
    caveats_html(&mut out, &caveats);
    out.push_str("</section>\n");
    page_foot(&mut out);
    Ok(out)
}

/// Builds the report's HTML and its figures (name, SVG) from an input.
fn build(
    args: &ReportArgs,
    input: &Input,
) -> anyhow::Result<(String, Vec<(&'static str, String)>)> {
    let g = ladder::gap_report(input, &args.hardware.choice(), &args.footprint.overrides())?;
    let mut figs = Figures(Vec::new());
    let html = match input {
        Input::Trace(t) => {
            if t.tokens.is_empty() {
                anyhow::bail!(
                    "{} has no token records: nothing to report",
                    t.path.display()
                );
            }
            trace_report(t, &g, args.galton_steps, &mut figs)?
        }
        Input::Sweep(s) => sweep_report(s, &g, &mut figs)?,
    };
    Ok((html, figs.0))
}

/// `REPORT-name.png` beside the report.
fn png_path(output: &Path, name: &str) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    output.with_file_name(format!("{stem}-{name}.png"))
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if args.galton_steps == 0 {
        anyhow::bail!("--galton-steps must be at least 1");
    }
    let input = landauer_trace::read_input(&args.input)?;
    let (html, figs) = build(&args, &input)?;
    std::fs::write(&args.output, &html)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!(
        "wrote {} ({:.0} kB, {} figures)",
        args.output.display(),
        html.len() as f64 / 1e3,
        figs.len()
    );
    if args.png {
        for (name, svg) in &figs {
            let p = png_path(&args.output, name);
            charts::svg_to_png(svg, &p)?;
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_markup_out() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc("a\nb"), "a&#10;b");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00 UTC");
        // 2026-11-26 06:42 UTC.
        assert_eq!(utc(1_795_675_320.0), "2026-11-26 06:42 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn shades_run_from_pale_to_red() {
        assert_eq!(shade(0.0, 4.0), "hsl(45,90%,97%)");
        assert_eq!(shade(4.0, 4.0), "hsl(5,90%,58%)");
        assert_eq!(shade(9.0, 4.0), shade(4.0, 4.0));
        assert_eq!(shade(1.0, 0.0), shade(0.0, 1.0));
    }

    #[test]
    fn png_names_sit_beside_the_report() {
        assert_eq!(
            png_path(Path::new("/tmp/r/run.html"), "ladder"),
            PathBuf::from("/tmp/r/run-ladder.png")
        );
    }
}
