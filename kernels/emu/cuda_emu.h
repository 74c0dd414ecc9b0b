// The CPU execution harness's view of CUDA: what a kernel file needs from the CUDA toolkit,
// defined for a plain C++20 compiler, so that the very same `kernels/*.cu` source NVRTC
// compiles runs on the host (build.rs compiles each family, per storage precision, as one
// C++ translation unit that includes this header, then the `.cu` file in its own namespace).
//
// How a launch runs (runtime.cpp): blocks are spread over a few OS threads; the threads of a
// block are fibers on one OS thread, each with its own small stack, run one after another
// until each reaches `__syncthreads()` or its end, then again, so that a barrier holds exactly
// as on a GPU. The built-in indices are per-OS-thread values the scheduler sets before it
// resumes a fiber; `__shared__` storage is per OS thread, i.e. per block in flight.
// Not emulated (kernels must not use them): warp shuffles and votes, atomics, dynamic shared
// memory, implicit warp lock-step.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#define SIMATTR_EMU 1
#define __device__
#define __host__
#define __global__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static thread_local

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
};

namespace simattr_emu {
extern thread_local uint3 thread_index;
extern thread_local uint3 block_index;
extern thread_local dim3 block_shape;
extern thread_local dim3 grid_shape;
// Suspends this thread of the block until every other thread has reached the barrier.
void barrier();
}  // namespace simattr_emu

#define threadIdx (simattr_emu::thread_index)
#define blockIdx (simattr_emu::block_index)
#define blockDim (simattr_emu::block_shape)
#define gridDim (simattr_emu::grid_shape)

inline void __syncthreads() { simattr_emu::barrier(); }

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

// ---- 16-bit storage types, as cuda_fp16.h / cuda_bf16.h name them -------------------------
// Bit patterns, converted with round-to-nearest-even as the device intrinsics do.

struct __half {
  std::uint16_t bits;
};

struct __nv_bfloat16 {
  std::uint16_t bits;
};

inline float __half2float(__half h) {
  const std::uint32_t sign = std::uint32_t(h.bits & 0x8000u) << 16;
  std::uint32_t exponent = (h.bits >> 10) & 0x1fu;
  std::uint32_t mantissa = h.bits & 0x3ffu;
  std::uint32_t bits;
  if (exponent == 0x1fu) {  // inf, nan
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {  // normal
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {  // zero
    bits = sign;
  } else {  // subnormal: normalise
    exponent = 113u;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      exponent--;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline __half __float2half_rn(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const std::uint16_t sign = std::uint16_t((bits >> 16) & 0x8000u);
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) {  // inf, nan
    return {std::uint16_t(sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x200u : 0u))};
  }
  if (magnitude >= 0x477ff000u) {  // rounds to beyond 65504
    return {std::uint16_t(sign | 0x7c00u)};
  }
  if (magnitude < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    const float scaled = std::fabs(f) * 16777216.0f;  // 2^24: half's subnormal step is 2^-24
    const std::uint32_t m = std::uint32_t(std::nearbyint(scaled));  // ties to even
    return {std::uint16_t(sign | m)};
  }
  const std::uint32_t exponent = (magnitude >> 23) - 112u;
  const std::uint32_t mantissa = magnitude & 0x7fffffu;
  std::uint32_t half_bits = (exponent << 10) | (mantissa >> 13);
  const std::uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half_bits & 1u))) {
    half_bits++;  // may carry into the exponent, which is the right answer
  }
  return {std::uint16_t(sign | half_bits)};
}

inline float __bfloat162float(__nv_bfloat16 b) {
  const std::uint32_t bits = std::uint32_t(b.bits) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // nan stays nan
    return {std::uint16_t((bits >> 16) | 0x40u)};
  }
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return {std::uint16_t(bits >> 16)};
}
