// Pooling over tokens, its JVP and VJP, and the two accumulations that build P on the device
// (port of shaders/pooling.wgsl; mirrors the reference's pooling ops, `pool_accumulate` and
// `cotangent_accumulate`):
//   mean_pool             out[s, c] = mean_i x[s, i, c]
//   max_pool              out[s, c] = x[s, i*, c], i* the first token with the largest x[s, ·, c]
//   max_pool_jvp          out[q, c] = ẋ[q, i*, c], i* taken at the primal step of sequence q
//   mean_pool_vjp         out[s, i, c] = ȳ[s, c] / tokens
//   max_pool_vjp          out[q, i, c] = ȳ[q, c] if i = i* else 0
//   pool_accumulate       P[first + m, c] += Σ_k w_k mean_i ẋ[k, m, i, c], steps in order
//   cotangent_accumulate  P[i, first + m] += Σ_k w_k Σ_h x̄[k, m, i, h] Δ[i, h], steps in order
// Layout: primal [steps, tokens, width]; tangents and cotangents [steps, tangents, tokens,
// width]; P [tokens of the text, columns] row-major; the step weights w_k as f32.
// Launch: blocks of 64 threads along x, one thread per output element (the accumulations: one
// per element of P they touch, each adding its steps in order, so no atomics); grid =
// ceil(len / 64) blocks folded into two dimensions (at most 65535 along x), see `flat_thread()`.

#include "common.cuh"

// Field for field the WGSL `Params`, padding included, so the host passes the same bytes.
struct Params {
    unsigned len;         // outputs of this dispatch
    unsigned width;
    unsigned tokens;
    unsigned tangents;    // tangent sequences per primal step (1 for the primal ops)
    unsigned steps;
    unsigned first;       // first direction (pool_accumulate) or dimension (cotangent_accumulate)
    unsigned columns;     // columns of P
    unsigned _pad0;
};

// The first token of primal step `step` with the largest value of feature c. The start is the
// WGSL file's finite -3.4e38, not -inf, so that a column at or below it (all -inf) picks token 0
// there and here alike.
__device__ __forceinline__ unsigned arg_max(const Params& p, const real* __restrict__ x, unsigned step,
                                            unsigned c) {
    unsigned best = 0u;
    float largest = -3.4e38f;
    for (unsigned i = 0u; i < p.tokens; i++) {
        float v = to_f32(x[(step * p.tokens + i) * p.width + c]);
        if (v > largest) {
            largest = v;
            best = i;
        }
    }
    return best;
}

KERNEL mean_pool(const Params p, const real* __restrict__ x, real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned c = n % p.width;
        unsigned s = n / p.width;
        float sum = 0.0f;
        for (unsigned i = 0u; i < p.tokens; i++) {
            sum += to_f32(x[(s * p.tokens + i) * p.width + c]);
        }
        out[n] = to_real(sum / float(p.tokens));
    }
}

KERNEL max_pool(const Params p, const real* __restrict__ x, real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned c = n % p.width;
        unsigned s = n / p.width;
        out[n] = to_real(to_f32(x[(s * p.tokens + arg_max(p, x, s, c)) * p.width + c]));
    }
}

KERNEL max_pool_jvp(const Params p, const real* __restrict__ x, const real* __restrict__ dx,
                    real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned c = n % p.width;
        unsigned q = n / p.width;
        out[n] = to_real(to_f32(dx[(q * p.tokens + arg_max(p, x, q / p.tangents, c)) * p.width + c]));
    }
}

KERNEL mean_pool_vjp(const Params p, const real* __restrict__ dx, real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned c = n % p.width;
        unsigned s = n / (p.width * p.tokens);
        out[n] = to_real(to_f32(dx[s * p.width + c]) / float(p.tokens));
    }
}

KERNEL max_pool_vjp(const Params p, const real* __restrict__ x, const real* __restrict__ dx,
                    real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned c = n % p.width;
        unsigned i = (n / p.width) % p.tokens;
        unsigned q = n / (p.width * p.tokens);
        float value = 0.0f;
        if (i == arg_max(p, x, q / p.tangents, c)) {
            value = to_f32(dx[q * p.width + c]);
        }
        out[n] = to_real(value);
    }
}

// One thread per (direction m, feature c) of the batch: P[first + m, c].
KERNEL pool_accumulate(const Params p, const real* __restrict__ dx, const float* __restrict__ weights,
                       real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned c = n % p.width;
        unsigned m = n / p.width;
        unsigned slot = (p.first + m) * p.width + c;
        float value = to_f32(out[slot]);
        for (unsigned k = 0u; k < p.steps; k++) {
            unsigned seq = k * p.tangents + m;
            float sum = 0.0f;
            for (unsigned i = 0u; i < p.tokens; i++) {
                sum += to_f32(dx[(seq * p.tokens + i) * p.width + c]);
            }
            value += weights[k] * sum / float(p.tokens);
        }
        out[slot] = to_real(value);
    }
}

// One thread per (token i, cotangent m) of the batch: P[i, first + m].
KERNEL cotangent_accumulate(const Params p, const real* __restrict__ dx, const real* __restrict__ delta,
                            const float* __restrict__ weights, real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned m = n % p.tangents;
        unsigned i = n / p.tangents;
        unsigned slot = i * p.columns + p.first + m;
        float value = to_f32(out[slot]);
        for (unsigned k = 0u; k < p.steps; k++) {
            unsigned row = ((k * p.tangents + m) * p.tokens + i) * p.width;
            float contracted = 0.0f;
            for (unsigned h = 0u; h < p.width; h++) {
                contracted += to_f32(dx[row + h]) * to_f32(delta[i * p.width + h]);
            }
            value += weights[k] * contracted;
        }
        out[slot] = to_real(value);
    }
}
