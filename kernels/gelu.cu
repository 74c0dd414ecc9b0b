// GELU (the exact, erf form) and its derivative (port of shaders/gelu.wgsl; mirrors the
// reference's `gelu`, `gelu_jvp`):
//   gelu      out[n] = x Φ(x),  Φ(x) = (1 + erf(x/√2))/2
//   gelu_jvp  out[r, c] = (Φ(x) + x φ(x)) · dx[r, c],  x = primal[p(r), c]
// where p(r) is the primal row that tangent row r shares: rows are [steps, tangents, tokens]
// for the tangents and [steps, tokens] for the primal.
// With p.with_bias = 1 the argument is x + bias[c] (the block op `bias_gelu`: the FFN's
// first bias added as it is read, so the pre-activation is never written out); without it
// `bias` is a one-value stand-in that is not read.
// Layout: flat row-major arrays of `real`; shapes in `p`.
// Launch: blocks of 256 threads along x, one thread per output element; grid = ceil(len / 256)
// blocks folded into two dimensions (at most 65535 along x), see `flat_thread()`.

#include "common.cuh"

// Field for field the WGSL `Params`.
struct Params {
    unsigned len;
    unsigned width;
    unsigned tangents;
    unsigned tokens;
    unsigned with_bias;
};

// The argument of element n of the primal: x[n], plus bias[n mod width] when fused.
__device__ __forceinline__ float argument(const Params& p, const real* __restrict__ x,
                                          const real* __restrict__ bias, unsigned n) {
    if (p.with_bias == 1u) {
        return to_f32(x[n]) + to_f32(bias[n % p.width]);
    }
    return to_f32(x[n]);
}

// CUDA's erff is accurate to a couple of ulp, so it replaces the WGSL file's polynomial, which
// exists only because WGSL has no erf.
__device__ __forceinline__ float cdf(float v) {
    return 0.5f * (1.0f + erff(v * 0.7071067811865476f));
}

KERNEL gelu(const Params p, const real* __restrict__ x, real* __restrict__ out,
            const real* __restrict__ bias) {
    unsigned n = flat_thread();
    if (n < p.len) {
        float v = argument(p, x, bias, n);
        out[n] = to_real(v * cdf(v));
    }
}

KERNEL gelu_jvp(const Params p, const real* __restrict__ x, const real* __restrict__ dx,
                real* __restrict__ out, const real* __restrict__ bias) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned c = n % p.width;
        unsigned row = n / p.width;
        unsigned step = row / (p.tangents * p.tokens);
        unsigned primal_row = step * p.tokens + row % p.tokens;
        float v = argument(p, x, bias, primal_row * p.width + c);
        float pdf = expf(-0.5f * v * v) * 0.3989422804014327f;
        out[n] = to_real((cdf(v) + v * pdf) * to_f32(dx[n]));
    }
}
