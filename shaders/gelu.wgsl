// GELU (the exact, erf form) and its derivative (mirrors the reference's `gelu`, `gelu_jvp`):
//   gelu      out[n] = x Φ(x),  Φ(x) = (1 + erf(x/√2))/2
//   gelu_jvp  out[r, c] = (Φ(x) + x φ(x)) · dx[r, c],  x = primal[p(r), c]
// where p(r) is the primal row that tangent row r shares: rows are [steps, tangents, tokens]
// for the tangents and [steps, tokens] for the primal.
// With params.with_bias = 1 the argument is x + bias[c] (the block op `bias_gelu`: the FFN's
// first bias added as it is read, so the pre-activation is never written out); without it
// `bias` is a one-value stand-in that is not read.
// Workgroup: 256 invocations along x, one per output element; two-dimensional grid.

// `real` is the storage type of the tensors, f32 or f16 (a one-line prelude chosen by
// --precision); arithmetic and workgroup memory are f32 throughout.

struct Params {
    len: u32,
    width: u32,
    tangents: u32,
    tokens: u32,
    with_bias: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<real>;
@group(0) @binding(2) var<storage, read> dx: array<real>;
@group(0) @binding(3) var<storage, read_write> out: array<real>;
@group(0) @binding(4) var<storage, read> bias: array<real>;   // [width]

// The argument of element n of the primal: x[n], plus bias[n mod width] when fused.
fn argument(n: u32) -> f32 {
    if (params.with_bias == 1u) {
        return f32(x[n]) + f32(bias[n % params.width]);
    }
    return f32(x[n]);
}

// erf to about 1e-7 absolute, as WGSL has none: the Maclaurin series below |z| = 0.5
// (truncation below 3e-8) and 1 − erfc above it.
fn erf(z: f32) -> f32 {
    let t = abs(z);
    if (t < 0.5) {
        let t2 = t * t;
        // z (2/√π)(1 − z²/3 + z⁴/10 − z⁶/42 + z⁸/216 − z¹⁰/1320)
        let series = 1.0 - t2 * (1.0 / 3.0 - t2 * (0.1 - t2 * (1.0 / 42.0 - t2 * (1.0 / 216.0 - t2 / 1320.0))));
        return z * 1.1283791670955126 * series;
    }
    // erfc(t) = exp(−t² − 1.26551223 + k·P(k)), k = 1/(1 + t/2) (Numerical Recipes' erfcc,
    // fractional error below 1.2e-7 everywhere).
    let k = 1.0 / (1.0 + 0.5 * t);
    let poly = -1.26551223 + k * (1.00002368 + k * (0.37409196 + k * (0.09678418 + k * (-0.18628806
        + k * (0.27886807 + k * (-1.13520398 + k * (1.48851587 + k * (-0.82215223 + k * 0.17087277))))))));
    let erfc = k * exp(-t * t + poly);
    return sign(z) * (1.0 - erfc);
}

fn cdf(v: f32) -> f32 {
    return 0.5 * (1.0 + erf(v * 0.7071067811865476));
}

fn element(group: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
    return (group.y * groups.x + group.x) * 256u + local;
}

@compute @workgroup_size(256)
fn gelu(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let v = argument(n);
        out[n] = real(v * cdf(v));
    }
}

@compute @workgroup_size(256)
fn gelu_jvp(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let c = n % params.width;
        let row = n / params.width;
        let step = row / (params.tangents * params.tokens);
        let primal_row = step * params.tokens + row % params.tokens;
        let v = argument(primal_row * params.width + c);
        let pdf = exp(-0.5 * v * v) * 0.3989422804014327;
        out[n] = real((cdf(v) + v * pdf) * f32(dx[n]));
    }
}
