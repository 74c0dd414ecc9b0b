//! Pieces of the command line that several commands share: the attribution options of
//! `explain` and `batch`, and the progress bars.

pub mod batch;
pub mod train;

use simattr::attribution::words::WordMerge;
use simattr::attribution::{Similarity, TextOptions};
use simattr::session::SessionOptions;

/// Everything that decides how a pair is attributed, the same for `explain` and `batch`.
#[derive(clap::Args)]
pub struct AttributionArgs {
    /// Layer whose input is attributed (0 = embedding output).
    #[arg(long, default_value_t = 0)]
    layer: usize,
    /// Model evaluations per text, for every rule (at most 100000; the gauss-legendre rules
    /// 1000).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Quadrature rule: riemann-right (as xsbert), trapezoid (N − 1 intervals),
    /// gauss-legendre, or gauss-legendre-adaptive (Gauss–Legendre panels fitted to each
    /// text's path, narrow where it is sharp, from cheap one-tangent probes made first).
    #[arg(long, default_value = "riemann-right", value_name = "RULE")]
    rule: String,
    /// integrated-jacobians (the method), or decomposition: xsbert's baseline, the output
    /// token states' dot products over T_a·T_b (mean pooling; no layer, steps or mode).
    #[arg(long, default_value = "integrated-jacobians", value_name = "METHOD")]
    method: String,
    /// cos (as xsbert: A scaled by 1/(|e(a)||e(b)|)), dot, or cos-exact (through the normalization).
    #[arg(long, default_value = "cos")]
    similarity: String,
    /// forward (one tangent per token; the cheaper while tokens < embedding dimensions),
    /// reverse (one cotangent per embedding dimension, xsbert's way), or auto (per text, the
    /// one with less arithmetic).
    #[arg(long, default_value = "auto", value_name = "forward|reverse|auto")]
    mode: String,
    /// Also give the attributions word by word (`words_a`, `words_b`, `word_attributions` in
    /// the JSON): the sub-word tokens of each word, by the tokenizer's own word ids, merged.
    #[arg(long)]
    words: bool,
    /// How --words merges a word pair's token pairs: sum (completeness still holds) or mean
    /// (as xsbert's evaluation does).
    #[arg(long, default_value = "sum", value_name = "sum|mean", requires = "words")]
    word_merge: String,
}

/// The parsed attribution options.
pub struct Attribution {
    pub options: TextOptions,
    pub similarity: Similarity,
    pub word_merge: Option<WordMerge>,
}

impl AttributionArgs {
    pub fn parse(&self) -> anyhow::Result<Attribution> {
        // --word-merge is checked even without --words.
        let merge = self.word_merge.as_str();
        let parsed = SessionOptions::parse(
            self.layer,
            self.steps,
            &self.rule,
            &self.method,
            &self.similarity,
            &self.mode,
            Some(merge),
        )?;
        let word_merge = parsed.word_merge.filter(|_| self.words);
        Ok(Attribution { options: parsed.options, similarity: parsed.similarity, word_merge })
    }
}

/// A progress bar on stderr for long work.
pub fn progress_bar(message: &'static str) -> indicatif::ProgressBar {
    bar_with("{msg} [{bar:30}] {percent:>3}% ({elapsed}, eta {eta})", message, 0)
}

/// A progress bar on stderr that counts `total` pairs, with their rate.
pub fn pairs_bar(total: usize) -> indicatif::ProgressBar {
    bar_with("{msg} [{bar:30}] {pos}/{len} pairs ({per_sec}, {elapsed}, eta {eta})", "explaining", total as u64)
}

fn bar_with(template: &str, message: &'static str, length: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(message);
    bar
}
