//! A block structure is a description (`net::block`): two pre-norm variants of the encoder
//! layer, built here from the tiny BERT fixture's weights with no layer function written for
//! either, run forward, JVP (dense and token directions), pooled JVP, taped forward and VJP on
//! both CPU backends, and training's walk with dropout to every weight's gradient. Checked in
//! f64 against central finite differences and the adjoint identity `⟨ȳ, J ẋ⟩ = ⟨Jᵀ ȳ, ẋ⟩`, in
//! f32 (`cpu`) against `CpuReference<f64>`, and, the RMSNorm variant, whole explanations for
//! completeness and reverse = forward mode. The post-LN block's passes are checked by the rest
//! of the suite (the goldens, reverse = forward, the structured paths against the plain ones).
//!
//! ```text
//!   pre-LN:            h = x + Wo · attention(Wqkv · LN1(x))    y = h + W2 · gelu(W1 · LN2(h))
//!   pre-RMS, SwiGLU:   h = x + Wo · attention(Wqkv · RMS1(x))   y = h + W2 · swiglu(W1 · RMS2(h))
//! ```
//!
//! The SwiGLU variant reads the fixture's `W1` (64 outputs) as `[gate | up]` rows, 32 each, and
//! the first 32 columns of `W2`.

use crate::common;
use crate::jvp_finite_differences::central_difference;

use common::{direction, fixture_dir, max_abs, max_abs_diff, Rng};
use simattr::attribution::{explain_pair, Mode, Quadrature, Rule, Similarity, TextOptions};
use simattr::backend::cpu::CpuBackend;
use simattr::backend::prelude::*;
use simattr::backend::reference::CpuReference;
use simattr::backend::{Activation, BackendSettings, Batch, Role, ScoreMods};
use simattr::model::SentenceModel;
use simattr::net::block::{
    Block, BlockBuilder, CotangentsIn, Geometry, InputCotangents, InputForm, NormKind, TangentsIn, Value,
};
use simattr::net::encoder::upload_params;
use simattr::net::families::Network;
use simattr::net::layer::LayerShape;
use simattr::net::packing::Packing;
use simattr::net::Encoder;
use simattr::params::{EncoderParams, HostTensor, LayerParams, LayerSlot, LinearId, NormId, Weights};

type F64 = CpuReference<f64>;

pub(crate) use common::pre_ln;

fn pre_rms_swiglu() -> Block {
    let b = BlockBuilder::new();
    let x = Value::INPUT;
    let ctx = b.attention(b.linear(b.rms_norm(x, NormId::Attention), LinearId::Qkv));
    let h = b.add(x, b.dropout(b.linear(ctx, LinearId::AttentionOut)));
    let gate_up = b.linear(b.rms_norm(h, NormId::Ffn), LinearId::FfnIn);
    b.add(h, b.dropout(b.linear(b.gated(gate_up, Activation::Silu), LinearId::FfnOut)));
    b.finish("pre-RMSNorm SwiGLU test block").unwrap()
}

/// A block structure under test, and how the fixture's weights are read for it.
#[derive(Clone, Copy)]
struct Variant {
    block: fn() -> Block,
    /// Whether the FFN is gated (`W2` then takes half of `W1`'s outputs).
    gated: bool,
    /// The weights it has gradients for: RMSNorm has no `β`.
    weights: usize,
}

const PRE_LN: Variant = Variant { block: pre_ln, gated: false, weights: 12 };
const PRE_RMS_SWIGLU: Variant = Variant { block: pre_rms_swiglu, gated: true, weights: 10 };
const VARIANTS: [Variant; 2] = [PRE_LN, PRE_RMS_SWIGLU];

/// The fixture's weights as a gated FFN reads them: `W1`'s 64 output rows as `[gate | up]`,
/// and the first half of `W2`'s columns.
fn gate_ffn(params: &mut EncoderParams<HostTensor>) {
    for layer in &mut params.layers {
        let out = &mut layer.ffn_out;
        let half = out.in_dim / 2;
        let data: Vec<f32> = out.weight.data().chunks(out.in_dim).flat_map(|row| row[..half].to_vec()).collect();
        out.weight = HostTensor::new(vec![out.out_dim, half], data);
        out.in_dim = half;
    }
}

/// The tiny BERT fixture, its weights read as `variant` reads them.
fn model_for(variant: Variant) -> SentenceModel {
    let mut model = SentenceModel::load(&fixture_dir("tiny-bert")).unwrap();
    if variant.gated {
        gate_ffn(&mut model.params);
    }
    model
}

/// The fixture's first layer on `backend` as `variant` reads it, and its geometry.
fn first_layer<B: Backend>(backend: &B, variant: Variant) -> (LayerParams<B::Tensor>, Geometry, usize) {
    let model = model_for(variant);
    let shape = LayerShape::of(&model.config);
    let mut params = upload_params(backend, &model.params).unwrap();
    (params.layers.swap_remove(0), shape.geometry(), shape.hidden)
}

const BATCH: Batch = Batch { steps: 2, tangents: 3, tokens: 5 };

fn assert_close(what: &str, got: &[f64], want: &[f64], relative: f64) {
    let err = max_abs_diff(got, want);
    let scale = max_abs(want);
    assert!(scale > 1e-6, "{what}: trivially zero");
    assert!(err <= relative * scale, "{what}: differs by {err:e} (scale {scale:e})");
}

/// The memory budget's count of what a block's tape keeps per primal row is what the tape
/// holds, for the post-LN block and the two pre-norm variants.
#[test]
fn tape_row_scalars_are_what_the_tape_holds() {
    let b = F64::new();
    let post_ln = Variant { block: simattr::net::families::post_ln::block, gated: false, weights: 12 };
    for variant in [post_ln, PRE_LN, PRE_RMS_SWIGLU] {
        let (params, geometry, h) = first_layer(&b, variant);
        let block = (variant.block)();
        let x = Rng::new(15).vec(BATCH.primal_rows() * h);
        let (_, tape) =
            block.forward_taped(&b, &params, geometry, &x, BATCH.steps, BATCH.tokens, ScoreMods::none()).unwrap();
        let per_row = block.tape_row_scalars(&params, geometry.heads, BATCH.tokens).unwrap();
        assert_eq!(per_row * BATCH.primal_rows(), tape.scalars(&b), "{}", block.name());
    }
    // Post-LN by hand: q|k|v, the probabilities of the row's query in every head, two norms'
    // x̂ and 1/σ, GELU's input.
    let (params, geometry, h) = first_layer(&b, post_ln);
    let (heads, ffn, t) = (geometry.heads.count, params.ffn_in.out_dim, BATCH.tokens);
    let by_hand = 3 * h + heads * t + 2 * (h + 1) + ffn;
    assert_eq!(simattr::net::families::post_ln::block().tape_row_scalars(&params, geometry.heads, t).unwrap(), by_hand);
}

/// The memory budget's count of what one tangent row needs at the peak of a dense JVP walk,
/// counted here step by step from the descriptions (the input's tangent is held throughout).
#[test]
fn tangent_row_scalars_are_the_walks_peak_by_hand() {
    let b = F64::new();
    let post_ln = Variant { block: simattr::net::families::post_ln::block, gated: false, weights: 12 };
    let (params, geometry, h) = first_layer(&b, post_ln);
    let (heads, f) = (geometry.heads.count, params.ffn_in.out_dim);
    for t in [5, 40] {
        // Post-LN: q|k|v; attention beside q|k|v and its score tangents; the output projection
        // fused with the residual norm (its GEMM output inside); W1 fused with GELU (the same)
        // beside h1; W2 fused with the norm beside h1 and the activation.
        let steps = [h + 3 * h, h + 3 * h + h + heads * t, h + h + h + h, h + h + f + f, h + h + f + h + h];
        let got = simattr::net::families::post_ln::block().tangent_row_scalars(&params, geometry.heads, t).unwrap();
        assert_eq!(got, steps.into_iter().max().unwrap(), "post-LN at {t} tokens");
    }
    // Pre-RMSNorm SwiGLU, no step fused: the norm; q|k|v beside it; attention; the output
    // projection; the sum; the norm; W1 (gate and up, `2g` wide) beside h and the norm; the
    // gate beside h; W2 beside h; the sum.
    let (params, geometry, h) = first_layer(&b, PRE_RMS_SWIGLU);
    let g = params.ffn_out.in_dim;
    let t = 5;
    let steps = [
        h + h,
        h + h + 3 * h,
        h + 3 * h + h + heads * t,
        h + h + h,
        h + h + h,
        h + h + h,
        h + h + h + 2 * g,
        h + h + 2 * g + g,
        h + h + g + h,
        h + h + h + h,
    ];
    let got = pre_rms_swiglu().tangent_row_scalars(&params, geometry.heads, t).unwrap();
    assert_eq!(got, steps.into_iter().max().unwrap(), "pre-RMSNorm SwiGLU at {t} tokens");
}

/// What the flop counts read of a block comes from its description: the post-LN block's is
/// the post-LN formula's; a pre-RMSNorm SwiGLU block's GEMMs include W1's doubled width, its
/// projection into attention reads step rows, and it has no pooled top until it ends in a
/// final LayerNorm.
#[test]
fn block_costs_are_read_from_the_descriptions() {
    use simattr::net::flops::BlockCost;
    let b = F64::new();
    let post_ln = Variant { block: simattr::net::families::post_ln::block, gated: false, weights: 12 };
    let (params, geometry, _) = first_layer(&b, post_ln);
    let model = model_for(post_ln);
    let want = BlockCost::from(LayerShape::of(&model.config));
    assert_eq!(simattr::net::families::post_ln::block().cost(&params, geometry.heads), want);

    let (params, geometry, h) = first_layer(&b, PRE_RMS_SWIGLU);
    let g = params.ffn_out.in_dim;
    let (h, g) = (h as f64, g as f64);
    let got = pre_rms_swiglu().cost(&params, geometry.heads);
    let gemm = 2.0 * (h * 3.0 * h + h * h + h * 2.0 * g + g * h);
    // After attention: the output projection and the feed-forward, W1 twice as wide.
    let after = 2.0 * (h * h + h * 2.0 * g + g * h);
    let want = BlockCost {
        gemm_per_row: gemm,
        attention_width: h,
        qkv: Some((h, 3.0 * h, false)),
        pooled_out: None,
        after_attention_per_row: after,
    };
    assert_eq!(got, want);

    let model = model_with_final_norm();
    let params = upload_params(&b, &model.params).unwrap();
    let weights = Weights { layer: &params.layers[0], final_norm: params.final_norm.as_ref() };
    let tail = pre_ln().ending_in(NormKind::Layer).unwrap().cost(weights, geometry.heads);
    let f = params.layers[0].ffn_in.out_dim as f64;
    assert_eq!((tail.qkv, tail.pooled_out), (Some((h, 3.0 * h, false)), Some((f, h))));
}

#[test]
fn a_pre_ln_block_has_no_input_projection_to_split_at_and_the_post_ln_one_has() {
    assert_eq!(pre_ln().input_projection(), None);
    assert_eq!(simattr::net::families::post_ln::block().input_projection(), Some(LinearId::Qkv));
}

#[test]
fn pre_norm_jvps_match_finite_differences() {
    VARIANTS.into_iter().for_each(jvp_matches_finite_differences);
}

fn jvp_matches_finite_differences(variant: Variant) {
    let b = F64::new();
    let (params, geometry, h) = first_layer(&b, variant);
    let block = (variant.block)();
    let mut rng = Rng::new(11);
    let x = rng.vec(BATCH.primal_rows() * h);
    let dx = rng.vec(BATCH.tangent_rows() * h);
    let (y, dy) = block.jvp(&b, &params, geometry, &x, TangentsIn::Dense(&dx), BATCH, ScoreMods::none()).unwrap();
    let forward = |x: &[f64]| {
        block.forward(&b, &params, geometry, &x.to_vec(), BATCH.steps, BATCH.tokens, ScoreMods::none()).unwrap()
    };
    assert_eq!(y, forward(&x), "the JVP's primal is the forward pass");
    for k in 0..BATCH.tangents {
        let fd = central_difference(forward, &x, &direction(BATCH, h, &dx, k), 1e-5);
        assert_close(&format!("{} JVP, tangent {k}", block.name()), &direction(BATCH, h, &dy, k), &fd, 1e-7);
    }
}

#[test]
fn pre_norm_vjps_are_the_adjoints_of_their_jvps() {
    VARIANTS.into_iter().for_each(vjp_is_the_adjoint_of_the_jvp);
}

fn vjp_is_the_adjoint_of_the_jvp(variant: Variant) {
    let b = F64::new();
    let (params, geometry, h) = first_layer(&b, variant);
    let block = (variant.block)();
    let mut rng = Rng::new(12);
    let x = rng.vec(BATCH.primal_rows() * h);
    let dx = rng.vec(BATCH.tangent_rows() * h);
    let dy_bar = rng.vec(BATCH.tangent_rows() * h);
    let (_, dy) = block.jvp(&b, &params, geometry, &x, TangentsIn::Dense(&dx), BATCH, ScoreMods::none()).unwrap();
    let (y, tape) =
        block.forward_taped(&b, &params, geometry, &x, BATCH.steps, BATCH.tokens, ScoreMods::none()).unwrap();
    let forward = block.forward(&b, &params, geometry, &x, BATCH.steps, BATCH.tokens, ScoreMods::none()).unwrap();
    assert_eq!(y, forward, "the taped forward pass is the forward pass");
    let InputCotangents::Full(dx_bar) =
        block.vjp(&b, &params, geometry, &tape, CotangentsIn::Dense(&dy_bar), BATCH, InputForm::Full).unwrap()
    else {
        panic!("a full VJP came back split");
    };
    // Pair (step, tangent) of the JVP with (step, cotangent) of the VJP.
    let row = BATCH.tokens * h;
    for pair in 0..BATCH.steps * BATCH.tangents {
        let slice = |v: &[f64]| v[pair * row..(pair + 1) * row].to_vec();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        let (left, right) = (dot(&slice(&dy_bar), &slice(&dy)), dot(&slice(&dx_bar), &slice(&dx)));
        assert!(
            (left - right).abs() <= 1e-10 * left.abs().max(right.abs()),
            "{}, pair {pair}: ⟨ȳ, Jẋ⟩ {left} ≠ ⟨Jᵀȳ, ẋ⟩ {right}",
            block.name()
        );
    }
    let split = block.vjp(&b, &params, geometry, &tape, CotangentsIn::Dense(&dy_bar), BATCH, InputForm::Split);
    let error = split.err().expect("a pre-norm block cannot split its input cotangents").to_string();
    assert!(error.contains("no attention projection of its input"), "{error}");
}

#[test]
fn pre_norm_token_directions_and_pooling_equal_the_plain_path() {
    VARIANTS.into_iter().for_each(token_directions_and_pooling_equal_the_plain_path);
}

fn token_directions_and_pooling_equal_the_plain_path(variant: Variant) {
    let b = F64::new();
    let (params, geometry, h) = first_layer(&b, variant);
    let block = (variant.block)();
    let mut rng = Rng::new(13);
    let batch = Batch { steps: 2, tangents: BATCH.tokens, tokens: BATCH.tokens };
    let x = rng.vec(batch.primal_rows() * h);
    let delta = rng.vec(batch.tokens * h);
    // Every token, and a chunk of them (a pass of fewer directions than tokens).
    for chunk in [0..batch.tokens, 1..3] {
        let batch = Batch { tangents: chunk.len(), ..batch };
        let directions = TangentsIn::TokenDirections { delta: &delta, directions: chunk.clone() };
        let dense = b.token_tangents(&delta, batch.steps, batch.tokens, h, chunk.clone()).unwrap();
        let (_, structured) = block.jvp(&b, &params, geometry, &x, directions, batch, ScoreMods::none()).unwrap();
        let (_, plain) =
            block.jvp(&b, &params, geometry, &x, TangentsIn::Dense(&dense), batch, ScoreMods::none()).unwrap();
        assert_close(&format!("token directions {chunk:?}"), &structured, &plain, 1e-12);
    }
    let directions = TangentsIn::TokenDirections { delta: &delta, directions: 0..batch.tokens };
    let dense = b.token_tangents(&delta, batch.steps, batch.tokens, h, 0..batch.tokens).unwrap();
    let (_, plain) = block.jvp(&b, &params, geometry, &x, TangentsIn::Dense(&dense), batch, ScoreMods::none()).unwrap();
    let pooled = block.pooled_jvp(&b, &params, geometry, &x, directions, batch, ScoreMods::none()).unwrap();
    let mean = b.mean_pool(&plain, batch.tangent_seqs(), batch.tokens, h).unwrap();
    assert_close("pooled JVP", &pooled, &mean, 1e-12);

    // Reverse mode from the pooled output's unit cotangents against the same seeds made dense.
    pooled_units_equal_dense_seeds("pooled unit cotangents", &block, (&params).into(), geometry, &x, batch);
}

/// `block`'s VJP from the pooled output's unit cotangents (structured) equals it from the same
/// seeds made dense, in f64.
fn pooled_units_equal_dense_seeds(
    what: &str,
    block: &Block,
    weights: Weights<'_, Vec<f64>>,
    geometry: Geometry,
    x: &Vec<f64>,
    batch: Batch,
) {
    let (b, h) = (F64::new(), weights.hidden());
    let dims = 3..7;
    let cot = Batch { tangents: dims.len(), ..batch };
    let (_, tape) = block.forward_taped(&b, weights, geometry, x, cot.steps, cot.tokens, ScoreMods::none()).unwrap();
    let full = |dy: CotangentsIn<'_, Vec<f64>>| match block.vjp(&b, weights, geometry, &tape, dy, cot, InputForm::Full)
    {
        Ok(InputCotangents::Full(dx)) => dx,
        _ => panic!("a full VJP"),
    };
    let seeds = simattr::backend::unit_rows(cot.steps, dims.clone(), h).iter().map(|&v| v as f64).collect::<Vec<_>>();
    let dense_seeds = b.mean_pool_vjp(&seeds, cot.tangent_seqs(), cot.tokens, h).unwrap();
    let (structured, dense) = (full(CotangentsIn::PooledMeanUnits(dims)), full(CotangentsIn::Dense(&dense_seeds)));
    assert_close(what, &structured, &dense, 1e-12);
}

/// Every pass of `variant`'s block on `backend`, downloaded: forward, JVP (dense and token
/// directions), pooled JVP, VJP (dense and pooled unit cotangents).
fn all_passes<B: Backend>(backend: &B, variant: Variant) -> Vec<(&'static str, Vec<f64>)> {
    let (params, geometry, h) = first_layer(backend, variant);
    let block = (variant.block)();
    let mut rng = Rng::new(14);
    let up = |v: Vec<f32>| backend.upload(&v, Role::Activations { len: v.len() }).unwrap();
    let x = up(rng.vec_f32(BATCH.primal_rows() * h, 1.0));
    let dx = up(rng.vec_f32(BATCH.tangent_rows() * h, 1.0));
    let delta = up(rng.vec_f32(BATCH.tokens * h, 1.0));
    let dy_bar = up(rng.vec_f32(BATCH.tangent_rows() * h, 1.0));
    let none = ScoreMods::none();
    let down = |t: &B::Tensor| backend.download(t).unwrap();
    let tokens = Batch { tangents: BATCH.tokens, ..BATCH };
    let directions = || TangentsIn::TokenDirections { delta: &delta, directions: 0..BATCH.tokens };
    let (y, dy) = block.jvp(backend, &params, geometry, &x, TangentsIn::Dense(&dx), BATCH, none).unwrap();
    let (_, d_tokens) = block.jvp(backend, &params, geometry, &x, directions(), tokens, none).unwrap();
    let pooled = block.pooled_jvp(backend, &params, geometry, &x, directions(), tokens, none).unwrap();
    let (_, tape) = block.forward_taped(backend, &params, geometry, &x, BATCH.steps, BATCH.tokens, none).unwrap();
    let vjp = |dy: CotangentsIn<'_, B::Tensor>, batch| match block.vjp(
        backend,
        &params,
        geometry,
        &tape,
        dy,
        batch,
        InputForm::Full,
    ) {
        Ok(InputCotangents::Full(dx)) => down(&dx),
        _ => panic!("a full VJP"),
    };
    let units = Batch { tangents: 4, ..BATCH };
    vec![
        ("forward", down(&y)),
        ("JVP", down(&dy)),
        ("JVP of token directions", down(&d_tokens)),
        ("pooled JVP", down(&pooled)),
        ("VJP", vjp(CotangentsIn::Dense(&dy_bar), BATCH)),
        ("VJP of pooled unit cotangents", vjp(CotangentsIn::PooledMeanUnits(2..6), units)),
    ]
}

#[test]
fn pre_norm_blocks_on_the_cpu_backend_match_the_reference() {
    for variant in VARIANTS {
        let want = all_passes(&F64::new(), variant);
        let got = all_passes(&CpuBackend::new(BackendSettings::default()).unwrap(), variant);
        for ((what, got), (_, want)) in got.iter().zip(&want) {
            let name = (variant.block)().name();
            assert_close(&format!("cpu f32, {name} {what}"), got, want, crate::F32_OP_TOLERANCE);
        }
    }
}

/// The tensor `slot` names in one layer's parameters.
fn tensor_mut(params: &mut LayerParams<Vec<f64>>, slot: LayerSlot) -> &mut Vec<f64> {
    params.slot_mut(slot).unwrap_or_else(|| panic!("the layer has no {slot:?}"))
}

/// Training's walk of `block` with dropout on (a mask on attention's probabilities and on each
/// dropout op's value), over two packed texts of different lengths: the input's cotangents
/// and every weight's gradient against central finite differences of `⟨ȳ, y⟩` in f64, and the
/// masks shown to matter.
fn check_training(block: &Block, variant: Variant, dropout_ops: usize) {
    let b = F64::new();
    let (params, geometry, h) = first_layer(&b, variant);
    let packing = Packing::new(&b, &[4, 6]).unwrap();
    let rows = packing.rows();
    let mut rng = Rng::new(15);
    let lengths = block.dropout_mask_lengths(&params, geometry, &packing).unwrap();
    assert_eq!(lengths.len(), 1 + dropout_ops, "attention's mask and one per dropout op");
    let masks: Vec<Vec<f64>> =
        lengths.iter().map(|&len| (0..len).map(|_| if rng.next() < -0.6 { 0.0 } else { 1.25 }).collect()).collect();
    let x = rng.vec(rows * h);
    let dy = rng.vec(rows * h);
    let scores = packing.scores(None);
    let output = |params: &LayerParams<Vec<f64>>, x: &[f64], masks: Option<Vec<Vec<f64>>>| {
        block.forward_training(&b, params, geometry, &packing, scores, x.to_vec(), masks).unwrap()
    };
    let loss = |params: &LayerParams<Vec<f64>>, x: &[f64]| -> f64 {
        output(params, x, Some(masks.clone())).0.iter().zip(&dy).map(|(y, d)| y * d).sum()
    };
    let (y, tape) = output(&params, &x, Some(masks.clone()));
    let (y_plain, _) = output(&params, &x, None);
    assert!(max_abs_diff(&y, &y_plain) > 1e-3, "{}: the dropout masks change nothing", block.name());
    let (dx, grads) = block.backward_training(&b, &params, geometry, &packing, &tape, &dy).unwrap();
    assert!(grads.score_bias.is_some(), "the block's attention gives a score-bias gradient");

    let eps = 1e-5;
    let along = |grad: &[f64], step: &dyn Fn(f64, &[f64]) -> f64, seed: u64| {
        let u = Rng::new(seed).vec(grad.len());
        let fd = (step(1.0, &u) - step(-1.0, &u)) / (2.0 * eps);
        let exact: f64 = grad.iter().zip(&u).map(|(g, d)| g * d).sum();
        (exact, fd)
    };
    let shifted_input = |sign: f64, u: &[f64]| {
        let x: Vec<f64> = x.iter().zip(u).map(|(a, d)| a + sign * eps * d).collect();
        loss(&params, &x)
    };
    let (exact, fd) = along(&dx, &shifted_input, 16);
    assert!(
        (fd - exact).abs() <= 1e-7 * exact.abs(),
        "{}: input cotangents {exact:e}, finite differences {fd:e}",
        block.name()
    );
    assert_eq!(grads.weights.len(), variant.weights, "{}: a gradient for each weight and bias", block.name());
    for (n, (slot, grad)) in grads.weights.iter().enumerate() {
        let stepped = |sign: f64, u: &[f64]| {
            let mut p = params.clone();
            tensor_mut(&mut p, *slot).iter_mut().zip(u).for_each(|(v, d)| *v += sign * eps * d);
            loss(&p, &x)
        };
        let (exact, fd) = along(grad, &stepped, 100 + n as u64);
        assert!(exact.abs() > 1e-8, "{}: {slot:?}'s gradient is trivially zero", block.name());
        assert!(
            (fd - exact).abs() <= 1e-6 * exact.abs(),
            "{}: {slot:?} {exact:e}, finite differences {fd:e}",
            block.name()
        );
    }
}

#[test]
fn post_ln_training_with_dropout_matches_finite_differences() {
    check_training(&simattr::net::families::post_ln::block(), PRE_LN, 2);
}

#[test]
fn pre_norm_training_with_dropout_matches_finite_differences() {
    for variant in VARIANTS {
        check_training(&(variant.block)(), variant, 2);
    }
}

/// Whole explanations with every layer of the fixture running the RMSNorm/SwiGLU block, in
/// f64: completeness (`Σ A` = the score minus its reference terms) holds to the quadrature's
/// error, which Gauss–Legendre drives to rounding by 24 steps, and reverse mode (which, with
/// no projection to split at, takes full cotangents) gives forward mode's `P`.
#[test]
fn pre_rms_swiglu_explanations_are_complete_and_reverse_equals_forward() {
    let network = Network::new(pre_rms_swiglu());
    explanations_are_complete_and_reverse_equals_forward(model_for(PRE_RMS_SWIGLU), network);
}

/// A pre-norm family with a final norm (the newer encoders' shape): the last layer's block
/// ends in it, so its pooled rewrites apply there (`a_final_norm_is_where_the_pooled_rewrites_apply`).
#[test]
fn pre_ln_with_a_final_norm_explanations_are_complete_and_reverse_equals_forward() {
    let network = Network { final_norm: Some(NormKind::Layer), ..Network::new(pre_ln()) };
    explanations_are_complete_and_reverse_equals_forward(model_with_final_norm(), network);
}

/// The tiny BERT fixture with a final LayerNorm (`common::final_norm_of`).
fn model_with_final_norm() -> SentenceModel {
    let mut model = model_for(PRE_LN);
    model.params.final_norm = Some(common::final_norm_of(&model.params));
    model
}

/// Whole explanations in f64 at the first and the last layer through `network`: complete to
/// 1e-9 of the score with 24 Gauss–Legendre steps (and a coarse rule far from it, so that the
/// check is not empty), a score other than the post-LN block's, and reverse mode's `A` equal to
/// forward mode's.
fn explanations_are_complete_and_reverse_equals_forward(model: SentenceModel, network: Network) {
    let b = F64::new();
    let encoder = Encoder::with_network(&b, &model, network).unwrap();
    assert!(!encoder.splits_input_cotangents(0));
    let post_ln = Encoder::new(&b, &model_for(PRE_LN)).unwrap();
    let (a, text_b) = ("A man is playing a guitar.", "Someone plays an instrument.");
    for layer in [0, 2] {
        let explain = |encoder: &Encoder<'_, F64>, mode: Mode, rule: Rule, steps: usize| {
            let options = TextOptions { mode, ..TextOptions::new(layer, Quadrature::new(rule, steps).unwrap()) };
            explain_pair(encoder, &model.tokenizer, a, text_b, &options, Similarity::Dot, &()).unwrap()
        };
        let forward = explain(&encoder, Mode::Forward, Rule::GaussLegendre, 24);
        let (score, error) = (forward.pair.score, forward.pair.completeness_error());
        let coarse = explain(&encoder, Mode::Forward, Rule::RiemannRight, 4).pair.completeness_error();
        eprintln!("layer {layer}: score {score:.6}, completeness error {error:.2e} (riemann-right 4: {coarse:.2e})");
        assert!(error <= 1e-9 * score.abs(), "layer {layer}: completeness error {error:e} of score {score}");
        assert!(coarse > 1e3 * error, "layer {layer}: a coarse rule is as complete ({coarse:e}): the check is empty");
        let other = explain(&post_ln, Mode::Forward, Rule::GaussLegendre, 24).pair.score;
        assert!((other - score).abs() > 1e-3 * score.abs(), "the variant block scores as the post-LN one does");
        let reverse = explain(&encoder, Mode::Reverse, Rule::GaussLegendre, 24);
        assert_close(&format!("layer {layer}: reverse mode's A"), &reverse.pair.matrix, &forward.pair.matrix, 1e-10);
    }
}

/// The last layer of a pre-LN family, its block ending in the final norm: the pooled JVP (from
/// token directions, through step rows) equals the mean of the plain JVP, and reverse mode from
/// the pooled unit cotangents equals it from the same seeds made dense, on both CPU backends.
/// `tests/backends/recording.rs` checks that the pooled ops are the ones issued.
#[test]
fn a_final_norm_is_where_the_pooled_rewrites_apply() {
    let b = F64::new();
    let model = model_with_final_norm();
    let params = upload_params(&b, &model.params).unwrap();
    let (layer, final_norm) = (&params.layers[0], params.final_norm.as_ref().unwrap());
    let weights = Weights { layer, final_norm: Some(final_norm) };
    let geometry = LayerShape::of(&model.config).geometry();
    let h = layer.hidden();
    let tail = pre_ln().ending_in(NormKind::Layer).unwrap();
    let mut rng = Rng::new(16);
    let batch = Batch { steps: 2, tangents: BATCH.tokens, tokens: BATCH.tokens };
    let x = rng.vec(batch.primal_rows() * h);
    let delta = rng.vec(batch.tokens * h);
    let directions = TangentsIn::TokenDirections { delta: &delta, directions: 0..batch.tokens };
    let dense = b.token_tangents(&delta, batch.steps, batch.tokens, h, 0..batch.tokens).unwrap();
    let none = ScoreMods::none();
    let (y, plain) = tail.jvp(&b, weights, geometry, &x, TangentsIn::Dense(&dense), batch, none).unwrap();
    let (without, _) = pre_ln().jvp(&b, layer, geometry, &x, TangentsIn::Dense(&dense), batch, none).unwrap();
    assert!(max_abs_diff(&y, &without) > 1e-2, "the final norm changes nothing");
    let pooled = tail.pooled_jvp(&b, weights, geometry, &x, directions, batch, none).unwrap();
    let mean = b.mean_pool(&plain, batch.tangent_seqs(), batch.tokens, h).unwrap();
    assert_close("pooled JVP through the final norm", &pooled, &mean, 1e-12);

    pooled_units_equal_dense_seeds(
        "pooled unit cotangents through the final norm",
        &tail,
        weights,
        geometry,
        &x,
        batch,
    );
}
