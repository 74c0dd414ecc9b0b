// What every kernel file shares: the storage type `real` and its conversions, the kernel
// declaration, the flat block index of a two-dimensional grid.
//
// The same source is compiled two ways: by NVRTC for a GPU (src/backend/cuda/nvrtc.rs inlines
// this header and defines the storage with -DSIMATTR_STORAGE_F16 / _BF16), and as C++ for the
// CPU execution harness (kernels/emu/cuda_emu.h defines the CUDA built-ins first and
// SIMATTR_EMU). Tensors are stored as `real` (f32, f16 or bf16); arithmetic, accumulation and
// shared memory are f32 throughout.
#pragma once

#if defined(SIMATTR_STORAGE_F16)
#ifndef SIMATTR_EMU
#include <cuda_fp16.h>
#endif
typedef __half real;
#define SIMATTR_STORAGE_SYMBOL simattr_storage_f16
__device__ __forceinline__ float to_f32(real v) { return __half2float(v); }
__device__ __forceinline__ real to_real(float v) { return __float2half_rn(v); }
#elif defined(SIMATTR_STORAGE_BF16)
#ifndef SIMATTR_EMU
#include <cuda_bf16.h>
#endif
typedef __nv_bfloat16 real;
#define SIMATTR_STORAGE_SYMBOL simattr_storage_bf16
__device__ __forceinline__ float to_f32(real v) { return __bfloat162float(v); }
__device__ __forceinline__ real to_real(float v) { return __float2bfloat16_rn(v); }
#else
typedef float real;
#define SIMATTR_STORAGE_SYMBOL simattr_storage_f32
__device__ __forceinline__ float to_f32(real v) { return v; }
__device__ __forceinline__ real to_real(float v) { return v; }
#endif

// The storage precision, named among a compiled module's symbols so that a loaded module says
// what it stores (src/backend/cuda/nvrtc.rs `storage_symbol`; the driver emulation reads it).
#ifndef SIMATTR_EMU
extern "C" __device__ unsigned char SIMATTR_STORAGE_SYMBOL = 1;
#endif

// A kernel the host launches by name: unmangled under NVRTC; in the harness a plain function
// in the file's own namespace (the harness registers every KERNEL by name).
#ifdef SIMATTR_EMU
#define KERNEL static void
#else
#define KERNEL extern "C" __global__ void
#endif

// The host folds one-dimensional grids into two dimensions (at most 65535 blocks along x),
// so that more than 65535 blocks still get one each: the block's number along the fold.
__device__ __forceinline__ unsigned flat_block() { return blockIdx.y * gridDim.x + blockIdx.x; }

// The flat index of this thread when every thread owns one element.
__device__ __forceinline__ unsigned flat_thread() { return flat_block() * blockDim.x + threadIdx.x; }

// NVRTC has no INFINITY macro.
__device__ __forceinline__ float infinity_f32() { return __int_as_float(0x7f800000); }
