//! Training's pass through the encoder: forward over a packed batch of texts with dropout,
//! keeping a tape, then backward from the cotangents of each text's pooled vector to the
//! gradient of every parameter (the linear Dense modules after pooling are `dense`'s). The same network as `net::encoder` (embeddings, the family's
//! block, pooling); each block's passes are walked from its description
//! (`Block::forward_training`, `Block::backward_training`). The ops come from `Backend` and
//! `WeightGradients`.

mod dense;
mod grads;

pub use dense::{HeadInputs, LinearHeads};
pub use grads::Gradients;

use std::collections::BTreeMap;

use crate::backend::{Role, WeightGradients};
use crate::error::{Error, Result};
use crate::model::{AttentionMask, EncoderConfig, Pooling, PositionIds, SentenceModel};
use crate::net::block::{rows_batch, Block, Geometry, NormKind, TrainingTape};
use crate::net::embeddings::{scaled, Embeddings, EmbeddingsTape};
use crate::net::families::Network;
use crate::net::heads::{DenseActivation, Head};
use crate::net::layer::LayerShape;
use crate::net::packing::Packing;
use crate::net::pooling::{pool_host, Pool};
use crate::net::relative_bias;
use crate::params::{EncoderParams, LayerSlot, LinearPart, Slot, Weights};

/// Where dropout masks come from: `mask(len)` gives `len` values, `1/(1 − p)` where kept and
/// 0 where dropped (the training loop draws them from its seeded generator).
pub trait MaskSource {
    fn mask(&mut self, len: usize) -> Vec<f32>;
}

/// The encoder's shape and conventions, for training passes over any weights.
pub struct TrainingNet<'b, B: WeightGradients> {
    pub backend: &'b B,
    config: EncoderConfig,
    /// What sums into the first layer's input, and the block every layer runs
    /// (`net::families`).
    embeddings: Embeddings,
    /// The block each layer runs (`Network::layer_blocks`).
    blocks: Vec<Block>,
    final_norm: Option<NormKind>,
    pooling: Pooling,
    /// How many Dense modules follow pooling (linear maps, `LinearHeads`).
    dense: usize,
    positions: PositionIds,
}

/// What one forward pass leaves for the backward pass.
pub struct ForwardPass<T> {
    packing: Packing<T>,
    ids: Vec<u32>,
    positions: Vec<u32>,
    embeddings: EmbeddingsTape<T>,
    embedding_mask: Option<T>,
    layers: Vec<TrainingTape<T>>,
    /// The output token states, `[rows, hidden]`, on the host.
    states: Vec<f64>,
}

impl<T> ForwardPass<T> {
    /// Each text's output token states, `[tokens, hidden]`.
    pub fn states(&self, text: usize, hidden: usize) -> &[f64] {
        let (start, len) = (self.packing.starts[text], self.packing.lengths[text]);
        &self.states[start * hidden..(start + len) * hidden]
    }
}

impl<'b, B: WeightGradients> TrainingNet<'b, B> {
    /// The encoder of `config` pooled by `pooling`, nothing after it.
    pub fn new(backend: &'b B, config: &EncoderConfig, pooling: Pooling) -> Result<Self> {
        Self::with_network(backend, config, Network::of_family(config, pooling))
    }

    /// The network of `model` as training runs it: its family's encoder, pooling and Dense
    /// modules (each a linear map without bias; any other is refused, naming it). Normalize
    /// is left to the objectives.
    pub fn of_model(backend: &'b B, model: &SentenceModel) -> Result<Self> {
        model.dense.iter().try_for_each(|module| module.check_linear("training an exact model"))?;
        Self::with_network(backend, &model.config, Network::of(model))
    }

    /// Training through `network` instead of the family's: how a new structure's gradients are
    /// tried on existing weights (the tests' variants). Its embeddings, block, pooling and
    /// Dense modules are read; a Dense module with an activation is refused.
    pub fn with_network(backend: &'b B, config: &EncoderConfig, network: Network) -> Result<Self> {
        let pooling = network.pooling;
        if pooling == Pooling::Max {
            // The max of shifted states is not the shifted max (see `SentenceModel::load`).
            return Err(Error::argument("--model", "an exact model pools by mean or CLS; this model pools by max"));
        }
        let mut dense = 0;
        for head in &network.heads {
            match head {
                Head::Dense { activation: DenseActivation::Identity } => dense += 1,
                // The objectives normalize (cos) or not (dot) themselves.
                Head::Normalize => {}
                _ => return Err(dense_heads_untrained(head)),
            }
        }
        let positions = config.position_ids();
        let blocks = network.layer_blocks(config.num_layers)?;
        let final_norm = network.final_norm;
        let embeddings = network.embeddings;
        Ok(TrainingNet { backend, config: config.clone(), embeddings, blocks, final_norm, pooling, dense, positions })
    }

    fn shape(&self) -> LayerShape {
        LayerShape::of(&self.config)
    }

    /// The block layer `l` runs, its weights and its geometry (its rotary frequency): the last
    /// layer's block ends in the final norm where the network has one, which the weights must
    /// have exactly then.
    fn layer<'p>(
        &self,
        params: &'p EncoderParams<B::Tensor>,
        l: usize,
    ) -> Result<(&Block, Weights<'p, B::Tensor>, Geometry)> {
        let layer = params.layers.get(l).ok_or_else(|| Error::Internal(format!("no layer {l}")))?;
        let block = self.blocks.get(l).ok_or_else(|| Error::Internal(format!("no block for layer {l}")))?;
        let attention =
            self.config.layers.get(l).ok_or_else(|| Error::Internal(format!("no attention for layer {l}")))?;
        let geometry = self.shape().geometry_of(attention);
        let last = l + 1 == params.layers.len();
        match (self.final_norm, &params.final_norm) {
            (Some(_), Some(norm)) if last => Ok((block, Weights { layer, final_norm: Some(norm) }, geometry)),
            (Some(_), None) => Err(Error::Internal("the network ends in a final norm the weights lack".into())),
            (None, Some(_)) => Err(Error::Internal("the weights have a final norm the network lacks".into())),
            _ => Ok((block, layer.into(), geometry)),
        }
    }

    /// The score bias of layer `l` in the padded layout (`relative_bias::layer_score_bias`:
    /// a relative position bias, ALiBi, a causal or windowed mask), if any; made once per mask
    /// and pass in `made`.
    fn score_bias<'m>(
        &self,
        params: &EncoderParams<B::Tensor>,
        l: usize,
        tokens: usize,
        made: &'m mut Vec<(AttentionMask, Option<B::Tensor>)>,
    ) -> Result<Option<&'m B::Tensor>> {
        let mask = self.config.layers.get(l).map_or(AttentionMask::Full, |a| a.mask);
        let index = match made.iter().position(|(m, _)| *m == mask) {
            Some(index) => index,
            None => {
                let table = params.relative_attention_bias.as_ref();
                let bias = relative_bias::layer_score_bias(&self.config, table, mask, tokens);
                let heads = self.config.num_heads;
                let bias =
                    bias.map(|bias| self.backend.upload(&bias, Role::ScoreBias { heads, tokens })).transpose()?;
                made.push((mask, bias));
                made.len() - 1
            }
        };
        Ok(made[index].1.as_ref())
    }

    /// Forward over `texts` (token ids, any lengths) with dropout masks from `dropout`.
    pub fn forward(
        &self,
        params: &EncoderParams<B::Tensor>,
        texts: &[&[u32]],
        mut dropout: Option<&mut dyn MaskSource>,
    ) -> Result<ForwardPass<B::Tensor>> {
        let (b, h, shape) = (self.backend, self.config.hidden_size, self.shape());
        if params.heads.len() != self.dense {
            return Err(Error::Internal(format!(
                "{} Dense weights for a network of {} Dense modules",
                params.heads.len(),
                self.dense
            )));
        }
        let packing = Packing::new(b, &texts.iter().map(|t| t.len()).collect::<Vec<_>>())?;
        if packing.tokens > self.config.max_tokens() {
            return Err(Error::argument(
                "texts",
                format!("a text has {} tokens, the model takes at most {}", packing.tokens, self.config.max_tokens()),
            ));
        }
        let (rows, tokens) = (packing.rows(), packing.tokens);
        let ids: Vec<u32> = texts.concat();
        let positions: Vec<u32> = texts.iter().flat_map(|t| self.positions.for_ids(t)).collect();
        let mut upload_mask = |len: usize| -> Result<Option<B::Tensor>> {
            match dropout.as_deref_mut() {
                Some(source) => Ok(Some(b.upload(&source.mask(len), Role::Activations { len })?)),
                None => Ok(None),
            }
        };

        self.embeddings.check(&params.embeddings)?;
        let (mut x, embeddings) = self.embeddings.forward(b, &params.embeddings, h, shape.eps, &ids, &positions)?;
        let embedding_mask = upload_mask(rows * h)?;
        if let Some(mask) = &embedding_mask {
            x = b.mul(&x, mask)?;
        }

        let mut biases = Vec::new();
        let mut layers = Vec::with_capacity(params.layers.len());
        for l in 0..params.layers.len() {
            let (block, weights, geometry) = self.layer(params, l)?;
            // Attention's mask, then each dropout op's, in the block's order (the seeded
            // draws depend on it).
            let lengths = block.dropout_mask_lengths(weights, geometry, &packing)?;
            let masks: Vec<Option<B::Tensor>> = lengths.into_iter().map(&mut upload_mask).collect::<Result<_>>()?;
            let masks: Option<Vec<B::Tensor>> = masks.into_iter().collect();
            let scores = packing.scores(self.score_bias(params, l, tokens, &mut biases)?);
            let (y, tape) = block.forward_training(b, weights, geometry, &packing, scores, x, masks)?;
            layers.push(tape);
            x = y;
        }
        let states = b.download(&x)?;
        Ok(ForwardPass { packing, ids, positions, embeddings, embedding_mask, layers, states })
    }

    /// Each text's pooled vector (mean or CLS of its output states; training texts have no
    /// prompt).
    pub fn pooled(&self, pass: &ForwardPass<B::Tensor>) -> Result<Vec<Vec<f64>>> {
        let (h, pool) = (self.config.hidden_size, Pool::all(self.pooling));
        (0..pass.packing.seqs).map(|s| pool_host(pool, pass.states(s, h), h)).collect()
    }

    /// Backward from `d_pooled` (one cotangent `[hidden]` per text of the pass) to the
    /// parameters: adds every gradient into `grads`. `relative_table` is where MPNet's table's
    /// gradient goes (the table itself stays on the host).
    pub fn backward(
        &self,
        params: &EncoderParams<B::Tensor>,
        pass: &ForwardPass<B::Tensor>,
        d_pooled: &[Vec<f64>],
        grads: &mut Gradients,
    ) -> Result<()> {
        let (b, h, shape) = (self.backend, self.config.hidden_size, self.shape());
        let packing = &pass.packing;
        let rows = packing.rows();
        if d_pooled.len() != packing.seqs {
            return Err(Error::Internal(format!("{} pooled cotangents for {} texts", d_pooled.len(), packing.seqs)));
        }
        // Pooling's VJP on the host: each of a text's rows gets its token weight times the
        // text's cotangent (mean spreads it, CLS puts it on the first row).
        let mut d_states = vec![0.0f64; rows * h];
        for (s, d) in d_pooled.iter().enumerate() {
            let (start, len) = (packing.starts[s], packing.lengths[s]);
            let weights = self.pooling.token_weights(len, 0).ok_or_else(|| {
                Error::Internal(format!("training through {} pooling, which is not linear", self.pooling.name()))
            })?;
            for (r, share) in (start..start + len).zip(weights) {
                d_states[r * h..(r + 1) * h].iter_mut().zip(d).for_each(|(o, v)| *o = v * share);
            }
        }
        let mut dy = b.upload_f64(&d_states, None)?;

        let mut bias_grad = vec![0.0f64; shape.heads.count * packing.tokens * packing.tokens];
        for (l, tape) in pass.layers.iter().enumerate().rev() {
            let (block, weights, geometry) = self.layer(params, l)?;
            let (dx, layer_grads) = block.backward_training(b, weights, geometry, packing, tape, &dy)?;
            // The biases and shifts a family's checkpoint lacks are computed with the rest but not
            // trained (`EncoderParams::absent`).
            let layer_grads_by_slot = layer_grads.weights.into_iter().map(|(slot, grad)| (Slot::Layer(l, slot), grad));
            let final_norm = layer_grads.final_norm.into_iter().map(|(part, grad)| (Slot::FinalNorm(part), grad));
            for (slot, grad) in layer_grads_by_slot.chain(final_norm).filter(|(slot, _)| !params.absent.contains(slot))
            {
                let mut grad = b.download(&grad)?;
                if let (Some(repeated), Slot::Layer(_, LayerSlot::Qkv(part))) = (params.repeated_heads, slot) {
                    // One key/value head's copies are one parameter (`RepeatedHeads`).
                    let row_len = if part == LinearPart::Weight { h } else { 1 };
                    repeated.fold(&mut grad, row_len);
                }
                grads.add(slot, &grad)?;
            }
            if let (Some(score_bias), true) = (&layer_grads.score_bias, params.relative_attention_bias.is_some()) {
                let g = b.download(score_bias)?;
                bias_grad.iter_mut().zip(&g).for_each(|(a, v)| *a += v);
            }
            dy = dx;
        }
        if let (Some(buckets), true) = (self.config.relative_buckets, params.relative_attention_bias.is_some()) {
            let mut table = vec![0.0f64; buckets.buckets * shape.heads.count];
            relative_bias::table_grad(buckets, &bias_grad, shape.heads.count, packing.tokens, &mut table);
            grads.add(Slot::RelativeBias, &table)?;
        }

        // Embeddings as described (`net::embeddings`): dropout, the norm, the scale, then the
        // lookups' adjoints (a scatter into the rows the batch used).
        let dropped = pass.embedding_mask.as_ref().map(|m| b.mul(&dy, m)).transpose()?;
        let dy = dropped.as_ref().unwrap_or(&dy);
        let normed = match (self.embeddings.norm, &pass.embeddings.norm, &params.embeddings.norm) {
            (Some(kind), Some(saved), Some(norm)) => {
                for (part, grad) in kind.weight_grads(b, saved, dy, rows, h)? {
                    if !params.absent.contains(&Slot::EmbeddingNorm(part)) {
                        grads.add(Slot::EmbeddingNorm(part), &b.download(&grad)?)?;
                    }
                }
                Some(kind.vjp(b, saved, norm, dy, rows_batch(rows), h)?)
            }
            (None, _, _) => None,
            _ => return Err(Error::Internal("the embeddings' norm is described but was not run".into())),
        };
        let d_sum = normed.as_ref().unwrap_or(dy);
        let unscaled = self.embeddings.scale.map(|scale| scaled(b, d_sum, scale, None)).transpose()?;
        let d_sum = unscaled.as_ref().unwrap_or(d_sum);
        let mut lookups = vec![(Slot::WordEmbeddings, pass.ids.as_slice())];
        if self.embeddings.positions {
            lookups.push((Slot::PositionEmbeddings, &pass.positions));
        }
        let type_ids = vec![0u32; rows];
        if self.embeddings.token_types {
            lookups.push((Slot::TokenTypeEmbeddings, &type_ids));
        }
        // `transformers` builds the word table (and, where positions count after the padding,
        // the position table) with `padding_idx`: the pad row receives no gradient and keeps
        // its value, which the all-pad reference input relies on too.
        let frozen_row = |slot: Slot| match (slot, self.positions) {
            (Slot::WordEmbeddings, _) => self.config.padding_idx,
            (Slot::PositionEmbeddings, PositionIds::AfterPadding { pad_id }) => Some(pad_id),
            _ => None,
        };
        for (slot, ids) in lookups {
            // Compact row numbers: the scatter's output is the rows used, not the whole table.
            let used: BTreeMap<u32, u32> = ids.iter().map(|&id| (id, 0)).collect();
            let used: BTreeMap<u32, u32> = used.keys().enumerate().map(|(n, &id)| (id, n as u32)).collect();
            let compact: Vec<u32> = ids.iter().map(|id| used[id]).collect();
            let table_rows = b.download(&b.scatter_rows(d_sum, h, &compact, used.len())?)?;
            for (&id, &n) in used.iter().filter(|(&id, _)| Some(id) != frozen_row(slot)) {
                grads.add_row(slot, id as usize, h, &table_rows[n as usize * h..(n as usize + 1) * h])?;
            }
        }
        Ok(())
    }
}

/// Training takes linear Dense modules after pooling only: through an activation the shift
/// would not keep the reference's embedding at zero. (Normalize is the objectives' business,
/// and `train` refuses a truncation.)
fn dense_heads_untrained(head: &Head) -> Error {
    Error::argument(
        "--model",
        format!("training an exact model through {head:?} after pooling is not supported (Dense modules must be linear maps without bias)"),
    )
}
