// All platform (CUDA vs ROCm/HIP) differences of seer_attn live in this header.
// Device code includes this instead of cuda_runtime.h / hip_runtime.h directly.
//
// Portable names (both branches):
//   SEER_WARP_SIZE         32 (CUDA warp) or 64 (CDNA wavefront)
//   seer_lane_mask_t       one bit per lane: uint32_t or uint64_t
//   SEER_FULL_LANE_MASK    every lane of the warp / wavefront
//   SEER_SHFL_XOR(v, m)    butterfly shuffle over the whole warp / wavefront
//   SEER_SHFL(v, src)      read `v` of lane `src`
//   SEER_BALLOT(pred)      seer_lane_mask_t of the lanes where pred is true
//   SEER_ALL(pred)         pred holds on every lane of the warp / wavefront
//   SEER_POPC_LANES(m)     number of set bits of a seer_lane_mask_t
//   SEER_LANES_BELOW(l)    mask of the lanes < l (l in [0, SEER_WARP_SIZE))
//   SEER_TRAP()            abort the kernel
//   SEER_GRID_DEP_WAIT()   programmatic dependent launch (sm_90+): wait until the preceding grid of the
//                          stream has finished and its memory is visible (no-op elsewhere)
//   SEER_GRID_DEP_LAUNCH() let the next grid of the stream (launched as programmatic) start now
// Host side (launchers): seer_error_t, SEER_SUCCESS, SEER_LAST_ERROR(), SEER_ERROR_STRING(e),
//   SEER_INVALID_VALUE, SEER_SET_MAX_DYNAMIC_SMEM(kernel, bytes) (opt a kernel in to more than 48 KB)
#pragma once
#include <cstdint>

#ifdef USE_ROCM
#if defined(SEER_HIP_EMU)
// Host-thread emulation of the device features the HIP kernels use (tests/hip_emu): runs their source
// on the CPU in tests. Never part of a build of the extension.
#include "hip_emu.h"
#else
#include <hip/hip_runtime.h>
#include <hip/hip_fp16.h>
// hip_bf16.h ships with ROCm >= 5.7; Debian's libamdhip64-dev (the compile-check toolchain of
// `make hip-check`) has only hip_bfloat16.h. The HIP kernels (csrc/*/hip/) never use either type:
// they move 16-bit values as raw bits (seer::hip16 below), so both toolchains compile them.
#if __has_include(<hip/hip_bf16.h>)
#include <hip/hip_bf16.h>
#endif
#endif
#define SEER_WARP_SIZE 64
using seer_stream_t = hipStream_t;
using seer_lane_mask_t = uint64_t;
#define SEER_FULL_LANE_MASK (~0ull)
// The mma.sync / ldmatrix / cp.async mainloops are NVIDIA-only inline PTX; on ROCm they are not
// built (SEER_HAS_MMA_SYNC stays 0). The MFMA mainloops live in csrc/*/hip/ (common/hip_mfma.h).
#define SEER_HAS_MMA_SYNC 0
#define SEER_HAS_SM90A 0
#define SEER_SHFL_XOR(v, m) __shfl_xor((v), (m))
#define SEER_SHFL(v, src) __shfl((v), (src))
#define SEER_BALLOT(pred) static_cast<seer_lane_mask_t>(__ballot(pred))
#define SEER_ALL(pred) __all(pred)
#define SEER_POPC_LANES(m) __popcll(m)
#define SEER_LANES_BELOW(l) ((1ull << (l)) - 1ull)
#define SEER_TRAP() __builtin_trap()
#define SEER_GRID_DEP_WAIT() ((void)0)
#define SEER_GRID_DEP_LAUNCH() ((void)0)
using seer_error_t = hipError_t;
#define SEER_SUCCESS hipSuccess
#define SEER_LAST_ERROR() hipGetLastError()
#define SEER_ERROR_STRING(e) hipGetErrorString(e)
#define SEER_INVALID_VALUE hipErrorInvalidValue
#define SEER_SET_MAX_DYNAMIC_SMEM(kernel, bytes) \
  hipFuncSetAttribute(reinterpret_cast<const void*>(kernel), hipFuncAttributeMaxDynamicSharedMemorySize, (bytes))
// CUDA runtime names used by the plain-CUDA files that ROCm builds too (tile_mask.cu): torch's
// hipify renames them in a ROCm build of the extension; these aliases let the same files compile
// unhipified with clang for `make hip-check`.
#ifndef cudaErrorInvalidValue
#define cudaErrorInvalidValue hipErrorInvalidValue
#endif

namespace seer {
namespace hip16 {
// 16-bit element types of the HIP kernels as raw bits (no dependency on hip_bf16.h / __half
// operators). Element tags: Bf16 and Fp16; u16 is the storage of both.
using u16 = uint16_t;
struct Bf16 {};
struct Fp16 {};

__device__ __forceinline__ float bf16_to_float(u16 x) { return __uint_as_float(static_cast<uint32_t>(x) << 16); }
// Round to nearest even; NaN stays NaN (quiet).
__device__ __forceinline__ u16 float_to_bf16(float f) {
  const uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<u16>((u >> 16) | 0x40u);
  return static_cast<u16>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ float fp16_to_float(u16 x) { return static_cast<float>(__builtin_bit_cast(_Float16, x)); }
__device__ __forceinline__ u16 float_to_fp16(float f) { return __builtin_bit_cast(u16, static_cast<_Float16>(f)); }

template <typename E> __device__ __forceinline__ float to_float(u16 x);
template <> __device__ __forceinline__ float to_float<Bf16>(u16 x) { return bf16_to_float(x); }
template <> __device__ __forceinline__ float to_float<Fp16>(u16 x) { return fp16_to_float(x); }
template <typename E> __device__ __forceinline__ u16 from_float(float f);
template <> __device__ __forceinline__ u16 from_float<Bf16>(float f) { return float_to_bf16(f); }
template <> __device__ __forceinline__ u16 from_float<Fp16>(float f) { return float_to_fp16(f); }
}  // namespace hip16
}  // namespace seer

#else
#if defined(SEER_CUDA_EMU)
// Host-thread emulation of the device features the CUDA kernels use (tests/cuda_emu): runs their source,
// and the self-test harnesses that drive them, on a machine without a GPU. Never part of a build of the
// extension.
#include "cuda_emu.h"
#else
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#endif
#define SEER_WARP_SIZE 32
using seer_stream_t = cudaStream_t;
using seer_lane_mask_t = uint32_t;
#define SEER_FULL_LANE_MASK 0xffffffffu
#define SEER_HAS_MMA_SYNC 1
#define SEER_SHFL_XOR(v, m) __shfl_xor_sync(0xffffffffu, (v), (m))
#define SEER_SHFL(v, src) __shfl_sync(0xffffffffu, (v), (src))
#define SEER_BALLOT(pred) __ballot_sync(0xffffffffu, (pred))
#define SEER_ALL(pred) __all_sync(0xffffffffu, (pred))
#define SEER_POPC_LANES(m) __popc(m)
#define SEER_LANES_BELOW(l) ((1u << (l)) - 1u)
#define SEER_TRAP() __trap()
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define SEER_GRID_DEP_WAIT() asm volatile("griddepcontrol.wait;\n" ::: "memory")
#define SEER_GRID_DEP_LAUNCH() asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory")
#else
#define SEER_GRID_DEP_WAIT() ((void)0)
#define SEER_GRID_DEP_LAUNCH() ((void)0)
#endif
using seer_error_t = cudaError_t;
#define SEER_SUCCESS cudaSuccess
#define SEER_LAST_ERROR() cudaGetLastError()
#define SEER_ERROR_STRING(e) cudaGetErrorString(e)
#define SEER_INVALID_VALUE cudaErrorInvalidValue
#define SEER_SET_MAX_DYNAMIC_SMEM(kernel, bytes) \
  cudaFuncSetAttribute((kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, (bytes))
// Hopper-only instructions (wgmma, common/sm90_*.h) exist in sm_90a device code only.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) || defined(SEER_CUDA_EMU)
#define SEER_HAS_SM90A 1
#else
#define SEER_HAS_SM90A 0
#endif
#endif

#define SEER_DEVICE __device__ __forceinline__
#define SEER_HOST_DEVICE __host__ __device__ __forceinline__
