// All platform (CUDA vs ROCm/HIP) differences of seer_attn live in this header.
// Device code includes this instead of cuda_runtime.h / hip_runtime.h directly.
#pragma once

#ifdef USE_ROCM
#include <hip/hip_runtime.h>
#include <hip/hip_fp16.h>
#include <hip/hip_bf16.h>
#define SEER_WARP_SIZE 64
using seer_stream_t = hipStream_t;
// The mma.sync / ldmatrix / cp.async mainloops are NVIDIA-only inline PTX; on ROCm the tensor-core
// kernels are not built (SEER_HAS_MMA_SYNC stays 0) and the ops fall back to the PyTorch reference.
#define SEER_HAS_MMA_SYNC 0
#define SEER_HAS_SM90A 0
#define SEER_SHFL_XOR(v, m) __shfl_xor((v), (m))
#define SEER_TRAP() __builtin_trap()
#else
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define SEER_WARP_SIZE 32
using seer_stream_t = cudaStream_t;
#define SEER_HAS_MMA_SYNC 1
#define SEER_SHFL_XOR(v, m) __shfl_xor_sync(0xffffffffu, (v), (m))
#define SEER_TRAP() __trap()
// Hopper-only instructions (wgmma, common/sm90_*.h) exist in sm_90a device code only.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SEER_HAS_SM90A 1
#else
#define SEER_HAS_SM90A 0
#endif
#endif

#define SEER_DEVICE __device__ __forceinline__
#define SEER_HOST_DEVICE __host__ __device__ __forceinline__
