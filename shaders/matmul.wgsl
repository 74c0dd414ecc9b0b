// Dense layers (mirrors the reference's `linear`, `matmul`, `matmul_vjp`):
//   out[r, n] = Σ_k x[r, k] · B[k, n]  (+ bias[n] when params.with_bias = 1)
// with B[k, n] = W[n, k] for y = x Wᵀ (params.transposed = 1, W is [out, in] as PyTorch
// stores it) and B[k, n] = W[k, n] for the VJP x̄ = ȳ W (params.transposed = 0).
// Layout: x [M, K], W as above, out [M, N], all row-major f32.
// Workgroup: 16 × 16 invocations computing a 64 × 64 tile of `out`, each a 4 × 4 block held in
// registers; K advances 16 at a time through two 64 × 16 tiles in workgroup memory. Grid:
// (⌈N/64⌉, ⌈M/64⌉). Edges are guarded, so M, N and K need not be multiples of anything.

// `real` is the storage type of the tensors, f32 or f16 (a one-line prelude chosen by
// --precision); arithmetic and workgroup memory are f32 throughout.

struct Params {
    rows: u32,        // M
    cols: u32,        // N
    inner: u32,       // K
    transposed: u32,
    with_bias: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<real>;
@group(0) @binding(2) var<storage, read> w: array<real>;
@group(0) @binding(3) var<storage, read> bias: array<real>;
@group(0) @binding(4) var<storage, read_write> out: array<real>;

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;

var<workgroup> x_tile: array<f32, 1024>;   // [TILE rows][DEPTH]
var<workgroup> b_tile: array<f32, 1024>;   // [DEPTH][TILE cols]

fn b_at(k: u32, n: u32) -> f32 {
    if (params.transposed == 1u) {
        return f32(w[n * params.inner + k]);
    }
    return f32(w[k * params.cols + n]);
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {
    let row0 = group.y * TILE;
    let col0 = group.x * TILE;
    let thread = local.y * 16u + local.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < params.inner; k0 += DEPTH) {
        for (var l = 0u; l < 4u; l++) {
            let e = thread + l * 256u;
            // x tile: row e / DEPTH, depth e % DEPTH.
            let r = row0 + e / DEPTH;
            let kx = k0 + e % DEPTH;
            var xv = 0.0;
            if (r < params.rows && kx < params.inner) {
                xv = f32(x[r * params.inner + kx]);
            }
            x_tile[e] = xv;
            // B tile [depth][column]: read along W's rows, which are B's columns when W is
            // transposed (y = x Wᵀ: depth fastest), B's rows otherwise (x̄ = ȳ W: column
            // fastest), so that neighbouring invocations read neighbouring values.
            var depth = e / TILE;
            var column = e % TILE;
            if (params.transposed == 1u) {
                depth = e % DEPTH;
                column = e / DEPTH;
            }
            let kb = k0 + depth;
            let n = col0 + column;
            var bv = 0.0;
            if (kb < params.inner && n < params.cols) {
                bv = b_at(kb, n);
            }
            b_tile[depth * TILE + column] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < DEPTH; kk++) {
            let b = vec4<f32>(
                b_tile[kk * TILE + local.x * 4u],
                b_tile[kk * TILE + local.x * 4u + 1u],
                b_tile[kk * TILE + local.x * 4u + 2u],
                b_tile[kk * TILE + local.x * 4u + 3u],
            );
            let row = local.y * 4u * DEPTH + kk;
            acc0 += x_tile[row] * b;
            acc1 += x_tile[row + DEPTH] * b;
            acc2 += x_tile[row + 2u * DEPTH] * b;
            acc3 += x_tile[row + 3u * DEPTH] * b;
        }
        workgroupBarrier();
    }
    let first_row = row0 + local.y * 4u;
    store(first_row, col0 + local.x * 4u, acc0);
    store(first_row + 1u, col0 + local.x * 4u, acc1);
    store(first_row + 2u, col0 + local.x * 4u, acc2);
    store(first_row + 3u, col0 + local.x * 4u, acc3);
}

// Row r, columns n.. n + 3 of `out` from a register block row, within the edges.
fn store(r: u32, n: u32, values: vec4<f32>) {
    if (r >= params.rows) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (n + j < params.cols) {
            var value = values[j];
            if (params.with_bias == 1u) {
                value += f32(bias[n + j]);
            }
            out[r * params.cols + n + j] = real(value);
        }
    }
}
