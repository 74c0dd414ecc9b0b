//! Training checkpoints: the weights, the optimiser's moments and where the run stands, written
//! atomically at the end of every epoch so that a killed run resumes from the last one. A
//! checkpoint is a folder `checkpoint-epoch-N/` (`state.safetensors` + `state.json`), written
//! under a temporary name and renamed into place; `latest` names the newest, replaced by a
//! rename too. A crash at any moment leaves the previous checkpoint whole.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::adamw::AdamW;
use crate::error::{Error, Result};
use crate::output::files::write_atomic;
use crate::params::{EncoderParams, HostTensor};

/// Where a run stands after an epoch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// Epochs finished.
    pub epochs_done: u64,
    /// Optimiser updates taken.
    pub steps_taken: u64,
    /// The options that must not change on resume (the model, data, objective, …), as text.
    pub fingerprint: String,
    /// One entry per finished epoch.
    pub history: Vec<serde_json::Value>,
}

const LATEST: &str = "latest";

pub fn save(dir: &Path, params: &EncoderParams<HostTensor>, optimiser: &AdamW, state: &RunState) -> Result<PathBuf> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    let name = format!("checkpoint-epoch-{}", state.epochs_done);
    let target = dir.join(&name);
    let staging = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(write_error(&staging))?;

    let slots = params.slots();
    let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for (n, slot) in slots.iter().enumerate() {
        let t = params.get(*slot).ok_or_else(|| Error::Internal(format!("no parameter {slot:?}")))?;
        for (kind, values) in
            [("param", t.data()), ("m", &optimiser.first_moments[n]), ("v", &optimiser.second_moments[n])]
        {
            tensors.push((format!("{kind}.{slot:?}"), bytemuck::cast_slice(values).to_vec(), vec![values.len()]));
        }
    }
    let views = tensors
        .iter()
        .map(|(name, bytes, shape)| Ok((name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| Error::Internal(format!("checkpoint tensors: {e}")))?;
    let bytes = safetensors::tensor::serialize(views, None).map_err(|e| Error::Internal(format!("checkpoint: {e}")))?;
    std::fs::write(staging.join("state.safetensors"), bytes).map_err(write_error(&staging))?;
    let json = serde_json::to_string_pretty(state).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(staging.join("state.json"), json).map_err(write_error(&staging))?;
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&staging, &target).map_err(write_error(&target))?;
    write_atomic(&dir.join(LATEST), name.as_bytes())?;
    // Older checkpoints are no longer needed once `latest` names the new one.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().to_string();
            if file_name.starts_with("checkpoint-epoch-") && file_name != name {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(target)
}

/// The newest checkpoint under `dir`, if any: loads it into `params` and `optimiser`.
pub fn load_latest(
    dir: &Path,
    params: &mut EncoderParams<HostTensor>,
    optimiser: &mut AdamW,
) -> Result<Option<RunState>> {
    let latest = dir.join(LATEST);
    if !latest.is_file() {
        return Ok(None);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let name = std::fs::read_to_string(&latest).map_err(io(&latest))?;
    let folder = dir.join(name.trim());
    let json_path = folder.join("state.json");
    let state: RunState = crate::model::folder::read_json(&json_path, "a training checkpoint")?;
    let tensors_path = folder.join("state.safetensors");
    let bytes = std::fs::read(&tensors_path).map_err(io(&tensors_path))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::BadSafetensors { path: tensors_path.clone(), message: e.to_string() })?;
    let read = |name: String, into: &mut [f32]| -> Result<()> {
        let view =
            file.tensor(&name).map_err(|_| Error::MissingTensor { path: tensors_path.clone(), name: name.clone() })?;
        if view.dtype() != Dtype::F32 || view.data().len() != into.len() * 4 {
            return Err(Error::TensorShape {
                path: tensors_path.clone(),
                name,
                expected: vec![into.len()],
                found: view.shape().to_vec(),
            });
        }
        for (v, b) in into.iter_mut().zip(view.data().chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    };
    let slots = params.slots();
    for (n, slot) in slots.iter().enumerate() {
        let t = params.get_mut(*slot).ok_or_else(|| Error::Internal(format!("no parameter {slot:?}")))?;
        read(format!("param.{slot:?}"), t.data_mut())?;
        read(format!("m.{slot:?}"), &mut optimiser.first_moments[n])?;
        read(format!("v.{slot:?}"), &mut optimiser.second_moments[n])?;
    }
    optimiser.steps_taken = state.steps_taken;
    Ok(Some(state))
}
