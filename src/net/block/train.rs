//! Training's passes through a block: the forward pass over packed rows (texts of any lengths
//! end to end; attention sees them padded to the longest) with dropout, keeping what the
//! backward pass reads, and the backward pass from one cotangent per row to the block's input
//! and every weight's gradient. The same ops as every other pass; each op's weight-gradient rule
//! is stated here once:
//!
//! ```text
//!   Linear:     W̄ = ȳᵀ x, b̄ = Σ_r ȳ_r                 LayerNorm:  γ̄ = Σ_r ȳ_r ⊙ x̂_r, β̄ = Σ_r ȳ_r
//!   QK-norm:    γ̄_q = Σ_{r,h} ȳ ⊙ x̂ over each head's queries, γ̄_k over its keys
//!   Attention:  the score bias's S̄, summed over sequences (MPNet's and T5's relative position
//!               table); rotary queries and keys turned in the padded layout, their cotangents
//!               turned back
//! ```
//!
//! With dropout on, the walk reads the block's training ops, dropout included (a mask on each
//! dropout op's value, and one on attention's probabilities); with it off, the ops every other
//! pass reads.

use std::rc::Rc;

use super::vjp::{into_owned, Term};
use super::{kept_by_backward, last_reader, Block, Geometry, Held, Op, Saved, Taped, Value, Values, Walk};
use crate::backend::{AttentionSaved, Batch, ScoreMods, WeightGradients};
use crate::error::{Error, Result};
use crate::net::packing::Packing;
use crate::params::{LayerSlot, LinearPart, NormPart, Weights};

/// What the backward pass of one block reads.
pub struct TrainingTape<T> {
    /// Whether the pass ran the training ops (dropout on) or the plain ones.
    dropout: bool,
    /// What the backward pass reads: a dense layer's input, an activation's input, each norm's
    /// statistics and attention's padded `q|k|v` with its probabilities.
    taped: Taped<T, PaddedAttention<T>>,
    /// Per op: its dropout mask (`1/(1 − p)` where kept, 0 where dropped), where it has one.
    masks: Vec<Option<T>>,
}

/// What training's attention keeps: `q|k|v` in the padded layout `[seqs, T, 3·hidden]` it ran
/// in, and the probabilities.
struct PaddedAttention<T> {
    padded_qkv: T,
    probs: AttentionSaved<T>,
}

/// A block's gradients: each weight's, and `Σ S̄` over the padded attention layout
/// (`[heads, T, T]`, for a shared score bias) where the block has attention.
pub struct BlockGrads<T> {
    pub weights: Vec<(LayerSlot, T)>,
    /// The encoder's final norm's, where the block ends in it (`Block::ending_in`).
    pub final_norm: Vec<(NormPart, T)>,
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
    pub fn dropout_mask_lengths<'p, T: 'p>(
        &self,
        params: impl Into<Weights<'p, T>>,
        geometry: Geometry,
        packing: &Packing<T>,
    ) -> Result<Vec<usize>> {
        let params: Weights<'p, T> = params.into();
        let widths = super::widths(&self.training_ops, params, geometry.heads)?;
        let tokens = packing.tokens;
        let lengths = self.training_ops.iter().filter_map(|op| match *op {
            Op::Attention { .. } => Some(packing.seqs * geometry.heads.count * tokens * tokens),
            Op::Dropout { x } => Some(packing.rows() * widths[x.index()]),
            _ => None,
        });
        Ok(lengths.collect())
    }

    /// The forward pass over the packed rows `x` (`[rows, hidden]`), with dropout masks
    /// (`dropout_mask_lengths`) or without.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_training<'p, B: WeightGradients>(
        &self,
        backend: &B,
        params: impl Into<Weights<'p, B::Tensor>>,
        geometry: Geometry,
        packing: &Packing<B::Tensor>,
        scores: ScoreMods<'_, B::Tensor>,
        x: B::Tensor,
        masks: Option<Vec<B::Tensor>>,
    ) -> Result<(B::Tensor, TrainingTape<B::Tensor>)> {
        let params: Weights<'p, B::Tensor> = params.into();
        let (b, rows, heads) = (backend, packing.rows(), geometry.heads);
        let dropout = masks.is_some();
        let ops = self.training_walk_ops(dropout);
        let walk = Walk::new(ops, backend, params, geometry)?;
        let mut masks = masks.unwrap_or_default().into_iter();
        let keep = kept_by_backward(ops, true);
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
                    let (seqs, tokens) = (packing.seqs, packing.tokens);
                    let padded = packing.to_padded(b, values.get(qkv)?, walk.width(qkv))?;
                    // Kept turned, as attention read it (each row's position is its index in
                    // its text: texts start at padded row 0).
                    let padded_qkv = geometry.rotated(b, &padded, tokens)?.unwrap_or(padded);
                    let (ctx, probs) =
                        b.attention_dropout(&padded_qkv, seqs, tokens, heads, scores, op_mask.as_ref())?;
                    op_saved = Saved::Attention(PaddedAttention { padded_qkv, probs });
                    packing.to_packed(b, &ctx, heads.width())?
                }
                Op::Dropout { x } => {
                    op_mask = next_mask()?;
                    let mask =
                        op_mask.as_ref().ok_or_else(|| Error::Internal("a dropout op with dropout off".into()))?;
                    b.mul(values.get(x)?, mask)?
                }
                _ => match walk.norm_forward(*op, &values, rows)? {
                    Some((y, stats)) => {
                        op_saved = Saved::Norm(stats);
                        y
                    }
                    None => walk.forward_op(*op, &values, rows, &unused_attend)?,
                },
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
        let taped = Taped::collect(&mut values, &keep, saved)?;
        Ok((output, TrainingTape { dropout, taped, masks: op_masks }))
    }

    /// The backward pass from the cotangents `dy` of the block's output rows (`[rows, hidden]`)
    /// to those of its input, with every weight's gradient.
    pub fn backward_training<'p, B: WeightGradients>(
        &self,
        backend: &B,
        params: impl Into<Weights<'p, B::Tensor>>,
        geometry: Geometry,
        packing: &Packing<B::Tensor>,
        tape: &TrainingTape<B::Tensor>,
        dy: &B::Tensor,
    ) -> Result<(B::Tensor, BlockGrads<B::Tensor>)> {
        let params: Weights<'p, B::Tensor> = params.into();
        let (b, rows, heads) = (backend, packing.rows(), geometry.heads);
        let batch = rows_batch(rows);
        let ops = self.training_walk_ops(tape.dropout);
        let walk = Walk::new(ops, backend, params, geometry)?;
        let mut terms: Vec<Vec<Term<'_, B::Tensor>>> = (0..=ops.len()).map(|_| Vec::new()).collect();
        terms[ops.len()].push(Rc::new(Held::Borrowed(dy)));
        let owned = |t: B::Tensor| Rc::new(Held::Owned(t));
        let mut grads = BlockGrads { weights: Vec::new(), final_norm: Vec::new(), score_bias: None };
        for (index, op) in ops.iter().enumerate().rev() {
            let out = std::mem::take(&mut terms[Value::of_op(index).index()]);
            if out.is_empty() {
                continue;
            }
            let dy = walk.sum(out)?;
            // Each weight's gradient rule, where the op has weights.
            if let Some((kind, x, weights)) = op.norm() {
                let stats = tape.taped.norm(index)?;
                for (part, grad) in kind.weight_grads(b, stats, dy.get(), rows, walk.width(x))? {
                    match weights.slot(part) {
                        Some(slot) => grads.weights.push((slot, grad)),
                        // The final norm is the encoder's, not a layer's.
                        None => grads.final_norm.push((part, grad)),
                    }
                }
            } else if let Op::HeadNorm { .. } = *op {
                let (d_query, d_key) = b.head_norm_weight_grad(tape.taped.norm(index)?, dy.get(), heads)?;
                grads.weights.push((LayerSlot::QueryNorm(NormPart::Gamma), d_query));
                grads.weights.push((LayerSlot::KeyNorm(NormPart::Gamma), d_key));
            } else if let Op::Linear { x, weights } = *op {
                let layer = params.linear(weights);
                let (dw, db) =
                    b.linear_weight_grad(tape.taped.kept(x)?, dy.get(), rows, layer.in_dim, layer.out_dim)?;
                grads.weights.push((weights.slot(LinearPart::Weight), dw));
                grads.weights.push((weights.slot(LinearPart::Bias), db));
            }
            match (*op, &tape.taped.saved[index]) {
                (Op::Add { a, b: other }, _) => {
                    terms[a.index()].push(dy.clone());
                    terms[other.index()].push(dy);
                }
                (Op::Dropout { x }, _) => {
                    let mask = tape.masks[index]
                        .as_ref()
                        .ok_or_else(|| Error::Internal("a dropout op kept no mask".into()))?;
                    terms[x.index()].push(owned(b.mul(dy.get(), mask)?));
                }
                (Op::Attention { qkv }, Saved::Attention(PaddedAttention { padded_qkv, probs })) => {
                    let d_ctx = packing.to_padded_cotangents(b, dy.get(), heads.width())?;
                    let (seqs, tokens, mask) = (packing.seqs, packing.tokens, tape.masks[index].as_ref());
                    let (d_qkv, d_scores) =
                        b.attention_dropout_vjp(padded_qkv, probs, mask, &d_ctx, seqs, tokens, heads)?;
                    grads.score_bias = Some(match grads.score_bias.take() {
                        Some(sum) => b.add(&sum, &d_scores)?,
                        None => d_scores,
                    });
                    let d_qkv = geometry.unrotated(b, d_qkv, tokens)?;
                    terms[qkv.index()].push(owned(packing.to_packed(b, &d_qkv, walk.width(qkv))?));
                }
                (Op::Attention { .. }, _) => {
                    return Err(Error::Internal(format!("attention op {index} kept nothing for its backward pass")))
                }
                (op, _) => {
                    let (x, dx) = walk.input_vjp(op, index, dy.get(), &tape.taped, batch)?;
                    terms[x.index()].push(owned(dx));
                }
            }
        }
        let dx = into_owned(walk.sum(std::mem::take(&mut terms[Value::INPUT.index()]))?)?;
        Ok((dx, grads))
    }
}
