//! Training's passes through a block: the forward pass over packed rows (texts of any lengths
//! end to end; attention sees them padded to the longest) with dropout, keeping what the
//! backward pass reads, and the backward pass from one cotangent per row to the block's input
//! and every weight's gradient. The same ops as every other pass; each op's weight-gradient rule
//! is stated here once:
//!
//! ```text
//!   Linear:     W̄ = ȳᵀ x, b̄ = Σ_r ȳ_r                 LayerNorm:  γ̄ = Σ_r ȳ_r ⊙ x̂_r, β̄ = Σ_r ȳ_r
//!   Attention:  the score bias's S̄, summed over sequences (MPNet's relative position table)
//! ```
//!
//! With dropout on, the walk reads the block's training ops, dropout included (a mask on each
//! dropout op's value, and one on attention's probabilities); with it off, the ops every other
//! pass reads.

use std::rc::Rc;

use super::vjp::{into_owned, Term};
use super::{last_reader, Block, Geometry, Held, Op, Value, Values, Walk};
use crate::backend::{AttentionSaved, Batch, NormSaved, ScoreMods, WeightGradients};
use crate::error::{Error, Result};
use crate::net::packing::Packing;
use crate::params::{LayerParams, LayerSlot, LinearPart, NormPart};

/// What the backward pass of one block reads.
pub struct TrainingTape<T> {
    /// Whether the pass ran the training ops (dropout on) or the plain ones.
    dropout: bool,
    /// Per value: kept where the backward pass reads it (a dense layer's input, GELU's input).
    kept: Vec<Option<T>>,
    /// Per op: what attention and LayerNorm keep of their forward pass.
    saved: Vec<Saved<T>>,
    /// Per op: its dropout mask (`1/(1 − p)` where kept, 0 where dropped), where it has one.
    masks: Vec<Option<T>>,
}

enum Saved<T> {
    Nothing,
    /// `q|k|v` in the padded layout `[seqs, T, 3·hidden]`, and the probabilities.
    Attention {
        padded_qkv: T,
        probs: AttentionSaved<T>,
    },
    Norm(NormSaved<T>),
}

/// A block's gradients: each weight's, and `Σ S̄` over the padded attention layout
/// (`[heads, T, T]`, for a shared score bias) where the block has attention.
pub struct BlockGrads<T> {
    pub weights: Vec<(LayerSlot, T)>,
    pub score_bias: Option<T>,
}

/// Row-wise ops see the packed rows as one sequence of `rows` tokens.
pub fn rows_batch(rows: usize) -> Batch {
    Batch { steps: 1, tangents: 1, tokens: rows }
}

impl Block {
    /// The ops a training pass walks: with dropout, or without.
    fn training_walk_ops(&self, dropout: bool) -> &[Op] {
        if dropout {
            &self.training_ops
        } else {
            &self.ops
        }
    }

    /// The lengths of the dropout masks one training pass over `packing` takes, in the order
    /// `forward_training` reads them: attention's probabilities (`[seqs, heads, T, T]`) and each
    /// dropout op's value (`[rows, width]`), in op order.
    pub fn dropout_mask_lengths<T>(
        &self,
        params: &LayerParams<T>,
        geometry: Geometry,
        packing: &Packing<T>,
    ) -> Vec<usize> {
        let widths = super::widths(&self.training_ops, params, geometry.heads);
        let tokens = packing.tokens;
        self.training_ops
            .iter()
            .filter_map(|op| match *op {
                Op::Attention { .. } => Some(packing.seqs * geometry.heads.count * tokens * tokens),
                Op::Dropout { x } => Some(packing.rows() * widths[x.index()]),
                _ => None,
            })
            .collect()
    }

    /// The forward pass over the packed rows `x` (`[rows, hidden]`), with dropout masks
    /// (`dropout_mask_lengths`) or without.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_training<B: WeightGradients>(
        &self,
        backend: &B,
        params: &LayerParams<B::Tensor>,
        geometry: Geometry,
        packing: &Packing<B::Tensor>,
        scores: ScoreMods<'_, B::Tensor>,
        x: B::Tensor,
        masks: Option<Vec<B::Tensor>>,
    ) -> Result<(B::Tensor, TrainingTape<B::Tensor>)> {
        let (b, rows, heads) = (backend, packing.rows(), geometry.heads);
        let dropout = masks.is_some();
        let ops = self.training_walk_ops(dropout);
        let walk = Walk::new(ops, backend, params, geometry);
        let mut masks = masks.unwrap_or_default().into_iter();
        let keep: Vec<bool> = (0..=ops.len())
            .map(|v| ops.iter().any(|op| matches!(*op, Op::Linear { x, .. } | Op::Gelu { x } if x.index() == v)))
            .collect();
        let last_read = last_reader(ops);
        let mut values = Values::new(ops.len(), Held::Owned(x));
        let (mut saved, mut op_masks) = (Vec::with_capacity(ops.len()), Vec::with_capacity(ops.len()));
        let unused_attend =
            |_: &B::Tensor| -> Result<B::Tensor> { Err(Error::Internal("attention runs padded".into())) };
        let mut next_mask = || match dropout {
            true => {
                masks.next().map(Some).ok_or_else(|| Error::Internal("fewer dropout masks than the block takes".into()))
            }
            false => Ok(None),
        };
        for (index, op) in ops.iter().enumerate() {
            let (mut op_saved, mut op_mask) = (Saved::Nothing, None);
            let y = match *op {
                Op::Attention { qkv } => {
                    op_mask = next_mask()?;
                    let padded_qkv = packing.to_padded(b, values.get(qkv)?, walk.width(qkv))?;
                    let (seqs, tokens) = (packing.seqs, packing.tokens);
                    let (ctx, probs) =
                        b.attention_dropout(&padded_qkv, seqs, tokens, heads, scores, op_mask.as_ref())?;
                    op_saved = Saved::Attention { padded_qkv, probs };
                    packing.to_packed(b, &ctx, heads.width())?
                }
                Op::Dropout { x } => {
                    op_mask = next_mask()?;
                    let mask =
                        op_mask.as_ref().ok_or_else(|| Error::Internal("a dropout op with dropout off".into()))?;
                    b.mul(values.get(x)?, mask)?
                }
                Op::LayerNorm { x, weights } => {
                    let norm = params.norm(weights);
                    let (y, stats) = b.layer_norm(values.get(x)?, rows, walk.width(x), norm, geometry.eps)?;
                    op_saved = Saved::Norm(stats);
                    y
                }
                Op::Linear { .. } | Op::Add { .. } | Op::Gelu { .. } => {
                    walk.forward_op(*op, &values, rows, &unused_attend)?
                }
            };
            saved.push(op_saved);
            op_masks.push(op_mask);
            values.set(Value::of_op(index), y);
            values.drop_read_by_op(&last_read, &keep, index);
        }
        if masks.next().is_some() {
            return Err(Error::Internal("more dropout masks than the block takes".into()));
        }
        let output = values.take(Value::of_op(ops.len() - 1))?;
        let mut kept = Vec::with_capacity(ops.len() + 1);
        for (v, keep) in keep.iter().enumerate() {
            kept.push(if *keep { Some(values.take(Value(v))?) } else { None });
        }
        Ok((output, TrainingTape { dropout, kept, saved, masks: op_masks }))
    }

    /// The backward pass from the cotangents `dy` of the block's output rows (`[rows, hidden]`)
    /// to those of its input, with every weight's gradient.
    pub fn backward_training<B: WeightGradients>(
        &self,
        backend: &B,
        params: &LayerParams<B::Tensor>,
        geometry: Geometry,
        packing: &Packing<B::Tensor>,
        tape: &TrainingTape<B::Tensor>,
        dy: &B::Tensor,
    ) -> Result<(B::Tensor, BlockGrads<B::Tensor>)> {
        let (b, rows, heads) = (backend, packing.rows(), geometry.heads);
        let batch = rows_batch(rows);
        let ops = self.training_walk_ops(tape.dropout);
        let walk = Walk::new(ops, backend, params, geometry);
        let kept = |v: Value| {
            tape.kept[v.index()]
                .as_ref()
                .ok_or_else(|| Error::Internal(format!("block value {v:?} is not on the tape")))
        };
        let mut terms: Vec<Vec<Term<'_, B::Tensor>>> = (0..=ops.len()).map(|_| Vec::new()).collect();
        terms[ops.len()].push(Rc::new(Held::Borrowed(dy)));
        let owned = |t: B::Tensor| Rc::new(Held::Owned(t));
        let mut grads = BlockGrads { weights: Vec::new(), score_bias: None };
        for (index, op) in ops.iter().enumerate().rev() {
            let out = std::mem::take(&mut terms[Value::of_op(index).index()]);
            if out.is_empty() {
                continue;
            }
            let dy = walk.sum(out)?;
            match (*op, &tape.saved[index]) {
                (Op::Add { a, b: other }, _) => {
                    terms[a.index()].push(dy.clone());
                    terms[other.index()].push(dy);
                }
                (Op::LayerNorm { x, weights }, Saved::Norm(stats)) => {
                    let width = walk.width(x);
                    let (d_gamma, d_beta) = b.layer_norm_weight_grad(stats, dy.get(), rows, width)?;
                    grads.weights.push((weights.slot(NormPart::Gamma), d_gamma));
                    grads.weights.push((weights.slot(NormPart::Beta), d_beta));
                    terms[x.index()].push(owned(b.layer_norm_vjp(
                        stats,
                        params.norm(weights),
                        dy.get(),
                        batch,
                        width,
                    )?));
                }
                (Op::Linear { x, weights }, _) => {
                    let layer = params.linear(weights);
                    let (dw, db) = b.linear_weight_grad(kept(x)?, dy.get(), rows, layer.in_dim, layer.out_dim)?;
                    grads.weights.push((weights.slot(LinearPart::Weight), dw));
                    grads.weights.push((weights.slot(LinearPart::Bias), db));
                    terms[x.index()].push(owned(b.matmul_vjp(dy.get(), rows, layer)?));
                }
                (Op::Gelu { x }, _) => {
                    terms[x.index()].push(owned(b.gelu_vjp(kept(x)?, dy.get(), batch, walk.width(x))?));
                }
                (Op::Dropout { x }, _) => {
                    let mask = tape.masks[index]
                        .as_ref()
                        .ok_or_else(|| Error::Internal("a dropout op kept no mask".into()))?;
                    terms[x.index()].push(owned(b.mul(dy.get(), mask)?));
                }
                (Op::Attention { qkv }, Saved::Attention { padded_qkv, probs }) => {
                    let d_ctx = packing.to_padded_cotangents(b, dy.get(), heads.width())?;
                    let (seqs, tokens, mask) = (packing.seqs, packing.tokens, tape.masks[index].as_ref());
                    let (d_qkv, d_scores) =
                        b.attention_dropout_vjp(padded_qkv, probs, mask, &d_ctx, seqs, tokens, heads)?;
                    grads.score_bias = Some(match grads.score_bias.take() {
                        Some(sum) => b.add(&sum, &d_scores)?,
                        None => d_scores,
                    });
                    terms[qkv.index()].push(owned(packing.to_packed(b, &d_qkv, walk.width(qkv))?));
                }
                (op, _) => {
                    return Err(Error::Internal(format!("op {index} ({op:?}) kept nothing for its backward pass")))
                }
            }
        }
        let dx = into_owned(walk.sum(std::mem::take(&mut terms[Value::INPUT.index()]))?)?;
        Ok((dx, grads))
    }
}
