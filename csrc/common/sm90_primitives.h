// Hopper (sm_90a) building blocks for a wgmma mainloop: shared-memory matrix descriptors for the
// 128-byte-swizzled layouts, and the fences / commit / wait that bracket wgmma.mma_async. The MMA
// wrappers themselves are generated: sm90_wgmma.h. Validated by csrc/common/selftest/wgmma_selftest.cuh.
//
// Shared-memory tile layout used with these descriptors ("SW128"): a tile of R rows x 64 16-bit
// elements is R rows of 128 bytes, 16-byte chunk c of row r stored at chunk c ^ (r % 8); the tile
// starts 1024-byte aligned (8 rows = one swizzle atom). A row of D > 64 elements is split into D / 64
// such tiles ("slabs") placed one after the other. It serves both operand majors:
//   - K-major (Q, K: rows = M or N, elements along the reduction dim K): LBO unused (16), SBO = 1024
//     (stride between 8-row groups); the k16 step j inside a slab starts at +32 * j bytes;
//   - MN-major (V in P V: rows = keys = K, elements along N = head dim): LBO = slab stride (between
//     64-element groups along N), SBO = 1024 (between 8-key groups along K); the k16 step j starts at
//     +2048 * j bytes (16 rows).
#pragma once
#include <cstdint>

#include "common/platform.h"

namespace seer {
namespace sm90 {

// wgmma matrix descriptor: start address, leading / stride byte offsets (16-byte units), 128B swizzle.
__device__ __forceinline__ uint64_t make_smem_desc_sw128(uint32_t smem_addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  uint64_t d = 0;
  d |= static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>((lbo_bytes >> 4) & 0x3FFF) << 16;
  d |= static_cast<uint64_t>((sbo_bytes >> 4) & 0x3FFF) << 32;
  d |= static_cast<uint64_t>(1) << 62;  // layout type 1: 128-byte swizzle
  return d;
}

// The descriptor of the same tile layout `bytes` further (a multiple of 16): only the start-address
// field (bits 0..13, address / 16) changes, and shared-memory addresses stay below 2^18 bytes, so the
// add never carries out of it. Build a tile's descriptor once and step it with this: ptxas then
// emits one 32-bit add per wgmma instead of re-masking and re-packing the address (NOTES v9).
__device__ __forceinline__ uint64_t desc_add(uint64_t desc, uint32_t bytes) {
  const uint32_t lo = static_cast<uint32_t>(desc) + (bytes >> 4);
  return (desc & 0xFFFFFFFF00000000ull) | lo;
}

// Byte offset of element (row, col) in an SW128 tile of `rows` rows split into 64-element slabs.
__host__ __device__ __forceinline__ uint32_t sw128_offset(int row, int col, int rows) {
  const int slab = col >> 6, chunk = (col & 63) >> 3;
  return static_cast<uint32_t>(slab * rows * 128 + row * 128 + ((chunk ^ (row & 7)) << 4) + ((col & 7) << 1));
}

#if defined(SEER_CUDA_EMU)
// tests/cuda_emu: wgmma groups are queued per thread and run at wgmma.wait_group; the fences are no-ops.
template <typename R>
SEER_DEVICE void fence_operands(R&) {}
SEER_DEVICE void stmatrix_x4_sa(uint32_t addr, const uint32_t (&r)[4]) { seer_emu::stmatrix<4>(addr, r); }
SEER_DEVICE void wgmma_fence() {}
SEER_DEVICE void wgmma_commit() { seer_emu::wgmma_commit(); }
template <int N>
SEER_DEVICE void wgmma_wait() { seer_emu::wgmma_wait(N); }
template <int N>
SEER_DEVICE void wgmma_wait_late(uint32_t) { seer_emu::wgmma_wait(N); }
SEER_DEVICE void fence_view_async_shared() {}
#else
// Compiler-level fence on registers a wgmma reads or writes (no instruction): the empty asm "reads and
// writes" every element, so the compiler can neither sink earlier writes (zeroing, rescaling, the
// A-fragment packs) below the wgmma.fence that follows it, nor hoist later reads of the accumulators
// above the wgmma.wait_group that precedes it.
template <int N>
__device__ __forceinline__ void fence_operands(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N, int M>
__device__ __forceinline__ void fence_operands(uint32_t (&r)[N][M]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int j = 0; j < M; ++j) asm volatile("" : "+r"(r[i][j])::"memory");
}

template <int N>
__device__ __forceinline__ void fence_operands(uint64_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+l"(r[i])::"memory");
}

#if SEER_HAS_SM90A
// stmatrix.m8n8.x4 (16-bit elements): register j of lane 4 r + t holds elements 2 t, 2 t + 1 of row r of
// 8 x 8 matrix j (an mma / wgmma accumulator fragment packed to 16 bits); lane 8 j + r gives the shared
// address of matrix j's row r (16 bytes).
__device__ __forceinline__ void stmatrix_x4_sa(uint32_t addr, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r[0]), "r"(r[1]),
               "r"(r[2]), "r"(r[3])
               : "memory");
}
// Order the registers the next wgmma reads / writes (accumulators, A fragments) after ordinary writes.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Wait until at most N committed wgmma groups of this thread are pending.
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// The same wait where it stands in the code: ptxas moves a wgmma.wait_group up to the top of its basic block
// (NOTES v31: above a whole softmax, which then no longer overlaps the GEMM it waits for). Here it sits
// behind a branch on `zero` (0 at run time, unknown to the compiler; both ways wait), which ends the block
// before it.
template <int N>
__device__ __forceinline__ void wgmma_wait_late(uint32_t zero) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.u32 p, %0, 0;\n@p bra.uni SEER_WAIT_B;\nwgmma.wait_group.sync.aligned %1;\nbra.uni SEER_WAIT_E;\n"
      "SEER_WAIT_B:\nwgmma.wait_group.sync.aligned %1;\nSEER_WAIT_E:\n}\n" ::"r"(zero),
      "n"(N)
      : "memory");
}
// Make generic-proxy shared-memory writes (st.shared, cp.async) visible to wgmma's async proxy.
__device__ __forceinline__ void fence_view_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#else
__device__ __forceinline__ void stmatrix_x4_sa(uint32_t, const uint32_t (&)[4]) { SEER_TRAP(); }
__device__ __forceinline__ void wgmma_fence() { SEER_TRAP(); }
__device__ __forceinline__ void wgmma_commit() { SEER_TRAP(); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { SEER_TRAP(); }
template <int N>
__device__ __forceinline__ void wgmma_wait_late(uint32_t) { SEER_TRAP(); }
__device__ __forceinline__ void fence_view_async_shared() { SEER_TRAP(); }
#endif
#endif  // SEER_CUDA_EMU

}  // namespace sm90
}  // namespace seer
