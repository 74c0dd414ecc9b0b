//! Reads `model.safetensors` into host tensors, converting f16/bf16 to f32 and checking every
//! shape against `config.json`, so a mismatched checkpoint fails with the tensor's name
//! instead of producing wrong numbers.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::{Dtype, SafeTensors};

use super::arch::Architecture;
use super::config::EncoderConfig;
use crate::error::{Error, Result};
use crate::params::{
    EmbeddingParams, EncoderParams, HeadNorms, HostTensor, LayerParams, LayerSlot, Linear, LinearPart, LinearSlot,
    Norm, NormPart, NormSlot, RepeatedHeads, ScaleStorage, Slot,
};

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
    let mut params = match config.architecture {
        Architecture::T5 => load_t5(&reader, config),
        Architecture::Qwen3 | Architecture::Gemma3 => load_qwen3_gemma3(&reader, config),
        Architecture::ModernBert => load_modernbert(&reader, config),
        Architecture::NomicBert | Architecture::JinaBert => load_nomic_jina(&reader, config),
        Architecture::Bert | Architecture::Mpnet | Architecture::Roberta | Architecture::XlmRoberta => {
            load_bert_like(&reader, config)
        }
    }?;
    params.absent = absent_slots(config, params.layers.len());
    let group = config.num_heads / config.num_kv_heads.max(1);
    params.repeated_heads =
        (group > 1).then_some(RepeatedHeads { kv_heads: config.num_kv_heads, group, dim: config.head_dim() });
    Ok(params)
}

/// The tensors a family's checkpoint does not hold, which its loader fills with zeros (biases,
/// shifts) or the identity (ModernBERT's first attention norm): `EncoderParams::absent`.
fn absent_slots(config: &EncoderConfig, layers: usize) -> HashSet<Slot> {
    let arch = config.architecture;
    // T5's, Qwen3's and Gemma's layers are read without biases or shifts whatever the
    // configuration says of them; QK-norm and the sandwich norms are RMSNorms everywhere.
    let rms_layers = matches!(arch, Architecture::T5 | Architecture::Qwen3 | Architecture::Gemma3);
    let b = config.biases;
    let (attention, mlp_in, mlp_out) = match arch {
        Architecture::T5 => (false, false, false),
        _ => (b.attention, b.mlp_in, b.mlp_out),
    };
    let shifts = b.norm && !rms_layers;
    let mut absent = HashSet::new();
    if !shifts {
        absent.extend([Slot::EmbeddingNorm(NormPart::Beta), Slot::FinalNorm(NormPart::Beta)]);
    }
    for l in 0..layers {
        let biases: [(bool, LinearSlot); 4] = [
            (attention, LayerSlot::Qkv),
            (attention, LayerSlot::AttentionOut),
            (mlp_in, LayerSlot::FfnIn),
            (mlp_out, LayerSlot::FfnOut),
        ];
        absent.extend(
            biases.into_iter().filter(|(stored, _)| !stored).map(|(_, slot)| Slot::Layer(l, slot(LinearPart::Bias))),
        );
        let rms_only: [NormSlot; 4] =
            [LayerSlot::QueryNorm, LayerSlot::KeyNorm, LayerSlot::PostAttentionNorm, LayerSlot::PostFfnNorm];
        absent.extend(rms_only.map(|slot| Slot::Layer(l, slot(NormPart::Beta))));
        if !shifts {
            absent.extend(
                [LayerSlot::AttentionNorm, LayerSlot::FfnNorm].map(|slot| Slot::Layer(l, slot(NormPart::Beta))),
            );
        }
    }
    if arch == Architecture::ModernBert && layers > 0 {
        absent.extend([NormPart::Gamma, NormPart::Beta].map(|part| Slot::Layer(0, LayerSlot::AttentionNorm(part))));
    }
    absent
}

/// BERT, MPNet, RoBERTa and XLM-R: every dense layer with its bias, LayerNorms with shifts,
/// queries, keys and values stacked `[q | k | v]`.
fn load_bert_like(reader: &TensorReader<'_>, config: &EncoderConfig) -> Result<EncoderParams<HostTensor>> {
    let h = config.hidden_size;
    let names = config.architecture.embedding_names();
    let embeddings = EmbeddingParams {
        word: reader.get(&format!("{}.weight", names.word), &[config.vocab_size, h])?,
        position: names
            .position
            .map(|name| reader.get(&format!("{name}.weight"), &[config.max_position_embeddings, h]))
            .transpose()?,
        token_type: names
            .token_type
            .map(|name| reader.get(&format!("{name}.weight"), &[config.type_vocab_size, h]))
            .transpose()?,
        norm: names.norm.map(|name| reader.norm(&name, h)).transpose()?,
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
                head_norms: None,
                post_attention_norm: None,
                post_ffn_norm: None,
            })
        })
        .collect::<Result<_>>()?;
    let relative_attention_bias = relative_bias(reader, config)?;
    Ok(EncoderParams {
        embeddings,
        layers,
        relative_attention_bias,
        final_norm: None,
        heads: Vec::new(),
        norm_scales: ScaleStorage::Direct,
        repeated_heads: None,
        absent: HashSet::new(),
    })
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
    let shared = format!("{}.weight", config.architecture.embedding_names().word);
    let word = match reader.has(&shared) {
        true => reader.get(&shared, &[config.vocab_size, h])?,
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
                head_norms: None,
                post_attention_norm: None,
                post_ffn_norm: None,
            })
        })
        .collect::<Result<_>>()?;
    let relative_attention_bias = relative_bias(reader, config)?;
    Ok(EncoderParams {
        embeddings,
        layers,
        relative_attention_bias,
        final_norm: Some(reader.scale_only(final_norm_name(config)?, h)?),
        heads: Vec::new(),
        norm_scales: ScaleStorage::Direct,
        repeated_heads: None,
        absent: HashSet::new(),
    })
}

/// Qwen3's and Gemma 3's decoder layers (`layers.N.self_attn.*`, `layers.N.mlp.*`): queries,
/// keys and values stacked with each key and value head repeated for the query heads that
/// read it (`repeat_heads`), QK-norm, the gate and up projections stacked `[gate | up]`, the
/// final `norm`. Gemma's sandwich norms besides, and its scales stored as `w` (applied `1 + w`).
fn load_qwen3_gemma3(reader: &TensorReader<'_>, config: &EncoderConfig) -> Result<EncoderParams<HostTensor>> {
    let (h, ffn, d) = (config.hidden_size, config.intermediate_size, config.head_dim);
    let (heads, kv_heads) = (config.num_heads, config.num_kv_heads);
    let gemma = config.architecture == Architecture::Gemma3;
    let bias = config.biases.attention;
    let word =
        reader.get(&format!("{}.weight", config.architecture.embedding_names().word), &[config.vocab_size, h])?;
    let embeddings = EmbeddingParams { word, position: None, token_type: None, norm: None };
    let layers = (0..config.num_layers)
        .map(|l| {
            let n = config.architecture.layer_names(l);
            let kv = |base: &str| -> Result<Linear<HostTensor>> {
                Ok(repeat_heads(&reader.linear_with(base, h, kv_heads * d, bias)?, kv_heads, heads / kv_heads))
            };
            let qkv = stack_outputs(&[reader.linear_with(&n.query, h, heads * d, bias)?, kv(&n.key)?, kv(&n.value)?]);
            let ffn_in = stack_outputs(&[
                reader.linear_with(&n.ffn_in, h, ffn, config.biases.mlp_in)?,
                reader.linear_with(&second_ffn_in(reader, &n)?, h, ffn, config.biases.mlp_in)?,
            ]);
            let [query, key] = n.head_norms.as_ref().ok_or_else(|| missing_names(reader, "QK-norm"))?;
            let head_norms =
                HeadNorms { query: reader.scale_only(query, d)?, key: reader.scale_only(key, d)?, width: d };
            let sandwich =
                |which: usize| n.post_norms.as_ref().map(|names| reader.scale_only(&names[which], h)).transpose();
            Ok(LayerParams {
                qkv,
                attention_out: reader.linear_with(&n.attention_out, heads * d, h, bias)?,
                attention_norm: reader.scale_only(&n.attention_norm, h)?,
                ffn_in,
                ffn_out: reader.linear_with(&n.ffn_out, ffn, h, config.biases.mlp_out)?,
                ffn_norm: reader.scale_only(&n.ffn_norm, h)?,
                head_norms: Some(head_norms),
                post_attention_norm: sandwich(0)?,
                post_ffn_norm: sandwich(1)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(EncoderParams {
        embeddings,
        layers,
        relative_attention_bias: None,
        final_norm: Some(reader.scale_only(final_norm_name(config)?, h)?),
        heads: Vec::new(),
        norm_scales: if gemma { ScaleStorage::UnitOffset } else { ScaleStorage::Direct },
        repeated_heads: None,
        absent: HashSet::new(),
    })
}

/// ModernBERT (`embeddings.tok_embeddings`, `embeddings.norm`, `layers.N.attn.Wqkv` already
/// stacked `[q | k | v]`, `mlp.Wi` stacked `[activated | multiplier]`, `final_norm`). Its
/// first layer has no attention norm (`nn.Identity`): its block reads none, and the ones
/// filled in its place are never read.
fn load_modernbert(reader: &TensorReader<'_>, config: &EncoderConfig) -> Result<EncoderParams<HostTensor>> {
    let (h, ffn) = (config.hidden_size, config.intermediate_size);
    let biases = config.biases;
    let norm = |base: &str| reader.norm_with(base, h, biases.norm);
    let names = config.architecture.embedding_names();
    let embeddings = EmbeddingParams {
        word: reader.get(&format!("{}.weight", names.word), &[config.vocab_size, h])?,
        position: None,
        token_type: None,
        norm: names.norm.as_deref().map(norm).transpose()?,
    };
    let layers = (0..config.num_layers)
        .map(|l| {
            let n = config.architecture.layer_names(l);
            let attention_norm = match l {
                0 => {
                    Norm { gamma: HostTensor::new(vec![h], vec![1.0; h]), beta: HostTensor::new(vec![h], vec![0.0; h]) }
                }
                _ => norm(&n.attention_norm)?,
            };
            Ok(LayerParams {
                qkv: reader.linear_with(&n.query, h, 3 * h, biases.attention)?,
                attention_out: reader.linear_with(&n.attention_out, h, h, biases.attention)?,
                attention_norm,
                ffn_in: reader.linear_with(&n.ffn_in, h, 2 * ffn, biases.mlp_in)?,
                ffn_out: reader.linear_with(&n.ffn_out, ffn, h, biases.mlp_out)?,
                ffn_norm: norm(&n.ffn_norm)?,
                head_norms: None,
                post_attention_norm: None,
                post_ffn_norm: None,
            })
        })
        .collect::<Result<_>>()?;
    Ok(EncoderParams {
        embeddings,
        layers,
        relative_attention_bias: None,
        final_norm: Some(norm(final_norm_name(config)?)?),
        heads: Vec::new(),
        norm_scales: ScaleStorage::Direct,
        repeated_heads: None,
        absent: HashSet::new(),
    })
}

/// NomicBERT and JinaBERT: BERT's post-LN layers without a position table. Word and token-type
/// tables, then a LayerNorm (`emb_ln`; Jina's `embeddings.LayerNorm`). NomicBERT stacks
/// `attn.Wqkv` itself and gates its feed-forward with `mlp.fc12` (activated) times `mlp.fc11`,
/// stacked `[fc12 | fc11]`; JinaBERT has BERT's `query`/`key`/`value` and one
/// `mlp.gated_layers` already `[gate | multiplier]`.
fn load_nomic_jina(reader: &TensorReader<'_>, config: &EncoderConfig) -> Result<EncoderParams<HostTensor>> {
    let (h, ffn, biases) = (config.hidden_size, config.intermediate_size, config.biases);
    let nomic = config.architecture == Architecture::NomicBert;
    // jina-embeddings-v2-base-code's variant normalizes queries and keys (`layer_norm_q`, …)
    // and gates the other half: not the layer this loader describes.
    let extra = |name: &&String| {
        name.split_once(".attention.self.")
            .is_some_and(|(_, rest)| !["query.", "key.", "value."].iter().any(|p| rest.starts_with(p)))
    };
    if let Some(name) = reader.names.keys().find(extra).filter(|_| !nomic) {
        return Err(Error::Unsupported {
            path: reader.path.clone(),
            message: format!(
                "JinaBERT tensor `{name}`: a variant with more than query, key and value in its attention (only jina-embeddings-v2's layer)"
            ),
        });
    }
    let names = config.architecture.embedding_names();
    let embeddings = EmbeddingParams {
        word: reader.get(&format!("{}.weight", names.word), &[config.vocab_size, h])?,
        position: None,
        token_type: names
            .token_type
            .map(|name| reader.get(&format!("{name}.weight"), &[config.type_vocab_size, h]))
            .transpose()?,
        norm: names.norm.map(|name| reader.norm(&name, h)).transpose()?,
    };
    let layers = (0..config.num_layers)
        .map(|l| {
            let n = config.architecture.layer_names(l);
            let (qkv, ffn_in) = match nomic {
                true => {
                    let ffn_in = stack_outputs(&[
                        reader.linear_with(&n.ffn_in, h, ffn, biases.mlp_in)?,
                        reader.linear_with(&second_ffn_in(reader, &n)?, h, ffn, biases.mlp_in)?,
                    ]);
                    (reader.linear_with(&n.query, h, 3 * h, biases.attention)?, ffn_in)
                }
                false => {
                    let parts = [n.query.as_str(), &n.key, &n.value].map(|base| reader.linear(base, h, h));
                    let [q, k, v] = parts;
                    (stack_outputs(&[q?, k?, v?]), reader.linear_with(&n.ffn_in, h, 2 * ffn, biases.mlp_in)?)
                }
            };
            Ok(LayerParams {
                qkv,
                attention_out: reader.linear_with(&n.attention_out, h, h, biases.attention)?,
                attention_norm: reader.norm(&n.attention_norm, h)?,
                ffn_in,
                ffn_out: reader.linear_with(&n.ffn_out, ffn, h, biases.mlp_out)?,
                ffn_norm: reader.norm(&n.ffn_norm, h)?,
                head_norms: None,
                post_attention_norm: None,
                post_ffn_norm: None,
            })
        })
        .collect::<Result<_>>()?;
    Ok(EncoderParams {
        embeddings,
        layers,
        relative_attention_bias: None,
        final_norm: None,
        heads: Vec::new(),
        norm_scales: ScaleStorage::Direct,
        repeated_heads: None,
        absent: HashSet::new(),
    })
}

/// The final norm's name, for a family that has one.
fn final_norm_name(config: &EncoderConfig) -> Result<&'static str> {
    config.architecture.final_norm_name().ok_or_else(|| Error::Internal("a family without a final norm".into()))
}

/// The second input projection of a gated feed-forward stored apart (`LayerTensorNames::ffn_up`).
fn second_ffn_in(reader: &TensorReader<'_>, names: &super::arch::LayerTensorNames) -> Result<String> {
    names.ffn_up.clone().ok_or_else(|| missing_names(reader, "the feed-forward's second input projection"))
}

fn missing_names(reader: &TensorReader<'_>, what: &str) -> Error {
    Error::Internal(format!("{}: no tensor names for {what}", reader.path.display()))
}

/// A key or value projection of `kv_heads` heads with each head's rows repeated `group`
/// times in place, so that query head `h` finds key/value head `h / group` at its own index
/// (grouped-query attention run as plain multi-head attention over the same values).
fn repeat_heads(layer: &Linear<HostTensor>, kv_heads: usize, group: usize) -> Linear<HostTensor> {
    if group == 1 {
        return layer.clone();
    }
    let (in_dim, d) = (layer.in_dim, layer.out_dim / kv_heads);
    let (w, b) = (layer.weight.data(), layer.bias.data());
    let heads = (0..kv_heads).flat_map(|g| std::iter::repeat_n(g, group));
    let (mut weight, mut bias) = (Vec::new(), Vec::new());
    for g in heads {
        weight.extend_from_slice(&w[g * d * in_dim..(g + 1) * d * in_dim]);
        bias.extend_from_slice(&b[g * d..(g + 1) * d]);
    }
    let out_dim = layer.out_dim * group;
    Linear {
        weight: HostTensor::new(vec![out_dim, in_dim], weight),
        bias: HostTensor::new(vec![out_dim], bias),
        in_dim,
        out_dim,
    }
}

/// The weight's name in a Dense module's `model.safetensors` (`[out, in]`).
pub const DENSE_WEIGHT: &str = "linear.weight";

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
    let weight = read(DENSE_WEIGHT, &[out_dim, in_dim])?;
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

    /// A dense layer with its bias, or (`bias` false) without one, its bias zeros.
    fn linear_with(&self, base: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear<HostTensor>> {
        match bias {
            true => self.linear(base, in_dim, out_dim),
            false => self.weight_only(base, in_dim, out_dim),
        }
    }

    /// A LayerNorm with its shift, or (`bias` false) without one, its shift zeros.
    fn norm_with(&self, base: &str, width: usize, bias: bool) -> Result<Norm<HostTensor>> {
        match bias {
            true => self.norm(base, width),
            false => self.scale_only(base, width),
        }
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

    /// A norm stored without a shift (an RMSNorm, a LayerNorm without bias), its shift zeros.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_heads_repeat_for_the_query_heads_that_read_them() {
        // Two KV heads of width 2 over 3 inputs, each read by 2 query heads.
        let weight: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let layer = Linear {
            weight: HostTensor::new(vec![4, 3], weight),
            bias: HostTensor::new(vec![4], vec![10.0, 11.0, 12.0, 13.0]),
            in_dim: 3,
            out_dim: 4,
        };
        let repeated = repeat_heads(&layer, 2, 2);
        assert_eq!((repeated.out_dim, repeated.in_dim), (8, 3));
        let rows: Vec<&[f32]> = repeated.weight.data().chunks(3).collect();
        // Query heads 0, 1 read KV head 0 (rows 0, 1); heads 2, 3 read KV head 1 (rows 2, 3).
        assert_eq!(
            rows,
            [
                &[0., 1., 2.][..],
                &[3., 4., 5.],
                &[0., 1., 2.],
                &[3., 4., 5.],
                &[6., 7., 8.],
                &[9., 10., 11.],
                &[6., 7., 8.],
                &[9., 10., 11.]
            ]
        );
        assert_eq!(repeated.bias.data(), [10., 11., 10., 11., 12., 13., 12., 13.]);
    }
}
