// CDNA3 (gfx942, MI300X) matrix-core helpers of the HIP kernels (csrc/*/hip/).
//
// Two parts:
//  1. Fragment-index functions (namespace seer::mfma, plain constexpr C++, no HIP dependency): which
//     lane / register holds which element of the A, B and C/D operands of the MFMA instructions the
//     kernels use. The host layout test (tests/hip_layout/mfma_layout_test.cpp) includes this header
//     without HIP and checks tile GEMMs built from these functions against a plain matmul, with an
//     independent model of each instruction.
//  2. Device wrappers (namespace seer::hip, only when compiling HIP): the MFMA builtins, LDS vector
//     loads, work-item ids and the workgroup barrier as compiler builtins (no device-library calls).
//
// Operand layouts: AMD Instinct MI300 "CDNA3" Instruction Set Architecture Reference Guide, chapter 7
// "Matrix Arithmetic Instructions" (the MFMA operand / result register layouts; the guide itself could
// not be opened from this machine, so the subsection is not quoted). The formulas below were checked
// for every lane, register and element against AMD's matrix instruction calculator
// (github.com/ROCm/amd_matrix_instruction_calculator, `--architecture cdna3 --instruction
// v_mfma_f32_32x32x8_bf16 --matrix-layout --A-matrix` etc., the tool AMD publishes with the ISA guide),
// for the bf16 and f16 variants of both instructions:
//
//   v_mfma_f32_32x32x8_{bf16,f16}   (builtins __builtin_amdgcn_mfma_f32_32x32x8bf16_1k / _32x32x8f16)
//     D[32x32] = A[32x8] * B[8x32] + C; A, B: 4 x 16-bit per lane (2 VGPRs); C, D: 16 fp32 per lane.
//     A[i][k]:  lane = i + 32 * (k / 4), element k % 4
//     B[k][j]:  lane = j + 32 * (k / 4), element k % 4
//     D[i][j]:  lane = j + 32 * ((i / 4) % 2), register (i % 4) + 4 * (i / 8)
//   v_mfma_f32_16x16x16_{bf16,f16}  (builtins __builtin_amdgcn_mfma_f32_16x16x16bf16_1k / _16x16x16f16)
//     D[16x16] = A[16x16] * B[16x16] + C; A, B: 4 x 16-bit per lane; C, D: 4 fp32 per lane.
//     A[i][k]:  lane = i + 16 * (k / 4), element k % 4
//     B[k][j]:  lane = j + 16 * (k / 4), element k % 4
//     D[i][j]:  lane = j + 16 * (i / 4), register i % 4
#pragma once

#if defined(__HIP__) || defined(__HIPCC__)
#define SEER_MFMA_HD __host__ __device__ __forceinline__
#else
#define SEER_MFMA_HD inline
#endif

namespace seer {
namespace mfma {

constexpr int kWave = 64;  // lanes of a CDNA wavefront

// ---- v_mfma_f32_32x32x8 (M = 32) and v_mfma_f32_16x16x16 (M = 16): one rule for both --------------
// M x M tile, K = 256 / M, 4 A / B elements per lane, M * M / 64 accumulator registers per lane.
//   A operand: element e (0..3) of `lane` is A[a_row(lane)][a_k(lane, e)].
//   B operand: element e of `lane` is B[b_k(lane, e)][b_col(lane)].
//   C / D: register r of `lane` is D[c_row(lane, r)][c_col(lane)] (M = 16: r < 4, so r / 4 = 0).
template <int M>
struct MfmaF32 {
  static_assert(M == 32 || M == 16, "v_mfma_f32_32x32x8 or v_mfma_f32_16x16x16");
  static constexpr int kM = M, kN = M, kK = 256 / M, kAElems = 4, kCRegs = M * M / kWave;
  static SEER_MFMA_HD constexpr int a_row(int lane) { return lane % M; }
  static SEER_MFMA_HD constexpr int a_k(int lane, int e) { return 4 * (lane / M) + e; }
  static SEER_MFMA_HD constexpr int b_k(int lane, int e) { return a_k(lane, e); }
  static SEER_MFMA_HD constexpr int b_col(int lane) { return lane % M; }
  static SEER_MFMA_HD constexpr int c_row(int lane, int r) { return 8 * (r / 4) + 4 * (lane / M) + (r % 4); }
  static SEER_MFMA_HD constexpr int c_col(int lane) { return lane % M; }
};
using M32x32x8 = MfmaF32<32>;
using M16x16x16 = MfmaF32<16>;

// ---- reduction-index packing ----------------------------------------------------------------------
// A dot product does not depend on the order of its terms, so a kernel may assign any reduction
// index to an (MFMA step, k) pair as long as A and B use the same assignment. The kernels load 8
// consecutive 16-bit values per lane (one 16-byte LDS / global read) and feed them to two
// consecutive 32x32x8 steps: for a 16-wide slice of the reduction dimension starting at d0,
//   step s (0, 1), k (0..7):  d = d0 + 8 * (k / 4) + 4 * s + (k % 4)
// i.e. lane half h = k / 4 reads d0 + 8h .. d0 + 8h + 7 and step s uses elements 4s .. 4s + 3.
SEER_MFMA_HD constexpr int kpack16_index(int step, int k) { return 8 * (k / 4) + 4 * step + (k % 4); }

// Same for the 16x16x16 instruction over a 32-wide slice (two steps): lane quarter q = k / 4 reads
// d0 + 8q .. d0 + 8q + 7 and step s uses elements 4s .. 4s + 3 (the same formula).
SEER_MFMA_HD constexpr int kpack32_index(int step, int k) { return kpack16_index(step, k); }

}  // namespace mfma
}  // namespace seer

#if defined(__HIP__) || defined(SEER_HIP_EMU)  // the HIP compiler (or the CPU emulation of its device code)
#include "common/platform.h"

namespace seer {
namespace hip {

typedef short s16x4 __attribute__((ext_vector_type(4)));      // 4 x 16-bit operand (bit pattern)
typedef _Float16 h16x4 __attribute__((ext_vector_type(4)));   // 4 x fp16 operand
typedef float f32x16 __attribute__((ext_vector_type(16)));    // 32x32 accumulator fragment
typedef float f32x4 __attribute__((ext_vector_type(4)));      // 16x16 accumulator fragment
typedef unsigned int u32x4 __attribute__((ext_vector_type(4)));  // 16-byte load / store unit
typedef unsigned int u32x2 __attribute__((ext_vector_type(2)));

// Work-item / workgroup ids and the workgroup barrier as builtins: no device-library calls, so
// the compile check (`make hip-check`, -nogpulib) sees the same code as a full ROCm build.
SEER_DEVICE int tid() { return static_cast<int>(__builtin_amdgcn_workitem_id_x()); }
SEER_DEVICE int bid_x() { return static_cast<int>(__builtin_amdgcn_workgroup_id_x()); }
SEER_DEVICE int bid_y() { return static_cast<int>(__builtin_amdgcn_workgroup_id_y()); }
SEER_DEVICE int bid_z() { return static_cast<int>(__builtin_amdgcn_workgroup_id_z()); }
SEER_DEVICE void barrier() {
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
  __builtin_amdgcn_s_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
}
// exp2 on the hardware unit (v_exp_f32): exp2(-inf) = 0, the online softmax relies on it.
SEER_DEVICE float exp2f_fast(float x) { return __builtin_amdgcn_exp2f(x); }
// Natural log for the epilogue's LSE: log2 (v_log_f32) * ln 2.
SEER_DEVICE float logf_fast(float x) { return __builtin_amdgcn_logf(x) * 0.6931471805599453f; }

// D = A * B + C on the matrix cores; Elem is hip16::Bf16 or hip16::Fp16, operands are raw bits. The
// accumulator type picks the instruction: f32x16 = v_mfma_f32_32x32x8, f32x4 = v_mfma_f32_16x16x16.
template <typename Elem, typename Acc>
SEER_DEVICE Acc mfma(s16x4 a, s16x4 b, Acc c) {
  constexpr bool k32 = __is_same(Acc, f32x16);
  if constexpr (__is_same(Elem, hip16::Bf16) && k32) {
    return __builtin_amdgcn_mfma_f32_32x32x8bf16_1k(a, b, c, 0, 0, 0);
  } else if constexpr (__is_same(Elem, hip16::Bf16)) {
    return __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(a, b, c, 0, 0, 0);
  } else if constexpr (k32) {
    return __builtin_amdgcn_mfma_f32_32x32x8f16(__builtin_bit_cast(h16x4, a), __builtin_bit_cast(h16x4, b), c, 0, 0, 0);
  } else {
    return __builtin_amdgcn_mfma_f32_16x16x16f16(__builtin_bit_cast(h16x4, a), __builtin_bit_cast(h16x4, b), c, 0, 0, 0);
  }
}
template <typename Elem>
SEER_DEVICE f32x16 mfma32x32x8(s16x4 a, s16x4 b, f32x16 c) { return mfma<Elem>(a, b, c); }
template <typename Elem>
SEER_DEVICE f32x4 mfma16x16x16(s16x4 a, s16x4 b, f32x4 c) { return mfma<Elem>(a, b, c); }

SEER_DEVICE int imin(int a, int b) { return a < b ? a : b; }
SEER_DEVICE int imax(int a, int b) { return a > b ? a : b; }

// Transposes two 16-byte units (rows a and b, 8 consecutive 16-bit columns each) into 8 words:
// word e = (a[e], b[e]) (low half a). The loaders that build a transposed LDS tile (V^T, Q^T, dO^T)
// store word e at (column e, rows a..b).
SEER_DEVICE void transpose_pair(u32x4 a, u32x4 b, uint32_t (&w)[8]) {
  const uint32_t aw[4] = {a.x, a.y, a.z, a.w}, bw[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    const int sh = 16 * (e % 2);
    w[e] = ((aw[e / 2] >> sh) & 0xffffu) | (((bw[e / 2] >> sh) & 0xffffu) << 16);
  }
}

// The two 4-element halves of a 16-byte unit (8 x 16-bit) as MFMA operands (kpack16_index).
SEER_DEVICE s16x4 lo4(u32x4 v) { return __builtin_bit_cast(s16x4, u32x2{v.x, v.y}); }
SEER_DEVICE s16x4 hi4(u32x4 v) { return __builtin_bit_cast(s16x4, u32x2{v.z, v.w}); }

// Packs two floats into one 32-bit word of 16-bit elements (low = a).
template <typename Elem>
SEER_DEVICE uint32_t pack2(float a, float b) {
  return static_cast<uint32_t>(hip16::from_float<Elem>(a)) | (static_cast<uint32_t>(hip16::from_float<Elem>(b)) << 16);
}
// Same for values known not to be NaN (probabilities): bf16 rounding without the NaN test.
template <typename Elem>
SEER_DEVICE uint32_t pack2_finite(float a, float b) {
  if constexpr (__is_same(Elem, hip16::Bf16)) {
    const uint32_t ua = __float_as_uint(a), ub = __float_as_uint(b);
    return ((ua + 0x7fffu + ((ua >> 16) & 1u)) >> 16) | ((ub + 0x7fffu + ((ub >> 16) & 1u)) & 0xffff0000u);
  } else {
    return pack2<Elem>(a, b);
  }
}
template <typename Elem>
SEER_DEVICE s16x4 pack4_finite(float a, float b, float c, float d) {
  return __builtin_bit_cast(s16x4, u32x2{pack2_finite<Elem>(a, b), pack2_finite<Elem>(c, d)});
}
template <typename Elem>
SEER_DEVICE s16x4 pack4(float a, float b, float c, float d) {
  return __builtin_bit_cast(s16x4, u32x2{pack2<Elem>(a, b), pack2<Elem>(c, d)});
}

}  // namespace hip
}  // namespace seer
#endif
