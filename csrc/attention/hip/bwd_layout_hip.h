// Index maps of the HIP (CDNA3) attention backward (plain constexpr C++, shared with the host layout
// test tests/hip_layout/mfma_layout_test.cpp).
//
// A workgroup owns 128 keys (4 wavefronts x 32 keys) and streams row tiles of 32 rows. Per row tile a
// wavefront computes with v_mfma_f32_32x32x8 (all operands 32-row / 32-key blocks):
//   S  = Q K^T, dP = dO V^T   A = Q / dO rows from LDS (row-major, MFMA row i reads tile row
//                             key_of_srow(i)), B = the wavefront's K / V rows in registers; the
//                             accumulators hold key = lane % 32 and, in register 4s + e of lane half h,
//                             tile row key_of_srow(8s + 4h + e) (the forward's permutation, fwd_layout_hip.h)
//   dV += P^T dO, dK += dS^T Q   A = P^T / dS^T straight from those accumulators (key = lane % 32, rows
//                             of step s = registers 4s .. 4s + 3); B = dO^T / Q^T from LDS, one 16-byte
//                             read for the step pair (2m, 2m + 1): tile rows 16m + 8h .. + 7
//   dQ_w = dS K_w             A = dS rows from the wavefront's LDS slice (dS[row][key], written from the
//                             accumulators), B = K_w^T fragments in registers (keys 8s + 4h + e, d =
//                             lane % 32); the 4 wavefronts' dQ_w are summed in LDS (fp32) and added to
//                             the fp32 workspace with one atomic per element
// LDS: Q and dO row-major with the forward's K swizzle (k_lds<D>), Q^T and dO^T with the forward's
// 32-key V^T swizzle (vt_lds<32>), dS slices [32 rows][kDsStride] (8-byte reads by 16 lanes of rows
// 0..15: 36 elements = 18 banks apart, 16 distinct even banks).
#pragma once
#include "attention/hip/fwd_layout_hip.h"

namespace seer {
namespace hipattn {

constexpr int kBwdRows = 32;               // rows per streamed row tile (= attention_bwd_tile_rows on ROCm)
constexpr int kBwdKeys = 32 * kWaves;      // keys per workgroup
constexpr int kDsStride = 36;              // dS slice row stride (elements)

SEER_MFMA_HD constexpr int ds_lds(int row, int key) { return row * kDsStride + key; }

}  // namespace hipattn
}  // namespace seer
