//! The fast CPU backend: f32 storage, every GEMM through faer on a private rayon pool, and
//! single-purpose passes for everything else (one module per op family). Memory-bound passes
//! split their output into groups of whole rows across the pool's threads; every row is computed
//! the same way whichever thread gets it, so results do not depend on `--threads`.
//!
//! Row reductions (LayerNorm statistics, softmax sums, pooling sums) accumulate in f64; the
//! tangent GEMMs and the small per-head products of attention stay in f32. The primal states
//! are f64 by default (`tensor.rs` says why; `--primal f32` keeps them in f32).

mod attention;
mod elementwise;
mod gelu;
mod gemm;
mod gemm_mixed;
mod gradients;
mod norm;
mod pool;
mod pooled_norm;
mod primal_f64;
mod tensor;

use std::ops::Range;

use rayon::{ThreadPool, ThreadPoolBuilder};

pub use tensor::CpuTensor;

use super::{
    check_upload, Accumulators, AttentionSaved, BackendSettings, Batch, FusedOps, Heads, MathOps, NormSaved, Precision,
    ResidualNorm, ScoreMods, Storage,
};
use crate::backend::shapes::Contract;
use crate::error::{Error, Result};
use crate::params::{HostTensor, Linear, Norm, Role};

pub struct CpuBackend {
    pool: ThreadPool,
    threads: usize,
    max_memory: usize,
    /// Whether primal states are kept in f64 (else f32, like the tangents).
    primal_f64: bool,
}

impl CpuBackend {
    pub fn new(settings: BackendSettings) -> Result<Self> {
        let threads = settings.threads.max(1);
        let pool = ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("simattr-cpu-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start {threads} CPU worker threads: {e}")))?;
        let primal_f64 = match settings.primal.unwrap_or(Precision::F64) {
            Precision::F64 => true,
            Precision::F32 => false,
            other => {
                return Err(Error::argument(
                    "--primal",
                    format!("backend cpu keeps its primal in f64 or f32, not {}", other.name()),
                ))
            }
        };
        Ok(CpuBackend { pool, threads, max_memory: settings.max_memory, primal_f64 })
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

/// Rows per parallel task for a pass over rows of `width` scalars: large enough (≈ 16K scalars)
/// that scheduling costs little, and independent of the thread count.
fn rows_per_task(width: usize) -> usize {
    ((1 << 14) / width.max(1)).max(1)
}

impl Storage for CpuBackend {
    type Tensor = CpuTensor;

    fn name(&self) -> String {
        match self.primal_f64 {
            true => "cpu f32 (f64 primal)".to_string(),
            false => "cpu f32".to_string(),
        }
    }

    fn precision(&self) -> Precision {
        Precision::F32
    }

    fn primal_precision(&self) -> Precision {
        if self.primal_f64 {
            Precision::F64
        } else {
            Precision::F32
        }
    }

    fn memory_budget(&self) -> usize {
        self.max_memory
    }

    fn upload(&self, data: &[f32], role: Role) -> Result<CpuTensor> {
        check_upload(data, role)?;
        // Every role is used as laid out: the GEMMs read `[out, in]` weights in place.
        // Uploaded activations are f32 (tangents, or an f32 primal); an f64 primal starts at the
        // embedding tables (`gather_rows`).
        self.run(|| match role {
            Role::Activations { .. } => CpuTensor::F32(elementwise::copy_large(data)),
            _ => CpuTensor::Param(HostTensor::new(vec![data.len()], elementwise::copy_large(data))),
        })
    }

    /// A weight read in place from the mapped checkpoint is shared, not copied: no second
    /// copy of the model in memory, no fresh pages to zero at load. (Weights in memory, such
    /// as a training run's, are copied as `upload` copies them, in parallel.)
    fn upload_host(&self, tensor: &HostTensor, role: Role) -> Result<CpuTensor> {
        match role {
            Role::Activations { .. } => self.upload(tensor.data(), role),
            _ if !tensor.is_mapped() => self.upload(tensor.data(), role),
            _ => {
                check_upload(tensor.data(), role)?;
                Ok(CpuTensor::Param(tensor.clone()))
            }
        }
    }

    fn download(&self, x: &CpuTensor) -> Result<Vec<f64>> {
        Ok(x.to_f64().into_owned())
    }

    fn upload_f64(&self, data: &[f64], like: Option<&CpuTensor>) -> Result<CpuTensor> {
        // An f64 primal stays f64; everything else is f32, as the kernels read it.
        Ok(match like {
            Some(CpuTensor::F64(_)) => CpuTensor::F64(data.to_vec()),
            _ => CpuTensor::F32(data.iter().map(|&v| v as f32).collect()),
        })
    }

    fn tensor_len(&self, x: &CpuTensor) -> usize {
        x.len()
    }

    fn zeros(&self, len: usize) -> Result<CpuTensor> {
        Ok(CpuTensor::F32(vec![0.0; len]))
    }
}

impl MathOps for CpuBackend {
    fn gather_rows(&self, table: &CpuTensor, width: usize, ids: &[u32]) -> Result<CpuTensor> {
        Contract(self).gather_rows(table, width, ids)?;
        self.run(|| match table {
            // An embedding table: the rows start a primal.
            CpuTensor::Param(_) if self.primal_f64 => CpuTensor::F64(primal_f64::gather_rows(table, width, ids)),
            CpuTensor::Param(_) | CpuTensor::F32(_) => CpuTensor::F32(elementwise::gather_rows(table, width, ids)),
            CpuTensor::F64(t) => CpuTensor::F64(primal_f64::gather_rows(t, width, ids)),
        })
    }

    fn add(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        Contract(self).same("add operand", a, b)?;
        self.run(|| match either_f64(a, b) {
            true => CpuTensor::F64(primal_f64::zip_map(&a.to_f64(), &b.to_f64(), |x, y| x + y)),
            false => CpuTensor::F32(elementwise::zip_map(a, b, |x, y| x + y)),
        })
    }

    fn sub(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        Contract(self).same("sub operand", a, b)?;
        self.run(|| match either_f64(a, b) {
            true => CpuTensor::F64(primal_f64::zip_map(&a.to_f64(), &b.to_f64(), |x, y| x - y)),
            false => CpuTensor::F32(elementwise::zip_map(a, b, |x, y| x - y)),
        })
    }

    fn add_bias(&self, x: &CpuTensor, rows: usize, bias: &CpuTensor) -> Result<CpuTensor> {
        Contract(self).add_bias(x, rows, bias)?;
        self.run(|| match x.as_f64() {
            Some(x) => CpuTensor::F64(primal_f64::add_bias(x, bias)),
            None => CpuTensor::F32(elementwise::add_bias(x, bias)),
        })
    }

    fn linear(&self, x: &CpuTensor, rows: usize, layer: &Linear<CpuTensor>) -> Result<CpuTensor> {
        Contract(self).linear("linear", x, rows, layer)?;
        self.run(|| self.dense(x, rows, layer, true))
    }

    fn matmul(&self, x: &CpuTensor, rows: usize, layer: &Linear<CpuTensor>) -> Result<CpuTensor> {
        Contract(self).linear("matmul", x, rows, layer)?;
        self.run(|| self.dense(x, rows, layer, false))
    }

    fn matmul_vjp(&self, dy: &CpuTensor, rows: usize, layer: &Linear<CpuTensor>) -> Result<CpuTensor> {
        Contract(self).matmul_vjp(dy, rows, layer)?;
        self.run(|| CpuTensor::F32(gemm::linear_transposed(&dy.to_f32(), rows, layer, self.threads)))
    }

    fn layer_norm(
        &self,
        x: &CpuTensor,
        rows: usize,
        width: usize,
        norm: &Norm<CpuTensor>,
        eps: f64,
    ) -> Result<(CpuTensor, NormSaved<CpuTensor>)> {
        Contract(self).layer_norm(x, rows, width, norm)?;
        self.run(|| match x.as_f64() {
            Some(x) => {
                let (y, saved) = norm::layer_norm_as(&norm::RowSum::one(x), rows, width, norm, eps, |v| v);
                (CpuTensor::F64(y), f32_saved(saved))
            }
            None => {
                let (y, saved) = norm::layer_norm(&norm::RowSum::one(x), rows, width, norm, eps);
                (CpuTensor::F32(y), f32_saved(saved))
            }
        })
    }

    fn layer_norm_jvp(
        &self,
        saved: &NormSaved<CpuTensor>,
        norm: &Norm<CpuTensor>,
        dx: &CpuTensor,
        batch: Batch,
        width: usize,
    ) -> Result<CpuTensor> {
        Contract(self).norm_derivative("layer_norm_jvp", saved, norm, dx, batch, width)?;
        self.run(|| CpuTensor::F32(norm::layer_norm_jvp(saved, norm, &norm::RowSum::one(&dx.to_f32()), batch, width)))
    }

    fn layer_norm_vjp(
        &self,
        saved: &NormSaved<CpuTensor>,
        norm: &Norm<CpuTensor>,
        dy: &CpuTensor,
        batch: Batch,
        width: usize,
    ) -> Result<CpuTensor> {
        Contract(self).norm_derivative("layer_norm_vjp", saved, norm, dy, batch, width)?;
        self.run(|| CpuTensor::F32(norm::layer_norm_vjp(saved, norm, &dy.to_f32(), None, batch, width)))
    }

    fn gelu(&self, x: &CpuTensor) -> Result<CpuTensor> {
        self.run(|| match x.as_f64() {
            Some(x) => CpuTensor::F64(primal_f64::gelu(x, None)),
            None => CpuTensor::F32(gelu::gelu(x, None)),
        })
    }

    fn gelu_jvp(&self, x: &CpuTensor, dx: &CpuTensor, batch: Batch, width: usize) -> Result<CpuTensor> {
        Contract(self).activation_derivative("gelu_jvp", x, dx, batch, width)?;
        self.run(|| CpuTensor::F32(gelu::gelu_jvp(&x.to_f32(), None, &dx.to_f32(), batch, width).1))
    }

    fn attention(
        &self,
        qkv: &CpuTensor,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, CpuTensor>,
    ) -> Result<(CpuTensor, AttentionSaved<CpuTensor>)> {
        Contract(self).attention(qkv, seqs, tokens, heads, scores, None)?;
        self.run(|| {
            let (ctx, probs) = self.attend(qkv, seqs, tokens, heads, scores);
            (ctx, AttentionSaved { probs: CpuTensor::F32(probs) })
        })
    }

    fn attention_jvp(
        &self,
        qkv: &CpuTensor,
        saved: &AttentionSaved<CpuTensor>,
        dqkv: &CpuTensor,
        batch: Batch,
        heads: Heads,
    ) -> Result<CpuTensor> {
        Contract(self).attention_derivative(qkv, saved, dqkv, 3 * heads.width(), batch, heads)?;
        self.run(|| CpuTensor::F32(attention::attention_jvp(&qkv.to_f32(), &saved.probs, &dqkv.to_f32(), batch, heads)))
    }

    fn attention_vjp(
        &self,
        qkv: &CpuTensor,
        saved: &AttentionSaved<CpuTensor>,
        dctx: &CpuTensor,
        batch: Batch,
        heads: Heads,
    ) -> Result<CpuTensor> {
        Contract(self).attention_derivative(qkv, saved, dctx, heads.width(), batch, heads)?;
        self.run(|| CpuTensor::F32(attention::attention_vjp(&qkv.to_f32(), &saved.probs, &dctx.to_f32(), batch, heads)))
    }

    fn mean_pool(&self, x: &CpuTensor, seqs: usize, tokens: usize, width: usize) -> Result<CpuTensor> {
        Contract(self).pool("mean_pool", x, seqs, tokens, width)?;
        self.run(|| match x.as_f64() {
            Some(x) => CpuTensor::F64(primal_f64::mean_pool(x, seqs, tokens, width)),
            None => CpuTensor::F32(pool::mean_pool(x, seqs, tokens, width)),
        })
    }

    fn max_pool(&self, x: &CpuTensor, seqs: usize, tokens: usize, width: usize) -> Result<CpuTensor> {
        Contract(self).pool("max_pool", x, seqs, tokens, width)?;
        self.run(|| match x.as_f64() {
            Some(x) => CpuTensor::F64(primal_f64::max_pool(x, seqs, tokens, width)),
            None => CpuTensor::F32(pool::max_pool(x, seqs, tokens, width)),
        })
    }

    fn max_pool_jvp(&self, x: &CpuTensor, dx: &CpuTensor, batch: Batch, width: usize) -> Result<CpuTensor> {
        Contract(self).max_pool_derivative(x, dx, batch.tangent_rows(), batch, width)?;
        self.run(|| {
            let dx = dx.to_f32();
            CpuTensor::F32(match x.as_f64() {
                // The arg-max of the values the primal pooled.
                Some(x) => pool::max_pool_jvp(x, &dx, batch, width),
                None => pool::max_pool_jvp::<f32>(x, &dx, batch, width),
            })
        })
    }

    fn mean_pool_vjp(&self, dy: &CpuTensor, seqs: usize, tokens: usize, width: usize) -> Result<CpuTensor> {
        Contract(self).mean_pool_vjp(dy, seqs, width)?;
        self.run(|| CpuTensor::F32(pool::mean_pool_vjp(&dy.to_f32(), seqs, tokens, width)))
    }

    fn max_pool_vjp(&self, x: &CpuTensor, dy: &CpuTensor, batch: Batch, width: usize) -> Result<CpuTensor> {
        Contract(self).max_pool_derivative(x, dy, batch.tangent_seqs(), batch, width)?;
        self.run(|| {
            let dy = dy.to_f32();
            CpuTensor::F32(match x.as_f64() {
                Some(x) => pool::max_pool_vjp(x, &dy, batch, width),
                None => pool::max_pool_vjp::<f32>(x, &dy, batch, width),
            })
        })
    }

    fn scatter_rows(&self, x: &CpuTensor, width: usize, ids: &[u32], rows: usize) -> Result<CpuTensor> {
        Contract(self).scatter_rows(x, width, ids, rows)?;
        self.run(|| CpuTensor::F32(elementwise::scatter_rows(&x.to_f32(), width, ids, rows)))
    }
}

impl FusedOps for CpuBackend {
    // ---- fused block ops ---------------------------------------------------------------------

    fn bias_residual_norm(
        &self,
        z: &CpuTensor,
        bias: &CpuTensor,
        residual: &CpuTensor,
        rows: usize,
        ln: ResidualNorm<'_, CpuTensor>,
    ) -> Result<CpuTensor> {
        Contract(self).bias_residual_norm(
            z,
            bias,
            residual,
            None,
            Batch { steps: 1, tangents: 1, tokens: rows },
            ln,
        )?;
        self.run(|| match either_f64(z, residual) {
            true => {
                let (z, residual) = (z.to_f64(), residual.to_f64());
                let sum = norm::RowSum::two(&z[..], &residual[..], Some(bias));
                CpuTensor::F64(norm::layer_norm_as(&sum, rows, ln.width, ln.norm, ln.eps, |v| v).0)
            }
            false => {
                let sum = norm::RowSum::two(z, residual, Some(bias));
                CpuTensor::F32(norm::layer_norm(&sum, rows, ln.width, ln.norm, ln.eps).0)
            }
        })
    }

    fn bias_residual_norm_jvp(
        &self,
        z: &CpuTensor,
        bias: &CpuTensor,
        residual: &CpuTensor,
        dz: &CpuTensor,
        d_residual: &CpuTensor,
        batch: Batch,
        ln: ResidualNorm<'_, CpuTensor>,
    ) -> Result<(CpuTensor, CpuTensor)> {
        Contract(self).bias_residual_norm(z, bias, residual, Some((dz, d_residual)), batch, ln)?;
        self.run(|| {
            let rows = batch.primal_rows();
            let (y, saved) = match either_f64(z, residual) {
                true => {
                    let (z, residual) = (z.to_f64(), residual.to_f64());
                    let sum = norm::RowSum::two(&z[..], &residual[..], Some(bias));
                    let (y, saved) = norm::layer_norm_as(&sum, rows, ln.width, ln.norm, ln.eps, |v| v);
                    (CpuTensor::F64(y), saved)
                }
                false => {
                    let sum = norm::RowSum::two(z, residual, Some(bias));
                    let (y, saved) = norm::layer_norm(&sum, rows, ln.width, ln.norm, ln.eps);
                    (CpuTensor::F32(y), saved)
                }
            };
            let (dz, d_residual) = (dz.to_f32(), d_residual.to_f32());
            let d_sum = norm::RowSum::two(&dz, &d_residual, None);
            (y, CpuTensor::F32(norm::layer_norm_jvp(&saved, ln.norm, &d_sum, batch, ln.width)))
        })
    }

    fn bias_gelu(&self, z: &CpuTensor, rows: usize, bias: &CpuTensor) -> Result<CpuTensor> {
        Contract(self).bias_gelu(
            z,
            bias,
            None,
            Batch { steps: 1, tangents: 1, tokens: rows },
            self.tensor_len(bias),
        )?;
        self.run(|| match z.as_f64() {
            Some(z) => CpuTensor::F64(primal_f64::gelu(z, Some(bias))),
            None => CpuTensor::F32(gelu::gelu(z, Some(bias))),
        })
    }

    fn bias_gelu_jvp(
        &self,
        z: &CpuTensor,
        bias: &CpuTensor,
        dz: &CpuTensor,
        batch: Batch,
        width: usize,
    ) -> Result<(CpuTensor, CpuTensor)> {
        Contract(self).bias_gelu(z, bias, Some(dz), batch, width)?;
        self.run(|| {
            let (act, dact) = gelu::gelu_jvp(&z.to_f32(), Some(bias), &dz.to_f32(), batch, width);
            match z.as_f64() {
                // The slopes from the f32 copy are tangent-grade; the activation itself is not.
                Some(z) => (CpuTensor::F64(primal_f64::gelu(z, Some(bias))), CpuTensor::F32(dact)),
                None => (CpuTensor::F32(act), CpuTensor::F32(dact)),
            }
        })
    }

    fn attention_with_token_jvp(
        &self,
        qkv: &CpuTensor,
        d_rows: &CpuTensor,
        directions: Range<usize>,
        batch: Batch,
        heads: Heads,
        scores: ScoreMods<'_, CpuTensor>,
    ) -> Result<(CpuTensor, CpuTensor)> {
        Contract(self).attention_with_token_jvp(qkv, d_rows, &directions, batch, heads, scores)?;
        self.run(|| {
            let (ctx, probs) = self.attend(qkv, batch.steps, batch.tokens, heads, scores);
            let (qkv32, ctx32, d_rows) = (qkv.to_f32(), ctx.to_f32(), d_rows.to_f32());
            let dctx = attention::attention_token_jvp(&qkv32, &ctx32, &probs, &d_rows, directions, batch, heads);
            (ctx, CpuTensor::F32(dctx))
        })
    }

    fn pooled_linear_residual_norm_jvp(
        &self,
        x: &CpuTensor,
        dx: &CpuTensor,
        residual: &CpuTensor,
        d_residual: &CpuTensor,
        layer: &Linear<CpuTensor>,
        batch: Batch,
        ln: ResidualNorm<'_, CpuTensor>,
    ) -> Result<CpuTensor> {
        Contract(self).pooled_linear_residual_norm_jvp(x, dx, residual, d_residual, layer, batch, ln)?;
        self.run(|| {
            let (dx, d_residual) = (dx.to_f32(), d_residual.to_f32());
            CpuTensor::F32(match either_f64(x, residual) {
                true => {
                    // The primal output's statistics from the f64 primal.
                    let rows = batch.primal_rows();
                    let z = primal_f64::linear(&x.to_f64(), rows, layer, true);
                    let residual = residual.to_f64();
                    let sum = norm::RowSum::two(&z[..], &residual[..], None);
                    let (_, saved) = norm::layer_norm_as(&sum, rows, ln.width, ln.norm, ln.eps, |v| v);
                    pooled_norm::pooled_jvp_at(&saved, &dx, &d_residual, layer, batch, ln, self.threads)
                }
                false => pooled_norm::pooled_linear_residual_norm_jvp(
                    x,
                    &dx,
                    residual,
                    &d_residual,
                    layer,
                    batch,
                    ln,
                    self.threads,
                ),
            })
        })
    }

    fn residual_norm_vjp(
        &self,
        saved: &NormSaved<CpuTensor>,
        norm: &Norm<CpuTensor>,
        dy: &CpuTensor,
        d_residual: &CpuTensor,
        batch: Batch,
        width: usize,
    ) -> Result<CpuTensor> {
        Contract(self).residual_norm_vjp(saved, norm, dy, d_residual, batch, width)?;
        let (dy, d_residual) = (dy.to_f32(), d_residual.to_f32());
        self.run(|| CpuTensor::F32(norm::layer_norm_vjp(saved, norm, &dy, Some(&d_residual), batch, width)))
    }

    fn mean_pooled_norm_linear_vjp(
        &self,
        saved: &NormSaved<CpuTensor>,
        norm: &Norm<CpuTensor>,
        layer: &Linear<CpuTensor>,
        dims: Range<usize>,
        batch: Batch,
    ) -> Result<(CpuTensor, CpuTensor)> {
        Contract(self).mean_pooled_norm_linear_vjp(saved, norm, layer, &dims, batch)?;
        self.run(|| {
            let (d_sum, d_in) =
                pooled_norm::mean_pooled_norm_linear_vjp(saved, &norm.gamma, layer, dims, batch, self.threads);
            (CpuTensor::F32(d_sum), CpuTensor::F32(d_in))
        })
    }

    fn attention_with_jvp(
        &self,
        qkv: &CpuTensor,
        dqkv: &CpuTensor,
        batch: Batch,
        heads: Heads,
        scores: ScoreMods<'_, CpuTensor>,
    ) -> Result<(CpuTensor, CpuTensor)> {
        Contract(self).attention_with_jvp(qkv, dqkv, batch, heads, scores)?;
        self.run(|| {
            // The probabilities of each step are computed once and read by all its tangents.
            let (ctx, probs) = self.attend(qkv, batch.steps, batch.tokens, heads, scores);
            let dctx = attention::attention_jvp(&qkv.to_f32(), &probs, &dqkv.to_f32(), batch, heads);
            (ctx, CpuTensor::F32(dctx))
        })
    }
}

impl Accumulators for CpuBackend {
    fn interpolate(&self, origin: &CpuTensor, delta: &CpuTensor, alphas: &[f64]) -> Result<CpuTensor> {
        Contract(self).interpolate(origin, delta)?;
        self.run(|| match either_f64(origin, delta) {
            true => CpuTensor::F64(primal_f64::interpolate(&origin.to_f64(), &delta.to_f64(), alphas)),
            false => CpuTensor::F32(elementwise::interpolate(origin, delta, alphas)),
        })
    }

    fn token_tangents(
        &self,
        delta: &CpuTensor,
        steps: usize,
        tokens: usize,
        width: usize,
        directions: Range<usize>,
    ) -> Result<CpuTensor> {
        Contract(self).token_tangents(delta, tokens, width, &directions)?;
        self.run(|| CpuTensor::F32(elementwise::token_tangents(&delta.to_f32(), steps, tokens, width, directions)))
    }

    fn pool_accumulate(
        &self,
        projection: &mut CpuTensor,
        d_states: &CpuTensor,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_direction: usize,
    ) -> Result<()> {
        Contract(self).pool_accumulate(projection, d_states, batch, width, weights, first_direction)?;
        let CpuTensor::F32(projection) = projection else {
            return Err(Error::Internal("cpu: the projection accumulates in f32 (made by `zeros`)".into()));
        };
        self.run(|| pool::pool_accumulate(projection, &d_states.to_f32(), batch, width, weights, first_direction))
    }

    fn cotangent_accumulate(
        &self,
        projection: &mut CpuTensor,
        d_states: &CpuTensor,
        delta: &CpuTensor,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_dim: usize,
    ) -> Result<()> {
        Contract(self).cotangent_accumulate(projection, d_states, delta, batch, width, weights, first_dim)?;
        let CpuTensor::F32(projection) = projection else {
            return Err(Error::Internal("cpu: the projection accumulates in f32 (made by `zeros`)".into()));
        };
        let d_states = d_states.to_f32();
        self.run(|| match delta.as_f64() {
            Some(delta) => pool::cotangent_accumulate(projection, &d_states, delta, batch, width, weights, first_dim),
            None => pool::cotangent_accumulate::<f32>(projection, &d_states, delta, batch, width, weights, first_dim),
        })
    }
}

impl CpuBackend {
    /// `x Wᵀ (+ b)` in the precision of `x`.
    fn dense(&self, x: &CpuTensor, rows: usize, layer: &Linear<CpuTensor>, with_bias: bool) -> CpuTensor {
        match x.as_f64() {
            Some(x) => CpuTensor::F64(primal_f64::linear(x, rows, layer, with_bias)),
            None => CpuTensor::F32(gemm::linear(x, rows, layer, with_bias.then_some(&layer.bias[..]), self.threads)),
        }
    }

    /// Primal attention in the precision of `qkv`: the context, and the probabilities in f32
    /// for the tangent kernels.
    fn attend(
        &self,
        qkv: &CpuTensor,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, CpuTensor>,
    ) -> (CpuTensor, Vec<f32>) {
        match qkv.as_f64() {
            Some(qkv) => {
                let (ctx, probs) = primal_f64::attention(qkv, seqs, tokens, heads, scores);
                (CpuTensor::F64(ctx), probs.iter().map(|&p| p as f32).collect())
            }
            None => {
                let (ctx, probs) = attention::attention(qkv, seqs, tokens, heads, scores, None);
                (CpuTensor::F32(ctx), probs)
            }
        }
    }
}

/// Whether either operand is an f64 primal (then so is the result).
fn either_f64(a: &CpuTensor, b: &CpuTensor) -> bool {
    a.as_f64().is_some() || b.as_f64().is_some()
}

fn f32_saved(saved: NormSaved<Vec<f32>>) -> NormSaved<CpuTensor> {
    NormSaved { normalized: CpuTensor::F32(saved.normalized), inv_std: CpuTensor::F32(saved.inv_std) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SentenceModel;

    /// A weight mapped from the checkpoint is uploaded by sharing it (the kernels read the
    /// mapped bytes), and one in memory by a copy; both read back the same values.
    #[test]
    fn mapped_weights_are_shared_not_copied() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let model = SentenceModel::load(&dir).unwrap();
        let backend = CpuBackend::new(BackendSettings::default()).unwrap();
        let table = &model.params.embeddings.word;
        assert!(table.is_mapped(), "the word table is read in place from model.safetensors");
        let role = Role::Table { rows: table.shape[0], width: table.shape[1] };
        let shared = backend.upload_host(table, role).unwrap();
        assert_eq!(shared.as_ptr(), table.data().as_ptr(), "the mapped table was copied");
        let owned = HostTensor::new(table.shape.clone(), table.data().to_vec());
        let copied = backend.upload_host(&owned, role).unwrap();
        assert_ne!(copied.as_ptr(), owned.data().as_ptr());
        assert_eq!(&shared[..], &copied[..]);
    }
}
