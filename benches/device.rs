//! A device backend at `benches/explain.rs`'s settings, on models of the real shapes with
//! random weights (`common::wide_model`, written from the tiny fixtures): what a GPU machine
//! that cannot be sent the real weights can still measure. For each model, layer and number of
//! steps it prints the GFLOP done, the median time of a pair (criterion's samples), the
//! GFLOP/s achieved and their share of the card's f32 peak, and for each 16-bit storage
//! precision the backend offers, max|ΔA| / max|A| against its own f32 matrix.
//!
//! `SIMATTR_BENCH_BACKEND`: `cuda` (default), `cuda-emu`, `wgpu`, `cpu`;
//! `SIMATTR_BENCH_DEVICE`: the device number; `SIMATTR_BENCH_MODELS`: `minilm`, `mpnet` or
//! both (default); `SIMATTR_BENCH_PEAK_GFLOPS`: the device's f32 peak where the table below
//! does not know it; `SIMATTR_BENCH_QUICK=1`: each model's last setting only, at 5 steps, to
//! check the bench itself on a slow backend. The numbers mean something on a GPU only.

mod common;

use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use simattr::attribution::{explain_pair, Quadrature, Similarity, TextOptions};
use simattr::backend::{Backend, BackendChoice, BackendKind, BackendSettings, Precision, UseBackend};
use simattr::model::SentenceModel;
use simattr::net::Encoder;

use common::wide_model::{self, Shape};

/// One model's case: the fixture it is widened from, its shape, the pair, the settings.
struct Case {
    name: &'static str,
    fixture: &'static str,
    shape: Shape,
    pair: (&'static str, &'static str),
    settings: &'static [(usize, usize)],
}

const CASES: [Case; 2] = [
    Case {
        name: "minilm",
        fixture: wide_model::MINILM.0,
        shape: wide_model::MINILM.1,
        pair: ("A man is playing a guitar.", "Someone plays an instrument."),
        settings: &[(0, 50), (3, 50), (5, 50)],
    },
    Case {
        name: "mpnet",
        fixture: wide_model::MPNET.0,
        shape: wide_model::MPNET.1,
        pair: ("A man is playing a guitar on the stage tonight.", "Someone plays an instrument in front of a crowd."),
        settings: &[(11, 50), (9, 50), (6, 20)],
    },
];

/// f32 peaks (GFLOP/s, without tensor cores, which these kernels do not use) of common cards,
/// by a part of their name.
const PEAKS: [(&str, f64); 7] = [
    ("H200", 67_000.0),
    ("H100 PCIe", 51_200.0),
    ("H100", 67_000.0),
    ("A100", 19_500.0),
    ("L4", 30_300.0),
    ("T4", 8_100.0),
    ("RTX 4090", 82_600.0),
];

/// The case's `(layer, steps)` settings, or with `SIMATTR_BENCH_QUICK` its last layer at 5 steps.
fn settings(case: &Case) -> Vec<(usize, usize)> {
    match std::env::var_os("SIMATTR_BENCH_QUICK").is_some_and(|v| v != "0") {
        true => vec![(case.settings[case.settings.len() - 1].0, 5)],
        false => case.settings.to_vec(),
    }
}

fn peak(backend_name: &str) -> Option<f64> {
    if let Some(peak) = std::env::var("SIMATTR_BENCH_PEAK_GFLOPS").ok().and_then(|p| p.parse().ok()) {
        return Some(peak);
    }
    PEAKS.iter().find(|(name, _)| backend_name.contains(name)).map(|&(_, peak)| peak)
}

fn choice(precision: Precision) -> Option<BackendChoice> {
    let kind: BackendKind = std::env::var("SIMATTR_BENCH_BACKEND").unwrap_or_else(|_| "cuda".into()).parse().unwrap();
    let device = std::env::var("SIMATTR_BENCH_DEVICE").ok().map(|d| d.parse().expect("SIMATTR_BENCH_DEVICE: a number"));
    let device = device.filter(|_| matches!(kind, BackendKind::Wgpu | BackendKind::Cuda));
    BackendChoice::new(kind, device, Some(precision), None, BackendSettings::default()).ok()
}

/// The pair's attribution matrix at one setting, on whatever backend it is handed.
struct Matrix<'a> {
    model: &'a SentenceModel,
    pair: (&'a str, &'a str),
    options: TextOptions,
}

impl UseBackend for Matrix<'_> {
    type Output = Vec<f64>;
    fn with<B: Backend + Send + 'static>(self, backend: B) -> Vec<f64> {
        let encoder = Encoder::new(&backend, self.model).unwrap();
        let (a, b) = self.pair;
        explain_pair(&encoder, &self.model.tokenizer, a, b, &self.options, Similarity::Cos, &()).unwrap().pair.matrix
    }
}

/// Criterion's timing of one case on the f32 backend.
struct Timing<'a> {
    criterion: &'a mut Criterion,
    case: &'a Case,
    model: &'a SentenceModel,
}

impl UseBackend for Timing<'_> {
    type Output = ();
    fn with<B: Backend + Send + 'static>(self, backend: B) {
        let Timing { criterion, case, model } = self;
        let encoder = Encoder::new(&backend, model).unwrap();
        let (a, b) = case.pair;
        let tokens = [a, b].map(|t| model.tokenizer.encode(t).unwrap().ids.len());
        let name = backend.name();
        eprintln!("{} shape on {name}, random weights, {}+{} tokens", case.name, tokens[0], tokens[1]);
        let mut group = criterion.benchmark_group(format!("{} shape on {name}", case.name));
        group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
        for (layer, steps) in settings(case) {
            let done: f64 = tokens.iter().map(|&t| encoder.attribution_flops(layer, t, steps).done()).sum();
            group.throughput(Throughput::Elements(done as u64));
            let options = TextOptions::new(layer, Quadrature::riemann_right(steps).unwrap());
            let explain = || explain_pair(&encoder, &model.tokenizer, a, b, &options, Similarity::Cos, &()).unwrap();
            explain(); // compiles the kernels, fills the pools
            let median = common::median_seconds(5, explain);
            let achieved = done / median / 1e9;
            let share = peak(&name).map(|p| format!(" = {:.1}% of the f32 peak {p:.0}", 100.0 * achieved / p));
            eprintln!(
                "layer {layer}, {steps} steps: {:.2} GFLOP; median of 5 {:.2} ms per pair, {achieved:.0} GFLOP/s{}",
                done / 1e9,
                median * 1e3,
                share.unwrap_or_default()
            );
            group.bench_function(format!("layer {layer}, {steps} steps"), |bench| bench.iter(explain));
        }
        group.finish();
    }
}

fn bench_device(c: &mut Criterion) {
    let only = std::env::var("SIMATTR_BENCH_MODELS").unwrap_or_default();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let Some(f32_choice) = choice(Precision::F32) else {
        eprintln!("benches/device: SIMATTR_BENCH_BACKEND names no backend with f32");
        return;
    };
    for case in CASES.iter().filter(|case| only.is_empty() || only.split(',').any(|m| m == case.name)) {
        let dir = tempfile::tempdir().unwrap();
        wide_model::write(&fixtures.join(case.fixture), case.shape, dir.path());
        let model = SentenceModel::load(dir.path()).unwrap();
        if let Err(e) = f32_choice.open(Timing { criterion: &mut *c, case, model: &model }) {
            eprintln!("benches/device: {e}");
            return;
        }
        // The 16-bit storage precisions against f32, on the same backend, at each setting: the
        // f32 matrix once per setting, each precision the backend offers against it.
        let halves: Vec<(Precision, BackendChoice)> =
            [Precision::F16, Precision::Bf16].into_iter().filter_map(|p| Some((p, choice(p)?))).collect();
        if halves.is_empty() {
            continue;
        }
        for (layer, steps) in settings(case) {
            let matrix = |choice: &BackendChoice| {
                let options = TextOptions::new(layer, Quadrature::riemann_right(steps).unwrap());
                choice.open(Matrix { model: &model, pair: case.pair, options }).unwrap()
            };
            let single = matrix(&f32_choice);
            let largest = single.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (precision, half) in &halves {
                let rounded = matrix(half);
                let error = single.iter().zip(&rounded).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / largest;
                eprintln!(
                    "{} shape, {} storage, layer {layer}, {steps} steps: max|ΔA| / max|A| against f32 = {error:.2e}",
                    case.name,
                    precision.name()
                );
            }
        }
    }
}

criterion_group!(benches, bench_device);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
