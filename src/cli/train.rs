//! `simattr train`: fine-tunes a sentence-transformers model into an exact model (shifted
//! reference, `e(r) = 0`), so that its attributions add up to the score itself.

use std::path::PathBuf;
use std::process::ExitCode;

use simattr::train::data::ScoreScale;
use simattr::train::objective::Objective;
use simattr::train::run::{train, TrainObserver, TrainOptions};

#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    model: super::ModelArg,
    /// Training pairs: JSONL (`a`, `b`, `score`), or CSV/TSV with a header naming the columns
    /// a, b, score. Without --distill every pair needs a score, in [0, 1] or in [0, 5] (see
    /// --score-scale).
    #[arg(long, value_name = "FILE")]
    pairs: PathBuf,
    /// Pairs to evaluate on after each epoch (same format) [default: --dev-fraction of --pairs,
    /// held out by a seeded shuffle].
    #[arg(long, value_name = "FILE")]
    dev: Option<PathBuf>,
    /// The share of --pairs held out for evaluation when there is no --dev.
    #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
    dev_fraction: f64,
    /// No labels: the targets are the given model's own scores on the pairs (its cosine, or
    /// its dot product with --objective dot), so the exact model keeps its behaviour.
    #[arg(long)]
    distill: bool,
    /// The scores' scale: 1 (in [0, 1], used as they are), 5 (in [0, 5], STS-benchmark's
    /// scale, divided by 5), or auto (5 if any score is above 1, else 1).
    #[arg(long, default_value = "auto", value_name = "auto|1|5")]
    score_scale: String,
    /// cos: sentence-transformers' CosineSimilarityLoss (MSE on the cosine); dot: the same on
    /// the dot product.
    #[arg(long, default_value = "cos", value_name = "cos|dot")]
    objective: String,
    /// Pairs per update.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 1)]
    epochs: u64,
    /// AdamW's peak learning rate.
    #[arg(long, default_value_t = 2e-5)]
    lr: f64,
    /// Linear warm-up over this share of all updates (the papers' train.py: 0.1), then linear
    /// decay to 0.
    #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
    warmup: f64,
    /// AdamW's decoupled weight decay (not on biases and LayerNorms).
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Clip the gradient's global norm to this; 0 turns clipping off.
    #[arg(long, default_value_t = 1.0, value_name = "NORM")]
    max_grad_norm: f64,
    /// Dropout on the embeddings, the attention probabilities and each block's output, as
    /// sentence-transformers trains; 0 turns it off.
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    /// Seeds the data order, the dev split and the dropout masks.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the file order instead of shuffling each epoch.
    #[arg(long)]
    no_shuffle: bool,
    /// Where the exact model goes (a sentence-transformers folder).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Checkpoints, one per epoch [default: OUT.checkpoints beside --out].
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Continue from the last checkpoint of an interrupted run with the same options.
    #[arg(long)]
    resume: bool,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    /// Dev pairs explained after each epoch, to report the completeness error and the
    /// reference terms (which an exact model has at zero).
    #[arg(long, default_value_t = 3, value_name = "N")]
    explain_pairs: usize,
}

/// The progress bar and the epoch summaries on stderr.
struct Console {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl TrainObserver for Console {
    fn note(&self, message: &str) {
        eprintln!("{message}");
    }
    fn epoch_started(&self, epoch: u64, epochs: u64, batches: u64) {
        let bar = indicatif::ProgressBar::new(batches);
        let template = "epoch {prefix} [{bar:30}] {pos}/{len} batches · {msg} ({elapsed}, eta {eta})";
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }
    fn batch_done(&self, loss: f64, pairs_per_second: f64) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            bar.set_message(format!("loss {loss:.5} · {pairs_per_second:.1} pairs/s"));
            bar.inc(1);
        }
    }
    fn epoch_done(&self, summary: &serde_json::Value) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
        let number = |key: &str| summary[key].as_f64().map_or("-".to_string(), |v| format!("{v:.4}"));
        let worst = |key: &str| {
            let pairs = summary["explained_dev_pairs"].as_array().cloned().unwrap_or_default();
            let values = pairs.iter().flat_map(|p| match &p[key] {
                serde_json::Value::Array(items) => items.iter().filter_map(|v| v.as_f64()).collect(),
                value => value.as_f64().into_iter().collect::<Vec<_>>(),
            });
            values.fold(0.0f64, |m, v| m.max(v.abs()))
        };
        let epoch = summary["epoch"].as_u64().unwrap_or(0);
        let head = if epoch == 0 { "before training".to_string() } else { format!("epoch {epoch}") };
        let rate = summary["pairs_per_second"].as_f64().map_or(String::new(), |r| format!(" · {r:.1} pairs/s"));
        eprintln!(
            "{head}: train loss {} · dev Spearman {} (with the given model's scores {}) · explained dev pairs: |Σ A − score| ≤ {:.1e}, reference terms ≤ {:.1e}{rate}",
            number("train_loss"),
            number("dev_spearman"),
            number("dev_spearman_with_given_model"),
            worst("completeness_error"),
            worst("reference_terms"),
        );
    }
}

pub fn run(args: TrainArgs, threads: Option<usize>) -> anyhow::Result<ExitCode> {
    if args.model.truncate_dim.is_some() {
        // An exact model is trained on whole embeddings; a truncation is asked for when it is used.
        return Err(simattr::Error::argument(
            "--truncate-dim",
            "train fits the whole embedding; truncate when explaining",
        )
        .into());
    }
    let model_dir = simattr::model::cache::resolve_model(args.model.model.as_deref()).map_err(anyhow::Error::msg)?;
    let checkpoint_dir = args.checkpoint_dir.clone().unwrap_or_else(|| {
        let name = args.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        args.out.with_file_name(format!("{name}.checkpoints"))
    });
    let options = TrainOptions {
        model_dir,
        pairs: args.pairs,
        dev: args.dev,
        dev_fraction: args.dev_fraction,
        distill: args.distill,
        score_scale: args.score_scale.parse::<ScoreScale>()?,
        objective: args.objective.parse::<Objective>()?,
        batch_size: args.batch_size,
        epochs: args.epochs,
        lr: args.lr,
        warmup: args.warmup,
        weight_decay: args.weight_decay,
        max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm),
        dropout: args.dropout,
        seed: args.seed,
        shuffle: !args.no_shuffle,
        out: args.out.clone(),
        checkpoint_dir,
        resume: args.resume,
        force: args.force,
        threads: threads.unwrap_or_else(simattr::backend::BackendSettings::default_threads),
        explain_pairs: args.explain_pairs,
    };
    train(&options, &Console { bar: std::sync::Mutex::new(None) })?;
    eprintln!("wrote the exact model to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
