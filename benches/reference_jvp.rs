//! Benchmarks of the CPU reference backend: one MiniLM-shaped layer's batched JVP (random
//! weights, no files needed) and a whole explanation on the tiny fixture. The reference is the
//! oracle, not the fast path; these numbers are the baseline the fast backends are compared to.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use simattr::attribution::{explain_pair, Quadrature, Similarity, TextOptions};
use simattr::backend::cpu_reference::CpuReference;
use simattr::backend::{Backend, Batch, Heads};
use simattr::model::SentenceModel;
use simattr::net::layer::{layer_jvp, LayerShape};
use simattr::net::params::{LayerParams, Linear, Norm};
use simattr::net::Encoder;

fn pseudo_random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn minilm_shaped_layer(b: &CpuReference<f32>) -> (LayerParams<Vec<f32>>, LayerShape) {
    let (h, ffn) = (384, 1536);
    let linear = |i: usize, o: usize, seed: u64| Linear {
        weight: b.upload(&pseudo_random(i * o, seed, 0.05)).unwrap(),
        bias: b.upload(&pseudo_random(o, seed + 1, 0.05)).unwrap(),
        in_dim: i,
        out_dim: o,
    };
    let norm = || Norm { gamma: vec![1.0; h], beta: vec![0.0; h] };
    let params = LayerParams {
        query: linear(h, h, 1),
        key: linear(h, h, 3),
        value: linear(h, h, 5),
        attention_out: linear(h, h, 7),
        attention_norm: norm(),
        ffn_in: linear(h, ffn, 9),
        ffn_out: linear(ffn, h, 11),
        ffn_norm: norm(),
    };
    (params, LayerShape { hidden: h, ffn, heads: Heads { count: 12, dim: 32 }, eps: 1e-12 })
}

fn bench_layer_jvp(c: &mut Criterion) {
    let backend = CpuReference::<f32>::new();
    let (params, shape) = minilm_shaped_layer(&backend);
    let batch = Batch { steps: 4, tangents: 12, tokens: 12 };
    let x = pseudo_random(batch.primal_rows() * shape.hidden, 21, 1.0);
    let dx = pseudo_random(batch.tangent_rows() * shape.hidden, 22, 1.0);
    c.bench_function("reference layer_jvp minilm-shaped 4 steps x 12 tangents x 12 tokens", |bench| {
        bench.iter(|| layer_jvp(&backend, &params, shape, &x, &dx, batch).unwrap())
    });
}

fn bench_tiny_explanation(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
    let model = SentenceModel::load(&dir).unwrap();
    let backend = CpuReference::<f32>::new();
    let encoder = Encoder::new(&backend, &model).unwrap();
    let options = TextOptions::new(0, Quadrature::riemann_right(20).unwrap());
    c.bench_function("reference explain tiny-bert layer 0, 20 steps", |bench| {
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_layer_jvp, bench_tiny_explanation
}
criterion_main!(benches);
