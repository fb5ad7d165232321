// Output epilogue of the attention kernels (forward sm80 / sm90; decode's direct path can use it
// too): a finished accumulator row -> normalised 16-bit output + lse. Accumulator rows are in the
// mma.sync / wgmma C layout (common/softmax.h): o[DF][4] holds, for row rr, the column pair
// (8 df + 2 t4, 8 df + 2 t4 + 1) at o[df][2 rr], o[df][2 rr + 1] (t4 = lane % 4).
// A row with no visible key has inv = 0 (row_finish): its output is written as zeros and its lse
// as -inf, never NaN. ATen-free.
#pragma once

#include <cstdint>

#include "common/platform.h"
#include "common/sm80_primitives.h"
#include "common/softmax.h"

namespace seer {

// Writes row rr of o, times inv, as 4-byte column pairs: pair df (columns 8 df + 2 t4, + 1) goes to
// dst(df), an Elem* (e.g. into a swizzled shared staging tile).
template <typename Elem, int DF, typename Dst>
SEER_DEVICE void store_row_pairs(const float (&o)[DF][4], int rr, float inv, Dst&& dst) {
#pragma unroll
  for (int df = 0; df < DF; ++df)
    *reinterpret_cast<uint32_t*>(dst(df)) = pack2<Elem>(o[df][2 * rr] * inv, o[df][2 * rr + 1] * inv);
}
// The same into a plain row: dst = the row's column 2 t4.
template <typename Elem, int DF>
SEER_DEVICE void store_row_pairs(const float (&o)[DF][4], int rr, float inv, Elem* dst) {
#pragma unroll
  for (int df = 0; df < DF; ++df)
    *reinterpret_cast<uint32_t*>(dst + 8 * df) = pack2<Elem>(o[df][2 * rr] * inv, o[df][2 * rr + 1] * inv);
}

}  // namespace seer
