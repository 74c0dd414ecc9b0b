//! The walks still issue the backends' fused and structured ops. The rewrites of a block's walk
//! (docs/design.md §3, "Blocks are descriptions" and "Structure to exploit") are where the
//! engine's speed comes from: a dense layer, residual sum and LayerNorm as one
//! `bias_residual_norm_jvp`, token directions through the Q/K/V GEMM as `T` rows and into
//! `attention_with_token_jvp`, the last block's pooled JVP and its rank-one reverse start. Each
//! rewrite computes what the plain small ops compute, so a refactor that silently fell back to
//! them would still pass every numeric test; these tests fail it instead.
//!
//! `Recording` wraps `CpuReference<f64>`, delegating every op (provided ones included, so the
//! inner backend's own overrides run) and recording the name of each op the walk calls, with its
//! row count where it takes one. Only the walk's calls are seen: a provided block op that the
//! inner backend builds from small ops calls them on itself, unrecorded.

use std::ops::Range;
use std::sync::Mutex;

use crate::common::{fixture_dir, Rng};
use simattr::backend::prelude::*;
use simattr::backend::reference::CpuReference;
use simattr::backend::{
    Activation, AttentionSaved, Batch, EngineInfo, Heads, NormSaved, Precision, ResidualNorm, Role, ScoreMods,
};
use simattr::model::SentenceModel;
use simattr::net::block::{Block, CotangentsIn, Geometry, InputCotangents, InputForm, NormKind, TangentsIn};
use simattr::net::encoder::upload_params;
use simattr::net::families::post_ln;
use simattr::net::layer::LayerShape;
use simattr::params::{LayerParams, Linear, Norm, Weights};
use simattr::Result;

/// One op a walk called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Call {
    /// The method's name.
    op: &'static str,
    /// The rows it runs over, where its arguments say: its `rows`, `seqs · tokens`, or the
    /// rows of `ids` it gathers.
    rows: Option<usize>,
    /// Its `Batch`, for the ops that take one.
    batch: Option<Batch>,
}

/// A backend that records every op called on it and runs it on `inner`.
struct Recording<B> {
    inner: B,
    calls: Mutex<Vec<Call>>,
}

impl<B> Recording<B> {
    fn new(inner: B) -> Self {
        Recording { inner, calls: Mutex::new(Vec::new()) }
    }

    fn record(&self, op: &'static str, rows: Option<usize>, batch: Option<Batch>) {
        self.calls.lock().unwrap().push(Call { op, rows, batch });
    }

    fn op(&self, op: &'static str) {
        self.record(op, None, None);
    }

    fn rows(&self, op: &'static str, rows: usize) {
        self.record(op, Some(rows), None);
    }

    fn batch(&self, op: &'static str, batch: Batch) {
        self.record(op, None, Some(batch));
    }

    /// The calls recorded since the last `take`.
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl<B: Storage> Storage for Recording<B> {
    type Tensor = B::Tensor;

    fn name(&self) -> String {
        self.op("name");
        self.inner.name()
    }
    fn precision(&self) -> Precision {
        self.op("precision");
        self.inner.precision()
    }
    fn primal_precision(&self) -> Precision {
        self.op("primal_precision");
        self.inner.primal_precision()
    }
    fn engine_info(&self) -> EngineInfo {
        self.op("engine_info");
        self.inner.engine_info()
    }
    fn memory_budget(&self) -> usize {
        self.op("memory_budget");
        self.inner.memory_budget()
    }
    fn describe_memory_budget(&self) -> String {
        self.op("describe_memory_budget");
        self.inner.describe_memory_budget()
    }
    fn max_tensor_values(&self) -> Option<usize> {
        self.op("max_tensor_values");
        self.inner.max_tensor_values()
    }
    fn rows_that_fit(&self, scalars_per_row: usize) -> usize {
        self.op("rows_that_fit");
        self.inner.rows_that_fit(scalars_per_row)
    }
    fn upload(&self, data: &[f32], role: Role) -> Result<Self::Tensor> {
        self.op("upload");
        self.inner.upload(data, role)
    }
    fn download(&self, x: &Self::Tensor) -> Result<Vec<f64>> {
        self.op("download");
        self.inner.download(x)
    }
    fn tensor_len(&self, x: &Self::Tensor) -> usize {
        self.op("tensor_len");
        self.inner.tensor_len(x)
    }
    fn zeros(&self, len: usize) -> Result<Self::Tensor> {
        self.op("zeros");
        self.inner.zeros(len)
    }
    fn upload_f64(&self, data: &[f64], like: Option<&Self::Tensor>) -> Result<Self::Tensor> {
        self.op("upload_f64");
        self.inner.upload_f64(data, like)
    }
}

impl<B: MathOps> MathOps for Recording<B> {
    fn gather_rows(&self, table: &Self::Tensor, width: usize, ids: &[u32]) -> Result<Self::Tensor> {
        self.rows("gather_rows", ids.len());
        self.inner.gather_rows(table, width, ids)
    }
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        self.op("add");
        self.inner.add(a, b)
    }
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        self.op("sub");
        self.inner.sub(a, b)
    }
    fn add_bias(&self, x: &Self::Tensor, rows: usize, bias: &Self::Tensor) -> Result<Self::Tensor> {
        self.rows("add_bias", rows);
        self.inner.add_bias(x, rows, bias)
    }
    fn linear(&self, x: &Self::Tensor, rows: usize, layer: &Linear<Self::Tensor>) -> Result<Self::Tensor> {
        self.rows("linear", rows);
        self.inner.linear(x, rows, layer)
    }
    fn matmul(&self, x: &Self::Tensor, rows: usize, layer: &Linear<Self::Tensor>) -> Result<Self::Tensor> {
        self.rows("matmul", rows);
        self.inner.matmul(x, rows, layer)
    }
    fn matmul_vjp(&self, dy: &Self::Tensor, rows: usize, layer: &Linear<Self::Tensor>) -> Result<Self::Tensor> {
        self.rows("matmul_vjp", rows);
        self.inner.matmul_vjp(dy, rows, layer)
    }
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        rows: usize,
        width: usize,
        norm: &Norm<Self::Tensor>,
        eps: f64,
    ) -> Result<(Self::Tensor, NormSaved<Self::Tensor>)> {
        self.rows("layer_norm", rows);
        self.inner.layer_norm(x, rows, width, norm, eps)
    }
    fn layer_norm_jvp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        dx: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<Self::Tensor> {
        self.batch("layer_norm_jvp", batch);
        self.inner.layer_norm_jvp(saved, norm, dx, batch, width)
    }
    fn layer_norm_vjp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        dy: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<Self::Tensor> {
        self.batch("layer_norm_vjp", batch);
        self.inner.layer_norm_vjp(saved, norm, dy, batch, width)
    }
    fn gelu(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.op("gelu");
        self.inner.gelu(x)
    }
    fn gelu_jvp(&self, x: &Self::Tensor, dx: &Self::Tensor, batch: Batch, width: usize) -> Result<Self::Tensor> {
        self.batch("gelu_jvp", batch);
        self.inner.gelu_jvp(x, dx, batch, width)
    }
    fn gelu_vjp(&self, x: &Self::Tensor, dy: &Self::Tensor, batch: Batch, width: usize) -> Result<Self::Tensor> {
        self.batch("gelu_vjp", batch);
        self.inner.gelu_vjp(x, dy, batch, width)
    }
    fn rms_norm(
        &self,
        x: &Self::Tensor,
        rows: usize,
        width: usize,
        norm: &Norm<Self::Tensor>,
        eps: f64,
    ) -> Result<(Self::Tensor, NormSaved<Self::Tensor>)> {
        self.rows("rms_norm", rows);
        self.inner.rms_norm(x, rows, width, norm, eps)
    }
    fn rms_norm_jvp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        dx: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<Self::Tensor> {
        self.batch("rms_norm_jvp", batch);
        self.inner.rms_norm_jvp(saved, norm, dx, batch, width)
    }
    fn rms_norm_vjp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        dy: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<Self::Tensor> {
        self.batch("rms_norm_vjp", batch);
        self.inner.rms_norm_vjp(saved, norm, dy, batch, width)
    }
    fn gated(&self, x: &Self::Tensor, rows: usize, width: usize, act: Activation) -> Result<Self::Tensor> {
        self.rows("gated", rows);
        self.inner.gated(x, rows, width, act)
    }
    fn gated_jvp(
        &self,
        x: &Self::Tensor,
        dx: &Self::Tensor,
        batch: Batch,
        width: usize,
        act: Activation,
    ) -> Result<Self::Tensor> {
        self.batch("gated_jvp", batch);
        self.inner.gated_jvp(x, dx, batch, width, act)
    }
    fn gated_vjp(
        &self,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        batch: Batch,
        width: usize,
        act: Activation,
    ) -> Result<Self::Tensor> {
        self.batch("gated_vjp", batch);
        self.inner.gated_vjp(x, dy, batch, width, act)
    }
    fn attention(
        &self,
        qkv: &Self::Tensor,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, Self::Tensor>,
    ) -> Result<(Self::Tensor, AttentionSaved<Self::Tensor>)> {
        self.rows("attention", seqs * tokens);
        self.inner.attention(qkv, seqs, tokens, heads, scores)
    }
    fn attention_jvp(
        &self,
        qkv: &Self::Tensor,
        saved: &AttentionSaved<Self::Tensor>,
        dqkv: &Self::Tensor,
        batch: Batch,
        heads: Heads,
    ) -> Result<Self::Tensor> {
        self.batch("attention_jvp", batch);
        self.inner.attention_jvp(qkv, saved, dqkv, batch, heads)
    }
    fn attention_vjp(
        &self,
        qkv: &Self::Tensor,
        saved: &AttentionSaved<Self::Tensor>,
        dctx: &Self::Tensor,
        batch: Batch,
        heads: Heads,
    ) -> Result<Self::Tensor> {
        self.batch("attention_vjp", batch);
        self.inner.attention_vjp(qkv, saved, dctx, batch, heads)
    }
    fn mean_pool(&self, x: &Self::Tensor, seqs: usize, tokens: usize, width: usize) -> Result<Self::Tensor> {
        self.rows("mean_pool", seqs * tokens);
        self.inner.mean_pool(x, seqs, tokens, width)
    }
    fn max_pool(&self, x: &Self::Tensor, seqs: usize, tokens: usize, width: usize) -> Result<Self::Tensor> {
        self.rows("max_pool", seqs * tokens);
        self.inner.max_pool(x, seqs, tokens, width)
    }
    fn max_pool_jvp(&self, x: &Self::Tensor, dx: &Self::Tensor, batch: Batch, width: usize) -> Result<Self::Tensor> {
        self.batch("max_pool_jvp", batch);
        self.inner.max_pool_jvp(x, dx, batch, width)
    }
    fn mean_pool_vjp(&self, dy: &Self::Tensor, seqs: usize, tokens: usize, width: usize) -> Result<Self::Tensor> {
        self.rows("mean_pool_vjp", seqs * tokens);
        self.inner.mean_pool_vjp(dy, seqs, tokens, width)
    }
    fn max_pool_vjp(&self, x: &Self::Tensor, dy: &Self::Tensor, batch: Batch, width: usize) -> Result<Self::Tensor> {
        self.batch("max_pool_vjp", batch);
        self.inner.max_pool_vjp(x, dy, batch, width)
    }
    fn scatter_rows(&self, x: &Self::Tensor, width: usize, ids: &[u32], rows: usize) -> Result<Self::Tensor> {
        self.rows("scatter_rows", rows);
        self.inner.scatter_rows(x, width, ids, rows)
    }
}

impl<B: FusedOps> FusedOps for Recording<B> {
    fn bias_residual_norm(
        &self,
        z: &Self::Tensor,
        bias: &Self::Tensor,
        residual: &Self::Tensor,
        rows: usize,
        ln: ResidualNorm<'_, Self::Tensor>,
    ) -> Result<Self::Tensor> {
        self.rows("bias_residual_norm", rows);
        self.inner.bias_residual_norm(z, bias, residual, rows, ln)
    }
    fn bias_residual_norm_jvp(
        &self,
        z: &Self::Tensor,
        bias: &Self::Tensor,
        residual: &Self::Tensor,
        dz: &Self::Tensor,
        d_residual: &Self::Tensor,
        batch: Batch,
        ln: ResidualNorm<'_, Self::Tensor>,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        self.batch("bias_residual_norm_jvp", batch);
        self.inner.bias_residual_norm_jvp(z, bias, residual, dz, d_residual, batch, ln)
    }
    fn residual_norm_vjp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        dy: &Self::Tensor,
        d_residual: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<Self::Tensor> {
        self.batch("residual_norm_vjp", batch);
        self.inner.residual_norm_vjp(saved, norm, dy, d_residual, batch, width)
    }
    fn bias_gelu(&self, z: &Self::Tensor, rows: usize, bias: &Self::Tensor) -> Result<Self::Tensor> {
        self.rows("bias_gelu", rows);
        self.inner.bias_gelu(z, rows, bias)
    }
    fn bias_gelu_jvp(
        &self,
        z: &Self::Tensor,
        bias: &Self::Tensor,
        dz: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        self.batch("bias_gelu_jvp", batch);
        self.inner.bias_gelu_jvp(z, bias, dz, batch, width)
    }
    fn attention_with_token_jvp(
        &self,
        qkv: &Self::Tensor,
        d_rows: &Self::Tensor,
        directions: Range<usize>,
        batch: Batch,
        heads: Heads,
        scores: ScoreMods<'_, Self::Tensor>,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        self.batch("attention_with_token_jvp", batch);
        self.inner.attention_with_token_jvp(qkv, d_rows, directions, batch, heads, scores)
    }
    fn pooled_linear_residual_norm_jvp(
        &self,
        x: &Self::Tensor,
        dx: &Self::Tensor,
        residual: &Self::Tensor,
        d_residual: &Self::Tensor,
        layer: &Linear<Self::Tensor>,
        batch: Batch,
        ln: ResidualNorm<'_, Self::Tensor>,
    ) -> Result<Self::Tensor> {
        self.batch("pooled_linear_residual_norm_jvp", batch);
        self.inner.pooled_linear_residual_norm_jvp(x, dx, residual, d_residual, layer, batch, ln)
    }
    fn mean_pooled_norm_linear_vjp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        layer: &Linear<Self::Tensor>,
        dims: Range<usize>,
        batch: Batch,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        self.batch("mean_pooled_norm_linear_vjp", batch);
        self.inner.mean_pooled_norm_linear_vjp(saved, norm, layer, dims, batch)
    }
    fn attention_with_jvp(
        &self,
        qkv: &Self::Tensor,
        dqkv: &Self::Tensor,
        batch: Batch,
        heads: Heads,
        scores: ScoreMods<'_, Self::Tensor>,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        self.batch("attention_with_jvp", batch);
        self.inner.attention_with_jvp(qkv, dqkv, batch, heads, scores)
    }
}

impl<B: Accumulators> Accumulators for Recording<B> {
    fn interpolate(&self, origin: &Self::Tensor, delta: &Self::Tensor, alphas: &[f64]) -> Result<Self::Tensor> {
        self.op("interpolate");
        self.inner.interpolate(origin, delta, alphas)
    }
    fn token_tangents(
        &self,
        delta: &Self::Tensor,
        steps: usize,
        tokens: usize,
        width: usize,
        directions: Range<usize>,
    ) -> Result<Self::Tensor> {
        self.rows("token_tangents", steps * directions.len() * tokens);
        self.inner.token_tangents(delta, steps, tokens, width, directions)
    }
    fn pool_accumulate(
        &self,
        projection: &mut Self::Tensor,
        d_states: &Self::Tensor,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_direction: usize,
    ) -> Result<()> {
        self.batch("pool_accumulate", batch);
        self.inner.pool_accumulate(projection, d_states, batch, width, weights, first_direction)
    }
    fn cotangent_accumulate(
        &self,
        projection: &mut Self::Tensor,
        d_states: &Self::Tensor,
        delta: &Self::Tensor,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_dim: usize,
    ) -> Result<()> {
        self.batch("cotangent_accumulate", batch);
        self.inner.cotangent_accumulate(projection, d_states, delta, batch, width, weights, first_dim)
    }
}

type Rec = Recording<CpuReference<f64>>;

/// Tokens per sequence: `T`, `N · T` and `N · T · T` rows all differ with two steps.
const T: usize = 5;
/// `steps = 2`, one tangent per token.
const TOKEN_BATCH: Batch = Batch { steps: 2, tangents: T, tokens: T };

/// A recording backend, the tiny BERT fixture's first layer uploaded to it (unrecorded), its
/// geometry and hidden width.
fn setup() -> (Rec, LayerParams<Vec<f64>>, Geometry, usize) {
    let backend = Recording::new(CpuReference::<f64>::new());
    let model = SentenceModel::load(&fixture_dir("tiny-bert")).unwrap();
    let shape = LayerShape::of(&model.config);
    let mut params = upload_params(&backend.inner, &model.params).unwrap();
    (backend, params.layers.swap_remove(0), shape.geometry(), shape.hidden)
}

fn count(calls: &[Call], op: &str) -> usize {
    calls.iter().filter(|c| c.op == op).count()
}

/// The calls of `op`, in order.
fn of<'c>(calls: &'c [Call], op: &'c str) -> impl Iterator<Item = &'c Call> + 'c {
    calls.iter().filter(move |c| c.op == op)
}

fn ops(calls: &[Call]) -> Vec<&'static str> {
    calls.iter().map(|c| c.op).collect()
}

/// `op` was called exactly `times` times.
fn assert_count(calls: &[Call], op: &str, times: usize) {
    assert_eq!(
        count(calls, op),
        times,
        "`{op}` called {} times, expected {times}; calls: {:?}",
        count(calls, op),
        ops(calls)
    );
}

/// The forward-mode walk of `block` on token directions `0..T`, what it called.
fn token_jvp_calls(block: &Block) -> Vec<Call> {
    let (b, params, geometry, h) = setup();
    let mut rng = Rng::new(21);
    let x = rng.vec(TOKEN_BATCH.primal_rows() * h);
    let delta = rng.vec(T * h);
    let dx = TangentsIn::TokenDirections { delta: &delta, directions: 0..T };
    let (y, dy) = block.jvp(&b, &params, geometry, &x, dx, TOKEN_BATCH, ScoreMods::none()).unwrap();
    assert_eq!(y.len(), TOKEN_BATCH.primal_rows() * h);
    assert_eq!(dy.len(), TOKEN_BATCH.tangent_rows() * h);
    b.take()
}

/// The first layer above the attributed one, post-LN: token directions go through the Q/K/V
/// GEMM as `T` rows and into attention as such, and both sum-and-norm pairs and the GELU run as
/// the backend's fused block ops.
#[test]
fn post_ln_token_jvp_issues_the_fused_and_token_row_ops() {
    let calls = token_jvp_calls(&post_ln::block());
    assert_count(&calls, "attention_with_token_jvp", 1);
    assert_count(&calls, "bias_residual_norm_jvp", 2);
    assert_count(&calls, "bias_gelu_jvp", 1);
    for plain in ["attention_with_jvp", "attention_jvp", "layer_norm_jvp", "gelu_jvp", "layer_norm", "gelu", "add_bias"]
    {
        assert_count(&calls, plain, 0);
    }
    let first_gemm = of(&calls, "matmul").next().expect("a tangent GEMM");
    assert_eq!(first_gemm.rows, Some(T), "the Q/K/V GEMM of token directions runs over the T rows of Δ");
    let qkv = of(&calls, "linear").next().expect("the primal Q/K/V projection");
    assert_eq!(qkv.rows, Some(TOKEN_BATCH.primal_rows()), "the primal Q/K/V projection runs over the primal rows");
    // Nothing makes the token directions dense before attention has taken them as rows.
    let attention_at = calls.iter().position(|c| c.op == "attention_with_token_jvp").unwrap();
    assert!(
        !calls[..attention_at].iter().any(|c| ["token_tangents", "scatter_rows"].contains(&c.op)),
        "token directions made dense before attention: {:?}",
        ops(&calls[..attention_at])
    );
    // Below attention only the Q/K/V GEMM ran on tangents; every GEMM over N·T·T rows is above it.
    let dense_gemms = of(&calls, "matmul").filter(|c| c.rows == Some(TOKEN_BATCH.tangent_rows())).count();
    assert_eq!(dense_gemms, 3, "the attention output and both FFN GEMMs run on the dense tangents");
}

/// The last block under mean pooling, post-LN, from dense tangents: the output GEMM, its sum
/// and norm and the pooling are one `pooled_linear_residual_norm_jvp`; the full tangents of the
/// block's output are never made, let alone pooled.
#[test]
fn post_ln_pooled_jvp_reduces_before_the_output_gemm() {
    let (b, params, geometry, h) = setup();
    let batch = Batch { steps: 2, tangents: 3, tokens: T };
    let mut rng = Rng::new(22);
    let x = rng.vec(batch.primal_rows() * h);
    let dx = rng.vec(batch.tangent_rows() * h);
    let pooled = post_ln::block()
        .pooled_jvp(&b, &params, geometry, &x, TangentsIn::Dense(&dx), batch, ScoreMods::none())
        .unwrap();
    assert_eq!(pooled.len(), batch.tangent_seqs() * h);
    let calls = b.take();
    assert_count(&calls, "pooled_linear_residual_norm_jvp", 1);
    assert_count(&calls, "mean_pool", 0);
    // The attention sublayer's sum and norm stay fused; the last one is inside the pooled op.
    assert_count(&calls, "bias_residual_norm_jvp", 1);
    assert_count(&calls, "bias_gelu_jvp", 1);
    assert_count(&calls, "attention_with_jvp", 1);
    for plain in ["layer_norm_jvp", "gelu_jvp", "attention_jvp"] {
        assert_count(&calls, plain, 0);
    }
    let last = calls.last().expect("calls");
    assert_eq!(last.op, "pooled_linear_residual_norm_jvp", "the pooled op is the walk's last: {:?}", ops(&calls));
    // Three tangent GEMMs below it (Q/K/V, attention output, FFN in), none of the output layer.
    let dense_gemms = of(&calls, "matmul").filter(|c| c.rows == Some(batch.tangent_rows())).count();
    assert_eq!(dense_gemms, 3, "tangent GEMMs: {:?}", of(&calls, "matmul").collect::<Vec<_>>());
}

/// The same with token directions, as the engine runs it when the attributed layer is the last:
/// both structured paths in one walk.
#[test]
fn post_ln_pooled_token_jvp_takes_both_structured_paths() {
    let (b, params, geometry, h) = setup();
    let mut rng = Rng::new(23);
    let x = rng.vec(TOKEN_BATCH.primal_rows() * h);
    let delta = rng.vec(T * h);
    let dx = TangentsIn::TokenDirections { delta: &delta, directions: 0..T };
    post_ln::block().pooled_jvp(&b, &params, geometry, &x, dx, TOKEN_BATCH, ScoreMods::none()).unwrap();
    let calls = b.take();
    assert_count(&calls, "attention_with_token_jvp", 1);
    assert_count(&calls, "pooled_linear_residual_norm_jvp", 1);
    assert_count(&calls, "bias_residual_norm_jvp", 1);
    assert_count(&calls, "bias_gelu_jvp", 1);
    for plain in ["attention_with_jvp", "layer_norm_jvp", "gelu_jvp", "mean_pool"] {
        assert_count(&calls, plain, 0);
    }
    assert_eq!(of(&calls, "matmul").next().and_then(|c| c.rows), Some(T));
}

/// Reverse mode through the post-LN block from the pooled output's unit cotangents, with the
/// cotangents of its input in `form`: what it called.
fn post_ln_vjp_calls(form: InputForm, dims: Range<usize>) -> (Vec<Call>, InputCotangents<Vec<f64>>, usize) {
    let (b, params, geometry, h) = setup();
    let block = post_ln::block();
    let batch = Batch { steps: 2, tangents: dims.len(), tokens: T };
    let x = Rng::new(24).vec(batch.primal_rows() * h);
    let (_, tape) =
        block.forward_taped(&b, &params, geometry, &x, batch.steps, batch.tokens, ScoreMods::none()).unwrap();
    b.take();
    let cotangents = block.vjp(&b, &params, geometry, &tape, CotangentsIn::PooledMeanUnits(dims), batch, form).unwrap();
    (b.take(), cotangents, h)
}

/// Reverse mode's rewrites, post-LN: the top starts rank-one (`mean_pooled_norm_linear_vjp`, no
/// seeds uploaded and pooled back, no output GEMM over the cotangent rows), the attention norm,
/// read by the FFN and the residual, takes both cotangent terms in `residual_norm_vjp`, and the
/// split input cotangents skip the Q/K/V GEMM's VJP.
#[test]
fn post_ln_pooled_vjp_issues_the_rank_one_top_and_the_residual_norm() {
    let dims = 3..7;
    let (calls, cotangents, h) = post_ln_vjp_calls(InputForm::Full, dims.clone());
    let cot = Batch { steps: 2, tangents: dims.len(), tokens: T };
    assert_count(&calls, "mean_pooled_norm_linear_vjp", 1);
    assert_count(&calls, "residual_norm_vjp", 1);
    for plain in ["layer_norm_vjp", "mean_pool_vjp", "upload"] {
        assert_count(&calls, plain, 0);
    }
    assert_eq!(calls.first().map(|c| c.op), Some("mean_pooled_norm_linear_vjp"), "{:?}", ops(&calls));
    assert_eq!(of(&calls, "mean_pooled_norm_linear_vjp").next().unwrap().batch, Some(cot));
    // FFN in, attention output, Q/K/V: the output layer's GEMM is inside the rank-one top.
    assert_count(&calls, "matmul_vjp", 3);
    assert_count(&calls, "gelu_vjp", 1);
    assert_count(&calls, "attention_vjp", 1);
    let InputCotangents::Full(dx) = cotangents else { panic!("a full VJP came back split") };
    assert_eq!(dx.len(), cot.tangent_rows() * h);

    let (split_calls, split, _) = post_ln_vjp_calls(InputForm::Split, dims);
    assert!(matches!(split, InputCotangents::Split(_)), "the post-LN block splits its input cotangents");
    assert_count(&split_calls, "mean_pooled_norm_linear_vjp", 1);
    assert_count(&split_calls, "residual_norm_vjp", 1);
    assert_count(&split_calls, "matmul_vjp", 2);
}

/// The pre-LN block on token directions: the first LayerNorm keeps each tangent on its row,
/// so the Q/K/V GEMM runs on the step rows (`N · T`), not the dense `N · T · T`; attention then
/// reads dense tangents (a normed tangent differs per step, so `attention_with_token_jvp`,
/// which takes one `[T, 3·width]` for every step, does not apply).
#[test]
fn pre_ln_token_jvp_runs_the_qkv_gemm_on_step_rows() {
    let calls = token_jvp_calls(&crate::blocks::pre_ln());
    let step_rows = TOKEN_BATCH.primal_rows();
    let first_norm = of(&calls, "layer_norm_jvp").next().expect("the first LayerNorm's JVP");
    assert_eq!(
        first_norm.batch,
        Some(Batch { tangents: 1, ..TOKEN_BATCH }),
        "the first LayerNorm's JVP runs on one step row per token"
    );
    let first_gemm = of(&calls, "matmul").next().expect("a tangent GEMM");
    assert_eq!(first_gemm.rows, Some(step_rows), "the Q/K/V GEMM of normed token directions runs over N·T rows");
    assert_count(&calls, "attention_with_jvp", 1);
    assert_count(&calls, "attention_with_token_jvp", 0);
    // Made dense once, after the Q/K/V GEMM, before attention.
    let gemm_at = calls.iter().position(|c| c.op == "matmul").unwrap();
    assert!(
        !calls[..gemm_at].iter().any(|c| c.rows == Some(TOKEN_BATCH.tangent_rows())),
        "tangents made dense before the Q/K/V GEMM: {:?}",
        &calls[..gemm_at]
    );
    // The FFN's GEMM and GELU still match `Gelu(Linear(x))`; the pre-norm sums match nothing.
    assert_count(&calls, "bias_gelu_jvp", 1);
    assert_count(&calls, "bias_residual_norm_jvp", 0);
}

/// The last layer of a pre-LN family, its block ending in the final norm (`Block::ending_in`):
/// `Norm(Linear(a) + r)` feeds the pooling again, so the pooled JVP reduces before the output
/// GEMM and reverse mode starts rank-one, as in the post-LN block.
#[test]
fn a_pre_ln_tail_with_its_final_norm_takes_the_pooled_rewrites() {
    let (b, params, geometry, h) = setup();
    let mut model = SentenceModel::load(&fixture_dir("tiny-bert")).unwrap();
    model.params.final_norm = model.params.embeddings.norm.clone();
    let norm = upload_params(&b.inner, &model.params).unwrap().final_norm.unwrap();
    let weights = Weights { layer: &params, final_norm: Some(&norm) };
    let tail = crate::blocks::pre_ln().ending_in(NormKind::Layer).unwrap();
    let mut rng = Rng::new(25);
    let x = rng.vec(TOKEN_BATCH.primal_rows() * h);
    let delta = rng.vec(T * h);
    let dx = TangentsIn::TokenDirections { delta: &delta, directions: 0..T };
    tail.pooled_jvp(&b, weights, geometry, &x, dx, TOKEN_BATCH, ScoreMods::none()).unwrap();
    let calls = b.take();
    assert_count(&calls, "pooled_linear_residual_norm_jvp", 1);
    assert_count(&calls, "mean_pool", 0);
    assert_eq!(calls.last().map(|c| c.op), Some("pooled_linear_residual_norm_jvp"), "{:?}", ops(&calls));

    let dims = 1..4;
    let batch = Batch { steps: 2, tangents: dims.len(), tokens: T };
    let (_, tape) =
        tail.forward_taped(&b, weights, geometry, &x, batch.steps, batch.tokens, ScoreMods::none()).unwrap();
    b.take();
    tail.vjp(&b, weights, geometry, &tape, CotangentsIn::PooledMeanUnits(dims), batch, InputForm::Full).unwrap();
    let calls = b.take();
    assert_eq!(calls.first().map(|c| c.op), Some("mean_pooled_norm_linear_vjp"), "{:?}", ops(&calls));
    assert_count(&calls, "mean_pool_vjp", 0);
    assert_count(&calls, "upload", 0);
}
