// Multi-head attention softmax(Q Kᵀ/√d + bias, masked) V, its JVP and its VJP (the CUDA port of
// shaders/attention.wgsl; mirrors the reference's `attention`, `attention_jvp`, `attention_vjp`):
//   softmax       P[s, h, i, j] = softmax_j(q_i · k_j / √d + bias[h, i, j]); masked keys get 0
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
// Launch: blocks of 64 threads along x, one thread per (sequence, head, query) for the softmax and
// scores kernels and one per output element for the others; the grid is the host's
// `grid(threads, 64)`, a one-dimensional count of blocks folded into two dimensions.
// No shared memory: every thread works alone on its row or element.

#include "common.cuh"

// Field for field the WGSL uniform block, padding included.
struct Params {
  unsigned seqs;       // sequences in this dispatch (primal seqs, or tangent seqs of the chunk)
  unsigned tokens;
  unsigned heads;
  unsigned head_dim;
  unsigned tangents;   // tangent sequences per primal sequence
  unsigned first_seq;  // first tangent sequence of the chunk
  unsigned has_bias;
  unsigned has_mask;
  float scale;         // 1/√d
  unsigned _pad0;
  unsigned _pad1;
  unsigned _pad2;
};

// Thread n of a kernel with one thread per (sequence, head, query): sequence-major.
struct Query {
  unsigned seq;
  unsigned h;
  unsigned i;
};

__device__ __forceinline__ Query query_of(const Params& p, unsigned n) {
  const unsigned t = p.tokens;
  return Query{n / (t * p.heads), (n / t) % p.heads, n % t};
}

__device__ __forceinline__ unsigned width(const Params& p) { return p.heads * p.head_dim; }

// Thread n of a kernel with one thread per element of a [seqs, tokens, width] output.
struct Element {
  unsigned seq;
  unsigned i;
  unsigned feature;  // h · head_dim + c
  unsigned h;
  unsigned c;
};

__device__ __forceinline__ Element element_of(const Params& p, unsigned n) {
  const unsigned w = width(p);
  const unsigned feature = n % w;
  return Element{n / (w * p.tokens), (n / w) % p.tokens, feature, feature / p.head_dim, feature % p.head_dim};
}

// Start of the scratch row of query i, head h, of the chunk's sequence `chunk_seq`.
__device__ __forceinline__ unsigned scratch_row(const Params& p, unsigned chunk_seq, unsigned h, unsigned i) {
  return ((chunk_seq * p.heads + h) * p.tokens + i) * p.tokens;
}

// Feature c of head h of part (0 q, 1 k, 2 v) in row `row` of a fused [q | k | v] array.
__device__ __forceinline__ unsigned at_qkv(const Params& p, unsigned row, unsigned part, unsigned h,
                                           unsigned c) {
  return row * 3u * width(p) + part * width(p) + h * p.head_dim + c;
}

__device__ __forceinline__ float probability(const Params& p, const real* __restrict__ probs, unsigned step,
                                             unsigned h, unsigned i, unsigned j) {
  return to_f32(probs[((step * p.heads + h) * p.tokens + i) * p.tokens + j]);
}

// out[base + j] ← P_ij (out[base + j] − Σ_l P_il out[base + l]): the softmax's derivative
// applied to the row of score derivatives the caller wrote there. The row is read back from
// storage (rounded to `real`), as the WGSL does, so both backends see the same values.
__device__ __forceinline__ void through_softmax(const Params& p, const real* __restrict__ probs,
                                                real* __restrict__ out, unsigned step, unsigned h,
                                                unsigned i, unsigned base) {
  float mean = 0.0f;
  for (unsigned j = 0u; j < p.tokens; j++) {
    mean += probability(p, probs, step, h, i, j) * to_f32(out[base + j]);
  }
  for (unsigned j = 0u; j < p.tokens; j++) {
    out[base + j] = to_real(probability(p, probs, step, h, i, j) * (to_f32(out[base + j]) - mean));
  }
}

__device__ __forceinline__ bool attends(const Params& p, const real* __restrict__ key_mask, unsigned s,
                                        unsigned j) {
  return p.has_mask == 0u || to_f32(key_mask[s * p.tokens + j]) != 0.0f;
}

// q_i · k_j / √d + bias[h, i, j] for sequence s, head h.
__device__ __forceinline__ float score(const Params& p, const real* __restrict__ qkv,
                                       const real* __restrict__ score_bias, unsigned s, unsigned h,
                                       unsigned i, unsigned j) {
  const unsigned t = p.tokens;
  float dot = 0.0f;
  for (unsigned c = 0u; c < p.head_dim; c++) {
    dot += to_f32(qkv[at_qkv(p, s * t + i, 0u, h, c)]) * to_f32(qkv[at_qkv(p, s * t + j, 1u, h, c)]);
  }
  float value = dot * p.scale;
  if (p.has_bias == 1u) {
    value += to_f32(score_bias[(h * t + i) * t + j]);
  }
  return value;
}

// The scores are computed twice (for the maximum, then for the exponentials) rather than
// stored, so that f16 storage rounds only the probabilities, never a score before its exp.
KERNEL softmax(const Params p, const real* __restrict__ qkv, const real* __restrict__ score_bias,
               const real* __restrict__ key_mask, real* __restrict__ out) {
  const unsigned n = flat_thread();
  const unsigned t = p.tokens;
  if (n >= p.seqs * p.heads * t) {
    return;
  }
  const Query q = query_of(p, n);
  const unsigned s = q.seq;
  const unsigned h = q.h;
  const unsigned i = q.i;
  const unsigned base = ((s * p.heads + h) * t + i) * t;
  float largest = -3.4e38f;
  bool attended = false;
  for (unsigned j = 0u; j < t; j++) {
    if (attends(p, key_mask, s, j)) {
      largest = fmaxf(largest, score(p, qkv, score_bias, s, h, i, j));
      attended = true;
    }
  }
  float total = 0.0f;
  for (unsigned j = 0u; j < t; j++) {
    if (attends(p, key_mask, s, j)) {
      total += expf(score(p, qkv, score_bias, s, h, i, j) - largest);
    }
  }
  for (unsigned j = 0u; j < t; j++) {
    // A sequence whose keys are all masked attends to nothing.
    float prob = 0.0f;
    if (attended && total > 0.0f && attends(p, key_mask, s, j)) {
      prob = expf(score(p, qkv, score_bias, s, h, i, j) - largest) / total;
    }
    out[base + j] = to_real(prob);
  }
}

KERNEL context(const Params p, const real* __restrict__ qkv, const real* __restrict__ probs,
               real* __restrict__ out) {
  const unsigned n = flat_thread();
  const unsigned t = p.tokens;
  const unsigned w = width(p);
  if (n >= p.seqs * t * w) {
    return;
  }
  const Element e = element_of(p, n);
  const unsigned s = e.seq;
  float acc = 0.0f;
  for (unsigned j = 0u; j < t; j++) {
    acc += probability(p, probs, s, e.h, e.i, j) * to_f32(qkv[at_qkv(p, s * t + j, 2u, e.h, e.c)]);
  }
  out[n] = to_real(acc);
}

KERNEL jvp_scores(const Params p, const real* __restrict__ qkv, const real* __restrict__ tangents,
                  const real* __restrict__ probs, real* __restrict__ out) {
  const unsigned n = flat_thread();
  const unsigned t = p.tokens;
  if (n >= p.seqs * p.heads * t) {
    return;
  }
  const Query q = query_of(p, n);
  const unsigned i = q.i;
  const unsigned h = q.h;
  const unsigned seq = p.first_seq + q.seq;
  const unsigned s = seq / p.tangents;
  const unsigned base = scratch_row(p, q.seq, h, i);
  for (unsigned j = 0u; j < t; j++) {
    float ds = 0.0f;
    for (unsigned c = 0u; c < p.head_dim; c++) {
      ds += to_f32(tangents[at_qkv(p, seq * t + i, 0u, h, c)]) * to_f32(qkv[at_qkv(p, s * t + j, 1u, h, c)])
          + to_f32(qkv[at_qkv(p, s * t + i, 0u, h, c)]) * to_f32(tangents[at_qkv(p, seq * t + j, 1u, h, c)]);
    }
    out[base + j] = to_real(ds * p.scale);
  }
  through_softmax(p, probs, out, s, h, i, base);
}

KERNEL jvp_context(const Params p, const real* __restrict__ qkv, const real* __restrict__ tangents,
                   const real* __restrict__ probs, const real* __restrict__ scratch, real* __restrict__ out) {
  const unsigned n = flat_thread();
  const unsigned t = p.tokens;
  const unsigned w = width(p);
  if (n >= p.seqs * t * w) {
    return;
  }
  const Element e = element_of(p, n);
  const unsigned h = e.h;
  const unsigned c = e.c;
  const unsigned i = e.i;
  const unsigned feature = e.feature;
  const unsigned seq = p.first_seq + e.seq;
  const unsigned s = seq / p.tangents;
  const unsigned base = scratch_row(p, e.seq, h, i);
  float acc = 0.0f;
  for (unsigned j = 0u; j < t; j++) {
    acc += to_f32(scratch[base + j]) * to_f32(qkv[at_qkv(p, s * t + j, 2u, h, c)])
         + probability(p, probs, s, h, i, j) * to_f32(tangents[at_qkv(p, seq * t + j, 2u, h, c)]);
  }
  out[(seq * t + i) * w + feature] = to_real(acc);
}

KERNEL vjp_scores(const Params p, const real* __restrict__ qkv, const real* __restrict__ tangents,
                  const real* __restrict__ probs, real* __restrict__ out) {
  const unsigned n = flat_thread();
  const unsigned t = p.tokens;
  const unsigned w = width(p);
  if (n >= p.seqs * p.heads * t) {
    return;
  }
  const Query q = query_of(p, n);
  const unsigned i = q.i;
  const unsigned h = q.h;
  const unsigned seq = p.first_seq + q.seq;
  const unsigned s = seq / p.tangents;
  const unsigned base = scratch_row(p, q.seq, h, i);
  for (unsigned j = 0u; j < t; j++) {
    float dp = 0.0f;
    for (unsigned c = 0u; c < p.head_dim; c++) {
      dp += to_f32(tangents[(seq * t + i) * w + h * p.head_dim + c])
          * to_f32(qkv[at_qkv(p, s * t + j, 2u, h, c)]);
    }
    out[base + j] = to_real(dp);
  }
  through_softmax(p, probs, out, s, h, i, base);
}

KERNEL vjp_inputs(const Params p, const real* __restrict__ qkv, const real* __restrict__ tangents,
                  const real* __restrict__ probs, const real* __restrict__ scratch, real* __restrict__ out) {
  const unsigned n = flat_thread();
  const unsigned t = p.tokens;
  const unsigned w = width(p);
  if (n >= p.seqs * t * 3u * w) {
    return;
  }
  const unsigned column = n % (3u * w);
  const unsigned part = column / w;
  const unsigned h = (column % w) / p.head_dim;
  const unsigned c = column % p.head_dim;
  const unsigned a = (n / (3u * w)) % t;
  const unsigned chunk_seq = n / (3u * w * t);
  const unsigned seq = p.first_seq + chunk_seq;
  const unsigned s = seq / p.tangents;
  const unsigned base = scratch_row(p, chunk_seq, h, 0u);
  float acc = 0.0f;
  if (part == 0u) {
    for (unsigned j = 0u; j < t; j++) {
      acc += to_f32(scratch[base + a * t + j]) * to_f32(qkv[at_qkv(p, s * t + j, 1u, h, c)]);
    }
    acc *= p.scale;
  } else if (part == 1u) {
    for (unsigned i = 0u; i < t; i++) {
      acc += to_f32(scratch[base + i * t + a]) * to_f32(qkv[at_qkv(p, s * t + i, 0u, h, c)]);
    }
    acc *= p.scale;
  } else {
    for (unsigned i = 0u; i < t; i++) {
      acc += probability(p, probs, s, h, i, a) * to_f32(tangents[(seq * t + i) * w + h * p.head_dim + c]);
    }
  }
  out[(seq * t + a) * 3u * w + column] = to_real(acc);
}
