// Multi-head attention softmax(Q Kᵀ/√d + bias, masked) V, its JVP and its VJP (mirrors the
// reference's `attention`, `attention_jvp`, `attention_vjp`):
//   probs         P[s, h, i, j] = softmax_j(q_i · k_j / √d + bias[h, i, j]); masked keys get 0
//   context       O[s, i, h·d + c] = Σ_j P[s, h, i, j] V[s, j, h·d + c]
//   jvp_scores    Ṗ[h, i, j] = P (Ṡ − Σ_l P Ṡ),  Ṡ_ij = (q̇_i · k_j + q_i · k̇_j)/√d
//   jvp_context   Ȯ_i = Σ_j Ṗ_ij V_j + P_ij V̇_j
//   vjp_scores    S̄_ij = P_ij (P̄_ij − Σ_l P_il P̄_il),  P̄_ij = Ō_i · V_j
//   vjp_inputs    Q̄_a = Σ_j S̄_aj K_j/√d,  K̄_a = Σ_i S̄_ia Q_i/√d,  V̄_a = Σ_i P_ia Ō_i,  as [q̄ | k̄ | v̄]
// Layout: qkv [steps, tokens, 3·width] rows [q | k | v], heads side by side in each third;
// tangents and cotangents [steps, tangents, tokens, …]; P [steps, heads, tokens, tokens];
// the score bias [heads, tokens, tokens]; the key mask [seqs, tokens] (1 = attend).
// The scores kernels write Ṗ or S̄ for a chunk of tangent sequences (`first_seq` on) into a
// scratch buffer [chunk, heads, tokens, tokens], which the second kernel of the pair reads.
// Workgroup: 64 invocations along x, one per (sequence, head, query) for the softmax and
// scores kernels and one per output element for the others; two-dimensional grid.

// `real` is the storage type of the tensors, f32 or f16 (a one-line prelude chosen by
// --precision); arithmetic and workgroup memory are f32 throughout.

struct Params {
    seqs: u32,        // sequences in this dispatch (primal seqs, or tangent seqs of the chunk)
    tokens: u32,
    heads: u32,
    head_dim: u32,
    tangents: u32,    // tangent sequences per primal sequence
    first_seq: u32,   // first tangent sequence of the chunk
    has_bias: u32,
    has_mask: u32,
    scale: f32,       // 1/√d
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<real>;
@group(0) @binding(2) var<storage, read> tangents: array<real>;   // q̇k̇v̇ (jvp) or Ō (vjp)
@group(0) @binding(3) var<storage, read> score_bias: array<real>;
@group(0) @binding(4) var<storage, read> key_mask: array<real>;
@group(0) @binding(5) var<storage, read> probs: array<real>;
@group(0) @binding(6) var<storage, read> scratch: array<real>;
@group(0) @binding(7) var<storage, read_write> out: array<real>;

fn invocation(group: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
    return (group.y * groups.x + group.x) * 64u + local;
}

// Invocation n of a kernel with one invocation per (sequence, head, query): sequence-major.
struct Query {
    seq: u32,
    h: u32,
    i: u32,
}

fn query_of(n: u32) -> Query {
    let t = params.tokens;
    return Query(n / (t * params.heads), (n / t) % params.heads, n % t);
}

// Invocation n of a kernel with one invocation per element of a [seqs, tokens, width] output.
struct Element {
    seq: u32,
    i: u32,
    feature: u32,   // h · head_dim + c
    h: u32,
    c: u32,
}

fn element_of(n: u32) -> Element {
    let w = width();
    let feature = n % w;
    return Element(n / (w * params.tokens), (n / w) % params.tokens, feature, feature / params.head_dim, feature % params.head_dim);
}

// Start of the scratch row of query i, head h, of the chunk's sequence `chunk_seq`.
fn scratch_row(chunk_seq: u32, h: u32, i: u32) -> u32 {
    return ((chunk_seq * params.heads + h) * params.tokens + i) * params.tokens;
}

fn width() -> u32 {
    return params.heads * params.head_dim;
}

// Feature c of head h of part (0 q, 1 k, 2 v) in row `row` of a fused [q | k | v] array.
fn at_qkv(row: u32, part: u32, h: u32, c: u32) -> u32 {
    return row * 3u * width() + part * width() + h * params.head_dim + c;
}

fn probability(step: u32, h: u32, i: u32, j: u32) -> f32 {
    return f32(probs[((step * params.heads + h) * params.tokens + i) * params.tokens + j]);
}

// out[base + j] ← P_ij (out[base + j] − Σ_l P_il out[base + l]): the softmax's derivative
// applied to the row of score derivatives the caller wrote there.
fn through_softmax(step: u32, h: u32, i: u32, base: u32) {
    var mean = 0.0;
    for (var j = 0u; j < params.tokens; j++) {
        mean += probability(step, h, i, j) * f32(out[base + j]);
    }
    for (var j = 0u; j < params.tokens; j++) {
        out[base + j] = real(probability(step, h, i, j) * (f32(out[base + j]) - mean));
    }
}

fn attends(s: u32, j: u32) -> bool {
    return params.has_mask == 0u || f32(key_mask[s * params.tokens + j]) != 0.0;
}

// q_i · k_j / √d + bias[h, i, j] for sequence s, head h.
fn score(s: u32, h: u32, i: u32, j: u32) -> f32 {
    let t = params.tokens;
    var dot = 0.0;
    for (var c = 0u; c < params.head_dim; c++) {
        dot += f32(qkv[at_qkv(s * t + i, 0u, h, c)]) * f32(qkv[at_qkv(s * t + j, 1u, h, c)]);
    }
    var value = dot * params.scale;
    if (params.has_bias == 1u) {
        value += f32(score_bias[(h * t + i) * t + j]);
    }
    return value;
}

// The scores are computed twice (for the maximum, then for the exponentials) rather than
// stored, so that f16 storage rounds only the probabilities, never a score before its exp.
@compute @workgroup_size(64)
fn softmax(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) local: u32) {
    let n = invocation(group, groups, local);
    let t = params.tokens;
    if (n >= params.seqs * params.heads * t) {
        return;
    }
    let q = query_of(n);
    let s = q.seq;
    let h = q.h;
    let i = q.i;
    let base = ((s * params.heads + h) * t + i) * t;
    var largest = -3.4e38;
    var attended = false;
    for (var j = 0u; j < t; j++) {
        if (attends(s, j)) {
            largest = max(largest, score(s, h, i, j));
            attended = true;
        }
    }
    var total = 0.0;
    for (var j = 0u; j < t; j++) {
        if (attends(s, j)) {
            total += exp(score(s, h, i, j) - largest);
        }
    }
    for (var j = 0u; j < t; j++) {
        // A sequence whose keys are all masked attends to nothing.
        var p = 0.0;
        if (attended && total > 0.0 && attends(s, j)) {
            p = exp(score(s, h, i, j) - largest) / total;
        }
        out[base + j] = real(p);
    }
}

@compute @workgroup_size(64)
fn context(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) local: u32) {
    let n = invocation(group, groups, local);
    let t = params.tokens;
    let w = width();
    if (n >= params.seqs * t * w) {
        return;
    }
    let e = element_of(n);
    let s = e.seq;
    var acc = 0.0;
    for (var j = 0u; j < t; j++) {
        acc += probability(s, e.h, e.i, j) * f32(qkv[at_qkv(s * t + j, 2u, e.h, e.c)]);
    }
    out[n] = real(acc);
}

@compute @workgroup_size(64)
fn jvp_scores(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) local: u32) {
    let n = invocation(group, groups, local);
    let t = params.tokens;
    if (n >= params.seqs * params.heads * t) {
        return;
    }
    let q = query_of(n);
    let i = q.i;
    let h = q.h;
    let seq = params.first_seq + q.seq;
    let s = seq / params.tangents;
    let base = scratch_row(q.seq, h, i);
    for (var j = 0u; j < t; j++) {
        var ds = 0.0;
        for (var c = 0u; c < params.head_dim; c++) {
            ds += f32(tangents[at_qkv(seq * t + i, 0u, h, c)]) * f32(qkv[at_qkv(s * t + j, 1u, h, c)])
                + f32(qkv[at_qkv(s * t + i, 0u, h, c)]) * f32(tangents[at_qkv(seq * t + j, 1u, h, c)]);
        }
        out[base + j] = real(ds * params.scale);
    }
    through_softmax(s, h, i, base);
}

@compute @workgroup_size(64)
fn jvp_context(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) local: u32) {
    let n = invocation(group, groups, local);
    let t = params.tokens;
    let w = width();
    if (n >= params.seqs * t * w) {
        return;
    }
    let e = element_of(n);
    let h = e.h;
    let c = e.c;
    let i = e.i;
    let feature = e.feature;
    let seq = params.first_seq + e.seq;
    let s = seq / params.tangents;
    let base = scratch_row(e.seq, h, i);
    var acc = 0.0;
    for (var j = 0u; j < t; j++) {
        acc += f32(scratch[base + j]) * f32(qkv[at_qkv(s * t + j, 2u, h, c)])
            + probability(s, h, i, j) * f32(tangents[at_qkv(seq * t + j, 2u, h, c)]);
    }
    out[(seq * t + i) * w + feature] = real(acc);
}

@compute @workgroup_size(64)
fn vjp_scores(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) local: u32) {
    let n = invocation(group, groups, local);
    let t = params.tokens;
    let w = width();
    if (n >= params.seqs * params.heads * t) {
        return;
    }
    let q = query_of(n);
    let i = q.i;
    let h = q.h;
    let seq = params.first_seq + q.seq;
    let s = seq / params.tangents;
    let base = scratch_row(q.seq, h, i);
    for (var j = 0u; j < t; j++) {
        var dp = 0.0;
        for (var c = 0u; c < params.head_dim; c++) {
            dp += f32(tangents[(seq * t + i) * w + h * params.head_dim + c]) * f32(qkv[at_qkv(s * t + j, 2u, h, c)]);
        }
        out[base + j] = real(dp);
    }
    through_softmax(s, h, i, base);
}

@compute @workgroup_size(64)
fn vjp_inputs(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) local: u32) {
    let n = invocation(group, groups, local);
    let t = params.tokens;
    let w = width();
    if (n >= params.seqs * t * 3u * w) {
        return;
    }
    let column = n % (3u * w);
    let part = column / w;
    let h = (column % w) / params.head_dim;
    let c = column % params.head_dim;
    let a = (n / (3u * w)) % t;
    let chunk_seq = n / (3u * w * t);
    let seq = params.first_seq + chunk_seq;
    let s = seq / params.tangents;
    let base = scratch_row(chunk_seq, h, 0u);
    var acc = 0.0;
    if (part == 0u) {
        for (var j = 0u; j < t; j++) {
            acc += f32(scratch[base + a * t + j]) * f32(qkv[at_qkv(s * t + j, 1u, h, c)]);
        }
        acc *= params.scale;
    } else if (part == 1u) {
        for (var i = 0u; i < t; i++) {
            acc += f32(scratch[base + i * t + a]) * f32(qkv[at_qkv(s * t + i, 0u, h, c)]);
        }
        acc *= params.scale;
    } else {
        for (var i = 0u; i < t; i++) {
            acc += probability(s, h, i, a) * f32(tangents[(seq * t + i) * w + h * params.head_dim + c]);
        }
    }
    out[(seq * t + a) * 3u * w + column] = real(acc);
}
