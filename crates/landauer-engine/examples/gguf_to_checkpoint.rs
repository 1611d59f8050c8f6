//! Writes a GGUF model as a Hugging Face checkpoint directory (safetensors, config.json,
//! tokenizer.json): for checking the checkpoint path, and what llama.cpp makes of a model
//! landauer quantized from a checkpoint, on machines with no model hub.
//!
//!     cargo run --release -p landauer-engine --example gguf_to_checkpoint -- MODEL.gguf DIR [SHARDS]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gguf_to_checkpoint MODEL.gguf DIR [SHARDS]");
        std::process::exit(2);
    }
    let shards = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    if let Err(e) = landauer_engine::tiny::write_checkpoint(
        std::path::Path::new(&args[1]),
        std::path::Path::new(&args[2]),
        shards,
    ) {
        eprintln!("gguf_to_checkpoint: {e}");
        std::process::exit(1);
    }
}
