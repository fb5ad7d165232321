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
// D 256 (bwd_dsplit): each workgroup owns one half of the head dims [d0, d0 + 128) for dK, dV and
// dQ (grid x = key tile * 2 + half; the deterministic dQ kernel: row tile * 2 + half), while S and dP
// still reduce over all 256 dims. Why a D-split rather than fewer keys per workgroup: 32 keys per
// wavefront is the 32x32 MFMA's minimum and the registers are per wavefront (K, V as S / dP operands
// alone are 128 VGPRs at D 256; full-D dK, dV would add 256 accumulators and K_w^T 64 more: past 512
// with the temporaries), and the LDS is dominated by the row tile (Q, dO, Q^T, dO^T: 64 KiB at D 256,
// the whole budget), not by the keys. Halving D per workgroup halves the accumulators, K_w^T, Q^T /
// dO^T and the fp32 dQ sum; the latter then lives in the LDS of Q / dO (dead once S and dP are
// computed), so the LDS stays ~57 KiB as for D 128. Cost: S and dP are computed twice (once per half):
// ~1.4x the MFMA work of an unsplit D 256 backward.
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
// Workgroups per head-dim (dK / dV / dQ dims [d0, d0 + D / bwd_dsplit(D)) each), see above.
SEER_MFMA_HD constexpr int bwd_dsplit(int d) { return d > 128 ? 2 : 1; }

}  // namespace hipattn
}  // namespace seer
