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
    if config.architecture == Architecture::T5 {
        return load_t5(&reader, config);
    }
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
    let relative_attention_bias = relative_bias(&reader, config)?;
    Ok(EncoderParams { embeddings, layers, relative_attention_bias, final_norm: None, heads: Vec::new() })
}

/// The relative position bias table `[buckets, heads]`, where the family has one.
fn relative_bias(reader: &TensorReader<'_>, config: &EncoderConfig) -> Result<Option<HostTensor>> {
    match (config.architecture.relative_bias_name(), config.relative_buckets) {
        (Some(name), Some(buckets)) => {
            Ok(Some(reader.get(&format!("{name}.weight"), &[buckets.buckets, config.num_heads])?))
        }
        _ => Ok(None),
    }
}

/// T5's encoder: the token table (`shared`, or the encoder's own copy of it), layers without
/// biases (zeros), RMSNorm weights without a shift (zeros), the gated feed-forward's two input
/// projections stacked `[wi_0 | wi_1]` (gate, then up), the final norm and the first layer's
/// relative bias table.
fn load_t5(reader: &TensorReader<'_>, config: &EncoderConfig) -> Result<EncoderParams<HostTensor>> {
    let (h, ffn) = (config.hidden_size, config.intermediate_size);
    let word = match reader.has("shared.weight") {
        true => reader.get("shared.weight", &[config.vocab_size, h])?,
        false => reader.get("encoder.embed_tokens.weight", &[config.vocab_size, h])?,
    };
    let embeddings = EmbeddingParams { word, position: None, token_type: None, norm: None };
    let layers = (0..config.num_layers)
        .map(|l| {
            let n = config.architecture.layer_names(l);
            let parts = [
                reader.weight_only(&n.query, h, h)?,
                reader.weight_only(&n.key, h, h)?,
                reader.weight_only(&n.value, h, h)?,
            ];
            let ffn_in = match config.ffn_gated {
                true => stack_outputs(&[
                    reader.weight_only(&format!("{}_0", n.ffn_in), h, ffn)?,
                    reader.weight_only(&format!("{}_1", n.ffn_in), h, ffn)?,
                ]),
                false => reader.weight_only(&n.ffn_in, h, ffn)?,
            };
            Ok(LayerParams {
                qkv: stack_outputs(&parts),
                attention_out: reader.weight_only(&n.attention_out, h, h)?,
                attention_norm: reader.scale_only(&n.attention_norm, h)?,
                ffn_in,
                ffn_out: reader.weight_only(&n.ffn_out, ffn, h)?,
                ffn_norm: reader.scale_only(&n.ffn_norm, h)?,
            })
        })
        .collect::<Result<_>>()?;
    let relative_attention_bias = relative_bias(reader, config)?;
    Ok(EncoderParams {
        embeddings,
        layers,
        relative_attention_bias,
        final_norm: Some(reader.scale_only("encoder.final_layer_norm", h)?),
        heads: Vec::new(),
    })
}

/// A sentence-transformers Dense module's weights (`linear.weight` `[out, in]`, and
/// `linear.bias` where `bias` is set; zeros where it is not) from its folder's
/// `model.safetensors`.
pub fn load_dense(path: &Path, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear<HostTensor>> {
    let io_error = |source| Error::Io { path: path.to_path_buf(), source };
    let bytes = std::fs::read(path).map_err(io_error)?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::BadSafetensors { path: path.to_path_buf(), message: e.to_string() })?;
    let read = |name: &str, shape: &[usize]| -> Result<HostTensor> {
        let missing = || Error::MissingTensor { path: path.to_path_buf(), name: name.to_string() };
        let view = file.tensor(name).map_err(|_| missing())?;
        if view.shape() != shape {
            return Err(Error::TensorShape {
                path: path.to_path_buf(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        Ok(HostTensor::new(shape.to_vec(), to_f32(path, name, view.dtype(), view.data())?))
    };
    let weight = read("linear.weight", &[out_dim, in_dim])?;
    let bias = match bias {
        true => read("linear.bias", &[out_dim])?,
        false => HostTensor::new(vec![out_dim], vec![0.0; out_dim]),
    };
    Ok(Linear { weight, bias, in_dim, out_dim })
}

/// A tensor's values as f32, from its little-endian f32, f16 or bf16 bytes.
fn to_f32(path: &Path, name: &str, dtype: Dtype, raw: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => {
            return Err(Error::TensorDtype {
                path: path.to_path_buf(),
                name: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    })
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
        // Unaligned in the file (or a big-endian machine, or narrower floats): one copy into
        // aligned memory.
        Ok(HostTensor::new(shape, to_f32(&self.path, full, view.dtype(), raw)?))
    }

    fn linear(&self, base: &str, in_dim: usize, out_dim: usize) -> Result<Linear<HostTensor>> {
        Ok(Linear {
            weight: self.get(&format!("{base}.weight"), &[out_dim, in_dim])?,
            bias: self.get(&format!("{base}.bias"), &[out_dim])?,
            in_dim,
            out_dim,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// A dense layer stored without a bias (T5's), its bias zeros.
    fn weight_only(&self, base: &str, in_dim: usize, out_dim: usize) -> Result<Linear<HostTensor>> {
        Ok(Linear {
            weight: self.get(&format!("{base}.weight"), &[out_dim, in_dim])?,
            bias: HostTensor::new(vec![out_dim], vec![0.0; out_dim]),
            in_dim,
            out_dim,
        })
    }

    /// An RMSNorm's scale, its (unread) shift zeros.
    fn scale_only(&self, base: &str, width: usize) -> Result<Norm<HostTensor>> {
        Ok(Norm {
            gamma: self.get(&format!("{base}.weight"), &[width])?,
            beta: HostTensor::new(vec![width], vec![0.0; width]),
        })
    }

    fn norm(&self, base: &str, width: usize) -> Result<Norm<HostTensor>> {
        Ok(Norm {
            gamma: self.get(&format!("{base}.weight"), &[width])?,
            beta: self.get(&format!("{base}.bias"), &[width])?,
        })
    }
}
