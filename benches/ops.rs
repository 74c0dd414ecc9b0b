//! Per-op benchmarks of the fast CPU backend at the shapes the models produce (docs/design.md §3):
//! hidden 384 / ffn 1536 (MiniLM) and 768 / 3072 (MPNet, BERT-base), a tangent batch of
//! N = 50 steps × T token directions × T tokens for T = 12 and T = 32.
//!
//! Throughput is reported as criterion "elements" per second, where an element is one flop
//! (a multiply-add is two) for the GEMMs and attention, and one tangent row for the
//! memory-bound passes. Compare the GEMM figures with this machine's measured f32 ceiling
//! (≈ 120–210 GFLOP/s on 2 threads: docs/performance.md, "The machine's f32 GEMM ceiling").
//!
//! `cargo bench --bench ops` (all), or e.g. `cargo bench --bench ops -- 'h384.*t12'`.

mod common;

use std::time::Duration;

use common::pseudo_random;
use criterion::{criterion_group, BenchmarkGroup, Criterion, Throughput};
use simattr::backend::cpu::{CpuBackend, CpuTensor};
use simattr::backend::{BackendSettings, Batch, FusedOps, Heads, MathOps, ResidualNorm, Role, ScoreMods, Storage};
use simattr::params::{Linear, Norm};

const STEPS: usize = 50;

struct Shape {
    hidden: usize,
    ffn: usize,
    tokens: usize,
}

impl Shape {
    fn label(&self) -> String {
        format!("h{}-f{}-t{}", self.hidden, self.ffn, self.tokens)
    }
    fn batch(&self) -> Batch {
        Batch { steps: STEPS, tangents: self.tokens, tokens: self.tokens }
    }
    fn heads(&self) -> Heads {
        Heads { count: self.hidden / 32, dim: 32, scale: None }
    }
}

fn activations(b: &CpuBackend, len: usize, seed: u64) -> CpuTensor {
    b.upload(&pseudo_random(len, seed, 1.0), Role::Activations { len }).unwrap()
}

fn linear(b: &CpuBackend, in_dim: usize, out_dim: usize, seed: u64) -> Linear<CpuTensor> {
    let scale = 1.0 / (in_dim as f32).sqrt();
    let host = Linear {
        weight: pseudo_random(in_dim * out_dim, seed, scale),
        bias: pseudo_random(out_dim, seed + 1, 0.1),
        in_dim,
        out_dim,
    };
    host.try_map(&mut |t: &Vec<f32>, role| b.upload(t, role)).unwrap()
}

fn norm(b: &CpuBackend, width: usize) -> Norm<CpuTensor> {
    let host = Norm { gamma: vec![1.0; width], beta: vec![0.0; width] };
    host.try_map(width, &mut |t: &Vec<f32>, role| b.upload(t, role)).unwrap()
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
}

/// The four tangent GEMMs of a layer over all `N·T·T` tangent rows.
fn gemms(c: &mut Criterion, b: &CpuBackend, shape: &Shape) {
    let rows = shape.batch().tangent_rows();
    let (h, f) = (shape.hidden, shape.ffn);
    let mut group = c.benchmark_group(format!("gemm {}", shape.label()));
    configure(&mut group);
    for (name, in_dim, out_dim) in [("qkv", h, 3 * h), ("attention_out", h, h), ("ffn_in", h, f), ("ffn_out", f, h)] {
        let (x, layer) = (activations(b, rows * in_dim, 1), linear(b, in_dim, out_dim, 2));
        group.throughput(Throughput::Elements((2 * rows * in_dim * out_dim) as u64));
        group.bench_function(format!("{name} {rows}x{in_dim}x{out_dim}"), |bench| {
            bench.iter(|| b.matmul(&x, rows, &layer).unwrap())
        });
    }
    group.finish();
}

/// Attention with its JVP: the dense path of layers above the first, and the structured path
/// of the first layer (token directions).
fn attention(c: &mut Criterion, b: &CpuBackend, shape: &Shape) {
    let (batch, heads) = (shape.batch(), shape.heads());
    let (t, w) = (batch.tokens as f64, heads.width() as f64);
    let mut group = c.benchmark_group(format!("attention {}", shape.label()));
    configure(&mut group);
    let qkv = activations(b, batch.primal_rows() * 3 * heads.width(), 3);
    let dqkv = activations(b, batch.tangent_rows() * 3 * heads.width(), 4);
    let d_rows = activations(b, batch.tokens * 3 * heads.width(), 5);
    let primal = STEPS as f64 * 4.0 * t * t * w;
    let dense = batch.tangent_seqs() as f64 * 8.0 * t * t * w;
    group.throughput(Throughput::Elements((primal + dense) as u64));
    group.bench_function("attention_with_jvp (dense tangents)", |bench| {
        bench.iter(|| b.attention_with_jvp(&qkv, &dqkv, batch, heads, ScoreMods::none()).unwrap())
    });
    // Counted as the dense flops it replaces, so the two rates compare directly.
    group.bench_function("attention_with_token_jvp (first layer), dense-equivalent flops", |bench| {
        bench.iter(|| {
            b.attention_with_token_jvp(&qkv, &d_rows, 0..batch.tokens, batch, heads, ScoreMods::none()).unwrap()
        })
    });
    group.finish();
}

/// The memory-bound block ops, per tangent row.
fn blocks(c: &mut Criterion, b: &CpuBackend, shape: &Shape) {
    let batch = shape.batch();
    let (h, f, rows, trows) = (shape.hidden, shape.ffn, batch.primal_rows(), batch.tangent_rows());
    let mut group = c.benchmark_group(format!("blocks {}", shape.label()));
    configure(&mut group);
    group.throughput(Throughput::Elements(trows as u64));
    let (z, residual, dz, d_residual) = (
        activations(b, rows * h, 6),
        activations(b, rows * h, 7),
        activations(b, trows * h, 8),
        activations(b, trows * h, 9),
    );
    let (bias, ln_norm) = (activations(b, h, 10), norm(b, h));
    let ln = ResidualNorm { norm: &ln_norm, width: h, eps: 1e-12 };
    group.bench_function("bias_residual_norm_jvp per tangent row", |bench| {
        bench.iter(|| b.bias_residual_norm_jvp(&z, &bias, &residual, &dz, &d_residual, batch, ln).unwrap())
    });
    let (pre, dpre, ffn_bias) = (activations(b, rows * f, 11), activations(b, trows * f, 12), activations(b, f, 13));
    group.bench_function("bias_gelu_jvp per tangent row", |bench| {
        bench.iter(|| b.bias_gelu_jvp(&pre, &ffn_bias, &dpre, batch, f).unwrap())
    });
    // The last layer's output block: rows reduced before the GEMM, against the plain path.
    let (act, dact, ffn_out) = (activations(b, rows * f, 14), activations(b, trows * f, 15), linear(b, f, h, 16));
    group.bench_function("pooled_linear_residual_norm_jvp (last layer) per tangent row", |bench| {
        bench.iter(|| {
            b.pooled_linear_residual_norm_jvp(&act, &dact, &residual, &d_residual, &ffn_out, batch, ln).unwrap()
        })
    });
    group.bench_function("plain path of the same: GEMMs, norm JVP, mean_pool per tangent row", |bench| {
        bench.iter(|| {
            let z = b.matmul(&act, rows, &ffn_out).unwrap();
            let dz = b.matmul(&dact, trows, &ffn_out).unwrap();
            let (_, dy) = b.bias_residual_norm_jvp(&z, &ffn_out.bias, &residual, &dz, &d_residual, batch, ln).unwrap();
            b.mean_pool(&dy, batch.tangent_seqs(), batch.tokens, h).unwrap()
        })
    });
    group.finish();
}

fn bench_ops(c: &mut Criterion) {
    let backend = CpuBackend::new(BackendSettings::default()).unwrap();
    eprintln!("f32 GEMM ceiling now (best of 7 at 7200×384×1536): {:.0} GFLOP/s", common::gemm_ceiling(&backend));
    for (hidden, ffn) in [(384, 1536), (768, 3072)] {
        for tokens in [12, 32] {
            let shape = Shape { hidden, ffn, tokens };
            gemms(c, &backend, &shape);
            attention(c, &backend, &shape);
            blocks(c, &backend, &shape);
        }
    }
}

criterion_group!(benches, bench_ops);

/// `criterion_main!`, after the allocator setting the CLI uses (warm memory for the outputs).
fn main() {
    simattr::backend::cpu::keep_freed_memory_for_reuse();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
