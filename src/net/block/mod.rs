//! A transformer block as data: a short list of ops over named values, from which every pass
//! the engine runs is derived by walking it (docs/design.md §3, "Blocks are descriptions").
//!
//! - `forward`, `forward_rows`: the primal pass (`forward.rs`);
//! - `forward_taped` and `vjp`: reverse mode (`vjp.rs`);
//! - `jvp` and `pooled_jvp`: forward mode, with dense tangents or token directions (`jvp.rs`);
//! - `forward_training` and `backward_training`: training's passes over packed rows, with
//!   dropout, to every weight's gradient (`train.rs`).
//!
//! Each op kind states its forward, JVP and VJP once, in those walks. What a generic autodiff
//! cannot see enters as rewrites that apply wherever the description matches their pattern
//! (`plan.rs`): a dense layer followed by a residual sum and a LayerNorm, or by GELU, runs as the
//! backend's fused block op; tangents that are one token row each pass through a dense layer as
//! `tokens` rows and enter attention in that form; a block ending in
//! `LayerNorm(Linear(a) + residual)` under mean pooling reduces its rows before the last GEMM
//! in forward mode, and starts reverse mode from rank-one cotangents.
//!
//! A family's block is written in `net/families/`, one file each.

mod forward;
mod jvp;
mod plan;
mod train;
mod vjp;

use std::cell::RefCell;

pub use jvp::TangentsIn;
pub use train::{rows_batch, BlockGrads, TrainingTape};
pub use vjp::{BlockTape, CotangentsIn, InputCotangents, InputForm, SplitCotangents};

use self::plan::{plan, Step};
use crate::backend::{Activation, Backend, Batch, Heads, NormSaved, WeightGradients};
use crate::error::{Error, Result};
use crate::net::flops::BlockCost;
use crate::params::{LinearId, Norm, NormId, NormPart, Weights};

/// A value inside a block: its input (`Value::INPUT`) or the output of one of its ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Value(usize);

impl Value {
    /// The block's input, `[rows, hidden]`.
    pub const INPUT: Value = Value(0);

    /// The value op `index` writes.
    fn of_op(index: usize) -> Value {
        Value(index + 1)
    }

    fn index(self) -> usize {
        self.0
    }
}

/// One op of a block. Every op reads values written before it, so a block is already in the
/// order it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `x Wᵀ + b`, the layer's dense weights `weights`.
    Linear { x: Value, weights: LinearId },
    /// Multi-head self-attention of `[q | k | v]` rows: `softmax(QKᵀ/√d + score mods) V`,
    /// queries and keys first turned by position where the layer is rotary
    /// (`Geometry::rope_theta`; rotation is linear, so it belongs to the op rather than being
    /// one: every walk turns the primal and the tangents it hands attention, and turns the
    /// cotangents back, in the padded layout whose row index gives the position).
    Attention { qkv: Value },
    /// QK-norm: RMSNorm over each head's queries and over its keys of `[q | k | v]` rows
    /// (the layer's `HeadNorms`); values pass through.
    HeadNorm { qkv: Value },
    /// `a + b`, a residual sum.
    Add { a: Value, b: Value },
    /// LayerNorm over the value's width with the layer's `weights` (`γ`, `β`).
    LayerNorm { x: Value, weights: NormId },
    /// RMSNorm over the value's width with the layer's `weights` (`γ` only).
    RmsNorm { x: Value, weights: NormId },
    /// GELU (exact, erf), elementwise.
    Gelu { x: Value },
    /// A gated FFN's activation: each row of `x` is `[gate | up]`, the output `act(gate) ⊙ up`,
    /// half as wide.
    Gated { x: Value, act: Activation },
    /// An activation other than BERT's GELU, elementwise (T5's ReLU).
    Activation { x: Value, act: Activation },
    /// Dropout where training applies it (the identity in every other pass, which never sees
    /// it: `Block::new` takes it out of their ops).
    Dropout { x: Value },
}

impl Op {
    /// The values the op reads.
    fn inputs(&self) -> Vec<Value> {
        match *self {
            Op::Linear { x, .. }
            | Op::LayerNorm { x, .. }
            | Op::RmsNorm { x, .. }
            | Op::Gelu { x }
            | Op::Gated { x, .. }
            | Op::Activation { x, .. }
            | Op::Dropout { x } => vec![x],
            Op::Attention { qkv } | Op::HeadNorm { qkv } => vec![qkv],
            Op::Add { a, b } => vec![a, b],
        }
    }
}

impl Op {
    /// A norm op's kind, input and weights.
    fn norm(&self) -> Option<(NormKind, Value, NormId)> {
        match *self {
            Op::LayerNorm { x, weights } => Some((NormKind::Layer, x, weights)),
            Op::RmsNorm { x, weights } => Some((NormKind::Rms, x, weights)),
            _ => None,
        }
    }

    /// The operand this op's backward pass reads from the tape, besides what it saves of its
    /// own forward pass (a norm's statistics, attention's probabilities): an activation's
    /// input, attention's `q|k|v`, and, where weight gradients are taken, a dense layer's input.
    /// Training keeps attention's `q|k|v` itself, in the padded layout it ran in.
    fn backward_reads(&self, weight_grads: bool) -> Option<Value> {
        match *self {
            Op::Gelu { x } | Op::Gated { x, .. } | Op::Activation { x, .. } => Some(x),
            Op::Attention { qkv } if !weight_grads => Some(qkv),
            Op::Linear { x, .. } if weight_grads => Some(x),
            _ => None,
        }
    }
}

/// For each value of `ops`, whether a backward pass reads it from the tape.
fn kept_by_backward(ops: &[Op], weight_grads: bool) -> Vec<bool> {
    let mut kept = vec![false; ops.len() + 1];
    ops.iter().filter_map(|op| op.backward_reads(weight_grads)).for_each(|v| kept[v.index()] = true);
    kept
}

/// What a reverse walk reads of its forward pass: the operands `Op::backward_reads` names, by
/// value, and what each op saved of its own pass, by op (`A`: what attention saves, which
/// differs between attribution's walk and training's).
struct Taped<T, A> {
    kept: Vec<Option<T>>,
    saved: Vec<Saved<T, A>>,
}

/// What one op saved of its forward pass.
enum Saved<T, A> {
    Nothing,
    Attention(A),
    Norm(NormSaved<T>),
}

impl<T, A> Taped<T, A> {
    /// The tape of a forward walk that has run: the values `keep` marks, taken from `values`.
    fn collect(values: &mut Values<'_, T>, keep: &[bool], saved: Vec<Saved<T, A>>) -> Result<Self> {
        let kept = keep.iter().enumerate().map(|(v, &keep)| keep.then(|| values.take(Value(v))).transpose());
        Ok(Taped { kept: kept.collect::<Result<_>>()?, saved })
    }

    fn kept(&self, v: Value) -> Result<&T> {
        self.kept[v.index()].as_ref().ok_or_else(|| Error::Internal(format!("block value {v:?} is not on the tape")))
    }

    fn norm(&self, op: usize) -> Result<&NormSaved<T>> {
        match &self.saved[op] {
            Saved::Norm(saved) => Ok(saved),
            _ => Err(Error::Internal(format!("op {op} kept no norm statistics"))),
        }
    }

    fn attention(&self, op: usize) -> Result<&A> {
        match &self.saved[op] {
            Saved::Attention(saved) => Ok(saved),
            _ => Err(Error::Internal(format!("op {op} kept nothing of its attention"))),
        }
    }
}

/// Which norm an op is, or a description means where it names only the kind (a family's
/// final norm, its embeddings' norm). Each kind's forward and VJP rules are stated here once,
/// for the block walks and the embeddings alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    Layer,
    Rms,
}

impl NormKind {
    /// The norm of each of `rows` rows of `x` (`width` wide), with the statistics its
    /// derivatives read.
    pub fn forward<B: Backend>(
        self,
        backend: &B,
        x: &B::Tensor,
        rows: usize,
        width: usize,
        norm: &Norm<B::Tensor>,
        eps: f64,
    ) -> Result<(B::Tensor, NormSaved<B::Tensor>)> {
        match self {
            NormKind::Layer => backend.layer_norm(x, rows, width, norm, eps),
            NormKind::Rms => backend.rms_norm(x, rows, width, norm, eps),
        }
    }

    /// The VJP with respect to the input, for the cotangents `dy` of the output.
    pub fn vjp<B: Backend>(
        self,
        backend: &B,
        saved: &NormSaved<B::Tensor>,
        norm: &Norm<B::Tensor>,
        dy: &B::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<B::Tensor> {
        match self {
            NormKind::Layer => backend.layer_norm_vjp(saved, norm, dy, batch, width),
            NormKind::Rms => backend.rms_norm_vjp(saved, norm, dy, batch, width),
        }
    }

    /// The weights it has gradients for: `γ` (`γ̄ = Σ_r ȳ_r ⊙ x̂_r` for both kinds), and
    /// LayerNorm's `β`.
    pub fn parts(self) -> &'static [NormPart] {
        match self {
            NormKind::Layer => &[NormPart::Gamma, NormPart::Beta],
            NormKind::Rms => &[NormPart::Gamma],
        }
    }

    /// Each of its weights' gradients over `rows` rows for the cotangents `dy` of its output,
    /// named by part (`parts`).
    pub fn weight_grads<B: WeightGradients>(
        self,
        backend: &B,
        saved: &NormSaved<B::Tensor>,
        dy: &B::Tensor,
        rows: usize,
        width: usize,
    ) -> Result<Vec<(NormPart, B::Tensor)>> {
        let (d_gamma, d_beta) = backend.layer_norm_weight_grad(saved, dy, rows, width)?;
        Ok(self.parts().iter().copied().zip([d_gamma, d_beta]).collect())
    }
}

/// A block: its ops, in order; the last op's value is the block's output.
#[derive(Debug, Clone)]
pub struct Block {
    name: &'static str,
    /// The ops as described, dropout included: what training walks (`train.rs`).
    training_ops: Vec<Op>,
    /// The ops without dropout: what every other pass walks.
    ops: Vec<Op>,
    /// The ops grouped into the steps the primal and forward-mode walks run (`plan.rs`).
    steps: Vec<Step>,
    /// For each value, the last step that reads it (values are dropped after it).
    last_read: Vec<usize>,
}

impl Block {
    /// Checks that every op reads only values written before it, and plans its steps.
    pub fn new(name: &'static str, ops: Vec<Op>) -> Result<Block> {
        if ops.is_empty() {
            return Err(Error::Internal(format!("block `{name}` has no ops")));
        }
        for (index, op) in ops.iter().enumerate() {
            if let Some(bad) = op.inputs().into_iter().find(|v| v.index() > index) {
                return Err(Error::Internal(format!(
                    "block `{name}`: op {index} ({op:?}) reads {bad:?}, not yet written"
                )));
            }
        }
        let training_ops = ops;
        let ops = without_dropout(&training_ops);
        if ops.is_empty() {
            return Err(Error::Internal(format!("block `{name}` is only dropout")));
        }
        let steps = plan(&ops);
        let mut last_read = vec![0; ops.len() + 1];
        for (s, step) in steps.iter().enumerate() {
            for v in step.reads(&ops) {
                last_read[v.index()] = s;
            }
        }
        Ok(Block { name, training_ops, ops, steps, last_read })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn output(&self) -> Value {
        Value::of_op(self.ops.len() - 1)
    }

    /// The dense layer that projects the block's input straight into attention (`Δ Wᵀ` of it is
    /// what reverse mode's split cotangents are contracted with), if the block has one.
    pub fn input_projection(&self) -> Option<LinearId> {
        self.ops.iter().enumerate().find_map(|(index, op)| match *op {
            Op::Linear { x: Value::INPUT, weights } if self.feeds_attention(Value::of_op(index)) => Some(weights),
            _ => None,
        })
    }

    /// This block followed by a norm of its output with the encoder's final norm weights
    /// (`NormId::Final`): what the last layer of a family with a final norm runs.
    pub fn ending_in(&self, kind: NormKind) -> Result<Block> {
        let x = Value::of_op(self.training_ops.len() - 1);
        let norm = match kind {
            NormKind::Layer => Op::LayerNorm { x, weights: NormId::Final },
            NormKind::Rms => Op::RmsNorm { x, weights: NormId::Final },
        };
        Block::new(self.name, self.training_ops.iter().copied().chain([norm]).collect())
    }

    /// Scalars one primal row keeps on a `BlockTape` at `tokens` tokens, for the memory budget:
    /// the values the VJP reads (`Op::backward_reads`) and what each op saves of its own pass,
    /// a norm's `x̂` and its one scale, attention's probabilities of the row's query in every
    /// head.
    pub fn tape_row_scalars<'p, T: 'p>(
        &self,
        params: impl Into<Weights<'p, T>>,
        heads: Heads,
        tokens: usize,
    ) -> Result<usize> {
        let widths = widths(&self.ops, params.into(), heads)?;
        let kept = kept_by_backward(&self.ops, false);
        let values: usize = kept.iter().zip(&widths).filter(|(kept, _)| **kept).map(|(_, width)| width).sum();
        let saved: usize = (self.ops.iter())
            .map(|op| match *op {
                Op::LayerNorm { x, .. } | Op::RmsNorm { x, .. } => widths[x.index()] + 1,
                Op::HeadNorm { qkv } => widths[qkv.index()] + 2 * heads.count,
                Op::Attention { .. } => heads.count * tokens,
                _ => 0,
            })
            .sum();
        Ok(values + saved)
    }

    /// Scalars one tangent row needs at the peak of the block's dense JVP walk at `tokens`
    /// tokens, for the memory budget: at each step, the input's tangent (its caller holds it
    /// through the call), every tangent written before the step and read at or after it, the
    /// step's output, and what the step makes inside itself: a fused step's GEMM output before
    /// its epilogue, and attention's score tangents (`heads · tokens` per row). The most over
    /// the steps. The other walks (token directions, step rows, the pooled last layer) hold
    /// fewer.
    pub fn tangent_row_scalars<'p, T: 'p>(
        &self,
        params: impl Into<Weights<'p, T>>,
        heads: Heads,
        tokens: usize,
    ) -> Result<usize> {
        let widths = widths(&self.ops, params.into(), heads)?;
        let written_at: Vec<Option<usize>> = {
            let mut at = vec![None; self.ops.len() + 1];
            self.steps.iter().enumerate().for_each(|(s, step)| at[Value::of_op(step.last_op()).index()] = Some(s));
            at
        };
        let peak = (self.steps.iter().enumerate()).map(|(s, step)| {
            let live: usize = (1..widths.len())
                .filter(|&v| written_at[v].is_some_and(|w| w < s) && self.last_read[v] >= s)
                .map(|v| widths[v])
                .sum();
            let output = widths[Value::of_op(step.last_op()).index()];
            let inside = match *step {
                Step::LinearResidualNorm { linear, .. } | Step::LinearGelu { linear } => {
                    widths[Value::of_op(linear).index()]
                }
                Step::Op { op } if matches!(self.ops[op], Op::Attention { .. }) => heads.count * tokens,
                Step::Op { .. } => 0,
            };
            widths[Value::INPUT.index()] + live + output + inside
        });
        peak.max().ok_or_else(|| Error::Internal(format!("block `{}` has no steps", self.name)))
    }

    /// What the flop counts read of the block (`net::flops`): its dense layers' and attention's
    /// widths, and where the description matches the first-layer and pooled rewrites.
    pub fn cost<'p, T: 'p>(&self, params: impl Into<Weights<'p, T>>, heads: Heads) -> BlockCost {
        let params: Weights<'p, T> = params.into();
        let dims = |weights: LinearId| {
            let layer = params.linear(weights);
            (layer.in_dim as f64, layer.out_dim as f64)
        };
        let mut cost = BlockCost {
            gemm_per_row: 0.0,
            attention_width: 0.0,
            qkv: None,
            pooled_out: None,
            after_attention_per_row: 0.0,
        };
        let last_attention = self.ops.iter().rposition(|op| matches!(op, Op::Attention { .. }));
        for (index, op) in self.ops.iter().enumerate() {
            match *op {
                Op::Linear { x, weights } => {
                    let (inputs, outputs) = dims(weights);
                    cost.gemm_per_row += 2.0 * inputs * outputs;
                    if last_attention.is_some_and(|attention| index > attention) {
                        cost.after_attention_per_row += 2.0 * inputs * outputs;
                    }
                    // Token directions reach it as `Δ`'s rows, or through a norm as step rows.
                    let through_norm = |v: Value| {
                        v != Value::INPUT
                            && self.ops[v.index() - 1].norm().is_some_and(|(_, input, _)| input == Value::INPUT)
                    };
                    if self.feeds_attention(Value::of_op(index)) && (x == Value::INPUT || through_norm(x)) {
                        cost.qkv.get_or_insert((inputs, outputs, x == Value::INPUT));
                    }
                }
                Op::Attention { .. } => cost.attention_width += heads.width() as f64,
                _ => {}
            }
        }
        cost.pooled_out = self.pooled_norm_linear().and_then(|top| match self.ops[top.linear_op] {
            Op::Linear { weights, .. } => Some(dims(weights)),
            _ => None,
        });
        cost
    }

    /// Whether `value` is read by attention and nothing else.
    fn feeds_attention(&self, value: Value) -> bool {
        let mut readers = self.ops.iter().filter(|op| op.inputs().contains(&value));
        matches!(readers.next(), Some(Op::Attention { .. })) && readers.next().is_none()
    }
}

/// The width of every value of `ops` with `params`, checked where an op needs its operands'
/// widths to agree.
fn widths<T>(ops: &[Op], params: Weights<'_, T>, heads: Heads) -> Result<Vec<usize>> {
    let mut widths = vec![params.hidden()];
    for (index, op) in ops.iter().enumerate() {
        let mismatch = |what: String| Error::Internal(format!("op {index} ({op:?}): {what}"));
        let width = match *op {
            Op::Linear { x, weights } => {
                let layer = params.linear(weights);
                if widths[x.index()] != layer.in_dim {
                    return Err(mismatch(format!(
                        "reads width {}, its weights take {}",
                        widths[x.index()],
                        layer.in_dim
                    )));
                }
                layer.out_dim
            }
            Op::Attention { qkv } | Op::HeadNorm { qkv } => {
                if widths[qkv.index()] != 3 * heads.width() {
                    return Err(mismatch(format!("reads width {}, not 3 × {}", widths[qkv.index()], heads.width())));
                }
                match op {
                    Op::Attention { .. } => heads.width(),
                    _ => widths[qkv.index()],
                }
            }
            Op::Add { a, b } => {
                if widths[a.index()] != widths[b.index()] {
                    return Err(mismatch(format!("adds widths {} and {}", widths[a.index()], widths[b.index()])));
                }
                widths[a.index()]
            }
            Op::Gated { x, .. } => {
                if widths[x.index()] % 2 != 0 {
                    return Err(mismatch(format!("gates an odd width {}", widths[x.index()])));
                }
                widths[x.index()] / 2
            }
            Op::LayerNorm { x, .. }
            | Op::RmsNorm { x, .. }
            | Op::Gelu { x }
            | Op::Activation { x, .. }
            | Op::Dropout { x } => widths[x.index()],
        };
        widths.push(width);
    }
    Ok(widths)
}

/// `ops` with every dropout taken out: what reads a dropout's value reads its input instead.
fn without_dropout(ops: &[Op]) -> Vec<Op> {
    let mut renamed: Vec<Value> = vec![Value::INPUT];
    let mut kept = Vec::new();
    for op in ops {
        let to = |v: Value| renamed[v.index()];
        let op = match *op {
            Op::Dropout { x } => {
                renamed.push(to(x));
                continue;
            }
            Op::Linear { x, weights } => Op::Linear { x: to(x), weights },
            Op::Attention { qkv } => Op::Attention { qkv: to(qkv) },
            Op::HeadNorm { qkv } => Op::HeadNorm { qkv: to(qkv) },
            Op::Add { a, b } => Op::Add { a: to(a), b: to(b) },
            Op::LayerNorm { x, weights } => Op::LayerNorm { x: to(x), weights },
            Op::RmsNorm { x, weights } => Op::RmsNorm { x: to(x), weights },
            Op::Gelu { x } => Op::Gelu { x: to(x) },
            Op::Gated { x, act } => Op::Gated { x: to(x), act },
            Op::Activation { x, act } => Op::Activation { x: to(x), act },
        };
        kept.push(op);
        renamed.push(Value::of_op(kept.len() - 1));
    }
    kept
}

/// Writes a block as nested calls, each returning the value its op writes:
///
/// ```text
///   let b = BlockBuilder::new();
///   let h = b.layer_norm(b.add(b.linear(x, …), x), …);
/// ```
#[derive(Default)]
pub struct BlockBuilder {
    ops: RefCell<Vec<Op>>,
}

impl BlockBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&self, op: Op) -> Value {
        let mut ops = self.ops.borrow_mut();
        ops.push(op);
        Value::of_op(ops.len() - 1)
    }

    pub fn linear(&self, x: Value, weights: LinearId) -> Value {
        self.push(Op::Linear { x, weights })
    }
    pub fn attention(&self, qkv: Value) -> Value {
        self.push(Op::Attention { qkv })
    }
    pub fn head_norm(&self, qkv: Value) -> Value {
        self.push(Op::HeadNorm { qkv })
    }
    pub fn add(&self, a: Value, b: Value) -> Value {
        self.push(Op::Add { a, b })
    }
    pub fn layer_norm(&self, x: Value, weights: NormId) -> Value {
        self.push(Op::LayerNorm { x, weights })
    }
    pub fn rms_norm(&self, x: Value, weights: NormId) -> Value {
        self.push(Op::RmsNorm { x, weights })
    }
    pub fn gelu(&self, x: Value) -> Value {
        self.push(Op::Gelu { x })
    }
    pub fn gated(&self, x: Value, act: Activation) -> Value {
        self.push(Op::Gated { x, act })
    }
    pub fn activation(&self, x: Value, act: Activation) -> Value {
        self.push(Op::Activation { x, act })
    }
    pub fn dropout(&self, x: Value) -> Value {
        self.push(Op::Dropout { x })
    }

    /// The block whose output is the last value written.
    pub fn finish(self, name: &'static str) -> Result<Block> {
        Block::new(name, self.ops.into_inner())
    }
}

/// A tensor a walk holds: one it was handed, or one it made.
enum Held<'a, T> {
    Borrowed(&'a T),
    Owned(T),
}

impl<T> Held<'_, T> {
    fn get(&self) -> &T {
        match self {
            Held::Borrowed(t) => t,
            Held::Owned(t) => t,
        }
    }
}

/// The values of one walk, each held from the step that writes it to the last that reads it.
struct Values<'a, T> {
    slots: Vec<Option<Held<'a, T>>>,
}

impl<'a, T> Values<'a, T> {
    /// The values of `ops` ops, the first being `input`.
    fn new(ops: usize, input: Held<'a, T>) -> Self {
        let mut slots: Vec<Option<Held<'a, T>>> = (0..=ops).map(|_| None).collect();
        slots[0] = Some(input);
        Values { slots }
    }

    fn get(&self, v: Value) -> Result<&T> {
        match &self.slots[v.index()] {
            Some(held) => Ok(held.get()),
            None => {
                Err(Error::Internal(format!("block value {v:?} read after it was dropped or before it was written")))
            }
        }
    }

    fn set(&mut self, v: Value, t: T) {
        self.slots[v.index()] = Some(Held::Owned(t));
    }

    fn take(&mut self, v: Value) -> Result<T> {
        match self.slots[v.index()].take() {
            Some(Held::Owned(t)) => Ok(t),
            Some(Held::Borrowed(_)) => Err(Error::Internal(format!("block value {v:?} is borrowed, not owned"))),
            None => Err(Error::Internal(format!("block value {v:?} was never written"))),
        }
    }

    /// Drops every value whose last reader is step `step`.
    fn drop_after(&mut self, block: &Block, step: usize) {
        drop_read_by(&mut self.slots, block, step);
    }
}

/// Empties every slot (one per value) whose last reader is step `step` of `block`'s walk, the
/// block's output aside.
fn drop_read_by<S>(slots: &mut [Option<S>], block: &Block, step: usize) {
    for (v, slot) in slots.iter_mut().enumerate() {
        if block.last_read[v] == step && v != block.output().index() {
            *slot = None;
        }
    }
}

/// How many ops of `ops` read each value.
fn readers(ops: &[Op]) -> Vec<usize> {
    let mut readers = vec![0; ops.len() + 1];
    ops.iter().flat_map(Op::inputs).for_each(|v| readers[v.index()] += 1);
    readers
}

/// For each value of `ops`, the last op that reads it.
fn last_reader(ops: &[Op]) -> Vec<Option<usize>> {
    let mut last = vec![None; ops.len() + 1];
    for (index, op) in ops.iter().enumerate() {
        op.inputs().into_iter().for_each(|v| last[v.index()] = Some(index));
    }
    last
}

impl<T> Values<'_, T> {
    /// Empties every value's slot whose last reader (`last_reader`) is op `op`, except those
    /// `keep` marks.
    fn drop_read_by_op(&mut self, last_reader: &[Option<usize>], keep: &[bool], op: usize) {
        for (v, slot) in self.slots.iter_mut().enumerate() {
            if last_reader[v] == Some(op) && !keep[v] {
                *slot = None;
            }
        }
    }
}

/// The error of a dropout op met outside training, whose ops are the only ones that keep it.
fn outside_training() -> Error {
    Error::Internal("a dropout op outside training".into())
}

/// The shape facts a walk needs besides the widths: attention's heads, the norms' `ε`, and
/// the layer's rotary frequency where its family turns queries and keys by position.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub heads: Heads,
    pub eps: f64,
    pub rope_theta: Option<f64>,
}

impl Geometry {
    /// `qkv` rows (`[…, tokens, 3·width]`, row `r` at position `r % tokens`) with their queries
    /// and keys turned by position, where the layer is rotary; `None` where it is not.
    /// Linear: the same turn takes a primal's tangents along.
    pub fn rotated<B: Backend>(&self, backend: &B, qkv: &B::Tensor, tokens: usize) -> Result<Option<B::Tensor>> {
        self.rope_theta.map(|theta| backend.rope(qkv, tokens, self.heads, theta)).transpose()
    }

    /// Cotangents of rotated `qkv` rows taken back through the turn (its transpose).
    pub fn unrotated<B: Backend>(&self, backend: &B, d_qkv: B::Tensor, tokens: usize) -> Result<B::Tensor> {
        match self.rope_theta {
            Some(theta) => backend.rope_vjp(&d_qkv, tokens, self.heads, theta),
            None => Ok(d_qkv),
        }
    }

    /// Attention of `[seqs, tokens, 3·width]` rows as the layer runs it (rotated first), with
    /// what its VJP reads.
    pub fn attention<B: Backend>(
        &self,
        backend: &B,
        qkv: &B::Tensor,
        seqs: usize,
        tokens: usize,
        scores: crate::backend::ScoreMods<'_, B::Tensor>,
    ) -> Result<(B::Tensor, crate::backend::AttentionSaved<B::Tensor>)> {
        let rotated = self.rotated(backend, qkv, tokens)?;
        backend.attention(rotated.as_ref().unwrap_or(qkv), seqs, tokens, self.heads, scores)
    }
}

/// What every walk starts from.
struct Walk<'p, B: Backend> {
    backend: &'p B,
    params: Weights<'p, B::Tensor>,
    geometry: Geometry,
    widths: Vec<usize>,
}

impl<'p, B: Backend> Walk<'p, B> {
    /// A walk over `ops` (a block's, or its training ops).
    fn new(ops: &[Op], backend: &'p B, params: Weights<'p, B::Tensor>, geometry: Geometry) -> Result<Self> {
        Ok(Walk { backend, params, geometry, widths: widths(ops, params, geometry.heads)? })
    }

    fn width(&self, v: Value) -> usize {
        self.widths[v.index()]
    }
}
