// Pooling over tokens, its JVP and VJP, and the two accumulations that build P on the device
// (mirrors the reference's pooling ops, `pool_accumulate` and `cotangent_accumulate`):
//   mean_pool             out[s, c] = mean_i x[s, i, c]
//   max_pool              out[s, c] = x[s, i*, c], i* the first token with the largest x[s, ·, c]
//   max_pool_jvp          out[q, c] = ẋ[q, i*, c], i* taken at the primal step of sequence q
//   mean_pool_vjp         out[s, i, c] = ȳ[s, c] / tokens
//   max_pool_vjp          out[q, i, c] = ȳ[q, c] if i = i* else 0
//   pool_accumulate       P[first + m, c] += Σ_k w_k mean_i ẋ[k, m, i, c], steps in order
//   cotangent_accumulate  P[i, first + m] += Σ_k w_k Σ_h x̄[k, m, i, h] Δ[i, h], steps in order
// Layout: primal [steps, tokens, width]; tangents and cotangents [steps, tangents, tokens,
// width]; P [tokens of the text, columns] row-major; the step weights w_k as f32.
// Workgroup: 64 invocations along x, one per output element (the accumulations: one per
// element of P they touch, each adding its steps in order); two-dimensional grid.

// `real` is the storage type of the tensors, f32 or f16 (a one-line prelude chosen by
// --precision); arithmetic and workgroup memory are f32 throughout.

struct Params {
    len: u32,         // outputs of this dispatch
    width: u32,
    tokens: u32,
    tangents: u32,    // tangent sequences per primal step (1 for the primal ops)
    steps: u32,
    first: u32,       // first direction (pool_accumulate) or dimension (cotangent_accumulate)
    columns: u32,     // columns of P
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<real>;        // primal states
@group(0) @binding(2) var<storage, read> dx: array<real>;       // tangents or cotangents
@group(0) @binding(3) var<storage, read> delta: array<real>;
@group(0) @binding(4) var<storage, read> weights: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<real>;

fn element(group: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
    return (group.y * groups.x + group.x) * 64u + local;
}

// The first token of primal step `step` with the largest value of feature c.
fn arg_max(step: u32, c: u32) -> u32 {
    var best = 0u;
    var largest = -3.4e38;
    for (var i = 0u; i < params.tokens; i++) {
        let v = f32(x[(step * params.tokens + i) * params.width + c]);
        if (v > largest) {
            largest = v;
            best = i;
        }
    }
    return best;
}

@compute @workgroup_size(64)
fn mean_pool(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let c = n % params.width;
        let s = n / params.width;
        var sum = 0.0;
        for (var i = 0u; i < params.tokens; i++) {
            sum += f32(x[(s * params.tokens + i) * params.width + c]);
        }
        out[n] = real(sum / f32(params.tokens));
    }
}

@compute @workgroup_size(64)
fn max_pool(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let c = n % params.width;
        let s = n / params.width;
        out[n] = real(f32(x[(s * params.tokens + arg_max(s, c)) * params.width + c]));
    }
}

@compute @workgroup_size(64)
fn max_pool_jvp(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let c = n % params.width;
        let q = n / params.width;
        out[n] = real(f32(dx[(q * params.tokens + arg_max(q / params.tangents, c)) * params.width + c]));
    }
}

@compute @workgroup_size(64)
fn mean_pool_vjp(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let c = n % params.width;
        let s = n / (params.width * params.tokens);
        out[n] = real(f32(dx[s * params.width + c]) / f32(params.tokens));
    }
}

@compute @workgroup_size(64)
fn max_pool_vjp(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let c = n % params.width;
        let i = (n / params.width) % params.tokens;
        let q = n / (params.width * params.tokens);
        var value = 0.0;
        if (i == arg_max(q / params.tangents, c)) {
            value = f32(dx[q * params.width + c]);
        }
        out[n] = real(value);
    }
}

// One invocation per (direction m, feature c) of the batch: P[first + m, c].
@compute @workgroup_size(64)
fn pool_accumulate(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let c = n % params.width;
        let m = n / params.width;
        let slot = (params.first + m) * params.width + c;
        var value = f32(out[slot]);
        for (var k = 0u; k < params.steps; k++) {
            let seq = k * params.tangents + m;
            var sum = 0.0;
            for (var i = 0u; i < params.tokens; i++) {
                sum += f32(dx[(seq * params.tokens + i) * params.width + c]);
            }
            value += weights[k] * sum / f32(params.tokens);
        }
        out[slot] = real(value);
    }
}

// One invocation per (token i, cotangent m) of the batch: P[i, first + m].
@compute @workgroup_size(64)
fn cotangent_accumulate(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                        @builtin(local_invocation_index) local: u32) {
    let n = element(group, groups, local);
    if (n < params.len) {
        let m = n % params.tangents;
        let i = n / params.tangents;
        let slot = i * params.columns + params.first + m;
        var value = f32(out[slot]);
        for (var k = 0u; k < params.steps; k++) {
            let row = ((k * params.tangents + m) * params.tokens + i) * params.width;
            var contracted = 0.0;
            for (var h = 0u; h < params.width; h++) {
                contracted += f32(dx[row + h]) * f32(delta[i * params.width + h]);
            }
            value += weights[k] * contracted;
        }
        out[slot] = real(value);
    }
}
