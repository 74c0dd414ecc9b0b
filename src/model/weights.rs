//! Reads `model.safetensors` into host tensors, converting f16/bf16 to f32 and checking every
//! shape against `config.json`, so a mismatched checkpoint fails with the tensor's name
//! instead of producing wrong numbers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::{Dtype, SafeTensors};

use super::arch::Architecture;
use super::config::EncoderConfig;
use crate::error::{Error, Result};
use crate::params::{EmbeddingParams, EncoderParams, HostTensor, LayerParams, Linear, Norm};

pub fn load_encoder_params(path: &Path, config: &EncoderConfig) -> Result<EncoderParams<HostTensor>> {
    let io_error = |source| Error::Io { path: path.to_path_buf(), source };
    let handle = std::fs::File::open(path).map_err(io_error)?;
    // SAFETY: the map is read-only; f32 tensors are read in place from it for as long as the
    // host tensors live. A process truncating the file meanwhile could make a read fault; that
    // is the accepted cost of mapping (safetensors' own loaders do the same) against copying
    // 100s of MB first.
    let map: Arc<memmap2::Mmap> = Arc::new(unsafe { memmap2::Mmap::map(&handle) }.map_err(io_error)?);
    let file = SafeTensors::deserialize(&map[..])
        .map_err(|e| Error::BadSafetensors { path: path.to_path_buf(), message: e.to_string() })?;
    let reader = TensorReader::new(path, map.clone(), &file, config.architecture);
    let h = config.hidden_size;
    let names = config.architecture.embedding_names();
    let embeddings = EmbeddingParams {
        word: reader.get(&format!("{}.weight", names.word), &[config.vocab_size, h])?,
        position: Some(reader.get(&format!("{}.weight", names.position), &[config.max_position_embeddings, h])?),
        token_type: match names.token_type {
            Some(name) => Some(reader.get(&format!("{name}.weight"), &[config.type_vocab_size, h])?),
            None => None,
        },
        norm: Some(reader.norm(&names.norm, h)?),
    };
    let ffn = config.intermediate_size;
    let layers = (0..config.num_layers)
        .map(|l| {
            let n = config.architecture.layer_names(l);
            let parts = [reader.linear(&n.query, h, h)?, reader.linear(&n.key, h, h)?, reader.linear(&n.value, h, h)?];
            Ok(LayerParams {
                qkv: stack_outputs(&parts),
                attention_out: reader.linear(&n.attention_out, h, h)?,
                attention_norm: reader.norm(&n.attention_norm, h)?,
                ffn_in: reader.linear(&n.ffn_in, h, ffn)?,
                ffn_out: reader.linear(&n.ffn_out, ffn, h)?,
                ffn_norm: reader.norm(&n.ffn_norm, h)?,
            })
        })
        .collect::<Result<_>>()?;
    let relative_attention_bias = match (config.architecture.relative_bias_name(), config.relative_buckets) {
        (Some(name), Some(buckets)) => {
            Some(reader.get(&format!("{name}.weight"), &[buckets.buckets, config.num_heads])?)
        }
        _ => None,
    };
    Ok(EncoderParams { embeddings, layers, relative_attention_bias, final_norm: None, heads: Vec::new() })
}

/// One layer computing all of `parts` at once: weights stacked along the output dimension,
/// so its output row is the parts' outputs side by side.
fn stack_outputs(parts: &[Linear<HostTensor>]) -> Linear<HostTensor> {
    let out_dim = parts.iter().map(|p| p.out_dim).sum();
    let in_dim = parts[0].in_dim;
    let weight = parts.iter().flat_map(|p| p.weight.data().iter().copied()).collect();
    let bias = parts.iter().flat_map(|p| p.bias.data().iter().copied()).collect();
    Linear {
        weight: HostTensor::new(vec![out_dim, in_dim], weight),
        bias: HostTensor::new(vec![out_dim], bias),
        in_dim,
        out_dim,
    }
}

struct TensorReader<'a> {
    path: PathBuf,
    /// The mapped file, which aligned f32 tensors are read from in place.
    map: Arc<memmap2::Mmap>,
    file: &'a SafeTensors<'a>,
    /// Checkpoint name without any family prefix → name in the file.
    names: HashMap<String, String>,
}

impl<'a> TensorReader<'a> {
    fn new(path: &Path, map: Arc<memmap2::Mmap>, file: &'a SafeTensors<'a>, arch: Architecture) -> Self {
        let names = file
            .names()
            .into_iter()
            .map(|full| {
                let short = arch.name_prefixes().iter().find_map(|p| full.strip_prefix(p)).unwrap_or(full);
                (short.to_string(), full.to_string())
            })
            .collect();
        TensorReader { path: path.to_path_buf(), map, file, names }
    }

    fn get(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let missing = || Error::MissingTensor { path: self.path.clone(), name: name.to_string() };
        let full = self.names.get(name).ok_or_else(missing)?;
        let view = self.file.tensor(full).map_err(|_| missing())?;
        if view.shape() != expected {
            return Err(Error::TensorShape {
                path: self.path.clone(),
                name: full.clone(),
                expected: expected.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let (raw, shape) = (view.data(), expected.to_vec());
        if view.dtype() == Dtype::F32 {
            let start = raw.as_ptr() as usize - self.map.as_ptr() as usize;
            if let Some(tensor) = HostTensor::mapped(shape.clone(), self.map.clone(), start..start + raw.len()) {
                return Ok(tensor);
            }
        }
        let data = match view.dtype() {
            // Unaligned in the file (or a big-endian machine): one copy into aligned memory.
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => {
                return Err(Error::TensorDtype {
                    path: self.path.clone(),
                    name: full.clone(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        Ok(HostTensor::new(shape, data))
    }

    fn linear(&self, base: &str, in_dim: usize, out_dim: usize) -> Result<Linear<HostTensor>> {
        Ok(Linear {
            weight: self.get(&format!("{base}.weight"), &[out_dim, in_dim])?,
            bias: self.get(&format!("{base}.bias"), &[out_dim])?,
            in_dim,
            out_dim,
        })
    }

    fn norm(&self, base: &str, width: usize) -> Result<Norm<HostTensor>> {
        Ok(Norm {
            gamma: self.get(&format!("{base}.weight"), &[width])?,
            beta: self.get(&format!("{base}.bias"), &[width])?,
        })
    }
}
