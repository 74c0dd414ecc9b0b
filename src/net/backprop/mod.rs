//! Training's pass through the encoder: forward over a packed batch of texts with dropout,
//! keeping a tape, then backward from the cotangents of each text's pooled vector to the
//! gradient of every parameter. The same network as `net::encoder` (embeddings, the family's
//! block, pooling); each block's passes are walked from its description
//! (`Block::forward_training`, `Block::backward_training`). The ops come from `Backend` and
//! `WeightGradients`.

mod grads;

pub use grads::Gradients;

use std::collections::BTreeMap;

use crate::backend::{NormSaved, Role, WeightGradients};
use crate::error::{Error, Result};
use crate::model::{EncoderConfig, Pooling, PositionIds};
use crate::net::block::{rows_batch, Block, TrainingTape};
use crate::net::families::Network;
use crate::net::layer::{embed_rows, LayerShape};
use crate::net::packing::Packing;
use crate::net::relative_bias;
use crate::params::{EncoderParams, NormPart, Slot};

/// Where dropout masks come from: `mask(len)` gives `len` values, `1/(1 − p)` where kept and
/// 0 where dropped (the training loop draws them from its seeded generator).
pub trait MaskSource {
    fn mask(&mut self, len: usize) -> Vec<f32>;
}

/// The encoder's shape and conventions, for training passes over any weights.
pub struct TrainingNet<'b, B: WeightGradients> {
    pub backend: &'b B,
    config: EncoderConfig,
    /// The block every layer runs (`net::families`).
    block: Block,
    pooling: Pooling,
    positions: PositionIds,
}

/// What one forward pass leaves for the backward pass.
pub struct ForwardPass<T> {
    packing: Packing<T>,
    ids: Vec<u32>,
    positions: Vec<u32>,
    embedding_norm: NormSaved<T>,
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
    pub fn new(backend: &'b B, config: &EncoderConfig, pooling: Pooling) -> Result<Self> {
        if pooling == Pooling::Max {
            // The max of shifted states is not the shifted max (see `SentenceModel::load`).
            return Err(Error::argument("--model", "an exact model pools by mean or CLS; this model pools by max"));
        }
        let Network { block, final_norm, .. } = Network::of_family(config.architecture, pooling);
        if final_norm.is_some() {
            // Its gradient has no slot yet (`Slot`), nor a name to export it under.
            return Err(Error::argument("--model", "training a family with a final norm is not supported yet"));
        }
        Ok(TrainingNet { backend, config: config.clone(), block, pooling, positions: config.position_ids() })
    }

    fn shape(&self) -> LayerShape {
        LayerShape::of(&self.config)
    }

    /// The score bias of the padded layout (MPNet's relative position bias), if any.
    fn score_bias(&self, params: &EncoderParams<B::Tensor>, tokens: usize) -> Result<Option<B::Tensor>> {
        let (Some(buckets), Some(table)) = (self.config.relative_buckets, &params.relative_attention_bias) else {
            return Ok(None);
        };
        let heads = self.config.num_heads;
        let bias = relative_bias::score_bias(buckets, table.data(), heads, tokens);
        Ok(Some(self.backend.upload(&bias, Role::ScoreBias { heads, tokens })?))
    }

    /// Forward over `texts` (token ids, any lengths) with dropout masks from `dropout`.
    pub fn forward(
        &self,
        params: &EncoderParams<B::Tensor>,
        texts: &[&[u32]],
        mut dropout: Option<&mut dyn MaskSource>,
    ) -> Result<ForwardPass<B::Tensor>> {
        let (b, h, shape) = (self.backend, self.config.hidden_size, self.shape());
        if !params.heads.is_empty() {
            // Their gradients have no slot yet (`Slot`), nor names to export them under.
            return Err(Error::argument(
                "--model",
                "training through Dense modules after pooling is not supported yet",
            ));
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

        let (mut x, embedding_norm) = embed_rows(b, &params.embeddings, shape, &ids, &positions)?;
        let embedding_mask = upload_mask(rows * h)?;
        if let Some(mask) = &embedding_mask {
            x = b.mul(&x, mask)?;
        }

        let bias = self.score_bias(params, tokens)?;
        let mut layers = Vec::with_capacity(params.layers.len());
        let geometry = shape.geometry();
        for layer_params in &params.layers {
            // Attention's mask, then each dropout op's, in the block's order (the seeded
            // draws depend on it).
            let lengths = self.block.dropout_mask_lengths(layer_params, geometry, &packing)?;
            let masks: Vec<Option<B::Tensor>> = lengths.into_iter().map(&mut upload_mask).collect::<Result<_>>()?;
            let masks: Option<Vec<B::Tensor>> = masks.into_iter().collect();
            let scores = packing.scores(bias.as_ref());
            let (y, tape) = self.block.forward_training(b, layer_params, geometry, &packing, scores, x, masks)?;
            layers.push(tape);
            x = y;
        }
        let states = b.download(&x)?;
        Ok(ForwardPass { packing, ids, positions, embedding_norm, embedding_mask, layers, states })
    }

    /// Each text's pooled vector (mean or CLS of its output states).
    pub fn pooled(&self, pass: &ForwardPass<B::Tensor>) -> Vec<Vec<f64>> {
        let h = self.config.hidden_size;
        (0..pass.packing.seqs).map(|s| crate::net::pooling::pool_host(self.pooling, pass.states(s, h), h)).collect()
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
        if !params.heads.is_empty() {
            // Their gradients have no slot yet (`Slot`), nor names to export them under.
            return Err(Error::argument(
                "--model",
                "training through Dense modules after pooling is not supported yet",
            ));
        }
        let packing = &pass.packing;
        let rows = packing.rows();
        if d_pooled.len() != packing.seqs {
            return Err(Error::Internal(format!("{} pooled cotangents for {} texts", d_pooled.len(), packing.seqs)));
        }
        // Pooling's VJP on the host: mean spreads each text's cotangent over its rows, CLS puts
        // it on the first.
        let mut d_states = vec![0.0f64; rows * h];
        for (s, d) in d_pooled.iter().enumerate() {
            let (start, len) = (packing.starts[s], packing.lengths[s]);
            let targets = match self.pooling {
                Pooling::Cls => start..start + 1,
                _ => start..start + len,
            };
            let share = if self.pooling == Pooling::Cls { 1.0 } else { 1.0 / len as f64 };
            for r in targets {
                d_states[r * h..(r + 1) * h].iter_mut().zip(d).for_each(|(o, v)| *o = v * share);
            }
        }
        let mut dy = b.upload_f64(&d_states, None)?;

        let mut bias_grad = vec![0.0f64; shape.heads.count * packing.tokens * packing.tokens];
        for (l, (layer_params, tape)) in params.layers.iter().zip(&pass.layers).enumerate().rev() {
            let (dx, layer_grads) =
                self.block.backward_training(b, layer_params, shape.geometry(), packing, tape, &dy)?;
            for (slot, grad) in layer_grads.weights {
                grads.add(Slot::Layer(l, slot), &b.download(&grad)?)?;
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

        // Embeddings: dropout, LayerNorm, then the three lookups' adjoints (a scatter into the
        // rows the batch used).
        let dropped = pass.embedding_mask.as_ref().map(|m| b.mul(&dy, m)).transpose()?;
        let dy = dropped.as_ref().unwrap_or(&dy);
        let (d_gamma, d_beta) = b.layer_norm_weight_grad(&pass.embedding_norm, dy, rows, h)?;
        grads.add(Slot::EmbeddingNorm(NormPart::Gamma), &b.download(&d_gamma)?)?;
        grads.add(Slot::EmbeddingNorm(NormPart::Beta), &b.download(&d_beta)?)?;
        let d_sum = b.layer_norm_vjp(&pass.embedding_norm, &params.embeddings.norm, dy, rows_batch(rows), h)?;
        let mut lookups =
            vec![(Slot::WordEmbeddings, pass.ids.as_slice()), (Slot::PositionEmbeddings, &pass.positions)];
        let type_ids = vec![0u32; rows];
        if params.embeddings.token_type.is_some() {
            lookups.push((Slot::TokenTypeEmbeddings, &type_ids));
        }
        // `transformers` builds the word table (and, where positions count after the padding,
        // the position table) with `padding_idx`: the pad row receives no gradient and keeps
        // its value, which the all-pad reference input relies on too.
        let frozen_row = |slot: Slot| match (slot, self.positions) {
            (Slot::WordEmbeddings, _) => Some(self.config.pad_token_id),
            (Slot::PositionEmbeddings, PositionIds::AfterPadding { pad_id }) => Some(pad_id),
            _ => None,
        };
        for (slot, ids) in lookups {
            // Compact row numbers: the scatter's output is the rows used, not the whole table.
            let used: BTreeMap<u32, u32> = ids.iter().map(|&id| (id, 0)).collect();
            let used: BTreeMap<u32, u32> = used.keys().enumerate().map(|(n, &id)| (id, n as u32)).collect();
            let compact: Vec<u32> = ids.iter().map(|id| used[id]).collect();
            let table_rows = b.download(&b.scatter_rows(&d_sum, h, &compact, used.len())?)?;
            for (&id, &n) in used.iter().filter(|(&id, _)| Some(id) != frozen_row(slot)) {
                grads.add_row(slot, id as usize, h, &table_rows[n as usize * h..(n as usize + 1) * h])?;
            }
        }
        Ok(())
    }
}
