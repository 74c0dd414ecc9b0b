//! Forward mode through a block: the primal of every step and, alongside, the JVP of all
//! `steps × tangents` tangents, each primal intermediate computed once and shared by its
//! tangents.
//!
//! Tangents travel in one of two forms. Dense: `[steps, tangents, tokens, width]`. Token rows:
//! tangent `m` of every step is row `directions.start + m` of a `[tokens, width]` tensor, on
//! that row, and zero elsewhere, which is what the first block above the attributed layer
//! receives (docs/design.md §3). A dense layer maps token rows to token rows with a GEMM over
//! `tokens` rows instead of all tangent rows, and attention takes them as they are
//! (`attention_with_token_jvp`); any other op reads them made dense.

use std::ops::Range;

use super::plan::Step;
use super::{drop_read_by, outside_training, Block, Geometry, Held, Op, Value, Values, Walk};
use crate::backend::{Backend, Batch, ScoreMods};
use crate::error::{Error, Result};
use crate::params::LayerParams;

/// The tangents entering a block's JVP.
#[derive(Clone)]
pub enum TangentsIn<'a, T> {
    /// Any tangents, `[steps, tangents, tokens, hidden]`.
    Dense(&'a T),
    /// Token directions: tangent `m` of every step is row `directions.start + m` of `delta`
    /// (`[tokens, hidden]`) on that row and zero elsewhere.
    TokenDirections { delta: &'a T, directions: Range<usize> },
}

/// One value's tangents.
enum Tangent<'a, T> {
    Dense(Held<'a, T>),
    /// `rows` (`[tokens, width]`) as token directions, with their dense form once made.
    TokenRows {
        rows: Held<'a, T>,
        directions: Range<usize>,
        dense: Option<T>,
    },
}

/// The tangents of a walk's values, each held as long as its primal.
struct Tangents<'a, T> {
    slots: Vec<Option<Tangent<'a, T>>>,
}

impl<'a, T> Tangents<'a, T> {
    fn get(&self, v: Value) -> Result<&Tangent<'a, T>> {
        self.slots[v.index()]
            .as_ref()
            .ok_or_else(|| Error::Internal(format!("the tangent of block value {v:?} is not held")))
    }

    /// The dense tangents of `v` (made dense first where they are token rows).
    fn dense(&self, v: Value) -> Result<&T> {
        match self.get(v)? {
            Tangent::Dense(held) => Ok(held.get()),
            Tangent::TokenRows { dense: Some(dense), .. } => Ok(dense),
            Tangent::TokenRows { dense: None, .. } => {
                Err(Error::Internal(format!("the token-row tangent of block value {v:?} was not made dense")))
            }
        }
    }
}

/// Where a forward-mode walk stands after some of its steps.
struct JvpState<'a, T> {
    values: Values<'a, T>,
    tangents: Tangents<'a, T>,
}

impl Block {
    /// Forward pass of the `batch.steps` primals `x` and, alongside, the JVP of the tangents
    /// `dx`. Returns `(y, ẏ)`, `ẏ` as `[steps, tangents, tokens, hidden]`.
    #[allow(clippy::too_many_arguments)]
    pub fn jvp<B: Backend>(
        &self,
        backend: &B,
        params: &LayerParams<B::Tensor>,
        geometry: Geometry,
        x: &B::Tensor,
        dx: TangentsIn<'_, B::Tensor>,
        batch: Batch,
        scores: ScoreMods<'_, B::Tensor>,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let walk = Walk::new(&self.ops, backend, params, geometry)?;
        let mut state = self.jvp_steps(&walk, x, dx, batch, scores, self.steps.len())?;
        let output = self.output();
        walk.make_dense(&mut state.tangents, output, batch)?;
        let dy = match state.tangents.slots[output.index()].take() {
            Some(Tangent::Dense(Held::Owned(dy))) | Some(Tangent::TokenRows { dense: Some(dy), .. }) => dy,
            _ => return Err(Error::Internal("a block's output tangents are not its own".into())),
        };
        Ok((state.values.take(output)?, dy))
    }

    /// The JVP of the block followed by mean pooling: the token mean of each tangent
    /// sequence's output, `[steps · tangents, hidden]`. A block ending in
    /// `LayerNorm(Linear(a) + residual)` reduces its rows before that GEMM where the backend
    /// can (`pooled_linear_residual_norm_jvp`); any other block pools its full JVP.
    #[allow(clippy::too_many_arguments)]
    pub fn pooled_jvp<B: Backend>(
        &self,
        backend: &B,
        params: &LayerParams<B::Tensor>,
        geometry: Geometry,
        x: &B::Tensor,
        dx: TangentsIn<'_, B::Tensor>,
        batch: Batch,
        scores: ScoreMods<'_, B::Tensor>,
    ) -> Result<B::Tensor> {
        let last = self.steps.len() - 1;
        let Step::LinearResidualNorm { linear, residual } = self.steps[last] else {
            let (_, dy) = self.jvp(backend, params, geometry, x, dx, batch, scores)?;
            return backend.mean_pool(&dy, batch.tangent_seqs(), batch.tokens, params.hidden());
        };
        let walk = Walk::new(&self.ops, backend, params, geometry)?;
        let mut state = self.jvp_steps(&walk, x, dx, batch, scores, last)?;
        let (a, layer) = walk.linear_of(&self.ops, linear);
        walk.make_dense(&mut state.tangents, a, batch)?;
        walk.make_dense(&mut state.tangents, residual, batch)?;
        let (values, tangents) = (&state.values, &state.tangents);
        backend.pooled_linear_residual_norm_jvp(
            values.get(a)?,
            tangents.dense(a)?,
            values.get(residual)?,
            tangents.dense(residual)?,
            layer,
            batch,
            walk.residual_norm(&self.ops, linear),
        )
    }

    /// Runs the first `count` steps on primals and tangents.
    fn jvp_steps<'a, B: Backend>(
        &self,
        walk: &Walk<'_, B>,
        x: &'a B::Tensor,
        dx: TangentsIn<'a, B::Tensor>,
        batch: Batch,
        scores: ScoreMods<'_, B::Tensor>,
        count: usize,
    ) -> Result<JvpState<'a, B::Tensor>> {
        let values = Values::new(self.ops.len(), Held::Borrowed(x));
        let mut slots: Vec<Option<Tangent<'a, B::Tensor>>> = (0..=self.ops.len()).map(|_| None).collect();
        slots[0] = Some(match dx {
            TangentsIn::Dense(dx) => Tangent::Dense(Held::Borrowed(dx)),
            TangentsIn::TokenDirections { delta, directions } => {
                Tangent::TokenRows { rows: Held::Borrowed(delta), directions, dense: None }
            }
        });
        let mut state = JvpState { values, tangents: Tangents { slots } };
        for (index, step) in self.steps[..count].iter().enumerate() {
            for v in step.reads(&self.ops) {
                if walk.needs_dense(&self.ops, *step, v) {
                    walk.make_dense(&mut state.tangents, v, batch)?;
                }
            }
            let (y, dy) = walk.jvp_step(&self.ops, *step, &state, batch, scores)?;
            let out = Value::of_op(step.last_op());
            state.values.set(out, y);
            state.tangents.slots[out.index()] = Some(dy);
            state.values.drop_after(self, index);
            drop_read_by(&mut state.tangents.slots, self, index);
        }
        Ok(state)
    }
}

impl<B: Backend> Walk<'_, B> {
    /// Whether `step` reads the tangents of `v` in dense form: everything but a dense layer
    /// or attention reading token rows.
    fn needs_dense(&self, ops: &[Op], step: Step, v: Value) -> bool {
        !matches!(step, Step::Op { op } if matches!(ops[op], Op::Linear { x, .. } | Op::Attention { qkv: x } if x == v))
    }

    /// Makes the tangents of `v` dense, keeping their token-row form.
    fn make_dense(&self, tangents: &mut Tangents<'_, B::Tensor>, v: Value, batch: Batch) -> Result<()> {
        let width = self.width(v);
        if let Some(Tangent::TokenRows { rows, directions, dense: dense @ None }) = &mut tangents.slots[v.index()] {
            *dense =
                Some(self.backend.token_tangents(rows.get(), batch.steps, batch.tokens, width, directions.clone())?);
        }
        Ok(())
    }

    /// One step's primal value and its tangents.
    fn jvp_step<'a>(
        &self,
        ops: &[Op],
        step: Step,
        state: &JvpState<'_, B::Tensor>,
        batch: Batch,
        scores: ScoreMods<'_, B::Tensor>,
    ) -> Result<(B::Tensor, Tangent<'a, B::Tensor>)> {
        let (b, rows, trows) = (self.backend, batch.primal_rows(), batch.tangent_rows());
        let (values, tangents) = (&state.values, &state.tangents);
        let dense = |t: B::Tensor| Tangent::Dense(Held::Owned(t));
        match step {
            Step::LinearResidualNorm { linear, residual } => {
                let (x, layer) = self.linear_of(ops, linear);
                let z = b.matmul(values.get(x)?, rows, layer)?;
                let dz = b.matmul(tangents.dense(x)?, trows, layer)?;
                let ln = self.residual_norm(ops, linear);
                let (res, dres) = (values.get(residual)?, tangents.dense(residual)?);
                let (y, dy) = b.bias_residual_norm_jvp(&z, &layer.bias, res, &dz, dres, batch, ln)?;
                Ok((y, dense(dy)))
            }
            Step::LinearGelu { linear } => {
                let (x, layer) = self.linear_of(ops, linear);
                let pre = b.matmul(values.get(x)?, rows, layer)?;
                let dpre = b.matmul(tangents.dense(x)?, trows, layer)?;
                let (y, dy) = b.bias_gelu_jvp(&pre, &layer.bias, &dpre, batch, layer.out_dim)?;
                Ok((y, dense(dy)))
            }
            Step::Op { op } => match ops[op] {
                Op::Linear { x, weights } => {
                    let layer = self.params.linear(weights);
                    let y = b.linear(values.get(x)?, rows, layer)?;
                    let dy = match tangents.get(x)? {
                        Tangent::TokenRows { rows: d_rows, directions, .. } => Tangent::TokenRows {
                            rows: Held::Owned(b.matmul(d_rows.get(), batch.tokens, layer)?),
                            directions: directions.clone(),
                            dense: None,
                        },
                        Tangent::Dense(dx) => dense(b.matmul(dx.get(), trows, layer)?),
                    };
                    Ok((y, dy))
                }
                Op::Attention { qkv } => {
                    let heads = self.geometry.heads;
                    let (ctx, dctx) = match tangents.get(qkv)? {
                        Tangent::TokenRows { rows: d_rows, directions, .. } => b.attention_with_token_jvp(
                            values.get(qkv)?,
                            d_rows.get(),
                            directions.clone(),
                            batch,
                            heads,
                            scores,
                        )?,
                        Tangent::Dense(dqkv) => {
                            b.attention_with_jvp(values.get(qkv)?, dqkv.get(), batch, heads, scores)?
                        }
                    };
                    Ok((ctx, dense(dctx)))
                }
                Op::Add { a, b: other } => {
                    let y = b.add(values.get(a)?, values.get(other)?)?;
                    Ok((y, dense(b.add(tangents.dense(a)?, tangents.dense(other)?)?)))
                }
                Op::LayerNorm { x, weights } => {
                    let (norm, width) = (self.params.norm(weights), self.width(x));
                    let (y, saved) = b.layer_norm(values.get(x)?, rows, width, norm, self.geometry.eps)?;
                    Ok((y, dense(b.layer_norm_jvp(&saved, norm, tangents.dense(x)?, batch, width)?)))
                }
                Op::RmsNorm { x, weights } => {
                    let (norm, width) = (self.params.norm(weights), self.width(x));
                    let (y, saved) = b.rms_norm(values.get(x)?, rows, width, norm, self.geometry.eps)?;
                    Ok((y, dense(b.rms_norm_jvp(&saved, norm, tangents.dense(x)?, batch, width)?)))
                }
                Op::Gelu { x } => {
                    let y = b.gelu(values.get(x)?)?;
                    Ok((y, dense(b.gelu_jvp(values.get(x)?, tangents.dense(x)?, batch, self.width(x))?)))
                }
                Op::Gated { x, act } => {
                    let (primal, width) = (values.get(x)?, self.width(x) / 2);
                    let y = b.gated(primal, rows, width, act)?;
                    Ok((y, dense(b.gated_jvp(primal, tangents.dense(x)?, batch, width, act)?)))
                }
                Op::Dropout { .. } => Err(outside_training()),
            },
        }
    }
}
