//! Completeness: Σ_i P_di → e_d(x) − e_d(r), and Σ A → score − reference terms, as the
//! number of quadrature steps grows (tiny model).

mod common;

use common::tiny_model_dir;
use simattr::attribution::{explain_pair, Quadrature, Similarity, TextOptions};
use simattr::backend::cpu_reference::CpuReference;
use simattr::model::SentenceModel;
use simattr::net::Encoder;

#[test]
fn completeness_error_shrinks_with_steps_and_identity_holds() {
    let model = SentenceModel::load(&tiny_model_dir()).unwrap();
    let backend = CpuReference::<f32>::new();
    let encoder = Encoder::new(&backend, &model).unwrap();
    let (a, b) = ("A man is playing a guitar.", "Someone plays an instrument.");
    for layer in [0, 2] {
        for similarity in [Similarity::Dot, Similarity::Cos] {
            let mut errors = Vec::new();
            for steps in [5, 20, 80] {
                let options = TextOptions::new(layer, Quadrature::riemann_right(steps).unwrap());
                let e = explain_pair(&encoder, &model.tokenizer, a, b, &options, similarity, &()).unwrap();
                errors.push(e.pair.completeness_error());
                if steps == 80 {
                    for text in [&e.a, &e.b] {
                        let rel = text.relative_identity_error();
                        assert!(rel < 0.01, "layer {layer}: identity error {rel:.4} ≥ 1% at N = 80");
                    }
                }
            }
            assert!(
                errors[0] > errors[1] && errors[1] > errors[2],
                "layer {layer} {}: completeness errors {errors:?} do not shrink with N = 5, 20, 80",
                similarity.name()
            );
            // Right Riemann is first order: 16× the steps should cut the error by well over 4×.
            assert!(errors[2] < errors[0] / 4.0, "layer {layer}: errors {errors:?} converge too slowly");
        }
    }
}

#[test]
fn chunking_steps_and_directions_does_not_change_the_result() {
    let model = SentenceModel::load(&tiny_model_dir()).unwrap();
    let backend = CpuReference::<f32>::new();
    let encoder = Encoder::new(&backend, &model).unwrap();
    let quadrature = Quadrature::riemann_right(7).unwrap();
    let text = "A man is playing a guitar.";
    let tokens = model.tokenizer.encode(text).unwrap().ids.len();
    let whole = TextOptions::new(1, quadrature);
    let run = |max_tangent_rows: usize| {
        let options = TextOptions { max_tangent_rows, ..whole };
        let tokenized = model.tokenizer.encode(text).unwrap();
        simattr::attribution::attribute_text(&encoder, &model.tokenizer, tokenized, &options, &()).unwrap().projection
    };
    let reference = run(whole.max_tangent_rows);
    // One direction of one step per pass; a few directions per pass (not dividing T); two
    // steps per pass.
    for rows in [1, 4 * tokens, 2 * tokens * tokens] {
        let err = common::max_abs_diff(&reference, &run(rows));
        assert!(err < 1e-6 * common::max_abs(&reference), "max_tangent_rows {rows}: P differs by {err:e}");
    }
}

#[test]
fn progress_announces_and_completes_all_work() {
    use std::cell::Cell;
    struct Count {
        announced: Cell<u64>,
        done: Cell<u64>,
        updates: Cell<u64>,
    }
    impl simattr::attribution::Progress for Count {
        fn add_work(&self, units: u64) {
            self.announced.set(self.announced.get() + units);
        }
        fn advance(&self, units: u64) {
            assert!(self.done.get() + units <= self.announced.get(), "advanced past the announced work");
            self.done.set(self.done.get() + units);
            self.updates.set(self.updates.get() + 1);
        }
    }
    let model = SentenceModel::load(&tiny_model_dir()).unwrap();
    let backend = CpuReference::<f32>::new();
    let encoder = Encoder::new(&backend, &model).unwrap();
    let count = Count { announced: Cell::new(0), done: Cell::new(0), updates: Cell::new(0) };
    let options = TextOptions::new(1, Quadrature::riemann_right(6).unwrap());
    let e = explain_pair(&encoder, &model.tokenizer, "A man is playing a guitar.", "hi", &options, Similarity::Cos, &count)
        .unwrap();
    // Units: steps × token directions × layers above the split, for both texts.
    let expected = 6 * (e.a.tokens() + e.b.tokens()) as u64 * 2;
    assert_eq!((count.announced.get(), count.done.get()), (expected, expected));
    // At least one update per layer of each text, so a bar moves during long work.
    assert!(count.updates.get() >= 4);
}
