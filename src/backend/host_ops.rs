//! The ops of the newer families that no backend has a kernel for yet: RMSNorm, the gated
//! activations of gated FFNs (SwiGLU, GeGLU with exact or tanh GELU), activations other than
//! BERT's GELU, and the poolings that weigh tokens (`mean_sqrt_len_tokens`, `weightedmean`). Each states its forward,
//! JVP and VJP once here, row by row in f64. `Backend`'s provided methods move the operands to
//! the host, run these and move the result back (`Backend::upload_f64`), so every backend runs
//! them and the shared suite checks them on all of them; a backend that fuses one overrides
//! its provided method (docs/design.md §3, "Ops without kernels").
//!
//! Layout as everywhere: rows of `width` scalars; tangent and cotangent row `r` is a direction
//! at primal row `batch.primal_row_of(r)`.

use super::shapes::check_len;
use super::{Batch, Storage};
use crate::error::{Error, Result};

/// Runs `op` on the host values of `inputs` (tensors of `backend`) and hands its result back as
/// a tensor stored as `like` is (`Storage::upload_f64`): how `MathOps` provides these ops.
pub fn through_host<B: Storage + ?Sized, const N: usize>(
    backend: &B,
    inputs: [&B::Tensor; N],
    like: Option<&B::Tensor>,
    op: impl FnOnce([Vec<f64>; N]) -> Result<Vec<f64>>,
) -> Result<B::Tensor> {
    let mut values = Vec::with_capacity(N);
    for input in inputs {
        values.push(backend.download(input)?);
    }
    let values: [Vec<f64>; N] =
        values.try_into().map_err(|_| Error::Internal("through_host: an input went missing".into()))?;
    backend.upload_f64(&op(values)?, like)
}

/// The activation of a gated FFN's gate: `act(gate) ⊙ up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU with the exact `erf` (GeGLU as BERT's GELU is).
    Gelu,
    /// GELU's tanh approximation (`gelu_pytorch_tanh`: Gemma's GeGLU).
    GeluTanh,
    /// `x σ(x)` (SwiGLU: Qwen, Llama, NomicBERT).
    Silu,
    /// `max(x, 0)` (T5's and gtr-t5's feed-forward); its derivative at 0 is 0, as autograd's.
    Relu,
}

/// `√(2/π)`, the tanh approximation's scale.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_TANH_CUBIC: f64 = 0.044_715;

impl Activation {
    pub fn value(self, x: f64) -> f64 {
        match self {
            Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Activation::GeluTanh => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x)).tanh()),
            Activation::Silu => x * sigmoid(x),
            Activation::Relu => x.max(0.0),
        }
    }

    pub fn derivative(self, x: f64) -> f64 {
        match self {
            Activation::Gelu => {
                let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                cdf + x * pdf
            }
            Activation::GeluTanh => {
                let t = (SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x)).tanh();
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_CUBIC * x * x)
            }
            Activation::Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
            Activation::Relu => f64::from(u8::from(x > 0.0)),
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// RMSNorm's forward pass and what its derivatives read: `y = γ ⊙ x̂`, `x̂ = x / rms(x)`,
/// `rms(x) = √(mean(x²) + ε)`, each row of `x` (`[rows, width]`).
pub struct RmsNormed {
    pub y: Vec<f64>,
    /// `x̂`, `[rows, width]`.
    pub normalized: Vec<f64>,
    /// `1/rms(x)`, `[rows]`.
    pub inv_rms: Vec<f64>,
}

pub fn rms_norm(x: &[f64], gamma: &[f64], rows: usize, width: usize, eps: f64) -> Result<RmsNormed> {
    check_len("rms_norm input", x.len(), rows * width)?;
    check_len("rms_norm γ", gamma.len(), width)?;
    let mut out = RmsNormed { y: vec![0.0; x.len()], normalized: vec![0.0; x.len()], inv_rms: vec![0.0; rows] };
    for r in 0..rows {
        let row = &x[r * width..][..width];
        let inv = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / width as f64 + eps).sqrt();
        out.inv_rms[r] = inv;
        for c in 0..width {
            out.normalized[r * width + c] = row[c] * inv;
            out.y[r * width + c] = gamma[c] * row[c] * inv;
        }
    }
    Ok(out)
}

/// RMSNorm's Jacobian is `J = diag(γ) (I − x̂ x̂ᵀ / n) / rms`: `ẏ = γ ⊙ (ẋ − x̂ · mean(x̂ ⊙ ẋ)) / rms`
/// with `transpose` false, `x̄ = (g − x̂ · mean(x̂ ⊙ g)) / rms`, `g = γ ⊙ ȳ`, with it true.
pub fn rms_norm_derivative(
    normalized: &[f64],
    inv_rms: &[f64],
    gamma: &[f64],
    d: &[f64],
    batch: Batch,
    width: usize,
    transpose: bool,
) -> Result<Vec<f64>> {
    check_len("rms_norm saved x̂", normalized.len(), batch.primal_rows() * width)?;
    check_len("rms_norm saved 1/rms", inv_rms.len(), batch.primal_rows())?;
    check_len("rms_norm γ", gamma.len(), width)?;
    check_len("rms_norm (co)tangents", d.len(), batch.tangent_rows() * width)?;
    let mut out = vec![0.0; d.len()];
    let mut g = vec![0.0; width];
    for (r, out) in out.chunks_mut(width.max(1)).enumerate() {
        let p = batch.primal_row_of(r);
        let xhat = &normalized[p * width..][..width];
        let row = &d[r * width..][..width];
        for c in 0..width {
            g[c] = if transpose { gamma[c] * row[c] } else { row[c] };
        }
        let mean_xg = xhat.iter().zip(&g).map(|(x, g)| x * g).sum::<f64>() / width as f64;
        for c in 0..width {
            let centred = inv_rms[p] * (g[c] - xhat[c] * mean_xg);
            out[c] = if transpose { centred } else { gamma[c] * centred };
        }
    }
    Ok(out)
}

/// A gated activation's forward pass: each row of `x` is `[gate | up]` (`[rows, 2·width]`, the
/// gate and up projections stacked into one dense layer as `q|k|v` are), and
/// `y = act(gate) ⊙ up`, `[rows, width]`.
pub fn gated(x: &[f64], rows: usize, width: usize, act: Activation) -> Result<Vec<f64>> {
    check_len("gated input", x.len(), rows * 2 * width)?;
    let mut y = vec![0.0; rows * width];
    for (r, out) in y.chunks_mut(width.max(1)).enumerate() {
        let (gate, up) = x[r * 2 * width..][..2 * width].split_at(width);
        for c in 0..width {
            out[c] = act.value(gate[c]) * up[c];
        }
    }
    Ok(y)
}

/// `ẏ = act'(gate) ġ ⊙ up + act(gate) ⊙ u̇` for the tangents `dx` (`[…, 2·width]`) at the primal
/// `x`: `[…, width]`.
pub fn gated_jvp(x: &[f64], dx: &[f64], batch: Batch, width: usize, act: Activation) -> Result<Vec<f64>> {
    check_len("gated primal", x.len(), batch.primal_rows() * 2 * width)?;
    check_len("gated tangents", dx.len(), batch.tangent_rows() * 2 * width)?;
    let mut dy = vec![0.0; batch.tangent_rows() * width];
    for (r, out) in dy.chunks_mut(width.max(1)).enumerate() {
        let (gate, up) = x[batch.primal_row_of(r) * 2 * width..][..2 * width].split_at(width);
        let (d_gate, d_up) = dx[r * 2 * width..][..2 * width].split_at(width);
        for c in 0..width {
            out[c] = act.derivative(gate[c]) * d_gate[c] * up[c] + act.value(gate[c]) * d_up[c];
        }
    }
    Ok(dy)
}

/// The adjoint of `gated_jvp`: `ḡate = act'(gate) ⊙ up ⊙ ȳ`, `ūp = act(gate) ⊙ ȳ`, as
/// `[ḡate | ūp]` rows (`[…, 2·width]`).
pub fn gated_vjp(x: &[f64], dy: &[f64], batch: Batch, width: usize, act: Activation) -> Result<Vec<f64>> {
    check_len("gated primal", x.len(), batch.primal_rows() * 2 * width)?;
    check_len("gated cotangents", dy.len(), batch.tangent_rows() * width)?;
    let mut dx = vec![0.0; batch.tangent_rows() * 2 * width];
    for (r, out) in dx.chunks_mut((2 * width).max(1)).enumerate() {
        let (gate, up) = x[batch.primal_row_of(r) * 2 * width..][..2 * width].split_at(width);
        let row = &dy[r * width..][..width];
        let (d_gate, d_up) = out.split_at_mut(width);
        for c in 0..width {
            d_gate[c] = act.derivative(gate[c]) * up[c] * row[c];
            d_up[c] = act.value(gate[c]) * row[c];
        }
    }
    Ok(dx)
}

/// An activation applied elementwise, `y = act(x)` (an FFN that is not gated).
pub fn activation(x: &[f64], act: Activation) -> Vec<f64> {
    x.iter().map(|&v| act.value(v)).collect()
}

/// `ẏ = act'(x) ⊙ ẋ` for the tangents `dx` at the primal `x` (`[…, width]`), and, the
/// derivative being diagonal, the VJP as well (`ȳ` for `ẋ`).
pub fn activation_derivative(x: &[f64], dx: &[f64], batch: Batch, width: usize, act: Activation) -> Result<Vec<f64>> {
    check_len("activation primal", x.len(), batch.primal_rows() * width)?;
    check_len("activation tangents", dx.len(), batch.tangent_rows() * width)?;
    let mut dy = vec![0.0; dx.len()];
    for (r, (out, row)) in dy.chunks_mut(width.max(1)).zip(dx.chunks(width.max(1))).enumerate() {
        let primal = &x[batch.primal_row_of(r) * width..][..width];
        for c in 0..width {
            out[c] = act.derivative(primal[c]) * row[c];
        }
    }
    Ok(dy)
}

/// A pooling that is a weighted sum over tokens: `y_s = Σ_t weights[t] · x_(s,t)` for each of
/// `seqs` sequences of `tokens` rows (`[seqs, tokens, width]` → `[seqs, width]`). Linear, so
/// its JVP is itself on the tangents.
pub fn weighted_pool(x: &[f64], seqs: usize, weights: &[f64], width: usize) -> Result<Vec<f64>> {
    let tokens = weights.len();
    check_len("weighted pool input", x.len(), seqs * tokens * width)?;
    let mut y = vec![0.0; seqs * width];
    for (s, out) in y.chunks_mut(width.max(1)).enumerate() {
        for (t, &w) in weights.iter().enumerate() {
            let row = &x[(s * tokens + t) * width..][..width];
            out.iter_mut().zip(row).for_each(|(o, v)| *o += w * v);
        }
    }
    Ok(y)
}

/// The adjoint of `weighted_pool`: row `t` of sequence `s` gets `weights[t] · ȳ_s`
/// (`[seqs, width]` → `[seqs, tokens, width]`).
pub fn weighted_pool_vjp(dy: &[f64], seqs: usize, weights: &[f64], width: usize) -> Result<Vec<f64>> {
    let tokens = weights.len();
    check_len("weighted pool cotangents", dy.len(), seqs * width)?;
    let mut dx = vec![0.0; seqs * tokens * width];
    for (r, out) in dx.chunks_mut(width.max(1)).enumerate() {
        let (s, t) = (r / tokens.max(1), r % tokens.max(1));
        out.iter_mut().zip(&dy[s * width..][..width]).for_each(|(o, v)| *o = weights[t] * v);
    }
    Ok(dx)
}

/// Rotary position embedding (the `rotate_half` form of `transformers`' Llama, Qwen, Gemma
/// and ModernBERT) of the queries and keys of `qkv` rows (`[rows, 3·width]`, each `[q | k |
/// v]`, `width = heads.width()`; values untouched): in each head's slice of `d` values, the
/// pair `(i, i + d/2)` turns by the angle `p · θ^(−2i/d)`, `p` the row's token position
/// (`row % tokens`: primal rows are `[steps, tokens]`, tangent rows `[steps, tangents,
/// tokens]`). Linear, so it is its own JVP; `inverse` turns the other way, its transpose and
/// so its VJP.
pub fn rope(qkv: &[f64], tokens: usize, count: usize, dim: usize, theta: f64, inverse: bool) -> Result<Vec<f64>> {
    let width = count * dim;
    let row_width = 3 * width;
    if !dim.is_multiple_of(2) || tokens == 0 || !qkv.len().is_multiple_of(row_width.max(1)) {
        return Err(Error::Internal(format!(
            "rope of {} values in rows of {row_width}, head width {dim} (even), {tokens} tokens",
            qkv.len()
        )));
    }
    let half = dim / 2;
    let frequencies = rope_frequencies(dim, theta);
    let mut out = qkv.to_vec();
    for (r, row) in out.chunks_mut(row_width.max(1)).enumerate() {
        let position = (r % tokens) as f64;
        let turns: Vec<(f64, f64)> = frequencies
            .iter()
            .map(|f| {
                let (sin, cos) = (position * f).sin_cos();
                (cos, if inverse { -sin } else { sin })
            })
            .collect();
        for slice in row[..2 * width].chunks_mut(dim) {
            for (i, &(cos, sin)) in turns.iter().enumerate() {
                let (a, b) = (slice[i], slice[i + half]);
                slice[i] = a * cos - b * sin;
                slice[i + half] = b * cos + a * sin;
            }
        }
    }
    Ok(out)
}

/// The rotary frequencies `θ^(−2i/d)`, `i < d/2` (in f64; `transformers` computes them in f32,
/// which its float64 goldens patch out).
pub fn rope_frequencies(dim: usize, theta: f64) -> Vec<f64> {
    (0..dim / 2).map(|i| theta.powf(-(2.0 * i as f64) / dim as f64)).collect()
}

/// QK-norm (Qwen3, Gemma3): RMSNorm over each head's slice of the queries (with `q_gamma`,
/// `dim` wide) and of the keys (`k_gamma`) of `qkv` rows (`[rows, 3·width]`); values untouched.
/// Returns the output, `x̂` (`[rows, 3·width]`, values' part zero) and `1/rms` per row, part
/// and head (`[rows, 2, count]`).
pub fn head_rms_norm(
    qkv: &[f64],
    q_gamma: &[f64],
    k_gamma: &[f64],
    count: usize,
    dim: usize,
    eps: f64,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let width = count * dim;
    check_len("head norm γ (queries)", q_gamma.len(), dim)?;
    check_len("head norm γ (keys)", k_gamma.len(), dim)?;
    if !qkv.len().is_multiple_of((3 * width).max(1)) {
        return Err(Error::Internal(format!("head norm of {} values in rows of {}", qkv.len(), 3 * width)));
    }
    let rows = qkv.len() / (3 * width).max(1);
    let (mut y, mut normalized, mut inv_rms) = (qkv.to_vec(), vec![0.0; qkv.len()], vec![0.0; rows * 2 * count]);
    for r in 0..rows {
        for (part, gamma) in [q_gamma, k_gamma].into_iter().enumerate() {
            for h in 0..count {
                let at = r * 3 * width + part * width + h * dim;
                let slice = &qkv[at..at + dim];
                let inv = 1.0 / (slice.iter().map(|v| v * v).sum::<f64>() / dim as f64 + eps).sqrt();
                inv_rms[(r * 2 + part) * count + h] = inv;
                for c in 0..dim {
                    normalized[at + c] = slice[c] * inv;
                    y[at + c] = gamma[c] * slice[c] * inv;
                }
            }
        }
    }
    Ok((y, normalized, inv_rms))
}

/// The derivative of `head_rms_norm` (each head's slice as `rms_norm_derivative` takes a row;
/// the values' tangents pass through): the JVP, or with `transpose` the VJP.
#[allow(clippy::too_many_arguments)]
pub fn head_rms_norm_derivative(
    normalized: &[f64],
    inv_rms: &[f64],
    q_gamma: &[f64],
    k_gamma: &[f64],
    d: &[f64],
    batch: Batch,
    count: usize,
    dim: usize,
    transpose: bool,
) -> Result<Vec<f64>> {
    let width = count * dim;
    check_len("head norm saved x̂", normalized.len(), batch.primal_rows() * 3 * width)?;
    check_len("head norm saved 1/rms", inv_rms.len(), batch.primal_rows() * 2 * count)?;
    check_len("head norm (co)tangents", d.len(), batch.tangent_rows() * 3 * width)?;
    let mut out = d.to_vec();
    for (r, row) in out.chunks_mut((3 * width).max(1)).enumerate() {
        let p = batch.primal_row_of(r);
        for (part, gamma) in [q_gamma, k_gamma].into_iter().enumerate() {
            for h in 0..count {
                let (at, primal_at) = (part * width + h * dim, p * 3 * width + part * width + h * dim);
                let one = Batch { steps: 1, tangents: 1, tokens: 1 };
                let derived = rms_norm_derivative(
                    &normalized[primal_at..primal_at + dim],
                    &inv_rms[(p * 2 + part) * count + h..][..1],
                    gamma,
                    &row[at..at + dim],
                    one,
                    dim,
                    transpose,
                )?;
                row[at..at + dim].copy_from_slice(&derived);
            }
        }
    }
    Ok(out)
}

/// The gradients of QK-norm's scales: `γ̄_q = Σ_{rows, heads} ȳ ⊙ x̂` over the queries' head
/// slices (`dim` wide), `γ̄_k` over the keys', from `head_rms_norm`'s saved `x̂` and the
/// cotangents `dy` of its output (both `[rows, 3·count·dim]`).
pub fn head_rms_norm_weight_grad(normalized: &[f64], dy: &[f64], count: usize, dim: usize) -> Result<[Vec<f64>; 2]> {
    let width = count * dim;
    check_len("head norm cotangents", dy.len(), normalized.len())?;
    if !normalized.len().is_multiple_of((3 * width).max(1)) {
        return Err(Error::Internal(format!("head norm of {} values in rows of {}", normalized.len(), 3 * width)));
    }
    let mut grads = [vec![0.0; dim], vec![0.0; dim]];
    for (x, d) in normalized.chunks(3 * width).zip(dy.chunks(3 * width)) {
        for (part, grad) in grads.iter_mut().enumerate() {
            for h in 0..count {
                let at = part * width + h * dim;
                for c in 0..dim {
                    grad[c] += d[at + c] * x[at + c];
                }
            }
        }
    }
    Ok(grads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_activation_derivative_is_its_central_difference() {
        for act in [Activation::Gelu, Activation::GeluTanh, Activation::Silu, Activation::Relu] {
            for x in [-4.0, -1.3, -0.2, 0.0, 0.4, 1.7, 5.0] {
                if act == Activation::Relu && x == 0.0 {
                    continue; // the kink, where autograd takes 0
                }
                let h = 1e-5;
                let fd = (act.value(x + h) - act.value(x - h)) / (2.0 * h);
                assert!((fd - act.derivative(x)).abs() < 1e-9, "{act:?} at {x}: {fd} vs {}", act.derivative(x));
            }
        }
    }

    #[test]
    fn activations_match_their_closed_forms_at_known_points() {
        // GELU(1) = Φ(1) = 0.841344746…; the tanh form is within 2e-4 of it; SiLU(1) = σ(1).
        assert!((Activation::Gelu.value(1.0) - 0.841_344_746_068_543).abs() < 1e-12);
        assert!((Activation::GeluTanh.value(1.0) - 0.841_191_990_607_477).abs() < 1e-12);
        assert!((Activation::Silu.value(1.0) - 0.731_058_578_630_004_9).abs() < 1e-12);
    }

    #[test]
    fn rms_norm_jacobian_is_its_central_difference_and_its_transpose_the_adjoint() {
        let (width, eps) = (5, 1e-6);
        let x = [0.3, -1.2, 0.8, 2.0, -0.1];
        let gamma = [1.1, 0.9, -0.5, 1.3, 0.7];
        let u = [0.2, 0.1, -0.4, 0.3, 0.5];
        let w = [-0.3, 0.6, 0.2, -0.1, 0.4];
        let one = Batch { steps: 1, tangents: 1, tokens: 1 };
        let normed = rms_norm(&x, &gamma, 1, width, eps).unwrap();
        let jvp = rms_norm_derivative(&normed.normalized, &normed.inv_rms, &gamma, &u, one, width, false).unwrap();
        let h = 1e-6;
        let at = |s: f64| {
            let shifted: Vec<f64> = x.iter().zip(&u).map(|(x, u)| x + s * h * u).collect();
            rms_norm(&shifted, &gamma, 1, width, eps).unwrap().y
        };
        let (plus, minus) = (at(1.0), at(-1.0));
        for c in 0..width {
            assert!(((plus[c] - minus[c]) / (2.0 * h) - jvp[c]).abs() < 1e-8, "column {c}");
        }
        let vjp = rms_norm_derivative(&normed.normalized, &normed.inv_rms, &gamma, &w, one, width, true).unwrap();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        assert!((dot(&w, &jvp) - dot(&vjp, &u)).abs() < 1e-14);
        let rms = (x.iter().map(|v| v * v).sum::<f64>() / 5.0 + eps).sqrt();
        assert!((normed.y[3] - gamma[3] * x[3] / rms).abs() < 1e-15);
    }

    #[test]
    fn bad_lengths_are_internal_errors_not_panics() {
        let one = Batch { steps: 1, tangents: 1, tokens: 1 };
        let error = gated(&[1.0, 2.0, 3.0], 1, 2, Activation::Silu).err().unwrap().to_string();
        assert!(error.contains("gated input has length 3, expected 4"), "{error}");
        assert!(gated_vjp(&[1.0; 4], &[1.0; 3], one, 2, Activation::Gelu).is_err());
        assert!(rms_norm(&[1.0; 4], &[1.0; 3], 1, 4, 1e-6).is_err());
    }
}
