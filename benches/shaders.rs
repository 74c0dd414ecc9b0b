//! Per-shader benchmarks of the wgpu backend (`--backend wgpu`), one or two entry points per
//! `shaders/*.wgsl` family, at MiniLM's widths (hidden 384, FFN 1536, 12 heads of 32) over a
//! small tangent batch (4 steps × 12 token directions × 12 tokens = 576 tangent rows) that
//! lavapipe, the CPU Vulkan driver of CI, gets through in seconds. Each iteration submits the
//! op and waits for the device (`WgpuBackend::synchronize`), so the time is the shader's.
//!
//! Throughput: flops (a multiply-add is two) for the GEMM and attention, tangent rows for the
//! memory-bound passes. On lavapipe these figures say how the shaders compare with each other;
//! what they are worth is on a real adapter (`--device`, `simattr devices`).
//!
//! `cargo bench --bench shaders` (needs an adapter: lavapipe or a GPU).

mod common;

use std::time::Duration;

use common::pseudo_random;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use simattr::backend::prelude::*;
use simattr::backend::wgpu::{WgpuBackend, WgpuTensor};
use simattr::backend::{BackendSettings, Batch, Heads, Precision, Role, ScoreMods};
use simattr::params::{Linear, Norm};

const HIDDEN: usize = 384;
const FFN: usize = 1536;
const BATCH: Batch = Batch { steps: 4, tangents: 12, tokens: 12 };
const HEADS: Heads = Heads { count: 12, dim: 32, scale: None };

fn tensor(b: &WgpuBackend, len: usize, seed: u64) -> WgpuTensor {
    b.upload(&pseudo_random(len, seed, 1.0), Role::Activations { len }).unwrap()
}

fn bench_shaders(c: &mut Criterion) {
    let backend = WgpuBackend::new(BackendSettings::default(), None, Precision::F32).expect("a wgpu adapter");
    let b = &backend;
    let (rows, trows) = (BATCH.primal_rows(), BATCH.tangent_rows());
    let mut group = c.benchmark_group(format!("wgpu ({})", b.adapter_name()));
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));

    let host = Linear {
        weight: pseudo_random(HIDDEN * FFN, 1, 0.05),
        bias: pseudo_random(FFN, 2, 0.1),
        in_dim: HIDDEN,
        out_dim: FFN,
    };
    let ffn_in = host.try_map(&mut |t: &Vec<f32>, role| b.upload(t, role)).unwrap();
    let x = tensor(b, trows * HIDDEN, 3);
    group.throughput(Throughput::Elements((2 * trows * HIDDEN * FFN) as u64));
    group.bench_function(format!("matmul {trows}×{HIDDEN}→{FFN}"), |bench| {
        bench.iter(|| {
            let y = b.matmul(&x, trows, &ffn_in).unwrap();
            b.synchronize().unwrap();
            y
        })
    });
    let dy = tensor(b, trows * FFN, 4);
    group.bench_function(format!("matmul_vjp {trows}×{FFN}→{HIDDEN}"), |bench| {
        bench.iter(|| {
            let dx = b.matmul_vjp(&dy, trows, &ffn_in).unwrap();
            b.synchronize().unwrap();
            dx
        })
    });

    let norm_host = Norm { gamma: vec![1.0; HIDDEN], beta: vec![0.0; HIDDEN] };
    let norm = norm_host.try_map(HIDDEN, &mut |t: &Vec<f32>, role| b.upload(t, role)).unwrap();
    let primal = tensor(b, rows * HIDDEN, 5);
    let (_, saved) = b.layer_norm(&primal, rows, HIDDEN, &norm, 1e-12).unwrap();
    group.throughput(Throughput::Elements(trows as u64));
    group.bench_function(format!("layer_norm_jvp {trows} rows"), |bench| {
        bench.iter(|| {
            let dy = b.layer_norm_jvp(&saved, &norm, &x, BATCH, HIDDEN).unwrap();
            b.synchronize().unwrap();
            dy
        })
    });
    let pre = tensor(b, rows * FFN, 6);
    group.bench_function(format!("gelu_jvp {trows} rows × {FFN}"), |bench| {
        bench.iter(|| {
            let d = b.gelu_jvp(&pre, &dy, BATCH, FFN).unwrap();
            b.synchronize().unwrap();
            d
        })
    });

    let qkv = tensor(b, rows * 3 * HIDDEN, 7);
    let dqkv = tensor(b, trows * 3 * HIDDEN, 8);
    let (_, attention) = b.attention(&qkv, BATCH.steps, BATCH.tokens, HEADS, ScoreMods::none()).unwrap();
    let t = BATCH.tokens;
    // Scores and context, each a multiply-add per (query, key, feature), for q̇kᵀ + qk̇ᵀ and ṖV + PV̇.
    group.throughput(Throughput::Elements((2 * 4 * BATCH.tangent_seqs() * t * t * HIDDEN) as u64));
    group.bench_function(format!("attention_jvp {} sequences × {t} tokens", BATCH.tangent_seqs()), |bench| {
        bench.iter(|| {
            let d = b.attention_jvp(&qkv, &attention, &dqkv, BATCH, HEADS).unwrap();
            b.synchronize().unwrap();
            d
        })
    });

    let mut projection = b.zeros(t * HIDDEN).unwrap();
    let d_states = tensor(b, trows * HIDDEN, 9);
    let weights = vec![0.25; BATCH.steps];
    group.throughput(Throughput::Elements(trows as u64));
    group.bench_function(format!("pool_accumulate {trows} rows"), |bench| {
        bench.iter(|| {
            b.pool_accumulate(&mut projection, &d_states, BATCH, HIDDEN, &weights, 0).unwrap();
            b.synchronize().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench_shaders);
criterion_main!(benches);
