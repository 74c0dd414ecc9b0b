//! Tier 1, reverse mode: every op's VJP against `CpuReference<f64>`, and on the backend under
//! test the dot-product identity `⟨JVP(u), v⟩ = ⟨u, VJP(v)⟩` for random tangents `u` and
//! cotangents `v` (docs/design.md §3), at the same primal.

use simattr::backend::prelude::*;
use simattr::backend::reference::CpuReference;
use simattr::backend::{Activation, Batch, Heads, ResidualNorm, Role, ScoreMods};
use simattr::model::Pooling;
use simattr::net::pooling::{pool_jvp, pool_vjp, Pool};
use simattr::params::{Linear, Norm};

use crate::common::{max_abs, max_abs_diff, Rng};
use crate::F32_OP_TOLERANCE;

fn up<B: Backend>(b: &B, data: &[f32]) -> B::Tensor {
    b.upload(data, Role::Activations { len: data.len() }).expect("upload")
}

fn down<B: Backend>(b: &B, x: &B::Tensor) -> Vec<f64> {
    b.download(x).expect("download")
}

/// `(⟨a, b⟩, Σ |a_i b_i|)`: the product and the size its rounding is relative to.
fn inner(a: &[f64], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "inner product of different lengths");
    a.iter().zip(b).fold((0.0, 0.0), |(s, m), (x, y)| (s + x * y, m + (x * y).abs()))
}

/// The backend's VJP `vjp_v` equals the oracle's `want` (relative max-norm), and is the adjoint
/// of the backend's own JVP: `⟨jvp_u, v⟩ = ⟨u, vjp_v⟩` within f32 rounding of the terms.
fn check(what: &str, (jvp_u, v): (&[f64], &[f32]), (u, vjp_v): (&[f32], &[f64]), want: &[f64]) {
    assert_eq!(vjp_v.len(), want.len(), "{what}: length");
    let scale = max_abs(want);
    assert!(scale > 0.0, "{what}: the expected VJP is all zero, so the check would be empty");
    let err = max_abs_diff(vjp_v, want) / scale;
    assert!(err <= F32_OP_TOLERANCE, "{what}: VJP differs from the oracle's by {err:.2e} of its max");
    let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    let u: Vec<f64> = u.iter().map(|&x| x as f64).collect();
    let ((left, size_l), (right, size_r)) = (inner(jvp_u, &v), inner(&u, vjp_v));
    let gap = (left - right).abs() / size_l.max(size_r);
    assert!(gap <= F32_OP_TOLERANCE, "{what}: ⟨JVP u, v⟩ = {left:e} but ⟨u, VJP v⟩ = {right:e} ({gap:.1e})");
}

fn random_norm(rng: &mut Rng, width: usize) -> Norm<Vec<f32>> {
    Norm { gamma: rng.vec_f32(width, 0.3).iter().map(|g| 1.0 + g).collect(), beta: rng.vec_f32(width, 0.2) }
}

pub fn matmul_vjp<B: Backend>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(31));
    for (rows, in_dim, out_dim) in [(1, 1, 1), (7, 63, 65), (65, 384, 1152), (12, 3072, 768)] {
        let host = Linear {
            weight: rng.vec_f32(in_dim * out_dim, 1.0 / (in_dim as f64).sqrt()),
            bias: rng.vec_f32(out_dim, 0.5),
            in_dim,
            out_dim,
        };
        let (u, v) = (rng.vec_f32(rows * in_dim, 1.0), rng.vec_f32(rows * out_dim, 1.0));
        fn both<E: Backend>(e: &E, host: &Linear<Vec<f32>>, u: &[f32], v: &[f32], rows: usize) -> [Vec<f64>; 2] {
            let layer = host.try_map(&mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
            [
                down(e, &e.matmul(&up(e, u), rows, &layer).unwrap()),
                down(e, &e.matmul_vjp(&up(e, v), rows, &layer).unwrap()),
            ]
        }
        let [jvp_u, vjp_v] = both(b, &host, &u, &v, rows);
        let [_, want] = both(&o, &host, &u, &v, rows);
        check(&format!("matmul_vjp {rows}×{in_dim}×{out_dim}"), (&jvp_u, &v), (&u, &vjp_v), &want);
    }
}

pub fn layer_norm_vjp<B: Backend>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(32));
    for width in [7, 65, 384, 768] {
        let batch = Batch { steps: 2, tangents: 3, tokens: 7 };
        let x: Vec<f32> = rng.vec_f32(batch.primal_rows() * width, 2.0).iter().map(|v| v + 3.0).collect();
        let (u, v) = (rng.vec_f32(batch.tangent_rows() * width, 1.0), rng.vec_f32(batch.tangent_rows() * width, 1.0));
        let host = random_norm(&mut rng, width);
        fn both<E: Backend>(
            e: &E,
            x: &[f32],
            host: &Norm<Vec<f32>>,
            u: &[f32],
            v: &[f32],
            batch: Batch,
        ) -> [Vec<f64>; 2] {
            let width = host.gamma.len();
            let norm = host.try_map(width, &mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
            let (_, saved) = e.layer_norm(&up(e, x), batch.primal_rows(), width, &norm, 1e-12).unwrap();
            [
                down(e, &e.layer_norm_jvp(&saved, &norm, &up(e, u), batch, width).unwrap()),
                down(e, &e.layer_norm_vjp(&saved, &norm, &up(e, v), batch, width).unwrap()),
            ]
        }
        let [jvp_u, vjp_v] = both(b, &x, &host, &u, &v, batch);
        let [_, want] = both(&o, &x, &host, &u, &v, batch);
        check(&format!("layer_norm_vjp width {width}"), (&jvp_u, &v), (&u, &vjp_v), &want);

        // The fused form: the cotangents of two branches, summed as the norm's VJP reads them.
        let w = rng.vec_f32(batch.tangent_rows() * width, 1.0);
        let v_plus_w: Vec<f32> = v.iter().zip(&w).map(|(a, b)| a + b).collect();
        fn residual<E: Backend>(
            e: &E,
            x: &[f32],
            host: &Norm<Vec<f32>>,
            batch: Batch,
            dy: &[f32],
            d_res: &[f32],
        ) -> Vec<f64> {
            let width = host.gamma.len();
            let norm = host.try_map(width, &mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
            let (_, saved) = e.layer_norm(&up(e, x), batch.primal_rows(), width, &norm, 1e-12).unwrap();
            down(e, &e.residual_norm_vjp(&saved, &norm, &up(e, dy), &up(e, d_res), batch, width).unwrap())
        }
        let (got, want) = (residual(b, &x, &host, batch, &v, &w), residual(&o, &x, &host, batch, &v, &w));
        check(&format!("residual_norm_vjp width {width}"), (&jvp_u, &v_plus_w), (&u, &got), &want);
    }
}

pub fn gelu_vjp<B: Backend>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(33));
    let (width, batch) = (129, Batch { steps: 2, tangents: 3, tokens: 5 });
    let x = rng.vec_f32(batch.primal_rows() * width, 3.0);
    let (u, v) = (rng.vec_f32(batch.tangent_rows() * width, 1.0), rng.vec_f32(batch.tangent_rows() * width, 1.0));
    let both = |e: &dyn Fn(bool) -> Vec<f64>| [e(false), e(true)];
    let on_b = both(&|reverse| {
        let (xt, w) = (up(b, &x), up(b, if reverse { &v } else { &u }));
        let out = if reverse { b.gelu_vjp(&xt, &w, batch, width) } else { b.gelu_jvp(&xt, &w, batch, width) };
        down(b, &out.unwrap())
    });
    let want = down(&o, &o.gelu_vjp(&up(&o, &x), &up(&o, &v), batch, width).unwrap());
    check("gelu_vjp", (&on_b[0], &v), (&u, &on_b[1]), &want);
}

pub fn rms_norm_vjp<B: Backend>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(36));
    for width in [7, 384] {
        let batch = Batch { steps: 2, tangents: 3, tokens: 7 };
        let x: Vec<f32> = rng.vec_f32(batch.primal_rows() * width, 2.0).iter().map(|v| v + 1.0).collect();
        let (u, v) = (rng.vec_f32(batch.tangent_rows() * width, 1.0), rng.vec_f32(batch.tangent_rows() * width, 1.0));
        let host = random_norm(&mut rng, width);
        fn both<E: Backend>(
            e: &E,
            x: &[f32],
            host: &Norm<Vec<f32>>,
            u: &[f32],
            v: &[f32],
            batch: Batch,
        ) -> [Vec<f64>; 2] {
            let width = host.gamma.len();
            let norm = host.try_map(width, &mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
            let (_, saved) = e.rms_norm(&up(e, x), batch.primal_rows(), width, &norm, 1e-6).unwrap();
            [
                down(e, &e.rms_norm_jvp(&saved, &norm, &up(e, u), batch, width).unwrap()),
                down(e, &e.rms_norm_vjp(&saved, &norm, &up(e, v), batch, width).unwrap()),
            ]
        }
        let [jvp_u, vjp_v] = both(b, &x, &host, &u, &v, batch);
        let [_, want] = both(&o, &x, &host, &u, &v, batch);
        check(&format!("rms_norm_vjp width {width}"), (&jvp_u, &v), (&u, &vjp_v), &want);
    }
}

pub fn gated_vjp<B: Backend>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(37));
    let (width, batch) = (65, Batch { steps: 2, tangents: 3, tokens: 5 });
    for act in [Activation::Gelu, Activation::GeluTanh, Activation::Silu] {
        let x = rng.vec_f32(batch.primal_rows() * 2 * width, 3.0);
        let u = rng.vec_f32(batch.tangent_rows() * 2 * width, 1.0);
        let v = rng.vec_f32(batch.tangent_rows() * width, 1.0);
        let jvp_u = down(b, &b.gated_jvp(&up(b, &x), &up(b, &u), batch, width, act).unwrap());
        let vjp_v = down(b, &b.gated_vjp(&up(b, &x), &up(b, &v), batch, width, act).unwrap());
        let want = down(&o, &o.gated_vjp(&up(&o, &x), &up(&o, &v), batch, width, act).unwrap());
        check(&format!("gated_vjp {act:?}"), (&jvp_u, &v), (&u, &vjp_v), &want);
    }
}

pub fn activation_vjp<B: Backend>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(38));
    let (width, batch) = (65, Batch { steps: 2, tangents: 3, tokens: 5 });
    for act in [Activation::Relu, Activation::Gelu, Activation::GeluTanh, Activation::Silu] {
        let x = rng.vec_f32(batch.primal_rows() * width, 3.0);
        let u = rng.vec_f32(batch.tangent_rows() * width, 1.0);
        let v = rng.vec_f32(batch.tangent_rows() * width, 1.0);
        let jvp_u = down(b, &b.activation_jvp(&up(b, &x), &up(b, &u), batch, width, act).unwrap());
        let vjp_v = down(b, &b.activation_vjp(&up(b, &x), &up(b, &v), batch, width, act).unwrap());
        let want = down(&o, &o.activation_vjp(&up(&o, &x), &up(&o, &v), batch, width, act).unwrap());
        check(&format!("activation_vjp {act:?}"), (&jvp_u, &v), (&u, &vjp_v), &want);
    }
}

pub fn rope_and_head_norm_vjp<B: Backend>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(39));
    let heads = Heads { count: 3, dim: 8, scale: None };
    let batch = Batch { steps: 2, tangents: 3, tokens: 5 };
    let width = 3 * heads.width();
    let x = rng.vec_f32(batch.primal_rows() * width, 2.0);
    let u = rng.vec_f32(batch.tangent_rows() * width, 1.0);
    let v = rng.vec_f32(batch.tangent_rows() * width, 1.0);
    let jvp_u = down(b, &b.rope(&up(b, &u), batch.tokens, heads, 1e4).unwrap());
    let vjp_v = down(b, &b.rope_vjp(&up(b, &v), batch.tokens, heads, 1e4).unwrap());
    let want = down(&o, &o.rope_vjp(&up(&o, &v), batch.tokens, heads, 1e4).unwrap());
    check("rope_vjp", (&jvp_u, &v), (&u, &vjp_v), &want);
    let (q, k) = (random_norm(&mut rng, heads.dim), random_norm(&mut rng, heads.dim));
    let both = |e: &B| {
        let (qn, kn) = (up_norm(e, &q), up_norm(e, &k));
        let (_, saved) = e.head_rms_norm(&up(e, &x), heads, &qn, &kn, 1e-6).unwrap();
        let jvp_u = down(e, &e.head_rms_norm_jvp(&saved, &qn, &kn, &up(e, &u), batch, heads).unwrap());
        let vjp_v = down(e, &e.head_rms_norm_vjp(&saved, &qn, &kn, &up(e, &v), batch, heads).unwrap());
        (jvp_u, vjp_v)
    };
    let (jvp_u, vjp_v) = both(b);
    let want = {
        let (qn, kn) = (up_norm(&o, &q), up_norm(&o, &k));
        let (_, saved) = o.head_rms_norm(&up(&o, &x), heads, &qn, &kn, 1e-6).unwrap();
        down(&o, &o.head_rms_norm_vjp(&saved, &qn, &kn, &up(&o, &v), batch, heads).unwrap())
    };
    check("head_rms_norm_vjp", (&jvp_u, &v), (&u, &vjp_v), &want);
}

fn up_norm<B: Backend>(b: &B, norm: &Norm<Vec<f32>>) -> Norm<B::Tensor> {
    norm.try_map(norm.gamma.len(), &mut |t: &Vec<f32>, role| b.upload(t, role)).expect("upload norm")
}

pub fn attention_vjp<B: Backend>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(34));
    for (tokens, heads) in [
        (1, Heads { count: 2, dim: 3, scale: None }),
        (7, Heads { count: 2, dim: 3, scale: None }),
        (13, Heads { count: 12, dim: 32, scale: None }),
        (40, Heads { count: 3, dim: 8, scale: None }),
        (9, Heads { count: 2, dim: 4, scale: Some(1.0) }),
    ] {
        let batch = Batch { steps: 2, tangents: 3, tokens };
        let w = heads.width();
        let qkv = rng.vec_f32(batch.primal_rows() * 3 * w, 1.5);
        let u = rng.vec_f32(batch.tangent_rows() * 3 * w, 1.0);
        let v = rng.vec_f32(batch.tangent_rows() * w, 1.0);
        let bias = rng.vec_f32(heads.count * tokens * tokens, 2.0);
        let mask: Vec<f32> =
            (0..batch.steps * tokens).map(|n| if n % tokens == 0 || n % 3 != 1 { 1.0 } else { 0.0 }).collect();
        for (name, with_bias, with_mask) in [("plain", false, false), ("bias+mask", true, true)] {
            fn both<E: Backend>(
                e: &E,
                host: [&[f32]; 5],
                batch: Batch,
                heads: Heads,
                mods: (bool, bool),
            ) -> [Vec<f64>; 2] {
                let [qkv, u, v, bias, mask] = host;
                let bias = mods
                    .0
                    .then(|| e.upload(bias, Role::ScoreBias { heads: heads.count, tokens: batch.tokens }).unwrap());
                let mask =
                    mods.1.then(|| e.upload(mask, Role::KeyMask { seqs: batch.steps, tokens: batch.tokens }).unwrap());
                let scores = ScoreMods { bias: bias.as_ref(), key_mask: mask.as_ref() };
                let qkv = up(e, qkv);
                let (_, saved) = e.attention(&qkv, batch.steps, batch.tokens, heads, scores).unwrap();
                [
                    down(e, &e.attention_jvp(&qkv, &saved, &up(e, u), batch, heads).unwrap()),
                    down(e, &e.attention_vjp(&qkv, &saved, &up(e, v), batch, heads).unwrap()),
                ]
            }
            let host = [&qkv[..], &u, &v, &bias, &mask];
            let [jvp_u, vjp_v] = both(b, host, batch, heads, (with_bias, with_mask));
            let [_, want] = both(&o, host, batch, heads, (with_bias, with_mask));
            check(&format!("attention_vjp {tokens} tokens, {heads:?}, {name}"), (&jvp_u, &v), (&u, &vjp_v), &want);
        }
    }
}

pub fn pooling_vjp<B: Backend>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(35));
    for tokens in [1, 7, 65] {
        let (width, batch) = (65, Batch { steps: 3, tangents: 2, tokens });
        let x = rng.vec_f32(batch.primal_rows() * width, 1.0);
        let u = rng.vec_f32(batch.tangent_rows() * width, 1.0);
        let v = rng.vec_f32(batch.tangent_seqs() * width, 1.0);
        let seqs = batch.tangent_seqs();
        let mean = |e: &dyn Fn(bool) -> Vec<f64>| [e(false), e(true)];
        let [jvp_u, vjp_v] = mean(&|reverse| match reverse {
            false => down(b, &b.mean_pool(&up(b, &u), seqs, tokens, width).unwrap()),
            true => down(b, &b.mean_pool_vjp(&up(b, &v), seqs, tokens, width).unwrap()),
        });
        let want = down(&o, &o.mean_pool_vjp(&up(&o, &v), seqs, tokens, width).unwrap());
        check(&format!("mean_pool_vjp {tokens} tokens"), (&jvp_u, &v), (&u, &vjp_v), &want);
        let [jvp_u, vjp_v] = mean(&|reverse| match reverse {
            false => down(b, &b.max_pool_jvp(&up(b, &x), &up(b, &u), batch, width).unwrap()),
            true => down(b, &b.max_pool_vjp(&up(b, &x), &up(b, &v), batch, width).unwrap()),
        });
        let want = down(&o, &o.max_pool_vjp(&up(&o, &x), &up(&o, &v), batch, width).unwrap());
        check(&format!("max_pool_vjp {tokens} tokens"), (&jvp_u, &v), (&u, &vjp_v), &want);
        for pooling in [Pooling::MeanSqrtLen, Pooling::WeightedMean, Pooling::LastToken] {
            let weights = pooling.token_weights(tokens, 0).unwrap();
            let [jvp_u, vjp_v] = mean(&|reverse| match reverse {
                false => down(b, &b.weighted_pool(&up(b, &u), seqs, &weights, width).unwrap()),
                true => down(b, &b.weighted_pool_vjp(&up(b, &v), seqs, &weights, width).unwrap()),
            });
            let want = down(&o, &o.weighted_pool_vjp(&up(&o, &v), seqs, &weights, width).unwrap());
            check(&format!("weighted_pool_vjp {} {tokens} tokens", pooling.name()), (&jvp_u, &v), (&u, &vjp_v), &want);
        }
        // Pooling as the encoder runs it (`net::pooling`), in every mode, over every token and
        // with a prompt's first tokens left out (`include_prompt: false`).
        for (mode, skipped) in Pooling::ALL.into_iter().flat_map(|m| [(m, 0), (m, 2), (m, tokens - 1)]) {
            if skipped >= tokens {
                continue;
            }
            let pool = Pool { mode, skipped };
            let [jvp_u, vjp_v] = mean(&|reverse| match reverse {
                false => down(b, &pool_jvp(b, pool, &up(b, &x), &up(b, &u), batch, width).unwrap()),
                true => down(b, &pool_vjp(b, pool, &up(b, &x), &up(b, &v), batch, width).unwrap()),
            });
            let want = down(&o, &pool_vjp(&o, pool, &up(&o, &x), &up(&o, &v), batch, width).unwrap());
            let what = format!("pool_vjp {} {tokens} tokens, {skipped} skipped", mode.name());
            check(&what, (&jvp_u, &v), (&u, &vjp_v), &want);
            // Nothing reaches the tokens left out.
            let left_out = (0..batch.tangent_seqs())
                .flat_map(|s| vjp_v[s * tokens * width..(s * tokens + skipped) * width].iter())
                .fold(0.0f64, |m, x| m.max(x.abs()));
            assert_eq!(left_out, 0.0, "{what}: the skipped tokens get a cotangent");
        }
    }
}

/// The top of reverse mode under mean pooling (`mean_pooled_norm_linear_vjp`: structured on a
/// fast backend) against the oracle's plain path, and the adjoint of the forward pooled block
/// on the same backend: for unit cotangents `v = e_d` of the pooled output,
/// `⟨mean_t LN'(ż), e_d⟩ = ⟨ż, z̄⟩` and, with `ż = u Wᵀ`, `= ⟨u, ā⟩`.
pub fn mean_pooled_norm_linear_vjp<B: Backend>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(36));
    for (width, inner, dims) in [(7, 65, 0..7), (65, 7, 60..63), (384, 1536, 5..8)] {
        for tokens in [1, 7, 33] {
            let batch = Batch { steps: 2, tangents: dims.len(), tokens };
            let layer = Linear {
                weight: rng.vec_f32(inner * width, 1.0 / (inner as f64).sqrt()),
                bias: rng.vec_f32(width, 0.5),
                in_dim: inner,
                out_dim: width,
            };
            let norm = random_norm(&mut rng, width);
            let x = rng.vec_f32(batch.primal_rows() * inner, 1.0);
            let residual = rng.vec_f32(batch.primal_rows() * width, 2.0);
            let (u_in, u_sum) =
                (rng.vec_f32(batch.tangent_rows() * inner, 1.0), rng.vec_f32(batch.tangent_rows() * width, 1.0));
            let v = simattr::backend::unit_rows(batch.steps, dims.clone(), width);
            // [(pooled JVP of u_sum, pooled JVP of u_in), (z̄, ā)] on one backend.
            let host: [&[f32]; 4] = [&x, &residual, &u_in, &u_sum];
            fn both<E: Backend>(
                e: &E,
                host: &[&[f32]; 4],
                layer: &Linear<Vec<f32>>,
                norm: &Norm<Vec<f32>>,
                dims: std::ops::Range<usize>,
                batch: Batch,
            ) -> [Vec<f64>; 4] {
                let [x, residual, u_in, u_sum] = host.map(|h| up(e, h));
                let width = layer.out_dim;
                let layer = layer.try_map(&mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
                let norm = norm.try_map(width, &mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
                let sum = e.add(&e.linear(&x, batch.primal_rows(), &layer).unwrap(), &residual).unwrap();
                let (_, saved) = e.layer_norm(&sum, batch.primal_rows(), width, &norm, 1e-12).unwrap();
                let ln = ResidualNorm { norm: &norm, width, eps: 1e-12 };
                let zero_in = e.zeros(batch.tangent_rows() * layer.in_dim).unwrap();
                let zero_sum = e.zeros(batch.tangent_rows() * width).unwrap();
                let pooled = |dx: &E::Tensor, d_residual: &E::Tensor| {
                    let out = e.pooled_linear_residual_norm_jvp(&x, dx, &residual, d_residual, &layer, batch, ln);
                    down(e, &out.unwrap())
                };
                let (d_sum, d_in) = e.mean_pooled_norm_linear_vjp(&saved, &norm, &layer, dims, batch).unwrap();
                [pooled(&zero_in, &u_sum), pooled(&u_in, &zero_sum), down(e, &d_sum), down(e, &d_in)]
            }
            let [jvp_sum, jvp_in, d_sum, d_in] = both(b, &host, &layer, &norm, dims.clone(), batch);
            let [_, _, want_sum, want_in] = both(&o, &host, &layer, &norm, dims.clone(), batch);
            let what = format!("mean_pooled_norm_linear_vjp {width}×{inner}, dims {dims:?}, {tokens} tokens");
            check(&format!("{what}, z̄"), (&jvp_sum, &v), (&u_sum, &d_sum), &want_sum);
            check(&format!("{what}, ā"), (&jvp_in, &v), (&u_in, &d_in), &want_in);
        }
    }
}
