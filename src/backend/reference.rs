//! The CPU reference backend: plain loops, storage in `S` (f32 normally, f64 for the
//! finite-difference tests), every sum accumulated in f64. It is the oracle every other backend
//! is tested against, so it favours obviousness over speed; the only concession is splitting
//! independent rows across threads.

mod gradients;

use std::marker::PhantomData;
use std::ops::Range;

use super::Activation;
use super::{
    check_upload, Accumulators, AttentionSaved, BackendSettings, Batch, FusedOps, Heads, MathOps, NormSaved, Precision,
    ScoreMods, Storage,
};
use crate::backend::shapes::Contract;
use crate::error::Result;
use crate::params::{Linear, Norm, Role};

/// Storage scalar of the reference backend.
pub trait Scalar: Copy + Send + Sync + Default + 'static {
    const PRECISION: Precision;
    fn of(x: f64) -> Self;
    fn get(self) -> f64;
}

impl Scalar for f32 {
    const PRECISION: Precision = Precision::F32;
    fn of(x: f64) -> Self {
        x as f32
    }
    fn get(self) -> f64 {
        self as f64
    }
}

impl Scalar for f64 {
    const PRECISION: Precision = Precision::F64;
    fn of(x: f64) -> Self {
        x
    }
    fn get(self) -> f64 {
        self
    }
}

pub struct CpuReference<S: Scalar = f32> {
    threads: usize,
    max_memory: usize,
    _storage: PhantomData<S>,
}

impl<S: Scalar> Default for CpuReference<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Scalar> CpuReference<S> {
    pub fn new() -> Self {
        Self::with_settings(BackendSettings::default())
    }

    pub fn with_settings(settings: BackendSettings) -> Self {
        CpuReference { threads: settings.threads, max_memory: settings.max_memory, _storage: PhantomData }
    }
}

/// Fills `out` (rows of `row_len`) by calling `fill(row_index, row)`, rows split across threads.
fn for_each_row<S: Scalar>(out: &mut [S], row_len: usize, threads: usize, fill: impl Fn(usize, &mut [S]) + Sync) {
    let rows = out.len() / row_len.max(1);
    // Spawning threads costs more than small outputs take to fill.
    let threads = if out.len() < (1 << 14) { 1 } else { threads.max(1) };
    let per_thread = rows.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (chunk_index, chunk) in out.chunks_mut(per_thread * row_len.max(1)).enumerate() {
            let fill = &fill;
            scope.spawn(move || {
                for (i, row) in chunk.chunks_mut(row_len.max(1)).enumerate() {
                    fill(chunk_index * per_thread + i, row);
                }
            });
        }
    });
}

/// `Σ a_i b_i` in f64 with four independent partial sums (same value up to rounding, and
/// four times faster than one long dependency chain).
fn dot<S: Scalar>(a: &[S], b: &[S]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (a4.remainder(), b4.remainder());
    for (x, y) in a4.zip(b4) {
        for l in 0..4 {
            acc[l] += x[l].get() * y[l].get();
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x.get() * y.get()).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Which third of a fused `[q | k | v]` row.
#[derive(Clone, Copy)]
enum Part {
    Query = 0,
    Key = 1,
    Value = 2,
}

/// The `dim` features of head `head`, part `part`, in row `row` of a `[rows, 3·heads·dim]`
/// fused projection.
fn head_slice<S>(qkv: &[S], part: Part, row: usize, head: usize, heads: Heads) -> &[S] {
    let width = heads.width();
    &qkv[row * 3 * width + part as usize * width + head * heads.dim..][..heads.dim]
}

impl<S: Scalar> CpuReference<S> {
    fn linear_impl(&self, x: &[S], rows: usize, layer: &Linear<Vec<S>>, with_bias: bool) -> Vec<S> {
        let (n_in, n_out) = (layer.in_dim, layer.out_dim);
        let mut y = vec![S::default(); rows * n_out];
        for_each_row(&mut y, n_out, self.threads, |r, out| {
            let xr = &x[r * n_in..(r + 1) * n_in];
            for (o, slot) in out.iter_mut().enumerate() {
                let bias = if with_bias { layer.bias[o].get() } else { 0.0 };
                *slot = S::of(bias + dot(xr, &layer.weight[o * n_in..(o + 1) * n_in]));
            }
        });
        y
    }

    fn zip_map(&self, a: &[S], b: &[S], f: impl Fn(f64, f64) -> f64) -> Vec<S> {
        a.iter().zip(b).map(|(x, y)| S::of(f(x.get(), y.get()))).collect()
    }

    /// `attention`, its context formed with the probabilities times `keep` (a dropout mask laid
    /// out as the probabilities, training's) where given; the probabilities kept are `P`.
    fn attention_masked(
        &self,
        qkv: &[S],
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, Vec<S>>,
        keep: Option<&[S]>,
    ) -> (Vec<S>, AttentionSaved<Vec<S>>) {
        let (t, w, d) = (tokens, heads.width(), heads.dim);
        let scale = heads.scale();
        let mut probs = vec![S::default(); seqs * heads.count * t * t];
        // One "row" per sequence: its probabilities for every head.
        for_each_row(&mut probs, heads.count * t * t, self.threads, |s, p_seq| {
            let attends = |j: usize| scores.key_mask.is_none_or(|m| m[s * t + j].get() != 0.0);
            for h in 0..heads.count {
                for i in 0..t {
                    let qi = head_slice(qkv, Part::Query, s * t + i, h, heads);
                    let score = |j: usize| {
                        let bias = scores.bias.map_or(0.0, |b| b[(h * t + i) * t + j].get());
                        dot(qi, head_slice(qkv, Part::Key, s * t + j, h, heads)) * scale + bias
                    };
                    let scored: Vec<Option<f64>> = (0..t).map(|j| attends(j).then(|| score(j))).collect();
                    let max = scored.iter().flatten().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let exps: Vec<f64> = scored.iter().map(|x| x.map_or(0.0, |x| (x - max).exp())).collect();
                    let total: f64 = exps.iter().sum();
                    for j in 0..t {
                        // A sequence whose keys are all masked attends to nothing.
                        p_seq[(h * t + i) * t + j] = S::of(if total > 0.0 { exps[j] / total } else { 0.0 });
                    }
                }
            }
        });
        let mut out = vec![S::default(); seqs * t * w];
        for_each_row(&mut out, t * w, self.threads, |s, o_seq| {
            for h in 0..heads.count {
                for i in 0..t {
                    for c in 0..d {
                        let mut acc = 0.0;
                        for j in 0..t {
                            let at = ((s * heads.count + h) * t + i) * t + j;
                            let p = probs[at].get() * keep.map_or(1.0, |k| k[at].get());
                            acc += p * head_slice(qkv, Part::Value, s * t + j, h, heads)[c].get();
                        }
                        o_seq[i * w + h * d + c] = S::of(acc);
                    }
                }
            }
        });
        (out, AttentionSaved { probs })
    }
}

impl<S: Scalar> Storage for CpuReference<S> {
    type Tensor = Vec<S>;

    fn name(&self) -> String {
        format!("cpu-reference {}", S::PRECISION.name())
    }

    fn precision(&self) -> Precision {
        S::PRECISION
    }

    fn memory_budget(&self) -> usize {
        self.max_memory
    }

    fn upload(&self, data: &[f32], role: Role) -> Result<Vec<S>> {
        check_upload(data, role)?;
        Ok(data.iter().map(|&x| S::of(x as f64)).collect())
    }

    fn download(&self, x: &Vec<S>) -> Result<Vec<f64>> {
        Ok(x.iter().map(|v| v.get()).collect())
    }

    fn upload_f64(&self, data: &[f64], _like: Option<&Vec<S>>) -> Result<Vec<S>> {
        Ok(data.iter().map(|&v| S::of(v)).collect())
    }

    fn upload_unit_offset(&self, w: &[f32]) -> Result<Vec<S>> {
        Ok(w.iter().map(|&w| S::of(1.0 + f64::from(w))).collect())
    }

    fn tensor_len(&self, x: &Vec<S>) -> usize {
        x.len()
    }

    fn zeros(&self, len: usize) -> Result<Vec<S>> {
        Ok(vec![S::default(); len])
    }
}

impl<S: Scalar> MathOps for CpuReference<S> {
    fn gather_rows(&self, table: &Vec<S>, width: usize, ids: &[u32]) -> Result<Vec<S>> {
        Contract(self).gather_rows(table, width, ids)?;
        let mut out = Vec::with_capacity(ids.len() * width);
        for &id in ids {
            let start = id as usize * width;
            out.extend_from_slice(&table[start..start + width]);
        }
        Ok(out)
    }

    fn add(&self, a: &Vec<S>, b: &Vec<S>) -> Result<Vec<S>> {
        Contract(self).same("add operand", a, b)?;
        Ok(self.zip_map(a, b, |x, y| x + y))
    }

    fn sub(&self, a: &Vec<S>, b: &Vec<S>) -> Result<Vec<S>> {
        Contract(self).same("sub operand", a, b)?;
        Ok(self.zip_map(a, b, |x, y| x - y))
    }

    fn add_bias(&self, x: &Vec<S>, rows: usize, bias: &Vec<S>) -> Result<Vec<S>> {
        Contract(self).add_bias(x, rows, bias)?;
        let width = bias.len();
        Ok(x.iter().enumerate().map(|(n, v)| S::of(v.get() + bias[n % width].get())).collect())
    }

    fn linear(&self, x: &Vec<S>, rows: usize, layer: &Linear<Vec<S>>) -> Result<Vec<S>> {
        Contract(self).linear("linear", x, rows, layer)?;
        Ok(self.linear_impl(x, rows, layer, true))
    }

    fn matmul(&self, x: &Vec<S>, rows: usize, layer: &Linear<Vec<S>>) -> Result<Vec<S>> {
        Contract(self).linear("matmul", x, rows, layer)?;
        Ok(self.linear_impl(x, rows, layer, false))
    }

    fn matmul_vjp(&self, dy: &Vec<S>, rows: usize, layer: &Linear<Vec<S>>) -> Result<Vec<S>> {
        Contract(self).matmul_vjp(dy, rows, layer)?;
        let (n_in, n_out) = (layer.in_dim, layer.out_dim);
        let mut dx = vec![S::default(); rows * n_in];
        for_each_row(&mut dx, n_in, self.threads, |r, out| {
            let dy_r = &dy[r * n_out..(r + 1) * n_out];
            for (i, slot) in out.iter_mut().enumerate() {
                let sum: f64 = dy_r.iter().enumerate().map(|(o, g)| g.get() * layer.weight[o * n_in + i].get()).sum();
                *slot = S::of(sum);
            }
        });
        Ok(dx)
    }

    fn layer_norm(
        &self,
        x: &Vec<S>,
        rows: usize,
        width: usize,
        norm: &Norm<Vec<S>>,
        eps: f64,
    ) -> Result<(Vec<S>, NormSaved<Vec<S>>)> {
        Contract(self).layer_norm(x, rows, width, norm)?;
        let mut y = vec![S::default(); rows * width];
        let mut normalized = vec![S::default(); rows * width];
        let mut inv_std = vec![S::default(); rows];
        for r in 0..rows {
            let xr = &x[r * width..(r + 1) * width];
            let mean = xr.iter().map(|v| v.get()).sum::<f64>() / width as f64;
            let var = xr.iter().map(|v| (v.get() - mean).powi(2)).sum::<f64>() / width as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            inv_std[r] = S::of(rstd);
            for c in 0..width {
                let xhat = (xr[c].get() - mean) * rstd;
                normalized[r * width + c] = S::of(xhat);
                y[r * width + c] = S::of(norm.gamma[c].get() * xhat + norm.beta[c].get());
            }
        }
        Ok((y, NormSaved { normalized, inv_std }))
    }

    fn layer_norm_jvp(
        &self,
        saved: &NormSaved<Vec<S>>,
        norm: &Norm<Vec<S>>,
        dx: &Vec<S>,
        batch: Batch,
        width: usize,
    ) -> Result<Vec<S>> {
        Contract(self).norm_derivative("layer_norm_jvp", saved, norm, dx, batch, width)?;
        let mut dy = vec![S::default(); dx.len()];
        for_each_row(&mut dy, width, self.threads, |r, out| {
            let p = batch.primal_row_of(r);
            let xhat = &saved.normalized[p * width..(p + 1) * width];
            let d = &dx[r * width..(r + 1) * width];
            let mean_d = d.iter().map(|v| v.get()).sum::<f64>() / width as f64;
            let mean_xd = dot(xhat, d) / width as f64;
            let rstd = saved.inv_std[p].get();
            for c in 0..width {
                let centred = d[c].get() - mean_d - xhat[c].get() * mean_xd;
                out[c] = S::of(norm.gamma[c].get() * rstd * centred);
            }
        });
        Ok(dy)
    }

    fn layer_norm_vjp(
        &self,
        saved: &NormSaved<Vec<S>>,
        norm: &Norm<Vec<S>>,
        dy: &Vec<S>,
        batch: Batch,
        width: usize,
    ) -> Result<Vec<S>> {
        Contract(self).norm_derivative("layer_norm_vjp", saved, norm, dy, batch, width)?;
        let mut dx = vec![S::default(); dy.len()];
        for_each_row(&mut dx, width, self.threads, |r, out| {
            let p = batch.primal_row_of(r);
            let xhat = &saved.normalized[p * width..(p + 1) * width];
            let g: Vec<f64> = (0..width).map(|c| norm.gamma[c].get() * dy[r * width + c].get()).collect();
            let mean_g = g.iter().sum::<f64>() / width as f64;
            let mean_xg = g.iter().zip(xhat).map(|(g, x)| g * x.get()).sum::<f64>() / width as f64;
            let rstd = saved.inv_std[p].get();
            for c in 0..width {
                out[c] = S::of(rstd * (g[c] - mean_g - xhat[c].get() * mean_xg));
            }
        });
        Ok(dx)
    }

    fn gelu(&self, x: &Vec<S>) -> Result<Vec<S>> {
        Ok(x.iter().map(|v| S::of(Activation::Gelu.value(v.get()))).collect())
    }

    fn gelu_jvp(&self, x: &Vec<S>, dx: &Vec<S>, batch: Batch, width: usize) -> Result<Vec<S>> {
        Contract(self).activation_derivative("gelu_jvp", x, dx, batch, width)?;
        let mut dy = vec![S::default(); dx.len()];
        for_each_row(&mut dy, width, self.threads, |r, out| {
            let p = batch.primal_row_of(r);
            for c in 0..width {
                out[c] = S::of(Activation::Gelu.derivative(x[p * width + c].get()) * dx[r * width + c].get());
            }
        });
        Ok(dy)
    }

    fn attention(
        &self,
        qkv: &Vec<S>,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, Vec<S>>,
    ) -> Result<(Vec<S>, AttentionSaved<Vec<S>>)> {
        Contract(self).attention(qkv, seqs, tokens, heads, scores, None)?;
        Ok(self.attention_masked(qkv, seqs, tokens, heads, scores, None))
    }

    fn attention_jvp(
        &self,
        qkv: &Vec<S>,
        saved: &AttentionSaved<Vec<S>>,
        dqkv: &Vec<S>,
        batch: Batch,
        heads: Heads,
    ) -> Result<Vec<S>> {
        Contract(self).attention_derivative(qkv, saved, dqkv, 3 * heads.width(), batch, heads)?;
        let (t, w, d) = (batch.tokens, heads.width(), heads.dim);
        let scale = heads.scale();
        let mut dout = vec![S::default(); batch.tangent_rows() * w];
        // One "row" per tangent sequence; `s` is the step whose primal it shares.
        for_each_row(&mut dout, t * w, self.threads, |seq, o_seq| {
            let s = seq / batch.tangents;
            for h in 0..heads.count {
                for i in 0..t {
                    // Primal rows are those of step `s`, tangent rows those of sequence `seq`.
                    let qi = head_slice(qkv, Part::Query, s * t + i, h, heads);
                    let dqi = head_slice(dqkv, Part::Query, seq * t + i, h, heads);
                    let p = |j: usize| saved.probs[((s * heads.count + h) * t + i) * t + j].get();
                    let ds: Vec<f64> = (0..t)
                        .map(|j| {
                            let kj = head_slice(qkv, Part::Key, s * t + j, h, heads);
                            let dkj = head_slice(dqkv, Part::Key, seq * t + j, h, heads);
                            (dot(dqi, kj) + dot(qi, dkj)) * scale
                        })
                        .collect();
                    let mean_ds: f64 = (0..t).map(|j| p(j) * ds[j]).sum();
                    let dp: Vec<f64> = (0..t).map(|j| p(j) * (ds[j] - mean_ds)).collect();
                    for c in 0..d {
                        let mut acc = 0.0;
                        for (j, dp_j) in dp.iter().enumerate() {
                            acc += dp_j * head_slice(qkv, Part::Value, s * t + j, h, heads)[c].get();
                            acc += p(j) * head_slice(dqkv, Part::Value, seq * t + j, h, heads)[c].get();
                        }
                        o_seq[i * w + h * d + c] = S::of(acc);
                    }
                }
            }
        });
        Ok(dout)
    }

    fn attention_vjp(
        &self,
        qkv: &Vec<S>,
        saved: &AttentionSaved<Vec<S>>,
        dctx: &Vec<S>,
        batch: Batch,
        heads: Heads,
    ) -> Result<Vec<S>> {
        Contract(self).attention_derivative(qkv, saved, dctx, heads.width(), batch, heads)?;
        let (t, w, d) = (batch.tokens, heads.width(), heads.dim);
        let scale = heads.scale();
        let mut dqkv = vec![S::default(); batch.tangent_rows() * 3 * w];
        // One "row" per cotangent sequence; `s` is the step whose primal it shares.
        for_each_row(&mut dqkv, t * 3 * w, self.threads, |seq, out| {
            let s = seq / batch.tangents;
            for h in 0..heads.count {
                let p = |i: usize, j: usize| saved.probs[((s * heads.count + h) * t + i) * t + j].get();
                let d_out = |i: usize| &dctx[(seq * t + i) * w + h * d..][..d];
                let part = |part: Part, j: usize| head_slice(qkv, part, s * t + j, h, heads);
                // S̄_ij = P_ij (P̄_ij − Σ_l P_il P̄_il), P̄_ij = Ō_i · V_j.
                let mut ds = vec![0.0f64; t * t];
                for i in 0..t {
                    let dp: Vec<f64> = (0..t).map(|j| dot(d_out(i), part(Part::Value, j))).collect();
                    let mean: f64 = (0..t).map(|j| p(i, j) * dp[j]).sum();
                    for j in 0..t {
                        ds[i * t + j] = p(i, j) * (dp[j] - mean);
                    }
                }
                for a in 0..t {
                    let row = &mut out[a * 3 * w..(a + 1) * 3 * w];
                    for c in 0..d {
                        let dq: f64 = (0..t).map(|j| ds[a * t + j] * part(Part::Key, j)[c].get()).sum();
                        let dk: f64 = (0..t).map(|i| ds[i * t + a] * part(Part::Query, i)[c].get()).sum();
                        let dv: f64 = (0..t).map(|i| p(i, a) * d_out(i)[c].get()).sum();
                        row[h * d + c] = S::of(dq * scale);
                        row[w + h * d + c] = S::of(dk * scale);
                        row[2 * w + h * d + c] = S::of(dv);
                    }
                }
            }
        });
        Ok(dqkv)
    }

    fn mean_pool(&self, x: &Vec<S>, seqs: usize, tokens: usize, width: usize) -> Result<Vec<S>> {
        Contract(self).pool("mean_pool", x, seqs, tokens, width)?;
        let mut out = vec![S::default(); seqs * width];
        for s in 0..seqs {
            for c in 0..width {
                let sum: f64 = (0..tokens).map(|i| x[(s * tokens + i) * width + c].get()).sum();
                out[s * width + c] = S::of(sum / tokens as f64);
            }
        }
        Ok(out)
    }

    fn max_pool(&self, x: &Vec<S>, seqs: usize, tokens: usize, width: usize) -> Result<Vec<S>> {
        Contract(self).pool("max_pool", x, seqs, tokens, width)?;
        let mut out = vec![S::default(); seqs * width];
        for s in 0..seqs {
            for c in 0..width {
                let arg = arg_max((0..tokens).map(|t| x[(s * tokens + t) * width + c].get()));
                out[s * width + c] = x[(s * tokens + arg) * width + c];
            }
        }
        Ok(out)
    }

    fn max_pool_jvp(&self, x: &Vec<S>, dx: &Vec<S>, batch: Batch, width: usize) -> Result<Vec<S>> {
        Contract(self).max_pool_derivative(x, dx, batch.tangent_rows(), batch, width)?;
        let t = batch.tokens;
        let mut out = vec![S::default(); batch.tangent_seqs() * width];
        for seq in 0..batch.tangent_seqs() {
            let step = seq / batch.tangents;
            for c in 0..width {
                let arg = arg_max((0..t).map(|i| x[(step * t + i) * width + c].get()));
                out[seq * width + c] = dx[(seq * t + arg) * width + c];
            }
        }
        Ok(out)
    }

    fn mean_pool_vjp(&self, dy: &Vec<S>, seqs: usize, tokens: usize, width: usize) -> Result<Vec<S>> {
        Contract(self).mean_pool_vjp(dy, seqs, width)?;
        let mut dx = vec![S::default(); seqs * tokens * width];
        for s in 0..seqs {
            for i in 0..tokens {
                for c in 0..width {
                    dx[(s * tokens + i) * width + c] = S::of(dy[s * width + c].get() / tokens as f64);
                }
            }
        }
        Ok(dx)
    }

    fn max_pool_vjp(&self, x: &Vec<S>, dy: &Vec<S>, batch: Batch, width: usize) -> Result<Vec<S>> {
        Contract(self).max_pool_derivative(x, dy, batch.tangent_seqs(), batch, width)?;
        let t = batch.tokens;
        let mut dx = vec![S::default(); batch.tangent_rows() * width];
        for seq in 0..batch.tangent_seqs() {
            let step = seq / batch.tangents;
            for c in 0..width {
                let arg = arg_max((0..t).map(|i| x[(step * t + i) * width + c].get()));
                dx[(seq * t + arg) * width + c] = dy[seq * width + c];
            }
        }
        Ok(dx)
    }

    fn scatter_rows(&self, x: &Vec<S>, width: usize, ids: &[u32], rows: usize) -> Result<Vec<S>> {
        Contract(self).scatter_rows(x, width, ids, rows)?;
        let mut out = vec![0.0f64; rows * width];
        for (r, &id) in ids.iter().enumerate() {
            let id = id as usize;
            for c in 0..width {
                out[id * width + c] += x[r * width + c].get();
            }
        }
        Ok(out.into_iter().map(S::of).collect())
    }
}

impl<S: Scalar> FusedOps for CpuReference<S> {}

impl<S: Scalar> Accumulators for CpuReference<S> {
    fn interpolate(&self, origin: &Vec<S>, delta: &Vec<S>, alphas: &[f64]) -> Result<Vec<S>> {
        Contract(self).interpolate(origin, delta)?;
        let mut out = Vec::with_capacity(alphas.len() * origin.len());
        for &alpha in alphas {
            out.extend(origin.iter().zip(delta).map(|(o, d)| S::of(o.get() + alpha * d.get())));
        }
        Ok(out)
    }

    fn token_tangents(
        &self,
        delta: &Vec<S>,
        steps: usize,
        tokens: usize,
        width: usize,
        directions: Range<usize>,
    ) -> Result<Vec<S>> {
        Contract(self).token_tangents(delta, tokens, width, &directions)?;
        let count = directions.len();
        let mut out = vec![S::default(); steps * count * tokens * width];
        for step in 0..steps {
            for (k, i) in directions.clone().enumerate() {
                let row = ((step * count + k) * tokens + i) * width;
                out[row..row + width].copy_from_slice(&delta[i * width..(i + 1) * width]);
            }
        }
        Ok(out)
    }

    fn pool_accumulate(
        &self,
        projection: &mut Vec<S>,
        d_states: &Vec<S>,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_direction: usize,
    ) -> Result<()> {
        Contract(self).pool_accumulate(projection, d_states, batch, width, weights, first_direction)?;
        let t = batch.tokens;
        for (k, &weight) in weights.iter().enumerate() {
            for m in 0..batch.tangents {
                let seq = k * batch.tangents + m;
                let row = &mut projection[(first_direction + m) * width..][..width];
                for (c, slot) in row.iter_mut().enumerate() {
                    let sum: f64 = (0..t).map(|i| d_states[(seq * t + i) * width + c].get()).sum();
                    *slot = S::of(slot.get() + weight * sum / t as f64);
                }
            }
        }
        Ok(())
    }

    fn cotangent_accumulate(
        &self,
        projection: &mut Vec<S>,
        d_states: &Vec<S>,
        delta: &Vec<S>,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_dim: usize,
    ) -> Result<()> {
        Contract(self).cotangent_accumulate(projection, d_states, delta, batch, width, weights, first_dim)?;
        let t = batch.tokens;
        let dims = projection.len() / t.max(1);
        for (k, &weight) in weights.iter().enumerate() {
            for c in 0..batch.tangents {
                let seq = k * batch.tangents + c;
                for i in 0..t {
                    let row = &d_states[(seq * t + i) * width..][..width];
                    let contracted = dot(row, &delta[i * width..(i + 1) * width]);
                    let slot = &mut projection[i * dims + first_dim + c];
                    *slot = S::of(slot.get() + weight * contracted);
                }
            }
        }
        Ok(())
    }
}

/// Index of the first largest value (0 for an empty or all-NaN sequence).
fn arg_max(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}
