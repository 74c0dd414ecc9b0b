//! Reverse-mode derivatives against central finite differences, in f64 on the reference: for
//! each op, a cotangent `v` of one direction and a random primal direction `u`,
//! `⟨VJP(v), u⟩ = ⟨(f(x + εu) − f(x − εu)) / 2ε, v⟩`.

use crate::common;

use common::{direction, Rng};
use simattr::backend::prelude::*;
use simattr::backend::reference::CpuReference;
use simattr::backend::{Batch, Heads, Role, ScoreMods};
use simattr::params::{Linear, Norm};

type F64 = CpuReference<f64>;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Checks `⟨vjp, u⟩` against the central difference of `⟨f, v⟩` along `u` at `x`.
fn check(what: &str, f: impl Fn(&[f64]) -> Vec<f64>, x: &[f64], u: &[f64], v: &[f64], vjp: &[f64]) {
    let eps = 1e-6;
    let shifted = |sign: f64| -> Vec<f64> { x.iter().zip(u).map(|(a, d)| a + sign * eps * d).collect() };
    let fd = (dot(&f(&shifted(1.0)), v) - dot(&f(&shifted(-1.0)), v)) / (2.0 * eps);
    let exact = dot(vjp, u);
    assert!(exact.abs() > 1e-6, "{what}: the derivative is trivially zero");
    assert!(
        (fd - exact).abs() <= 1e-7 * exact.abs().max(1.0),
        "{what}: ⟨VJP v, u⟩ = {exact:e}, finite differences {fd:e}"
    );
}

#[test]
fn matmul_vjp_matches_finite_differences() {
    let (b, mut rng) = (F64::new(), Rng::new(41));
    let (rows, in_dim, out_dim) = (5, 7, 6);
    let layer = Linear { weight: rng.vec(in_dim * out_dim), bias: rng.vec(out_dim), in_dim, out_dim };
    let (x, u, v) = (rng.vec(rows * in_dim), rng.vec(rows * in_dim), rng.vec(rows * out_dim));
    let vjp = b.matmul_vjp(&v, rows, &layer).unwrap();
    check("linear", |x| b.linear(&x.to_vec(), rows, &layer).unwrap(), &x, &u, &v, &vjp);
}

#[test]
fn layer_norm_vjp_matches_finite_differences() {
    let (b, mut rng) = (F64::new(), Rng::new(42));
    let (batch, width) = (Batch { steps: 2, tangents: 3, tokens: 4 }, 8);
    let x = rng.vec(batch.primal_rows() * width);
    let u = rng.vec(batch.primal_rows() * width);
    let v = rng.vec(batch.tangent_rows() * width);
    let norm = Norm { gamma: rng.vec(width).iter().map(|g| 1.0 + 0.3 * g).collect(), beta: rng.vec(width) };
    let (_, saved) = b.layer_norm(&x, batch.primal_rows(), width, &norm, 1e-5).unwrap();
    let vjp = b.layer_norm_vjp(&saved, &norm, &v, batch, width).unwrap();
    for k in 0..batch.tangents {
        let f = |x: &[f64]| b.layer_norm(&x.to_vec(), batch.primal_rows(), width, &norm, 1e-5).unwrap().0;
        let (v_k, vjp_k) = (direction(batch, width, &v, k), direction(batch, width, &vjp, k));
        check("layer_norm", f, &x, &u, &v_k, &vjp_k);
    }
}

#[test]
fn gelu_vjp_matches_finite_differences() {
    let (b, mut rng) = (F64::new(), Rng::new(43));
    let (batch, width) = (Batch { steps: 2, tangents: 2, tokens: 3 }, 5);
    let x: Vec<f64> = rng.vec(batch.primal_rows() * width).iter().map(|v| 3.0 * v).collect();
    let (u, v) = (rng.vec(batch.primal_rows() * width), rng.vec(batch.tangent_rows() * width));
    let vjp = b.gelu_vjp(&x, &v, batch, width).unwrap();
    for k in 0..batch.tangents {
        let (v_k, vjp_k) = (direction(batch, width, &v, k), direction(batch, width, &vjp, k));
        check("gelu", |x| b.gelu(&x.to_vec()).unwrap(), &x, &u, &v_k, &vjp_k);
    }
}

#[test]
fn attention_vjp_matches_finite_differences_with_bias_and_mask() {
    let (b, mut rng) = (F64::new(), Rng::new(44));
    let heads = Heads { count: 2, dim: 3, scale: None };
    let batch = Batch { steps: 2, tangents: 2, tokens: 4 };
    let w = heads.width();
    let qkv = rng.vec(batch.primal_rows() * 3 * w);
    let (u, v) = (rng.vec(batch.primal_rows() * 3 * w), rng.vec(batch.tangent_rows() * w));
    let bias: Vec<f32> = rng.vec(heads.count * 4 * 4).iter().map(|&x| x as f32).collect();
    let mask = [1.0f32, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0];
    let bias = b.upload(&bias, Role::ScoreBias { heads: heads.count, tokens: 4 }).unwrap();
    let mask = b.upload(&mask, Role::KeyMask { seqs: 2, tokens: 4 }).unwrap();
    let scores = ScoreMods { bias: Some(&bias), key_mask: Some(&mask) };
    let (_, saved) = b.attention(&qkv, batch.steps, batch.tokens, heads, scores).unwrap();
    let vjp = b.attention_vjp(&qkv, &saved, &v, batch, heads).unwrap();
    for k in 0..batch.tangents {
        let f = |x: &[f64]| b.attention(&x.to_vec(), batch.steps, batch.tokens, heads, scores).unwrap().0;
        let (v_k, vjp_k) = (direction(batch, w, &v, k), direction(batch, 3 * w, &vjp, k));
        check("attention", f, &qkv, &u, &v_k, &vjp_k);
    }
}

#[test]
fn pooling_vjps_match_finite_differences() {
    let (b, mut rng) = (F64::new(), Rng::new(45));
    let (batch, width) = (Batch { steps: 2, tangents: 3, tokens: 5 }, 6);
    let x = rng.vec(batch.primal_rows() * width);
    let u = rng.vec(batch.primal_rows() * width);
    let v = rng.vec(batch.tangent_seqs() * width);
    let pooled = Batch { tokens: 1, ..batch };
    let max_vjp = b.max_pool_vjp(&x, &v, batch, width).unwrap();
    let mean_vjp = b.mean_pool_vjp(&v, batch.tangent_seqs(), batch.tokens, width).unwrap();
    for k in 0..batch.tangents {
        let v_k = direction(pooled, width, &v, k);
        let max = |x: &[f64]| b.max_pool(&x.to_vec(), batch.steps, batch.tokens, width).unwrap();
        check("max_pool", max, &x, &u, &v_k, &direction(batch, width, &max_vjp, k));
        let mean = |x: &[f64]| b.mean_pool(&x.to_vec(), batch.steps, batch.tokens, width).unwrap();
        check("mean_pool", mean, &x, &u, &v_k, &direction(batch, width, &mean_vjp, k));
    }
}
