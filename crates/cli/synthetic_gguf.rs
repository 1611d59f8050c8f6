//! `landauer synthetic-gguf ARCH:QUANT -o FILE`: a synthetic model written as a GGUF file.

use anyhow::Context;
use clap::Args;
use landauer_engine::synthetic::{self, SyntheticSpec, Vocabulary};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct SyntheticGgufArgs {
    /// ARCH:QUANT, e.g. llama-3.2-1b:q4_k_m (a `synthetic:` prefix is allowed). QUANT q4_k_m,
    /// q4_k_s, q5_k_m, q5_k_s, q6_k, q8_0, q4_0, ... give the mix llama.cpp's llama-quantize
    /// writes for that file type; q4_k and q5_k put every matrix in that type.
    #[arg(value_name = "ARCH:QUANT")]
    pub spec: String,
    /// The file to write (replaced if it exists; written to FILE.tmp and renamed when whole).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// Copy the tokenizer (every tokenizer.* key) from this GGUF file; the model's vocabulary
    /// size becomes its number of tokens. Default: the built-in filler vocabulary.
    #[arg(long, value_name = "GGUF")]
    pub vocab_from: Option<PathBuf>,
}

pub fn run(args: SyntheticGgufArgs) -> anyhow::Result<ExitCode> {
    let spec = if SyntheticSpec::is_synthetic(&args.spec) {
        args.spec.clone()
    } else {
        format!("synthetic:{}", args.spec)
    };
    let mut spec = SyntheticSpec::parse(&spec)?;
    if let Some(path) = &args.vocab_from {
        let vocab = Vocabulary::from_gguf(path)
            .with_context(|| format!("--vocab-from {}", path.display()))?;
        spec = spec.with_vocab(vocab);
    }
    let info = spec.open().info();
    let vocab = match &spec.vocab {
        Some(v) => format!("{} tokens from {}", v.size, v.source),
        None => format!("{} tokens, built in", spec.arch.vocab),
    };
    // Said once the file is open (a bad path is then the only thing said).
    let say_start = || {
        eprintln!(
            "landauer: writing {} ({:.3}B parameters, vocabulary {vocab}, {:.2} GB of tensors) to {}",
            spec.label(),
            info.parameters as f64 / 1e9,
            info.tensor_bytes as f64 / 1e9,
            args.output.display()
        )
    };
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "[{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    let t = std::time::Instant::now();
    let mut started = false;
    let written = synthetic::write_gguf_file(&spec, &args.output, |done, total| {
        if !std::mem::replace(&mut started, true) {
            bar.suspend(say_start);
        }
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let written = written?;
    let types: Vec<String> = spec
        .type_counts()
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    eprintln!(
        "landauer: wrote {} bytes in {:.1} s: general.name \"{}\"; tensors: {}",
        written,
        t.elapsed().as_secs_f64(),
        spec.name(),
        types.join(", ")
    );
    println!("{}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
