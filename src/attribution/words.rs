//! Word-level attributions: the token-by-token matrix `A` merged into a word-by-word one.
//!
//! Sub-word tokens ("gu", "##itar") are what the encoder sees, but a reader thinks in words.
//! Which tokens make up a word is the tokenizer's own decision (its pre-tokenizer's word
//! index of each token, `Tokenized::words`), so nothing here guesses from `##`, `Ġ` or `▁`
//! marks; and a word's label is the stretch of the original text its tokens cover
//! (`Tokenized::offsets`), so lowercasing or accent stripping does not show in it.

use std::str::FromStr;

use crate::error::Error;
use crate::model::Tokenized;

/// How the token pairs of two words combine into the word pair's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordMerge {
    /// The sum over the word pair's token pairs: the matrix total is unchanged, so the
    /// completeness of the attributions (their total is the similarity) still holds.
    Sum,
    /// The mean over the word pair's token pairs, as xsbert's evaluation averages them: values
    /// stay comparable between long and short words, but no longer add up to the similarity.
    Mean,
}

impl WordMerge {
    /// The name the command line and the outputs use.
    pub fn name(self) -> &'static str {
        match self {
            WordMerge::Sum => "sum",
            WordMerge::Mean => "mean",
        }
    }
}

impl FromStr for WordMerge {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "sum" => Ok(WordMerge::Sum),
            "mean" => Ok(WordMerge::Mean),
            other => Err(Error::argument("--word-merge", format!("`{other}` (expected sum or mean)"))),
        }
    }
}

/// The words of one tokenized text, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words {
    /// Each word's text as it stands in the input (the slice of the text its tokens cover,
    /// from the first token's start offset to the last token's end offset); a special token is
    /// a word of its own, labelled with its token string (e.g. "[CLS]", "<s>").
    pub labels: Vec<String>,
    /// The token indices of each word (consecutive, in order; every token in exactly one word).
    pub tokens: Vec<Vec<usize>>,
}

impl Words {
    /// The number of words.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// The words of `tokenized`, which must be `text` as the tokenizer encoded it: consecutive
/// tokens with the same word index form one word, and a token with none (a special token) is
/// a word of its own. A truncated text simply has fewer words, the last perhaps cut short.
pub fn words_of(tokenized: &Tokenized, text: &str) -> Words {
    let word_of = |i: usize| tokenized.words.get(i).copied().flatten();
    let mut tokens: Vec<Vec<usize>> = Vec::new();
    for i in 0..tokenized.ids.len() {
        let continues = i > 0 && word_of(i).is_some() && word_of(i) == word_of(i - 1);
        match tokens.last_mut() {
            Some(word) if continues => word.push(i),
            _ => tokens.push(vec![i]),
        }
    }
    let labels = tokens.iter().map(|word| label(tokenized, text, word)).collect();
    Words { labels, tokens }
}

/// A word's label: the text its tokens span, or for a special token its token string. The
/// offsets come from the tokenizer, but `Tokenized` may have been built for another text, so a
/// span that is out of range (or not on character boundaries) falls back to the token strings
/// rather than panicking; so does an empty span (byte-level BPE trims the space off a token
/// that is nothing but a space), which would otherwise be an invisible label.
fn label(tokenized: &Tokenized, text: &str, word: &[usize]) -> String {
    let pieces = || word.iter().filter_map(|&i| tokenized.tokens.get(i).map(String::as_str)).collect::<String>();
    let (Some(&first), Some(&last)) = (word.first(), word.last()) else {
        return String::new();
    };
    if tokenized.words.get(first).copied().flatten().is_none() {
        return pieces();
    }
    let span = tokenized.offsets.get(first).zip(tokenized.offsets.get(last));
    match span.and_then(|(&(start, _), &(_, end))| text.get(start..end)) {
        Some(slice) if !slice.is_empty() => slice.to_string(),
        _ => pieces(),
    }
}

/// The word-by-word matrix `[words_a, words_b]` row-major from the token matrix `[rows, cols]`:
/// Sum: the sum over the word pair's token pairs (so its total equals the token matrix's, and
/// completeness still holds); Mean: their mean (xsbert's evaluation averages).
///
/// # Panics
/// If `matrix` is not `rows × cols`, or `a` and `b` name tokens outside it: the words must be
/// those of the texts the matrix was computed for (a bug in the caller, not bad input).
pub fn merge_matrix(matrix: &[f64], rows: usize, cols: usize, a: &Words, b: &Words, merge: WordMerge) -> Vec<f64> {
    assert_eq!(matrix.len(), rows * cols, "the token matrix is not {rows} × {cols}");
    let outside = |words: &Words, n: usize| words.tokens.iter().flatten().any(|&t| t >= n);
    assert!(!outside(a, rows) && !outside(b, cols), "the words name tokens outside the {rows} × {cols} matrix");
    let mut merged = Vec::with_capacity(a.len() * b.len());
    for row_tokens in &a.tokens {
        for col_tokens in &b.tokens {
            let sum: f64 =
                row_tokens.iter().map(|&r| col_tokens.iter().map(|&c| matrix[r * cols + c]).sum::<f64>()).sum();
            merged.push(match merge {
                WordMerge::Sum => sum,
                // An empty word (only possible in a hand-built `Words`) has no pairs: 0.
                WordMerge::Mean => sum / (row_tokens.len() * col_tokens.len()).max(1) as f64,
            });
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(groups: &[&[usize]]) -> Words {
        Words {
            labels: (0..groups.len()).map(|i| format!("w{i}")).collect(),
            tokens: groups.iter().map(|g| g.to_vec()).collect(),
        }
    }

    /// A 3 × 4 matrix with value `10 r + c`; rows grouped {0}, {1, 2}, columns {0, 1, 2}, {3}.
    fn example() -> (Vec<f64>, Words, Words) {
        let matrix = (0..3).flat_map(|r| (0..4).map(move |c| (10 * r + c) as f64)).collect();
        (matrix, words(&[&[0], &[1, 2]]), words(&[&[0, 1, 2], &[3]]))
    }

    #[test]
    fn sum_adds_the_blocks_and_keeps_the_total() {
        let (matrix, a, b) = example();
        let merged = merge_matrix(&matrix, 3, 4, &a, &b, WordMerge::Sum);
        // Row 0: 0+1+2, 3. Rows 1-2: (10+11+12)+(20+21+22), 13+23.
        assert_eq!(merged, vec![3.0, 3.0, 96.0, 36.0]);
        assert_eq!(merged.iter().sum::<f64>(), matrix.iter().sum::<f64>());
    }

    #[test]
    fn mean_averages_the_blocks() {
        let (matrix, a, b) = example();
        let merged = merge_matrix(&matrix, 3, 4, &a, &b, WordMerge::Mean);
        // Block sizes 1·3, 1·1, 2·3, 2·1.
        assert_eq!(merged, vec![1.0, 3.0, 16.0, 18.0]);
    }

    #[test]
    fn single_token_words_leave_the_matrix_as_it_is() {
        let (matrix, _, _) = example();
        let (a, b) = (words(&[&[0], &[1], &[2]]), words(&[&[0], &[1], &[2], &[3]]));
        for merge in [WordMerge::Sum, WordMerge::Mean] {
            assert_eq!(merge_matrix(&matrix, 3, 4, &a, &b, merge), matrix);
        }
    }

    #[test]
    fn merge_names_round_trip() {
        for merge in [WordMerge::Sum, WordMerge::Mean] {
            assert_eq!(merge.name().parse::<WordMerge>().ok(), Some(merge));
        }
        let err = "max".parse::<WordMerge>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--word-merge") && err.contains("`max`"), "{err}");
    }

    fn tokenized(tokens: &[&str], words: &[Option<u32>], offsets: &[(usize, usize)]) -> Tokenized {
        Tokenized {
            ids: (0..tokens.len() as u32).collect(),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            truncated_from: None,
            words: words.to_vec(),
            offsets: offsets.to_vec(),
            prompt_length: None,
        }
    }

    #[test]
    fn words_group_consecutive_word_ids_and_slice_the_text() {
        let text = "Hé guitar";
        let t = tokenized(
            &["[CLS]", "he", "gu", "##itar", "[SEP]"],
            &[None, Some(0), Some(1), Some(1), None],
            &[(0, 0), (0, 3), (4, 6), (6, 10), (0, 0)],
        );
        let w = words_of(&t, text);
        assert_eq!(w.labels, ["[CLS]", "Hé", "guitar", "[SEP]"]);
        assert_eq!(w.tokens, vec![vec![0], vec![1], vec![2, 3], vec![4]]);
    }

    #[test]
    fn bad_offsets_fall_back_to_the_token_strings() {
        // Out of range, inside a multi-byte character, and missing altogether.
        let t = tokenized(&["ab", "cd", "e"], &[Some(0), Some(1), Some(2)], &[(0, 40), (1, 2)]);
        let w = words_of(&t, "é");
        assert_eq!(w.labels, ["ab", "cd", "e"]);
        assert_eq!(w.tokens, vec![vec![0], vec![1], vec![2]]);
    }
}
