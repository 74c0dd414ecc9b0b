//! The training run: data, targets, epochs of AdamW steps with dropout, an evaluation after
//! each epoch, checkpoints, resume, and the exact model written at the end.
//!
//! Reproducibility: the data order of epoch `e` comes from `rng::stream(seed, [ORDER, e])` and
//! the dropout masks of update `k` from `rng::stream(seed, [DROPOUT, k])`, so a resumed run
//! takes exactly the steps the uninterrupted run would have taken.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use super::adamw::{AdamW, AdamWConfig};
use super::checkpoint::{self, RunState};
use super::data::{read_labelled_pairs, split_dev, LabelledPair, ScoreScale, ScoresWanted};
use super::metrics::spearman;
use super::objective::Objective;
use super::rng::{self, SplitMix64};
use super::step::{loss_and_gradients, PairIds};
use crate::attribution::quadrature::{Quadrature, Rule};
use crate::attribution::text::TextOptions;
use crate::attribution::{explain_pair, Similarity};
use crate::backend::cpu::CpuBackend;
use crate::backend::{BackendSettings, Precision};
use crate::error::{Error, Result};
use crate::model::SentenceModel;
use crate::net::backprop::{MaskSource, TrainingNet};
use crate::net::pooling::Pool;
use crate::net::Encoder;
use crate::params::{EncoderParams, HostTensor};

const ORDER_STREAM: u64 = u64::from_le_bytes(*b"order\0\0\0");
const DROPOUT_STREAM: u64 = u64::from_le_bytes(*b"dropout\0");

/// Everything `simattr train` is told.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub model_dir: PathBuf,
    pub pairs: PathBuf,
    /// A dev file; without one, `dev_fraction` of the pairs are held out.
    pub dev: Option<PathBuf>,
    pub dev_fraction: f64,
    /// Targets from the unshifted model's own scores instead of labels.
    pub distill: bool,
    pub score_scale: ScoreScale,
    pub objective: Objective,
    pub batch_size: usize,
    pub epochs: u64,
    pub lr: f64,
    /// Warm-up as a fraction of all updates (rounded up).
    pub warmup: f64,
    pub weight_decay: f64,
    pub max_grad_norm: Option<f64>,
    pub dropout: f64,
    pub seed: u64,
    pub shuffle: bool,
    pub out: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub resume: bool,
    pub force: bool,
    pub threads: usize,
    /// Dev pairs explained after each epoch to report the completeness error.
    pub explain_pairs: usize,
}

/// What the run reports as it goes (the CLI draws a progress bar from it).
pub trait TrainObserver {
    fn note(&self, message: &str);
    fn epoch_started(&self, epoch: u64, epochs: u64, batches: u64);
    fn batch_done(&self, loss: f64, pairs_per_second: f64);
    fn epoch_done(&self, summary: &serde_json::Value);
}

/// The whole run's record, also saved as `simattr_training.json` in the model folder.
pub struct TrainReport {
    pub record: serde_json::Value,
}

struct Dropout {
    rate: f64,
    scale: f32,
    rng: SplitMix64,
}

impl MaskSource for Dropout {
    fn mask(&mut self, len: usize) -> Vec<f32> {
        // Dropped when a uniform 64-bit draw falls below rate · 2⁶⁴.
        let threshold = (self.rate * 2f64.powi(64)) as u64;
        (0..len).map(|_| if self.rng.next_u64() < threshold { 0.0 } else { self.scale }).collect()
    }
}

/// Token ids of every pair, with the objective's targets.
struct Prepared {
    train: Vec<PairIds>,
    dev: Vec<PairIds>,
    truncated: usize,
}

/// Token ids of every pair; the label is the score (NaN until distillation sets it).
fn tokenize(model: &SentenceModel, pairs: &[LabelledPair], truncated: &mut usize) -> Result<Vec<PairIds>> {
    pairs
        .iter()
        .map(|p| {
            let mut encode = |text: &str| -> Result<Vec<u32>> {
                let tokens = model
                    .tokenizer
                    .encode(text)
                    .map_err(|e| Error::argument("--pairs", format!("line {}: {e}", p.line)))?;
                *truncated += tokens.truncated_from.is_some() as usize;
                Ok(tokens.ids)
            };
            Ok(PairIds { a: encode(&p.a)?, b: encode(&p.b)?, label: p.score.unwrap_or(f64::NAN) })
        })
        .collect()
}

/// Every distinct text's embedding under `encoder`, in packed batches.
fn embed_all(encoder: &Encoder<'_, CpuBackend>, texts: &[&[u32]]) -> Result<HashMap<Vec<u32>, Vec<f64>>> {
    let mut distinct: Vec<&[u32]> = texts.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let mut out = HashMap::with_capacity(distinct.len());
    for chunk in distinct.chunks(64) {
        let texts: Vec<(&[u32], Pool)> = chunk.iter().map(|&ids| (ids, encoder.pool_all())).collect();
        for (ids, e) in chunk.iter().zip(encoder.embed_packed(&texts)?) {
            out.insert(ids.to_vec(), e);
        }
    }
    Ok(out)
}

/// The objective's score of every pair under `encoder`.
fn scores(encoder: &Encoder<'_, CpuBackend>, pairs: &[PairIds], objective: Objective) -> Result<Vec<f64>> {
    let texts: Vec<&[u32]> = pairs.iter().flat_map(|p| [p.a.as_slice(), p.b.as_slice()]).collect();
    let embeddings = embed_all(encoder, &texts)?;
    Ok(pairs.iter().map(|p| objective.score_with_grad(&embeddings[&p.a], &embeddings[&p.b]).0).collect())
}

fn similarity(objective: Objective) -> Similarity {
    match objective {
        Objective::Cos => Similarity::Cos,
        Objective::Dot => Similarity::Dot,
    }
}

pub fn train(options: &TrainOptions, observer: &dyn TrainObserver) -> Result<TrainReport> {
    let o = options;
    if o.batch_size == 0 {
        return Err(Error::argument("--batch-size", "must be at least 1"));
    }
    if o.epochs == 0 {
        return Err(Error::argument("--epochs", "must be at least 1"));
    }
    if !(0.0..1.0).contains(&o.dropout) {
        return Err(Error::argument("--dropout", format!("{} is not in [0, 1)", o.dropout)));
    }
    if !(0.0..1.0).contains(&o.dev_fraction) {
        return Err(Error::argument("--dev-fraction", format!("{} is not in [0, 1)", o.dev_fraction)));
    }
    if !(0.0..=1.0).contains(&o.warmup) {
        return Err(Error::argument("--warmup", format!("{} is not in [0, 1]", o.warmup)));
    }
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return Err(Error::argument("--lr", format!("{} is not a positive learning rate", o.lr)));
    }
    if o.out.exists() && !o.force {
        return Err(Error::argument("--out", format!("{} exists (pass --force to replace it)", o.out.display())));
    }
    let model = SentenceModel::load(&o.model_dir)?;
    // Before any work: the shift reaches the embedding through linear Dense modules only.
    model.dense.iter().try_for_each(|module| module.check_linear("training an exact model"))?;
    let wanted = if o.distill { ScoresWanted::Ignored } else { ScoresWanted::Required };
    let pairs = read_labelled_pairs(&o.pairs, o.score_scale, wanted)?;
    let (train_pairs, dev_pairs) = match &o.dev {
        Some(dev) => (pairs, read_labelled_pairs(dev, o.score_scale, wanted)?),
        None => split_dev(pairs, o.dev_fraction, o.seed),
    };
    let mut truncated = 0;
    let (train_ids, dev_ids) =
        (tokenize(&model, &train_pairs, &mut truncated)?, tokenize(&model, &dev_pairs, &mut truncated)?);
    if truncated > 0 {
        observer.note(&format!(
            "{truncated} texts are longer than the model's {} tokens and were truncated",
            model.max_seq_length
        ));
    }

    let settings =
        BackendSettings { threads: o.threads.max(1), primal: Some(Precision::F32), ..BackendSettings::default() };
    let backend = CpuBackend::new(settings)?;
    let net = TrainingNet::of_model(&backend, &model)?;
    let mut data = Prepared { train: train_ids, dev: dev_ids, truncated };
    // The model as given (unshifted, unless it is an exact model already): the distillation
    // targets, and the dev scores to compare with.
    let original = Encoder::new(&backend, &model)?;
    let original_dev = scores(&original, &data.dev, o.objective)?;
    if o.distill {
        observer.note("distillation: the targets are the given model's own scores");
        let train_targets = scores(&original, &data.train, o.objective)?;
        data.train.iter_mut().zip(train_targets).for_each(|(p, t)| p.label = t);
        data.dev.iter_mut().zip(&original_dev).for_each(|(p, &t)| p.label = t);
    }
    let dev_targets: Vec<f64> = data.dev.iter().map(|p| p.label).collect();
    drop(original);

    let batches_per_epoch = data.train.len().div_ceil(o.batch_size) as u64;
    let total_steps = batches_per_epoch * o.epochs;
    let config = AdamWConfig {
        lr: o.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: o.weight_decay,
        max_grad_norm: o.max_grad_norm,
        warmup_steps: (o.warmup * total_steps as f64).ceil() as u64,
        total_steps,
    };
    let fingerprint = format!(
        "weights {} · pairs {} ({} train, {} dev) · {} · batch {} · epochs {} · lr {} · warm-up {} · decay {} · clip {:?} · dropout {} · seed {} · shuffle {} · distill {}",
        model.weights_sha256,
        o.pairs.display(),
        data.train.len(),
        data.dev.len(),
        o.objective.name(),
        o.batch_size,
        o.epochs,
        o.lr,
        config.warmup_steps,
        o.weight_decay,
        o.max_grad_norm,
        o.dropout,
        o.seed,
        o.shuffle,
        o.distill
    );

    let mut params: EncoderParams<HostTensor> = model.params.clone();
    let mut optimiser = AdamW::new(config, &params);
    let mut state = RunState { epochs_done: 0, steps_taken: 0, fingerprint: fingerprint.clone(), history: vec![] };
    if o.resume {
        match checkpoint::load_latest(&o.checkpoint_dir, &mut params, &mut optimiser)? {
            Some(saved) if saved.fingerprint != fingerprint => {
                return Err(Error::argument(
                    "--resume",
                    format!(
                        "the checkpoint in {} is of another run:\n  checkpoint: {}\n  this run:   {}",
                        o.checkpoint_dir.display(),
                        saved.fingerprint,
                        fingerprint
                    ),
                ))
            }
            Some(saved) => {
                observer.note(&format!("resuming after epoch {} ({} updates)", saved.epochs_done, saved.steps_taken));
                state = saved;
            }
            None => {
                observer.note(&format!("no checkpoint in {}: starting from the beginning", o.checkpoint_dir.display()))
            }
        }
    }

    // The optimiser's element-wise update runs on --threads workers too.
    let update_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(backend.threads())
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the optimiser's threads: {e}")))?;
    let framing = model.tokenizer.reference_framing();
    // The epoch's figures, or `None` when the weights no longer give finite scores (a run can
    // diverge in its last update of an epoch with a finite loss).
    let evaluate = |params: &EncoderParams<HostTensor>, epoch: u64| -> Result<Option<serde_json::Value>> {
        let exact = Encoder::with_params(&backend, &model, params, true)?;
        let dev_scores = scores(&exact, &data.dev, o.objective)?;
        if dev_scores.iter().any(|s| !s.is_finite()) {
            return Ok(None);
        }
        let mut explained = Vec::new();
        let options = TextOptions::new(model.config.num_layers - 1, Quadrature::new(Rule::GaussLegendre, 16)?);
        for pair in dev_pairs.iter().take(o.explain_pairs) {
            let e = explain_pair(&exact, &model.tokenizer, &pair.a, &pair.b, &options, similarity(o.objective), &())?;
            let r = e.pair.reference_terms;
            explained.push(json!({
                "score": e.pair.score,
                "attribution_sum": e.pair.attribution_sum,
                "completeness_error": (e.pair.attribution_sum - e.pair.score).abs(),
                "reference_terms": [r.reference_a_b, r.a_reference_b, r.reference_a_reference_b],
            }));
        }
        Ok(Some(json!({
            "epoch": epoch,
            "dev_spearman": spearman(&dev_scores, &dev_targets),
            "dev_spearman_with_given_model": spearman(&dev_scores, &original_dev),
            "explained_dev_pairs": explained,
        })))
    };

    let mut record = json!({
        "simattr_version": env!("CARGO_PKG_VERSION"),
        "base_model": model.path.display().to_string(),
        "base_weights_sha256": model.weights_sha256,
        "pairs": o.pairs.display().to_string(),
        "train_pairs": data.train.len(),
        "dev_pairs": data.dev.len(),
        "truncated_texts": data.truncated,
        "objective": o.objective.name(),
        "distill": o.distill,
        "batch_size": o.batch_size,
        "epochs": o.epochs,
        "lr": o.lr,
        "warmup_steps": config.warmup_steps,
        "total_steps": total_steps,
        "weight_decay": o.weight_decay,
        "max_grad_norm": o.max_grad_norm,
        "dropout": o.dropout,
        "seed": o.seed,
        "threads": backend.threads(),
        "dev_spearman_given_model": spearman(&original_dev, &dev_targets),
    });
    if state.epochs_done == 0 && state.history.is_empty() {
        let before = evaluate(&params, 0)?.ok_or_else(|| Error::Unsupported {
            path: model.path.clone(),
            message: "the model gives non-finite scores before any training".into(),
        })?;
        observer.epoch_done(&before);
        state.history.push(before);
    }

    for epoch in state.epochs_done..o.epochs {
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        if o.shuffle {
            rng::stream(o.seed, &[ORDER_STREAM, epoch]).shuffle(&mut order);
        }
        observer.epoch_started(epoch + 1, o.epochs, batches_per_epoch);
        let started = Instant::now();
        let (mut pairs_done, mut loss_sum) = (0usize, 0.0);
        for batch in order.chunks(o.batch_size) {
            let pairs: Vec<PairIds> = batch.iter().map(|&n| data.train[n].clone()).collect();
            let mut dropout = Dropout {
                rate: o.dropout,
                scale: (1.0 / (1.0 - o.dropout)) as f32,
                rng: rng::stream(o.seed, &[DROPOUT_STREAM, optimiser.steps_taken]),
            };
            let source: Option<&mut dyn MaskSource> = (o.dropout > 0.0).then_some(&mut dropout as &mut dyn MaskSource);
            let mut step = loss_and_gradients(&net, &params, framing, &pairs, o.objective, source)?;
            let step_number = optimiser.steps_taken + 1;
            let diverged = |what: String| Error::Diverged {
                epoch: epoch + 1,
                step: step_number,
                what,
                checkpoint: (state.epochs_done > 0).then(|| o.checkpoint_dir.clone()),
            };
            if !step.loss.is_finite() {
                return Err(diverged(format!("the loss is {}", step.loss)));
            }
            let updated = update_pool.install(|| optimiser.update(&mut params, &mut step.grads));
            updated.map_err(|e| diverged(e.to_string()))?;
            pairs_done += pairs.len();
            loss_sum += step.loss * pairs.len() as f64;
            observer.batch_done(step.loss, pairs_done as f64 / started.elapsed().as_secs_f64().max(1e-9));
        }
        let seconds = started.elapsed().as_secs_f64();
        let Some(mut summary) = evaluate(&params, epoch + 1)? else {
            return Err(Error::Diverged {
                epoch: epoch + 1,
                step: optimiser.steps_taken,
                what: "after it the dev pairs' scores are not finite".into(),
                checkpoint: (state.epochs_done > 0).then(|| o.checkpoint_dir.clone()),
            });
        };
        summary["train_loss"] = json!(loss_sum / pairs_done.max(1) as f64);
        summary["seconds"] = json!(seconds);
        summary["pairs_per_second"] = json!(pairs_done as f64 / seconds.max(1e-9));
        observer.epoch_done(&summary);
        state.history.push(summary);
        state.epochs_done = epoch + 1;
        state.steps_taken = optimiser.steps_taken;
        checkpoint::save(&o.checkpoint_dir, &params, &optimiser, &state)?;
        if std::env::var_os("SIMATTR_TRAIN_ABORT_AFTER_EPOCH")
            .is_some_and(|v| v.to_string_lossy() == (epoch + 1).to_string())
        {
            // For the resume test: dies like a killed process, right after the checkpoint.
            std::process::abort();
        }
    }
    record["history"] = json!(state.history);
    super::export::write_exact_model(&model, &params, &o.out, o.force, &record)?;
    Ok(TrainReport { record })
}
