//! `landauer serve`: an OpenAI-compatible HTTP server that bills every response in joules
//! and bits.

use crate::{GpuArgs, MeterArg, ModelArgs};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gpu: GpuArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The model's name in requests and /v1/models (default: the model file's name without
    /// its extension).
    #[arg(long = "model-id", value_name = "NAME")]
    pub model_id: Option<String>,
    /// Most requests decoded together: rows of the continuous batch, each with a KV cache
    /// for its whole context (allocated at start; refused there if memory is short).
    #[arg(long = "max-batch", default_value_t = 8, value_name = "ROWS")]
    pub max_batch: usize,
    /// Tokens per request, prompt and completion (default: the model's context); lower it to
    /// fit more rows in the same memory.
    #[arg(long = "max-context", value_name = "TOKENS")]
    pub max_context: Option<usize>,
    /// Requests that may wait for a row of the batch; one more is answered 429 with
    /// Retry-After.
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Largest request body in bytes (larger: 413).
    #[arg(long = "max-body-bytes", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Write one JSONL trace per request here (the trace format of `generate --trace`).
    #[arg(long = "trace-dir", value_name = "DIR")]
    pub trace_dir: Option<PathBuf>,
    /// The energy meter.
    #[arg(long, value_enum, default_value_t = MeterArg::Auto)]
    pub meter: MeterArg,
    /// Assumed watts per busy core for the CPU-time estimate (only when no real meter).
    #[arg(long, default_value_t = landauer_meter::DEFAULT_CPU_WATTS_PER_CORE)]
    pub cpu_watts: f64,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let threads = crate::set_threads(args.model.threads)?;
    let cfg = landauer_serve::ServeConfig {
        model_id: args.model_id.clone(),
        queue: args.queue,
        max_batch: args.max_batch,
        max_context: args.max_context,
        max_body_bytes: args.max_body_bytes,
        trace_dir: args.trace_dir.clone(),
        meter: args.gpu.meter(args.meter, args.cpu_watts)?,
        threads,
    };
    // Requests share a batch: landauer's batched forward pass, on GPUs too.
    let loaded = landauer_studies::Loaded::load(
        &args.model.options(true)?,
        &mut crate::progress::Terminal::default(),
    )?;
    let server = landauer_serve::Server::start(loaded, cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot listen on {addr}: {e}; pick another with --port or --host")
            })?;
        eprintln!(
            "landauer: serving {} on http://{} (/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics)",
            server.model_id(),
            listener.local_addr()?
        );
        server.serve(listener, shutdown_signal()).await?;
        eprintln!("landauer: stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM: stop accepting, finish the responses under way.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = ctrl_c => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
