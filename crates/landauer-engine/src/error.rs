use std::path::PathBuf;

/// Everything the engine can refuse, each with a message that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file not found: {0} (pass a path to a .gguf file or a checkpoint directory, a hub `repo/name:file` or `repo/name`, or omit --model for the default)")]
    ModelNotFound(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot {action} {path}: {cause} (check that its folder exists, is writable and has room)"
    )]
    Write {
        action: &'static str,
        path: PathBuf,
        /// Said in the message, not chained as a source (the CLI prints chains too).
        cause: std::io::Error,
    },
    #[error("{path} is not a GGUF file (it starts with {magic:?}, not \"GGUF\"); landauer loads llama.cpp GGUF models")]
    NotGguf { path: PathBuf, magic: String },
    #[error("{path} is truncated: its tensors need {expected} bytes but the file has {actual}; download it again")]
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{path} is a corrupt or truncated GGUF file ({reason}); download it again")]
    CorruptGguf { path: PathBuf, reason: String },
    #[error("{path} holds tensors of type {dtype}, which landauer cannot read (it reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K to Q6_K); use a Q4_K_M, Q5_K_M, Q6_K or Q8_0 file of the model, or make one with llama.cpp's `llama-quantize --allow-requantize`")]
    UnsupportedTensorType { path: PathBuf, dtype: String },
    #[error("unsupported architecture `{arch}` in {path}; supported: {}", crate::SUPPORTED_ARCHITECTURES.join(", "))]
    UnsupportedArchitecture { path: PathBuf, arch: String },
    #[error("{path} is not a usable Hugging Face checkpoint: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("cannot load the model from {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot read tokenizer {path}: {reason} (pass a Hugging Face tokenizer.json to --tokenizer)")]
    Tokenizer { path: PathBuf, reason: String },
    #[error(
        "the model file carries no usable tokenizer ({0}); pass a tokenizer.json with --tokenizer"
    )]
    NoTokenizer(String),
    #[error("cannot apply the chat template: {0}")]
    ChatTemplate(String),
    #[error("the prompt is empty after tokenization; give some text")]
    EmptyPrompt,
    #[error("the prompt is {prompt} tokens but the context holds {context}; shorten the prompt")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("--max-tokens must be at least 1")]
    ZeroMaxTokens,
    #[error("invalid sampling settings: {0}")]
    Sampling(String),
    #[error("{0}")]
    Device(String),
    #[error("a batch of {rows} rows x {slots} positions needs {:.2} GiB ({:.2} GiB of KV cache) but the device has {:.2} GiB free; use fewer rows or tokens", *need as f64 / GIB, *kv as f64 / GIB, *free as f64 / GIB)]
    BatchTooLarge {
        rows: usize,
        slots: usize,
        need: u64,
        kv: u64,
        free: u64,
    },
    #[error("cannot quantize: {0}")]
    Quantize(String),
    #[error("bad synthetic model: {0}")]
    Synthetic(String),
    #[error("model fetch failed: {0}")]
    Fetch(String),
    #[error("a sink failed: {0}")]
    Sink(String),
    #[error("model computation failed: {0}")]
    Compute(#[from] candle_core::Error),
}

const GIB: f64 = (1u64 << 30) as f64;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
