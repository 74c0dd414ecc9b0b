//! Dense layers of the f64 primal: `y = x Wᵀ (+ b)` with `x` in f64, the weight in f32 as the
//! model stores it, and every product and sum in f64.
//!
//! Why not faer: its GEMM wants both operands in one type, and an f64 copy of the weights is
//! either made per call (widening MPNet's 7 M weights per layer per call cost a quarter of an
//! explanation) or kept (twice the f32 weights in memory, and a one-off widening of the whole
//! model that a single run never earns back: measured slower still). The weights are read in
//! f32 and widened in registers instead.
//!
//! Layout: `x` is `[rows, in]`, `W` is `[out, in]`, both row-major, so `y[r, o]` is the dot
//! product of two contiguous rows. A micro-tile of 3 rows × 4 outputs keeps 12 accumulators of
//! four f64 lanes in registers (AVX2 + FMA, detected at run time; a portable loop otherwise),
//! each lane summing every fourth term, the lanes added at the end. Threads take blocks of
//! outputs (`yᵀ`, transposed back at the end), and every output is summed the same way
//! whichever thread takes it.

use rayon::prelude::*;

use super::check_len;

/// Output rows of `W` per parallel task.
const OUTPUTS_PER_TASK: usize = 32;

/// `x Wᵀ (+ bias)` over `rows` rows; `weight` is `[n_out, n_in]`.
pub fn linear(x: &[f64], rows: usize, weight: &[f32], n_in: usize, n_out: usize, bias: Option<&[f32]>) -> Vec<f64> {
    check_len("linear input", x.len(), rows * n_in);
    check_len("linear weight", weight.len(), n_in * n_out);
    if let Some(b) = bias {
        check_len("linear bias", b.len(), n_out);
    }
    let mut y_t = vec![0.0f64; n_out * rows];
    if y_t.is_empty() {
        return y_t;
    }
    y_t.par_chunks_mut(OUTPUTS_PER_TASK * rows).enumerate().for_each(|(task, block)| {
        let first = task * OUTPUTS_PER_TASK;
        let outputs = block.len() / rows;
        outputs_block(x, rows, &weight[first * n_in..(first + outputs) * n_in], n_in, block);
    });
    let mut y = vec![0.0f64; rows * n_out];
    y.par_chunks_mut(n_out).enumerate().for_each(|(r, row)| {
        for (o, v) in row.iter_mut().enumerate() {
            *v = y_t[o * rows + r] + bias.map_or(0.0, |b| b[o] as f64);
        }
    });
    y
}

/// `y_t[o, r] = W[o] · x[r]` for the outputs of `weight` (`[outputs, n_in]`) and every row.
/// Rows outer, outputs inner: the task's weight rows stay in L2 while three rows of `x` at a
/// time sit in L1 (outputs outer streamed all of `x` from L3 for every four outputs: 2.5×
/// slower).
fn outputs_block(x: &[f64], rows: usize, weight: &[f32], n_in: usize, y_t: &mut [f64]) {
    let outputs = weight.len() / n_in;
    for r in (0..rows).step_by(3) {
        let r_count = (rows - r).min(3);
        let x_rows = &x[r * n_in..(r + r_count) * n_in];
        for o in (0..outputs).step_by(4) {
            let o_count = (outputs - o).min(4);
            let tile = dot_tile(x_rows, &weight[o * n_in..(o + o_count) * n_in], n_in);
            for (dr, tile_row) in tile.iter().enumerate().take(r_count) {
                for (dout, &v) in tile_row.iter().enumerate().take(o_count) {
                    y_t[(o + dout) * rows + r + dr] = v;
                }
            }
        }
    }
}

/// Dot products of up to 3 rows of `x` with up to 4 rows of `w` (both `n_in` wide).
fn dot_tile(x: &[f64], w: &[f32], n_in: usize) -> [[f64; 4]; 3] {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { avx2::dot_tile(x, w, n_in) };
        }
    }
    portable_dot_tile(x, w, n_in)
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// The same sums in the same order (lane `l` takes terms `i ≡ l mod 4`), without SIMD.
fn portable_dot_tile(x: &[f64], w: &[f32], n_in: usize) -> [[f64; 4]; 3] {
    let mut out = [[0.0f64; 4]; 3];
    for (xr, out_row) in x.chunks_exact(n_in).zip(out.iter_mut()) {
        for (wo, out) in w.chunks_exact(n_in).zip(out_row.iter_mut()) {
            let mut lanes = [0.0f64; 4];
            let full = n_in / 4 * 4;
            for i in (0..full).step_by(4) {
                for (l, lane) in lanes.iter_mut().enumerate() {
                    *lane = xr[i + l].mul_add(wo[i + l] as f64, *lane);
                }
            }
            let tail: f64 = (full..n_in).map(|i| xr[i] * wo[i] as f64).sum();
            *out = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Rows beyond `x.len() / n_in` and outputs beyond `w.len() / n_in` read row 0 again and
    /// are discarded by the caller, so the tile always runs at full width.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_tile(x: &[f64], w: &[f32], n_in: usize) -> [[f64; 4]; 3] {
        let (rows, outs) = (x.len() / n_in, w.len() / n_in);
        let xr: [&[f64]; 3] = std::array::from_fn(|r| &x[(if r < rows { r } else { 0 }) * n_in..][..n_in]);
        let wo: [&[f32]; 4] = std::array::from_fn(|o| &w[(if o < outs { o } else { 0 }) * n_in..][..n_in]);
        let mut acc = [[_mm256_setzero_pd(); 4]; 3];
        let full = n_in / 4 * 4;
        let mut i = 0;
        while i < full {
            // 12 accumulators + 3 rows of x + one widened weight vector: all 16 registers,
            // no spills (widening the four weight vectors first spilled one accumulator).
            let xv: [__m256d; 3] = std::array::from_fn(|r| _mm256_loadu_pd(xr[r].as_ptr().add(i)));
            for o in 0..4 {
                let wv = _mm256_cvtps_pd(_mm_loadu_ps(wo[o].as_ptr().add(i)));
                for r in 0..3 {
                    acc[r][o] = _mm256_fmadd_pd(xv[r], wv, acc[r][o]);
                }
            }
            i += 4;
        }
        let mut out = [[0.0f64; 4]; 3];
        for r in 0..3 {
            for o in 0..4 {
                let mut lanes = [0.0f64; 4];
                _mm256_storeu_pd(lanes.as_mut_ptr(), acc[r][o]);
                let tail: f64 = (full..n_in).map(|i| xr[r][i] * wo[o][i] as f64).sum();
                out[r][o] = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain f64 sum: every tile shape (row and output remainders), odd widths.
    #[test]
    fn matches_a_plain_f64_sum() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        for (rows, n_in, n_out) in [(1, 1, 1), (5, 7, 6), (3, 8, 4), (7, 33, 70), (10, 64, 37)] {
            let x: Vec<f64> = (0..rows * n_in).map(|_| next()).collect();
            let w: Vec<f32> = (0..n_out * n_in).map(|_| next() as f32).collect();
            let b: Vec<f32> = (0..n_out).map(|_| next() as f32).collect();
            for bias in [None, Some(&b[..])] {
                let y = linear(&x, rows, &w, n_in, n_out, bias);
                for r in 0..rows {
                    for o in 0..n_out {
                        let exact: f64 = (0..n_in).map(|i| x[r * n_in + i] * w[o * n_in + i] as f64).sum::<f64>()
                            + bias.map_or(0.0, |b| b[o] as f64);
                        let got = y[r * n_out + o];
                        assert!((got - exact).abs() <= 1e-14 * (1.0 + exact.abs()), "{rows}x{n_in}x{n_out} [{r},{o}]");
                        // The portable path sums in the same order.
                        let start = (o / 4) * 4;
                        let o_end = (start + 4).min(n_out);
                        let tile =
                            portable_dot_tile(&x[r * n_in..(r + 1) * n_in], &w[start * n_in..o_end * n_in], n_in);
                        let portable = tile[0][o - start] + bias.map_or(0.0, |b| b[o] as f64);
                        assert!((got - portable).abs() <= 1e-15 * (1.0 + got.abs()), "portable [{r},{o}]");
                    }
                }
            }
        }
    }
}
