//! Training's gradients (issue 16) against math: central finite differences of the loss in
//! f64 on the reference backend, for every trainable tensor of every architecture's tiny
//! fixture, with the shifted reference and both objectives; and the fast CPU backend against
//! the f64 reference. (tests/training_golden.rs checks them against PyTorch autograd.)

use crate::common;

use common::{fixture_dir, Rng};
use simattr::backend::cpu::CpuBackend;
use simattr::backend::reference::CpuReference;
use simattr::backend::{BackendSettings, Precision};
use simattr::model::{Architecture, SentenceModel};
use simattr::net::backprop::TrainingNet;
use simattr::net::encoder::upload_params;
use simattr::params::{EncoderParams, HostTensor, LayerSlot, LinearPart, NormPart, Slot};
use simattr::train::objective::Objective;
use simattr::train::step::{loss_and_gradients, loss_on, PairIds};

const TEXTS: [(&str, &str, f64); 4] = [
    ("a cat sat on the mat", "the dog ran home", 0.3),
    ("hello world", "hello there world", 0.8),
    ("the quick brown fox", "a fast fox jumps", 0.6),
    ("rain", "it is raining again today", 0.4),
];

pub fn pairs(model: &SentenceModel, labels: impl Fn(f64) -> f64) -> Vec<PairIds> {
    let ids = |t: &str| model.tokenizer.encode(t).expect("tokenize").ids;
    TEXTS.iter().map(|&(a, b, y)| PairIds { a: ids(a), b: ids(b), label: labels(y) }).collect()
}

/// `⟨∇L, u⟩` against `(L(θ + εu) − L(θ − εu)) / 2ε` with a random `u` on one tensor.
fn check_slot(model: &SentenceModel, slot: Slot, objective: Objective, label_scale: f64, seed: u64) {
    let b = CpuReference::<f64>::new();
    let net = TrainingNet::of_model(&b, model).unwrap();
    let framing = model.tokenizer.reference_framing();
    let pairs = pairs(model, |y| y * label_scale);
    let grads = loss_and_gradients(&net, &model.params, framing, &pairs, objective, None).unwrap().grads;
    let grad = grads.get(slot).unwrap();
    let mut rng = Rng::new(seed);
    let mut u = rng.vec(grad.len());
    // The pad rows PyTorch's `padding_idx` keeps fixed get no gradient, so the direction
    // leaves them alone (and their gradient must be zero).
    let width = model.config.hidden_size;
    let frozen = match slot {
        Slot::WordEmbeddings => model.config.padding_idx.map(|row| row as usize),
        Slot::PositionEmbeddings if model.config.architecture != Architecture::Bert => {
            Some(model.config.pad_token_id as usize)
        }
        _ => None,
    };
    if let Some(row) = frozen {
        assert!(grad[row * width..(row + 1) * width].iter().all(|&g| g == 0.0), "{slot:?}: the pad row has a gradient");
        u[row * width..(row + 1) * width].fill(0.0);
    }
    // A repeated key/value head is one parameter: the direction moves its copies together.
    if let (Some(repeated), Slot::Layer(_, LayerSlot::Qkv(part))) = (model.params.repeated_heads, slot) {
        repeated.retie(&mut u, if part == LinearPart::Weight { width } else { 1 });
    }
    let exact: f64 = grad.iter().zip(&u).map(|(g, d)| g * d).sum();

    let loss_at = |sign: f64, eps: f64| -> (f64, Vec<f64>) {
        if slot == Slot::RelativeBias {
            // The table stays on the host in f32: step it there and use the step it really took.
            let mut params: EncoderParams<HostTensor> = model.params.clone();
            let table = params.get_mut(slot).unwrap().data_mut();
            let before: Vec<f64> = table.iter().map(|&x| x as f64).collect();
            table.iter_mut().zip(&u).for_each(|(x, d)| *x = (*x as f64 + sign * eps * d) as f32);
            let taken = table.iter().zip(&before).map(|(&x, b)| x as f64 - b).collect();
            let device = upload_params(&b, &params).unwrap();
            (loss_on(&net, &device, framing, &pairs, objective).unwrap(), taken)
        } else {
            let mut device = upload_params(&b, &model.params).unwrap();
            let values = device.uploaded_mut(slot).unwrap();
            values.iter_mut().zip(&u).for_each(|(x, d)| *x += sign * eps * d);
            (loss_on(&net, &device, framing, &pairs, objective).unwrap(), u.iter().map(|d| sign * eps * d).collect())
        }
    };
    // The table is stepped in f32, by the step it really took (T5's is curved enough that a
    // step of 1e-3 is 2% off).
    let eps = 1e-5;
    let ((plus, step_plus), (minus, step_minus)) = (loss_at(1.0, eps), loss_at(-1.0, eps));
    let along: f64 = grad.iter().zip(step_plus.iter().zip(&step_minus)).map(|(g, (p, m))| g * (p - m)).sum();
    let fd = plus - minus;
    // Central differences' truncation error (ε²·L‴) reaches 3e-7 of the change on the rotary
    // families' losses; the table is stepped in f32.
    let tolerance = if slot == Slot::RelativeBias { 1e-5 } else { 1e-6 };
    if shift_cancels(model, slot) {
        // The same constant reaches a text's states and its reference's: the shift removes it.
        assert!(exact.abs() < 1e-12 && fd.abs() < 1e-14, "{slot:?}: ⟨∇L, u⟩ = {exact:e}, finite differences {fd:e}");
        return;
    }
    assert!(exact.abs() > 1e-8, "{slot:?}: the derivative is trivially zero");
    assert!(
        // Besides, the loss's own rounding (1e-12 of it) where the change is that small.
        (fd - along).abs() <= tolerance * along.abs() + 1e-12 * plus.abs(),
        "{slot:?} ({}): ⟨∇L, Δθ⟩ = {along:e}, L(θ+) − L(θ−) = {fd:e}",
        objective.name()
    );
}

/// The last norm's `β` (the final norm's, or a post-LN block's last) adds the same vector to
/// every output state, so with the shifted reference (and pooling by token weights) it cancels
/// from every embedding: its gradient is zero.
fn shift_cancels(model: &SentenceModel, slot: Slot) -> bool {
    let last = model.config.num_layers - 1;
    match model.config.architecture.final_norm_name() {
        Some(_) => slot == Slot::FinalNorm(NormPart::Beta),
        None => slot == Slot::Layer(last, LayerSlot::FfnNorm(NormPart::Beta)),
    }
}

/// The tiny fixtures training is checked on, one or more per family (`golden.rs` holds
/// PyTorch's gradients for each).
pub const TRAINED_FIXTURES: [&str; 12] = [
    "tiny-bert",
    "tiny-bert-cls",
    "tiny-mpnet",
    "tiny-roberta",
    "tiny-xlm-roberta",
    "tiny-t5",
    "tiny-t5-relu",
    "tiny-modernbert",
    "tiny-nomic-bert",
    "tiny-jina-bert",
    "tiny-qwen3",
    "tiny-gemma3",
];

/// The golden files of training through the linear Dense modules after pooling: the fixture
/// named without `-dense`, whole (`train_reference_generic.py --with-dense`).
pub const WITH_DENSE: [&str; 2] = ["tiny-t5-dense", "tiny-gemma3-dense"];

/// Every golden training case: the fixtures' encoders alone, then with their Dense modules.
pub fn trained_cases() -> impl Iterator<Item = &'static str> {
    TRAINED_FIXTURES.into_iter().chain(WITH_DENSE)
}

/// A fixture as training takes it: its Dense modules after pooling left out (the goldens of
/// most fixtures train the encoder alone).
pub fn encoder_only(name: &str) -> SentenceModel {
    let mut model = SentenceModel::load(&fixture_dir(name)).unwrap();
    model.params.heads.clear();
    model.dense.clear();
    model
}

/// The model a golden training case trains: `tiny-t5-dense` is tiny-t5 with its Dense
/// modules, any other name the fixture's encoder alone.
pub fn trained_model(case: &str) -> SentenceModel {
    match case.strip_suffix("-dense") {
        Some(fixture) => SentenceModel::load(&fixture_dir(fixture)).unwrap(),
        None => encoder_only(case),
    }
}

fn check_model(name: &str) {
    let model = encoder_only(name);
    let slots = model.params.slots();
    for (n, &slot) in slots.iter().enumerate() {
        check_slot(&model, slot, Objective::Cos, 1.0, 100 + n as u64);
    }
    // The dot objective's labels in dot units; a table and a layer's tensor.
    for slot in [Slot::WordEmbeddings, slots[slots.len() / 2]] {
        check_slot(&model, slot, Objective::Dot, 2.0, 7);
    }
}

#[test]
fn bert_gradients_match_finite_differences() {
    check_model("tiny-bert");
}

#[test]
fn bert_cls_gradients_match_finite_differences() {
    check_model("tiny-bert-cls");
}

#[test]
fn mpnet_gradients_match_finite_differences() {
    check_model("tiny-mpnet");
}

#[test]
fn roberta_gradients_match_finite_differences() {
    check_model("tiny-roberta");
}

#[test]
fn xlm_roberta_gradients_match_finite_differences() {
    check_model("tiny-xlm-roberta");
}

/// T5: RMSNorm, no biases (none trained), the shared relative bias, gated GELU; and ReLU.
#[test]
fn t5_gradients_match_finite_differences() {
    check_model("tiny-t5");
    check_model("tiny-t5-relu");
}

/// ModernBERT: rotary attention with global and local (windowed) layers, LayerNorms without
/// shifts, a first layer without an attention norm, the final norm.
#[test]
fn modernbert_gradients_match_finite_differences() {
    check_model("tiny-modernbert");
}

/// Qwen3 (causal, QK-norm, grouped-query heads, last-token pooling) and Gemma 3 (sandwich
/// norms stored as `w` for `1 + w`, sliding windows, one key/value head, scaled embeddings).
#[test]
fn qwen3_and_gemma3_gradients_match_finite_differences() {
    check_model("tiny-qwen3");
    check_model("tiny-gemma3");
}

/// Through the linear Dense modules after pooling (tiny-t5's one, tiny-gemma3's two): every
/// Dense weight, and a table and a layer's tensor below them.
#[test]
fn dense_module_gradients_match_finite_differences() {
    for name in ["tiny-t5", "tiny-gemma3"] {
        let model = SentenceModel::load(&fixture_dir(name)).unwrap();
        let slots = model.params.slots();
        let dense: Vec<Slot> = slots.iter().copied().filter(|s| matches!(s, Slot::Dense(_))).collect();
        assert_eq!(dense.len(), model.dense.len(), "{name}: a slot per Dense module");
        for (n, slot) in dense.into_iter().chain([Slot::WordEmbeddings, slots[slots.len() / 2]]).enumerate() {
            check_slot(&model, slot, Objective::Cos, 1.0, 300 + n as u64);
        }
        check_slot(&model, Slot::Dense(0), Objective::Dot, 2.0, 9);
    }
}

/// NomicBERT (rotary, SwiGLU, bias-free projections) and JinaBERT (ALiBi, GeGLU).
#[test]
fn nomic_and_jina_gradients_match_finite_differences() {
    check_model("tiny-nomic-bert");
    check_model("tiny-jina-bert");
}

/// The fast backend (f32, f32 primal) against the f64 reference, every tensor.
fn fast_matches_reference(name: &str) {
    let model = encoder_only(name);
    let framing = model.tokenizer.reference_framing();
    let pairs = pairs(&model, |y| y);
    let reference = CpuReference::<f64>::new();
    let settings = BackendSettings { threads: 2, primal: Some(Precision::F32), ..BackendSettings::default() };
    let fast = CpuBackend::new(settings).unwrap();
    let run = |b: &dyn Fn() -> simattr::Result<simattr::train::step::StepResult>| b().unwrap();
    let expected = run(&|| {
        let net = TrainingNet::new(&reference, &model.config, model.pooling)?;
        loss_and_gradients(&net, &model.params, framing, &pairs, Objective::Cos, None)
    });
    let got = run(&|| {
        let net = TrainingNet::new(&fast, &model.config, model.pooling)?;
        loss_and_gradients(&net, &model.params, framing, &pairs, Objective::Cos, None)
    });
    assert!((expected.loss - got.loss).abs() <= 1e-6 * expected.loss.abs());
    let overall = expected.grads.iter().flat_map(|(_, g)| g).fold(0.0f64, |m, v| m.max(v.abs()));
    for (slot, want) in expected.grads.iter() {
        let have = got.grads.get(slot).unwrap();
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = want.iter().zip(have).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        // Relative to the tensor's own largest gradient, or for a tensor whose gradient is
        // (near) zero, to the largest of all.
        let bound = 1e-4 * scale.max(1e-3 * overall);
        assert!(err <= bound, "{name} {slot:?}: max error {err:e}, max |g| {scale:e} (of all {overall:e})");
    }
}

#[test]
fn fast_backend_gradients_match_the_reference() {
    for name in TRAINED_FIXTURES {
        fast_matches_reference(name);
    }
}
