//! Helpers shared by the benches.

#[allow(dead_code)] // benches/device.rs only
pub mod wide_model;

/// The median wall time of `runs` calls of `work`, in seconds.
#[allow(dead_code)] // not every bench times whole calls
pub fn median_seconds<R>(runs: usize, mut work: impl FnMut() -> R) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = std::time::Instant::now();
            std::hint::black_box(work());
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// Deterministic values in `[-scale, scale)` (xorshift), so benches need no files or crates.
pub fn pseudo_random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
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

/// This machine's f32 GEMM ceiling as the fast backend reaches it now: the best of 7 runs of
/// its `matmul` at 7200 × 384 × 1536 (a MiniLM FFN-in over 50 × 12 × 12 tangent rows, the
/// shape where it peaks here), into warm memory. GFLOP/s.
#[allow(dead_code)] // not every bench reports it
pub fn gemm_ceiling(backend: &simattr::backend::cpu::CpuBackend) -> f64 {
    use simattr::backend::{MathOps, Role, Storage};
    let (rows, n_in, n_out) = (7200, 384, 1536);
    let x = backend.upload(&pseudo_random(rows * n_in, 1, 1.0), Role::Activations { len: rows * n_in }).unwrap();
    let host = simattr::params::Linear {
        weight: pseudo_random(n_in * n_out, 2, 0.05),
        bias: vec![0.0; n_out],
        in_dim: n_in,
        out_dim: n_out,
    };
    let layer = host.try_map(&mut |t: &Vec<f32>, role| backend.upload(t, role)).unwrap();
    let best = (0..7)
        .map(|_| {
            let start = std::time::Instant::now();
            std::hint::black_box(backend.matmul(&x, rows, &layer).unwrap());
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (rows * n_in * n_out) as f64 / best / 1e9
}
