// Elementwise and data-movement ops (port of shaders/elementwise.wgsl; mirrors
// src/backend/reference.rs):
//   add, sub           out[n] = a[n] ± b[n]
//   add_bias           out[r, c] = a[r, c] + b[c]                       (b: [width])
//   interpolate        out[k, n] = a[n] + alphas[k] · b[n]              (a = origin, b = Δ)
//   token_tangents     out[k, m, i, c] = a[i, c] if i = first + m else 0   (a = Δ: [tokens, width])
//   gather_rows        out[r, c] = a[ids[r], c]                          (a: [table rows, width])
//   scatter_rows       out[row, c] = Σ_{r: ids[r] = row} a[r, c], r ascending
// Layout: flat row-major arrays of `real`; shapes in `p`.
// Launch: blocks of 256 threads along x, one thread per output element; grid = ceil(len / 256)
// blocks folded into two dimensions (at most 65535 along x) so that outputs beyond 16M elements
// still get one each (`flat_thread()`).

#include "common.cuh"

// Field for field the WGSL `Params`, padding included, so the host passes the same bytes.
struct Params {
    unsigned len;      // output elements
    unsigned width;    // row width
    unsigned count;    // alphas; tangent directions; ids
    unsigned first;    // first tangent direction
    unsigned tokens;
    unsigned _pad0;
    unsigned _pad1;
    unsigned _pad2;
};

KERNEL add(const Params p, const real* __restrict__ a, const real* __restrict__ b,
           real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        out[n] = to_real(to_f32(a[n]) + to_f32(b[n]));
    }
}

KERNEL sub(const Params p, const real* __restrict__ a, const real* __restrict__ b,
           real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        out[n] = to_real(to_f32(a[n]) - to_f32(b[n]));
    }
}

KERNEL add_bias(const Params p, const real* __restrict__ a, const real* __restrict__ b,
                real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        out[n] = to_real(to_f32(a[n]) + to_f32(b[n % p.width]));
    }
}

KERNEL interpolate(const Params p, const real* __restrict__ a, const real* __restrict__ b,
                   const float* __restrict__ alphas, real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned inner = n % p.width;   // width = the origin's length here
        out[n] = to_real(to_f32(a[inner]) + alphas[n / p.width] * to_f32(b[inner]));
    }
}

KERNEL token_tangents(const Params p, const real* __restrict__ a, real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned c = n % p.width;
        unsigned i = (n / p.width) % p.tokens;
        unsigned m = (n / (p.width * p.tokens)) % p.count;
        float value = 0.0f;
        if (i == p.first + m) {
            value = to_f32(a[i * p.width + c]);
        }
        out[n] = to_real(value);
    }
}

KERNEL gather_rows(const Params p, const real* __restrict__ a, const unsigned* __restrict__ ids,
                   real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned c = n % p.width;
        out[n] = to_real(to_f32(a[ids[n / p.width] * p.width + c]));
    }
}

// A gather over all ids rather than a scatter, so that no two threads write one element (no
// atomics) and every sum adds its rows in ascending order, as the reference does.
KERNEL scatter_rows(const Params p, const real* __restrict__ a, const unsigned* __restrict__ ids,
                    real* __restrict__ out) {
    unsigned n = flat_thread();
    if (n < p.len) {
        unsigned c = n % p.width;
        unsigned row = n / p.width;
        float sum = 0.0f;
        for (unsigned r = 0u; r < p.count; r++) {
            if (ids[r] == row) {
                sum += to_f32(a[r * p.width + c]);
            }
        }
        out[n] = to_real(sum);
    }
}
