// Index maps of the HIP (CDNA3) attention mainloop: which key an MFMA accumulator register holds, and
// where K and V^T live in LDS. Plain constexpr C++ (no HIP): the kernels and the host layout test
// (tests/hip_layout/mfma_layout_test.cpp) use the same functions.
//
// One wavefront owns 32 query rows and computes, per K/V tile of kBlockN = 64 (D 64) or 32 (D 128) keys
// (32-key halves t):
//   S^T[key][q] = K Q^T    v_mfma_f32_32x32x8: A = K rows from LDS, B = Q from registers,
//                          reduction over D in 16-wide slices (mfma::kpack16_index)
//   O^T[d][q]  += V^T P^T  v_mfma_f32_32x32x8: A = V^T rows from LDS, B = P^T straight from the S^T
//                          accumulators (converted to 16 bit)
// Both results have the query in the lane (D layout: column = lane % 32), so the softmax state of a
// query row lives in the lanes l and l + 32 that hold it and the rescale of O needs no shuffle.
//
// Why S^T rows are permuted (key_of_srow). The S^T accumulator register 4s + e (s = 0..3, e = 0..3) of
// lane half h holds tile row i = 8s + 4h + e; as the B operand of step s of the second GEMM it must
// hold P^T[k = 4h + e] of that step. Assigning tile row i the key 16*(s/2) + 8h + 4*(s%2) + e makes
// the keys of steps 2m and 2m + 1 for lane half h the 8 consecutive keys 16m + 8h .. 16m + 8h + 7,
// so the A operand of both steps (V^T[d][those keys]) is one 16-byte LDS read (kpack16_index order).
//
// LDS (no padding; 16-byte chunks XOR-swizzled so that the 16-byte MFMA operand reads, served 8 lanes
// at a time, and the loader's writes hit 8 distinct 4-bank groups):
//   K   [kBlockN keys][D]     chunk c of key row r at chunk c ^ k_swizzle(r)   (low 3 bits)
//   V^T [D][kBlockN keys]     chunk c of d row  r at chunk c ^ (r % 8) (64 keys), c ^ ((r / 2) % 4) (32)
#pragma once
#include "common/hip_mfma.h"

namespace seer {
namespace hipattn {

constexpr int kWaveRows = 32;  // query rows per wavefront (one 32x32 MFMA column block)
constexpr int kWaves = 4;      // wavefronts per workgroup
constexpr int kBlockM = kWaveRows * kWaves;  // rows per row tile (= attention_fwd_tile_rows on ROCm)
constexpr int kChunk = 16;     // keys per chunk (block sizes are multiples of 16)
constexpr int kThreads = kWaves * mfma::kWave;

// Key (0..31, inside a 32-key half) of S^T tile row i.
SEER_MFMA_HD constexpr int key_of_srow(int i) {
  return 16 * ((i / 8) / 2) + 8 * ((i / 4) % 2) + 4 * ((i / 8) % 2) + (i % 4);
}
// Key (0..kBlockN-1) held by S^T accumulator register r of half t in `lane`.
SEER_MFMA_HD constexpr int key_of_acc(int lane, int t, int r) {
  return 32 * t + key_of_srow(mfma::M32x32x8::c_row(lane, r));
}
// First key of the 8 consecutive keys lane reads from V^T for the step pair m (0, 1) of half t.
SEER_MFMA_HD constexpr int vt_key0(int lane, int t, int m) { return 32 * t + 16 * m + 8 * (lane / 32); }

SEER_MFMA_HD constexpr int k_swizzle(int key_row) { return (key_row & 3) | ((key_row >> 1) & 4); }
// Element offset of K[key_row][d] (d % 8 == 0 for 16-byte accesses) in a tile with rows of D elements.
template <int D>
SEER_MFMA_HD constexpr int k_lds(int key_row, int d) {
  return key_row * D + (((d / 8) ^ k_swizzle(key_row)) & 7 | ((d / 8) & ~7)) * 8 + d % 8;
}
// Element offset of V^T[d][key] in a tile of kN keys (64: 8 chunks per row, swizzle d % 8; 32: 4
// chunks per 64-byte row, two rows per 32 banks, swizzle (d / 2) % 4) (key % 8 == 0 for 16-byte
// accesses, even for 4-byte ones).
template <int kN>
SEER_MFMA_HD constexpr int vt_lds(int d, int key) {
  static_assert(kN == 32 || kN == 64, "K/V tile of 32 or 64 keys");
  return d * kN + ((key / 8) ^ (kN == 64 ? d % 8 : (d / 2) % 4)) * 8 + key % 8;
}

}  // namespace hipattn
}  // namespace seer
