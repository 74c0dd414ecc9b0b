//! Progress reporting: all work is announced and completed, with updates as layers finish.
//! (Completeness and pass-splitting live in the shared backend suite, tests/backends/.)

use crate::common;

use common::tiny_model_dir;
use simattr::attribution::{explain_pair, Quadrature, Similarity, TextOptions};
use simattr::backend::cpu::CpuBackend;
use simattr::backend::BackendSettings;
use simattr::model::SentenceModel;
use simattr::net::Encoder;

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
    let backend = CpuBackend::new(BackendSettings::default()).unwrap();
    let encoder = Encoder::new(&backend, &model).unwrap();
    let count = Count { announced: Cell::new(0), done: Cell::new(0), updates: Cell::new(0) };
    let options = TextOptions::new(1, Quadrature::riemann_right(6).unwrap());
    let e =
        explain_pair(&encoder, &model.tokenizer, "A man is playing a guitar.", "hi", &options, Similarity::Cos, &count)
            .unwrap();
    // Units: steps × token directions × layers above the split, for both texts.
    let expected = 6 * (e.a.tokens() + e.b.tokens()) as u64 * 2;
    assert_eq!((count.announced.get(), count.done.get()), (expected, expected));
    // At least one update per layer of each text, so a bar moves during long work.
    assert!(count.updates.get() >= 4);
}
