//! Writes a trained exact model as a sentence-transformers folder: the original folder's
//! configuration and tokenizer files, `model.safetensors` with the trained weights under the
//! checkpoint's own names (Q, K and V split back out of the stacked projection; tensors
//! training does not touch, such as a pooler, copied as they were), the Pooling module, and
//! `modules.json` with the shifted-reference marker between the Transformer and the Pooling.
//! The folder is assembled under a temporary name and renamed into place.

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::model::{SentenceModel, SHIFTED_REFERENCE_MODULE};
use crate::params::{EncoderParams, HostTensor, LayerSlot, LinearPart, NormPart, Slot};

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

/// A layer slot for a part of a dense layer or a norm.
type LinearSlot = fn(LinearPart) -> LayerSlot;
type NormSlot = fn(NormPart) -> LayerSlot;

/// Each checkpoint name (without a family prefix) training writes, with its slot and the
/// range of that slot's values it holds.
pub fn trained_names(model: &SentenceModel) -> Vec<(String, Slot, std::ops::Range<usize>)> {
    let arch = model.config.architecture;
    let h = model.config.hidden_size;
    let mut names = Vec::new();
    let e = arch.embedding_names();
    names.push((format!("{}.weight", e.word), Slot::WordEmbeddings, 0..usize::MAX));
    names.push((format!("{}.weight", e.position), Slot::PositionEmbeddings, 0..usize::MAX));
    if let Some(types) = e.token_type {
        names.push((format!("{types}.weight"), Slot::TokenTypeEmbeddings, 0..usize::MAX));
    }
    names.push((format!("{}.weight", e.norm), Slot::EmbeddingNorm(NormPart::Gamma), 0..usize::MAX));
    names.push((format!("{}.bias", e.norm), Slot::EmbeddingNorm(NormPart::Beta), 0..usize::MAX));
    for l in 0..model.config.num_layers {
        let n = arch.layer_names(l);
        for (k, base) in [&n.query, &n.key, &n.value].into_iter().enumerate() {
            names.push((
                format!("{base}.weight"),
                Slot::Layer(l, LayerSlot::Qkv(LinearPart::Weight)),
                k * h * h..(k + 1) * h * h,
            ));
            names.push((format!("{base}.bias"), Slot::Layer(l, LayerSlot::Qkv(LinearPart::Bias)), k * h..(k + 1) * h));
        }
        let linears: [(&String, LinearSlot); 3] = [
            (&n.attention_out, LayerSlot::AttentionOut),
            (&n.ffn_in, LayerSlot::FfnIn),
            (&n.ffn_out, LayerSlot::FfnOut),
        ];
        for (base, slot) in linears {
            names.push((format!("{base}.weight"), Slot::Layer(l, slot(LinearPart::Weight)), 0..usize::MAX));
            names.push((format!("{base}.bias"), Slot::Layer(l, slot(LinearPart::Bias)), 0..usize::MAX));
        }
        let norms: [(&String, NormSlot); 2] =
            [(&n.attention_norm, LayerSlot::AttentionNorm), (&n.ffn_norm, LayerSlot::FfnNorm)];
        for (base, slot) in norms {
            names.push((format!("{base}.weight"), Slot::Layer(l, slot(NormPart::Gamma)), 0..usize::MAX));
            names.push((format!("{base}.bias"), Slot::Layer(l, slot(NormPart::Beta)), 0..usize::MAX));
        }
    }
    if let Some(name) = arch.relative_bias_name() {
        names.push((format!("{name}.weight"), Slot::RelativeBias, 0..usize::MAX));
    }
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
            Some((_, slot, range)) => {
                written.insert(*slot);
                let values = params.get(*slot).ok_or_else(|| Error::Internal(format!("no parameter {slot:?}")))?.data();
                let values = &values[range.start..range.end.min(values.len())];
                tensors.push((full.clone(), Dtype::F32, view.shape().to_vec(), bytemuck::cast_slice(values).to_vec()));
            }
            None => tensors.push((full.clone(), view.dtype(), view.shape().to_vec(), view.data().to_vec())),
        }
    }
    // A trained tensor with no name in the checkpoint would be silently dropped.
    if let Some(slot) = params.slots().into_iter().find(|slot| !written.contains(slot)) {
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
    if model.normalize {
        std::fs::create_dir_all(staging.join("2_Normalize")).map_err(write_error(&staging))?;
        modules.push(serde_json::json!({"idx": 3, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
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
