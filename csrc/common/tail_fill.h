// Rows of a packed [T, H, D] tensor that no sequence owns are never visited by the kernels. These
// helpers give them defined values (zeros for out/dq/dk/dv, -inf for lse), reading cu_seqlens on the
// device, so no host sync is needed. Sequence b owns rows [cu[b], cu[b] + clamp(cu[b+1] - cu[b], 0,
// max_seqlen)) (csrc/attention/seqlen.h); the unowned rows are
//   - rows past a clamped length: [cu[b] + clamped length, cu[b+1]) (inconsistent input: a sequence
//     longer than max_seqlen, which the unchecked path does not reject),
//   - rows before the first sequence [0, cu[0]) and past the last one [cu[batch], T).
// For consistent input (cu non-decreasing, from 0, every length <= max_seqlen) only the last range can
// be non-empty, and a fill costs one small launch (min(batch + 2, 256) x 16 CTAs) that reads cu_seqlens
// and exits; the forward makes two (out, lse), the backward three (dq, dk, dv). With a DECREASING
// cu_seqlens the sequences' own ranges overlap and so may these: the outputs are then unspecified
// (never out of bounds).
#pragma once
#include <cstdint>

namespace seer {

// Unowned rows of a [total, heads, dim] tensor of `elem_bytes`-byte elements (row_stride/head_stride in
// elements; dim * elem_bytes a multiple of 4) are set to zero.
int run_zero_unowned_rows(void* ptr, int64_t row_stride, int64_t head_stride, int heads, int dim, int elem_bytes,
                          const int* cu_seqlens, int batch, int max_seqlen, int total, void* stream);
// Unowned columns of a contiguous [heads, total] float tensor are set to `value`.
int run_fill_unowned_lse(float* lse, int heads, const int* cu_seqlens, int batch, int max_seqlen, int total,
                         float value, void* stream);

}  // namespace seer
