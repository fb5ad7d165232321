// Index maps of the HIP (CDNA3) decode mainloop (plain constexpr C++, shared with the host layout test
// tests/hip_layout/mfma_layout_test.cpp).
//
// A wavefront computes, per 16-key tile, with v_mfma_f32_16x16x16 (16 rows = (token, q head) pairs = 16 columns):
//   S^T[key][head] = K Q^T     A = K rows (lane % 16 = key) from global, B = Q (lane % 16 = head) in
//                              registers; reduction over D in 32-wide slices: lane reads the 8 dims
//                              dim0(lane, j) .. + 7 and feeds elements 0-3 / 4-7 to two steps
//                              (mfma::kpack32_index)
//   O^T[d][head]  += V^T P^T   A = V^T from the wavefront's LDS slice, B = P^T: the 16x16 D layout
//                              (lane % 16 = column, register r = row 4 (lane / 16) + r) is exactly the
//                              B layout (lane % 16 = column, element e = row 4 (lane / 16) + e), so the
//                              S^T accumulators are P^T as they lie
// V^T slice: [D][kVtStride] 16-bit, 16 keys + 4 padding per row. The 8-byte A reads of 16 lanes
// (d = 16 nt + 0..15, same keys) start at 20 d elements = 10 d words: 16 distinct even banks, each
// read covering a bank pair, so the 32 banks are hit once.
#pragma once
#include "common/hip_mfma.h"

namespace seer {
namespace hipdecode {

constexpr int kTileKeys = 16;  // keys per wavefront tile (block sizes are multiples of 16)
constexpr int kVtStride = 20;  // V^T row stride in elements

SEER_MFMA_HD constexpr int dim0(int lane, int j) { return 32 * j + 8 * (lane / 16); }
SEER_MFMA_HD constexpr int vt_lds(int d, int key) { return d * kVtStride + key; }

// Rows of one (sequence, kv head hk) with L new tokens: row r = token * group + g (decode_params.h).
SEER_MFMA_HD constexpr int row_token(int r, int group) { return r / group; }
SEER_MFMA_HD constexpr int row_head(int r, int hk, int group) { return hk * group + r % group; }
// Token i of L (the last L valid slots, the valid ones ending at hi) sees the slots below this.
SEER_MFMA_HD constexpr int token_slot_hi(int hi, int n_tok, int token) { return hi - (n_tok - 1 - token); }

}  // namespace hipdecode
}  // namespace seer
