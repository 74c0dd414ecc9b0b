//! The fast CPU backend: f32 storage, every GEMM through faer on a private rayon pool, and
//! single-purpose passes for everything else (one module per op family). Memory-bound passes
//! split their output into groups of whole rows across the pool's threads; every row is computed
//! the same way whichever thread gets it, so results do not depend on `--threads`.
//!
//! Row reductions (LayerNorm statistics, softmax sums, pooling sums) accumulate in f64; the
//! GEMMs and the small per-head products of attention stay in f32.

mod attention;
mod elementwise;
mod gelu;
mod gemm;
mod norm;
mod pool;
mod pooled_norm;

use std::ops::Range;

use rayon::{ThreadPool, ThreadPoolBuilder};

use super::{
    check_upload, AttentionSaved, Backend, BackendSettings, Batch, Heads, NormSaved, Precision, ResidualNorm, ScoreMods,
};
use crate::error::{Error, Result};
use crate::params::{Linear, Norm, Role};

pub struct CpuBackend {
    pool: ThreadPool,
    threads: usize,
    max_memory: usize,
}

impl CpuBackend {
    pub fn new(settings: BackendSettings) -> Result<Self> {
        let threads = settings.threads.max(1);
        let pool = ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("simattr-cpu-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start {threads} CPU worker threads: {e}")))?;
        Ok(CpuBackend { pool, threads, max_memory: settings.max_memory })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `op` on this backend's pool, so that rayon and faer use `threads` workers.
    fn run<R: Send>(&self, op: impl FnOnce() -> R + Send) -> Result<R> {
        Ok(self.pool.install(op))
    }
}

/// Keeps freed memory in one heap for reuse instead of returning it to the system. Every op
/// allocates and frees intermediate tensors of tens of megabytes; glibc would serve each one with
/// a fresh mapping whose pages fault in (and are zeroed) on first touch, which costs ~10–15% of
/// an explanation. Reusing warm pages is what a caching allocator does; the process keeps its
/// peak memory until it exits, which suits a command-line run. One arena, because the ops run
/// on worker threads: with an arena per thread, each would keep its own peak and the tensors
/// would outgrow `--max-memory` (measured: 390 MB of tensors under a 256 MB budget, against
/// 180 MB with one arena). A process-wide setting: call it first thing in `main` (the CLI and
/// the benches do).
pub fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; callers run it before any other
    // thread exists and before the big allocations it affects.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

/// Shapes are fixed by the network description, not by user input: a mismatch is a bug.
fn check_len(what: &str, len: usize, expected: usize) {
    assert_eq!(len, expected, "cpu: {what} has length {len}, expected {expected}");
}

/// Rows per parallel task for a pass over rows of `width` scalars: large enough (≈ 16K scalars)
/// that scheduling costs little, and independent of the thread count.
fn rows_per_task(width: usize) -> usize {
    ((1 << 14) / width.max(1)).max(1)
}

impl Backend for CpuBackend {
    type Tensor = Vec<f32>;

    fn name(&self) -> String {
        "cpu f32".to_string()
    }

    fn precision(&self) -> Precision {
        Precision::F32
    }

    fn memory_budget(&self) -> usize {
        self.max_memory
    }

    fn upload(&self, data: &[f32], role: Role) -> Result<Vec<f32>> {
        check_upload(data, role)?;
        // Every role is used as laid out: the GEMMs read `[out, in]` weights in place.
        self.run(|| elementwise::copy_large(data))
    }

    fn download(&self, x: &Vec<f32>) -> Result<Vec<f64>> {
        Ok(x.iter().map(|&v| v as f64).collect())
    }

    fn zeros(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn gather_rows(&self, table: &Vec<f32>, width: usize, ids: &[u32]) -> Result<Vec<f32>> {
        self.run(|| elementwise::gather_rows(table, width, ids))
    }

    fn add(&self, a: &Vec<f32>, b: &Vec<f32>) -> Result<Vec<f32>> {
        self.run(|| elementwise::zip_map("add", a, b, |x, y| x + y))
    }

    fn sub(&self, a: &Vec<f32>, b: &Vec<f32>) -> Result<Vec<f32>> {
        self.run(|| elementwise::zip_map("sub", a, b, |x, y| x - y))
    }

    fn add_bias(&self, x: &Vec<f32>, rows: usize, bias: &Vec<f32>) -> Result<Vec<f32>> {
        self.run(|| elementwise::add_bias(x, rows, bias))
    }

    fn interpolate(&self, origin: &Vec<f32>, delta: &Vec<f32>, alphas: &[f64]) -> Result<Vec<f32>> {
        self.run(|| elementwise::interpolate(origin, delta, alphas))
    }

    fn token_tangents(
        &self,
        delta: &Vec<f32>,
        steps: usize,
        tokens: usize,
        width: usize,
        directions: Range<usize>,
    ) -> Result<Vec<f32>> {
        self.run(|| elementwise::token_tangents(delta, steps, tokens, width, directions))
    }

    fn linear(&self, x: &Vec<f32>, rows: usize, layer: &Linear<Vec<f32>>) -> Result<Vec<f32>> {
        self.run(|| gemm::linear(x, rows, layer, Some(&layer.bias), self.threads))
    }

    fn matmul(&self, x: &Vec<f32>, rows: usize, layer: &Linear<Vec<f32>>) -> Result<Vec<f32>> {
        self.run(|| gemm::linear(x, rows, layer, None, self.threads))
    }

    fn layer_norm(
        &self,
        x: &Vec<f32>,
        rows: usize,
        width: usize,
        norm: &Norm<Vec<f32>>,
        eps: f64,
    ) -> Result<(Vec<f32>, NormSaved<Vec<f32>>)> {
        self.run(|| norm::layer_norm(&norm::RowSum::one(x), rows, width, norm, eps))
    }

    fn layer_norm_jvp(
        &self,
        saved: &NormSaved<Vec<f32>>,
        norm: &Norm<Vec<f32>>,
        dx: &Vec<f32>,
        batch: Batch,
        width: usize,
    ) -> Result<Vec<f32>> {
        self.run(|| norm::layer_norm_jvp(saved, norm, &norm::RowSum::one(dx), batch, width))
    }

    fn gelu(&self, x: &Vec<f32>) -> Result<Vec<f32>> {
        self.run(|| gelu::gelu(x, None))
    }

    fn gelu_jvp(&self, x: &Vec<f32>, dx: &Vec<f32>, batch: Batch, width: usize) -> Result<Vec<f32>> {
        self.run(|| gelu::gelu_jvp(x, None, dx, batch, width).1)
    }

    fn attention(
        &self,
        qkv: &Vec<f32>,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, Vec<f32>>,
    ) -> Result<(Vec<f32>, AttentionSaved<Vec<f32>>)> {
        self.run(|| {
            let (ctx, probs) = attention::attention(qkv, seqs, tokens, heads, scores);
            (ctx, AttentionSaved { probs })
        })
    }

    fn attention_jvp(
        &self,
        qkv: &Vec<f32>,
        saved: &AttentionSaved<Vec<f32>>,
        dqkv: &Vec<f32>,
        batch: Batch,
        heads: Heads,
    ) -> Result<Vec<f32>> {
        self.run(|| attention::attention_jvp(qkv, &saved.probs, dqkv, batch, heads))
    }

    fn mean_pool(&self, x: &Vec<f32>, seqs: usize, tokens: usize, width: usize) -> Result<Vec<f32>> {
        self.run(|| pool::mean_pool(x, seqs, tokens, width))
    }

    fn max_pool(&self, x: &Vec<f32>, seqs: usize, tokens: usize, width: usize) -> Result<Vec<f32>> {
        self.run(|| pool::max_pool(x, seqs, tokens, width))
    }

    fn max_pool_jvp(&self, x: &Vec<f32>, dx: &Vec<f32>, batch: Batch, width: usize) -> Result<Vec<f32>> {
        self.run(|| pool::max_pool_jvp(x, dx, batch, width))
    }

    fn pool_accumulate(
        &self,
        projection: &mut Vec<f32>,
        d_states: &Vec<f32>,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_direction: usize,
    ) -> Result<()> {
        self.run(|| pool::pool_accumulate(projection, d_states, batch, width, weights, first_direction))
    }

    // ---- fused block ops ---------------------------------------------------------------------

    fn bias_residual_norm(
        &self,
        z: &Vec<f32>,
        bias: &Vec<f32>,
        residual: &Vec<f32>,
        rows: usize,
        ln: ResidualNorm<'_, Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let sum = norm::RowSum::two(z, residual, Some(bias));
        self.run(|| norm::layer_norm(&sum, rows, ln.width, ln.norm, ln.eps).0)
    }

    fn bias_residual_norm_jvp(
        &self,
        z: &Vec<f32>,
        bias: &Vec<f32>,
        residual: &Vec<f32>,
        dz: &Vec<f32>,
        d_residual: &Vec<f32>,
        batch: Batch,
        ln: ResidualNorm<'_, Vec<f32>>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.run(|| {
            let sum = norm::RowSum::two(z, residual, Some(bias));
            let (y, saved) = norm::layer_norm(&sum, batch.primal_rows(), ln.width, ln.norm, ln.eps);
            let d_sum = norm::RowSum::two(dz, d_residual, None);
            let dy = norm::layer_norm_jvp(&saved, ln.norm, &d_sum, batch, ln.width);
            (y, dy)
        })
    }

    fn bias_gelu(&self, z: &Vec<f32>, rows: usize, bias: &Vec<f32>) -> Result<Vec<f32>> {
        check_len("bias_gelu input", z.len(), rows * bias.len());
        self.run(|| gelu::gelu(z, Some(bias)))
    }

    fn bias_gelu_jvp(
        &self,
        z: &Vec<f32>,
        bias: &Vec<f32>,
        dz: &Vec<f32>,
        batch: Batch,
        width: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        check_len("bias_gelu_jvp bias", bias.len(), width);
        self.run(|| gelu::gelu_jvp(z, Some(bias), dz, batch, width))
    }

    fn attention_with_token_jvp(
        &self,
        qkv: &Vec<f32>,
        d_rows: &Vec<f32>,
        directions: Range<usize>,
        batch: Batch,
        heads: Heads,
        scores: ScoreMods<'_, Vec<f32>>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.run(|| {
            let (ctx, probs) = attention::attention(qkv, batch.steps, batch.tokens, heads, scores);
            let dctx = attention::attention_token_jvp(qkv, &ctx, &probs, d_rows, directions, batch, heads);
            (ctx, dctx)
        })
    }

    fn pooled_linear_residual_norm_jvp(
        &self,
        x: &Vec<f32>,
        dx: &Vec<f32>,
        residual: &Vec<f32>,
        d_residual: &Vec<f32>,
        layer: &Linear<Vec<f32>>,
        batch: Batch,
        ln: ResidualNorm<'_, Vec<f32>>,
    ) -> Result<Vec<f32>> {
        self.run(|| {
            pooled_norm::pooled_linear_residual_norm_jvp(x, dx, residual, d_residual, layer, batch, ln, self.threads)
        })
    }

    fn attention_with_jvp(
        &self,
        qkv: &Vec<f32>,
        dqkv: &Vec<f32>,
        batch: Batch,
        heads: Heads,
        scores: ScoreMods<'_, Vec<f32>>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.run(|| {
            // The probabilities of each step are computed once and read by all its tangents.
            let (ctx, probs) = attention::attention(qkv, batch.steps, batch.tokens, heads, scores);
            let dctx = attention::attention_jvp(qkv, &probs, dqkv, batch, heads);
            (ctx, dctx)
        })
    }
}
