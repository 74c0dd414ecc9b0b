//! Tier 1: every op, forward and JVP, small and fused, against `CpuReference<f64>` on random
//! inputs of awkward and real sizes. The error is the relative max-norm
//! `max|got − want| / max|want|`, bounded by `F32_OP_TOLERANCE`.

use simattr::backend::prelude::*;
use simattr::backend::reference::CpuReference;
use simattr::backend::{Activation, BackendSettings, Batch, Heads, ResidualNorm, Role, ScoreMods};
use simattr::net::layer::{last_layer_pooled_jvp, layer_forward, layer_jvp, LayerShape, TangentsIn};
use simattr::params::{LayerParams, Linear, Norm};

use crate::common::{max_abs, max_abs_diff, Rng};
use crate::F32_OP_TOLERANCE;

/// Odd sizes around SIMD widths and tile edges, as docs/design.md §3 asks.
const SIZES: [usize; 5] = [1, 7, 63, 65, 129];

fn oracle() -> CpuReference<f64> {
    CpuReference::<f64>::new()
}

fn up<B: Backend>(b: &B, data: &[f32]) -> B::Tensor {
    b.upload(data, Role::Activations { len: data.len() }).expect("upload")
}

fn down<B: Backend>(b: &B, x: &B::Tensor) -> Vec<f64> {
    b.download(x).expect("download")
}

/// Fails unless `got` is within `F32_OP_TOLERANCE` of `want` in relative max-norm.
fn check(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = max_abs(want);
    assert!(scale > 0.0, "{what}: the expected output is all zero, so the check would be empty");
    let err = max_abs_diff(got, want) / scale;
    assert!(err <= F32_OP_TOLERANCE, "{what}: relative max-norm error {err:.2e} > {F32_OP_TOLERANCE:e}");
}

fn random_linear(rng: &mut Rng, in_dim: usize, out_dim: usize) -> Linear<Vec<f32>> {
    let scale = 1.0 / (in_dim as f64).sqrt();
    Linear { weight: rng.vec_f32(in_dim * out_dim, scale), bias: rng.vec_f32(out_dim, 0.5), in_dim, out_dim }
}

fn random_norm(rng: &mut Rng, width: usize) -> Norm<Vec<f32>> {
    Norm { gamma: rng.vec_f32(width, 0.3).iter().map(|g| 1.0 + g).collect(), beta: rng.vec_f32(width, 0.2) }
}

fn linear_on<B: Backend>(b: &B, layer: &Linear<Vec<f32>>) -> Linear<B::Tensor> {
    layer.try_map(&mut |t: &Vec<f32>, role| b.upload(t, role)).expect("upload linear")
}

fn norm_on<B: Backend>(b: &B, norm: &Norm<Vec<f32>>, width: usize) -> Norm<B::Tensor> {
    norm.try_map(width, &mut |t: &Vec<f32>, role| b.upload(t, role)).expect("upload norm")
}

/// Runs `op` on the backend under test and on the oracle with the same host inputs and
/// checks the outputs agree.
macro_rules! compare {
    ($what:expr, $b:expr, $o:expr, |$backend:ident| $body:expr) => {{
        let got = {
            let $backend = $b;
            $body
        };
        let want = {
            let $backend = $o;
            $body
        };
        check(&$what, &got, &want);
    }};
}

pub fn gather_rows<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(11));
    for width in [7, 384] {
        let vocab = 129;
        let table = rng.vec_f32(vocab * width, 1.0);
        let ids: Vec<u32> = (0..65).map(|i| ((i * 37 + 5) % vocab) as u32).collect();
        compare!(format!("gather_rows width {width}"), b, &o, |x| {
            let t = x.upload(&table, Role::Table { rows: vocab, width }).unwrap();
            down(x, &x.gather_rows(&t, width, &ids).unwrap())
        });
    }
}

pub fn elementwise<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(12));
    for rows in SIZES {
        for width in [7, 384, 1536] {
            let (p, q, bias) =
                (rng.vec_f32(rows * width, 1.0), rng.vec_f32(rows * width, 1.0), rng.vec_f32(width, 1.0));
            compare!(format!("add {rows}×{width}"), b, &o, |x| down(x, &x.add(&up(x, &p), &up(x, &q)).unwrap()));
            compare!(format!("sub {rows}×{width}"), b, &o, |x| down(x, &x.sub(&up(x, &p), &up(x, &q)).unwrap()));
            compare!(format!("add_bias {rows}×{width}"), b, &o, |x| {
                let bias = x.upload(&bias, Role::Vector { len: width }).unwrap();
                down(x, &x.add_bias(&up(x, &p), rows, &bias).unwrap())
            });
        }
    }
}

pub fn interpolate_and_tangents<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(13));
    for tokens in [1, 7, 63] {
        let width = 384;
        let (origin, delta) = (rng.vec_f32(tokens * width, 1.0), rng.vec_f32(tokens * width, 1.0));
        let alphas = [0.02, 0.5, 1.0];
        compare!(format!("interpolate {tokens} tokens"), b, &o, |x| {
            down(x, &x.interpolate(&up(x, &origin), &up(x, &delta), &alphas).unwrap())
        });
        for directions in [0..tokens, tokens / 2..tokens, 0..tokens.div_ceil(3)] {
            compare!(format!("token_tangents {tokens} tokens, directions {directions:?}"), b, &o, |x| {
                down(x, &x.token_tangents(&up(x, &delta), 2, tokens, width, directions.clone()).unwrap())
            });
        }
    }
}

pub fn linear_and_matmul<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(14));
    let shapes = [(7, 63), (65, 129), (129, 7), (384, 1152), (1536, 384), (768, 3072), (3072, 768)];
    for (in_dim, out_dim) in shapes {
        let layer = random_linear(&mut rng, in_dim, out_dim);
        let row_counts: &[usize] = if in_dim * out_dim > 1 << 20 { &[1, 65, 129] } else { &SIZES };
        for &rows in row_counts {
            let input = rng.vec_f32(rows * in_dim, 1.0);
            compare!(format!("linear {rows}×{in_dim}→{out_dim}"), b, &o, |x| {
                down(x, &x.linear(&up(x, &input), rows, &linear_on(x, &layer)).unwrap())
            });
            compare!(format!("matmul {rows}×{in_dim}→{out_dim}"), b, &o, |x| {
                down(x, &x.matmul(&up(x, &input), rows, &linear_on(x, &layer)).unwrap())
            });
        }
    }
}

/// Batches with one and several steps and tangents.
fn batches(tokens: usize) -> [Batch; 2] {
    [Batch { steps: 1, tangents: 1, tokens }, Batch { steps: 2, tangents: 3, tokens }]
}

pub fn layer_norm_and_jvp<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(15));
    for width in [7, 63, 65, 129, 384, 768] {
        for batch in batches(7) {
            // An offset mean tests that the variance is not formed as E[x²] − E[x]².
            let x: Vec<f32> = rng.vec_f32(batch.primal_rows() * width, 2.0).iter().map(|v| v + 3.0).collect();
            let dx = rng.vec_f32(batch.tangent_rows() * width, 1.0);
            let norm = random_norm(&mut rng, width);
            let rows = batch.primal_rows();
            compare!(format!("layer_norm width {width}, {batch:?}"), b, &o, |e| {
                down(e, &e.layer_norm(&up(e, &x), rows, width, &norm_on(e, &norm, width), 1e-12).unwrap().0)
            });
            compare!(format!("layer_norm_jvp width {width}, {batch:?}"), b, &o, |e| {
                let norm = norm_on(e, &norm, width);
                let (_, saved) = e.layer_norm(&up(e, &x), rows, width, &norm, 1e-12).unwrap();
                down(e, &e.layer_norm_jvp(&saved, &norm, &up(e, &dx), batch, width).unwrap())
            });
        }
    }
}

pub fn gelu_and_jvp<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(16));
    for width in [7, 65, 1536] {
        for batch in batches(7) {
            let x = rng.vec_f32(batch.primal_rows() * width, 4.0);
            let dx = rng.vec_f32(batch.tangent_rows() * width, 1.0);
            compare!(format!("gelu width {width}"), b, &o, |e| down(e, &e.gelu(&up(e, &x)).unwrap()));
            compare!(format!("gelu_jvp width {width}, {batch:?}"), b, &o, |e| {
                down(e, &e.gelu_jvp(&up(e, &x), &up(e, &dx), batch, width).unwrap())
            });
        }
    }
}

/// RMSNorm on the host path every backend has (`Backend::rms_norm`): no mean is taken, so
/// the offset mean is kept in `x` as a model's residual stream has it.
pub fn rms_norm_and_jvp<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(17));
    for width in [7, 65, 384] {
        for batch in batches(7) {
            let x: Vec<f32> = rng.vec_f32(batch.primal_rows() * width, 2.0).iter().map(|v| v + 1.0).collect();
            let dx = rng.vec_f32(batch.tangent_rows() * width, 1.0);
            let norm = random_norm(&mut rng, width);
            let rows = batch.primal_rows();
            compare!(format!("rms_norm width {width}, {batch:?}"), b, &o, |e| {
                down(e, &e.rms_norm(&up(e, &x), rows, width, &norm_on(e, &norm, width), 1e-6).unwrap().0)
            });
            compare!(format!("rms_norm_jvp width {width}, {batch:?}"), b, &o, |e| {
                let norm = norm_on(e, &norm, width);
                let (_, saved) = e.rms_norm(&up(e, &x), rows, width, &norm, 1e-6).unwrap();
                down(e, &e.rms_norm_jvp(&saved, &norm, &up(e, &dx), batch, width).unwrap())
            });
        }
    }
}

/// The gated activations (`[gate | up]` rows → `act(gate) ⊙ up`) and their JVPs.
pub fn gated_and_jvp<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(18));
    for act in [Activation::Gelu, Activation::GeluTanh, Activation::Silu] {
        for width in [7, 64] {
            for batch in batches(5) {
                let x = rng.vec_f32(batch.primal_rows() * 2 * width, 3.0);
                let dx = rng.vec_f32(batch.tangent_rows() * 2 * width, 1.0);
                let rows = batch.primal_rows();
                compare!(format!("gated {act:?} width {width}"), b, &o, |e| {
                    down(e, &e.gated(&up(e, &x), rows, width, act).unwrap())
                });
                compare!(format!("gated_jvp {act:?} width {width}, {batch:?}"), b, &o, |e| {
                    down(e, &e.gated_jvp(&up(e, &x), &up(e, &dx), batch, width, act).unwrap())
                });
            }
        }
    }
}

/// The elementwise activations of FFNs that are not gated (T5's ReLU; the others as they
/// gate), and their JVPs.
pub fn activation_and_jvp<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(21));
    for act in [Activation::Relu, Activation::Gelu, Activation::GeluTanh, Activation::Silu] {
        for width in [7, 64] {
            for batch in batches(5) {
                let x = rng.vec_f32(batch.primal_rows() * width, 3.0);
                let dx = rng.vec_f32(batch.tangent_rows() * width, 1.0);
                compare!(format!("activation {act:?} width {width}"), b, &o, |e| {
                    down(e, &e.activation(&up(e, &x), act).unwrap())
                });
                compare!(format!("activation_jvp {act:?} width {width}, {batch:?}"), b, &o, |e| {
                    down(e, &e.activation_jvp(&up(e, &x), &up(e, &dx), batch, width, act).unwrap())
                });
            }
        }
    }
}

/// The poolings that weigh tokens, each mode's weights: against the oracle, and against the
/// weighted sum written out here.
pub fn weighted_pool<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(22));
    for tokens in SIZES {
        let (seqs, width) = (3, 65);
        let x = rng.vec_f32(seqs * tokens * width, 1.0);
        for pooling in simattr::model::Pooling::ALL {
            let Some(weights) = pooling.token_weights(tokens, 0) else { continue };
            compare!(format!("weighted_pool {} {tokens} tokens", pooling.name()), b, &o, |e| {
                down(e, &e.weighted_pool(&up(e, &x), seqs, &weights, width).unwrap())
            });
            let got = down(b, &b.weighted_pool(&up(b, &x), seqs, &weights, width).unwrap());
            let by_hand: Vec<f64> = (0..seqs * width)
                .map(|n| {
                    let (s, c) = (n / width, n % width);
                    (0..tokens).map(|t| weights[t] * x[(s * tokens + t) * width + c] as f64).sum()
                })
                .collect();
            let err = max_abs_diff(&got, &by_hand) / max_abs(&by_hand).max(1e-30);
            assert!(err < 1e-5, "{} {tokens} tokens: {err:e} from the sum by hand", pooling.name());
        }
    }
}

/// The rotary embedding and QK-norm of the rotary families, against the oracle, and the
/// rotary frequencies against those `transformers` used for the tiny Qwen3, Gemma3 and
/// ModernBERT goldens.
pub fn rope_and_head_norm<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(23));
    for heads in [Heads { count: 3, dim: 8, scale: None }, Heads { count: 2, dim: 16, scale: None }] {
        for batch in batches(5) {
            let width = 3 * heads.width();
            let x = rng.vec_f32(batch.primal_rows() * width, 2.0);
            let dx = rng.vec_f32(batch.tangent_rows() * width, 1.0);
            for theta in [1e4, 1e6] {
                compare!(format!("rope θ {theta} {heads:?}"), b, &o, |e| {
                    down(e, &e.rope(&up(e, &x), batch.tokens, heads, theta).unwrap())
                });
                compare!(format!("rope on tangents θ {theta} {heads:?} {batch:?}"), b, &o, |e| {
                    down(e, &e.rope(&up(e, &dx), batch.tokens, heads, theta).unwrap())
                });
            }
            let (q, k) = (random_norm(&mut rng, heads.dim), random_norm(&mut rng, heads.dim));
            compare!(format!("head_rms_norm {heads:?}"), b, &o, |e| {
                let (q, k) = (norm_on(e, &q, heads.dim), norm_on(e, &k, heads.dim));
                down(e, &e.head_rms_norm(&up(e, &x), heads, &q, &k, 1e-6).unwrap().0)
            });
            compare!(format!("head_rms_norm_jvp {heads:?} {batch:?}"), b, &o, |e| {
                let (q, k) = (norm_on(e, &q, heads.dim), norm_on(e, &k, heads.dim));
                let (_, saved) = e.head_rms_norm(&up(e, &x), heads, &q, &k, 1e-6).unwrap();
                down(e, &e.head_rms_norm_jvp(&saved, &q, &k, &up(e, &dx), batch, heads).unwrap())
            });
        }
    }
}

/// What the rotation must be: each head's slice keeps its length, position 0 is left as it
/// is, turning back undoes it, and the frequencies are `transformers`' (the goldens record
/// them per layer); QK-norm's JVP is its central difference (f64 oracle).
#[test]
fn rope_and_head_norm_by_math() {
    use simattr::backend::host_ops::{rope, rope_frequencies};
    let (o, mut rng) = (oracle(), Rng::new(24));
    let (tokens, count, dim) = (6, 2, 8);
    let x: Vec<f64> = rng.vec(2 * tokens * 3 * count * dim);
    let turned = rope(&x, tokens, count, dim, 1e4, false).unwrap();
    let back = rope(&turned, tokens, count, dim, 1e4, true).unwrap();
    assert!(max_abs_diff(&back, &x) < 1e-12, "turning back does not undo the rotation");
    for (row, (a, b)) in x.chunks(3 * count * dim).zip(turned.chunks(3 * count * dim)).enumerate() {
        for (sa, sb) in a.chunks(dim).zip(b.chunks(dim)) {
            let norm = |s: &[f64]| s.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((norm(sa) - norm(sb)).abs() < 1e-12, "row {row}: a head's length changed");
        }
        if row % tokens == 0 {
            assert_eq!(a, b, "position 0 is not the identity");
        }
        assert_eq!(a[2 * count * dim..], b[2 * count * dim..], "the values were turned");
    }
    for fixture in ["tiny-qwen3", "tiny-gemma3", "tiny-modernbert"] {
        let golden = crate::common::golden(&format!("{fixture}.json"));
        for layer in golden["attention_layers"].as_array().expect("attention_layers") {
            let theta = layer["rope_theta"].as_f64().expect("rope_theta");
            let dim = layer["head_dim"].as_u64().expect("head_dim") as usize;
            let want = crate::common::f64s(&layer["inv_freq"]);
            let err = max_abs_diff(&rope_frequencies(dim, theta), &want);
            assert!(err < 1e-15, "{fixture} θ {theta}: frequencies differ by {err:e}");
        }
    }
    let heads = Heads { count, dim, scale: None };
    let batch = Batch { steps: 2, tangents: 1, tokens };
    let (q, k) = (random_norm(&mut rng, dim), random_norm(&mut rng, dim));
    let (q, k) = (norm_on(&o, &q, dim), norm_on(&o, &k, dim));
    let x = o.upload_f64(&x, None).unwrap();
    let v = o.upload_f64(&rng.vec(batch.tangent_rows() * 3 * count * dim), None).unwrap();
    let (_, saved) = o.head_rms_norm(&x, heads, &q, &k, 1e-6).unwrap();
    let jvp = down(&o, &o.head_rms_norm_jvp(&saved, &q, &k, &v, batch, heads).unwrap());
    let step = 1e-6;
    let at = |sign: f64| {
        let moved: Vec<f64> = down(&o, &x).iter().zip(down(&o, &v)).map(|(x, v)| x + sign * step * v).collect();
        down(&o, &o.head_rms_norm(&o.upload_f64(&moved, None).unwrap(), heads, &q, &k, 1e-6).unwrap().0)
    };
    let central: Vec<f64> = at(1.0).iter().zip(at(-1.0)).map(|(p, m)| (p - m) / (2.0 * step)).collect();
    let err = max_abs_diff(&jvp, &central) / max_abs(&central);
    assert!(err < 1e-7, "head_rms_norm_jvp against central differences: {err:e}");
}

/// A shape that breaks an op's contract (`backend/shapes.rs`) is an internal error naming the
/// operand, on every backend: never a panic, never a read outside a tensor.
pub fn bad_shapes_are_errors_not_panics<B: Backend>(b: &B) {
    let mut rng = Rng::new(19);
    let (six, five) = (up(b, &rng.vec_f32(6, 1.0)), up(b, &rng.vec_f32(5, 1.0)));
    let error = |what: &str, result: Result<B::Tensor, simattr::error::Error>, says: &str| {
        let message = result.err().unwrap_or_else(|| panic!("{what}: a bad shape was accepted")).to_string();
        assert!(message.contains(says), "{what}: {message}");
    };
    error("add", b.add(&six, &five), "add operand has length 5, expected 6");
    let layer = linear_on(b, &random_linear(&mut rng, 4, 3));
    error("linear", b.linear(&six, 2, &layer), "linear input has length 6, expected 8");
    error("matmul_vjp", b.matmul_vjp(&five, 2, &layer), "matmul_vjp cotangents has length 5, expected 6");
    let norm = norm_on(b, &random_norm(&mut rng, 3), 3);
    error("layer_norm", b.layer_norm(&five, 2, 3, &norm, 1e-12).map(|(y, _)| y), "layer_norm input has length 5");
    error("rms_norm", b.rms_norm(&five, 2, 3, &norm, 1e-6).map(|(y, _)| y), "rms_norm input has length 5");
    let (_, saved) = b.layer_norm(&six, 2, 3, &norm, 1e-12).unwrap();
    let batch = Batch { steps: 2, tangents: 2, tokens: 1 };
    error("layer_norm_jvp", b.layer_norm_jvp(&saved, &norm, &six, batch, 3), "(co)tangents has length 6, expected 12");
    let heads = Heads { count: 1, dim: 2, scale: None };
    error("attention", b.attention(&five, 1, 1, heads, ScoreMods::none()).map(|(c, _)| c), "qkv has length 5");
    error("token_tangents", b.token_tangents(&six, 1, 3, 2, 1..4), "tangent directions 1..4 reach past 3");
    error("gather_rows", b.gather_rows(&six, 2, &[0, 3]), "id 3 is outside the 3 rows");
    error("gated", b.gated(&five, 1, 3, Activation::Silu), "gated input has length 5, expected 6");
    let mut projection = b.zeros(4).unwrap();
    let pooled = b.pool_accumulate(&mut projection, &six, Batch { steps: 1, tangents: 3, tokens: 1 }, 2, &[1.0], 1);
    let message = pooled.expect_err("pool_accumulate past the projection's rows").to_string();
    assert!(message.contains("projection rows 1..4 reach past 2"), "pool_accumulate: {message}");
}

/// Score modifications as host data: a bias `[heads, T, T]` and a key mask `[seqs, T]` that
/// keeps at least the first key of every sequence.
struct HostMods {
    bias: Option<Vec<f32>>,
    key_mask: Option<Vec<f32>>,
}

impl HostMods {
    fn all(rng: &mut Rng, seqs: usize, tokens: usize, heads: Heads) -> Vec<(&'static str, HostMods)> {
        let bias = rng.vec_f32(heads.count * tokens * tokens, 2.0);
        let mask: Vec<f32> =
            (0..seqs * tokens).map(|n| if n % tokens == 0 || rng.next() > -0.3 { 1.0 } else { 0.0 }).collect();
        vec![
            ("plain", HostMods { bias: None, key_mask: None }),
            ("bias", HostMods { bias: Some(bias.clone()), key_mask: None }),
            ("mask", HostMods { bias: None, key_mask: Some(mask.clone()) }),
            ("bias+mask", HostMods { bias: Some(bias), key_mask: Some(mask) }),
        ]
    }

    fn upload<B: Backend>(
        &self,
        b: &B,
        seqs: usize,
        tokens: usize,
        heads: Heads,
    ) -> (Option<B::Tensor>, Option<B::Tensor>) {
        let bias = self.bias.as_ref().map(|v| b.upload(v, Role::ScoreBias { heads: heads.count, tokens }).unwrap());
        let mask = self.key_mask.as_ref().map(|v| b.upload(v, Role::KeyMask { seqs, tokens }).unwrap());
        (bias, mask)
    }
}

fn attention_cases() -> Vec<(usize, Heads)> {
    let mut cases: Vec<(usize, Heads)> =
        SIZES.iter().map(|&t| (t, Heads { count: 12, dim: 32, scale: None })).collect();
    cases.push((7, Heads { count: 2, dim: 3, scale: None }));
    // T5 does not scale its scores.
    cases.push((9, Heads { count: 2, dim: 4, scale: Some(1.0) }));
    cases
}

/// The small ops `attention`, `attention_jvp` and the block op `attention_with_jvp`.
pub fn attention_and_jvp<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(17));
    for (tokens, heads) in attention_cases() {
        let batch = Batch { steps: 2, tangents: 3, tokens };
        let qkv = rng.vec_f32(batch.primal_rows() * 3 * heads.width(), 1.5);
        let dqkv = rng.vec_f32(batch.tangent_rows() * 3 * heads.width(), 1.0);
        for (name, mods) in HostMods::all(&mut rng, batch.steps, tokens, heads) {
            let label = format!("{tokens} tokens, {heads:?}, {name}");
            compare!(format!("attention {label}"), b, &o, |e| {
                let (bias, key_mask) = mods.upload(e, batch.steps, tokens, heads);
                let scores = ScoreMods { bias: bias.as_ref(), key_mask: key_mask.as_ref() };
                down(e, &e.attention(&up(e, &qkv), batch.steps, tokens, heads, scores).unwrap().0)
            });
            compare!(format!("attention probabilities {label}"), b, &o, |e| {
                let (bias, key_mask) = mods.upload(e, batch.steps, tokens, heads);
                let scores = ScoreMods { bias: bias.as_ref(), key_mask: key_mask.as_ref() };
                down(e, &e.attention(&up(e, &qkv), batch.steps, tokens, heads, scores).unwrap().1.probs)
            });
            compare!(format!("attention_jvp {label}"), b, &o, |e| {
                let (bias, key_mask) = mods.upload(e, batch.steps, tokens, heads);
                let scores = ScoreMods { bias: bias.as_ref(), key_mask: key_mask.as_ref() };
                let qkv = up(e, &qkv);
                let (_, saved) = e.attention(&qkv, batch.steps, tokens, heads, scores).unwrap();
                down(e, &e.attention_jvp(&qkv, &saved, &up(e, &dqkv), batch, heads).unwrap())
            });
            for part in [0, 1] {
                compare!(format!("attention_with_jvp output {part}, {label}"), b, &o, |e| {
                    let (bias, key_mask) = mods.upload(e, batch.steps, tokens, heads);
                    let scores = ScoreMods { bias: bias.as_ref(), key_mask: key_mask.as_ref() };
                    let (ctx, dctx) = e.attention_with_jvp(&up(e, &qkv), &up(e, &dqkv), batch, heads, scores).unwrap();
                    down(e, if part == 0 { &ctx } else { &dctx })
                });
            }
        }
    }
}

/// Masked keys must act as if they were not there: attention over a padded sequence, read at
/// its real rows, equals the oracle's attention over the unpadded sequence (forward and JVP).
pub fn attention_key_mask_drops_padding<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(18));
    let heads = Heads { count: 12, dim: 32, scale: None };
    let (real, padded) = (5, 9);
    let w3 = 3 * heads.width();
    let batch = Batch { steps: 1, tangents: 2, tokens: padded };
    let qkv = rng.vec_f32(padded * w3, 1.5);
    let dqkv = rng.vec_f32(2 * padded * w3, 1.0);
    let bias = rng.vec_f32(heads.count * padded * padded, 1.0);
    let mask: Vec<f32> = (0..padded).map(|j| if j < real { 1.0 } else { 0.0 }).collect();
    // The unpadded inputs: the first `real` rows of every sequence, the bias's top-left block.
    let first_rows = |x: &[f32], seqs: usize, width: usize| -> Vec<f32> {
        (0..seqs).flat_map(|s| x[s * padded * width..][..real * width].to_vec()).collect()
    };
    let bias_block: Vec<f32> = (0..heads.count)
        .flat_map(|h| (0..real).flat_map(|i| bias[(h * padded + i) * padded..][..real].to_vec()).collect::<Vec<_>>())
        .collect();

    let (bias_t, mask_t) = (
        b.upload(&bias, Role::ScoreBias { heads: heads.count, tokens: padded }).unwrap(),
        b.upload(&mask, Role::KeyMask { seqs: 1, tokens: padded }).unwrap(),
    );
    let scores = ScoreMods { bias: Some(&bias_t), key_mask: Some(&mask_t) };
    let (ctx, dctx) = b.attention_with_jvp(&up(b, &qkv), &up(b, &dqkv), batch, heads, scores).unwrap();
    let w = heads.width();
    let ctx: Vec<f64> = down(b, &ctx)[..real * w].to_vec();
    let dctx_all = down(b, &dctx);
    let dctx: Vec<f64> = (0..2).flat_map(|s| dctx_all[s * padded * w..][..real * w].to_vec()).collect();

    let small = Batch { steps: 1, tangents: 2, tokens: real };
    let bias_small = o.upload(&bias_block, Role::ScoreBias { heads: heads.count, tokens: real }).unwrap();
    let scores = ScoreMods { bias: Some(&bias_small), key_mask: None };
    let (want_ctx, want_dctx) = o
        .attention_with_jvp(&up(&o, &first_rows(&qkv, 1, w3)), &up(&o, &first_rows(&dqkv, 2, w3)), small, heads, scores)
        .unwrap();
    check("masked attention vs unpadded", &ctx, &want_ctx);
    check("masked attention JVP vs unpadded", &dctx, &want_dctx);
}

pub fn pooling<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(19));
    for tokens in SIZES {
        let width = 384;
        let x = rng.vec_f32(3 * tokens * width, 1.0);
        compare!(format!("mean_pool {tokens} tokens"), b, &o, |e| down(
            e,
            &e.mean_pool(&up(e, &x), 3, tokens, width).unwrap()
        ));
    }
    for tokens in SIZES {
        let width = 65;
        let x = rng.vec_f32(3 * tokens * width, 1.0);
        compare!(format!("max_pool {tokens} tokens"), b, &o, |e| down(
            e,
            &e.max_pool(&up(e, &x), 3, tokens, width).unwrap()
        ));
        let batch = Batch { steps: 3, tangents: 2, tokens };
        let dx = rng.vec_f32(batch.tangent_rows() * width, 1.0);
        compare!(format!("max_pool_jvp {tokens} tokens"), b, &o, |e| down(
            e,
            &e.max_pool_jvp(&up(e, &x), &up(e, &dx), batch, width).unwrap()
        ));
    }
    max_pool_follows_the_arg_max(b);
    for (tokens, tangents, first) in [(7, 4, 2), (1, 1, 0), (65, 65, 0), (65, 7, 58)] {
        let (width, steps) = (384, 3);
        let batch = Batch { steps, tangents, tokens };
        let start = rng.vec_f32(tokens * width, 1.0);
        let d_states = rng.vec_f32(batch.tangent_rows() * width, 1.0);
        let weights: Vec<f64> = (0..steps).map(|k| 0.1 + 0.3 * k as f64).collect();
        compare!(format!("pool_accumulate {tokens} tokens, {tangents} directions from {first}"), b, &o, |e| {
            let mut projection = up(e, &start);
            e.pool_accumulate(&mut projection, &up(e, &d_states), batch, width, &weights, first).unwrap();
            down(e, &projection)
        });
    }
}

/// Max pooling and its JVP on inputs whose arg-max is planted: feature `c` of step `k` peaks
/// at token `(3c + k) % T` (twice for `c = 0`, where the first of the tie must win), so the
/// pooled value and the tangent it reads are known without running any backend.
fn max_pool_follows_the_arg_max<B: Backend>(b: &B) {
    let (steps, tangents, tokens, width) = (2, 3, 5, 4);
    let peak = |k: usize, c: usize| (3 * c + k) % tokens;
    let mut x = vec![0.0f32; steps * tokens * width];
    for k in 0..steps {
        for t in 0..tokens {
            for c in 0..width {
                x[(k * tokens + t) * width + c] = if t == peak(k, c) { 2.0 + c as f32 } else { -(t as f32) / 8.0 };
            }
        }
        // A tie at feature 0: the later token equals the peak.
        x[(k * tokens + tokens - 1) * width] = x[(k * tokens + peak(k, 0)) * width];
    }
    let dx: Vec<f32> = (0..steps * tangents * tokens * width).map(|n| n as f32).collect();
    let batch = Batch { steps, tangents, tokens };
    let pooled = down(b, &b.max_pool(&up(b, &x), steps, tokens, width).unwrap());
    let d_pooled = down(b, &b.max_pool_jvp(&up(b, &x), &up(b, &dx), batch, width).unwrap());
    for k in 0..steps {
        for c in 0..width {
            assert_eq!(pooled[k * width + c], 2.0 + c as f64, "max_pool step {k} feature {c}");
            for m in 0..tangents {
                let seq = k * tangents + m;
                let want = dx[(seq * tokens + peak(k, c)) * width + c] as f64;
                assert_eq!(d_pooled[seq * width + c], want, "max_pool_jvp step {k} tangent {m} feature {c}");
            }
        }
    }
}

pub fn bias_residual_norm<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(20));
    for width in [7, 65, 384, 768] {
        for batch in batches(9) {
            let rows = batch.primal_rows();
            let (z, residual) = (rng.vec_f32(rows * width, 2.0), rng.vec_f32(rows * width, 2.0));
            let (dz, d_residual) =
                (rng.vec_f32(batch.tangent_rows() * width, 1.0), rng.vec_f32(batch.tangent_rows() * width, 1.0));
            let (bias, norm) = (rng.vec_f32(width, 1.0), random_norm(&mut rng, width));
            compare!(format!("bias_residual_norm width {width}, {batch:?}"), b, &o, |e| {
                let (norm, bias) = (norm_on(e, &norm, width), e.upload(&bias, Role::Vector { len: width }).unwrap());
                let ln = ResidualNorm { norm: &norm, width, eps: 1e-12 };
                down(e, &e.bias_residual_norm(&up(e, &z), &bias, &up(e, &residual), rows, ln).unwrap())
            });
            for part in [0, 1] {
                compare!(format!("bias_residual_norm_jvp output {part}, width {width}, {batch:?}"), b, &o, |e| {
                    let (norm, bias) =
                        (norm_on(e, &norm, width), e.upload(&bias, Role::Vector { len: width }).unwrap());
                    let ln = ResidualNorm { norm: &norm, width, eps: 1e-12 };
                    let (y, dy) = e
                        .bias_residual_norm_jvp(
                            &up(e, &z),
                            &bias,
                            &up(e, &residual),
                            &up(e, &dz),
                            &up(e, &d_residual),
                            batch,
                            ln,
                        )
                        .unwrap();
                    down(e, if part == 0 { &y } else { &dy })
                });
            }
        }
    }
}

pub fn bias_gelu<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(21));
    for width in [7, 65, 1536] {
        for batch in batches(7) {
            let rows = batch.primal_rows();
            let (z, bias, dz) = (
                rng.vec_f32(rows * width, 3.0),
                rng.vec_f32(width, 1.0),
                rng.vec_f32(batch.tangent_rows() * width, 1.0),
            );
            compare!(format!("bias_gelu width {width}"), b, &o, |e| {
                let bias = e.upload(&bias, Role::Vector { len: width }).unwrap();
                down(e, &e.bias_gelu(&up(e, &z), rows, &bias).unwrap())
            });
            for part in [0, 1] {
                compare!(format!("bias_gelu_jvp output {part}, width {width}, {batch:?}"), b, &o, |e| {
                    let bias = e.upload(&bias, Role::Vector { len: width }).unwrap();
                    let (y, dy) = e.bias_gelu_jvp(&up(e, &z), &bias, &up(e, &dz), batch, width).unwrap();
                    down(e, if part == 0 { &y } else { &dy })
                });
            }
        }
    }
}

/// A whole MiniLM-shaped layer (random weights), forward and JVP, against the oracle.
pub fn layer_jvp_real_widths<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(23));
    let shape = LayerShape { hidden: 384, ffn: 1536, heads: Heads { count: 12, dim: 32, scale: None }, eps: 1e-12 };
    let h = shape.hidden;
    let params = LayerParams {
        qkv: random_linear(&mut rng, h, 3 * h),
        attention_out: random_linear(&mut rng, h, h),
        attention_norm: random_norm(&mut rng, h),
        ffn_in: random_linear(&mut rng, h, shape.ffn),
        ffn_out: random_linear(&mut rng, shape.ffn, h),
        ffn_norm: random_norm(&mut rng, h),
        head_norms: None,
        post_attention_norm: None,
        post_ffn_norm: None,
    };
    let batch = Batch { steps: 2, tangents: 3, tokens: 11 };
    let x = rng.vec_f32(batch.primal_rows() * h, 1.0);
    let dx = rng.vec_f32(batch.tangent_rows() * h, 1.0);
    compare!("layer_forward, MiniLM widths", b, &o, |e| {
        let p = params.try_map(&mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
        down(e, &layer_forward(e, &p, shape, &up(e, &x), batch.steps, batch.tokens, ScoreMods::none()).unwrap())
    });
    for part in [0, 1] {
        compare!(format!("layer_jvp output {part}, MiniLM widths"), b, &o, |e| {
            let p = params.try_map(&mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
            let dx = up(e, &dx);
            let (y, dy) =
                layer_jvp(e, &p, shape, &up(e, &x), TangentsIn::Dense(&dx), batch, ScoreMods::none()).unwrap();
            down(e, if part == 0 { &y } else { &dy })
        });
    }
    // The structured paths: token directions into the first layer, pooled tangents out of the
    // last, each against the oracle's plain path.
    let delta = rng.vec_f32(batch.tokens * h, 1.0);
    let directions = 4..4 + batch.tangents;
    compare!("layer_jvp with token directions, MiniLM widths", b, &o, |e| {
        let p = params.try_map(&mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
        let (x, delta) = (up(e, &x), up(e, &delta));
        let tangents = TangentsIn::TokenDirections { delta: &delta, directions: directions.clone() };
        down(e, &layer_jvp(e, &p, shape, &x, tangents, batch, ScoreMods::none()).unwrap().1)
    });
    for token_directions in [false, true] {
        compare!(format!("last_layer_pooled_jvp (token directions: {token_directions}), MiniLM widths"), b, &o, |e| {
            let p = params.try_map(&mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
            let (x, dx, delta) = (up(e, &x), up(e, &dx), up(e, &delta));
            let tangents = match token_directions {
                true => TangentsIn::TokenDirections { delta: &delta, directions: directions.clone() },
                false => TangentsIn::Dense(&dx),
            };
            down(e, &last_layer_pooled_jvp(e, &p, shape, &x, tangents, batch, ScoreMods::none()).unwrap())
        });
    }
}

/// The first layer's structured attention JVP (token directions) against the oracle's plain
/// path: the same tangents made dense, through the dense JVP.
pub fn attention_token_jvp<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(24));
    for (tokens, heads) in attention_cases() {
        let steps = 2;
        let qkv = rng.vec_f32(steps * tokens * 3 * heads.width(), 1.5);
        let d_rows = rng.vec_f32(tokens * 3 * heads.width(), 1.0);
        // All directions, and the first, a middle and the last token alone (dense tangents of
        // long sequences make the oracle slow).
        let all = (tokens <= 7).then_some(0..tokens);
        for directions in all.into_iter().chain([0..1, tokens / 2..tokens / 2 + 1, tokens - 1..tokens]) {
            let batch = Batch { steps, tangents: directions.len(), tokens };
            for (name, mods) in HostMods::all(&mut rng, steps, tokens, heads) {
                for part in [0, 1] {
                    let label = format!("{tokens} tokens, directions {directions:?}, {heads:?}, {name}, output {part}");
                    compare!(format!("attention_with_token_jvp {label}"), b, &o, |e| {
                        let (bias, key_mask) = mods.upload(e, steps, tokens, heads);
                        let scores = ScoreMods { bias: bias.as_ref(), key_mask: key_mask.as_ref() };
                        let (qkv, d_rows) = (up(e, &qkv), up(e, &d_rows));
                        let (ctx, dctx) = e
                            .attention_with_token_jvp(&qkv, &d_rows, directions.clone(), batch, heads, scores)
                            .unwrap();
                        down(e, if part == 0 { &ctx } else { &dctx })
                    });
                }
            }
        }
    }
}

/// The last layer's pooled output block (rows reduced before the GEMM on a fast backend)
/// against the oracle's plain path: both GEMMs, the norm's JVP, mean pooling.
pub fn pooled_output_norm<B: Backend>(b: &B) {
    let (o, mut rng) = (oracle(), Rng::new(25));
    for (width, inner) in [(7, 65), (65, 7), (384, 1536), (768, 3072)] {
        for tokens in [1, 7, 32] {
            let batch = Batch { steps: 2, tangents: 3, tokens };
            let layer = random_linear(&mut rng, inner, width);
            let norm = random_norm(&mut rng, width);
            let x = rng.vec_f32(batch.primal_rows() * inner, 1.0);
            let residual = rng.vec_f32(batch.primal_rows() * width, 2.0);
            let dx = rng.vec_f32(batch.tangent_rows() * inner, 1.0);
            let d_residual = rng.vec_f32(batch.tangent_rows() * width, 1.0);
            compare!(format!("pooled_linear_residual_norm_jvp {width}×{inner}, {batch:?}"), b, &o, |e| {
                let (layer, norm) = (linear_on(e, &layer), norm_on(e, &norm, width));
                let ln = ResidualNorm { norm: &norm, width, eps: 1e-12 };
                let (x, dx, residual, d_residual) = (up(e, &x), up(e, &dx), up(e, &residual), up(e, &d_residual));
                down(e, &e.pooled_linear_residual_norm_jvp(&x, &dx, &residual, &d_residual, &layer, batch, ln).unwrap())
            });
        }
    }
}

/// The backend honours `--max-memory`: the budget it reports is the one it was given, and
/// rows are counted in its own storage precision.
pub fn memory_budget_sizes_rows<B: Backend>(make: fn(BackendSettings) -> B) {
    let settings = BackendSettings { threads: 1, max_memory: 3 << 20, primal: None };
    let b = make(settings);
    assert_eq!(b.memory_budget(), 3 << 20);
    let per_row = 4 * 384 + 2 * 1536;
    assert_eq!(b.rows_that_fit(per_row), (3 << 20) / (per_row * b.precision().bytes()));
    // Uploads are checked against their role's shape.
    assert!(b.upload(&[0.0; 5], Role::Vector { len: 6 }).is_err(), "an upload of the wrong length was accepted");
}
