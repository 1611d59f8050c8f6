//! Tokenizers built from a GGUF's embedded vocabulary, and chat templates.

use crate::gguf::GgufFile;
use crate::{EngineError, Result};
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::processors::byte_level::ByteLevel as ByteLevelProcessor;
use tokenizers::Tokenizer;

/// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.*`).
///
/// candle builds the byte-level BPE model from the vocabulary and merges and knows the
/// pre-tokenizers of Qwen2 and Llama 3; SmolLM's (`pre = "smollm"`) is added here: digits
/// split one by one, then byte-level BPE without a prefix space, as in SmolLM2's
/// tokenizer.json.
pub fn tokenizer_from_gguf(gguf: &GgufFile) -> Result<Tokenizer> {
    let mut tok = Tokenizer::from_gguf(&gguf.content)
        .map_err(|e| EngineError::NoTokenizer(crate::gguf::one_line(&e.to_string())))?;
    if gguf.get_str("tokenizer.ggml.pre").as_deref() == Some("smollm") {
        let pre = Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ]);
        tok.with_pre_tokenizer(Some(pre));
        tok.with_decoder(Some(ByteLevelDecoder::new(false, true, true)));
        tok.with_post_processor(Some(ByteLevelProcessor::new(false, true, true)));
    }
    Ok(tok)
}

/// Reads a Hugging Face `tokenizer.json`.
pub fn tokenizer_from_file(path: &Path) -> Result<Tokenizer> {
    if !path.exists() {
        return Err(EngineError::Tokenizer {
            path: path.into(),
            reason: "no such file".into(),
        });
    }
    Tokenizer::from_file(path).map_err(|e| EngineError::Tokenizer {
        path: path.into(),
        reason: crate::gguf::one_line(&e.to_string()),
    })
}

/// ChatML, used when a model ships no template of its own.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Renders a single-turn conversation with the model's chat template (`tokenizer.chat_template`,
/// a Jinja template, rendered with minijinja as Hugging Face's transformers would).
pub fn apply_chat_template(
    template: &str,
    system: Option<&str>,
    user: &str,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    use minijinja::{context, Environment, Error, ErrorKind};
    let mut env = Environment::new();
    env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_template("chat", template)
        .map_err(|e| EngineError::ChatTemplate(e.to_string()))?;
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(context! { role => "system", content => s });
    }
    messages.push(context! { role => "user", content => user });
    env.get_template("chat")
        .and_then(|t| {
            t.render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => bos_token,
                eos_token => eos_token,
            })
        })
        .map_err(|e| EngineError::ChatTemplate(e.to_string()))
}

/// Streams text out of a growing list of tokens, emitting only complete UTF-8 pieces.
///
/// Decoding one token at a time breaks multi-byte characters and drops the spaces a
/// byte-level decoder adds between tokens, so each step decodes a short window and emits
/// what it added (the same approach as candle's examples, which no library crate ships).
#[derive(Default)]
pub struct TextStream {
    tokens: Vec<u32>,
    prev_index: usize,
    current_index: usize,
}

impl TextStream {
    /// Adds `token` and returns the text it completes (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, token: u32) -> String {
        let prev_text = self.decode(tokenizer, self.prev_index, self.current_index);
        self.tokens.push(token);
        let text = self.decode(tokenizer, self.prev_index, self.tokens.len());
        if text.len() > prev_text.len() && !text.ends_with('\u{FFFD}') {
            let piece = text
                .get(prev_text.len()..)
                .map(str::to_string)
                .unwrap_or_default();
            self.prev_index = self.current_index;
            self.current_index = self.tokens.len();
            piece
        } else {
            String::new()
        }
    }

    /// Text still held back (an incomplete character at the end of generation).
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> String {
        let prev_text = self.decode(tokenizer, self.prev_index, self.current_index);
        let text = self.decode(tokenizer, self.prev_index, self.tokens.len());
        self.prev_index = self.tokens.len();
        self.current_index = self.tokens.len();
        text.get(prev_text.len()..)
            .map(str::to_string)
            .unwrap_or_default()
    }

    fn decode(&self, tokenizer: &Tokenizer, from: usize, to: usize) -> String {
        tokenizer
            .decode(&self.tokens[from..to], true)
            .unwrap_or_default()
    }
}
