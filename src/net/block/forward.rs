//! The primal pass of a block: each op's forward, the fused steps as the backend's block ops.

use super::plan::Step;
use super::{outside_training, Block, Geometry, Held, Op, Value, Values, Walk};
use crate::backend::{Backend, NormSaved, ResidualNorm, ScoreMods};
use crate::error::{Error, Result};
use crate::params::Weights;

impl Block {
    /// The block over `seqs` sequences of `tokens` rows: `[seqs, tokens, hidden]` → same.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<'p, B: Backend>(
        &self,
        backend: &B,
        params: impl Into<Weights<'p, B::Tensor>>,
        geometry: Geometry,
        x: &B::Tensor,
        seqs: usize,
        tokens: usize,
        scores: ScoreMods<'_, B::Tensor>,
    ) -> Result<B::Tensor> {
        let params: Weights<'p, B::Tensor> = params.into();
        let attend = |qkv: &B::Tensor| Ok(geometry.attention(backend, qkv, seqs, tokens, scores)?.0);
        self.forward_rows(backend, params, geometry, x, seqs * tokens, attend)
    }

    /// The block over `rows` rows whose attention is `attend` (`qkv` → context). Every other op
    /// is row-wise, so the rows need not be laid out as equal-length sequences: packed texts of
    /// different lengths run end to end, and `attend` arranges them for attention, and turns
    /// them by position where the layer is rotary (`Geometry::attention`).
    pub fn forward_rows<'p, B: Backend>(
        &self,
        backend: &B,
        params: impl Into<Weights<'p, B::Tensor>>,
        geometry: Geometry,
        x: &B::Tensor,
        rows: usize,
        attend: impl Fn(&B::Tensor) -> Result<B::Tensor>,
    ) -> Result<B::Tensor> {
        let params: Weights<'p, B::Tensor> = params.into();
        let walk = Walk::new(&self.ops, backend, params, geometry)?;
        let mut values = Values::new(self.ops.len(), Held::Borrowed(x));
        for (index, step) in self.steps.iter().enumerate() {
            let y = walk.forward_step(&self.ops, *step, &values, rows, &attend)?;
            values.set(Value::of_op(step.last_op()), y);
            values.drop_after(self, index);
        }
        values.take(self.output())
    }
}

/// A norm's output and the statistics it keeps.
type Normed<T> = (T, NormSaved<T>);

impl<B: Backend> Walk<'_, B> {
    /// `LayerNorm` of a residual sum as the fused block ops take it.
    pub(super) fn residual_norm(&self, ops: &[Op], linear: usize) -> Result<ResidualNorm<'_, B::Tensor>> {
        let Op::LayerNorm { weights, .. } = ops[linear + 2] else { unreachable!("planned as LinearResidualNorm") };
        Ok(ResidualNorm {
            norm: self.params.norm(weights)?,
            width: self.width(Value::of_op(linear)),
            eps: self.geometry.eps,
        })
    }

    /// The dense layer op `index` applies (the planner only groups ops starting with one).
    pub(super) fn linear_of(&self, ops: &[Op], index: usize) -> (Value, &crate::params::Linear<B::Tensor>) {
        let Op::Linear { x, weights } = ops[index] else { unreachable!("a planned step starts with a linear op") };
        (x, self.params.linear(weights))
    }

    /// One step's primal value.
    fn forward_step(
        &self,
        ops: &[Op],
        step: Step,
        values: &Values<'_, B::Tensor>,
        rows: usize,
        attend: &impl Fn(&B::Tensor) -> Result<B::Tensor>,
    ) -> Result<B::Tensor> {
        let b = self.backend;
        match step {
            Step::LinearResidualNorm { linear, residual } => {
                let (x, layer) = self.linear_of(ops, linear);
                let z = b.matmul(values.get(x)?, rows, layer)?;
                b.bias_residual_norm(&z, &layer.bias, values.get(residual)?, rows, self.residual_norm(ops, linear)?)
            }
            Step::LinearGelu { linear } => {
                let (x, layer) = self.linear_of(ops, linear);
                b.bias_gelu(&b.matmul(values.get(x)?, rows, layer)?, rows, &layer.bias)
            }
            Step::Op { op } => self.forward_op(ops[op], values, rows, attend),
        }
    }

    /// A norm op's forward pass with the statistics its derivatives read, for the walks that
    /// keep them (`None` for any other op): a norm of rows, or QK-norm of heads.
    pub(super) fn norm_forward(
        &self,
        op: Op,
        values: &Values<'_, B::Tensor>,
        rows: usize,
    ) -> Result<Option<Normed<B::Tensor>>> {
        if let Op::HeadNorm { qkv } = op {
            let norms = self.params.head_norms()?;
            let (heads, eps) = (self.geometry.heads, self.geometry.eps);
            return Ok(Some(self.backend.head_rms_norm(values.get(qkv)?, heads, &norms.query, &norms.key, eps)?));
        }
        let Some((kind, x, weights)) = op.norm() else { return Ok(None) };
        let norm = self.params.norm(weights)?;
        Ok(Some(kind.forward(self.backend, values.get(x)?, rows, self.width(x), norm, self.geometry.eps)?))
    }

    /// Each op's forward, alone.
    pub(super) fn forward_op(
        &self,
        op: Op,
        values: &Values<'_, B::Tensor>,
        rows: usize,
        attend: &impl Fn(&B::Tensor) -> Result<B::Tensor>,
    ) -> Result<B::Tensor> {
        let b = self.backend;
        match op {
            Op::Linear { x, weights } => b.linear(values.get(x)?, rows, self.params.linear(weights)),
            Op::Attention { qkv } => attend(values.get(qkv)?),
            Op::Add { a, b: other } => b.add(values.get(a)?, values.get(other)?),
            Op::LayerNorm { .. } | Op::RmsNorm { .. } | Op::HeadNorm { .. } => {
                match self.norm_forward(op, values, rows)? {
                    Some((y, _)) => Ok(y),
                    None => Err(Error::Internal(format!("{op:?} is not a norm"))),
                }
            }
            Op::Gelu { x } => b.gelu(values.get(x)?),
            Op::Gated { x, act } => b.gated(values.get(x)?, rows, self.width(x) / 2, act),
            Op::Activation { x, act } => b.activation(values.get(x)?, act),
            Op::Dropout { .. } => Err(outside_training()),
        }
    }
}
