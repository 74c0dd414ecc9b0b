// LayerNorm forward, and its JVP and VJP in one kernel, `derivative` (mirrors the reference's
// `layer_norm`, `layer_norm_jvp`, `layer_norm_vjp`):
//   forward  x̂ = (x − μ)/σ, y = γ ⊙ x̂ + β, σ = √(var + eps); saves x̂ and 1/σ per row
//   jvp      ẏ = γ ⊙ (ẋ − mean ẋ − x̂ · mean(x̂ ⊙ ẋ)) / σ
//   vjp      x̄ = (g − mean g − x̂ · mean(x̂ ⊙ g)) / σ,  g = γ ⊙ ȳ
// Fused (params.fused = 1, the CPU backends' block ops): the forward normalizes
// x + bias + residual (`bias_residual_norm`), the JVP differentiates along ẋ + ṙ and the VJP
// takes ȳ + r̄ (`residual_norm_vjp`), so the sums are never written out; unfused, `bias` and
// `residual` are one-value stand-ins that are not read.
// Tangent and cotangent rows are [steps, tangents, tokens], each at the primal row
// (step, token) of [steps, tokens], whose x̂ and 1/σ the forward pass saved.
// Layout: rows of `width` f32, row-major; γ, β: [width]; inv_std: [rows].
// Workgroup: 64 invocations per row (each strides over the row's columns) and tree reductions
// in workgroup memory. Grid: one workgroup per row, two-dimensional beyond 65535 rows.

// `real` is the storage type of the tensors, f32 or f16 (a one-line prelude chosen by
// --precision); arithmetic and workgroup memory are f32 throughout.

struct Params {
    rows: u32,
    width: u32,
    tangents: u32,
    tokens: u32,
    eps: f32,
    transpose: u32,   // derivative: 0 JVP, 1 VJP
    fused: u32,       // 1: add bias (forward) and residual (both) to x as it is read
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<real>;          // forward: x; jvp: ẋ; vjp: ȳ
@group(0) @binding(2) var<storage, read> gamma: array<real>;
@group(0) @binding(3) var<storage, read> beta: array<real>;
@group(0) @binding(4) var<storage, read> normalized_in: array<real>;
@group(0) @binding(5) var<storage, read> inv_std_in: array<real>;
@group(0) @binding(6) var<storage, read_write> out: array<real>;
@group(0) @binding(7) var<storage, read_write> normalized: array<real>;
@group(0) @binding(8) var<storage, read_write> inv_std: array<real>;
@group(0) @binding(9) var<storage, read> bias: array<real>;        // forward: [width]
@group(0) @binding(10) var<storage, read> residual: array<real>;   // forward: r; derivative: ṙ or r̄

const LANES: u32 = 64u;
var<workgroup> sums: array<f32, 64>;
var<workgroup> sums2: array<f32, 64>;

fn row_of(group: vec3<u32>, groups: vec3<u32>) -> u32 {
    return group.y * groups.x + group.x;
}

fn primal_row(row: u32) -> u32 {
    let step = row / (params.tangents * params.tokens);
    return step * params.tokens + row % params.tokens;
}

// Sums of `a` (and of `b` in sums2) over the workgroup's lanes, left in sums[0] and sums2[0].
fn reduce(lane: u32, a: f32, b: f32) {
    sums[lane] = a;
    sums2[lane] = b;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            sums[lane] += sums[lane + half];
            sums2[lane] += sums2[lane + half];
        }
        workgroupBarrier();
    }
}

// Element c of the forward pass's input row at `base`: x, or x + bias + residual fused.
fn forward_input(base: u32, c: u32) -> f32 {
    if (params.fused == 1u) {
        return f32(x[base + c]) + f32(bias[c]) + f32(residual[base + c]);
    }
    return f32(x[base + c]);
}

// Element c of the derivative's incoming tangent or cotangent row: x, or x + residual fused.
fn derivative_input(base: u32, c: u32) -> f32 {
    if (params.fused == 1u) {
        return f32(x[base + c]) + f32(residual[base + c]);
    }
    return f32(x[base + c]);
}

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lane: u32) {
    let row = row_of(group, groups);
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    if (row >= params.rows) {
        return;
    }
    let base = row * params.width;
    var total = 0.0;
    for (var c = lane; c < params.width; c += LANES) {
        total += forward_input(base, c);
    }
    reduce(lane, total, 0.0);
    let mean = sums[0] / f32(params.width);
    workgroupBarrier();
    var squares = 0.0;
    for (var c = lane; c < params.width; c += LANES) {
        let centred = forward_input(base, c) - mean;
        squares += centred * centred;
    }
    reduce(lane, squares, 0.0);
    let rstd = 1.0 / sqrt(sums[0] / f32(params.width) + params.eps);
    for (var c = lane; c < params.width; c += LANES) {
        let xhat = (forward_input(base, c) - mean) * rstd;
        normalized[base + c] = real(xhat);
        out[base + c] = real(f32(gamma[c]) * xhat + f32(beta[c]));
    }
    if (lane == 0u) {
        inv_std[row] = real(rstd);
    }
}

// The JVP (params.transpose = 0) and the VJP (1) share their reductions: with g = ẋ (JVP) or
// γ ⊙ ȳ (VJP), out = s ⊙ (g − mean g − x̂ · mean(x̂ ⊙ g)) / σ, s = γ (JVP) or 1 (VJP).
@compute @workgroup_size(64)
fn derivative(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lane: u32) {
    let row = row_of(group, groups);
    if (row >= params.rows) {
        return;
    }
    let base = row * params.width;
    let p = primal_row(row) * params.width;
    var sum_g = 0.0;
    var sum_xg = 0.0;
    for (var c = lane; c < params.width; c += LANES) {
        let g = into_g(c, derivative_input(base, c));
        sum_g += g;
        sum_xg += f32(normalized_in[p + c]) * g;
    }
    reduce(lane, sum_g, sum_xg);
    let mean_g = sums[0] / f32(params.width);
    let mean_xg = sums2[0] / f32(params.width);
    let rstd = f32(inv_std_in[primal_row(row)]);
    for (var c = lane; c < params.width; c += LANES) {
        var scale = f32(gamma[c]);
        if (params.transpose == 1u) {
            scale = 1.0;
        }
        out[base + c] = real(scale * rstd * (into_g(c, derivative_input(base, c)) - mean_g - f32(normalized_in[p + c]) * mean_xg));
    }
}

fn into_g(c: u32, value: f32) -> f32 {
    if (params.transpose == 1u) {
        return f32(gamma[c]) * value;
    }
    return value;
}
