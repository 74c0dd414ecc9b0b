// LayerNorm forward, and its JVP and VJP in one kernel, `derivative` (mirrors the reference's
// `layer_norm`, `layer_norm_jvp`, `layer_norm_vjp`; port of shaders/layer_norm.wgsl):
//   forward  x̂ = (x − μ)/σ, y = γ ⊙ x̂ + β, σ = √(var + eps); saves x̂ and 1/σ per row
//   jvp      ẏ = γ ⊙ (ẋ − mean ẋ − x̂ · mean(x̂ ⊙ ẋ)) / σ
//   vjp      x̄ = (g − mean g − x̂ · mean(x̂ ⊙ g)) / σ,  g = γ ⊙ ȳ
// Fused (p.fused = 1, the CPU backends' block ops): the forward normalizes x + bias + residual
// (`bias_residual_norm`), the JVP differentiates along ẋ + ṙ and the VJP takes ȳ + r̄
// (`residual_norm_vjp`), so the sums are never written out; unfused, `bias` and `residual` are
// one-value stand-ins that are not read.
// Tangent and cotangent rows are [steps, tangents, tokens], each at the primal row
// (step, token) of [steps, tokens], whose x̂ and 1/σ the forward pass saved.
// Layout: rows of `width` `real`, row-major; γ, β: [width]; inv_std: [rows].
// Block: 64 threads per row (each strides over the row's columns) and tree reductions in shared
// memory. Grid: one block per row, folded into two dimensions beyond 65535 rows (flat_block()).

#include "common.cuh"

// Field for field the WGSL `Params`: the host passes the same words to both backends.
struct Params {
  unsigned rows;
  unsigned width;
  unsigned tangents;
  unsigned tokens;
  float eps;
  unsigned transpose;   // derivative: 0 JVP, 1 VJP
  unsigned fused;       // 1: add bias (forward) and residual (both) to x as it is read
  unsigned _pad;
};

constexpr unsigned LANES = 64u;

__device__ __forceinline__ unsigned primal_row(const Params& p, unsigned row) {
  const unsigned step = row / (p.tangents * p.tokens);
  return step * p.tokens + row % p.tokens;
}

// Sums of `a` (and of `b` in sums2) over the block's lanes, left in sums[0] and sums2[0].
// Called by every thread of the block, as its barriers require.
__device__ __forceinline__ void reduce(float* sums, float* sums2, unsigned lane, float a, float b) {
  sums[lane] = a;
  sums2[lane] = b;
  __syncthreads();
  for (unsigned half_lanes = LANES / 2u; half_lanes > 0u; half_lanes /= 2u) {
    if (lane < half_lanes) {
      sums[lane] += sums[lane + half_lanes];
      sums2[lane] += sums2[lane + half_lanes];
    }
    __syncthreads();
  }
}

// Element c of the forward pass's input row at `base`: x, or x + bias + residual fused.
__device__ __forceinline__ float forward_input(const Params& p, const real* __restrict__ x,
                                               const real* __restrict__ bias,
                                               const real* __restrict__ residual, unsigned base,
                                               unsigned c) {
  if (p.fused == 1u) {
    return to_f32(x[base + c]) + to_f32(bias[c]) + to_f32(residual[base + c]);
  }
  return to_f32(x[base + c]);
}

// Element c of the derivative's incoming tangent or cotangent row: x, or x + residual fused.
__device__ __forceinline__ float derivative_input(const Params& p, const real* __restrict__ x,
                                                  const real* __restrict__ residual, unsigned base,
                                                  unsigned c) {
  if (p.fused == 1u) {
    return to_f32(x[base + c]) + to_f32(residual[base + c]);
  }
  return to_f32(x[base + c]);
}

KERNEL forward(const Params p, const real* __restrict__ x, const real* __restrict__ gamma,
               const real* __restrict__ beta, real* __restrict__ out, real* __restrict__ normalized,
               real* __restrict__ inv_std, const real* __restrict__ bias, const real* __restrict__ residual) {
  __shared__ float sums[LANES];
  __shared__ float sums2[LANES];
  const unsigned lane = threadIdx.x;
  const unsigned row = flat_block();
  // Uniform across the block, so the barriers below are reached by all of its threads or none.
  if (row >= p.rows) {
    return;
  }
  const unsigned base = row * p.width;
  float total = 0.0f;
  for (unsigned c = lane; c < p.width; c += LANES) {
    total += forward_input(p, x, bias, residual, base, c);
  }
  reduce(sums, sums2, lane, total, 0.0f);
  const float mean = sums[0] / (float)p.width;
  // Everyone has read sums[0] before the next reduction overwrites it.
  __syncthreads();
  float squares = 0.0f;
  for (unsigned c = lane; c < p.width; c += LANES) {
    const float centred = forward_input(p, x, bias, residual, base, c) - mean;
    squares += centred * centred;
  }
  reduce(sums, sums2, lane, squares, 0.0f);
  const float rstd = 1.0f / sqrtf(sums[0] / (float)p.width + p.eps);
  for (unsigned c = lane; c < p.width; c += LANES) {
    const float xhat = (forward_input(p, x, bias, residual, base, c) - mean) * rstd;
    normalized[base + c] = to_real(xhat);
    out[base + c] = to_real(to_f32(gamma[c]) * xhat + to_f32(beta[c]));
  }
  if (lane == 0u) {
    inv_std[row] = to_real(rstd);
  }
}

__device__ __forceinline__ float into_g(const Params& p, const real* __restrict__ gamma, unsigned c,
                                        float value) {
  if (p.transpose == 1u) {
    return to_f32(gamma[c]) * value;
  }
  return value;
}

// The JVP (p.transpose = 0) and the VJP (1) share their reductions: with g = ẋ (JVP) or
// γ ⊙ ȳ (VJP), out = s ⊙ (g − mean g − x̂ · mean(x̂ ⊙ g)) / σ, s = γ (JVP) or 1 (VJP).
KERNEL derivative(const Params p, const real* __restrict__ x, const real* __restrict__ gamma,
                  const real* __restrict__ normalized_in, const real* __restrict__ inv_std_in,
                  real* __restrict__ out, const real* __restrict__ residual) {
  __shared__ float sums[LANES];
  __shared__ float sums2[LANES];
  const unsigned lane = threadIdx.x;
  const unsigned row = flat_block();
  if (row >= p.rows) {
    return;
  }
  const unsigned base = row * p.width;
  // The WGSL's `p`: where this row's saved x̂ starts.
  const unsigned primal = primal_row(p, row) * p.width;
  float sum_g = 0.0f;
  float sum_xg = 0.0f;
  for (unsigned c = lane; c < p.width; c += LANES) {
    const float g = into_g(p, gamma, c, derivative_input(p, x, residual, base, c));
    sum_g += g;
    sum_xg += to_f32(normalized_in[primal + c]) * g;
  }
  reduce(sums, sums2, lane, sum_g, sum_xg);
  const float mean_g = sums[0] / (float)p.width;
  const float mean_xg = sums2[0] / (float)p.width;
  const float rstd = to_f32(inv_std_in[primal_row(p, row)]);
  for (unsigned c = lane; c < p.width; c += LANES) {
    float scale = to_f32(gamma[c]);
    if (p.transpose == 1u) {
      scale = 1.0f;
    }
    const float g = into_g(p, gamma, c, derivative_input(p, x, residual, base, c));
    out[base + c] = to_real(scale * rstd * (g - mean_g - to_f32(normalized_in[primal + c]) * mean_xg));
  }
}
