// Thin wrappers over the sm80+ warp-level instructions used by the tensor-core mainloops:
// cp.async (global -> shared, 16 B, zero-fill), ldmatrix (shared -> mma fragments) and
// mma.sync m16n8k16 with fp32 accumulation. ATen-free; NVIDIA-only (see platform.h).
//
// Fragment layouts (PTX ISA, "mma.m16n8k16"): lane = 4*g + t (g = lane/4 in 0..7, t = lane%4).
//   A (16x16, row-major)  regs a0..a3 (each 2 x 16-bit): a0 = (row g,   cols 2t..2t+1),
//                         a1 = (row g+8, cols 2t..), a2 = (row g, cols 2t+8..), a3 = (row g+8, cols 2t+8..)
//   B (16x8,  "col")      regs b0, b1: b0 = (rows 2t..2t+1, col g), b1 = (rows 2t+8.., col g)
//   C/D (16x8, fp32)      c0,c1 = (row g, cols 2t, 2t+1), c2,c3 = (row g+8, cols 2t, 2t+1)
#pragma once
#include <cstdint>
#include <type_traits>
#include "platform.h"

namespace seer {

#if defined(SEER_CUDA_EMU)
// tests/cuda_emu: the same instructions on host threads (cp.async queued until its wait; ldmatrix and
// mma.sync as rendezvous of the warp).
SEER_DEVICE void cp_async_16(void* smem_dst, const void* gmem_src, bool pred) { seer_emu::cp_issue(smem_dst, gmem_src, 16, !pred); }
SEER_DEVICE void cp_async_16_zfill(void* smem_dst, const void* gmem_src, bool pred) { seer_emu::cp_issue(smem_dst, gmem_src, 16, !pred); }
SEER_DEVICE void cp_async_4(void* smem_dst, const void* gmem_src) { seer_emu::cp_issue(smem_dst, gmem_src, 4, false); }
SEER_DEVICE void cp_async_16_sa(uint32_t s, const void* gmem_src) { seer_emu::cp_issue(seer_emu::from_shared(s), gmem_src, 16, false); }
SEER_DEVICE void cp_async_commit() { seer_emu::cp_commit(); }
template <int N>
SEER_DEVICE void cp_async_wait() { seer_emu::cp_wait(N); }
SEER_DEVICE uint32_t smem_u32(const void* p) { return seer_emu::to_shared(p); }
SEER_DEVICE void ldmatrix_x4_sa(uint32_t (&r)[4], uint32_t s) { seer_emu::ldmatrix<4, false>(r, s); }
SEER_DEVICE void ldmatrix_x4_trans_sa(uint32_t (&r)[4], uint32_t s) { seer_emu::ldmatrix<4, true>(r, s); }
SEER_DEVICE void ldmatrix_x2_sa(uint32_t (&r)[2], uint32_t s) { seer_emu::ldmatrix<2, false>(r, s); }
SEER_DEVICE void ldmatrix_x2_trans_sa(uint32_t (&r)[2], uint32_t s) { seer_emu::ldmatrix<2, true>(r, s); }
#else
// 16-byte asynchronous copy global -> shared. When !pred, the 16 shared bytes are zero-filled and
// global memory is not read (the address must still be a valid pointer value, not dereferenced).
SEER_DEVICE void cp_async_16(void* smem_dst, const void* gmem_src, bool pred) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst));
  const int src_bytes = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem_src), "r"(src_bytes));
}
// The same with the zero-fill as cp.async's ignore-src predicate (one predicated instruction, no
// src-size arithmetic): when !pred, the 16 shared bytes are zero-filled and gmem_src is not read.
SEER_DEVICE void cp_async_16_zfill(void* smem_dst, const void* gmem_src, bool pred) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst));
  asm volatile(
      "{\n.reg .pred ig;\nsetp.eq.u32 ig, %2, 0;\ncp.async.cg.shared.global [%0], [%1], 16, ig;\n}\n" ::"r"(s),
      "l"(gmem_src), "r"(static_cast<uint32_t>(pred)));
}
// 4-byte asynchronous copy global -> shared (cp.async.ca: 4-byte copies must use .ca). Both addresses
// 4-byte aligned; completes with the 16-byte copies of the same commit group.
SEER_DEVICE void cp_async_4(void* smem_dst, const void* gmem_src) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem_src));
}
// 16-byte asynchronous copy to a 32-bit shared-space address, unpredicated: a caller that adds constants
// to one base address gets them folded into the instruction's immediate offset.
SEER_DEVICE void cp_async_16_sa(uint32_t s, const void* gmem_src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem_src));
}
SEER_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Wait until at most N committed groups are still in flight.
template <int N>
SEER_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ldmatrix on 32-bit shared-space addresses. With XOR-swizzled tiles the per-lane address of a
// constant (row, col) shift is `base ^ c1 + c2` (c1, c2 compile-time), which keeps one address
// register per operand instead of one per shift.
SEER_DEVICE uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
SEER_DEVICE void ldmatrix_x4_sa(uint32_t (&r)[4], uint32_t s) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
SEER_DEVICE void ldmatrix_x4_trans_sa(uint32_t (&r)[4], uint32_t s) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
SEER_DEVICE void ldmatrix_x2_sa(uint32_t (&r)[2], uint32_t s) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(s));
}
SEER_DEVICE void ldmatrix_x2_trans_sa(uint32_t (&r)[2], uint32_t s) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(s));
}
#endif

// kN unpredicated 16-byte copies stepped together: copy i goes from g + i * g_step to the shared address
// s + i * kSBytes (the two-tensor form interleaves a second tensor's copies). The whole-tile copies of the
// mainloops (the q-major producer's 64-key groups, the dK/dV producer's whole row tiles, pooling's full K
// tiles): a thread's rows share row % 8, so its swizzled shared offsets are one base plus constants
// (immediates) and its global rows one pointer per tensor - ~3 instructions per copy instead of ~7 (NOTES
// v21, v22).
template <int kN, int kSBytes, typename Elem>
SEER_DEVICE void cp_async_16_stepped(uint32_t s, const Elem* g, int64_t g_step) {
#pragma unroll
  for (int i = 0; i < kN; ++i, g += g_step) cp_async_16_sa(s + i * kSBytes, g);
}
template <int kN, int kSBytes, typename Elem>
SEER_DEVICE void cp_async_16_stepped(uint32_t sa, const Elem* a, int64_t a_step, uint32_t sb, const Elem* b, int64_t b_step) {
#pragma unroll
  for (int i = 0; i < kN; ++i, a += a_step, b += b_step) {
    cp_async_16_sa(sa + i * kSBytes, a);
    cp_async_16_sa(sb + i * kSBytes, b);
  }
}

// Bytes from `p` (shared memory) to the next 1024-byte boundary: the 128-byte-swizzle tiles that wgmma and
// TMA read start there (the sm_90 kernels either trap when the dynamic window is not aligned or reserve
// the slack and skip it).
SEER_DEVICE uint32_t smem_pad_1024(const void* p) { return (1024u - (smem_u32(p) & 1023u)) & 1023u; }

// The same from generic pointers into shared memory.
SEER_DEVICE void ldmatrix_x4(uint32_t (&r)[4], const void* smem_src) { ldmatrix_x4_sa(r, smem_u32(smem_src)); }
SEER_DEVICE void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_src) { ldmatrix_x4_trans_sa(r, smem_u32(smem_src)); }
SEER_DEVICE void ldmatrix_x2(uint32_t (&r)[2], const void* smem_src) { ldmatrix_x2_sa(r, smem_u32(smem_src)); }
SEER_DEVICE void ldmatrix_x2_trans(uint32_t (&r)[2], const void* smem_src) { ldmatrix_x2_trans_sa(r, smem_u32(smem_src)); }

// Elem is __half or __nv_bfloat16 in everything below.
template <typename Elem>
constexpr bool kIsHalf = std::is_same<Elem, __half>::value;

// D = A * B + D, m16n8k16, fp32 accumulators.
#define SEER_MMA_16816(PTX_T)                                                                                \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX_T "." PTX_T                                       \
               ".f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"                      \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                                \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
template <typename Elem>
SEER_DEVICE void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(SEER_CUDA_EMU)
  seer_emu::mma_16816<Elem>(d, a, b);
#else
  if constexpr (kIsHalf<Elem>) SEER_MMA_16816("f16");
  else SEER_MMA_16816("bf16");
#endif
}
#undef SEER_MMA_16816

// The two n8 B fragments one ldmatrix x4 gives (b[0..1]: n8 fragment 2j, b[2..3]: 2j + 1) against the
// A fragments of MT 16-row tiles: acc[mt][2j] += A[mt] * (b[0], b[1]), acc[mt][2j + 1] += A[mt] * (b[2], b[3]).
// The halves of b are passed as views of b's registers (no copies: the code is the hand-written loop's).
template <typename Elem, int MT, int NF>
SEER_DEVICE void mma_16816_x2(float (&acc)[MT][NF][4], int j, const uint32_t (&a)[MT][4], const uint32_t (&b)[4]) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    mma_16816<Elem>(acc[mt][2 * j], a[mt], *reinterpret_cast<const uint32_t(*)[2]>(&b[0]));
    mma_16816<Elem>(acc[mt][2 * j + 1], a[mt], *reinterpret_cast<const uint32_t(*)[2]>(&b[2]));
  }
}

// Two floats -> one 32-bit register of two 16-bit values (x in the low half).
template <typename Elem>
SEER_DEVICE uint32_t pack2(float x, float y) {
  if constexpr (kIsHalf<Elem>) {
    __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<uint32_t*>(&h);
  } else {
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<uint32_t*>(&h);
  }
}

// One 16-bit element <-> float (round to nearest).
template <typename Elem>
SEER_DEVICE float to_float(Elem x) {
  if constexpr (kIsHalf<Elem>) return __half2float(x);
  else return __bfloat162float(x);
}
template <typename Elem>
SEER_DEVICE Elem from_float(float x) {
  if constexpr (kIsHalf<Elem>) return __float2half_rn(x);
  else return __float2bfloat16_rn(x);
}

// 2^x with the hardware approximation (what softmax mainloops use after folding log2(e) into the scale).
SEER_DEVICE float fast_exp2(float x) {
#if defined(SEER_CUDA_EMU)
  return std::exp2(x);
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#endif
}

// Reductions over the 4 lanes of a quad (the lanes that share one accumulator row).
SEER_DEVICE float quad_max(float v) {
  v = fmaxf(v, SEER_SHFL_XOR(v, 1));
  return fmaxf(v, SEER_SHFL_XOR(v, 2));
}
SEER_DEVICE float quad_sum(float v) {
  v += SEER_SHFL_XOR(v, 1);
  return v + SEER_SHFL_XOR(v, 2);
}

}  // namespace seer
