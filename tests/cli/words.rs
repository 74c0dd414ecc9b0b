//! Word-level attributions: each tokenizer's sub-word tokens grouped into the words its own
//! pre-tokenizer made, labelled with the original text, and token matrices merged into word
//! matrices that keep (Sum) or average (Mean) the token pairs' values.

use crate::common;

use std::path::Path;

use common::{fixture_dir, minilm_dir, mpnet_dir, Rng};
use simattr::attribution::{merge_matrix, words_of, WordMerge, Words};
use simattr::model::{SentenceModel, TextTokenizer};

const GUITAR: &str = "A man is playing a guitar.";
const UNICODE: &str = "Ünïcode wörds, naïve café";
const CLOCK: &str = "It's 2 o'clock!";
/// A made-up word, split into pieces even by the real models' 30k vocabularies.
const MADE_UP: &str = "Jacobians say simattr.";

/// BERT's pre-tokenizer (BERT, MPNet) splits at whitespace and at every punctuation character;
/// lowercasing and accent stripping happen in the normalizer and do not reach the labels.
const WORDPIECE_WORDS: [(&str, &[&str]); 4] = [
    (GUITAR, &["A", "man", "is", "playing", "a", "guitar", "."]),
    (UNICODE, &["Ünïcode", "wörds", ",", "naïve", "café"]),
    (CLOCK, &["It", "'", "s", "2", "o", "'", "clock", "!"]),
    (MADE_UP, &["Jacobians", "say", "simattr", "."]),
];

/// Byte-level BPE (RoBERTa) splits with GPT-2's pattern: a word takes the space before it
/// ("Ġman", the space trimmed from the offsets), punctuation runs are words of their own,
/// and the contractions `'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d` are split off whole.
const BYTE_LEVEL_WORDS: [(&str, &[&str]); 4] = [
    (GUITAR, &["A", "man", "is", "playing", "a", "guitar", "."]),
    (UNICODE, &["Ünïcode", "wörds", ",", "naïve", "café"]),
    (CLOCK, &["It", "'s", "2", "o", "'", "clock", "!"]),
    (MADE_UP, &["Jacobians", "say", "simattr", "."]),
];

/// XLM-R's pre-tokenizer is WhitespaceSplit then Metaspace (`▁`): words are split at
/// whitespace only, punctuation stays with its word.
const METASPACE_WORDS: [(&str, &[&str]); 4] = [
    (GUITAR, &["A", "man", "is", "playing", "a", "guitar."]),
    (UNICODE, &["Ünïcode", "wörds,", "naïve", "café"]),
    (CLOCK, &["It's", "2", "o'clock!"]),
    (MADE_UP, &["Jacobians", "say", "simattr."]),
];

fn tokenizer(dir: &Path) -> TextTokenizer {
    SentenceModel::load(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).tokenizer
}

/// What the tokenizer made of `text`, for failure messages.
fn dump(tokenizer: &TextTokenizer, text: &str) -> String {
    let t = tokenizer.encode(text).expect("encode");
    let words = words_of(&t, text);
    format!(
        "{text:?}\n  tokens  {:?}\n  word ids {:?}\n  offsets {:?}\n  words   {:?}\n  groups  {:?}",
        t.tokens, t.words, t.offsets, words.labels, words.tokens
    )
}

/// Every token index in exactly one word, words consecutive and in order.
fn assert_partition(words: &Words, tokens: usize, context: &str) {
    assert_eq!(words.labels.len(), words.tokens.len(), "{context}");
    let flat: Vec<usize> = words.tokens.iter().flatten().copied().collect();
    assert_eq!(flat, (0..tokens).collect::<Vec<_>>(), "{context}");
    assert!(words.tokens.iter().all(|w| !w.is_empty()), "{context}");
}

/// Sum keeps the total and Mean is Sum over the block sizes, on a random matrix.
fn assert_merges(a: &Words, b: &Words, rng: &mut Rng) {
    let (rows, cols) = (a.tokens.iter().map(Vec::len).sum::<usize>(), b.tokens.iter().map(Vec::len).sum::<usize>());
    let matrix = rng.vec(rows * cols);
    let sum = merge_matrix(&matrix, rows, cols, a, b, WordMerge::Sum);
    let mean = merge_matrix(&matrix, rows, cols, a, b, WordMerge::Mean);
    assert_eq!((sum.len(), mean.len()), (a.tokens.len() * b.tokens.len(), a.tokens.len() * b.tokens.len()));
    let (total, merged_total) = (matrix.iter().sum::<f64>(), sum.iter().sum::<f64>());
    assert!((total - merged_total).abs() <= 1e-12 * matrix.len() as f64, "Sum: {merged_total} ≠ {total}");
    for (i, wa) in a.tokens.iter().enumerate() {
        for (j, wb) in b.tokens.iter().enumerate() {
            let (s, m) = (sum[i * b.tokens.len() + j], mean[i * b.tokens.len() + j]);
            let block = (wa.len() * wb.len()) as f64;
            assert!((m - s / block).abs() <= 1e-12, "word pair ({i}, {j}): mean {m} ≠ {s} / {block}");
        }
    }
}

/// The words of each text are `expected` between the special tokens `open` and `close`, at
/// least one word has several tokens, and merging any two of the texts' matrices is sound.
fn check(dir: &Path, open: &str, close: &str, expected: &[(&str, &[&str])]) {
    let tokenizer = tokenizer(dir);
    let mut all = Vec::new();
    for &(text, inner) in expected {
        let context = format!("{}: {}", dir.display(), dump(&tokenizer, text));
        let tokenized = tokenizer.encode(text).expect("encode");
        assert_eq!(tokenized.truncated_from, None, "{context}");
        assert_eq!((tokenized.words.len(), tokenized.offsets.len()), (tokenized.ids.len(), tokenized.ids.len()));
        let words = words_of(&tokenized, text);
        let want: Vec<&str> = [&[open][..], inner, &[close]].concat();
        assert_eq!(words.labels, want, "{context}");
        assert_partition(&words, tokenized.ids.len(), &context);
        // The special tokens are words of their own, with no word id and no span.
        for i in [0, tokenized.ids.len() - 1] {
            assert_eq!((tokenized.words[i], tokenized.offsets[i]), (None, (0, 0)), "{context}");
        }
        all.push(words);
    }
    assert!(
        all.iter().flat_map(|w| &w.tokens).any(|w| w.len() > 1),
        "{}: no word of several tokens, so merging is not exercised",
        dir.display()
    );
    let mut rng = Rng::new(7);
    for a in &all {
        for b in &all {
            assert_merges(a, b, &mut rng);
        }
    }
}

#[test]
fn bert_words_split_at_punctuation() {
    check(&fixture_dir("tiny-bert"), "[CLS]", "[SEP]", &WORDPIECE_WORDS);
}

#[test]
fn mpnet_words_split_at_punctuation() {
    check(&fixture_dir("tiny-mpnet"), "<s>", "</s>", &WORDPIECE_WORDS);
}

#[test]
fn roberta_words_take_the_space_before_them() {
    check(&fixture_dir("tiny-roberta"), "<s>", "</s>", &BYTE_LEVEL_WORDS);
}

#[test]
fn xlm_roberta_words_split_at_whitespace_only() {
    check(&fixture_dir("tiny-xlm-roberta"), "<s>", "</s>", &METASPACE_WORDS);
}

/// The real models (fetched into the cache if missing; a failed fetch fails the test).
#[test]
fn real_model_words() {
    check(&minilm_dir(), "[CLS]", "[SEP]", &WORDPIECE_WORDS);
    check(&mpnet_dir(), "<s>", "</s>", &WORDPIECE_WORDS);
}

/// Offsets are bytes into the original text: each word's span is exactly its label, on
/// character boundaries, even after non-ASCII characters.
#[test]
fn offsets_are_byte_offsets_into_the_original_text() {
    let text = "wörld Ünïcode";
    for fixture in ["tiny-bert", "tiny-mpnet", "tiny-roberta", "tiny-xlm-roberta"] {
        let tokenizer = tokenizer(&fixture_dir(fixture));
        let context = format!("{fixture}: {}", dump(&tokenizer, text));
        let tokenized = tokenizer.encode(text).expect("encode");
        let inner = &tokenized.offsets[1..tokenized.offsets.len() - 1];
        assert!(inner.iter().all(|&(s, e)| s <= e && text.get(s..e).is_some()), "{context}");
        assert_eq!(inner.last().map(|o| o.1), Some(text.len()), "{context}");
        let words = words_of(&tokenized, text);
        assert_eq!(words.labels[1..words.labels.len() - 1], ["wörld", "Ünïcode"], "{context}");
    }
}

/// A text cut to `max_seq_length` has fewer words, still closed by the special token, and its
/// words still cover every token once.
#[test]
fn truncated_text_has_fewer_words() {
    let text = "A man is playing a guitar. ".repeat(20);
    for (fixture, close) in [("tiny-bert", "[SEP]"), ("tiny-roberta", "</s>"), ("tiny-xlm-roberta", "</s>")] {
        let tokenizer = tokenizer(&fixture_dir(fixture));
        let tokenized = tokenizer.encode(&text).expect("encode");
        let context = format!("{fixture}: {:?}", tokenized.tokens);
        assert!(tokenized.truncated_from.is_some(), "{context}");
        assert_eq!(tokenized.ids.len(), tokenizer.max_len(), "{context}");
        let words = words_of(&tokenized, &text);
        assert_partition(&words, tokenized.ids.len(), &context);
        assert_eq!(words.labels.last().map(String::as_str), Some(close), "{context}");
        assert!(words.labels.len() < text.split_whitespace().count(), "{context}");
        // The words that made it are the text's first ones, from the original text.
        assert_eq!(words.labels[1..4], ["A", "man", "is"], "{context}");
    }
}

/// Byte-level BPE makes the first of two spaces a token of its own ("Ġ"), and trims its span
/// to nothing; the word is labelled with the token string rather than an invisible "".
#[test]
fn roberta_lone_space_is_labelled_with_its_token() {
    let text = "a  man";
    let tokenizer = tokenizer(&fixture_dir("tiny-roberta"));
    let context = dump(&tokenizer, text);
    let tokenized = tokenizer.encode(text).expect("encode");
    let words = words_of(&tokenized, text);
    assert_eq!(words.labels, ["<s>", "a", "Ġ", "man", "</s>"], "{context}");
    assert_partition(&words, tokenized.ids.len(), &context);
}

/// Truncation can cut a word: it keeps the tokens that made it, and its label is their span.
/// tiny-bert keeps 22 of "jacobians" (8 pieces), "explain" (6), "simattr" (7), "scores" (4):
/// only the "s" of "scores".
#[test]
fn truncation_cuts_the_last_word_to_its_kept_tokens() {
    let text = "Jacobians explain simattr scores.";
    let tokenizer = tokenizer(&fixture_dir("tiny-bert"));
    let context = dump(&tokenizer, text);
    let tokenized = tokenizer.encode(text).expect("encode");
    assert_eq!((tokenized.ids.len(), tokenized.truncated_from), (24, Some(29)), "{context}");
    let words = words_of(&tokenized, text);
    assert_eq!(words.labels, ["[CLS]", "Jacobians", "explain", "simattr", "s", "[SEP]"], "{context}");
    assert_eq!(words.tokens[4], [22], "{context}");
}
