//! Exact (erf) GELU and its JVP, optionally fused with the bias add that precedes it.
//!
//! Layout: rows of `width` scalars, tangent row `r` at primal row `batch.primal_row_of(r)`.
//! The primal pass forms `z + b` once per element, and writes `gelu(z + b)` and the slope
//! `gelu'(z + b)`, in f32 with a branch-free erf and exp that vectorise; the tangent pass is
//! then one multiply per tangent element, so erf and exp run once per primal element rather
//! than once per tangent. Both passes split groups of whole rows across the pool.

use rayon::prelude::*;

use super::rows_per_task;
use crate::backend::Batch;

/// `e^x` in f32 without a libm call, so that loops over it vectorise: `x = k·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, a degree-6 Taylor polynomial for `e^r` (relative error < 2e-7) and `2^k`
/// built from its exponent bits. Inputs are clamped to where f32 is finite and normal.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - k * 0.693_145_75) - k * 1.428_606_8e-6; // ln 2 in two parts
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// `(gelu(v), gelu'(v))` with `Φ(v) = (1 + erf(v/√2))/2` and `φ(v) = e^{−v²/2}/√(2π)`.
/// erf is Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7, below f32's resolution of
/// `Φ ≈ 0.5`), sharing `e^{−v²/2}` with `φ`; branch-free, so a row of it vectorises.
#[inline(always)]
fn gelu_and_slope(v: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let z = v * FRAC_1_SQRT_2;
    let gauss = exp_f32(-z * z);
    let t = 1.0 / (1.0 + P * z.abs());
    let tail = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4])))) * gauss;
    let erf = (1.0 - tail).copysign(z);
    let cdf = 0.5 * (1.0 + erf);
    (v * cdf, cdf + v * gauss * FRAC_1_SQRT_2PI)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1/√(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Elements per parallel task: whole rows, `width` each.
fn chunk_len(width: usize) -> usize {
    rows_per_task(width) * width
}

/// `v = x + bias` of one row, into `out` (`bias` none: a copy).
#[inline(always)]
fn add_row_bias(x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    match bias {
        Some(b) => out.iter_mut().zip(x).zip(b).for_each(|((o, &x), &b)| *o = x + b),
        None => out.copy_from_slice(x),
    }
}

/// `gelu(x + bias)`, `bias` repeating every row (none: plain `gelu(x)`).
pub fn gelu(x: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let width = bias.map_or(x.len().clamp(1, 4096), <[f32]>::len).max(1);
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(chunk_len(width)).zip(x.par_chunks(chunk_len(width))).for_each(|(y, x)| {
        for (y, x) in y.chunks_mut(width).zip(x.chunks(width)) {
            add_row_bias(x, bias, y);
            y.iter_mut().for_each(|v| *v = gelu_and_slope(*v).0);
        }
    });
    y
}

/// `(gelu(x + bias), gelu'(x + bias) ⊙ dx)` for the primal rows of `x` and the tangent rows of `dx`.
pub fn gelu_jvp(x: &[f32], bias: Option<&[f32]>, dx: &[f32], batch: Batch, width: usize) -> (Vec<f32>, Vec<f32>) {
    let mut y = vec![0.0f32; x.len()];
    let mut slope = vec![0.0f32; x.len()];
    let chunk = chunk_len(width.max(1));
    y.par_chunks_mut(chunk).zip(slope.par_chunks_mut(chunk)).zip(x.par_chunks(chunk)).for_each(|((y, s), x)| {
        for ((y, s), x) in y.chunks_mut(width).zip(s.chunks_mut(width)).zip(x.chunks(width)) {
            add_row_bias(x, bias, y);
            for (y, s) in y.iter_mut().zip(s.iter_mut()) {
                (*y, *s) = gelu_and_slope(*y);
            }
        }
    });
    let mut dy = vec![0.0f32; dx.len()];
    if dy.is_empty() {
        return (y, dy);
    }
    let group = rows_per_task(width);
    dy.par_chunks_mut(group * width).zip(dx.par_chunks(group * width)).enumerate().for_each(|(g, (dy, dx))| {
        for (i, (out, d)) in dy.chunks_exact_mut(width).zip(dx.chunks_exact(width)).enumerate() {
            let p = batch.primal_row_of(g * group + i);
            for ((o, &d), &s) in out.iter_mut().zip(d).zip(&slope[p * width..(p + 1) * width]) {
                *o = s * d;
            }
        }
    });
    (y, dy)
}

#[cfg(test)]
mod tests {
    use super::{exp_f32, gelu_and_slope};

    /// The f32 exp and GELU against f64 libm on a dense grid: exp to 3e-7 relative, GELU to
    /// 3e-7 absolute (relative beyond |v| = 1) and its slope to 5e-7 absolute: A&S 7.1.26's
    /// 1.5e-7 bound on erf plus a few f32 roundings (an ulp of the slope near 1 is 1.2e-7).
    #[test]
    fn fast_exp_and_gelu_match_libm() {
        let (mut exp_err, mut value_err, mut slope_err) = (0.0f64, 0.0f64, 0.0f64);
        for n in -200_000..=200_000 {
            let x = n as f64 * 1e-4; // [-20, 20]
            let arg = (-x * x / 2.0) as f32;
            let want = (arg as f64).exp();
            if want > 1e-30 {
                exp_err = exp_err.max((exp_f32(arg) as f64 - want).abs() / want);
            }
            let v = x as f32 as f64;
            let cdf = 0.5 * (1.0 + libm::erf(v / std::f64::consts::SQRT_2));
            let pdf = (-v * v / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let (value, slope) = gelu_and_slope(v as f32);
            value_err = value_err.max((value as f64 - v * cdf).abs() / v.abs().max(1.0));
            slope_err = slope_err.max((slope as f64 - (cdf + v * pdf)).abs());
        }
        assert!(exp_err < 3e-7, "exp relative error {exp_err:.2e}");
        assert!(value_err < 3e-7, "gelu error {value_err:.2e}");
        assert!(slope_err < 5e-7, "gelu slope error {slope_err:.2e}");
    }
}
