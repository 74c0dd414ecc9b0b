//! The host side of the backends that run hand-written device code: the WGSL shaders on wgpu
//! (`shaders/`, `super::wgpu`) and the CUDA kernels (`kernels/`, `super::cuda`), which mirror
//! each other file for file and entry point for entry point, with the same parameter structs
//! and buffers. This module is that host code, written once over the `Device` seam: which op
//! launches which entry point with which shape parameters, buffers and grid, how passes are
//! sized and attention's scratch is chunked, where tables too large for one binding live.
//! Tensors stay on the device across layers and ops; only `download` reads one back.
//!
//! The block ops are fused as on the CPU backends: the FFN bias is added inside GELU and the
//! post-LN sums (`z + bias + residual`, and the two branches' tangents or cotangents) inside
//! the LayerNorm kernels, so those sums are never written to device memory.

use std::ops::Range;
use std::sync::Arc;

use super::{
    check_upload, Accumulators, AttentionSaved, BackendSettings, Batch, FusedOps, Heads, MathOps, NormSaved, Precision,
    ResidualNorm, ScoreMods, Storage,
};
pub mod kernels;

use self::kernels::{attention, elementwise, gelu, layer_norm, matmul, pooling, KernelParams};
use crate::backend::shapes::Contract;
use crate::error::{Error, Result};
use crate::params::{Linear, Norm, Role};

/// Workgroups (blocks) along one grid dimension, at most (WebGPU's guaranteed limit; CUDA's
/// along y).
const MAX_GROUPS: u32 = 65_535;

/// A grid of `⌈invocations / per_group⌉` workgroups, folded into two dimensions.
pub fn grid(invocations: usize, per_group: usize) -> (u32, u32) {
    let groups = invocations.div_ceil(per_group) as u64;
    if groups == 0 {
        return (0, 0);
    }
    let x = groups.min(MAX_GROUPS as u64);
    (x as u32, groups.div_ceil(x) as u32)
}

/// A buffer on a device: `len` values.
pub trait DeviceBuffer: Send + Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the host code needs of a device: buffers in the tensors' precision (or f32 and u32
/// for step weights, alphas and ids), and one way to run device code: an entry point of an op
/// family (`elementwise`, `matmul`, `layer_norm`, `gelu`, `attention`, `pooling`) with its
/// shape parameters (the family's `Params` struct as u32 words) and its buffers (binding
/// number, buffer; a CUDA kernel takes them in this order) on a grid of `groups` workgroups.
pub trait Device: Send + Sync + Sized {
    type Buffer: DeviceBuffer + 'static;
    /// What the backend reports as its name: "wgpu f16 (llvmpipe …)", "cuda-emu f32 (…)".
    fn describe(&self, precision: Precision) -> String;
    /// An uninitialised tensor of `len` values.
    fn tensor(&self, len: usize) -> Result<Self::Buffer>;
    fn zeros(&self, len: usize) -> Result<Self::Buffer>;
    /// A tensor of `data`, stored in the tensors' precision.
    fn upload_tensor(&self, data: &[f32]) -> Result<Self::Buffer>;
    /// f32 values that stay f32 (step weights, alphas).
    fn upload_f32(&self, data: &[f32]) -> Result<Self::Buffer>;
    fn upload_u32(&self, data: &[u32]) -> Result<Self::Buffer>;
    /// A tensor's values, after every op submitted before.
    fn download(&self, buffer: &Self::Buffer) -> Result<Vec<f32>>;
    fn dispatch(
        &self,
        family: &'static str,
        entry: &'static str,
        params: &[u32],
        bindings: &[(u32, &Self::Buffer)],
        groups: (u32, u32),
    ) -> Result<()>;
    /// The most values one tensor may hold (one binding's worth on wgpu).
    fn max_binding_values(&self) -> usize;
    /// The largest embedding table kept on the device; larger ones are gathered on the host.
    fn max_table_values(&self) -> usize;
    /// Waits until every op submitted so far has run; reports the device's first error.
    fn synchronize(&self) -> Result<()>;
    /// Bytes of device memory free right now, where the device can tell (a CUDA GPU; wgpu
    /// cannot ask, and the harness's memory is the host's).
    fn free_memory(&self) -> Option<usize> {
        None
    }
}

/// A tensor of a device backend: on the device, or, for an embedding table larger than one
/// binding allows (XLM-RoBERTa's 250k × 768 is 768 MB; lavapipe binds 128 MiB), kept on the
/// host and gathered there.
pub enum GpuTensor<B> {
    Device(B),
    Host(Arc<Vec<f32>>),
}

impl<B: DeviceBuffer> GpuTensor<B> {
    fn device(&self) -> Result<&B> {
        match self {
            GpuTensor::Device(buffer) => Ok(buffer),
            GpuTensor::Host(_) => Err(Error::Internal("a host-side table was used by a device op".into())),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            GpuTensor::Device(buffer) => buffer.len(),
            GpuTensor::Host(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Attention's JVP or VJP as two kernels: one writes `Ṗ` or `S̄` per (sequence, head, query)
/// into a scratch buffer, the other reads it for each output element (`out_width` per row).
struct AttentionPair {
    scores: &'static str,
    outputs: &'static str,
    out_width: usize,
}

/// The tensor of the backend on device `D`.
type Tensor<D> = GpuTensor<<D as Device>::Buffer>;

/// A backend whose ops run as device code on `D`: WGSL shaders on wgpu, CUDA kernels on the
/// CPU harness or a GPU.
pub struct GpuBackend<D: Device> {
    device: D,
    max_memory: usize,
    precision: Precision,
    /// One zero, bound where an entry point declares an input that this call leaves unused (an
    /// absent score bias or key mask, the unfused forms of the fused kernels).
    stand_in: D::Buffer,
}

impl<D: Device> GpuBackend<D> {
    /// The backend on an opened device whose tensors are stored in `precision`.
    pub fn on(device: D, settings: BackendSettings, precision: Precision) -> Result<Self> {
        let stand_in = device.zeros(1)?;
        Ok(GpuBackend { device, max_memory: settings.max_memory, precision, stand_in })
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Waits until every op submitted so far has run (benches time the device code with it).
    pub fn synchronize(&self) -> Result<()> {
        self.device.synchronize()
    }

    fn output(&self, len: usize) -> Result<D::Buffer> {
        self.device.tensor(len)
    }

    /// An elementwise-family op writing `len` values.
    fn elementwise(
        &self,
        entry: &'static str,
        params: elementwise::Params,
        inputs: &[(u32, &D::Buffer)],
        len: usize,
    ) -> Result<Tensor<D>> {
        let out = self.output(len)?;
        let mut bindings = inputs.to_vec();
        bindings.push((elementwise::OUT, &out));
        self.launch(entry, params, &bindings, grid(len, 256))?;
        Ok(GpuTensor::Device(out))
    }

    /// Runs kernel `entry` of `P`'s family with `params` and `bindings` (binding number,
    /// buffer), each binding checked to be one of the family's (`gpu/kernels.rs`).
    fn launch<P: KernelParams>(
        &self,
        entry: &'static str,
        params: P,
        bindings: &[(u32, &D::Buffer)],
        groups: (u32, u32),
    ) -> Result<()> {
        let family = kernels::family(P::FAMILY)?;
        kernels::check_bindings(family, entry, bindings.iter().map(|&(number, _)| number))?;
        self.device.dispatch(family.name, entry, &params.words(), bindings, groups)
    }

    fn gemm(
        &self,
        x: &Tensor<D>,
        rows: usize,
        layer: &Linear<Tensor<D>>,
        transposed: bool,
        with_bias: bool,
    ) -> Result<Tensor<D>> {
        let (inner, cols) = if transposed { (layer.in_dim, layer.out_dim) } else { (layer.out_dim, layer.in_dim) };
        let out = self.output(rows * cols)?;
        let params = matmul::Params {
            rows: rows as u32,
            cols: cols as u32,
            inner: inner as u32,
            transposed: transposed as u32,
            with_bias: with_bias as u32,
            ..Default::default()
        };
        let bindings = [
            (matmul::X, x.device()?),
            (matmul::W, layer.weight.device()?),
            (matmul::BIAS, layer.bias.device()?),
            (matmul::OUT, &out),
        ];
        self.launch("matmul", params, &bindings, (cols.div_ceil(64) as u32, rows.div_ceil(64) as u32))?;
        Ok(GpuTensor::Device(out))
    }

    fn pooling(
        &self,
        entry: &'static str,
        params: pooling::Params,
        inputs: &[(u32, &D::Buffer)],
        out: &D::Buffer,
        invocations: usize,
    ) -> Result<()> {
        let mut bindings = inputs.to_vec();
        bindings.push((pooling::OUT, out));
        self.launch(entry, params, &bindings, grid(invocations, 64))
    }

    /// An elementwise op of two equal-length operands.
    fn zip(&self, entry: &'static str, a: &Tensor<D>, b: &Tensor<D>) -> Result<Tensor<D>> {
        let params = elementwise::Params { len: a.len() as u32, width: 1, ..Default::default() };
        self.elementwise(entry, params, &[(elementwise::A, a.device()?), (elementwise::B, b.device()?)], a.len())
    }

    /// The pooling family's parameters for `len` outputs over rows of `width`.
    fn pooling_params(&self, len: usize, width: usize, tokens: usize, tangents: usize) -> pooling::Params {
        pooling::Params {
            len: len as u32,
            width: width as u32,
            tokens: tokens as u32,
            tangents: tangents as u32,
            ..Default::default()
        }
    }

    /// Bytes a pass may take: `--max-memory`, and on a device that tells its free memory no
    /// more than 80% of it, asked when the pass is planned (so the weights and whatever else
    /// is resident, ours or another process's, are already counted).
    fn budget(&self) -> usize {
        match self.device.free_memory() {
            Some(free) => self.max_memory.min(free / 5 * 4),
            None => self.max_memory,
        }
    }

    /// Tangent sequences per attention scratch chunk: `[chunk, heads, tokens, tokens]` within
    /// one binding and an eighth of the memory budget.
    fn attention_chunk(&self, heads: Heads, tokens: usize, seqs: usize) -> usize {
        let per_seq = heads.count * tokens * tokens;
        let most = self.device.max_binding_values().min(self.budget() / 32);
        (most / per_seq.max(1)).clamp(1, seqs.max(1))
    }

    fn attention_params(
        &self,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        tangents: usize,
        first: usize,
    ) -> attention::Params {
        attention::Params {
            seqs: seqs as u32,
            tokens: tokens as u32,
            heads: heads.count as u32,
            head_dim: heads.dim as u32,
            tangents: tangents as u32,
            first_seq: first as u32,
            scale: heads.scale() as f32,
            ..Default::default()
        }
    }

    /// The pair of kernels of attention's JVP or VJP, chunk by chunk of tangent sequences.
    fn attention_pair(
        &self,
        pair: AttentionPair,
        qkv: &Tensor<D>,
        saved: &AttentionSaved<Tensor<D>>,
        tangents: &Tensor<D>,
        batch: Batch,
        heads: Heads,
    ) -> Result<Tensor<D>> {
        let (t, out_width) = (batch.tokens, pair.out_width);
        let out = self.output(batch.tangent_rows() * out_width)?;
        let seqs = batch.tangent_seqs();
        let chunk = self.attention_chunk(heads, t, seqs);
        let scratch = self.output(chunk * heads.count * t * t)?;
        let (qkv, tangents, probs) = (qkv.device()?, tangents.device()?, saved.probs.device()?);
        for first in (0..seqs).step_by(chunk) {
            let count = chunk.min(seqs - first);
            let params = self.attention_params(count, t, heads, batch.tangents, first);
            use attention::{OUT, PROBS, QKV, SCRATCH, TANGENTS};
            let scores = [(QKV, qkv), (TANGENTS, tangents), (PROBS, probs), (OUT, &scratch)];
            self.launch(pair.scores, params, &scores, grid(count * heads.count * t, 64))?;
            let outputs = [(QKV, qkv), (TANGENTS, tangents), (PROBS, probs), (SCRATCH, &scratch), (OUT, &out)];
            self.launch(pair.outputs, params, &outputs, grid(count * t * out_width, 64))?;
        }
        Ok(GpuTensor::Device(out))
    }
}

impl<D: Device> Storage for GpuBackend<D> {
    type Tensor = Tensor<D>;

    fn name(&self) -> String {
        self.device.describe(self.precision)
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn memory_budget(&self) -> usize {
        self.budget()
    }

    fn describe_memory_budget(&self) -> String {
        let budget = self.budget();
        match self.device.free_memory() {
            Some(free) if budget < self.max_memory => {
                format!(
                    "{budget} bytes (80% of the {free} bytes free on the device; --max-memory is {})",
                    self.max_memory
                )
            }
            _ => format!("{budget} bytes"),
        }
    }

    /// No tensor of a pass may exceed what the adapter binds.
    fn max_tensor_values(&self) -> Option<usize> {
        Some(self.device.max_binding_values())
    }

    fn upload(&self, data: &[f32], role: Role) -> Result<Tensor<D>> {
        check_upload(data, role)?;
        if matches!(role, Role::Table { .. }) && data.len() > self.device.max_table_values() {
            return Ok(GpuTensor::Host(Arc::new(data.to_vec())));
        }
        Ok(GpuTensor::Device(self.device.upload_tensor(data)?))
    }

    fn download(&self, x: &Tensor<D>) -> Result<Vec<f64>> {
        let values = match x {
            GpuTensor::Device(buffer) => self.device.download(buffer)?,
            GpuTensor::Host(values) => values.to_vec(),
        };
        Ok(values.into_iter().map(f64::from).collect())
    }

    fn tensor_len(&self, x: &Tensor<D>) -> usize {
        x.len()
    }

    fn zeros(&self, len: usize) -> Result<Tensor<D>> {
        Ok(GpuTensor::Device(self.device.zeros(len)?))
    }
}

impl<D: Device> MathOps for GpuBackend<D> {
    fn gather_rows(&self, table: &Tensor<D>, width: usize, ids: &[u32]) -> Result<Tensor<D>> {
        Contract(self).gather_rows(table, width, ids)?;
        if let GpuTensor::Host(values) = table {
            let gathered: Vec<f32> =
                ids.iter().flat_map(|&id| values[id as usize * width..][..width].iter().copied()).collect();
            return Ok(GpuTensor::Device(self.device.upload_tensor(&gathered)?));
        }
        let ids_buffer = self.device.upload_u32(ids)?;
        let len = ids.len() * width;
        let params =
            elementwise::Params { len: len as u32, width: width as u32, count: ids.len() as u32, ..Default::default() };
        let inputs = [(elementwise::A, table.device()?), (elementwise::IDS, &ids_buffer)];
        self.elementwise("gather_rows", params, &inputs, len)
    }

    fn add(&self, a: &Tensor<D>, b: &Tensor<D>) -> Result<Tensor<D>> {
        Contract(self).same("add operand", a, b)?;
        self.zip("add", a, b)
    }

    fn sub(&self, a: &Tensor<D>, b: &Tensor<D>) -> Result<Tensor<D>> {
        Contract(self).same("sub operand", a, b)?;
        self.zip("sub", a, b)
    }

    fn add_bias(&self, x: &Tensor<D>, rows: usize, bias: &Tensor<D>) -> Result<Tensor<D>> {
        Contract(self).add_bias(x, rows, bias)?;
        let params = elementwise::Params { len: x.len() as u32, width: bias.len() as u32, ..Default::default() };
        self.elementwise(
            "add_bias",
            params,
            &[(elementwise::A, x.device()?), (elementwise::B, bias.device()?)],
            x.len(),
        )
    }

    fn linear(&self, x: &Tensor<D>, rows: usize, layer: &Linear<Tensor<D>>) -> Result<Tensor<D>> {
        Contract(self).linear("linear", x, rows, layer)?;
        self.gemm(x, rows, layer, true, true)
    }

    fn matmul(&self, x: &Tensor<D>, rows: usize, layer: &Linear<Tensor<D>>) -> Result<Tensor<D>> {
        Contract(self).linear("matmul", x, rows, layer)?;
        self.gemm(x, rows, layer, true, false)
    }

    fn matmul_vjp(&self, dy: &Tensor<D>, rows: usize, layer: &Linear<Tensor<D>>) -> Result<Tensor<D>> {
        Contract(self).matmul_vjp(dy, rows, layer)?;
        self.gemm(dy, rows, layer, false, false)
    }

    fn layer_norm(
        &self,
        x: &Tensor<D>,
        rows: usize,
        width: usize,
        norm: &Norm<Tensor<D>>,
        eps: f64,
    ) -> Result<(Tensor<D>, NormSaved<Tensor<D>>)> {
        Contract(self).layer_norm(x, rows, width, norm)?;
        self.norm_forward(x, None, rows, ResidualNorm { norm, width, eps })
    }

    fn layer_norm_jvp(
        &self,
        saved: &NormSaved<Tensor<D>>,
        norm: &Norm<Tensor<D>>,
        dx: &Tensor<D>,
        batch: Batch,
        width: usize,
    ) -> Result<Tensor<D>> {
        Contract(self).norm_derivative("layer_norm_jvp", saved, norm, dx, batch, width)?;
        self.norm_derivative(false, saved, norm, dx, None, batch, width)
    }

    fn layer_norm_vjp(
        &self,
        saved: &NormSaved<Tensor<D>>,
        norm: &Norm<Tensor<D>>,
        dy: &Tensor<D>,
        batch: Batch,
        width: usize,
    ) -> Result<Tensor<D>> {
        Contract(self).norm_derivative("layer_norm_vjp", saved, norm, dy, batch, width)?;
        self.norm_derivative(true, saved, norm, dy, None, batch, width)
    }

    fn gelu(&self, x: &Tensor<D>) -> Result<Tensor<D>> {
        self.gelu_with_bias(x, x.len(), None)
    }

    fn gelu_jvp(&self, x: &Tensor<D>, dx: &Tensor<D>, batch: Batch, width: usize) -> Result<Tensor<D>> {
        Contract(self).activation_derivative("gelu_jvp", x, dx, batch, width)?;
        self.gelu_derivative(x, None, dx, batch, width)
    }

    fn attention(
        &self,
        qkv: &Tensor<D>,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, Tensor<D>>,
    ) -> Result<(Tensor<D>, AttentionSaved<Tensor<D>>)> {
        Contract(self).attention(qkv, seqs, tokens, heads, scores, None)?;
        let (t, w) = (tokens, heads.width());
        let probs = self.output(seqs * heads.count * t * t)?;
        let params = attention::Params {
            has_bias: scores.bias.is_some() as u32,
            has_mask: scores.key_mask.is_some() as u32,
            ..self.attention_params(seqs, t, heads, 1, 0)
        };
        let stand_in = &self.stand_in;
        let bias = match scores.bias {
            Some(bias) => bias.device()?,
            None => stand_in,
        };
        let mask = match scores.key_mask {
            Some(mask) => mask.device()?,
            None => stand_in,
        };
        let qkv = qkv.device()?;
        use attention::{KEY_MASK, OUT, PROBS, QKV, SCORE_BIAS};
        let bindings = [(QKV, qkv), (SCORE_BIAS, bias), (KEY_MASK, mask), (OUT, &probs)];
        self.launch("softmax", params, &bindings, grid(seqs * heads.count * t, 64))?;
        let context = self.output(seqs * t * w)?;
        let bindings = [(QKV, qkv), (PROBS, &probs), (OUT, &context)];
        self.launch("context", params, &bindings, grid(seqs * t * w, 64))?;
        Ok((GpuTensor::Device(context), AttentionSaved { probs: GpuTensor::Device(probs) }))
    }

    fn attention_jvp(
        &self,
        qkv: &Tensor<D>,
        saved: &AttentionSaved<Tensor<D>>,
        dqkv: &Tensor<D>,
        batch: Batch,
        heads: Heads,
    ) -> Result<Tensor<D>> {
        Contract(self).attention_derivative(qkv, saved, dqkv, 3 * heads.width(), batch, heads)?;
        let w = heads.width();
        let pair = AttentionPair { scores: "jvp_scores", outputs: "jvp_context", out_width: w };
        self.attention_pair(pair, qkv, saved, dqkv, batch, heads)
    }

    fn attention_vjp(
        &self,
        qkv: &Tensor<D>,
        saved: &AttentionSaved<Tensor<D>>,
        dctx: &Tensor<D>,
        batch: Batch,
        heads: Heads,
    ) -> Result<Tensor<D>> {
        Contract(self).attention_derivative(qkv, saved, dctx, heads.width(), batch, heads)?;
        let w = heads.width();
        let pair = AttentionPair { scores: "vjp_scores", outputs: "vjp_inputs", out_width: 3 * w };
        self.attention_pair(pair, qkv, saved, dctx, batch, heads)
    }

    fn mean_pool(&self, x: &Tensor<D>, seqs: usize, tokens: usize, width: usize) -> Result<Tensor<D>> {
        Contract(self).pool("mean_pool", x, seqs, tokens, width)?;
        self.pool_tokens("mean_pool", x, seqs, tokens, width)
    }

    fn max_pool(&self, x: &Tensor<D>, seqs: usize, tokens: usize, width: usize) -> Result<Tensor<D>> {
        Contract(self).pool("max_pool", x, seqs, tokens, width)?;
        self.pool_tokens("max_pool", x, seqs, tokens, width)
    }

    fn max_pool_jvp(&self, x: &Tensor<D>, dx: &Tensor<D>, batch: Batch, width: usize) -> Result<Tensor<D>> {
        Contract(self).max_pool_derivative(x, dx, batch.tangent_rows(), batch, width)?;
        let len = batch.tangent_seqs() * width;
        let out = self.output(len)?;
        let params = self.pooling_params(len, width, batch.tokens, batch.tangents);
        self.pooling("max_pool_jvp", params, &[(pooling::X, x.device()?), (pooling::DX, dx.device()?)], &out, len)?;
        Ok(GpuTensor::Device(out))
    }

    fn mean_pool_vjp(&self, dy: &Tensor<D>, seqs: usize, tokens: usize, width: usize) -> Result<Tensor<D>> {
        Contract(self).mean_pool_vjp(dy, seqs, width)?;
        let len = seqs * tokens * width;
        let out = self.output(len)?;
        let params = self.pooling_params(len, width, tokens, 1);
        self.pooling("mean_pool_vjp", params, &[(pooling::DX, dy.device()?)], &out, len)?;
        Ok(GpuTensor::Device(out))
    }

    fn max_pool_vjp(&self, x: &Tensor<D>, dy: &Tensor<D>, batch: Batch, width: usize) -> Result<Tensor<D>> {
        Contract(self).max_pool_derivative(x, dy, batch.tangent_seqs(), batch, width)?;
        let len = batch.tangent_rows() * width;
        let out = self.output(len)?;
        let params = self.pooling_params(len, width, batch.tokens, batch.tangents);
        self.pooling("max_pool_vjp", params, &[(pooling::X, x.device()?), (pooling::DX, dy.device()?)], &out, len)?;
        Ok(GpuTensor::Device(out))
    }

    fn scatter_rows(&self, x: &Tensor<D>, width: usize, ids: &[u32], rows: usize) -> Result<Tensor<D>> {
        Contract(self).scatter_rows(x, width, ids, rows)?;
        let ids_buffer = self.device.upload_u32(ids)?;
        let len = rows * width;
        let params =
            elementwise::Params { len: len as u32, width: width as u32, count: ids.len() as u32, ..Default::default() };
        self.elementwise("scatter_rows", params, &[(elementwise::A, x.device()?), (elementwise::IDS, &ids_buffer)], len)
    }
}

impl<D: Device> FusedOps for GpuBackend<D> {
    // ---- block ops, fused ------------------------------------------------------------------

    fn bias_residual_norm(
        &self,
        z: &Tensor<D>,
        bias: &Tensor<D>,
        residual: &Tensor<D>,
        rows: usize,
        ln: ResidualNorm<'_, Tensor<D>>,
    ) -> Result<Tensor<D>> {
        Contract(self).bias_residual_norm(
            z,
            bias,
            residual,
            None,
            Batch { steps: 1, tangents: 1, tokens: rows },
            ln,
        )?;
        Ok(self.norm_forward(z, Some((bias, residual)), rows, ln)?.0)
    }

    fn bias_residual_norm_jvp(
        &self,
        z: &Tensor<D>,
        bias: &Tensor<D>,
        residual: &Tensor<D>,
        dz: &Tensor<D>,
        d_residual: &Tensor<D>,
        batch: Batch,
        ln: ResidualNorm<'_, Tensor<D>>,
    ) -> Result<(Tensor<D>, Tensor<D>)> {
        Contract(self).bias_residual_norm(z, bias, residual, Some((dz, d_residual)), batch, ln)?;
        let (y, saved) = self.norm_forward(z, Some((bias, residual)), batch.primal_rows(), ln)?;
        let dy = self.norm_derivative(false, &saved, ln.norm, dz, Some(d_residual), batch, ln.width)?;
        Ok((y, dy))
    }

    fn residual_norm_vjp(
        &self,
        saved: &NormSaved<Tensor<D>>,
        norm: &Norm<Tensor<D>>,
        dy: &Tensor<D>,
        d_residual: &Tensor<D>,
        batch: Batch,
        width: usize,
    ) -> Result<Tensor<D>> {
        Contract(self).residual_norm_vjp(saved, norm, dy, d_residual, batch, width)?;
        self.norm_derivative(true, saved, norm, dy, Some(d_residual), batch, width)
    }

    fn bias_gelu(&self, z: &Tensor<D>, rows: usize, bias: &Tensor<D>) -> Result<Tensor<D>> {
        Contract(self).bias_gelu(
            z,
            bias,
            None,
            Batch { steps: 1, tangents: 1, tokens: rows },
            self.tensor_len(bias),
        )?;
        self.gelu_with_bias(z, bias.len(), Some(bias))
    }

    fn bias_gelu_jvp(
        &self,
        z: &Tensor<D>,
        bias: &Tensor<D>,
        dz: &Tensor<D>,
        batch: Batch,
        width: usize,
    ) -> Result<(Tensor<D>, Tensor<D>)> {
        Contract(self).bias_gelu(z, bias, Some(dz), batch, width)?;
        let dy = self.gelu_derivative(z, Some(bias), dz, batch, width)?;
        Ok((self.gelu_with_bias(z, width, Some(bias))?, dy))
    }
}

impl<D: Device> Accumulators for GpuBackend<D> {
    fn interpolate(&self, origin: &Tensor<D>, delta: &Tensor<D>, alphas: &[f64]) -> Result<Tensor<D>> {
        Contract(self).interpolate(origin, delta)?;
        let alpha_values: Vec<f32> = alphas.iter().map(|&a| a as f32).collect();
        let alphas_buffer = self.device.upload_f32(&alpha_values)?;
        let len = alphas.len() * origin.len();
        let params = elementwise::Params {
            len: len as u32,
            width: origin.len() as u32,
            count: alphas.len() as u32,
            ..Default::default()
        };
        let inputs = [
            (elementwise::A, origin.device()?),
            (elementwise::B, delta.device()?),
            (elementwise::ALPHAS, &alphas_buffer),
        ];
        self.elementwise("interpolate", params, &inputs, len)
    }

    fn token_tangents(
        &self,
        delta: &Tensor<D>,
        steps: usize,
        tokens: usize,
        width: usize,
        directions: Range<usize>,
    ) -> Result<Tensor<D>> {
        Contract(self).token_tangents(delta, tokens, width, &directions)?;
        let len = steps * directions.len() * tokens * width;
        let params = elementwise::Params {
            len: len as u32,
            width: width as u32,
            count: directions.len() as u32,
            first: directions.start as u32,
            tokens: tokens as u32,
            ..Default::default()
        };
        self.elementwise("token_tangents", params, &[(elementwise::A, delta.device()?)], len)
    }

    fn pool_accumulate(
        &self,
        projection: &mut Tensor<D>,
        d_states: &Tensor<D>,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_direction: usize,
    ) -> Result<()> {
        Contract(self).pool_accumulate(projection, d_states, batch, width, weights, first_direction)?;
        let weights_buffer = self.device.upload_f32(&weights.iter().map(|&w| w as f32).collect::<Vec<_>>())?;
        let len = batch.tangents * width;
        let params = pooling::Params {
            steps: batch.steps as u32,
            first: first_direction as u32,
            ..self.pooling_params(len, width, batch.tokens, batch.tangents)
        };
        let inputs = [(pooling::DX, d_states.device()?), (pooling::WEIGHTS, &weights_buffer)];
        self.pooling("pool_accumulate", params, &inputs, projection.device()?, len)
    }

    fn cotangent_accumulate(
        &self,
        projection: &mut Tensor<D>,
        d_states: &Tensor<D>,
        delta: &Tensor<D>,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_dim: usize,
    ) -> Result<()> {
        Contract(self).cotangent_accumulate(projection, d_states, delta, batch, width, weights, first_dim)?;
        let t = batch.tokens;
        let columns = projection.len() / t.max(1);
        let weights_buffer = self.device.upload_f32(&weights.iter().map(|&w| w as f32).collect::<Vec<_>>())?;
        let len = t * batch.tangents;
        let params = pooling::Params {
            steps: batch.steps as u32,
            first: first_dim as u32,
            columns: columns as u32,
            ..self.pooling_params(len, width, t, batch.tangents)
        };
        let inputs =
            [(pooling::DX, d_states.device()?), (pooling::DELTA, delta.device()?), (pooling::WEIGHTS, &weights_buffer)];
        self.pooling("cotangent_accumulate", params, &inputs, projection.device()?, len)
    }
}

impl<D: Device> GpuBackend<D> {
    /// `gelu(x)`, or `gelu(x + bias)` with the bias added per column of `width`.
    fn gelu_with_bias(&self, x: &Tensor<D>, width: usize, bias: Option<&Tensor<D>>) -> Result<Tensor<D>> {
        let out = self.output(x.len())?;
        let params = gelu::Params {
            len: x.len() as u32,
            width: width.max(1) as u32,
            tangents: 1,
            tokens: 1,
            with_bias: bias.is_some() as u32,
        };
        let bias = match bias {
            Some(bias) => bias.device()?,
            None => &self.stand_in,
        };
        let bindings = [(gelu::X, x.device()?), (gelu::OUT, &out), (gelu::BIAS, bias)];
        self.launch("gelu", params, &bindings, grid(x.len(), 256))?;
        Ok(GpuTensor::Device(out))
    }

    /// GELU's JVP at the primal `x` (plus `bias` when given) along `dx`.
    fn gelu_derivative(
        &self,
        x: &Tensor<D>,
        bias: Option<&Tensor<D>>,
        dx: &Tensor<D>,
        batch: Batch,
        width: usize,
    ) -> Result<Tensor<D>> {
        let out = self.output(dx.len())?;
        let params = gelu::Params {
            len: dx.len() as u32,
            width: width as u32,
            tangents: batch.tangents as u32,
            tokens: batch.tokens as u32,
            with_bias: bias.is_some() as u32,
        };
        let bias = match bias {
            Some(bias) => bias.device()?,
            None => &self.stand_in,
        };
        let bindings = [(gelu::X, x.device()?), (gelu::DX, dx.device()?), (gelu::OUT, &out), (gelu::BIAS, bias)];
        self.launch("gelu_jvp", params, &bindings, grid(dx.len(), 256))?;
        Ok(GpuTensor::Device(out))
    }

    /// LayerNorm over `rows` rows of `x`, or with `sums = (bias, residual)` over
    /// `x + bias + residual`; returns the output and what its derivatives read.
    fn norm_forward(
        &self,
        x: &Tensor<D>,
        sums: Option<(&Tensor<D>, &Tensor<D>)>,
        rows: usize,
        ln: ResidualNorm<'_, Tensor<D>>,
    ) -> Result<(Tensor<D>, NormSaved<Tensor<D>>)> {
        let width = ln.width;
        let (bias, residual) = match sums {
            Some((bias, residual)) => (bias.device()?, residual.device()?),
            None => (&self.stand_in, &self.stand_in),
        };
        let (y, normalized, inv_std) = (self.output(rows * width)?, self.output(rows * width)?, self.output(rows)?);
        let params = layer_norm::Params {
            rows: rows as u32,
            width: width as u32,
            tangents: 1,
            tokens: 1,
            eps: ln.eps as f32,
            fused: sums.is_some() as u32,
            ..Default::default()
        };
        let bindings = [
            (layer_norm::X, x.device()?),
            (layer_norm::GAMMA, ln.norm.gamma.device()?),
            (layer_norm::BETA, ln.norm.beta.device()?),
            (layer_norm::OUT, &y),
            (layer_norm::NORMALIZED, &normalized),
            (layer_norm::INV_STD, &inv_std),
            (layer_norm::BIAS, bias),
            (layer_norm::RESIDUAL, residual),
        ];
        self.launch("forward", params, &bindings, grid(rows, 1))?;
        let saved = NormSaved { normalized: GpuTensor::Device(normalized), inv_std: GpuTensor::Device(inv_std) };
        Ok((GpuTensor::Device(y), saved))
    }
    /// Mean or max over tokens, `[seqs, tokens, width]` → `[seqs, width]`.
    fn pool_tokens(
        &self,
        entry: &'static str,
        x: &Tensor<D>,
        seqs: usize,
        tokens: usize,
        width: usize,
    ) -> Result<Tensor<D>> {
        let out = self.output(seqs * width)?;
        let params = self.pooling_params(seqs * width, width, tokens, 1);
        self.pooling(entry, params, &[(pooling::X, x.device()?)], &out, seqs * width)?;
        Ok(GpuTensor::Device(out))
    }

    /// LayerNorm's JVP, or with `transpose` its VJP, along `d`, or with `residual` along
    /// `d + residual` (the tangents or cotangents of two branches, summed as they are read).
    #[allow(clippy::too_many_arguments)]
    fn norm_derivative(
        &self,
        transpose: bool,
        saved: &NormSaved<Tensor<D>>,
        norm: &Norm<Tensor<D>>,
        d: &Tensor<D>,
        residual: Option<&Tensor<D>>,
        batch: Batch,
        width: usize,
    ) -> Result<Tensor<D>> {
        let rows = batch.tangent_rows();
        let out = self.output(rows * width)?;
        let fused = residual.is_some() as u32;
        let params = layer_norm::Params {
            rows: rows as u32,
            width: width as u32,
            tangents: batch.tangents as u32,
            tokens: batch.tokens as u32,
            transpose: transpose as u32,
            fused,
            ..Default::default()
        };
        let residual = match residual {
            Some(residual) => residual.device()?,
            None => &self.stand_in,
        };
        let bindings = [
            (layer_norm::X, d.device()?),
            (layer_norm::GAMMA, norm.gamma.device()?),
            (layer_norm::NORMALIZED_IN, saved.normalized.device()?),
            (layer_norm::INV_STD_IN, saved.inv_std.device()?),
            (layer_norm::OUT, &out),
            (layer_norm::RESIDUAL, residual),
        ];
        self.launch("derivative", params, &bindings, grid(rows, 1))?;
        Ok(GpuTensor::Device(out))
    }
}
