//! Benchmarks of both CPU backends side by side: one MiniLM-shaped layer's batched JVP
//! (random weights, no files needed) and a whole explanation on the tiny fixture. The
//! reference is the oracle, not the fast path; its numbers are the baseline. The per-op
//! benches at the shapes of docs/design.md §3 are in `ops.rs`, the real-model ones in `explain.rs`.

mod common;

use std::path::PathBuf;

use common::pseudo_random;
use criterion::{criterion_group, criterion_main, Criterion};
use simattr::attribution::{explain_pair, Quadrature, Similarity, TextOptions};
use simattr::backend::cpu::CpuBackend;
use simattr::backend::reference::CpuReference;
use simattr::backend::{Backend, BackendSettings, Batch, Heads, Role, ScoreMods};
use simattr::model::SentenceModel;
use simattr::net::layer::{layer_jvp, LayerShape, TangentsIn};
use simattr::net::Encoder;
use simattr::params::{LayerParams, Linear, Norm};

fn minilm_shaped_layer<B: Backend>(b: &B) -> (LayerParams<B::Tensor>, LayerShape) {
    let (h, ffn) = (384, 1536);
    let linear = |i: usize, o: usize, seed: u64| Linear {
        weight: pseudo_random(i * o, seed, 0.05),
        bias: pseudo_random(o, seed + 1, 0.05),
        in_dim: i,
        out_dim: o,
    };
    let norm = || Norm { gamma: vec![1.0; h], beta: vec![0.0; h] };
    let host = LayerParams {
        qkv: linear(h, 3 * h, 1),
        attention_out: linear(h, h, 7),
        attention_norm: norm(),
        ffn_in: linear(h, ffn, 9),
        ffn_out: linear(ffn, h, 11),
        ffn_norm: norm(),
        head_norms: None,
        post_attention_norm: None,
        post_ffn_norm: None,
    };
    let params = host.try_map(&mut |t: &Vec<f32>, role| b.upload(t, role)).unwrap();
    (params, LayerShape { hidden: h, ffn, heads: Heads { count: 12, dim: 32, scale: None }, eps: 1e-12 })
}

fn bench_layer_jvp_on<B: Backend>(c: &mut Criterion, backend: &B, batch: Batch) {
    let (params, shape) = minilm_shaped_layer(backend);
    let upload = |data: Vec<f32>| backend.upload(&data, Role::Activations { len: data.len() }).unwrap();
    let x = upload(pseudo_random(batch.primal_rows() * shape.hidden, 21, 1.0));
    let dx = upload(pseudo_random(batch.tangent_rows() * shape.hidden, 22, 1.0));
    let name =
        format!("{} layer_jvp minilm-shaped {}x{}x{}", backend.name(), batch.steps, batch.tangents, batch.tokens);
    c.bench_function(&name, |bench| {
        bench.iter(|| layer_jvp(backend, &params, shape, &x, TangentsIn::Dense(&dx), batch, ScoreMods::none()).unwrap())
    });
}

fn bench_layer_jvp(c: &mut Criterion) {
    let batch = Batch { steps: 4, tangents: 12, tokens: 12 };
    bench_layer_jvp_on(c, &CpuReference::<f32>::new(), batch);
    bench_layer_jvp_on(c, &CpuBackend::new(BackendSettings::default()).unwrap(), batch);
    // The whole 50-step batch of a 12-token text, as one pass.
    bench_layer_jvp_on(
        c,
        &CpuBackend::new(BackendSettings::default()).unwrap(),
        Batch { steps: 50, tangents: 12, tokens: 12 },
    );
}

fn bench_tiny_explanation_on<B: Backend>(c: &mut Criterion, backend: &B) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
    let model = SentenceModel::load(&dir).unwrap();
    let encoder = Encoder::new(backend, &model).unwrap();
    let options = TextOptions::new(0, Quadrature::riemann_right(20).unwrap());
    c.bench_function(&format!("{} explain tiny-bert layer 0, 20 steps", backend.name()), |bench| {
        bench.iter(|| {
            explain_pair(
                &encoder,
                &model.tokenizer,
                "A man is playing a guitar.",
                "Someone plays an instrument.",
                &options,
                Similarity::Cos,
                &(),
            )
            .unwrap()
        })
    });
}

fn bench_tiny_explanation(c: &mut Criterion) {
    bench_tiny_explanation_on(c, &CpuReference::<f32>::new());
    bench_tiny_explanation_on(c, &CpuBackend::new(BackendSettings::default()).unwrap());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_layer_jvp, bench_tiny_explanation
}
criterion_main!(benches);
