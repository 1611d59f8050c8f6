//! `landauer synthetic-gguf ARCH:QUANT -o FILE`: a synthetic model written as a GGUF file.

use anyhow::Context;
use clap::Args;
use landauer_engine::synthetic::{self, SyntheticSpec, Vocabulary};
use std::io::{IsTerminal, Write};
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
    let mut tmp = args.output.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // Open the file first, so that a bad path is the only thing said.
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let info = spec.open().info();
    let vocab = match &spec.vocab {
        Some(v) => format!("{} tokens from {}", v.size, v.source),
        None => format!("{} tokens, built in", spec.arch.vocab),
    };
    eprintln!(
        "landauer: writing {} ({:.3}B parameters, vocabulary {vocab}, {:.2} GB of tensors) to {}",
        spec.label(),
        info.parameters as f64 / 1e9,
        info.tensor_bytes as f64 / 1e9,
        args.output.display()
    );

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
    let written = (|| -> anyhow::Result<u64> {
        let mut out = std::io::BufWriter::with_capacity(8 << 20, file);
        let n = synthetic::write_gguf(&spec, &mut out, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .with_context(|| format!("writing {}", tmp.display()))?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|mut f| f.flush().map(|_| f))
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &args.output).with_context(|| {
            format!(
                "cannot rename {} to {}",
                tmp.display(),
                args.output.display()
            )
        })?;
        Ok(n)
    })();
    bar.finish_and_clear();
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let mut types: Vec<(String, usize)> = Vec::new();
    for t in spec.open().content.tensor_infos.values() {
        let name = landauer_engine::gguf::dtype_name(t.ggml_dtype).to_string();
        match types.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => types.push((name, 1)),
        }
    }
    types.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let types = types
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "landauer: wrote {} bytes in {:.1} s: general.name \"{}\"; tensors: {types}",
        written,
        t.elapsed().as_secs_f64(),
        spec.name()
    );
    println!("{}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
