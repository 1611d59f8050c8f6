//! The generation loop and the per-token event stream it emits.

use crate::device_sampling::{DeviceLogits, SamplingPlace};
use crate::gguf::{GgufFile, ModelInfo};
use crate::model::Model;
use crate::sampler::{SampledDist, Sampler, SamplingParams};
use crate::tokenizer::{self, TextStream};
use crate::{EngineError, Result};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokenizers::Tokenizer;

/// Error type sinks return; the engine stops and reports it.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Which forward pass produced a token's distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The first token: its distribution comes from the pass over the whole prompt.
    Prefill,
    /// Every later token: one pass over the previous token.
    Decode,
}

/// Sent once, right before the prompt is processed.
#[derive(Debug, Clone)]
pub struct RunStart {
    /// Time zero of the run; every `t_*_s` is measured from here.
    pub at: Instant,
    pub prompt_tokens: usize,
}

/// One generated token, with everything needed to measure it. Borrowed from the engine:
/// a sink computes what it needs (entropy, top-N, ...) and keeps no references.
pub struct TokenEvent<'a> {
    /// Sequence within a batch (0 for single-sequence generation).
    pub seq: usize,
    /// 0-based index among generated tokens.
    pub index: usize,
    /// Position of this token in the sequence (prompt included).
    pub position: usize,
    pub token_id: u32,
    /// The text this token completes (may be empty mid-character; EOS has none).
    pub text: &'a str,
    pub is_eos: bool,
    pub phase: Phase,
    /// The model's raw logits for this step, the distribution at temperature 1: always when
    /// the step was sampled on the host, and when the sink asks for them
    /// ([`Needs::logits`]) when it was sampled on the device ([`SamplingPlace`]).
    pub logits: Option<&'a [f32]>,
    /// The chosen token's logit.
    pub chosen_logit: f32,
    /// The [`Needs::top_n`] largest logits, most likely first (lower id first on ties), when
    /// the step was sampled on the device; sinks find them in `logits` otherwise.
    pub top: Option<&'a [(u32, f32)]>,
    /// What the token was actually drawn from (after temperature, top-k, top-p).
    pub sampled: SampledDist<'a>,
    /// For turning alternative token ids into text.
    pub tokenizer: &'a Tokenizer,
    /// Start of the work that produced this token (previous token's end; run start for the
    /// first), seconds since [`RunStart::at`]. Token windows tile the run without gaps.
    pub t_start_s: f64,
    /// When the token was chosen (device synchronised), seconds since [`RunStart::at`].
    pub t_end_s: f64,
    /// Tokens produced by this token's step (the batch rows still generating; 1 for a
    /// single sequence). They share the step's window, and its energy equally.
    pub step_tokens: usize,
    /// `landauer_physics::softmax_stats(logits)`, when the engine computed it: on the host
    /// for batches ([`GenerateOptions::stats_rows`]), on the device whenever the sink asks
    /// ([`Needs::stats`]).
    pub stats: Option<landauer_physics::SoftmaxStats>,
}

impl TokenEvent<'_> {
    /// The step's softmax statistics: the engine's, else computed from the logits (None
    /// when the engine sent neither).
    pub fn softmax_stats(&self) -> Option<landauer_physics::SoftmaxStats> {
        self.stats
            .or_else(|| self.logits.map(landauer_physics::softmax_stats))
    }
}

/// What a sink needs from each step besides the token, so that a step sampled on the device
/// ([`SamplingPlace::Device`]) copies no more than that to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// The full logits ([`TokenEvent::logits`]).
    pub logits: bool,
    /// The softmax statistics ([`TokenEvent::stats`]).
    pub stats: bool,
    /// How many of the largest logits ([`TokenEvent::top`]).
    pub top_n: usize,
}

impl Needs {
    /// Nothing: a sink that only counts or times tokens.
    pub const NOTHING: Needs = Needs {
        logits: false,
        stats: false,
        top_n: 0,
    };
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    MaxTokens,
    ContextFull,
    Interrupted,
}

/// Sent once at the end, also after an interruption.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub reason: StopReason,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Seconds from run start to the end of the prefill pass (first token chosen).
    pub prefill_s: f64,
    /// Seconds from run start to the last token.
    pub total_s: f64,
    /// Text held back at the end (an incomplete character), if any.
    pub tail_text: String,
}

/// Receives the engine's events. Every method has a default, so a sink implements only what
/// it needs; `()` is the sink that does nothing, and then nothing is computed for it.
pub trait TokenSink {
    /// What this sink reads from each step (default: the full logits and the statistics,
    /// which on a GPU costs a copy of every row's logits each step).
    fn needs(&self) -> Needs {
        Needs {
            logits: true,
            stats: true,
            top_n: 0,
        }
    }
    fn begin(&mut self, _start: &RunStart) -> Result<(), SinkError> {
        Ok(())
    }
    fn token(&mut self, _event: &TokenEvent<'_>) -> Result<(), SinkError> {
        Ok(())
    }
    fn end(&mut self, _end: &RunEnd) -> Result<(), SinkError> {
        Ok(())
    }
}

impl TokenSink for () {
    fn needs(&self) -> Needs {
        Needs::NOTHING
    }
}

impl<S: TokenSink + ?Sized> TokenSink for &mut S {
    fn needs(&self) -> Needs {
        (**self).needs()
    }
    fn begin(&mut self, s: &RunStart) -> Result<(), SinkError> {
        (**self).begin(s)
    }
    fn token(&mut self, e: &TokenEvent<'_>) -> Result<(), SinkError> {
        (**self).token(e)
    }
    fn end(&mut self, e: &RunEnd) -> Result<(), SinkError> {
        (**self).end(e)
    }
}

/// Settings of one generation.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Keep generating past EOS (benchmarks want a fixed token count).
    pub ignore_eos: bool,
    /// Set from another thread (Ctrl-C) to stop after the current token.
    pub stop: Option<Arc<AtomicBool>>,
    /// In a batch ([`Engine::generate_batch`]), the rows (`seq` below this) whose logits'
    /// softmax statistics the engine computes, a step's rows in parallel on the thread pool,
    /// and sends with their tokens ([`TokenEvent::stats`]); `usize::MAX` for all, 0 for none.
    /// A single sequence ([`Engine::generate`]) has nothing to parallelize and sends none, so
    /// that a run without a sink (a benchmark's untraced runs) does not pay for them. Sinks
    /// compute what they were not sent from the logits.
    pub stats_rows: usize,
}

/// Which forward pass runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forward {
    /// On the CPU, landauer's own pass and kernels ([`crate::batched`], [`crate::kernels`])
    /// for the families it supports; candle-transformers' quantized models otherwise (GPUs,
    /// qwen3).
    #[default]
    Auto,
    /// candle-transformers' quantized models.
    Candle,
    /// landauer's batched pass (llama, mistral, qwen2), which batches need.
    Batched,
}

/// A loaded model with its tokenizer, ready to generate.
pub struct Engine {
    pub(crate) model: Model,
    pub(crate) tokenizer: Tokenizer,
    info: ModelInfo,
    pub(crate) device: Device,
    pub(crate) eos_tokens: Vec<u32>,
    bos_token: Option<u32>,
    chat_template: Option<String>,
    pub(crate) context: usize,
    sampling_place: SamplingPlace,
}

impl Engine {
    /// Loads a GGUF model and its tokenizer (from the file unless `tokenizer_json` is given),
    /// into the forward pass [`Forward::Auto`] picks.
    ///
    /// `path` may also be a Hugging Face checkpoint directory (config.json, tokenizer.json,
    /// *.safetensors; see [`crate::checkpoint`]).
    pub fn load(path: &Path, tokenizer_json: Option<&Path>, device: &Device) -> Result<Self> {
        Self::open_with(path, tokenizer_json, device, Forward::Auto)
    }

    /// A GGUF file or a checkpoint directory, into the forward pass `forward` names.
    fn open_with(
        path: &Path,
        tokenizer_json: Option<&Path>,
        device: &Device,
        forward: Forward,
    ) -> Result<Self> {
        if crate::checkpoint::is_checkpoint(path) {
            let tokenizer = match tokenizer_json {
                Some(t) => t.to_path_buf(),
                None => crate::checkpoint::tokenizer_path(path)?,
            };
            let gguf = crate::checkpoint::open(path)?;
            return Self::from_gguf_with(gguf, Some(&tokenizer), device, forward);
        }
        Self::from_gguf_with(GgufFile::open(path)?, tokenizer_json, device, forward)
    }

    /// Like [`Self::load`], into the forward pass `forward` names.
    pub fn load_with(
        path: &Path,
        tokenizer_json: Option<&Path>,
        device: &Device,
        forward: Forward,
    ) -> Result<Self> {
        Self::open_with(path, tokenizer_json, device, forward)
    }

    /// Loads a model (a GGUF file or a checkpoint directory) and quantizes its weights as
    /// the `llama-quantize` preset `preset` types them ([`crate::quantize`]); `save_gguf`
    /// also writes the quantized model as a GGUF file (with its tokenizer).
    /// `progress(done, total)` follows the tensors.
    #[allow(clippy::too_many_arguments)]
    pub fn load_quantized(
        path: &Path,
        tokenizer_json: Option<&Path>,
        device: &Device,
        forward: Forward,
        preset: &str,
        save_gguf: Option<&Path>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let (q, tokenizer) = if crate::checkpoint::is_checkpoint(path) {
            let tokenizer = match tokenizer_json {
                Some(t) => t.to_path_buf(),
                None => crate::checkpoint::tokenizer_path(path)?,
            };
            let mut src = crate::checkpoint::open(path)?;
            let q = crate::quantize::quantize(&mut src, preset, Vec::new(), progress)?;
            (q, Some(tokenizer))
        } else {
            let mut src = GgufFile::open(path)?;
            let q = crate::quantize::quantize(&mut src, preset, Vec::new(), progress)?;
            (q, tokenizer_json.map(Path::to_path_buf))
        };
        let gguf = q.open()?;
        if let Some(out) = save_gguf {
            if gguf.get_str("tokenizer.ggml.model").is_none() {
                return Err(EngineError::Quantize(format!(
                    "{} has no byte-level BPE tokenizer.json to embed, so a saved GGUF could not tokenize; convert it with llama.cpp's convert_hf_to_gguf.py instead",
                    path.display()
                )));
            }
            q.save(out)?;
        }
        Self::from_gguf_with(gguf, tokenizer.as_deref(), device, forward)
    }

    /// Exact mode: loads a model (GGUF or checkpoint) with every matrix dequantized to F32 and
    /// an f32 KV cache, so that activations are never quantized (landauer's fast kernels
    /// round them to 8 bits) and each token's distribution is the model's own, to f32
    /// arithmetic. Its [`Self::info`] describes the model as stored, with `exact` set. Slow
    /// and 32 bits a weight in memory: a yardstick for the default mode, not a way to run.
    pub fn load_exact(
        path: &Path,
        tokenizer_json: Option<&Path>,
        device: &Device,
        forward: Forward,
    ) -> Result<Self> {
        // The `f32` preset: every matrix dequantized to F32.
        let f32 = "f32";
        let mut engine = if crate::checkpoint::is_checkpoint(path) {
            let tokenizer = match tokenizer_json {
                Some(t) => t.to_path_buf(),
                None => crate::checkpoint::tokenizer_path(path)?,
            };
            let mut src = crate::checkpoint::open(path)?;
            let info = src.info();
            let q = crate::quantize::quantize(&mut src, f32, Vec::new(), &mut |_, _| {})?;
            let mut e = Self::from_gguf_with(q.open()?, Some(&tokenizer), device, forward)?;
            e.info = info;
            e
        } else {
            let mut src = GgufFile::open(path)?;
            let info = src.info();
            let q = crate::quantize::quantize(&mut src, f32, Vec::new(), &mut |_, _| {})?;
            let mut e = Self::from_gguf_with(q.open()?, tokenizer_json, device, forward)?;
            e.info = info;
            e
        };
        engine.info.exact = true;
        engine.set_kv_dtype(crate::cpu_attention::KvDtype::F32);
        Ok(engine)
    }

    /// Builds a synthetic model (real shapes, random weights) on `device`; see
    /// [`crate::synthetic`].
    pub fn synthetic(spec: &crate::synthetic::SyntheticSpec, device: &Device) -> Result<Self> {
        Self::from_gguf(spec.open(), None, device)
    }

    /// Loads a model from an opened GGUF header and a reader of its tensor data.
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        gguf: GgufFile<R>,
        tokenizer_json: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        Self::from_gguf_with(gguf, tokenizer_json, device, Forward::Auto)
    }

    /// Like [`Self::load`], into landauer's own batched forward pass (llama, mistral, qwen2),
    /// which [`Self::generate_batch`] needs; single sequences run on it too.
    pub fn load_batched(
        path: &Path,
        tokenizer_json: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        Self::open_with(path, tokenizer_json, device, Forward::Batched)
    }

    /// A synthetic model in the batched forward pass.
    pub fn synthetic_batched(
        spec: &crate::synthetic::SyntheticSpec,
        device: &Device,
    ) -> Result<Self> {
        Self::from_gguf_with(spec.open(), None, device, Forward::Batched)
    }

    /// Loads a model into the forward pass `forward` names.
    pub fn from_gguf_with<R: std::io::Read + std::io::Seek>(
        gguf: GgufFile<R>,
        tokenizer_json: Option<&Path>,
        device: &Device,
        forward: Forward,
    ) -> Result<Self> {
        let info = gguf.info();
        // Refuse an unsupported model before anything else is read from it.
        crate::model::supported_architecture(&gguf)?;
        let tokenizer = match tokenizer_json {
            Some(p) => tokenizer::tokenizer_from_file(p)?,
            None => tokenizer::tokenizer_from_gguf(&gguf)?,
        };
        let token_id = |key: &str| gguf.get_u32(key);
        let mut eos_tokens: Vec<u32> = token_id("tokenizer.ggml.eos_token_id")
            .into_iter()
            .collect();
        // Chat models also end a turn with these, whatever the header names as EOS.
        for t in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>"] {
            if let Some(id) = tokenizer.token_to_id(t) {
                if !eos_tokens.contains(&id) && (t != "<|endoftext|>" || eos_tokens.is_empty()) {
                    eos_tokens.push(id);
                }
            }
        }
        let bos_token = token_id("tokenizer.ggml.bos_token_id");
        let chat_template = gguf.get_str("tokenizer.chat_template");
        let file_context = info.context_length.map(|c| c as usize).unwrap_or(2048);
        let batched = match forward {
            Forward::Batched => true,
            Forward::Candle => false,
            // LANDAUER_FORWARD=candle or batched: one pass or the other, to compare in
            // benchmarks (on a GPU, Auto takes candle-transformers' models).
            Forward::Auto if std::env::var("LANDAUER_FORWARD").is_ok_and(|v| v == "candle") => {
                false
            }
            Forward::Auto if std::env::var("LANDAUER_FORWARD").is_ok_and(|v| v == "batched") => {
                crate::family::Family::of(&gguf.architecture().unwrap_or_default()).is_some()
            }
            Forward::Auto => {
                device.is_cpu()
                    && crate::family::Family::of(&gguf.architecture().unwrap_or_default()).is_some()
            }
        };
        let model = if batched {
            Model::load_batched(gguf, device)?
        } else {
            Model::load(gguf, device)?
        };
        let context = model
            .max_positions()
            .map_or(file_context, |m| m.min(file_context));
        Ok(Self {
            model,
            tokenizer,
            info,
            device: device.clone(),
            eos_tokens,
            bos_token,
            chat_template,
            context,
            sampling_place: SamplingPlace::Auto,
        })
    }

    /// Where each step's logits become tokens, entropies and top-N (default
    /// [`SamplingPlace::Auto`]: on the device for GPUs).
    pub fn set_sampling_place(&mut self, place: SamplingPlace) {
        self.sampling_place = place;
    }

    /// True when steps are sampled where the logits are ([`crate::device_sampling`]).
    pub fn samples_on_device(&self) -> bool {
        match self.sampling_place {
            SamplingPlace::Auto => !self.device.is_cpu(),
            SamplingPlace::Host => false,
            SamplingPlace::Device => true,
        }
    }

    /// [`SamplingPlace::Host`] or [`SamplingPlace::Device`]: where steps are sampled.
    pub fn sampled_on(&self) -> SamplingPlace {
        match self.samples_on_device() {
            true => SamplingPlace::Device,
            false => SamplingPlace::Host,
        }
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The weight matrices that run on candle's CPU kernels instead of landauer's (the slow
    /// path), by name and type; empty when every matrix has a landauer kernel, and on GPUs.
    pub fn slow_tensors(&self) -> Vec<crate::model::SlowTensor> {
        self.model.slow_tensors()
    }

    /// How the model's KV cache stores keys and values: f16 by default in landauer's CPU
    /// forward pass, f32 on GPUs and in candle-transformers' models.
    pub fn kv_dtype(&self) -> crate::cpu_attention::KvDtype {
        self.model.kv_dtype()
    }

    /// Sets how landauer's CPU forward pass stores its KV cache; returns whether the cache
    /// now has that type (GPUs and candle-transformers' models keep f32).
    pub fn set_kv_dtype(&mut self, dtype: crate::cpu_attention::KvDtype) -> bool {
        self.model.set_kv_dtype(dtype);
        self.kv_dtype() == dtype
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Tokens the model can attend to (prompt plus generated).
    pub fn context_length(&self) -> usize {
        self.context
    }

    pub fn eos_tokens(&self) -> &[u32] {
        &self.eos_tokens
    }

    /// The chat template the model carries, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Renders `user` (and `system`) as a chat prompt.
    ///
    /// ChatML models (and models without a template) are formatted the way llama.cpp does:
    /// exactly the messages given. With `jinja`, the model's own Jinja template is rendered
    /// as Hugging Face's transformers does, defaults included (SmolLM2's adds a default
    /// system message when none is given).
    pub fn chat_prompt(&self, system: Option<&str>, user: &str, jinja: bool) -> Result<String> {
        let mut conversation = Vec::new();
        if let Some(s) = system {
            conversation.push(("system", s));
        }
        conversation.push(("user", user));
        self.chat_conversation(&conversation, jinja)
    }

    /// A whole conversation, (role, content) in order, as [`Self::chat_prompt`] renders one
    /// exchange: ending with the prompt for the assistant's next turn.
    pub fn chat_conversation(&self, conversation: &[(&str, &str)], jinja: bool) -> Result<String> {
        let name = |id: Option<u32>| {
            id.and_then(|i| self.tokenizer.id_to_token(i))
                .unwrap_or_default()
        };
        let template = match self.chat_template.as_deref() {
            Some(t) if jinja || !t.contains("<|im_start|>") => t,
            _ => tokenizer::CHATML_TEMPLATE,
        };
        tokenizer::render_chat(
            template,
            conversation,
            &name(self.bos_token),
            &name(self.eos_tokens.first().copied()),
        )
    }

    /// Tokenizes a prompt (special tokens in the text, such as `<|im_start|>`, are honoured).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EngineError::NoTokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Generates from `prompt`, calling `sink` once per token. Returns why it stopped.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        mut sink: impl TokenSink,
    ) -> Result<RunEnd> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if opts.max_tokens == 0 {
            return Err(EngineError::ZeroMaxTokens);
        }
        if prompt.len() >= self.context {
            return Err(EngineError::PromptTooLong {
                prompt: prompt.len(),
                context: self.context,
            });
        }
        let mut sampler = Sampler::new(opts.sampling.clone())?;
        let sink_err = |e: SinkError| EngineError::Sink(e.to_string());
        self.model.clear_kv_cache();
        let mut text = TextStream::default();

        let t0 = Instant::now();
        let secs = |t: Instant| t.duration_since(t0).as_secs_f64();
        sink.begin(&RunStart {
            at: t0,
            prompt_tokens: prompt.len(),
        })
        .map_err(sink_err)?;

        let input = Tensor::new(prompt, &self.device)?.unsqueeze(0)?;
        let mut logits = self.model.forward(&input, 0)?;
        let mut pos = prompt.len();
        let mut t_start = 0.0;
        let mut prefill_s = 0.0;
        let mut generated = 0usize;
        let needs = sink.needs();
        let on_device = self.samples_on_device();
        let reason = loop {
            // Copying the logits (or their reductions) to the host waits for the device:
            // t_end means what it says.
            let mut host: Option<Vec<f32>> = None;
            let mut outcome = None;
            let mut stats = None;
            let (token, sampled) = if on_device {
                let dl = DeviceLogits::new(&logits)?;
                let params = sampler.params().clone();
                let mut plan = dl.plan(&[0], &params, needs.top_n)?;
                if needs.stats {
                    stats = dl.stats()?.first().copied();
                }
                if needs.logits {
                    host = Some(logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?);
                }
                let (out, dist) = dl.sample_row(&mut plan, 0, 0, &mut sampler)?;
                let token = out.token;
                outcome = Some(out);
                (token, dist)
            } else {
                host = Some(logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1()?);
                sampler.sample(host.as_deref().unwrap_or_default())
            };
            let chosen_logit = match &outcome {
                Some(o) => o.chosen_logit,
                None => host.as_ref().map_or(f32::NAN, |h| h[token as usize]),
            };
            let t_end = secs(Instant::now());
            let phase = if generated == 0 {
                prefill_s = t_end;
                crate::Phase::Prefill
            } else {
                crate::Phase::Decode
            };
            let is_eos = self.eos_tokens.contains(&token);
            let stop = if is_eos && !opts.ignore_eos {
                Some(StopReason::Eos)
            } else if generated + 1 >= opts.max_tokens {
                Some(StopReason::MaxTokens)
            } else if pos + 1 > self.context {
                Some(StopReason::ContextFull)
            } else if opts
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            {
                Some(StopReason::Interrupted)
            } else {
                None
            };
            // Queue the next step before the sink runs: on a GPU the device computes it while
            // the sink works on the host (kernel launches return at once), so tracing does not
            // leave the GPU idle. On the CPU the step runs here, as before. The next token's
            // window starts at this token's end either way.
            if stop.is_none() {
                let input = Tensor::new(&[token], &self.device)?.unsqueeze(0)?;
                logits = self.model.forward(&input, pos)?;
            }
            let piece = if is_eos {
                String::new()
            } else {
                text.push(&self.tokenizer, token)
            };
            sink.token(&TokenEvent {
                seq: 0,
                index: generated,
                position: pos,
                token_id: token,
                text: &piece,
                is_eos,
                phase,
                logits: host.as_deref(),
                chosen_logit,
                top: outcome.as_ref().map(|o| o.top.as_slice()),
                sampled,
                tokenizer: &self.tokenizer,
                t_start_s: t_start,
                t_end_s: t_end,
                step_tokens: 1,
                stats,
            })
            .map_err(sink_err)?;
            generated += 1;
            t_start = t_end;
            pos += 1;
            if let Some(reason) = stop {
                break reason;
            }
        };
        let end = RunEnd {
            reason,
            prompt_tokens: prompt.len(),
            generated_tokens: generated,
            prefill_s,
            total_s: t_start,
            tail_text: text.flush(&self.tokenizer),
        };
        sink.end(&end).map_err(sink_err)?;
        Ok(end)
    }

    /// Teacher forcing: runs `prompt`, then feeds `continuation` one token at a time, and
    /// calls `f(i, logits)` with the logits that predict `continuation[i]` (the model's
    /// distribution before it sees that token). For comparing two models, or two modes of
    /// one, on the same tokens, and for cross-entropy on a reference text.
    pub fn score(
        &mut self,
        prompt: &[u32],
        continuation: &[u32],
        mut f: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if prompt.len() + continuation.len() > self.context {
            return Err(EngineError::PromptTooLong {
                prompt: prompt.len() + continuation.len(),
                context: self.context,
            });
        }
        self.model.clear_kv_cache();
        let input = Tensor::new(prompt, &self.device)?.unsqueeze(0)?;
        let mut logits = self.model.forward(&input, 0)?;
        for (i, &token) in continuation.iter().enumerate() {
            let host: Vec<f32> = logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1()?;
            f(i, &host);
            if i + 1 < continuation.len() {
                let input = Tensor::new(&[token], &self.device)?.unsqueeze(0)?;
                logits = self.model.forward(&input, prompt.len() + i)?;
            }
        }
        Ok(())
    }

    /// Runs the batched pass's attention with candle's tensor ops (the path GPUs take) on
    /// the CPU too, so that tests check that path where there is no GPU; from the next batch
    /// on. Slower than the CPU's own attention; no effect on other forward passes.
    pub fn set_tensor_attention(&mut self, on: bool) {
        if let Model::Batched(m) = &mut self.model {
            m.set_tensor_attention(on);
        }
    }

    /// Whether this engine runs landauer's batched forward pass ([`Self::load_batched`]).
    pub fn is_batched(&self) -> bool {
        matches!(self.model, Model::Batched(_))
    }

    /// Memory a batch of `rows` prompts of up to `prompt_len` tokens generating `max_tokens`
    /// each needs beyond the weights: (KV cache bytes, peak working bytes).
    pub fn batch_memory(&self, rows: usize, prompt_len: usize, max_tokens: usize) -> (u64, u64) {
        match &self.model {
            Model::Batched(m) => (
                m.kv_cache_bytes(rows, prompt_len + max_tokens),
                m.working_bytes(rows, prompt_len, prompt_len),
            ),
            _ => (0, 0),
        }
    }

    /// Generates from several prompts at once: one forward pass per step for every row.
    ///
    /// Prompts may differ in length (they are left-padded and masked). Row `r` samples with
    /// seed `opts.sampling.seed + r`. A row that reaches end-of-sequence stops emitting
    /// tokens while the others go on (it stays in the batch, masked: its work continues
    /// until every row is done). Every token is one [`TokenEvent`] with `seq` = its row;
    /// the tokens of one step share its time window (`step_tokens` says how many).
    /// A batch whose KV cache and working memory exceed what the device has free is
    /// refused before anything is allocated.
    pub fn generate_batch(
        &mut self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
        mut sink: impl TokenSink,
    ) -> Result<RunEnd> {
        let rows = prompts.len();
        if rows == 0 || prompts.iter().any(|p| p.is_empty()) {
            return Err(EngineError::EmptyPrompt);
        }
        if opts.max_tokens == 0 {
            return Err(EngineError::ZeroMaxTokens);
        }
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if longest >= self.context {
            return Err(EngineError::PromptTooLong {
                prompt: longest,
                context: self.context,
            });
        }
        // Every row writes the same slot each step: the cache holds the longest prompt plus
        // the tokens to generate, within the context.
        let capacity = (longest + opts.max_tokens).min(self.context);
        let (kv, work) = self.batch_memory(rows, longest, capacity - longest);
        let needs = sink.needs();
        let on_device = self.samples_on_device();
        let model = match &mut self.model {
            Model::Batched(m) => m,
            _ => return Err(EngineError::Device(
                "batched generation needs the batched forward pass: load with Engine::load_batched"
                    .into(),
            )),
        };
        if let Some(free) = crate::device::free_memory(&self.device) {
            if kv + work > free {
                return Err(EngineError::BatchTooLarge {
                    rows,
                    slots: capacity,
                    need: kv + work,
                    kv,
                    free,
                });
            }
        }
        let sink_err = |e: SinkError| EngineError::Sink(e.to_string());
        let mut samplers = (0..rows)
            .map(|r| {
                Sampler::new(SamplingParams {
                    seed: opts.sampling.seed.wrapping_add(r as u64),
                    ..opts.sampling.clone()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        model.start(rows, capacity)?;
        let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
        let padded = pads.iter().any(|&p| p > 0);
        let mut texts: Vec<TextStream> = (0..rows).map(|_| TextStream::default()).collect();
        let dev = self.device.clone();

        let t0 = Instant::now();
        let secs = |t: Instant| t.duration_since(t0).as_secs_f64();
        let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
        sink.begin(&RunStart {
            at: t0,
            prompt_tokens,
        })
        .map_err(sink_err)?;

        // The padded prompt block; padding repeats each row's first token (masked anyway).
        let block: Vec<u32> = prompts
            .iter()
            .zip(&pads)
            .flat_map(|(p, &pad)| std::iter::repeat_n(p[0], pad).chain(p.iter().copied()))
            .collect();
        let positions: Vec<u32> = pads
            .iter()
            .flat_map(|&pad| (0..longest).map(move |j| j.saturating_sub(pad) as u32))
            .collect();
        let mask = crate::batched::step_mask(&pads, 0, longest);
        let mut logits = model.forward(
            &Tensor::from_vec(block, (rows, longest), &dev)?,
            &Tensor::new(positions, &dev)?,
            0,
            Some(&Tensor::from_vec(mask, (rows, 1, longest, longest), &dev)?),
        )?;
        let mut slot = longest;
        let mut done = vec![false; rows];
        let mut emitted = vec![0usize; rows];
        let mut last = vec![0u32; rows];
        let (mut t_start, mut prefill_s, mut total) = (0.0, 0.0, 0usize);
        let mut step = 0usize;
        let reason = loop {
            let active: Vec<usize> = (0..rows).filter(|&r| !done[r]).collect();
            // On the device: the reductions every active row needs, copied once; the full
            // logits only for a sink that reads them.
            let device = match on_device {
                true => {
                    let dl = DeviceLogits::new(&logits)?;
                    let plan = dl.plan(&active, &opts.sampling, needs.top_n)?;
                    let stats: Vec<_> = match needs.stats {
                        true => dl.stats()?.into_iter().map(Some).collect(),
                        false => vec![None; rows],
                    };
                    Some((dl, plan, stats))
                }
                false => None,
            };
            let flat = match (&device, needs.logits) {
                (None, _) | (Some(_), true) => Some(logits.to_dtype(DType::F32)?.flatten_all()?),
                (Some(_), false) => None,
            };
            let values = flat.as_ref().map(host_values).transpose()?;
            let host = values.as_ref().map(|v| v.as_slice());
            let vocab = logits.dim(logits.rank() - 1)?;
            let t_end = secs(Instant::now());
            if step == 0 {
                prefill_s = t_end;
            }
            let (mut device, stats) = match device {
                Some((dl, plan, stats)) => (Some((dl, plan)), stats),
                None => {
                    let host = host.expect("host sampling copies the logits");
                    (None, row_stats(host, vocab, &active, opts.stats_rows))
                }
            };
            for (i, &r) in active.iter().enumerate() {
                let row = host.map(|h| &h[r * vocab..(r + 1) * vocab]);
                let (token, sampled, outcome) = match &mut device {
                    Some((dl, plan)) => {
                        let (out, dist) = dl.sample_row(plan, i, r, &mut samplers[r])?;
                        (out.token, dist, Some(out))
                    }
                    None => {
                        let (token, dist) = samplers[r].sample(row.unwrap_or_default());
                        (token, dist, None)
                    }
                };
                let chosen_logit = match &outcome {
                    Some(o) => o.chosen_logit,
                    None => row.map_or(f32::NAN, |h| h[token as usize]),
                };
                let is_eos = self.eos_tokens.contains(&token);
                let piece = if is_eos {
                    String::new()
                } else {
                    texts[r].push(&self.tokenizer, token)
                };
                sink.token(&TokenEvent {
                    seq: r,
                    index: emitted[r],
                    position: slot - pads[r],
                    token_id: token,
                    text: &piece,
                    is_eos,
                    phase: if step == 0 {
                        crate::Phase::Prefill
                    } else {
                        crate::Phase::Decode
                    },
                    logits: row,
                    chosen_logit,
                    top: outcome.as_ref().map(|o| o.top.as_slice()),
                    sampled,
                    tokenizer: &self.tokenizer,
                    t_start_s: t_start,
                    t_end_s: t_end,
                    step_tokens: active.len(),
                    stats: stats[r],
                })
                .map_err(sink_err)?;
                emitted[r] += 1;
                total += 1;
                last[r] = token;
                if (is_eos && !opts.ignore_eos) || emitted[r] >= opts.max_tokens {
                    done[r] = true;
                }
            }
            t_start = t_end;
            step += 1;
            if done.iter().all(|&d| d) {
                break if emitted.iter().all(|&n| n >= opts.max_tokens) {
                    StopReason::MaxTokens
                } else {
                    StopReason::Eos
                };
            }
            if slot + 1 > capacity.min(model.max_positions()) {
                break StopReason::ContextFull;
            }
            if opts
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            {
                break StopReason::Interrupted;
            }
            let positions: Vec<u32> = pads.iter().map(|&p| (slot - p) as u32).collect();
            // A decode step's mask only hides padding: none without it.
            let mask = if padded {
                let m = crate::batched::step_mask(&pads, slot, 1);
                Some(Tensor::from_vec(m, (rows, 1, 1, slot + 1), &dev)?)
            } else {
                None
            };
            logits = model.forward(
                &Tensor::from_vec(last.clone(), (rows, 1), &dev)?,
                &Tensor::new(positions, &dev)?,
                slot,
                mask.as_ref(),
            )?;
            slot += 1;
        };
        let tail: String = texts.iter_mut().map(|t| t.flush(&self.tokenizer)).collect();
        let end = RunEnd {
            reason,
            prompt_tokens,
            generated_tokens: total,
            prefill_s,
            total_s: t_start,
            tail_text: tail,
        };
        sink.end(&end).map_err(sink_err)?;
        Ok(end)
    }
}

/// `softmax_stats` of each active row below `limit` (None for the others), rows in parallel
/// on the thread pool; each row's statistics are computed by one thread, as alone.
pub(crate) fn row_stats(
    host: &[f32],
    vocab: usize,
    active: &[usize],
    limit: usize,
) -> Vec<Option<landauer_physics::SoftmaxStats>> {
    let rows = host.len() / vocab.max(1);
    let wanted: Vec<usize> = active.iter().copied().filter(|&r| r < limit).collect();
    let mut out: Vec<Option<landauer_physics::SoftmaxStats>> = vec![None; rows];
    let one = |r: usize| landauer_physics::softmax_stats(&host[r * vocab..(r + 1) * vocab]);
    if wanted.len() < 2 {
        for &r in &wanted {
            out[r] = Some(one(r));
        }
        return out;
    }
    let slots: Vec<std::sync::OnceLock<landauer_physics::SoftmaxStats>> =
        wanted.iter().map(|_| std::sync::OnceLock::new()).collect();
    crate::kernels::parallel_for(wanted.len(), |range| {
        for i in range {
            let _ = slots[i].set(one(wanted[i]));
        }
    });
    for (&r, slot) in wanted.iter().zip(slots) {
        out[r] = slot.into_inner();
    }
    out
}

/// A tensor's f32 values on the host: borrowed from a CPU tensor's storage (no copy of a
/// batch's logits every step), copied from a GPU's.
pub(crate) enum HostValues<G> {
    /// The storage's guard and the tensor's range in it (a CPU f32 storage).
    Borrowed(G, std::ops::Range<usize>),
    Owned(Vec<f32>),
}

impl<G: std::ops::Deref<Target = candle_core::Storage>> HostValues<G> {
    pub(crate) fn as_slice(&self) -> &[f32] {
        match self {
            HostValues::Borrowed(guard, range) => match &**guard {
                candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => &v[range.clone()],
                _ => unreachable!("checked in host_values"),
            },
            HostValues::Owned(v) => v,
        }
    }
}

pub(crate) fn host_values(
    t: &Tensor,
) -> Result<HostValues<impl std::ops::Deref<Target = candle_core::Storage> + '_>> {
    let (storage, layout) = t.storage_and_layout();
    if let (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(_)), Some((a, b))) =
        (&*storage, layout.contiguous_offsets())
    {
        return Ok(HostValues::Borrowed(storage, a..b));
    }
    drop(storage);
    Ok(HostValues::Owned(t.flatten_all()?.to_vec1()?))
}
