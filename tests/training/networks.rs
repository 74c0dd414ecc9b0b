//! Training's gradients through networks other than the families' (`TrainingNet::with_network`),
//! against central finite differences of the loss in f64, on the tiny BERT fixture's weights:
//!
//! - described embeddings (`net::embeddings`): no positions, token type 0, a scale and no
//!   norm; word and position rows under RMSNorm. Every embedding tensor each reads; the
//!   tables a variant does not have have no gradient slot, and RMSNorm's unread β no gradient.
//! - a pre-LN block with a final LayerNorm (`Slot::FinalNorm`): the final norm's `γ` (its `β`
//!   cancels under the shifted reference: a zero gradient), the layers' weights beneath it and
//!   the embeddings; and a trained final norm with no
//!   checkpoint name is refused at export, with nothing written.

use crate::common;

use common::Rng;
use simattr::backend::reference::CpuReference;
use simattr::model::SentenceModel;
use simattr::net::backprop::TrainingNet;
use simattr::net::block::NormKind;
use simattr::net::embeddings::Embeddings;
use simattr::net::encoder::upload_params;
use simattr::net::families::Network;
use simattr::params::{LayerSlot, LinearPart, NormPart, Slot};
use simattr::train::objective::Objective;
use simattr::train::step::{loss_and_gradients, loss_on};

type F64 = CpuReference<f64>;

const SCALED: Embeddings =
    Embeddings { positions: false, token_types: true, scale: Some(5.656854249492381), norm: None };
const RMS: Embeddings = Embeddings { positions: true, token_types: false, scale: Some(0.5), norm: Some(NormKind::Rms) };

/// `⟨∇L, u⟩` of each of `slots` against `(L(θ + εu) − L(θ − εu)) / 2ε`, a random `u` on the
/// tensor (its frozen pad row left alone), under the cos objective.
fn gradients_match_finite_differences(model: &SentenceModel, net: &TrainingNet<'_, F64>, slots: &[Slot], what: &str) {
    let b = net.backend;
    let framing = model.tokenizer.reference_framing();
    let pairs = crate::gradients::pairs(model, |y| y);
    let grads = loss_and_gradients(net, &model.params, framing, &pairs, Objective::Cos, None).unwrap().grads;
    for (n, &slot) in slots.iter().enumerate() {
        let grad = grads.get(slot).unwrap();
        let mut u = Rng::new(40 + n as u64).vec(grad.len());
        if slot == Slot::WordEmbeddings {
            // The pad row is frozen (`padding_idx`): no gradient, and left alone here.
            let (h, pad) = (model.config.hidden_size, model.config.pad_token_id as usize);
            assert!(grad[pad * h..(pad + 1) * h].iter().all(|&g| g == 0.0), "{what}: the pad row moves");
            u[pad * h..(pad + 1) * h].fill(0.0);
        }
        let exact: f64 = grad.iter().zip(&u).map(|(g, d)| g * d).sum();
        let eps = 1e-5;
        let loss_at = |sign: f64| {
            let mut device = upload_params(b, &model.params).unwrap();
            let values = device.uploaded_mut(slot).unwrap();
            values.iter_mut().zip(&u).for_each(|(x, d)| *x += sign * eps * d);
            loss_on(net, &device, framing, &pairs, Objective::Cos).unwrap()
        };
        let fd = (loss_at(1.0) - loss_at(-1.0)) / (2.0 * eps);
        assert!(exact.abs() > 1e-8, "{what} {slot:?}: the derivative is trivially zero");
        assert!(
            (fd - exact).abs() <= 1e-6 * exact.abs(),
            "{what} {slot:?}: ⟨∇L, u⟩ = {exact:e}, finite differences {fd:e}"
        );
    }
}

#[test]
fn described_embeddings_gradients_match_finite_differences() {
    let b = F64::new();
    let cases = [
        (SCALED, vec![Slot::WordEmbeddings, Slot::TokenTypeEmbeddings]),
        (RMS, vec![Slot::WordEmbeddings, Slot::PositionEmbeddings, Slot::EmbeddingNorm(NormPart::Gamma)]),
    ];
    for (embeddings, slots) in cases {
        let model = common::tiny_bert_for(embeddings);
        let kept: Vec<Slot> = model.params.slots().into_iter().filter(|s| !matches!(s, Slot::Layer(..))).collect();
        let unread = |s: &Slot| *s == Slot::EmbeddingNorm(NormPart::Beta) && embeddings.norm == Some(NormKind::Rms);
        let trained: Vec<Slot> = kept.iter().copied().filter(|s| !unread(s)).collect();
        assert_eq!(trained, slots, "{embeddings:?}: the embedding tensors trained");
        let net = TrainingNet::with_network(&b, &model.config, Network { embeddings, ..Network::of(&model) }).unwrap();
        // RMSNorm reads no β: the weights' β (kept, as the layers' norms keep theirs) gets none.
        let framing = model.tokenizer.reference_framing();
        let pairs = crate::gradients::pairs(&model, |y| y);
        let grads = loss_and_gradients(&net, &model.params, framing, &pairs, Objective::Cos, None).unwrap().grads;
        for slot in kept.iter().filter(|s| unread(s)) {
            assert!(grads.get(*slot).unwrap().iter().all(|&g| g == 0.0), "{embeddings:?}: β has a gradient");
        }
        gradients_match_finite_differences(&model, &net, &slots, &format!("{embeddings:?}"));
    }
}

#[test]
fn final_norm_gradients_match_finite_differences_and_export_refuses_an_unnamed_one() {
    let b = F64::new();
    let mut model = SentenceModel::load(&common::fixture_dir("tiny-bert")).unwrap();
    model.params.final_norm = Some(common::final_norm_of(&model.params));
    let last = model.config.num_layers - 1;
    let slots = model.params.slots();
    let final_slots = [Slot::FinalNorm(NormPart::Gamma), Slot::FinalNorm(NormPart::Beta)];
    assert!(final_slots.iter().all(|s| slots.contains(s)), "the final norm is trained");
    let network = Network { final_norm: Some(NormKind::Layer), ..Network::new(common::pre_ln()) };
    let net = TrainingNet::with_network(&b, &model.config, network).unwrap();
    let checked = [
        final_slots[0],
        Slot::Layer(last, LayerSlot::FfnOut(LinearPart::Weight)),
        Slot::Layer(0, LayerSlot::AttentionNorm(NormPart::Gamma)),
        Slot::WordEmbeddings,
    ];
    gradients_match_finite_differences(&model, &net, &checked, "pre-LN with a final norm");
    // Its β adds one vector to every output state, text and reference alike: the shift
    // cancels it, and its gradient is zero.
    let pairs = crate::gradients::pairs(&model, |y| y);
    let framing = model.tokenizer.reference_framing();
    let grads = loss_and_gradients(&net, &model.params, framing, &pairs, Objective::Cos, None).unwrap().grads;
    let beta = grads.get(final_slots[1]).unwrap();
    assert!(beta.iter().all(|g| g.abs() < 1e-12), "the final norm's β has a gradient");
    // Without it in the network, the weights' final norm is an error, not ignored.
    let plain = TrainingNet::with_network(&b, &model.config, Network::new(common::pre_ln())).unwrap();
    let lacking = loss_and_gradients(&plain, &model.params, framing, &pairs, Objective::Cos, None);
    assert!(lacking.is_err_and(|e| e.to_string().contains("final norm the network lacks")));

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("exact");
    let error =
        simattr::train::export::write_exact_model(&model, &model.params, &target, false, &serde_json::json!({}))
            .unwrap_err()
            .to_string();
    assert!(error.contains("FinalNorm(Gamma) has no name"), "{error}");
    assert!(!target.exists(), "a model was written");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "something was left behind");
}
