//! The rewrites of the primal and forward-mode walks: a block's ops grouped into the steps they
//! run as. Where the description matches a pattern that a backend fuses, the pattern becomes
//! one step; every other op is a step of its own.
//!
//! | pattern | step | backend op |
//! |---|---|---|
//! | `LayerNorm(Linear(x) + r)`, the linear's output and the sum read by nothing else | `LinearResidualNorm` | `matmul`, then `bias_residual_norm` (`_jvp`) |
//! | `Gelu(Linear(x))`, the linear's output read by nothing else | `LinearGelu` | `matmul`, then `bias_gelu` (`_jvp`) |
//!
//! A pre-norm block (`x + Linear(…)`, its norm at the start of the next sublayer) matches only
//! `Gelu(Linear(x))`: its sums and norms run as the small ops (each sum is read twice, by the
//! next norm and the next residual), which is correct and what a backend fuses next.

use super::{readers, Op, Value};

/// One step of a primal or forward-mode walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Op `op`, alone.
    Op { op: usize },
    /// Ops `linear`, `linear + 1` (the sum with `residual`) and `linear + 2` (the norm).
    LinearResidualNorm { linear: usize, residual: Value },
    /// Ops `linear` and `linear + 1` (GELU).
    LinearGelu { linear: usize },
}

impl Step {
    /// The op whose value the step writes (earlier ops of the step write nothing kept).
    pub(super) fn last_op(&self) -> usize {
        match *self {
            Step::Op { op } => op,
            Step::LinearResidualNorm { linear, .. } => linear + 2,
            Step::LinearGelu { linear } => linear + 1,
        }
    }

    /// The values the step reads from outside itself.
    pub(super) fn reads(&self, ops: &[Op]) -> Vec<Value> {
        match *self {
            Step::Op { op } => ops[op].inputs(),
            Step::LinearResidualNorm { linear, residual } => {
                let mut reads = ops[linear].inputs();
                reads.push(residual);
                reads
            }
            Step::LinearGelu { linear } => ops[linear].inputs(),
        }
    }
}

/// The steps of `ops`.
pub(super) fn plan(ops: &[Op]) -> Vec<Step> {
    let readers = readers(ops);
    let read_once = |op: usize| readers[Value::of_op(op).index()] == 1;
    let mut steps = Vec::new();
    let mut index = 0;
    while index < ops.len() {
        let linear_out = Value::of_op(index);
        let step = match (ops[index], ops.get(index + 1).copied(), ops.get(index + 2).copied()) {
            (Op::Linear { .. }, Some(Op::Add { a, b }), Some(Op::LayerNorm { x, .. }))
                if (a == linear_out || b == linear_out)
                    && a != b
                    && x == Value::of_op(index + 1)
                    && read_once(index)
                    && read_once(index + 1) =>
            {
                let residual = if a == linear_out { b } else { a };
                Step::LinearResidualNorm { linear: index, residual }
            }
            (Op::Linear { .. }, Some(Op::Gelu { x }), _) if x == linear_out && read_once(index) => {
                Step::LinearGelu { linear: index }
            }
            _ => Step::Op { op: index },
        };
        index = step.last_op() + 1;
        steps.push(step);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{LinearId, NormId};

    #[test]
    fn a_post_ln_layer_fuses_its_sums_norms_and_gelu() {
        let block = crate::net::families::post_ln::block();
        assert_eq!(
            block.steps,
            vec![
                Step::Op { op: 0 },
                Step::Op { op: 1 },
                Step::LinearResidualNorm { linear: 2, residual: Value::INPUT },
                Step::LinearGelu { linear: 5 },
                Step::LinearResidualNorm { linear: 7, residual: Value::of_op(4) },
            ]
        );
    }

    #[test]
    fn a_value_read_twice_is_not_fused_away() {
        // `Linear(x)` feeds the sum and GELU: neither rewrite may swallow it.
        let ops = vec![
            Op::Linear { x: Value::INPUT, weights: LinearId::FfnIn },
            Op::Gelu { x: Value::of_op(0) },
            Op::Add { a: Value::of_op(0), b: Value::of_op(1) },
            Op::LayerNorm { x: Value::of_op(2), weights: NormId::Ffn },
        ];
        assert_eq!(plan(&ops), vec![Step::Op { op: 0 }, Step::Op { op: 1 }, Step::Op { op: 2 }, Step::Op { op: 3 }]);
    }
}
