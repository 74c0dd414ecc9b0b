//! Reverse mode through a block: a forward pass that keeps what each op's VJP reads (the tape),
//! then the cotangents of the block's output taken back op by op to those of its input, for a
//! batch of cotangents that share each step's primal.
//!
//! A value read by several ops (a residual branch) receives one cotangent term from each; the
//! terms are summed where they are read, inside the norm's VJP where a LayerNorm reads them
//! (`residual_norm_vjp`). Two rewrites: under mean pooling, the unit cotangents of the pooled
//! output enter a block ending in `LayerNorm(Linear(a) + residual)` in rank-one form
//! (`mean_pooled_norm_linear_vjp`); and the input's cotangents can be left as two terms, the
//! residual's and the attention projection's, without the projection's GEMM (`InputForm::Split`).

use std::ops::Range;
use std::rc::Rc;

use super::{
    kept_by_backward, last_reader, outside_training, readers, Block, Geometry, Held, Op, Saved, Taped, Value, Values,
    Walk,
};
use crate::backend::{unit_rows, AttentionSaved, Backend, Batch, Role, ScoreMods};
use crate::error::{Error, Result};
use crate::params::Weights;

/// What the reverse pass of one block reads from its forward pass: the primal quantities its
/// VJPs are taken at (one row per token and step, shared by every cotangent).
pub struct BlockTape<T>(Taped<T, AttentionSaved<T>>);

impl<T> BlockTape<T> {
    /// The scalars the tape holds on `backend` (what `Block::tape_row_scalars` budgets per row).
    pub fn scalars<B: Backend<Tensor = T>>(&self, backend: &B) -> usize {
        let len = |t: &T| backend.tensor_len(t);
        let kept: usize = self.0.kept.iter().flatten().map(len).sum();
        let saved: usize = (self.0.saved.iter())
            .map(|saved| match saved {
                Saved::Nothing => 0,
                Saved::Attention(attention) => len(&attention.probs),
                Saved::Norm(norm) => len(&norm.normalized) + len(&norm.inv_std),
            })
            .sum();
        kept + saved
    }
}

/// The cotangents entering a block's VJP from above.
#[derive(Clone)]
pub enum CotangentsIn<'a, T> {
    /// Any cotangents of the output, `[steps, cotangents, tokens, hidden]`.
    Dense(&'a T),
    /// The last block under mean pooling: cotangent `c` of every step is the unit vector
    /// `e_{dims.start + c}` of the pooled output, so every token's is `e_d / tokens`.
    PooledMeanUnits(Range<usize>),
}

/// The form reverse mode leaves the block's input cotangents in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputForm {
    /// `x̄` itself: the rows of the Jacobian.
    Full,
    /// `x̄` as its residual and projection terms, enough for `x̄ · Δ` without the last GEMM.
    Split,
}

/// A block's input cotangents `x̄ = s̄ + q̄k̄v̄ Wqkv`, kept as its two terms: the residual's `s̄`
/// (`[…, hidden]`) and the attention projection's `q̄k̄v̄` (`[…, 3·hidden]`). At the attributed
/// layer only `x̄ · Δ` per token is needed, and `q̄k̄v̄ Wqkv · Δ = q̄k̄v̄ · (Δ Wqkvᵀ)`, whose
/// `Δ Wqkvᵀ` is `tokens` rows: the layer's largest cotangent GEMM is not needed there.
pub struct SplitCotangents<T> {
    pub residual: T,
    pub qkv: T,
}

/// The block's input cotangents, `[steps, cotangents, tokens, hidden]`, in the form asked for.
pub enum InputCotangents<T> {
    Full(T),
    Split(SplitCotangents<T>),
}

/// One cotangent term of a value, shared where a sum hands the same term to both operands.
pub(super) type Term<'a, T> = Rc<Held<'a, T>>;

impl Block {
    /// The forward pass as single ops, keeping what `vjp` reads.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_taped<'p, B: Backend>(
        &self,
        backend: &B,
        params: impl Into<Weights<'p, B::Tensor>>,
        geometry: Geometry,
        x: &B::Tensor,
        seqs: usize,
        tokens: usize,
        scores: ScoreMods<'_, B::Tensor>,
    ) -> Result<(B::Tensor, BlockTape<B::Tensor>)> {
        let params: Weights<'p, B::Tensor> = params.into();
        let (b, rows) = (backend, seqs * tokens);
        let walk = Walk::new(&self.ops, backend, params, geometry)?;
        let keep = kept_by_backward(&self.ops, false);
        let last_read = last_reader(&self.ops);
        let mut values = Values::new(self.ops.len(), Held::Borrowed(x));
        let mut saved = Vec::with_capacity(self.ops.len());
        let unused_attend =
            |_: &B::Tensor| -> Result<B::Tensor> { Err(Error::Internal("attention is taped apart".into())) };
        for (index, op) in self.ops.iter().enumerate() {
            let (y, kept) = match *op {
                Op::Attention { qkv } => {
                    let (ctx, probs) = geometry.attention(b, values.get(qkv)?, seqs, tokens, scores)?;
                    (ctx, Saved::Attention(probs))
                }
                _ => match walk.norm_forward(*op, &values, rows)? {
                    Some((y, stats)) => (y, Saved::Norm(stats)),
                    None => (walk.forward_op(*op, &values, rows, &unused_attend)?, Saved::Nothing),
                },
            };
            saved.push(kept);
            values.set(Value::of_op(index), y);
            values.drop_read_by_op(&last_read, &keep, index);
        }
        let output = values.take(self.output())?;
        Ok((output, BlockTape(Taped::collect(&mut values, &keep, saved)?)))
    }

    /// Reverse mode through the block: the cotangents `dy` of its output
    /// (`[steps, cotangents, tokens, hidden]`) to those of its input, each cotangent at its
    /// step's primal (`tape`), in the form `input` asks for.
    #[allow(clippy::too_many_arguments)]
    pub fn vjp<'p, B: Backend>(
        &self,
        backend: &B,
        params: impl Into<Weights<'p, B::Tensor>>,
        geometry: Geometry,
        tape: &BlockTape<B::Tensor>,
        dy: CotangentsIn<'_, B::Tensor>,
        batch: Batch,
        input: InputForm,
    ) -> Result<InputCotangents<B::Tensor>> {
        let params: Weights<'p, B::Tensor> = params.into();
        let (b, tape) = (backend, &tape.0);
        let walk = Walk::new(&self.ops, backend, params, geometry)?;
        let mut terms: Vec<Vec<Term<'_, B::Tensor>>> = (0..=self.ops.len()).map(|_| Vec::new()).collect();
        let mut done = vec![false; self.ops.len()];
        let owned = |t: B::Tensor| Rc::new(Held::Owned(t));
        match dy {
            CotangentsIn::Dense(dy) => terms[self.output().index()].push(Rc::new(Held::Borrowed(dy))),
            CotangentsIn::PooledMeanUnits(dims) => match self.pooled_norm_linear() {
                Some(PooledTop { norm_op, linear_op, residual }) => {
                    let Op::LayerNorm { weights, .. } = self.ops[norm_op] else { unreachable!("matched above") };
                    let (a, layer) = walk.linear_of(&self.ops, linear_op);
                    let (d_sum, d_in) =
                        b.mean_pooled_norm_linear_vjp(tape.norm(norm_op)?, params.norm(weights)?, layer, dims, batch)?;
                    terms[residual.index()].push(owned(d_sum));
                    terms[a.index()].push(owned(d_in));
                    for op in [norm_op, norm_op - 1, linear_op] {
                        done[op] = true;
                    }
                }
                None => {
                    let width = params.hidden();
                    let len = batch.tangent_seqs() * width;
                    let seeds = b.upload(&unit_rows(batch.steps, dims, width), Role::Activations { len })?;
                    let d_out = b.mean_pool_vjp(&seeds, batch.tangent_seqs(), batch.tokens, width)?;
                    terms[self.output().index()].push(owned(d_out));
                }
            },
        }
        let split = match input {
            InputForm::Split => Some(self.input_projection().ok_or_else(|| {
                Error::Internal(format!("block `{}` has no attention projection of its input to split at", self.name))
            })?),
            InputForm::Full => None,
        };
        let mut projection = None;
        for (index, op) in self.ops.iter().enumerate().rev() {
            let out = std::mem::take(&mut terms[Value::of_op(index).index()]);
            if done[index] || out.is_empty() {
                continue;
            }
            match *op {
                Op::Add { a, b: other } => {
                    let sum = walk.sum(out)?;
                    terms[a.index()].push(sum.clone());
                    terms[other.index()].push(sum);
                }
                Op::LayerNorm { x, weights } if out.len() == 2 => {
                    // The post-LN norm whose output feeds the next block and its residual.
                    let (stats, norm, width) = (tape.norm(index)?, params.norm(weights)?, walk.width(x));
                    let dx = b.residual_norm_vjp(stats, norm, out[1].get(), out[0].get(), batch, width)?;
                    terms[x.index()].push(owned(dx));
                }
                Op::Linear { x: Value::INPUT, weights } if split == Some(weights) => {
                    projection = Some(walk.sum(out)?);
                }
                Op::Linear { .. }
                | Op::LayerNorm { .. }
                | Op::RmsNorm { .. }
                | Op::HeadNorm { .. }
                | Op::Gelu { .. }
                | Op::Gated { .. }
                | Op::Activation { .. } => {
                    let (x, dx) = walk.input_vjp(*op, index, walk.sum(out)?.get(), tape, batch)?;
                    terms[x.index()].push(owned(dx));
                }
                Op::Attention { qkv } => {
                    let dctx = walk.sum(out)?;
                    let (heads, primal) = (geometry.heads, tape.kept(qkv)?);
                    let rotated = geometry.rotated(b, primal, batch.tokens)?;
                    let primal = rotated.as_ref().unwrap_or(primal);
                    let d_qkv = b.attention_vjp(primal, tape.attention(index)?, dctx.get(), batch, heads)?;
                    terms[qkv.index()].push(owned(geometry.unrotated(b, d_qkv, batch.tokens)?));
                }
                Op::Dropout { .. } => return Err(outside_training()),
            }
        }
        let input_terms = std::mem::take(&mut terms[Value::INPUT.index()]);
        let residual = into_owned(walk.sum(input_terms)?)?;
        match projection {
            Some(qkv) => Ok(InputCotangents::Split(SplitCotangents { residual, qkv: into_owned(qkv)? })),
            None => Ok(InputCotangents::Full(residual)),
        }
    }

    /// The top a pooled reverse pass can start from in rank-one form: the block ends in
    /// `LayerNorm(Linear(a) + residual)`, the linear's output and the sum read by nothing else.
    pub(super) fn pooled_norm_linear(&self) -> Option<PooledTop> {
        let norm_op = self.ops.len() - 1;
        let readers = readers(&self.ops);
        let Op::LayerNorm { x: sum, .. } = self.ops[norm_op] else { return None };
        let Op::Add { a, b } = *self.ops.get(sum.index().checked_sub(1)?)? else { return None };
        if sum.index() != norm_op || readers[sum.index()] != 1 || a == b {
            return None;
        }
        [(a, b), (b, a)].into_iter().find_map(|(z, residual)| {
            let linear_op = z.index().checked_sub(1)?;
            let is_linear = matches!(self.ops[linear_op], Op::Linear { .. });
            (is_linear && readers[z.index()] == 1).then_some(PooledTop { norm_op, linear_op, residual })
        })
    }
}

/// `LayerNorm(Linear(a) + residual)` at the end of a block: the ops and the residual.
pub(super) struct PooledTop {
    norm_op: usize,
    pub(super) linear_op: usize,
    residual: Value,
}

impl<B: Backend> Walk<'_, B> {
    /// The VJP of op `index` (`op`) with respect to its input, for the cotangents `dy` of its
    /// output: one rule per op kind, read by attribution's reverse mode and training's backward
    /// pass alike. A sum, attention and dropout each walk take back themselves.
    pub(super) fn input_vjp<A>(
        &self,
        op: Op,
        index: usize,
        dy: &B::Tensor,
        tape: &Taped<B::Tensor, A>,
        batch: Batch,
    ) -> Result<(Value, B::Tensor)> {
        let b = self.backend;
        if let Some((kind, x, weights)) = op.norm() {
            return Ok((x, kind.vjp(b, tape.norm(index)?, self.params.norm(weights)?, dy, batch, self.width(x))?));
        }
        let dx = match op {
            Op::HeadNorm { qkv } => {
                let (norms, heads) = (self.params.head_norms()?, self.geometry.heads);
                (qkv, b.head_rms_norm_vjp(tape.norm(index)?, &norms.query, &norms.key, dy, batch, heads)?)
            }
            Op::Linear { x, weights } => (x, b.matmul_vjp(dy, batch.tangent_rows(), self.params.linear(weights))?),
            Op::Gelu { x } => (x, b.gelu_vjp(tape.kept(x)?, dy, batch, self.width(x))?),
            Op::Gated { x, act } => (x, b.gated_vjp(tape.kept(x)?, dy, batch, self.width(x) / 2, act)?),
            Op::Activation { x, act } => (x, b.activation_vjp(tape.kept(x)?, dy, batch, self.width(x), act)?),
            Op::LayerNorm { .. } | Op::RmsNorm { .. } | Op::Add { .. } | Op::Attention { .. } | Op::Dropout { .. } => {
                return Err(Error::Internal(format!("op {index} ({op:?}) is taken back by its walk")))
            }
        };
        Ok(dx)
    }

    /// The sum of a value's cotangent terms (the one term itself where there is one).
    pub(super) fn sum<'a>(&self, terms: Vec<Term<'a, B::Tensor>>) -> Result<Term<'a, B::Tensor>> {
        let mut terms = terms.into_iter();
        let first = terms.next().ok_or_else(|| Error::Internal("a cotangent with no terms".into()))?;
        terms.try_fold(first, |sum, term| Ok(Rc::new(Held::Owned(self.backend.add(sum.get(), term.get())?))))
    }
}

/// A term no other value shares any more, as the tensor it holds.
pub(super) fn into_owned<T>(term: Term<'_, T>) -> Result<T> {
    match Rc::try_unwrap(term) {
        Ok(Held::Owned(t)) => Ok(t),
        _ => Err(Error::Internal("a block's input cotangents are still shared or borrowed".into())),
    }
}
