//! Tier 1, weight gradients (`WeightGradients`, the ops training adds to `Backend`): every op
//! against `CpuReference<f64>`, and on the backend under test an identity that ties the op to
//! the backend's own forward ops: `⟨W̄, U⟩ + ⟨b̄, c⟩ = ⟨ȳ, x Uᵀ + c⟩` for the dense layer,
//! `⟨γ̄, g⟩ + ⟨β̄, c⟩ = ⟨ȳ, x̂ ⊙ g + c⟩` for LayerNorm. Attention with dropout has no JVP to be
//! the adjoint of: without a mask its VJP must equal `attention_vjp`'s, and with or without one
//! `⟨q̄k̄v̄, u⟩` and `⟨Σ S̄, δ⟩` must equal the directional derivatives of `⟨context, Ō⟩` along
//! `u` and along a score-bias direction `δ`, by central differences on the f64 oracle.
//!
//! The primal operands (`x`, `qkv`) arrive as the network's states do, gathered from a table:
//! f64 on a backend that keeps its primal in f64, so the ops' f64-operand paths run too.

use simattr::backend::reference::CpuReference;
use simattr::backend::{AttentionSaved, Backend, Batch, Heads, Role, ScoreMods, WeightGradients};
use simattr::params::{Linear, Norm};

use crate::common::{max_abs, max_abs_diff, Rng};
use crate::F32_OP_TOLERANCE;

fn up<B: Backend>(b: &B, data: &[f32]) -> B::Tensor {
    b.upload(data, Role::Activations { len: data.len() }).expect("upload")
}

fn down<B: Backend>(b: &B, x: &B::Tensor) -> Vec<f64> {
    b.download(x).expect("download")
}

/// `data` (`[rows, width]`) as a primal state: rows gathered from an uploaded table.
fn primal<B: Backend>(b: &B, data: &[f32], width: usize) -> B::Tensor {
    let rows = data.len() / width;
    let table = b.upload(data, Role::Table { rows, width }).expect("upload");
    let ids: Vec<u32> = (0..rows as u32).collect();
    b.gather_rows(&table, width, &ids).expect("gather_rows")
}

fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// `(⟨a, b⟩, Σ |a_i b_i|)`: the product and the size its rounding is relative to.
fn inner(a: &[f64], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "inner product of different lengths");
    a.iter().zip(b).fold((0.0, 0.0), |(s, m), (x, y)| (s + x * y, m + (x * y).abs()))
}

fn plus((a, size_a): (f64, f64), (b, size_b): (f64, f64)) -> (f64, f64) {
    (a + b, size_a + size_b)
}

/// `got` equals the oracle's `want` (relative max-norm); `want` must not be all zero.
fn close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = max_abs(want);
    assert!(scale > 0.0, "{what}: the expected values are all zero, so the check would be empty");
    let err = max_abs_diff(got, want) / scale;
    assert!(err <= F32_OP_TOLERANCE, "{what}: differs from the oracle's by {err:.2e} of its max");
}

/// `left = right`, each `(value, Σ |terms|)`, within `tolerance` of the larger size (for the
/// backend under test, f32 rounding of the terms as vjp.rs's `check` measures it).
fn identity(what: &str, (left, size_l): (f64, f64), (right, size_r): (f64, f64), tolerance: f64) {
    let size = size_l.max(size_r);
    assert!(size > 0.0, "{what}: every term is zero, so the identity would be empty");
    let gap = (left - right).abs() / size;
    assert!(gap <= tolerance, "{what}: {left:e} but {right:e} ({gap:.1e} of the terms' size)");
}

fn random_norm(rng: &mut Rng, width: usize) -> Norm<Vec<f32>> {
    Norm { gamma: rng.vec_f32(width, 0.3).iter().map(|g| 1.0 + g).collect(), beta: rng.vec_f32(width, 0.2) }
}

/// A dropout mask: each entry kept (`1/(1 − p)`) with probability `1 − p`, else 0. Entry 0 is
/// always kept, so that no mask is all zero (and no check on a masked output empty).
fn dropout_mask(rng: &mut Rng, len: usize, p: f64) -> Vec<f32> {
    let kept = (1.0 / (1.0 - p)) as f32;
    (0..len).map(|i| if i == 0 || (rng.next() + 1.0) / 2.0 >= p { kept } else { 0.0 }).collect()
}

pub fn linear_weight_grad<B: WeightGradients>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(41));
    for (rows, in_dim, out_dim) in [
        (1, 1, 1),
        (1, 65, 7),
        (7, 63, 65),
        (7, 1, 63),
        (65, 65, 1),
        (65, 7, 63),
        (129, 63, 65),
        (129, 65, 7),
        (12, 384, 1536),
        (5, 1536, 384),
    ] {
        let (x, dy) = (rng.vec_f32(rows * in_dim, 1.0), rng.vec_f32(rows * out_dim, 1.0));
        fn grads<E: WeightGradients>(e: &E, x: &[f32], dy: &[f32], rows: usize, in_dim: usize) -> [Vec<f64>; 2] {
            let out_dim = dy.len() / rows;
            let (dw, db) = e.linear_weight_grad(&primal(e, x, in_dim), &up(e, dy), rows, in_dim, out_dim).unwrap();
            [down(e, &dw), down(e, &db)]
        }
        let [dw, db] = grads(b, &x, &dy, rows, in_dim);
        let [want_dw, want_db] = grads(&o, &x, &dy, rows, in_dim);
        let what = format!("linear_weight_grad {rows}×{in_dim}→{out_dim}");
        close(&format!("{what}, W̄"), &dw, &want_dw);
        close(&format!("{what}, b̄"), &db, &want_db);

        // ⟨W̄, U⟩ + ⟨b̄, c⟩ = ⟨ȳ, x Uᵀ + c⟩, the right side by the backend's own `linear`.
        let host =
            Linear { weight: rng.vec_f32(out_dim * in_dim, 1.0), bias: rng.vec_f32(out_dim, 1.0), in_dim, out_dim };
        let layer = host.try_map(&mut |t: &Vec<f32>, role| b.upload(t, role)).unwrap();
        let y = down(b, &b.linear(&primal(b, &x, in_dim), rows, &layer).unwrap());
        let left = plus(inner(&dw, &widen(&host.weight)), inner(&db, &widen(&host.bias)));
        identity(&format!("{what}: ⟨W̄, U⟩ + ⟨b̄, c⟩ = ⟨ȳ, x Uᵀ + c⟩"), left, inner(&widen(&dy), &y), F32_OP_TOLERANCE);
    }
}

pub fn layer_norm_weight_grad<B: WeightGradients>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(42));
    for (rows, width) in [(1, 7), (7, 65), (65, 7), (65, 384), (129, 63), (129, 768), (7, 1536)] {
        let x: Vec<f32> = rng.vec_f32(rows * width, 2.0).iter().map(|v| v + 3.0).collect();
        let dy = rng.vec_f32(rows * width, 1.0);
        let host = random_norm(&mut rng, width);
        // [y = g ⊙ x̂ + c, γ̄, β̄] on one backend, γ̄ and β̄ from the forward's saved values.
        fn run<E: WeightGradients>(e: &E, x: &[f32], dy: &[f32], host: &Norm<Vec<f32>>) -> [Vec<f64>; 3] {
            let width = host.gamma.len();
            let rows = x.len() / width;
            let norm = host.try_map(width, &mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
            let (y, saved) = e.layer_norm(&primal(e, x, width), rows, width, &norm, 1e-12).unwrap();
            let (d_gamma, d_beta) = e.layer_norm_weight_grad(&saved, &up(e, dy), rows, width).unwrap();
            [down(e, &y), down(e, &d_gamma), down(e, &d_beta)]
        }
        let [y, d_gamma, d_beta] = run(b, &x, &dy, &host);
        let [_, want_gamma, want_beta] = run(&o, &x, &dy, &host);
        let what = format!("layer_norm_weight_grad {rows}×{width}");
        close(&format!("{what}, γ̄"), &d_gamma, &want_gamma);
        close(&format!("{what}, β̄"), &d_beta, &want_beta);
        let left = plus(inner(&d_gamma, &widen(&host.gamma)), inner(&d_beta, &widen(&host.beta)));
        identity(&format!("{what}: ⟨γ̄, g⟩ + ⟨β̄, c⟩ = ⟨ȳ, x̂ ⊙ g + c⟩"), left, inner(&widen(&dy), &y), F32_OP_TOLERANCE);
    }
}

/// QK-norm's scales: `γ̄_q`, `γ̄_k` against the oracle, and `⟨γ̄_q, g_q⟩ + ⟨γ̄_k, g_k⟩ =
/// ⟨ȳ, y⟩` over the queries' and keys' parts of the output (`y = g ⊙ x̂` there; the values
/// pass through and take no scale).
pub fn head_norm_weight_grad<B: WeightGradients>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(44));
    for (rows, count, dim) in [(1, 1, 2), (7, 2, 8), (13, 4, 16), (65, 3, 64)] {
        let (heads, width) = (Heads { count, dim, scale: None }, count * dim);
        let x = rng.vec_f32(rows * 3 * width, 2.0);
        let dy = rng.vec_f32(rows * 3 * width, 1.0);
        let (query, key) = (random_norm(&mut rng, dim), random_norm(&mut rng, dim));
        // RMSNorm scales: no shift.
        let (query, key) = (Norm { beta: vec![0.0; dim], ..query }, Norm { beta: vec![0.0; dim], ..key });
        fn run<E: WeightGradients>(
            e: &E,
            x: &[f32],
            dy: &[f32],
            heads: Heads,
            norms: [&Norm<Vec<f32>>; 2],
        ) -> [Vec<f64>; 3] {
            let up_norm =
                |n: &Norm<Vec<f32>>| n.try_map(heads.dim, &mut |t: &Vec<f32>, role| e.upload(t, role)).unwrap();
            let (q, k) = (up_norm(norms[0]), up_norm(norms[1]));
            let (y, saved) = e.head_rms_norm(&primal(e, x, 3 * heads.count * heads.dim), heads, &q, &k, 1e-6).unwrap();
            let (d_query, d_key) = e.head_norm_weight_grad(&saved, &up(e, dy), heads).unwrap();
            [down(e, &y), down(e, &d_query), down(e, &d_key)]
        }
        let [y, d_query, d_key] = run(b, &x, &dy, heads, [&query, &key]);
        let [_, want_query, want_key] = run(&o, &x, &dy, heads, [&query, &key]);
        let what = format!("head_norm_weight_grad {rows} rows × {count} heads × {dim}");
        close(&format!("{what}, γ̄ of the queries"), &d_query, &want_query);
        close(&format!("{what}, γ̄ of the keys"), &d_key, &want_key);
        // ȳ with the values' part zeroed, against y.
        let dy_qk: Vec<f64> = widen(&dy)
            .chunks(3 * width)
            .flat_map(|row| {
                row.iter().enumerate().map(|(c, &v)| if c < 2 * width { v } else { 0.0 }).collect::<Vec<_>>()
            })
            .collect();
        let left = plus(inner(&d_query, &widen(&query.gamma)), inner(&d_key, &widen(&key.gamma)));
        identity(&format!("{what}: ⟨γ̄, g⟩ = ⟨ȳ, g ⊙ x̂⟩"), left, inner(&dy_qk, &y), F32_OP_TOLERANCE);
    }
}

pub fn mul<B: WeightGradients>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(43));
    for len in [1, 7, 65, 4099] {
        let (a, factors) = (rng.vec_f32(len, 2.0), rng.vec_f32(len, 2.0));
        let keep = dropout_mask(&mut rng, len, 0.5);
        for (name, other) in [("random factors", &factors), ("dropout mask p = 0.5", &keep)] {
            fn run<E: WeightGradients>(e: &E, a: &[f32], other: &[f32]) -> Vec<f64> {
                down(e, &e.mul(&primal(e, a, a.len()), &up(e, other)).unwrap())
            }
            close(&format!("mul {len}, {name}"), &run(b, &a, other), &run(&o, &a, other));
        }
        // Dropout of cotangents computed in f64 (`upload_f64`: rounded to f32 where the backend
        // stores f32, which the tolerance covers).
        let cotangents = rng.vec(len);
        fn dropped<E: WeightGradients>(e: &E, cotangents: &[f64], keep: &[f32]) -> Vec<f64> {
            down(e, &e.mul(&e.upload_f64(cotangents, None).unwrap(), &up(e, keep)).unwrap())
        }
        close(
            &format!("mul {len}, upload_f64 ⊙ dropout mask"),
            &dropped(b, &cotangents, &keep),
            &dropped(&o, &cotangents, &keep),
        );
    }
}

// ---- attention with dropout ---------------------------------------------------------------------

/// The shapes of vjp.rs's `attention_vjp`.
const ATTENTION_SHAPES: [(usize, Heads); 5] = [
    (1, Heads { count: 2, dim: 3, scale: None }),
    (7, Heads { count: 2, dim: 3, scale: None }),
    (13, Heads { count: 12, dim: 32, scale: None }),
    (40, Heads { count: 3, dim: 8, scale: None }),
    (9, Heads { count: 2, dim: 4, scale: Some(1.0) }),
];

/// The step of the central differences: a power of two, so that an input on `grid` shifted by
/// `±EPSILON ×` a direction on `grid` is exact in f32 (`shifted` asserts it).
const EPSILON: f64 = 1.0 / 8192.0;

/// The f64 oracle's own gradients against its central differences.
const ORACLE_FD_TOLERANCE: f64 = 1e-6;

/// `n` values in `[-scale, scale]` on the grid of `2^-bits`.
fn grid(rng: &mut Rng, n: usize, scale: f64, bits: i32) -> Vec<f32> {
    let step = 2f64.powi(bits);
    (0..n).map(|_| ((rng.next() * scale * step).round() / step) as f32).collect()
}

/// `x ± EPSILON · direction`, exactly.
fn shifted(x: &[f32], direction: &[f32], sign: f64) -> Vec<f32> {
    assert_eq!(x.len(), direction.len(), "shift of a different length");
    let shift = |(&x, &d): (&f32, &f32)| {
        let moved = (x as f64 + sign * EPSILON * d as f64) as f32;
        assert_eq!(moved as f64 - x as f64, sign * EPSILON * d as f64, "a shifted input is not exact in f32");
        moved
    };
    x.iter().zip(direction).map(shift).collect()
}

/// One attention problem, two sequences, its host data on the grids `shifted` needs.
struct Case {
    seqs: usize,
    tokens: usize,
    heads: Heads,
    qkv: Vec<f32>,
    bias: Vec<f32>,
    key_mask: Vec<f32>,
    /// Context cotangents `Ō`, one per sequence.
    dctx: Vec<f32>,
    /// `(p, mask)` for p = 0.1 and 0.5.
    keeps: Vec<(f64, Vec<f32>)>,
}

/// What one run of attention reads.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    qkv: &'a [f32],
    bias: Option<&'a [f32]>,
    key_mask: bool,
    keep: Option<&'a [f32]>,
}

/// A forward pass of `attention_dropout`: its uploaded inputs, its context and saved values.
struct Forward<T> {
    qkv: T,
    keep: Option<T>,
    ctx: T,
    saved: AttentionSaved<T>,
}

impl Case {
    fn new(rng: &mut Rng, tokens: usize, heads: Heads) -> Case {
        let (seqs, w) = (2, heads.width());
        let probs = seqs * heads.count * tokens * tokens;
        Case {
            seqs,
            tokens,
            heads,
            qkv: grid(rng, seqs * tokens * 3 * w, 1.5, 10),
            bias: grid(rng, heads.count * tokens * tokens, 2.0, 10),
            key_mask: (0..seqs * tokens).map(|n| if n % tokens == 0 || n % 3 != 1 { 1.0 } else { 0.0 }).collect(),
            dctx: rng.vec_f32(seqs * tokens * w, 1.0),
            keeps: [0.1, 0.5].iter().map(|&p| (p, dropout_mask(rng, probs, p))).collect(),
        }
    }

    /// The case's own inputs: with its score bias and key mask or neither, and `keep`.
    fn inputs<'a>(&'a self, mods: bool, keep: Option<&'a [f32]>) -> Inputs<'a> {
        Inputs { qkv: &self.qkv, bias: mods.then_some(&self.bias[..]), key_mask: mods, keep }
    }

    /// `attention_dropout` on `e`.
    fn forward<E: WeightGradients>(&self, e: &E, inputs: Inputs<'_>) -> Forward<E::Tensor> {
        let (qkv, bias, mask) = self.upload(e, inputs);
        let scores = ScoreMods { bias: bias.as_ref(), key_mask: mask.as_ref() };
        let keep = inputs.keep.map(|k| up(e, k));
        let (ctx, saved) =
            e.attention_dropout(&qkv, self.seqs, self.tokens, self.heads, scores, keep.as_ref()).unwrap();
        Forward { qkv, keep, ctx, saved }
    }

    fn upload<E: Backend>(&self, e: &E, inputs: Inputs<'_>) -> (E::Tensor, Option<E::Tensor>, Option<E::Tensor>) {
        let (heads, tokens, seqs) = (self.heads.count, self.tokens, self.seqs);
        let bias = inputs.bias.map(|b| e.upload(b, Role::ScoreBias { heads, tokens }).unwrap());
        let mask = inputs.key_mask.then(|| e.upload(&self.key_mask, Role::KeyMask { seqs, tokens }).unwrap());
        (primal(e, inputs.qkv, 3 * self.heads.width()), bias, mask)
    }

    /// `[context, probabilities, q̄k̄v̄, Σ S̄]`: `attention_dropout` and its VJP for `Ō`, on `e`.
    fn dropout<E: WeightGradients>(&self, e: &E, inputs: Inputs<'_>) -> [Vec<f64>; 4] {
        let Forward { qkv, keep, ctx, saved } = self.forward(e, inputs);
        let dctx = up(e, &self.dctx);
        let (seqs, tokens, heads) = (self.seqs, self.tokens, self.heads);
        let (dqkv, d_bias) = e.attention_dropout_vjp(&qkv, &saved, keep.as_ref(), &dctx, seqs, tokens, heads).unwrap();
        [down(e, &ctx), down(e, &saved.probs), down(e, &dqkv), down(e, &d_bias)]
    }

    /// `[context, probabilities, q̄k̄v̄]`: `Backend::attention` and `attention_vjp` for `Ō` (one
    /// cotangent per sequence), on `e`.
    fn plain<E: Backend>(&self, e: &E, inputs: Inputs<'_>) -> [Vec<f64>; 3] {
        let (qkv, bias, mask) = self.upload(e, inputs);
        let scores = ScoreMods { bias: bias.as_ref(), key_mask: mask.as_ref() };
        let (ctx, saved) = e.attention(&qkv, self.seqs, self.tokens, self.heads, scores).unwrap();
        let batch = Batch { steps: self.seqs, tangents: 1, tokens: self.tokens };
        let dqkv = e.attention_vjp(&qkv, &saved, &up(e, &self.dctx), batch, self.heads).unwrap();
        [down(e, &ctx), down(e, &saved.probs), down(e, &dqkv)]
    }

    /// `d/dε ⟨context, Ō⟩` at 0 along `u` (of `qkv`) and `delta` (of the score bias: a zero
    /// bias where the inputs have none, which scores the same), by central differences on the
    /// f64 oracle.
    fn central_difference(&self, inputs: Inputs<'_>, u: Option<&[f32]>, delta: Option<&[f32]>) -> f64 {
        let (o, zero_bias) = (CpuReference::<f64>::new(), vec![0.0f32; self.bias.len()]);
        let objective = |sign: f64| {
            let qkv = u.map_or_else(|| inputs.qkv.to_vec(), |u| shifted(inputs.qkv, u, sign));
            let bias = match delta {
                Some(d) => Some(shifted(inputs.bias.unwrap_or(&zero_bias), d, sign)),
                None => inputs.bias.map(<[f32]>::to_vec),
            };
            let forward = self.forward(&o, Inputs { qkv: &qkv, bias: bias.as_deref(), ..inputs });
            inner(&down(&o, &forward.ctx), &widen(&self.dctx)).0
        };
        (objective(1.0) - objective(-1.0)) / (2.0 * EPSILON)
    }
}

pub fn attention_dropout<B: WeightGradients>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(44));
    for (tokens, heads) in ATTENTION_SHAPES {
        let case = Case::new(&mut rng, tokens, heads);
        for (name, mods) in [("plain", false), ("bias+mask", true)] {
            let what = format!("attention_dropout {tokens} tokens, {heads:?}, {name}");
            // Without a mask it is `attention`.
            let inputs = case.inputs(mods, None);
            let [ctx, probs, ..] = case.dropout(b, inputs);
            let [want_ctx, want_probs, _] = case.plain(b, inputs);
            close(&format!("{what}, no mask: context = attention's"), &ctx, &want_ctx);
            close(&format!("{what}, no mask: probabilities = attention's"), &probs, &want_probs);
            for (p, keep) in &case.keeps {
                let inputs = case.inputs(mods, Some(keep));
                let [ctx, probs, ..] = case.dropout(b, inputs);
                let [want_ctx, want_probs, ..] = case.dropout(&o, inputs);
                close(&format!("{what}, p = {p}: context"), &ctx, &want_ctx);
                close(&format!("{what}, p = {p}: probabilities (before the mask)"), &probs, &want_probs);
            }
        }
    }
}

pub fn attention_dropout_vjp<B: WeightGradients>(b: &B) {
    let (o, mut rng) = (CpuReference::<f64>::new(), Rng::new(45));
    for (tokens, heads) in ATTENTION_SHAPES {
        let case = Case::new(&mut rng, tokens, heads);
        // Directions of `qkv` and of the score bias, on a grid that keeps the shifts exact.
        let (u, delta) = (grid(&mut rng, case.qkv.len(), 1.0, 8), grid(&mut rng, case.bias.len(), 1.0, 8));
        let keeps = std::iter::once((None, "no dropout".to_string()))
            .chain(case.keeps.iter().map(|(p, keep)| (Some(&keep[..]), format!("dropout p = {p}"))));
        for (keep, dropout) in keeps {
            for (name, mods) in [("plain", false), ("bias+mask", true)] {
                let what = format!("attention_dropout_vjp {tokens} tokens, {heads:?}, {name}, {dropout}");
                let inputs = case.inputs(mods, keep);
                let [_, _, dqkv, d_bias] = case.dropout(b, inputs);
                let [_, _, want_dqkv, want_bias] = case.dropout(&o, inputs);
                close(&format!("{what}: q̄k̄v̄"), &dqkv, &want_dqkv);
                if tokens > 1 {
                    close(&format!("{what}: Σ S̄"), &d_bias, &want_bias);
                } else {
                    // Softmax over one key: the scores have no gradient.
                    let err = max_abs(&d_bias) / max_abs(&want_dqkv);
                    assert!(err <= F32_OP_TOLERANCE, "{what}: Σ S̄ of one token is {err:.1e} of max|q̄k̄v̄|, not 0");
                }
                if keep.is_none() {
                    let [_, _, plain] = case.plain(b, inputs);
                    close(&format!("{what}: q̄k̄v̄ = attention_vjp's"), &dqkv, &plain);
                }

                // The directional derivatives by central differences on the f64 oracle.
                let along_u = (case.central_difference(inputs, Some(&u), None), 0.0);
                let label = format!("{what}: ⟨q̄k̄v̄, u⟩ = d/dε ⟨context(qkv + εu), Ō⟩");
                identity(&label, inner(&dqkv, &widen(&u)), along_u, F32_OP_TOLERANCE);
                identity(&format!("{label} (oracle)"), inner(&want_dqkv, &widen(&u)), along_u, ORACLE_FD_TOLERANCE);
                if tokens > 1 {
                    let along_delta = (case.central_difference(inputs, None, Some(&delta)), 0.0);
                    let label = format!("{what}: ⟨Σ S̄, δ⟩ = d/dε ⟨context(bias + εδ), Ō⟩");
                    identity(&label, inner(&d_bias, &widen(&delta)), along_delta, F32_OP_TOLERANCE);
                    let oracle = inner(&want_bias, &widen(&delta));
                    identity(&format!("{label} (oracle)"), oracle, along_delta, ORACLE_FD_TOLERANCE);
                }
            }
        }
    }
}
