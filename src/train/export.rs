//! Writes a trained exact model as a sentence-transformers folder: the original folder's
//! configuration and tokenizer files, `model.safetensors` with the trained weights under the
//! checkpoint's own names (Q, K and V split back out of the stacked projection; tensors
//! training does not touch, such as a pooler, copied as they were), the Pooling module, the
//! Dense modules with their trained weights and Normalize where the model has them, and
//! `modules.json` with the shifted-reference marker between the Transformer and the Pooling.
//! The folder is assembled under a temporary name and renamed into place.

use std::ops::Range;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::model::weights::DENSE_WEIGHT;
use crate::model::{Architecture, SentenceModel, SHIFTED_REFERENCE_MODULE};
use crate::params::{EncoderParams, HostTensor, LayerSlot, LinearPart, LinearSlot, NormPart, NormSlot, Slot};

/// Files of a Transformer folder that are not copied: weights in every format (the trained
/// ones are written anew) and the module list (written anew).
const NOT_COPIED: [&str; 8] = [
    "model.safetensors",
    "pytorch_model.bin",
    "tf_model.h5",
    "flax_model.msgpack",
    "rust_model.ot",
    "model.onnx",
    "modules.json",
    "README.md",
];

/// Which values of a slot one checkpoint tensor holds, in order: one range for most; one per
/// key or value head where grouped-query heads were repeated at load (each head's first copy).
pub type Pieces = Vec<Range<usize>>;

fn one(range: Range<usize>) -> Pieces {
    std::iter::once(range).collect()
}

/// The values `pieces` select from a slot's `values`, in order.
pub fn gather<T: Copy>(values: &[T], pieces: &Pieces) -> Vec<T> {
    pieces.iter().flat_map(|r| &values[r.start.min(values.len())..r.end.min(values.len())]).copied().collect()
}

/// A checkpoint name (without a family prefix), the slot it is trained in, and its values there.
pub type TrainedName = (String, Slot, Pieces);

/// Each checkpoint name training writes, with its slot and the pieces of that slot's values
/// it holds: the names the loader read (`model::weights`), for every slot the weights train
/// (`EncoderParams::slots`; the biases and shifts a family lacks are not among them).
pub fn trained_names(model: &SentenceModel) -> Vec<TrainedName> {
    let (config, params) = (&model.config, &model.params);
    let arch = config.architecture;
    let whole = || one(0..usize::MAX);
    let mut names: Vec<TrainedName> = Vec::new();
    let norm = |names: &mut Vec<TrainedName>, base: &str, slot: fn(NormPart) -> Slot| {
        names.push((format!("{base}.weight"), slot(NormPart::Gamma), whole()));
        names.push((format!("{base}.bias"), slot(NormPart::Beta), whole()));
    };
    let e = arch.embedding_names();
    names.push((format!("{}.weight", e.word), Slot::WordEmbeddings, whole()));
    if arch == Architecture::T5 {
        // Tied to `shared`; written too where a checkpoint stores both.
        names.push(("encoder.embed_tokens.weight".into(), Slot::WordEmbeddings, whole()));
    }
    let tables = [(e.position, Slot::PositionEmbeddings), (e.token_type, Slot::TokenTypeEmbeddings)];
    for (name, slot) in tables.into_iter().filter_map(|(name, slot)| Some((name?, slot))) {
        names.push((format!("{name}.weight"), slot, whole()));
    }
    if let Some(base) = &e.norm {
        norm(&mut names, base, Slot::EmbeddingNorm);
    }
    let (heads, kv_heads, d) = (config.num_heads, config.num_kv_heads.max(1), config.head_dim());
    for (l, layer) in params.layers.iter().enumerate() {
        let n = arch.layer_names(l);
        let at = |slot: LayerSlot| Slot::Layer(l, slot);
        let linear = |names: &mut Vec<TrainedName>, base: &str, slot: LinearSlot, rows: Pieces, in_dim: usize| {
            let weights = rows.iter().map(|r| r.start.saturating_mul(in_dim)..r.end.saturating_mul(in_dim)).collect();
            names.push((format!("{base}.weight"), at(slot(LinearPart::Weight)), weights));
            names.push((format!("{base}.bias"), at(slot(LinearPart::Bias)), rows));
        };
        let hidden = layer.qkv.in_dim;
        if n.query == n.key {
            // Stored stacked, as the layer runs it.
            linear(&mut names, &n.query, LayerSlot::Qkv, whole(), hidden);
        } else {
            let width = heads * d;
            let group = heads / kv_heads;
            for (k, base) in [&n.query, &n.key, &n.value].into_iter().enumerate() {
                let start = k * width;
                let rows = match k {
                    0 => one(0..width),
                    // Each key/value head's first copy (`weights::repeat_heads`).
                    _ => (0..kv_heads).map(|g| start + g * group * d..start + (g * group + 1) * d).collect(),
                };
                linear(&mut names, base, LayerSlot::Qkv, rows, hidden);
            }
        }
        linear(&mut names, &n.attention_out, LayerSlot::AttentionOut, whole(), layer.attention_out.in_dim);
        let ffn = layer.ffn_out.in_dim;
        let ffn_in: Vec<String> = match (arch, config.ffn_gated, &n.ffn_up) {
            (Architecture::T5, true, _) => vec![format!("{}_0", n.ffn_in), format!("{}_1", n.ffn_in)],
            (_, _, Some(up)) => vec![n.ffn_in.clone(), up.clone()],
            _ => vec![n.ffn_in.clone()],
        };
        match ffn_in.len() {
            1 => linear(&mut names, &ffn_in[0], LayerSlot::FfnIn, whole(), hidden),
            _ => {
                for (k, base) in ffn_in.iter().enumerate() {
                    linear(&mut names, base, LayerSlot::FfnIn, one(k * ffn..(k + 1) * ffn), hidden);
                }
            }
        }
        linear(&mut names, &n.ffn_out, LayerSlot::FfnOut, whole(), ffn);
        let mut norms: Vec<(&String, NormSlot)> =
            vec![(&n.attention_norm, LayerSlot::AttentionNorm), (&n.ffn_norm, LayerSlot::FfnNorm)];
        if let Some([query, key]) = &n.head_norms {
            norms.extend([(query, LayerSlot::QueryNorm as NormSlot), (key, LayerSlot::KeyNorm)]);
        }
        if let Some([attention, ffn]) = &n.post_norms {
            norms.extend([(attention, LayerSlot::PostAttentionNorm as NormSlot), (ffn, LayerSlot::PostFfnNorm)]);
        }
        for (base, slot) in norms {
            names.push((format!("{base}.weight"), at(slot(NormPart::Gamma)), whole()));
            names.push((format!("{base}.bias"), at(slot(NormPart::Beta)), whole()));
        }
    }
    if let Some(base) = arch.final_norm_name() {
        norm(&mut names, base, Slot::FinalNorm);
    }
    if let Some(name) = arch.relative_bias_name() {
        names.push((format!("{name}.weight"), Slot::RelativeBias, whole()));
    }
    // Each Dense module's weight, under its module folder (written to that folder's own
    // `model.safetensors` as `linear.weight`).
    for (n, module) in model.dense.iter().enumerate() {
        names.push((format!("{}/{DENSE_WEIGHT}", module.path), Slot::Dense(n), whole()));
    }
    let trained = params.slots();
    names.retain(|(_, slot, _)| trained.contains(slot));
    names
}

/// The trained weights under the original checkpoint's names, as safetensors bytes.
fn weights_file(model: &SentenceModel, params: &EncoderParams<HostTensor>) -> Result<Vec<u8>> {
    let original_path = model.encoder_dir.join("model.safetensors");
    let original = std::fs::read(&original_path).map_err(|source| Error::Io { path: original_path.clone(), source })?;
    let file = safetensors::SafeTensors::deserialize(&original)
        .map_err(|e| Error::BadSafetensors { path: original_path.clone(), message: e.to_string() })?;
    let trained = trained_names(model);
    let prefixes = model.config.architecture.name_prefixes();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut written = std::collections::HashSet::new();
    for (full, view) in file.tensors() {
        let short = prefixes.iter().find_map(|p| full.strip_prefix(p)).unwrap_or(&full);
        match trained.iter().find(|(name, ..)| name == short) {
            Some((_, slot, pieces)) => {
                written.insert(*slot);
                let values = params.get(*slot).ok_or_else(|| Error::Internal(format!("no parameter {slot:?}")))?.data();
                let values = gather(values, pieces);
                let expected: usize = view.shape().iter().product();
                if values.len() != expected {
                    return Err(Error::Internal(format!(
                        "the trained {slot:?} gives {} values for `{full}`, which holds {expected}",
                        values.len()
                    )));
                }
                tensors.push((full.clone(), Dtype::F32, view.shape().to_vec(), bytemuck::cast_slice(&values).to_vec()));
            }
            None => tensors.push((full.clone(), view.dtype(), view.shape().to_vec(), view.data().to_vec())),
        }
    }
    // A trained tensor with no name in the checkpoint would be silently dropped (the Dense
    // modules' are written to their own folders).
    let elsewhere = |slot: &Slot| matches!(slot, Slot::Dense(_));
    if let Some(slot) = params.slots().into_iter().find(|slot| !written.contains(slot) && !elsewhere(slot)) {
        return Err(Error::Internal(format!(
            "the trained tensor {slot:?} has no name in {} to be written under",
            original_path.display()
        )));
    }
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| Ok((name.clone(), TensorView::new(*dtype, shape.clone(), bytes)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| Error::Internal(format!("trained weights: {e}")))?;
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| Error::Internal(format!("trained weights: {e}")))
}

/// Dense module `n`'s trained weight as its `model.safetensors`: `linear.weight`, `[out, in]`,
/// f32 (the module has no bias).
fn dense_file(params: &EncoderParams<HostTensor>, n: usize) -> Result<Vec<u8>> {
    let linear = params.heads.get(n).ok_or_else(|| Error::Internal(format!("no weights for Dense module {n}")))?;
    let values = linear.weight.data();
    if values.len() != linear.in_dim * linear.out_dim {
        return Err(Error::Internal(format!(
            "Dense module {n}: {} values for [{}, {}]",
            values.len(),
            linear.out_dim,
            linear.in_dim
        )));
    }
    let shape = vec![linear.out_dim, linear.in_dim];
    let view = TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(values))
        .map_err(|e| Error::Internal(format!("Dense module {n}: {e}")))?;
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::tensor::serialize([(DENSE_WEIGHT, view)], Some(metadata))
        .map_err(|e| Error::Internal(format!("Dense module {n}: {e}")))
}

/// Writes the exact model to `out` (which must not exist, or is replaced when `replace`).
/// `training_record` is saved beside it as `simattr_training.json`.
pub fn write_exact_model(
    model: &SentenceModel,
    params: &EncoderParams<HostTensor>,
    out: &Path,
    replace: bool,
    training_record: &serde_json::Value,
) -> Result<()> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    // Made before anything is written, so that a weight with no name leaves nothing behind.
    let weights = weights_file(model, params)?;
    let dense = (0..model.dense.len()).map(|n| dense_file(params, n)).collect::<Result<Vec<_>>>()?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let staging = out.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(staging.join("1_Pooling")).map_err(write_error(&staging))?;
    let copy = |from: &Path, to: &Path| std::fs::copy(from, to).map(|_| ()).map_err(write_error(to));
    let entries = std::fs::read_dir(&model.encoder_dir)
        .map_err(|source| Error::Io { path: model.encoder_dir.clone(), source })?;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && !NOT_COPIED.contains(&file_name.as_str()) {
            copy(&entry.path(), &staging.join(&file_name))?;
        }
    }
    copy(&model.pooling_dir.join("config.json"), &staging.join("1_Pooling/config.json"))?;
    std::fs::write(staging.join("model.safetensors"), weights).map_err(write_error(&staging))?;
    let mut modules = vec![
        serde_json::json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        serde_json::json!({"idx": 1, "name": "shifted_reference", "path": "", "type": SHIFTED_REFERENCE_MODULE}),
        serde_json::json!({"idx": 2, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    // The Dense modules in order as `k_Dense` from 2 (their configs as they were, their
    // trained weights), then Normalize.
    for (n, (module, bytes)) in model.dense.iter().zip(dense).enumerate() {
        let (k, path) = (n + 2, format!("{}_Dense", n + 2));
        std::fs::create_dir_all(staging.join(&path)).map_err(write_error(&staging))?;
        copy(&model.path.join(&module.path).join("config.json"), &staging.join(&path).join("config.json"))?;
        std::fs::write(staging.join(&path).join("model.safetensors"), bytes).map_err(write_error(&staging))?;
        let entry = serde_json::json!({"idx": k + 1, "name": k.to_string(), "path": path, "type": "sentence_transformers.models.Dense"});
        modules.push(entry);
    }
    if model.normalize {
        let k = model.dense.len() + 2;
        let path = format!("{k}_Normalize");
        std::fs::create_dir_all(staging.join(&path)).map_err(write_error(&staging))?;
        let entry = serde_json::json!({"idx": k + 1, "name": k.to_string(), "path": path, "type": "sentence_transformers.models.Normalize"});
        modules.push(entry);
    }
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    std::fs::write(staging.join("modules.json"), pretty(&serde_json::Value::Array(modules)))
        .map_err(write_error(&staging))?;
    std::fs::write(staging.join("simattr_training.json"), pretty(training_record)).map_err(write_error(&staging))?;
    if out.exists() {
        if !replace {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Error::argument("--out", format!("{} exists (pass --force to replace it)", out.display())));
        }
        std::fs::remove_dir_all(out).map_err(write_error(out))?;
    }
    std::fs::rename(&staging, out).map_err(write_error(out))
}
