//! `landauer study`: what each precision and size buys, models × quantizations × batch sizes.

use crate::{FootprintArgs, GpuArgs, MeterArg, ModelArgs};
use anyhow::Context;
use clap::Args;
use landauer_studies::study::{self, StudyConfig};
use landauer_studies::SweepConfig;
use landauer_trace::StudyFile;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct StudyArgs {
    /// The other model settings (device, threads, KV cache, tokenizer) apply to every model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Models, comma separated (files, checkpoint directories, synthetic:ARCH[:QUANT]);
    /// default: --model, else the default model.
    #[arg(long = "models", value_delimiter = ',', value_name = "MODEL,...")]
    pub models: Vec<String>,
    /// Quantizations of each model, comma separated: `stored` (as stored), q8_0, q6_k,
    /// q5_k_m, q4_k_m, q4_0, f16, ... (llama-quantize's rules for each file type).
    #[arg(
        long = "quantizations",
        value_delimiter = ',',
        default_value = "stored",
        value_name = "FORMAT,..."
    )]
    pub quantizations: Vec<String>,
    /// Batch sizes of the speed and energy runs, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batch: Vec<usize>,
    /// Tokens every row generates in the speed and energy runs.
    #[arg(long, short = 'n', default_value_t = 64)]
    pub max_tokens: usize,
    /// Measured runs per batch size (medians).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// The reference text the quality is measured on (default: chapter 1 of Moby-Dick).
    #[arg(long, value_name = "FILE")]
    pub reference: Option<PathBuf>,
    /// Reference tokens scored (cut to the model's context).
    #[arg(long, default_value_t = 512)]
    pub reference_tokens: usize,
    /// Directory for study.json, study.csv and study.svg.
    #[arg(long, default_value = "study")]
    pub out: PathBuf,
    #[command(flatten)]
    pub gpu: GpuArgs,
    /// Energy meter (auto: NVML for CUDA, RAPL for the CPU, else the labeled estimate).
    #[arg(long, value_enum, default_value_t = MeterArg::Auto)]
    pub meter: MeterArg,
    /// Temperature of the Landauer yardstick, kelvin.
    #[arg(long, default_value_t = landauer_physics::DEFAULT_KELVIN)]
    pub kelvin: f64,
    #[command(flatten)]
    pub footprint: FootprintArgs,
    /// Skip scoring each cell's reference tokens again in exact mode (f32 activations), which
    /// reports how far the default mode's entropies are from the cell's own.
    #[arg(long)]
    pub no_exact_check: bool,
    /// Measure nothing: redraw --out's study.svg (and study.csv) from its study.json.
    #[arg(long)]
    pub replot: bool,
}

impl StudyArgs {
    fn config(&self) -> anyhow::Result<StudyConfig> {
        if self.model.quantize.is_some() || self.model.save_gguf.is_some() || self.model.exact {
            anyhow::bail!(
                "a study takes its precisions from --quantizations (and checks each against exact mode itself); drop --quantize, --save-gguf and --exact"
            );
        }
        let base = self.model.options(true)?;
        let specs = match (self.models.is_empty(), &base.model) {
            (false, _) => self.models.iter().cloned().map(Some).collect(),
            (true, m) => vec![m.clone()],
        };
        let models = specs
            .into_iter()
            .map(|model| landauer_studies::ModelOptions {
                model,
                ..base.clone()
            })
            .collect();
        let quantize = self
            .quantizations
            .iter()
            .map(|q| match q.as_str() {
                "stored" | "as-stored" => Ok(None),
                q => landauer_engine::quantize::parse(q)
                    .map(|_| Some(q.to_string()))
                    .map_err(|e| anyhow::anyhow!("--quantizations: {e}")),
            })
            .collect::<anyhow::Result<_>>()?;
        let (name, text) = match &self.reference {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read --reference {}", p.display()))?,
            ),
            None => (study::REFERENCE_NAME.into(), study::REFERENCE_TEXT.into()),
        };
        Ok(StudyConfig {
            models,
            quantize,
            sweep: SweepConfig {
                batch: self.batch.clone(),
                max_tokens: self.max_tokens,
                runs: self.runs,
                meter: self
                    .gpu
                    .meter(self.meter, landauer_meter::DEFAULT_CPU_WATTS_PER_CORE)?,
                kelvin: self.kelvin,
                footprint: self.footprint.over(Default::default())?,
                ..Default::default()
            },
            reference_name: name,
            reference_text: text,
            reference_tokens: self.reference_tokens,
            exact_check: !self.no_exact_check,
        })
    }
}

pub fn run(args: StudyArgs) -> anyhow::Result<ExitCode> {
    if args.replot {
        let landauer_trace::Input::Study(s) = landauer_trace::read_input(&args.out)? else {
            anyhow::bail!(
                "{} holds no study.json: --replot redraws what `landauer study --out DIR` wrote",
                args.out.display()
            );
        };
        landauer_reports::study_files::write(&args.out, &s.file)?;
        println!("wrote {}", args.out.join("study.svg").display());
        return Ok(ExitCode::SUCCESS);
    }
    let threads = crate::set_threads(args.model.threads)?;
    let cfg = args.config()?;
    cfg.sweep.check()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create --out {}", args.out.display()))?;
    let mut term = crate::progress::Terminal::default();
    term.study_dir = Some(args.out.clone());
    let file = study::run(&cfg, threads, &mut term)?;
    print_table(&file);
    let out = |name: &str| args.out.join(name);
    println!(
        "wrote {}, {}, {}",
        out("study.json").display(),
        out("study.csv").display(),
        out("study.svg").display()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_table(file: &StudyFile) {
    println!(
        "landauer study: {} on {}, meter {}{}, quality on {}",
        file.cells.first().map_or("", |c| c.model.as_str()),
        file.device_name.as_deref().unwrap_or(&file.device),
        file.meter,
        if file.estimated { " (ESTIMATED)" } else { "" },
        file.reference
    );
    println!(
        "{:<28} {:>10} {:>6} {:>6} {:>10} {:>10} {:>10} {:>9} {:>8} {:>7} {:>9}",
        "model",
        "quantize",
        "bpw",
        "batch",
        "tok/s",
        "J/token",
        "tokens/Wh",
        "xent bits",
        "KL bits",
        "top-1",
        "H err"
    );
    let o = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
    for c in &file.cells {
        println!(
            "{:<28} {:>10} {:>6.2} {:>6} {:>10.1} {:>10} {:>10} {:>9.3} {:>8} {:>7} {:>9}",
            c.model.chars().take(28).collect::<String>(),
            c.quantize.as_deref().unwrap_or("stored"),
            c.bits_per_weight,
            c.batch,
            c.decode_tokens_per_s,
            o(c.joules_per_token, 4),
            o(c.tokens_per_wh, 0),
            c.cross_entropy_bits,
            o(c.kl_bits, 4),
            o(c.top1_agreement.map(|a| a * 100.0), 1),
            o(c.entropy_error_vs_exact.as_ref().map(|e| e.mean_bits), 4),
        );
    }
    println!("H err: mean |entropy - exact mode's| over the reference tokens, bits");
    for c in &file.caveats {
        println!("note: {c}");
    }
}
