//! Forward mode through a block: the primal of every step and, alongside, the JVP of all
//! `steps × tangents` tangents, each primal intermediate computed once and shared by its
//! tangents.
//!
//! Tangents travel in one of three forms (`Form`), each a special case of the next:
//! - token rows: tangent `m` of every step is row `directions.start + m` of a `[tokens, width]`
//!   tensor, on that row, and zero elsewhere, which is what the first block above the
//!   attributed layer receives (docs/design.md §3);
//! - step rows: the same, but the row differs between steps, `[steps, tokens, width]`; what
//!   token rows become through a norm or an activation, whose Jacobian depends on the step's
//!   primal but stays on the row (a pre-norm block's first ops);
//! - dense: `[steps, tangents, tokens, width]`.
//!
//! A dense layer maps token rows to token rows with a GEMM over `tokens` rows, and step rows
//! to step rows over `steps · tokens` rows, instead of all `steps · tangents · tokens` tangent
//! rows; attention takes token rows as they are (`attention_with_token_jvp`); every other op
//! reads the least general form it can take (`Walk::reads_as`).

use std::ops::Range;

use super::plan::Step;
use super::{drop_read_by, outside_training, Block, Geometry, Held, Op, Value, Values, Walk};
use crate::backend::{Backend, Batch, ScoreMods};
use crate::error::{Error, Result};
use crate::params::Weights;

/// The tangents entering a block's JVP.
#[derive(Clone)]
pub enum TangentsIn<'a, T> {
    /// Any tangents, `[steps, tangents, tokens, hidden]`.
    Dense(&'a T),
    /// Token directions: tangent `m` of every step is row `directions.start + m` of `delta`
    /// (`[tokens, hidden]`) on that row and zero elsewhere.
    TokenDirections { delta: &'a T, directions: Range<usize> },
}

/// How one value's tangents are laid out, from the least to the most general.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Form {
    /// `[tokens, width]`: tangent `m` of every step is row `directions.start + m`, on that row.
    TokenRows = 0,
    /// `[steps, tokens, width]`: tangent `m` of step `s` is row `(s, directions.start + m)`,
    /// on that row.
    StepRows = 1,
    /// `[steps, tangents, tokens, width]`.
    Dense = 2,
}

/// One value's tangents, in the form an op wrote them and in any more general form made of
/// it since (each made once, on first read).
struct Tangent<'a, T> {
    forms: [Option<Held<'a, T>>; 3],
    /// Which token each tangent sits on (the row forms' `directions`; unused when dense).
    directions: Range<usize>,
}

impl<'a, T> Tangent<'a, T> {
    fn new(form: Form, held: Held<'a, T>, directions: Range<usize>) -> Self {
        let mut forms = [None, None, None];
        forms[form as usize] = Some(held);
        Tangent { forms, directions }
    }

    fn dense(t: T) -> Self {
        Tangent::new(Form::Dense, Held::Owned(t), 0..0)
    }

    /// The form the tangents were written in.
    fn form(&self) -> Form {
        [Form::TokenRows, Form::StepRows, Form::Dense]
            .into_iter()
            .find(|&f| self.forms[f as usize].is_some())
            .unwrap_or(Form::Dense)
    }

    fn get(&self, form: Form) -> Option<&T> {
        self.forms[form as usize].as_ref().map(Held::get)
    }

    /// The dense tensor, owned, where the walk made or wrote it.
    fn into_dense(mut self) -> Option<T> {
        match self.forms[Form::Dense as usize].take() {
            Some(Held::Owned(t)) => Some(t),
            _ => None,
        }
    }
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

    /// The tangents of `v` in `form` (made by `Walk::make`).
    fn as_form(&self, v: Value, form: Form) -> Result<&T> {
        self.get(v)?
            .get(form)
            .ok_or_else(|| Error::Internal(format!("the tangents of block value {v:?} were not made {form:?}")))
    }

    fn dense(&self, v: Value) -> Result<&T> {
        self.as_form(v, Form::Dense)
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
    pub fn jvp<'p, B: Backend>(
        &self,
        backend: &B,
        params: impl Into<Weights<'p, B::Tensor>>,
        geometry: Geometry,
        x: &B::Tensor,
        dx: TangentsIn<'_, B::Tensor>,
        batch: Batch,
        scores: ScoreMods<'_, B::Tensor>,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let params: Weights<'p, B::Tensor> = params.into();
        let walk = Walk::new(&self.ops, backend, params, geometry)?;
        let mut state = self.jvp_steps(&walk, x, dx, batch, scores, self.steps.len())?;
        self.take_output(&walk, &mut state, batch)
    }

    /// The block's output and its tangents, dense, from a walk that has run every step.
    fn take_output<B: Backend>(
        &self,
        walk: &Walk<'_, B>,
        state: &mut JvpState<'_, B::Tensor>,
        batch: Batch,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let output = self.output();
        walk.make(&mut state.tangents, output, Form::Dense, batch)?;
        let dy = state.tangents.slots[output.index()]
            .take()
            .and_then(Tangent::into_dense)
            .ok_or_else(|| Error::Internal("a block's output tangents are not its own".into()))?;
        Ok((state.values.take(output)?, dy))
    }

    /// The JVP of the block followed by mean pooling: the token mean of each tangent
    /// sequence's output, `[steps · tangents, hidden]`. A block ending in
    /// `LayerNorm(Linear(a) + residual)` reduces its rows before that GEMM where the backend
    /// can (`pooled_linear_residual_norm_jvp`); any other block pools its full JVP.
    #[allow(clippy::too_many_arguments)]
    pub fn pooled_jvp<'p, B: Backend>(
        &self,
        backend: &B,
        params: impl Into<Weights<'p, B::Tensor>>,
        geometry: Geometry,
        x: &B::Tensor,
        dx: TangentsIn<'_, B::Tensor>,
        batch: Batch,
        scores: ScoreMods<'_, B::Tensor>,
    ) -> Result<B::Tensor> {
        let params: Weights<'p, B::Tensor> = params.into();
        let last = self.steps.len() - 1;
        let Step::LinearResidualNorm { linear, residual } = self.steps[last] else {
            let (_, dy) = self.jvp(backend, params, geometry, x, dx, batch, scores)?;
            return backend.mean_pool(&dy, batch.tangent_seqs(), batch.tokens, params.hidden());
        };
        let walk = Walk::new(&self.ops, backend, params, geometry)?;
        let mut state = self.jvp_steps(&walk, x, dx, batch, scores, last)?;
        let (a, layer) = walk.linear_of(&self.ops, linear);
        walk.make(&mut state.tangents, a, Form::Dense, batch)?;
        walk.make(&mut state.tangents, residual, Form::Dense, batch)?;
        let (values, tangents) = (&state.values, &state.tangents);
        backend.pooled_linear_residual_norm_jvp(
            values.get(a)?,
            tangents.dense(a)?,
            values.get(residual)?,
            tangents.dense(residual)?,
            layer,
            batch,
            walk.residual_norm(&self.ops, linear)?,
        )
    }

    /// The JVP of the block's output at one token, `row`, alone: `(y, ẏ)` as
    /// `[steps, 1, hidden]` and `[steps, tangents, 1, hidden]`, what CLS and last-token pooling
    /// read of the last layer. Every op after attention is row-wise, so from attention's output
    /// on, the walk carries that row only (the feed-forward's GEMMs on one row per tangent
    /// instead of `tokens`); attention itself still reads every token's keys and values.
    #[allow(clippy::too_many_arguments)]
    pub fn jvp_at_row<'p, B: Backend>(
        &self,
        backend: &B,
        params: impl Into<Weights<'p, B::Tensor>>,
        geometry: Geometry,
        x: &B::Tensor,
        dx: TangentsIn<'_, B::Tensor>,
        batch: Batch,
        scores: ScoreMods<'_, B::Tensor>,
        row: usize,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let params: Weights<'p, B::Tensor> = params.into();
        let attention = |step: &Step| matches!(step, Step::Op { op } if matches!(self.ops[*op], Op::Attention { .. }));
        let (Some(last_attention), true) = (self.steps.iter().rposition(attention), row < batch.tokens) else {
            // No attention to narrow after (or no such row): the whole JVP, then the row.
            let (y, dy) = self.jvp(backend, params, geometry, x, dx, batch, scores)?;
            let one = Batch { tokens: 1, ..batch };
            let width = params.hidden();
            return Ok((
                backend.gather_rows(&y, width, &row_indices(batch.steps, batch.tokens, row))?,
                backend.gather_rows(&dy, width, &row_indices(one.tangent_seqs(), batch.tokens, row))?,
            ));
        };
        let walk = Walk::new(&self.ops, backend, params, geometry)?;
        let mut state = self.jvp_steps(&walk, x, dx, batch, scores, last_attention + 1)?;
        // Every value still held, primal and tangents, narrowed to `row`.
        let one = Batch { tokens: 1, ..batch };
        for v in 0..=self.ops.len() {
            let value = Value(v);
            let width = walk.width(value);
            if state.values.slots[v].is_some() {
                let primal = backend.gather_rows(
                    state.values.get(value)?,
                    width,
                    &row_indices(batch.steps, batch.tokens, row),
                )?;
                state.values.set(value, primal);
            }
            if state.tangents.slots[v].is_some() {
                walk.make(&mut state.tangents, value, Form::Dense, batch)?;
                let rows = row_indices(one.tangent_seqs(), batch.tokens, row);
                let narrowed = backend.gather_rows(state.tangents.dense(value)?, width, &rows)?;
                state.tangents.slots[v] = Some(Tangent::dense(narrowed));
            }
        }
        self.run_steps(&walk, &mut state, last_attention + 1..self.steps.len(), one, scores)?;
        self.take_output(&walk, &mut state, one)
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
            TangentsIn::Dense(dx) => Tangent::new(Form::Dense, Held::Borrowed(dx), 0..0),
            TangentsIn::TokenDirections { delta, directions } => {
                Tangent::new(Form::TokenRows, Held::Borrowed(delta), directions)
            }
        });
        let mut state = JvpState { values, tangents: Tangents { slots } };
        self.run_steps(walk, &mut state, 0..count, batch, scores)?;
        Ok(state)
    }

    /// Runs steps `range` on primals and tangents, from `state`.
    fn run_steps<B: Backend>(
        &self,
        walk: &Walk<'_, B>,
        state: &mut JvpState<'_, B::Tensor>,
        range: std::ops::Range<usize>,
        batch: Batch,
        scores: ScoreMods<'_, B::Tensor>,
    ) -> Result<()> {
        for index in range {
            let step = &self.steps[index];
            let form = walk.reads_as(&self.ops, *step, &state.tangents)?;
            for v in step.reads(&self.ops) {
                walk.make(&mut state.tangents, v, form, batch)?;
            }
            let (y, dy) = walk.jvp_step(&self.ops, *step, form, state, batch, scores)?;
            let out = Value::of_op(step.last_op());
            state.values.set(out, y);
            state.tangents.slots[out.index()] = Some(dy);
            state.values.drop_after(self, index);
            drop_read_by(&mut state.tangents.slots, self, index);
        }
        Ok(())
    }
}

/// Row `row` of each of `seqs` sequences of `tokens` rows, as indices into their rows.
fn row_indices(seqs: usize, tokens: usize, row: usize) -> Vec<u32> {
    (0..seqs).map(|s| (s * tokens + row) as u32).collect()
}

impl<B: Backend> Walk<'_, B> {
    /// The form `step` reads its inputs' tangents in, the least general one it can take:
    /// - a dense layer takes any form, and writes the form it reads;
    /// - attention takes token rows, or dense tangents;
    /// - a sum reads both terms in the more general of their forms;
    /// - a norm or an activation keeps a tangent on its row, but with a Jacobian that depends
    ///   on the step's primal: step rows at least;
    /// - the fused steps read dense tangents.
    fn reads_as(&self, ops: &[Op], step: Step, tangents: &Tangents<'_, B::Tensor>) -> Result<Form> {
        let form = |v: Value| -> Result<Form> { Ok(tangents.get(v)?.form()) };
        let Step::Op { op } = step else { return Ok(Form::Dense) };
        Ok(match ops[op] {
            Op::Linear { x, .. } => form(x)?,
            Op::Attention { qkv } => match form(qkv)? {
                Form::TokenRows => Form::TokenRows,
                _ => Form::Dense,
            },
            Op::Add { a, b } => form(a)?.max(form(b)?),
            Op::LayerNorm { x, .. }
            | Op::RmsNorm { x, .. }
            | Op::HeadNorm { qkv: x }
            | Op::Gelu { x }
            | Op::Gated { x, .. }
            | Op::Activation { x, .. } => form(x)?.max(Form::StepRows),
            Op::Dropout { .. } => return Err(outside_training()),
        })
    }

    /// Makes the tangents of `v` available in `form` (no less general than the form they were
    /// written in), keeping the forms already held.
    fn make(&self, tangents: &mut Tangents<'_, B::Tensor>, v: Value, form: Form, batch: Batch) -> Result<()> {
        let (b, width) = (self.backend, self.width(v));
        let tangent = tangents.slots[v.index()]
            .as_mut()
            .ok_or_else(|| Error::Internal(format!("the tangent of block value {v:?} is not held")))?;
        let from = tangent.form();
        if tangent.get(form).is_some() {
            return Ok(());
        }
        if form < from {
            return Err(Error::Internal(format!("block value {v:?}'s {from:?} tangents cannot be read as {form:?}")));
        }
        let (held, directions) =
            (tangent.get(from).ok_or_else(|| Error::Internal("an empty tangent".into()))?, tangent.directions.clone());
        let made = match (from, form) {
            // Every step's copy of the rows: one "token" `tokens · width` wide.
            (Form::TokenRows, Form::StepRows) => b.token_tangents(held, batch.steps, 1, batch.tokens * width, 0..1)?,
            (Form::TokenRows, Form::Dense) => b.token_tangents(held, batch.steps, batch.tokens, width, directions)?,
            (Form::StepRows, Form::Dense) => {
                // Row `(s, directions.start + m)` of the step rows is tangent `m` of step `s`, on
                // that token, zero on the others.
                let (count, tokens) = (directions.len(), batch.tokens);
                let at = |row_of: &dyn Fn(usize, usize) -> usize| -> Vec<u32> {
                    (0..batch.steps)
                        .flat_map(|s| directions.clone().map(move |t| (s, t)))
                        .map(|(s, t)| row_of(s, t) as u32)
                        .collect()
                };
                let picked = b.gather_rows(held, width, &at(&|s, t| s * tokens + t))?;
                let into = at(&|s, t| (s * count + t - directions.start) * tokens + t);
                b.scatter_rows(&picked, width, &into, batch.steps * count * tokens)?
            }
            _ => return Err(Error::Internal(format!("no way to make {from:?} tangents {form:?}"))),
        };
        tangent.forms[form as usize] = Some(Held::Owned(made));
        Ok(())
    }

    /// One step's primal value and its tangents, the step reading its inputs' tangents in
    /// `form` (`reads_as`).
    fn jvp_step<'a>(
        &self,
        ops: &[Op],
        step: Step,
        form: Form,
        state: &JvpState<'_, B::Tensor>,
        batch: Batch,
        scores: ScoreMods<'_, B::Tensor>,
    ) -> Result<(B::Tensor, Tangent<'a, B::Tensor>)> {
        let (b, rows, trows) = (self.backend, batch.primal_rows(), batch.tangent_rows());
        let (values, tangents) = (&state.values, &state.tangents);
        let dense = Tangent::dense;
        // Row forms hold one tangent row per primal row (step rows) or per token (token rows):
        // a row-wise op runs on them as on one tangent per step.
        let (tangent_rows, per_row) = match form {
            Form::TokenRows => (batch.tokens, Batch { steps: 1, tangents: 1, ..batch }),
            Form::StepRows => (rows, Batch { tangents: 1, ..batch }),
            Form::Dense => (trows, batch),
        };
        let tangent = |v: Value| tangents.as_form(v, form);
        let in_form = |v: Value, t: B::Tensor| -> Result<Tangent<'a, B::Tensor>> {
            Ok(Tangent::new(form, Held::Owned(t), tangents.get(v)?.directions.clone()))
        };
        match step {
            Step::LinearResidualNorm { linear, residual } => {
                let (x, layer) = self.linear_of(ops, linear);
                let z = b.matmul(values.get(x)?, rows, layer)?;
                let dz = b.matmul(tangents.dense(x)?, trows, layer)?;
                let ln = self.residual_norm(ops, linear)?;
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
                    Ok((y, in_form(x, b.matmul(tangent(x)?, tangent_rows, layer)?)?))
                }
                Op::Attention { qkv } => {
                    // Rotation is linear: the primal and its tangents (token rows or dense, each
                    // row at position `row % tokens`) turn alike.
                    let (geometry, heads, tokens) = (self.geometry, self.geometry.heads, batch.tokens);
                    let (primal, d_qkv) = (values.get(qkv)?, tangent(qkv)?);
                    let (rotated, d_rotated) =
                        (geometry.rotated(b, primal, tokens)?, geometry.rotated(b, d_qkv, tokens)?);
                    let (primal, d_qkv) = (rotated.as_ref().unwrap_or(primal), d_rotated.as_ref().unwrap_or(d_qkv));
                    let (ctx, dctx) = match form {
                        Form::TokenRows => {
                            let directions = tangents.get(qkv)?.directions.clone();
                            b.attention_with_token_jvp(primal, d_qkv, directions, batch, heads, scores)?
                        }
                        _ => b.attention_with_jvp(primal, d_qkv, batch, heads, scores)?,
                    };
                    Ok((ctx, dense(dctx)))
                }
                Op::HeadNorm { qkv } => {
                    let (norms, heads) = (self.params.head_norms()?, self.geometry.heads);
                    let (y, saved) =
                        b.head_rms_norm(values.get(qkv)?, heads, &norms.query, &norms.key, self.geometry.eps)?;
                    let dy = b.head_rms_norm_jvp(&saved, &norms.query, &norms.key, tangent(qkv)?, per_row, heads)?;
                    Ok((y, in_form(qkv, dy)?))
                }
                Op::Add { a, b: other } => {
                    let y = b.add(values.get(a)?, values.get(other)?)?;
                    Ok((y, in_form(a, b.add(tangent(a)?, tangent(other)?)?)?))
                }
                Op::LayerNorm { x, weights } => {
                    let (norm, width) = (self.params.norm(weights)?, self.width(x));
                    let (y, saved) = b.layer_norm(values.get(x)?, rows, width, norm, self.geometry.eps)?;
                    Ok((y, in_form(x, b.layer_norm_jvp(&saved, norm, tangent(x)?, per_row, width)?)?))
                }
                Op::RmsNorm { x, weights } => {
                    let (norm, width) = (self.params.norm(weights)?, self.width(x));
                    let (y, saved) = b.rms_norm(values.get(x)?, rows, width, norm, self.geometry.eps)?;
                    Ok((y, in_form(x, b.rms_norm_jvp(&saved, norm, tangent(x)?, per_row, width)?)?))
                }
                Op::Gelu { x } => {
                    let y = b.gelu(values.get(x)?)?;
                    Ok((y, in_form(x, b.gelu_jvp(values.get(x)?, tangent(x)?, per_row, self.width(x))?)?))
                }
                Op::Gated { x, act } => {
                    let (primal, width) = (values.get(x)?, self.width(x) / 2);
                    let y = b.gated(primal, rows, width, act)?;
                    Ok((y, in_form(x, b.gated_jvp(primal, tangent(x)?, per_row, width, act)?)?))
                }
                Op::Activation { x, act } => {
                    let (primal, width) = (values.get(x)?, self.width(x));
                    let y = b.activation(primal, act)?;
                    Ok((y, in_form(x, b.activation_jvp(primal, tangent(x)?, per_row, width, act)?)?))
                }
                Op::Dropout { .. } => Err(outside_training()),
            },
        }
    }
}
