//! Training against PyTorch (tests/reference/train_reference.py, float64 autograd): the loss
//! and the gradient of every parameter on each architecture's tiny fixture with the shifted
//! reference, on the f64 reference and the fast CPU backend; and six AdamW updates (warm-up,
//! linear decay, clipping, weight decay, same data order, no dropout) against PyTorch's
//! trajectory. The goldens store gradients and weight changes as f32, hence the tolerances.

use crate::common;

use std::collections::{HashMap, HashSet};

use crate::gradients::{trained_cases, trained_model};
use common::repo;
use serde_json::Value;
use simattr::backend::cpu::CpuBackend;
use simattr::backend::reference::CpuReference;
use simattr::backend::{BackendSettings, Precision, WeightGradients};
use simattr::model::SentenceModel;
use simattr::net::backprop::{Gradients, TrainingNet};
use simattr::params::Slot;
use simattr::train::adamw::{AdamW, AdamWConfig};
use simattr::train::export::{gather, trained_names};
use simattr::train::objective::Objective;
use simattr::train::step::{loss_and_gradients, PairIds};

struct Golden {
    json: Value,
    tensors: HashMap<String, Vec<f64>>,
}

fn golden(name: &str) -> Golden {
    let dir = repo().join("tests/fixtures/golden/train");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join(format!("{name}.safetensors"))).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64);
            (name, values.collect())
        })
        .collect();
    Golden { json, tensors }
}

/// The golden pairs, checking that simattr tokenizes them as sentence-transformers did.
fn golden_pairs(model: &SentenceModel, golden: &Golden) -> Vec<PairIds> {
    let ids = |v: &Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
    golden.json["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let (a, b) = (ids(&p["ids_a"]), ids(&p["ids_b"]));
            assert_eq!(model.tokenizer.encode(p["a"].as_str().unwrap()).unwrap().ids, a, "tokens of {}", p["a"]);
            assert_eq!(model.tokenizer.encode(p["b"].as_str().unwrap()).unwrap().ids, b, "tokens of {}", p["b"]);
            PairIds { a, b, label: p["score"].as_f64().unwrap() }
        })
        .collect()
}

/// Compares `values` of every checkpoint tensor (`prefix` + name in the golden file) with
/// `ours`: per tensor, max error ≤ `tolerance` × its largest golden value, or × 1e-3 of the
/// largest of all for a tensor that is (near) zero.
fn compare(
    model: &SentenceModel,
    golden: &Golden,
    prefix: &str,
    ours: &dyn Fn(Slot) -> Vec<f64>,
    tolerance: f64,
    what: &str,
) {
    compare_some(model, golden, prefix, ours, tolerance, what, &|_| true)
}

#[allow(clippy::too_many_arguments)]
fn compare_some(
    model: &SentenceModel,
    golden: &Golden,
    prefix: &str,
    ours: &dyn Fn(Slot) -> Vec<f64>,
    tolerance: f64,
    what: &str,
    compared: &dyn Fn(&str) -> bool,
) {
    let names = golden.json["tensor_names"].as_array().unwrap();
    let overall = names
        .iter()
        .map(|n| &golden.tensors[&format!("{prefix}{}", n.as_str().unwrap())])
        .flat_map(|t| t.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(overall > 0.0, "{what}: the golden values are all zero");
    let trained = trained_names(model);
    let find = |name: &str| trained.iter().find(|(n, ..)| n == name).unwrap_or_else(|| panic!("{what}: {name}"));
    // Every trained tensor is in the golden file, under a name training writes it under.
    let covered: HashSet<Slot> = names.iter().map(|n| find(n.as_str().unwrap()).1).collect();
    assert_eq!(covered.len(), model.params.slots().len(), "{what}: tensors in the golden file");
    for name in names.iter().map(|n| n.as_str().unwrap()).filter(|n| compared(n)) {
        let (_, slot, pieces) = find(name);
        let have = gather(&ours(*slot), pieces);
        let want = &golden.tensors[&format!("{prefix}{name}")];
        assert_eq!(have.len(), want.len(), "{what}: {name}");
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3 * overall);
        let err = have.iter().zip(want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= tolerance * scale, "{what}: {name}: max error {err:e}, scale {scale:e}");
    }
}

fn gradients_match<B: WeightGradients>(backend: &B, name: &str, tolerance: f64, loss_tolerance: f64) {
    let model = trained_model(name);
    let golden = golden(name);
    let pairs = golden_pairs(&model, &golden);
    let net = TrainingNet::of_model(backend, &model).unwrap();
    let objectives = golden.json["gradients"].as_object().unwrap().clone();
    assert!(!objectives.is_empty());
    for (objective, expected) in objectives {
        let step = loss_and_gradients(
            &net,
            &model.params,
            model.tokenizer.reference_framing(),
            &pairs,
            objective.parse::<Objective>().unwrap(),
            None,
        )
        .unwrap();
        let want = expected["loss"].as_f64().unwrap();
        assert!(
            (step.loss - want).abs() <= loss_tolerance * want.abs(),
            "{name} {objective}: loss {} vs PyTorch {want}",
            step.loss
        );
        let grads: &Gradients = &step.grads;
        let ours = |slot: Slot| grads.get(slot).unwrap().to_vec();
        compare(
            &model,
            &golden,
            &format!("grad.{objective}."),
            &ours,
            tolerance,
            &format!("{name} {objective} gradient"),
        );
    }
}

/// The fixtures whose six AdamW updates are checked: every one whose golden file has them
/// (all but tiny-bert-cls, tiny-roberta and tiny-xlm-roberta).
fn trajectories() -> Vec<&'static str> {
    let with: Vec<&str> = trained_cases().filter(|name| golden(name).json.get("trajectory").is_some()).collect();
    assert_eq!(with.len(), 11, "the fixtures with a golden trajectory: {with:?}");
    with
}

/// In f64 the only difference is the goldens' f32 storage (6e-8 of each value).
#[test]
fn reference_f64_gradients_match_pytorch() {
    for name in trained_cases() {
        gradients_match(&CpuReference::<f64>::new(), name, 1e-6, 1e-12);
    }
}

#[test]
fn fast_cpu_gradients_match_pytorch() {
    let settings = BackendSettings { threads: 2, primal: Some(Precision::F32), ..BackendSettings::default() };
    let backend = CpuBackend::new(settings).unwrap();
    for name in trained_cases() {
        gradients_match(&backend, name, 1e-4, 1e-5);
    }
}

/// Six updates of two epochs of 10 pairs in batches of 4 (the last batch of each epoch 2
/// pairs), as PyTorch took them.
fn trajectory_matches<B: WeightGradients>(backend: &B, name: &str, step_tolerance: f64, tolerance: f64) {
    let model = trained_model(name);
    let golden = golden(name);
    let pairs = golden_pairs(&model, &golden);
    let t = &golden.json["trajectory"];
    let f = |key: &str| t[key].as_f64().unwrap();
    let (batch, epochs, steps) = (f("batch_size") as usize, f("epochs") as u64, f("steps") as u64);
    let config = AdamWConfig {
        lr: f("lr"),
        beta1: t["betas"][0].as_f64().unwrap(),
        beta2: t["betas"][1].as_f64().unwrap(),
        eps: f("eps"),
        weight_decay: f("weight_decay"),
        max_grad_norm: Some(f("max_grad_norm")),
        warmup_steps: f("warmup_steps") as u64,
        total_steps: steps,
    };
    let net = TrainingNet::of_model(backend, &model).unwrap();
    let mut params = model.params.clone();
    let mut optimiser = AdamW::new(config, &params);
    let mut k = 0;
    for _ in 0..epochs {
        for chunk in pairs.chunks(batch) {
            let framing = model.tokenizer.reference_framing();
            let mut step = loss_and_gradients(&net, &params, framing, chunk, Objective::Cos, None).unwrap();
            let stats = optimiser.update(&mut params, &mut step.grads).unwrap();
            let (loss, lr, norm) =
                (t["losses"][k].as_f64().unwrap(), t["lrs"][k].as_f64().unwrap(), t["grad_norms"][k].as_f64().unwrap());
            assert!(
                (step.loss - loss).abs() <= step_tolerance * loss,
                "{name} update {k}: loss {} vs PyTorch {loss}",
                step.loss
            );
            assert!((stats.lr - lr).abs() <= 1e-15, "{name} update {k}: lr {} vs {lr}", stats.lr);
            assert!(
                (stats.grad_norm - norm).abs() <= step_tolerance * norm,
                "{name} update {k}: grad norm {} vs {norm}",
                stats.grad_norm
            );
            k += 1;
        }
    }
    assert_eq!(k as u64, steps);
    let delta = |slot: Slot| -> Vec<f64> {
        let (after, before) = (params.get(slot).unwrap().data(), model.params.get(slot).unwrap().data());
        after.iter().zip(before).map(|(a, b)| *a as f64 - *b as f64).collect()
    };
    // Some tensors have a gradient of exactly zero: a key bias adds the same score to every key
    // of a query, which the softmax removes, and the last LayerNorm's β cancels in the shift.
    // Adam turns the rounding in such a gradient into steps of the learning rate's size in f32
    // (PyTorch's float64 rounding into tiny ones), so those are left out of the comparison.
    let initial_gradient =
        |n: &str| golden.tensors[&format!("grad.cos.{n}")].iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let largest = golden.json["tensor_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| initial_gradient(n.as_str().unwrap()))
        .fold(0.0, f64::max);
    let has_gradient = |n: &str| initial_gradient(n) > 1e-9 * largest;
    let what = format!("{name} weight change after {steps} updates");
    compare_some(&model, &golden, "delta.", &delta, tolerance, &what, &has_gradient);
}

#[test]
fn trajectory_matches_pytorch_on_the_reference() {
    for name in trajectories() {
        // Weights are stored in f32 (as PyTorch trains), the golden run kept them in f64.
        trajectory_matches(&CpuReference::<f64>::new(), name, 1e-5, 1e-3);
    }
}

#[test]
fn trajectory_matches_pytorch_on_the_fast_backend() {
    let settings = BackendSettings { threads: 2, primal: Some(Precision::F32), ..BackendSettings::default() };
    let backend = CpuBackend::new(settings).unwrap();
    for name in trajectories() {
        // Adam divides by √v: where a gradient entry is at f32 rounding level (unused table
        // rows, cancelling sums), its update is full-size whichever way the rounding went.
        trajectory_matches(&backend, name, 1e-4, 5e-3);
    }
}
