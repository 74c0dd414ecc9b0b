//! The CPU reference backend: plain loops, storage in `S` (f32 normally, f64 for the
//! finite-difference tests), every sum accumulated in f64. It is the oracle every other backend
//! is tested against, so it favours obviousness over speed; the only concession is splitting
//! independent rows across threads.

use std::marker::PhantomData;
use std::ops::Range;

use super::{AttentionSaved, Backend, Batch, Heads, NormSaved};
use crate::error::Result;
use crate::net::params::{Linear, Norm};

/// Storage scalar of the reference backend.
pub trait Scalar: Copy + Send + Sync + Default + 'static {
    const NAME: &'static str;
    fn of(x: f64) -> Self;
    fn get(self) -> f64;
}

impl Scalar for f32 {
    const NAME: &'static str = "f32";
    fn of(x: f64) -> Self {
        x as f32
    }
    fn get(self) -> f64 {
        self as f64
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "f64";
    fn of(x: f64) -> Self {
        x
    }
    fn get(self) -> f64 {
        self
    }
}

pub struct CpuReference<S: Scalar = f32> {
    threads: usize,
    _storage: PhantomData<S>,
}

impl<S: Scalar> Default for CpuReference<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Scalar> CpuReference<S> {
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        CpuReference { threads, _storage: PhantomData }
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

/// The `dim` features of head `head` in row `row` of a `[rows, heads·dim]` tensor.
fn head_slice<S>(x: &[S], row: usize, head: usize, dim: usize, width: usize) -> &[S] {
    &x[row * width + head * dim..][..dim]
}

fn erf(x: f64) -> f64 {
    libm::erf(x)
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

fn gelu_derivative(x: f64) -> f64 {
    let cdf = 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2));
    let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    cdf + x * pdf
}

fn check_len(what: &str, len: usize, expected: usize) {
    // Shapes are fixed by the network description, not by user input: a mismatch is a bug.
    assert_eq!(len, expected, "cpu-reference: {what} has length {len}, expected {expected}");
}

impl<S: Scalar> CpuReference<S> {
    fn linear_impl(&self, x: &[S], rows: usize, layer: &Linear<Vec<S>>, with_bias: bool) -> Vec<S> {
        let (n_in, n_out) = (layer.in_dim, layer.out_dim);
        check_len("linear input", x.len(), rows * n_in);
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
        check_len("elementwise operand", b.len(), a.len());
        a.iter().zip(b).map(|(x, y)| S::of(f(x.get(), y.get()))).collect()
    }
}

impl<S: Scalar> Backend for CpuReference<S> {
    type Tensor = Vec<S>;

    fn name(&self) -> String {
        format!("cpu-reference {}", S::NAME)
    }

    fn upload(&self, data: &[f32]) -> Result<Vec<S>> {
        Ok(data.iter().map(|&x| S::of(x as f64)).collect())
    }

    fn download(&self, x: &Vec<S>) -> Result<Vec<f64>> {
        Ok(x.iter().map(|v| v.get()).collect())
    }

    fn gather_rows(&self, table: &Vec<S>, width: usize, ids: &[u32]) -> Result<Vec<S>> {
        let mut out = Vec::with_capacity(ids.len() * width);
        for &id in ids {
            let start = id as usize * width;
            check_len("gathered row end", (start + width).min(table.len()), start + width);
            out.extend_from_slice(&table[start..start + width]);
        }
        Ok(out)
    }

    fn add(&self, a: &Vec<S>, b: &Vec<S>) -> Result<Vec<S>> {
        Ok(self.zip_map(a, b, |x, y| x + y))
    }

    fn sub(&self, a: &Vec<S>, b: &Vec<S>) -> Result<Vec<S>> {
        Ok(self.zip_map(a, b, |x, y| x - y))
    }

    fn interpolate(&self, origin: &Vec<S>, delta: &Vec<S>, alphas: &[f64]) -> Result<Vec<S>> {
        check_len("interpolation delta", delta.len(), origin.len());
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
        check_len("tangent delta", delta.len(), tokens * width);
        check_len("tangent directions end", directions.end.min(tokens), directions.end);
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

    fn linear(&self, x: &Vec<S>, rows: usize, layer: &Linear<Vec<S>>) -> Result<Vec<S>> {
        Ok(self.linear_impl(x, rows, layer, true))
    }

    fn linear_jvp(&self, dx: &Vec<S>, rows: usize, layer: &Linear<Vec<S>>) -> Result<Vec<S>> {
        Ok(self.linear_impl(dx, rows, layer, false))
    }

    fn layer_norm(
        &self,
        x: &Vec<S>,
        rows: usize,
        width: usize,
        norm: &Norm<Vec<S>>,
        eps: f64,
    ) -> Result<(Vec<S>, NormSaved<Vec<S>>)> {
        check_len("layer_norm input", x.len(), rows * width);
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
        check_len("layer_norm tangents", dx.len(), batch.tangent_rows() * width);
        check_len("layer_norm saved", saved.normalized.len(), batch.primal_rows() * width);
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

    fn gelu(&self, x: &Vec<S>) -> Result<Vec<S>> {
        Ok(x.iter().map(|v| S::of(gelu(v.get()))).collect())
    }

    fn gelu_jvp(&self, x: &Vec<S>, dx: &Vec<S>, batch: Batch, width: usize) -> Result<Vec<S>> {
        check_len("gelu primal", x.len(), batch.primal_rows() * width);
        check_len("gelu tangents", dx.len(), batch.tangent_rows() * width);
        let mut dy = vec![S::default(); dx.len()];
        for_each_row(&mut dy, width, self.threads, |r, out| {
            let p = batch.primal_row_of(r);
            for c in 0..width {
                out[c] = S::of(gelu_derivative(x[p * width + c].get()) * dx[r * width + c].get());
            }
        });
        Ok(dy)
    }

    fn attention(
        &self,
        q: &Vec<S>,
        k: &Vec<S>,
        v: &Vec<S>,
        seqs: usize,
        tokens: usize,
        heads: Heads,
    ) -> Result<(Vec<S>, AttentionSaved<Vec<S>>)> {
        let (t, w, d) = (tokens, heads.width(), heads.dim);
        for (name, x) in [("q", q), ("k", k), ("v", v)] {
            check_len(name, x.len(), seqs * t * w);
        }
        let scale = 1.0 / (d as f64).sqrt();
        let mut probs = vec![S::default(); seqs * heads.count * t * t];
        // One "row" per sequence: its probabilities for every head.
        for_each_row(&mut probs, heads.count * t * t, self.threads, |s, p_seq| {
            for h in 0..heads.count {
                for i in 0..t {
                    let qi = head_slice(q, s * t + i, h, d, w);
                    let scores: Vec<f64> = (0..t).map(|j| dot(qi, head_slice(k, s * t + j, h, d, w)) * scale).collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let exps: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let total: f64 = exps.iter().sum();
                    for j in 0..t {
                        p_seq[(h * t + i) * t + j] = S::of(exps[j] / total);
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
                            acc += probs[((s * heads.count + h) * t + i) * t + j].get() * v[(s * t + j) * w + h * d + c].get();
                        }
                        o_seq[i * w + h * d + c] = S::of(acc);
                    }
                }
            }
        });
        Ok((out, AttentionSaved { probs }))
    }

    fn attention_jvp(
        &self,
        q: &Vec<S>,
        k: &Vec<S>,
        v: &Vec<S>,
        saved: &AttentionSaved<Vec<S>>,
        dq: &Vec<S>,
        dk: &Vec<S>,
        dv: &Vec<S>,
        batch: Batch,
        heads: Heads,
    ) -> Result<Vec<S>> {
        let (t, w, d) = (batch.tokens, heads.width(), heads.dim);
        for (name, x) in [("dq", dq), ("dk", dk), ("dv", dv)] {
            check_len(name, x.len(), batch.tangent_rows() * w);
        }
        let scale = 1.0 / (d as f64).sqrt();
        let mut dout = vec![S::default(); batch.tangent_rows() * w];
        // One "row" per tangent sequence; `s` is the step whose primal it shares.
        for_each_row(&mut dout, t * w, self.threads, |seq, o_seq| {
            let s = seq / batch.tangents;
            for h in 0..heads.count {
                for i in 0..t {
                    // Primal rows are those of step `s`, tangent rows those of sequence `seq`.
                    let (qi, dqi) = (head_slice(q, s * t + i, h, d, w), head_slice(dq, seq * t + i, h, d, w));
                    let p = |j: usize| saved.probs[((s * heads.count + h) * t + i) * t + j].get();
                    let ds: Vec<f64> = (0..t)
                        .map(|j| {
                            let (kj, dkj) = (head_slice(k, s * t + j, h, d, w), head_slice(dk, seq * t + j, h, d, w));
                            (dot(dqi, kj) + dot(qi, dkj)) * scale
                        })
                        .collect();
                    let mean_ds: f64 = (0..t).map(|j| p(j) * ds[j]).sum();
                    let dp: Vec<f64> = (0..t).map(|j| p(j) * (ds[j] - mean_ds)).collect();
                    for c in 0..d {
                        let mut acc = 0.0;
                        for j in 0..t {
                            acc += dp[j] * v[(s * t + j) * w + h * d + c].get();
                            acc += p(j) * dv[(seq * t + j) * w + h * d + c].get();
                        }
                        o_seq[i * w + h * d + c] = S::of(acc);
                    }
                }
            }
        });
        Ok(dout)
    }

    fn mean_pool(&self, x: &Vec<S>, seqs: usize, tokens: usize, width: usize) -> Result<Vec<S>> {
        check_len("mean_pool input", x.len(), seqs * tokens * width);
        let mut out = vec![S::default(); seqs * width];
        for s in 0..seqs {
            for c in 0..width {
                let sum: f64 = (0..tokens).map(|i| x[(s * tokens + i) * width + c].get()).sum();
                out[s * width + c] = S::of(sum / tokens as f64);
            }
        }
        Ok(out)
    }
}
