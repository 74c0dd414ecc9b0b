//! The modules after pooling as part of the description (`net::heads`): two Dense modules
//! (tanh, then the identity, narrowing 32 → 24 → 20) and Normalize after the tiny BERT
//! fixture, their weights random. Checked in f64 against the math: the embedding is the
//! pooled vector through `tanh(W1 p + b1)` and `W2 · + b2` computed here; the attribution
//! pass's tangents against central finite differences, under mean pooling (the pooled last
//! layer) and CLS; whole explanations complete and reverse mode equal to forward mode; and the
//! CPU backend against `CpuReference<f64>`.

use crate::common;
use crate::jvp_finite_differences::central_difference;

use common::{fixture_dir, max_abs, max_abs_diff, Rng};
use simattr::attribution::{explain_pair, Mode, Quadrature, Rule, Similarity, TextOptions};
use simattr::backend::cpu::CpuBackend;
use simattr::backend::prelude::*;
use simattr::backend::reference::CpuReference;
use simattr::backend::{BackendSettings, Batch};
use simattr::model::{Pooling, SentenceModel};
use simattr::net::families::Network;
use simattr::net::heads::{DenseActivation, Head};
use simattr::net::pooling::Pool;
use simattr::net::Encoder;
use simattr::params::{HostTensor, Linear};

type F64 = CpuReference<f64>;

const TEXT_A: &str = "A man is playing a guitar.";
const TEXT_B: &str = "Someone plays an instrument.";

fn dense(rng: &mut Rng, in_dim: usize, out_dim: usize) -> Linear<HostTensor> {
    // Entries of about 1/√in: pre-activations of order one, tanh far from linear and from flat.
    let scale = 1.5 / (in_dim as f64).sqrt();
    Linear {
        weight: HostTensor::new(vec![out_dim, in_dim], rng.vec_f32(out_dim * in_dim, scale)),
        bias: HostTensor::new(vec![out_dim], rng.vec_f32(out_dim, 0.3)),
        in_dim,
        out_dim,
    }
}

/// The tiny BERT fixture with two Dense modules' weights, 32 → 24 → 20.
fn model_with_dense() -> SentenceModel {
    let mut model = SentenceModel::load(&fixture_dir("tiny-bert")).unwrap();
    let mut rng = Rng::new(31);
    let h = model.config.hidden_size;
    model.params.heads = vec![dense(&mut rng, h, 24), dense(&mut rng, 24, 20)];
    model
}

const HEADS: [Head; 3] = [
    Head::Dense { activation: DenseActivation::Tanh },
    Head::Dense { activation: DenseActivation::Identity },
    Head::Normalize,
];

fn with_heads(model: &SentenceModel, pooling: Pooling) -> Network {
    Network { pooling, heads: HEADS.to_vec(), ..Network::of(model) }
}

fn assert_close(what: &str, got: &[f64], want: &[f64], relative: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let err = max_abs_diff(got, want);
    let scale = max_abs(want);
    assert!(scale > 1e-6, "{what}: trivially zero");
    assert!(err <= relative * scale, "{what}: differs by {err:e} (scale {scale:e})");
}

/// `act(W x + b)` of one row, in f64 on the host.
fn dense_host(layer: &Linear<HostTensor>, x: &[f64], act: fn(f64) -> f64) -> Vec<f64> {
    let w = layer.weight.data();
    (0..layer.out_dim)
        .map(|o| {
            let row = &w[o * layer.in_dim..][..layer.in_dim];
            act(row.iter().zip(x).map(|(&w, x)| w as f64 * x).sum::<f64>() + layer.bias.data()[o] as f64)
        })
        .collect()
}

#[test]
fn the_embedding_is_the_pooled_vector_through_the_dense_modules() {
    let b = F64::new();
    let model = model_with_dense();
    let fixture = SentenceModel::load(&fixture_dir("tiny-bert")).unwrap();
    let plain = Encoder::new(&b, &fixture).unwrap();
    let encoder = Encoder::with_network(&b, &model, with_heads(&model, Pooling::Mean)).unwrap();
    assert_eq!((encoder.hidden(), encoder.embedding_dim(), plain.embedding_dim()), (32, 20, 32));
    assert!(encoder.normalizes());
    let texts: Vec<Vec<u32>> = [TEXT_A, TEXT_B].iter().map(|t| model.tokenizer.encode(t).unwrap().ids).collect();
    let refs: Vec<(&[u32], Pool)> = texts.iter().map(|ids| (ids.as_slice(), encoder.pool_all())).collect();
    let packed = encoder.embed_packed(&refs).unwrap();
    for (ids, packed) in texts.iter().zip(&packed) {
        let pooled = plain.embed(ids, 1, plain.pool_all()).unwrap();
        let hidden = dense_host(&model.params.heads[0], &pooled, f64::tanh);
        let want = dense_host(&model.params.heads[1], &hidden, |v| v);
        let got = encoder.embed(ids, 1, encoder.pool_all()).unwrap();
        assert_close("embedding through the Dense modules", &got, &want, 1e-12);
        assert_close("packed embedding through the Dense modules", packed, &want, 1e-12);
    }
}

/// The attribution pass's tangents (token directions through every layer from the split,
/// pooling and both Dense modules) against central differences of the embedding, one token's
/// row of `Δ` at a time; under mean pooling (the last layer pooled before its output GEMM) and
/// CLS (pooled after the full JVP).
#[test]
fn the_attribution_tangents_through_the_dense_modules_match_finite_differences() {
    let b = F64::new();
    let model = model_with_dense();
    let ids = model.tokenizer.encode(TEXT_A).unwrap().ids;
    let t = ids.len();
    let mut rng = Rng::new(32);
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let encoder = Encoder::with_network(&b, &model, with_heads(&model, pooling)).unwrap();
        let (h, d) = (encoder.hidden(), encoder.embedding_dim());
        for layer in [0, 2] {
            let x = b.download(&encoder.states_at(&ids, 1, layer).unwrap()).unwrap();
            let delta = rng.vec(t * h);
            let batch = Batch { steps: 1, tangents: t, tokens: t };
            let tangents =
                encoder.pooled_token_jvp(&x, &delta, 0..t, layer, batch, encoder.pool_all(), &|| Ok(())).unwrap();
            let tangents = b.download(&tangents).unwrap();
            let end = |x: &[f64]| encoder.pooled_from(x.to_vec(), layer, 1, t, encoder.pool_all()).unwrap();
            for i in [0, t / 2, t - 1] {
                let mut direction = vec![0.0; t * h];
                direction[i * h..(i + 1) * h].copy_from_slice(&delta[i * h..(i + 1) * h]);
                let fd = central_difference(end, &x, &direction, 1e-5);
                let what = format!("{pooling:?} pooling, layer {layer}, token {i}");
                assert_close(&what, &tangents[i * d..(i + 1) * d], &fd, 1e-7);
            }
        }
    }
}

/// The adaptive rule's probe of the path (`pooled_path_jvp`) through the Dense modules: its
/// values are the embeddings at the points, and its slopes the central differences along the
/// path; and an explanation with the adaptive rule is complete.
#[test]
fn the_path_probe_through_the_dense_modules_is_the_derivative_along_it() {
    let b = F64::new();
    let model = model_with_dense();
    let encoder = Encoder::with_network(&b, &model, with_heads(&model, Pooling::Mean)).unwrap();
    let ids = model.tokenizer.encode(TEXT_A).unwrap().ids;
    let reference_ids = simattr::attribution::reference_ids(&model.tokenizer, ids.len());
    let (t, d, layer) = (ids.len(), encoder.embedding_dim(), 1);
    let states = |ids: &[u32]| b.download(&encoder.states_at(ids, 1, layer).unwrap()).unwrap();
    let (reference, input) = (states(&reference_ids), states(&ids));
    let delta: Vec<f64> = input.iter().zip(&reference).map(|(x, r)| x - r).collect();
    let alphas = [0.0, 0.4, 1.0];
    let (values, slopes) = encoder.pooled_path_jvp(&reference, &delta, &alphas, layer, t, encoder.pool_all()).unwrap();
    let at = |alpha: f64| {
        let x: Vec<f64> = reference.iter().zip(&delta).map(|(r, d)| r + alpha * d).collect();
        encoder.pooled_from(x, layer, 1, t, encoder.pool_all()).unwrap()
    };
    for (k, &alpha) in alphas.iter().enumerate() {
        assert_close(&format!("e({alpha})"), &values[k * d..(k + 1) * d], &at(alpha), 1e-12);
        let eps = 1e-5;
        let fd: Vec<f64> = at(alpha + eps).iter().zip(at(alpha - eps)).map(|(p, m)| (p - m) / (2.0 * eps)).collect();
        assert_close(&format!("de/dα at {alpha}"), &slopes[k * d..(k + 1) * d], &fd, 1e-7);
    }
    let options = TextOptions::new(layer, Quadrature::new(Rule::GaussLegendreAdaptive, 24).unwrap());
    let explained = explain_pair(&encoder, &model.tokenizer, TEXT_A, TEXT_B, &options, Similarity::Dot, &()).unwrap();
    let (score, error) = (explained.pair.score, explained.pair.completeness_error());
    assert!(error <= 1e-9 * score.abs(), "adaptive: completeness error {error:e} of score {score}");
}

/// Whole explanations through the Dense modules at the first and last layer: complete to 1e-9
/// of the score with 24 Gauss–Legendre steps (and not with a coarse rule), and reverse mode's
/// `A` (from unit cotangents pulled back through the heads) equal to forward mode's to 1e-10;
/// under cos-exact too, to 1e-5 and 1e-6.
#[test]
fn explanations_through_the_dense_modules_are_complete_and_reverse_equals_forward() {
    let b = F64::new();
    let model = model_with_dense();
    let encoder = Encoder::with_network(&b, &model, with_heads(&model, Pooling::Mean)).unwrap();
    let fixture = SentenceModel::load(&fixture_dir("tiny-bert")).unwrap();
    let plain = Encoder::new(&b, &fixture).unwrap();
    // Cos-exact's normalization hands its tangents and seeds over in f32
    // (`attribution::normalization`), which bounds its agreement even in f64.
    for (similarity, tolerance) in [(Similarity::Dot, 1e-10), (Similarity::CosExact, 1e-6)] {
        for layer in [0, 2] {
            let explain = |encoder: &Encoder<'_, F64>, mode: Mode, rule: Rule, steps: usize| {
                let options = TextOptions { mode, ..TextOptions::new(layer, Quadrature::new(rule, steps).unwrap()) };
                explain_pair(encoder, &model.tokenizer, TEXT_A, TEXT_B, &options, similarity, &()).unwrap()
            };
            let forward = explain(&encoder, Mode::Forward, Rule::GaussLegendre, 24);
            assert_eq!(forward.a.dim, 20);
            let (score, error) = (forward.pair.score, forward.pair.completeness_error());
            let coarse = explain(&encoder, Mode::Forward, Rule::RiemannRight, 4).pair.completeness_error();
            let what = format!("{similarity:?}, layer {layer}");
            eprintln!("{what}: score {score:.6}, completeness error {error:.2e} (riemann-right 4: {coarse:.2e})");
            assert!(error <= 10.0 * tolerance * score.abs(), "{what}: completeness error {error:e} of score {score}");
            assert!(
                coarse > 1e3 * error.max(1e-12),
                "{what}: a coarse rule is as complete ({coarse:e}): the check is empty"
            );
            let without = explain(&plain, Mode::Forward, Rule::GaussLegendre, 24).pair.score;
            assert!((without - score).abs() > 1e-3 * score.abs(), "{what}: the heads change no score");
            let reverse = explain(&encoder, Mode::Reverse, Rule::GaussLegendre, 24);
            assert_close(&format!("{what}: reverse mode's A"), &reverse.pair.matrix, &forward.pair.matrix, tolerance);
        }
    }
}

/// The CPU backend (f32) through the Dense modules against `CpuReference<f64>`: the
/// embeddings, and `A` in forward and reverse mode.
#[test]
fn dense_modules_on_the_cpu_backend_match_the_reference() {
    let model = model_with_dense();
    let network = with_heads(&model, Pooling::Mean);
    let reference = F64::new();
    let cpu = CpuBackend::new(BackendSettings::default()).unwrap();
    let want_encoder = Encoder::with_network(&reference, &model, network.clone()).unwrap();
    let got_encoder = Encoder::with_network(&cpu, &model, network).unwrap();
    let ids = model.tokenizer.encode(TEXT_A).unwrap().ids;
    let (want, got) = (
        want_encoder.embed(&ids, 1, want_encoder.pool_all()).unwrap(),
        got_encoder.embed(&ids, 1, got_encoder.pool_all()).unwrap(),
    );
    assert_close("cpu f32 embedding through the Dense modules", &got, &want, crate::F32_OP_TOLERANCE);
    for mode in [Mode::Forward, Mode::Reverse] {
        let options = TextOptions { mode, ..TextOptions::new(1, Quadrature::new(Rule::GaussLegendre, 8).unwrap()) };
        let want = explain_dot(&want_encoder, &model, &options);
        let got = explain_dot(&got_encoder, &model, &options);
        assert_close(
            &format!("cpu f32 A through the Dense modules, {mode:?}"),
            &got,
            &want,
            crate::F32_GOLDEN_TOLERANCE,
        );
    }
}

fn explain_dot<B: Backend>(encoder: &Encoder<'_, B>, model: &SentenceModel, options: &TextOptions) -> Vec<f64> {
    explain_pair(encoder, &model.tokenizer, TEXT_A, TEXT_B, options, Similarity::Dot, &()).unwrap().pair.matrix
}

/// A description and weights that disagree are refused when the encoder is built, naming what
/// disagrees: a Dense module without weights, weights of the wrong width, Normalize not last,
/// and a Dense activation on an exact model.
#[test]
fn heads_that_disagree_with_their_weights_are_refused() {
    let b = F64::new();
    let model = model_with_dense();
    let error = |network: Network, model: &SentenceModel| match Encoder::with_network(&b, model, network) {
        Ok(_) => panic!("built"),
        Err(e) => e.to_string(),
    };
    let one = Network { heads: HEADS[..1].to_vec(), ..Network::of(&model) };
    assert!(error(one, &model).contains("1 Dense modules after pooling, the weights 2"));
    let mut narrow = model_with_dense();
    narrow.params.heads.swap(0, 1);
    assert!(error(with_heads(&narrow, Pooling::Mean), &narrow).contains("Dense module 0 after pooling reads width 24"));
    let normalize_first = Network { heads: vec![Head::Normalize, HEADS[0], HEADS[1]], ..Network::of(&model) };
    assert!(error(normalize_first, &model).contains("Normalize is followed by another module"));
    // An exact model's shift reaches the embedding through linear Dense modules only.
    let mut exact = model_with_dense();
    exact.shifted_reference = true;
    assert!(error(with_heads(&exact, Pooling::Mean), &exact).contains("exact model with a Dense activation"));
    let linear = Network { heads: vec![HEADS[1], HEADS[1]], ..Network::of(&exact) };
    assert!(Encoder::with_network(&b, &exact, linear).is_ok(), "linear Dense modules on an exact model");
}
