//! Mean and max pooling over tokens, max pooling's JVP, and the weighted pool-and-accumulate
//! into the projection `P`.
//!
//! Layout: `[seqs, tokens, width]` → `[seqs, width]`; max pooling's JVP reads, per feature, the
//! tangent at the primal's arg-max token (the first on a tie); for the accumulation, tangent sequence
//! `k · tangents + m` adds into projection row `first_direction + m`. Token sums run in f64
//! per feature. Threads split the output rows (sequences, or projection rows); each output row
//! is summed by one thread, over tokens and then steps in order, so the result depends neither
//! on the thread count nor on how the steps were split into passes.

use rayon::prelude::*;

use crate::backend::Batch;

/// `Σ_t x[t]` over the `[tokens, width]` rows of `x`, into `acc` (f64).
fn token_sum(x: &[f32], acc: &mut [f64]) {
    acc.fill(0.0);
    for row in x.chunks_exact(acc.len()) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
}

pub fn mean_pool(x: &[f32], seqs: usize, tokens: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; seqs * width];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(width).enumerate().for_each(|(s, out)| {
        let mut acc = vec![0.0f64; width];
        token_sum(&x[s * tokens * width..(s + 1) * tokens * width], &mut acc);
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = (a / tokens as f64) as f32;
        }
    });
    out
}

/// Per feature, the first token holding the largest value of the `[tokens, width]` rows `x`
/// (f32, or the f64 primal: the arg-max is taken on the values the primal pooled).
fn arg_max_tokens<S: Copy + PartialOrd>(x: &[S], width: usize) -> Vec<usize> {
    let Some(first) = x.get(..width) else {
        return vec![0; width];
    };
    let mut best: Vec<(usize, S)> = first.iter().map(|&v| (0, v)).collect();
    for (t, row) in x.chunks_exact(width).enumerate().skip(1) {
        for (b, &v) in best.iter_mut().zip(row) {
            if v > b.1 {
                *b = (t, v);
            }
        }
    }
    best.into_iter().map(|(t, _)| t).collect()
}

pub fn max_pool(x: &[f32], seqs: usize, tokens: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; seqs * width];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(width).enumerate().for_each(|(s, out)| {
        let rows = &x[s * tokens * width..(s + 1) * tokens * width];
        for (c, (o, t)) in out.iter_mut().zip(arg_max_tokens(rows, width)).enumerate() {
            *o = rows[t * width + c];
        }
    });
    out
}

/// `arg_max_tokens` of every step's primal rows.
fn arg_max_per_step<S: Copy + PartialOrd + Sync>(x: &[S], batch: Batch, width: usize) -> Vec<Vec<usize>> {
    let t = batch.tokens;
    (0..batch.steps).into_par_iter().map(|k| arg_max_tokens(&x[k * t * width..(k + 1) * t * width], width)).collect()
}

pub fn max_pool_jvp<S: Copy + PartialOrd + Sync>(x: &[S], dx: &[f32], batch: Batch, width: usize) -> Vec<f32> {
    let t = batch.tokens;
    let mut out = vec![0.0f32; batch.tangent_seqs() * width];
    if out.is_empty() {
        return out;
    }
    let arg_max = arg_max_per_step(x, batch, width);
    out.par_chunks_mut(width).enumerate().for_each(|(seq, out)| {
        let rows = &dx[seq * t * width..(seq + 1) * t * width];
        for (c, (o, &t)) in out.iter_mut().zip(&arg_max[seq / batch.tangents]).enumerate() {
            *o = rows[t * width + c];
        }
    });
    out
}

/// `projection[first_direction + m] += weights[k] · mean_t d_states[k, m, t]`, steps in order.
pub fn pool_accumulate(
    projection: &mut [f32],
    d_states: &[f32],
    batch: Batch,
    width: usize,
    weights: &[f64],
    first_direction: usize,
) {
    let (t, tangents) = (batch.tokens, batch.tangents);
    if width == 0 || tangents == 0 {
        return;
    }
    let target = &mut projection[first_direction * width..(first_direction + tangents) * width];
    target.par_chunks_mut(width).enumerate().for_each(|(m, row)| {
        let mut acc = vec![0.0f64; width];
        for (k, &weight) in weights.iter().enumerate() {
            let seq = k * tangents + m;
            token_sum(&d_states[seq * t * width..(seq + 1) * t * width], &mut acc);
            for (slot, a) in row.iter_mut().zip(&acc) {
                *slot = (*slot as f64 + weight * a / t as f64) as f32;
            }
        }
    });
}

/// The VJP of `mean_pool`: every token row of sequence `s` gets `dy[s] / tokens`.
pub fn mean_pool_vjp(dy: &[f32], seqs: usize, tokens: usize, width: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; seqs * tokens * width];
    if dx.is_empty() {
        return dx;
    }
    dx.par_chunks_mut(tokens * width).zip(dy.par_chunks(width)).for_each(|(rows, dy)| {
        for row in rows.chunks_exact_mut(width) {
            for (o, &g) in row.iter_mut().zip(dy) {
                *o = (g as f64 / tokens as f64) as f32;
            }
        }
    });
    dx
}

/// The VJP of `max_pool`: each feature's cotangent goes to the token where its step's primal
/// `x` (f32, or the f64 primal) is largest, the first on a tie.
pub fn max_pool_vjp<S: Copy + PartialOrd + Sync>(x: &[S], dy: &[f32], batch: Batch, width: usize) -> Vec<f32> {
    let t = batch.tokens;
    let mut dx = vec![0.0f32; batch.tangent_rows() * width];
    if dx.is_empty() {
        return dx;
    }
    let arg_max = arg_max_per_step(x, batch, width);
    dx.par_chunks_mut(t * width).enumerate().for_each(|(seq, rows)| {
        let dy = &dy[seq * width..(seq + 1) * width];
        for (c, &token) in arg_max[seq / batch.tangents].iter().enumerate() {
            rows[token * width + c] = dy[c];
        }
    });
    dx
}

/// `projection[i, first_dim + c] += weights[k] · Σ_h d_states[k, c, i, h] · delta[i, h]`,
/// steps in order. Threads split the tokens `i`; each sum runs in f64.
#[allow(clippy::too_many_arguments)]
pub fn cotangent_accumulate<D: Copy + Into<f64> + Sync>(
    projection: &mut [f32],
    d_states: &[f32],
    delta: &[D],
    batch: Batch,
    width: usize,
    weights: &[f64],
    first_dim: usize,
) {
    let (t, cotangents) = (batch.tokens, batch.tangents);
    let dims = projection.len() / t.max(1);
    if width == 0 || cotangents == 0 || t == 0 {
        return;
    }
    projection.par_chunks_mut(dims).enumerate().for_each(|(i, row)| {
        let delta_i = &delta[i * width..(i + 1) * width];
        for (k, &weight) in weights.iter().enumerate() {
            for c in 0..cotangents {
                let ds = &d_states[((k * cotangents + c) * t + i) * width..][..width];
                let contracted: f64 = ds.iter().zip(delta_i).map(|(&g, &d)| g as f64 * d.into()).sum();
                let slot = &mut row[first_dim + c];
                *slot = (*slot as f64 + weight * contracted) as f32;
            }
        }
    });
}
