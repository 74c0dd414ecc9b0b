// Dense layers (mirrors the reference's `linear`, `matmul`, `matmul_vjp`):
//   out[r, n] = Σ_k x[r, k] · B[k, n]  (+ bias[n] when params.with_bias = 1)
// with B[k, n] = W[n, k] for y = x Wᵀ (params.transposed = 1, W is [out, in] as PyTorch
// stores it) and B[k, n] = W[k, n] for the VJP x̄ = ȳ W (params.transposed = 0).
// Layout: x [M, K], W as above, out [M, N], all row-major f32.
// Workgroup: 16 × 16 invocations computing a 64 × 64 tile of `out`, each a 4 × 4 block held in
// registers; K advances 16 at a time through two 64 × 16 tiles in workgroup memory. Grid:
// (⌈N/64⌉, ⌈M/64⌉). Edges are guarded, so M, N and K need not be multiples of anything.

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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;

var<workgroup> x_tile: array<f32, 1024>;   // [TILE rows][DEPTH]
var<workgroup> b_tile: array<f32, 1024>;   // [DEPTH][TILE cols]

fn b_at(k: u32, n: u32) -> f32 {
    if (params.transposed == 1u) {
        return w[n * params.inner + k];
    }
    return w[k * params.cols + n];
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {
    let row0 = group.y * TILE;
    let col0 = group.x * TILE;
    let thread = local.y * 16u + local.x;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < params.inner; k0 += DEPTH) {
        for (var l = 0u; l < 4u; l++) {
            let e = thread + l * 256u;
            // x tile: row e / DEPTH, depth e % DEPTH.
            let r = row0 + e / DEPTH;
            let kx = k0 + e % DEPTH;
            var xv = 0.0;
            if (r < params.rows && kx < params.inner) {
                xv = x[r * params.inner + kx];
            }
            x_tile[e] = xv;
            // B tile: depth e / TILE, column e % TILE.
            let kb = k0 + e / TILE;
            let n = col0 + e % TILE;
            var bv = 0.0;
            if (kb < params.inner && n < params.cols) {
                bv = b_at(kb, n);
            }
            b_tile[e] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < DEPTH; kk++) {
            var xs: array<f32, 4>;
            var bs: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                xs[i] = x_tile[(local.y * 4u + i) * DEPTH + kk];
                bs[i] = b_tile[kk * TILE + local.x * 4u + i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += xs[i] * bs[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + local.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let n = col0 + local.x * 4u + j;
            if (r < params.rows && n < params.cols) {
                var value = acc[i * 4u + j];
                if (params.with_bias == 1u) {
                    value += bias[n];
                }
                out[r * params.cols + n] = value;
            }
        }
    }
}
