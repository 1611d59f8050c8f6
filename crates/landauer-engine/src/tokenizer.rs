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
pub fn tokenizer_from_gguf<R>(gguf: &GgufFile<R>) -> Result<Tokenizer> {
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
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(("system", s));
    }
    messages.push(("user", user));
    render_chat(template, &messages, bos_token, eos_token)
}

/// A whole conversation, (role, content) in order, through a chat template, ending with the
/// prompt for the assistant's next turn.
pub fn render_chat(
    template: &str,
    conversation: &[(&str, &str)],
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
    let messages: Vec<_> = conversation
        .iter()
        .map(|(role, content)| context! { role => role, content => content })
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::{write_tiny_llama, TinyConfig};

    fn tiny_tokenizer() -> Tokenizer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        write_tiny_llama(&path, &TinyConfig::default()).unwrap();
        tokenizer_from_gguf(&GgufFile::open(&path).unwrap()).unwrap()
    }

    #[test]
    fn text_stream_holds_back_partial_characters() {
        let tok = tiny_tokenizer();
        // "é" and "🙂" are not in the tiny vocabulary: they become several byte tokens.
        let text = "The café 🙂 is";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        let mut stream = TextStream::default();
        let mut out = String::new();
        let mut pieces = Vec::new();
        for &id in &ids {
            let piece = stream.push(&tok, id);
            assert!(
                !piece.contains('\u{FFFD}'),
                "emitted a broken character: {piece:?}"
            );
            pieces.push(piece.clone());
            out.push_str(&piece);
        }
        out.push_str(&stream.flush(&tok));
        assert_eq!(out, text);
        // Some byte tokens completed nothing on their own.
        assert!(pieces.iter().any(|p| p.is_empty()), "{pieces:?}");
    }

    #[test]
    fn special_tokens_and_digits() {
        let tok = tiny_tokenizer();
        let ids = tok.encode("<|im_start|>user\n12<|im_end|>", false).unwrap();
        let ids = ids.get_ids();
        assert_eq!(ids.first(), Some(&1));
        assert_eq!(ids.last(), Some(&2));
        // SmolLM's pre-tokenizer splits digits one by one.
        let one = tok.token_to_id("1").unwrap();
        let two = tok.token_to_id("2").unwrap();
        assert!(ids.windows(2).any(|w| w == [one, two]), "{ids:?}");
    }

    #[test]
    fn chat_template_with_and_without_system() {
        let plain = apply_chat_template(CHATML_TEMPLATE, None, "hi", "", "").unwrap();
        assert_eq!(
            plain,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        let sys = apply_chat_template(CHATML_TEMPLATE, Some("be brief"), "hi", "", "").unwrap();
        assert!(sys.starts_with("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi"));
        let err = apply_chat_template(
            "{{ raise_exception('no system role') }}",
            None,
            "hi",
            "",
            "",
        )
        .unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
        assert!(apply_chat_template("{% if %}", None, "hi", "", "").is_err());
    }
}
