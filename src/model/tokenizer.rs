//! The folder's own HF tokenizer, used the way sentence-transformers uses it: special tokens
//! added, no padding, truncation at `max_seq_length` (reported, not silent).

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::config::EncoderConfig;
use crate::error::{Error, Result};

pub struct TextTokenizer {
    path: PathBuf,
    inner: Tokenizer,
    max_len: usize,
    /// The special ids the tokenizer puts around every text (BERT: `[CLS]`, `[SEP]`; T5 only
    /// closes with `</s>`).
    pub open_id: Option<u32>,
    pub close_id: Option<u32>,
    pub pad_id: u32,
    vocab_size: usize,
}

/// The special ids of a reference input: the tokenizer's own framing tokens around padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferenceFraming {
    pub open_id: Option<u32>,
    pub pad_id: u32,
    pub close_id: Option<u32>,
}

impl ReferenceFraming {
    /// The reference input of `len` tokens: the special tokens the tokenizer adds to every
    /// text at their places, padding everywhere else: `[open] [pad]… [close]` (`[CLS] [PAD]…
    /// [SEP]` for BERT, `<s> <pad>… </s>` for MPNet and RoBERTa, as xsbert hard-codes them;
    /// `<pad>… </s>` for T5).
    pub fn ids(&self, len: usize) -> Vec<u32> {
        let mut ids = vec![self.pad_id; len];
        if let (Some(first), Some(open)) = (ids.first_mut(), self.open_id) {
            *first = open;
        }
        if let (Some(close), true) = (self.close_id, len > usize::from(self.open_id.is_some())) {
            ids[len - 1] = close;
        }
        ids
    }
}

/// One tokenized text.
#[derive(Debug, Clone)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
    /// The length before truncation, when the text was cut to `max_seq_length`.
    pub truncated_from: Option<usize>,
    /// The tokenizer's word index of each token (`Encoding::get_word_ids`); `None` for special
    /// tokens. Which tokens form a word is the pre-tokenizer's call (BERT's splits off
    /// punctuation, XLM-R's splits at whitespace only), so words are taken from it rather than
    /// guessed from `##`, `Ġ` or `▁` marks.
    pub words: Vec<Option<u32>>,
    /// Byte offsets of each token in the text (`Encoding::get_offsets`); (0, 0) for special
    /// tokens. They point into the original text, before lowercasing or accent stripping, so a
    /// word's label is what the user wrote.
    pub offsets: Vec<(usize, usize)>,
    /// With a prompt, how many tokens sentence-transformers counts as the prompt's
    /// (`prompt_length`: the prompt tokenized alone, less a closing special token), which
    /// include any opening special token. The text's tokens from the prompt are
    /// `prompt_tokens()`.
    pub prompt_length: Option<usize>,
}

impl Tokenized {
    /// How many leading tokens pooling leaves out: the prompt's `prompt_length` where the
    /// Pooling does not read prompts (`include_prompt: false`), else none.
    pub fn unpooled_tokens(&self, include_prompt: bool) -> usize {
        match include_prompt {
            true => 0,
            false => self.prompt_length.unwrap_or(0),
        }
    }

    /// The tokens that are the prompt's, after any opening special token.
    pub fn prompt_tokens(&self) -> std::ops::Range<usize> {
        let open = usize::from(self.words.first().is_some_and(Option::is_none));
        match self.prompt_length {
            Some(length) => open.min(length)..length.min(self.ids.len()),
            None => 0..0,
        }
    }
}

impl TextTokenizer {
    pub fn reference_framing(&self) -> ReferenceFraming {
        ReferenceFraming { open_id: self.open_id, pad_id: self.pad_id, close_id: self.close_id }
    }

    pub fn load(path: &Path, max_len: usize, config: &EncoderConfig) -> Result<Self> {
        let err = |message: String| Error::Tokenizer { path: path.to_path_buf(), message };
        let mut inner = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        // tokenizer.json often carries its own padding/truncation (MiniLM's pads to 128);
        // sentence-transformers overrides both, and so do we.
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| err(e.to_string()))?;
        // The framing every text gets: the special tokens before and after a word's.
        let frame = inner.encode("a", true).map_err(|e| err(e.to_string()))?;
        let special = frame.get_special_tokens_mask();
        let leading = special.iter().take_while(|&&m| m == 1).count();
        let trailing = special.iter().rev().take_while(|&&m| m == 1).count();
        if leading > 1 || trailing > 1 || leading + trailing == special.len() {
            return Err(err(format!(
                "expected a text to be framed by at most one special token at each end, got ids {:?}",
                frame.get_ids()
            )));
        }
        let ids = frame.get_ids();
        let (open_id, close_id) = ((leading == 1).then(|| ids[0]), (trailing == 1).then(|| ids[ids.len() - 1]));
        for id in open_id.into_iter().chain(close_id).chain([config.pad_token_id]) {
            if id as usize >= config.vocab_size {
                return Err(err(format!("special token id {id} ≥ vocab_size {}", config.vocab_size)));
            }
        }
        Ok(TextTokenizer {
            path: path.to_path_buf(),
            inner,
            max_len,
            open_id,
            close_id,
            pad_id: config.pad_token_id,
            vocab_size: config.vocab_size,
        })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenizes one text; an empty (or all-whitespace) text is an error, since there is
    /// nothing to embed or explain.
    pub fn encode(&self, text: &str) -> Result<Tokenized> {
        self.encode_with_prompt(text, None)
    }

    /// Tokenizes `prompt` followed by `text`, as `encode(prompt=…)` does (the prompt's tokens
    /// are the text's; `Tokenized::prompt_length` counts them).
    pub fn encode_with_prompt(&self, text: &str, prompt: Option<&str>) -> Result<Tokenized> {
        if text.trim().is_empty() {
            return Err(Error::argument("TEXT", "a text is empty"));
        }
        let prompt = prompt.filter(|p| !p.is_empty());
        let prompt_length = match prompt {
            Some(prompt) => Some(self.prompt_length(prompt)?),
            None => None,
        };
        let joined;
        let text = match prompt {
            Some(prompt) => {
                joined = format!("{prompt}{text}");
                joined.as_str()
            }
            None => text,
        };
        let err = |message: String| Error::Tokenizer { path: self.path.clone(), message };
        let full = self.inner.encode(text, true).map_err(|e| err(e.to_string()))?;
        let mut encoding = full;
        let mut truncated_from = None;
        if encoding.get_ids().len() > self.max_len {
            truncated_from = Some(encoding.get_ids().len());
            let mut cut = self.inner.clone();
            cut.with_truncation(Some(TruncationParams {
                max_length: self.max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| err(e.to_string()))?;
            encoding = cut.encode(text, true).map_err(|e| err(e.to_string()))?;
        }
        let ids = encoding.get_ids().to_vec();
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(err(format!("token id {bad} ≥ the model's vocab_size {}", self.vocab_size)));
        }
        // The vocabulary's own strings, as transformers' `convert_ids_to_tokens` gives them: a
        // SentencePiece tokenizer reports an unknown character's text where the id is `<unk>`.
        let tokens = ids
            .iter()
            .zip(encoding.get_tokens())
            .map(|(&id, piece)| self.inner.id_to_token(id).unwrap_or_else(|| piece.clone()))
            .collect();
        // `Tokenizer::encode` reports byte offsets (`encode_char_offsets` would give chars).
        // Special tokens are marked by the post-processor's mask rather than by a missing word
        // id, which a processor is free to fill in.
        let special = encoding.get_special_tokens_mask();
        let is_special = |i: usize| special.get(i).is_some_and(|&m| m == 1);
        let words =
            encoding.get_word_ids().iter().enumerate().map(|(i, &w)| if is_special(i) { None } else { w }).collect();
        let offsets = encoding
            .get_offsets()
            .iter()
            .enumerate()
            .map(|(i, &span)| if is_special(i) { (0, 0) } else { span })
            .collect();
        Ok(Tokenized { ids, tokens, truncated_from, words, offsets, prompt_length })
    }

    /// sentence-transformers' `prompt_length`: the prompt's tokens alone, less a closing
    /// special token.
    fn prompt_length(&self, prompt: &str) -> Result<usize> {
        let err = |message: String| Error::Tokenizer { path: self.path.clone(), message };
        let encoding = self.inner.encode(prompt, true).map_err(|e| err(e.to_string()))?;
        let closes = encoding.get_special_tokens_mask().last() == Some(&1);
        Ok(encoding.get_ids().len() - usize::from(closes))
    }
}
