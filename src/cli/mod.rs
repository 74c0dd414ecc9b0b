//! The commands, one module each, and what several of them share: the model argument, the
//! attribution options of `explain` and `batch`, the value parsers, the progress bars.

pub mod batch;
pub mod convergence;
pub mod embed;
pub mod explain;
pub mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use simattr::attribution::words::WordMerge;
use simattr::attribution::{Progress, Similarity, TextOptions};
use simattr::backend::{parse_memory, Precision};
use simattr::model::{cache, SentenceModel};
use simattr::session::SessionOptions;

#[derive(clap::Args)]
pub struct ModelArg {
    /// sentence-transformers model folder, or the name of a model in the cache
    /// (all-MiniLM-L6-v2, all-mpnet-base-v2: fetch with `scripts/fetch_model.sh NAME`; cache at
    /// $SIMATTR_CACHE or ~/.cache/simattr) [default: all-MiniLM-L6-v2]
    #[arg(long, value_name = "DIR|NAME")]
    pub model: Option<PathBuf>,
    /// Keep the first K dimensions of the embedding (Matryoshka models): embeddings as
    /// `encode(truncate_dim=K)` returns them, and attributions of the truncated embedding.
    #[arg(long, value_name = "K")]
    pub truncate_dim: Option<usize>,
}

pub fn load_model(arg: &ModelArg) -> anyhow::Result<SentenceModel> {
    let dir = cache::resolve_model(arg.model.as_deref()).map_err(anyhow::Error::msg)?;
    let mut model = SentenceModel::load(&dir)?;
    model.truncate_dim = arg.truncate_dim;
    Ok(model)
}

/// The process ends right after: handing hundreds of MB of weights and activations back to the
/// allocator piece by piece would only delay the exit (~0.1 s for MPNet), so the OS takes them.
pub fn leave_to_exit<T>(big: T) {
    std::mem::forget(big);
}

/// `--primal`: the precisions a primal can be kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Primal {
    F64,
    F32,
}

impl From<Primal> for Precision {
    fn from(primal: Primal) -> Precision {
        match primal {
            Primal::F64 => Precision::F64,
            Primal::F32 => Precision::F32,
        }
    }
}

/// A byte count (`--max-memory`, `--cache-memory`): 512M, 2G, 1.5GiB, 1000000.
pub fn memory_size(text: &str) -> Result<usize, String> {
    parse_memory(text).map_err(|_| format!("`{text}` is not a size (examples: 512M, 2G, 1.5GiB)"))
}

/// `simattr devices`: the GPUs each built GPU backend finds.
pub fn devices() -> ExitCode {
    #[cfg(feature = "wgpu")]
    {
        println!("wgpu (--backend wgpu --device N):");
        let adapters = simattr::backend::wgpu::describe_adapters();
        if adapters.is_empty() {
            println!("no GPU adapter (wgpu found none: install a Vulkan, Metal or DX12 driver)");
        }
        adapters.iter().for_each(|line| println!("{line}"));
    }
    #[cfg(feature = "cuda")]
    {
        println!("cuda (--backend cuda --device N):");
        match simattr::backend::cuda::describe_devices() {
            Ok(devices) if devices.is_empty() => println!("no GPU (the CUDA driver finds none)"),
            Ok(devices) => devices.iter().for_each(|line| println!("{line}")),
            Err(e) => println!("{}", e.to_string().trim_start_matches("CUDA: ")),
        }
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    println!("this simattr is built for the CPU only (without the wgpu and cuda features)");
    ExitCode::SUCCESS
}

/// Comma-separated values of one flag, none empty or repeated (`convergence --rules, --steps`).
pub fn parse_list<T: std::str::FromStr + PartialEq>(flag: &str, list: &str) -> anyhow::Result<Vec<T>> {
    let mut items = Vec::new();
    for item in list.split(',').map(str::trim) {
        let value = item.parse::<T>().map_err(|_| anyhow::anyhow!("{flag}: `{item}` is not valid in `{list}`"))?;
        if items.contains(&value) {
            anyhow::bail!("{flag}: `{item}` is listed twice");
        }
        items.push(value);
    }
    Ok(items)
}

/// Everything that decides how a pair is attributed, the same for `explain` and `batch`.
#[derive(clap::Args)]
pub struct AttributionArgs {
    /// Layer whose input is attributed (0 = embedding output) [default: the last layer, where
    /// an off-the-shelf model's attributions are the most reliable and the cheapest].
    #[arg(long)]
    layer: Option<usize>,
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
    /// The prompt put before text a: a name from the model's config_sentence_transformers.json
    /// (`query`, `document`, …) or the prompt's text. Its tokens are attributed with the text's.
    #[arg(long, value_name = "NAME|TEXT")]
    prompt_a: Option<String>,
    /// The prompt put before text b (as --prompt-a).
    #[arg(long, value_name = "NAME|TEXT")]
    prompt_b: Option<String>,
}

/// The parsed attribution options.
pub struct Attribution {
    /// The options with `--layer`'s default (the last layer) not yet settled: `options_for`.
    pub session: SessionOptions,
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
        let prompts = [self.prompt_a.clone(), self.prompt_b.clone()];
        Ok(Attribution { similarity: parsed.similarity, word_merge, session: SessionOptions { prompts, ..parsed } })
    }
}

impl Attribution {
    /// The options for the model `encoder` runs, its last layer where `--layer` is not given.
    pub fn options_for<B: simattr::backend::Backend>(&self, encoder: &simattr::net::Encoder<'_, B>) -> TextOptions {
        self.session.resolve_layer(encoder.num_layers())
    }
}

/// A progress bar on stderr, as the library's `Progress` sees it.
pub struct Bar(pub indicatif::ProgressBar);

impl Progress for Bar {
    fn add_work(&self, units: u64) {
        self.0.inc_length(units);
    }
    fn advance(&self, units: u64) {
        self.0.inc(units);
    }
}

/// A progress bar on stderr for long work.
pub fn progress_bar(message: &'static str) -> Bar {
    Bar(bar_with("{msg} [{bar:30}] {percent:>3}% ({elapsed}, eta {eta})", message, 0))
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
