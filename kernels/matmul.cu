// Dense layers (mirrors the reference's `linear`, `matmul`, `matmul_vjp`; port of
// shaders/matmul.wgsl):
//   out[r, n] = Σ_k x[r, k] · B[k, n]  (+ bias[n] when p.with_bias = 1)
// with B[k, n] = W[n, k] for y = x Wᵀ (p.transposed = 1, W is [out, in] as PyTorch stores it)
// and B[k, n] = W[k, n] for the VJP x̄ = ȳ W (p.transposed = 0).
// Layout: x [M, K], W as above, out [M, N], all row-major `real`.
// Block: 16 × 16 threads (threadIdx.x, threadIdx.y) computing a 64 × 64 tile of `out`, each a
// 4 × 4 block held in registers; K advances 16 at a time through two 64 × 16 tiles in shared
// memory. Grid: (⌈N/64⌉, ⌈M/64⌉). Edges are guarded, so M, N and K need not be multiples of
// anything.

#include "common.cuh"

// Field for field the WGSL `Params`: the host passes the same words to both backends.
struct Params {
  unsigned rows;        // M
  unsigned cols;        // N
  unsigned inner;       // K
  unsigned transposed;
  unsigned with_bias;
  unsigned _pad0;
  unsigned _pad1;
  unsigned _pad2;
};

constexpr unsigned TILE = 64u;
constexpr unsigned DEPTH = 16u;

__device__ __forceinline__ float b_at(const Params& p, const real* __restrict__ w, unsigned k, unsigned n) {
  if (p.transposed == 1u) {
    return to_f32(w[n * p.inner + k]);
  }
  return to_f32(w[k * p.cols + n]);
}

// Row r, columns n.. n + 3 of `out` from a register block row, within the edges.
__device__ __forceinline__ void store(const Params& p, const real* __restrict__ bias, real* __restrict__ out,
                                      unsigned r, unsigned n, const float (&values)[4]) {
  if (r >= p.rows) {
    return;
  }
  for (unsigned j = 0u; j < 4u; j++) {
    if (n + j < p.cols) {
      float value = values[j];
      if (p.with_bias == 1u) {
        value += to_f32(bias[n + j]);
      }
      out[r * p.cols + n + j] = to_real(value);
    }
  }
}

KERNEL matmul(const Params p, const real* __restrict__ x, const real* __restrict__ w,
              const real* __restrict__ bias, real* __restrict__ out) {
  // 16-byte aligned so that a thread's four neighbouring b_tile values load as one vector.
  alignas(16) __shared__ float x_tile[TILE * DEPTH];   // [TILE rows][DEPTH]
  alignas(16) __shared__ float b_tile[DEPTH * TILE];   // [DEPTH][TILE cols]
  const unsigned row0 = blockIdx.y * TILE;
  const unsigned col0 = blockIdx.x * TILE;
  const unsigned thread = threadIdx.y * 16u + threadIdx.x;
  // acc[i] is the WGSL's acc{i}: row i of the thread's 4 × 4 block. Every index below is a
  // compile-time constant once the fixed-count loops unroll, so the block stays in registers.
  float acc[4][4] = {};
  for (unsigned k0 = 0u; k0 < p.inner; k0 += DEPTH) {
    for (unsigned l = 0u; l < 4u; l++) {
      const unsigned e = thread + l * 256u;
      // x tile: row e / DEPTH, depth e % DEPTH.
      const unsigned r = row0 + e / DEPTH;
      const unsigned kx = k0 + e % DEPTH;
      float xv = 0.0f;
      if (r < p.rows && kx < p.inner) {
        xv = to_f32(x[r * p.inner + kx]);
      }
      x_tile[e] = xv;
      // B tile [depth][column]: read along W's rows, which are B's columns when W is
      // transposed (y = x Wᵀ: depth fastest), B's rows otherwise (x̄ = ȳ W: column
      // fastest), so that neighbouring threads read neighbouring values.
      unsigned depth = e / TILE;
      unsigned column = e % TILE;
      if (p.transposed == 1u) {
        depth = e % DEPTH;
        column = e / DEPTH;
      }
      const unsigned kb = k0 + depth;
      const unsigned n = col0 + column;
      float bv = 0.0f;
      if (kb < p.inner && n < p.cols) {
        bv = b_at(p, w, kb, n);
      }
      b_tile[depth * TILE + column] = bv;
    }
    __syncthreads();
    for (unsigned kk = 0u; kk < DEPTH; kk++) {
      float b[4];
      for (unsigned j = 0u; j < 4u; j++) {
        b[j] = b_tile[kk * TILE + threadIdx.x * 4u + j];
      }
      const unsigned row = threadIdx.y * 4u * DEPTH + kk;
      for (unsigned i = 0u; i < 4u; i++) {
        const float xv = x_tile[row + i * DEPTH];
        for (unsigned j = 0u; j < 4u; j++) {
          acc[i][j] += xv * b[j];
        }
      }
    }
    __syncthreads();
  }
  const unsigned first_row = row0 + threadIdx.y * 4u;
  for (unsigned i = 0u; i < 4u; i++) {
    store(p, bias, out, first_row + i, col0 + threadIdx.x * 4u, acc[i]);
  }
}
