//! Forward-mode derivatives against central finite differences, in f64: each op's JVP, then
//! the whole layer stack above a split point on every tiny fixture.

use crate::common;

use common::{direction, fixture_dir, max_abs, max_abs_diff, Rng, TINY_FIXTURES};
use simattr::backend::prelude::*;
use simattr::backend::reference::CpuReference;
use simattr::backend::{Batch, Heads, ResidualNorm, ScoreMods};
use simattr::model::SentenceModel;
use simattr::net::pooling::{pool_jvp, Pool};
use simattr::net::Encoder;
use simattr::params::Norm;

type F64 = CpuReference<f64>;

/// Central difference of `f` at `x` along `dx`.
pub fn central_difference(f: impl Fn(&[f64]) -> Vec<f64>, x: &[f64], dx: &[f64], eps: f64) -> Vec<f64> {
    let shifted = |sign: f64| -> Vec<f64> { x.iter().zip(dx).map(|(a, d)| a + sign * eps * d).collect() };
    let (plus, minus) = (f(&shifted(1.0)), f(&shifted(-1.0)));
    plus.iter().zip(&minus).map(|(p, m)| (p - m) / (2.0 * eps)).collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], relative: f64) {
    let err = max_abs_diff(got, want);
    let scale = max_abs(want).max(1e-12);
    assert!(err <= relative * scale, "{what}: JVP vs finite differences differ by {err:e} (scale {scale:e})");
    assert!(scale > 1e-6, "{what}: derivative is trivially zero");
}

#[test]
fn layer_norm_jvp_matches_finite_differences() {
    let b = F64::new();
    let mut rng = Rng::new(1);
    let (batch, width) = (Batch { steps: 2, tangents: 3, tokens: 4 }, 8);
    let x = rng.vec(batch.primal_rows() * width);
    let dx = rng.vec(batch.tangent_rows() * width);
    let norm = Norm { gamma: rng.vec(width).iter().map(|g| 1.0 + 0.3 * g).collect(), beta: rng.vec(width) };
    let (_, saved) = b.layer_norm(&x, batch.primal_rows(), width, &norm, 1e-5).unwrap();
    let jvp = b.layer_norm_jvp(&saved, &norm, &dx, batch, width).unwrap();
    for k in 0..batch.tangents {
        let f = |x: &[f64]| b.layer_norm(&x.to_vec(), batch.primal_rows(), width, &norm, 1e-5).unwrap().0;
        let fd = central_difference(f, &x, &direction(batch, width, &dx, k), 1e-6);
        assert_close("layer_norm", &direction(batch, width, &jvp, k), &fd, 1e-7);
    }
}

#[test]
fn gelu_jvp_matches_finite_differences() {
    let b = F64::new();
    let mut rng = Rng::new(2);
    let (batch, width) = (Batch { steps: 2, tangents: 2, tokens: 3 }, 5);
    let x: Vec<f64> = rng.vec(batch.primal_rows() * width).iter().map(|v| 3.0 * v).collect();
    let dx = rng.vec(batch.tangent_rows() * width);
    let jvp = b.gelu_jvp(&x, &dx, batch, width).unwrap();
    for k in 0..batch.tangents {
        let fd = central_difference(|x| b.gelu(&x.to_vec()).unwrap(), &x, &direction(batch, width, &dx, k), 1e-6);
        assert_close("gelu", &direction(batch, width, &jvp, k), &fd, 1e-7);
    }
}

#[test]
fn attention_jvp_matches_finite_differences_with_bias_and_mask() {
    let b = F64::new();
    let mut rng = Rng::new(3);
    let heads = Heads { count: 2, dim: 3, scale: None };
    let batch = Batch { steps: 2, tangents: 2, tokens: 4 };
    let n = batch.primal_rows() * 3 * heads.width();
    let qkv = rng.vec(n);
    let dqkv = rng.vec(batch.tangent_rows() * 3 * heads.width());
    let bias = rng.vec(heads.count * batch.tokens * batch.tokens);
    // The second sequence's last key is padding.
    let mask = vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
    for (name, scores) in [
        ("plain", ScoreMods::none()),
        ("bias", ScoreMods { bias: Some(&bias), key_mask: None }),
        ("bias+mask", ScoreMods { bias: Some(&bias), key_mask: Some(&mask) }),
    ] {
        let (_, saved) = b.attention(&qkv, batch.steps, batch.tokens, heads, scores).unwrap();
        let jvp = b.attention_jvp(&qkv, &saved, &dqkv, batch, heads).unwrap();
        for t in 0..batch.tangents {
            let f = |x: &[f64]| b.attention(&x.to_vec(), batch.steps, batch.tokens, heads, scores).unwrap().0;
            let fd = central_difference(f, &qkv, &direction(batch, 3 * heads.width(), &dqkv, t), 1e-6);
            assert_close(&format!("attention {name}"), &direction(batch, heads.width(), &jvp, t), &fd, 1e-7);
        }
    }
}

#[test]
fn block_op_jvps_match_finite_differences() {
    let b = F64::new();
    let mut rng = Rng::new(5);
    let (batch, width) = (Batch { steps: 2, tangents: 3, tokens: 3 }, 6);
    let rows = batch.primal_rows();
    let (z, residual, bias) = (rng.vec(rows * width), rng.vec(rows * width), rng.vec(width));
    let (dz, d_residual) = (rng.vec(batch.tangent_rows() * width), rng.vec(batch.tangent_rows() * width));
    let norm = Norm { gamma: rng.vec(width).iter().map(|g| 1.0 + 0.3 * g).collect(), beta: rng.vec(width) };
    let ln = ResidualNorm { norm: &norm, width, eps: 1e-5 };
    let (_, jvp) = b.bias_residual_norm_jvp(&z, &bias, &residual, &dz, &d_residual, batch, ln).unwrap();
    for k in 0..batch.tangents {
        // Perturb z and the residual together.
        let x = [z.clone(), residual.clone()].concat();
        let dx = [direction(batch, width, &dz, k), direction(batch, width, &d_residual, k)].concat();
        let f = |x: &[f64]| {
            let (z, residual) = x.split_at(rows * width);
            b.bias_residual_norm(&z.to_vec(), &bias, &residual.to_vec(), rows, ln).unwrap()
        };
        assert_close(
            "bias_residual_norm",
            &direction(batch, width, &jvp, k),
            &central_difference(f, &x, &dx, 1e-6),
            1e-7,
        );
    }
    let (_, jvp) = b.bias_gelu_jvp(&z, &bias, &dz, batch, width).unwrap();
    for k in 0..batch.tangents {
        let f = |x: &[f64]| b.bias_gelu(&x.to_vec(), rows, &bias).unwrap();
        let fd = central_difference(f, &z, &direction(batch, width, &dz, k), 1e-6);
        assert_close("bias_gelu", &direction(batch, width, &jvp, k), &fd, 1e-7);
    }
}

#[test]
fn max_pool_jvp_matches_finite_differences() {
    let b = F64::new();
    let mut rng = Rng::new(5);
    let (batch, width) = (Batch { steps: 2, tangents: 3, tokens: 6 }, 9);
    let x = rng.vec(batch.primal_rows() * width);
    let dx = rng.vec(batch.tangent_rows() * width);
    let jvp = b.max_pool_jvp(&x, &dx, batch, width).unwrap();
    for k in 0..batch.tangents {
        let f = |x: &[f64]| b.max_pool(&x.to_vec(), batch.steps, batch.tokens, width).unwrap();
        let fd = central_difference(f, &x, &direction(batch, width, &dx, k), 1e-7);
        let got: Vec<f64> =
            (0..batch.steps).flat_map(|s| jvp[(s * batch.tangents + k) * width..][..width].to_vec()).collect();
        assert_close("max_pool", &got, &fd, 1e-7);
    }
}

/// The whole stack above every split point, pooled as the fixture's model pools, for every
/// architecture and pooling mode; every token pooled, and the first two left out (a prompt
/// under `include_prompt: false`).
#[test]
fn encoder_stack_jvp_matches_finite_differences() {
    for fixture in TINY_FIXTURES {
        let model = SentenceModel::load(&fixture_dir(fixture)).unwrap();
        let backend = F64::new();
        let encoder = Encoder::new(&backend, &model).unwrap();
        let ids = model.tokenizer.encode("the cat sat on the mat").unwrap().ids;
        let (t, h) = (ids.len(), encoder.hidden());
        let mut rng = Rng::new(4);
        for layer in 0..encoder.num_layers() {
            let states = backend.download(&encoder.states_at(&ids, 1, layer).unwrap()).unwrap();
            let direction = rng.vec(t * h);
            let batch = Batch { steps: 1, tangents: 1, tokens: t };
            let (out, d_out) = encoder.jvp_layers(&states, &direction, layer, batch, &|| Ok(())).unwrap();
            for pool in [encoder.pool_all(), Pool { skipped: 2, ..encoder.pool_all() }] {
                let jvp = pool_jvp(&backend, pool, &out, &d_out, batch, h).unwrap();
                let pooled_end = |x: &[f64]| {
                    let out = encoder.forward_layers(x.to_vec(), layer, encoder.num_layers(), 1, t).unwrap();
                    encoder.pool(pool, &out, 1, t).unwrap()
                };
                let fd = central_difference(pooled_end, &states, &direction, 1e-5);
                let label = format!("{fixture}: encoder from layer {layer}, {} skipped", pool.skipped);
                assert_close(&label, &jvp, &fd, 1e-6);
            }
        }
    }
}
