//! Data movement and elementwise passes: gathers, sums, bias rows, quadrature inputs and
//! token-wise tangents. All are memory-bound; each splits its output into groups of whole
//! rows (or fixed-size blocks) across the pool, and computes every element the same way
//! wherever the split falls.

use std::ops::Range;

use rayon::prelude::*;

use super::rows_per_task;

/// Elements per parallel task in flat elementwise passes.
const BLOCK: usize = 1 << 14;

/// `out[r] = table[ids[r]]`, `table` is `[vocab, width]`.
pub fn gather_rows(table: &[f32], width: usize, ids: &[u32]) -> Vec<f32> {
    let mut out = vec![0.0; ids.len() * width];
    if width == 0 {
        return out;
    }
    out.par_chunks_mut(width).zip(ids).for_each(|(row, &id)| {
        let id = id as usize;
        row.copy_from_slice(&table[id * width..(id + 1) * width]);
    });
    out
}

/// `f(a_i, b_i)` for equal-length `a` and `b`.
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0; a.len()];
    out.par_chunks_mut(BLOCK).zip(a.par_chunks(BLOCK).zip(b.par_chunks(BLOCK))).for_each(|(o, (a, b))| {
        for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
            *o = f(x, y);
        }
    });
    out
}

/// `x + b` for every row of `x` (`[rows, width]`, `b` is `[width]`).
pub fn add_bias(x: &[f32], bias: &[f32]) -> Vec<f32> {
    let width = bias.len();
    let mut out = vec![0.0; x.len()];
    if out.is_empty() {
        return out;
    }
    let chunk = rows_per_task(width) * width;
    out.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(o, x)| {
        for (o, x) in o.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
            for ((o, &x), &b) in o.iter_mut().zip(x).zip(bias) {
                *o = x + b;
            }
        }
    });
    out
}

/// Row `k` of the result is `origin + alphas[k] · delta`, formed in f64 and rounded once.
pub fn interpolate(origin: &[f32], delta: &[f32], alphas: &[f64]) -> Vec<f32> {
    let len = origin.len();
    let mut out = vec![0.0; alphas.len() * len];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(len).zip(alphas).for_each(|(row, &alpha)| {
        for ((o, &x), &d) in row.iter_mut().zip(origin).zip(delta) {
            *o = (x as f64 + alpha * d as f64) as f32;
        }
    });
    out
}

/// `[steps, directions.len(), tokens, width]`: tangent `k` of every step is `delta`'s row
/// `directions.start + k` on that row and zero elsewhere.
pub fn token_tangents(delta: &[f32], steps: usize, tokens: usize, width: usize, directions: Range<usize>) -> Vec<f32> {
    let count = directions.len();
    // A zeroed allocation is cheap (fresh pages); only the one non-zero row per sequence is written.
    let mut out = vec![0.0; steps * count * tokens * width];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(tokens * width).enumerate().for_each(|(seq, block)| {
        let i = directions.start + seq % count;
        block[i * width..(i + 1) * width].copy_from_slice(&delta[i * width..(i + 1) * width]);
    });
    out
}

/// A copy of `data`, written by all threads when large (weights at upload: a fresh 400 MB buffer
/// is ~100 000 page faults, which the threads then take in parallel). Advising huge pages for
/// it was tried and measured slower here (direct compaction on fault; 2.08 s against 1.96 s
/// median for MPNet layer 11), so it is not done.
pub fn copy_large(data: &[f32]) -> Vec<f32> {
    const LARGE: usize = 1 << 20;
    if data.len() < LARGE {
        return data.to_vec();
    }
    let mut out: Vec<f32> = Vec::with_capacity(data.len());
    let spare = &mut out.spare_capacity_mut()[..data.len()];
    spare.par_chunks_mut(LARGE / 4).zip(data.par_chunks(LARGE / 4)).for_each(|(dst, src)| {
        for (d, &s) in dst.iter_mut().zip(src) {
            d.write(s);
        }
    });
    // SAFETY: every one of the first `data.len()` slots was written just above.
    unsafe { out.set_len(data.len()) };
    out
}

/// The adjoint of `gather_rows`: `[rows, width]` zeros, then `out[ids[r]] += x[r]`, each
/// output row summing its sources in the order of `ids`.
pub fn scatter_rows(x: &[f32], width: usize, ids: &[u32], rows: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * width];
    if width == 0 {
        return out;
    }
    let mut sources: Vec<Vec<usize>> = vec![Vec::new(); rows];
    for (r, &id) in ids.iter().enumerate() {
        let id = id as usize;
        sources[id].push(r);
    }
    out.par_chunks_mut(width).zip(&sources).for_each(|(row, sources)| {
        for &r in sources {
            for (o, &v) in row.iter_mut().zip(&x[r * width..(r + 1) * width]) {
                *o += v;
            }
        }
    });
    out
}
