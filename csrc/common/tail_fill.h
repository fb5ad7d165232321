// Rows of a packed [T, H, D] tensor that no sequence owns are never visited by the kernels. The tail
// fill gives them defined values (zeros for out/dq/dk/dv, -inf for lse), reading cu_seqlens on the
// device, so no host sync is needed. Sequence b owns rows [cu[b], cu[b] + clamp(cu[b+1] - cu[b], 0,
// max_seqlen)) (csrc/attention/seqlen.h); the unowned rows are
//   - rows past a clamped length: [cu[b] + clamped length, cu[b+1]) (inconsistent input: a sequence
//     longer than max_seqlen, which the unchecked path does not reject),
//   - rows before the first sequence [0, cu[0]) and past the last one [cu[batch], T).
// One launch per op fills every output of the op (forward: out and lse; backward: dq, dk and dv, dk /
// dv on the key side's cu_seqlens). For consistent input (cu non-decreasing, from 0, every length <=
// max_seqlen) only the last range can be non-empty, and the fill costs one small launch
// (min(batch + 2, 256) x 16 x outputs CTAs) that reads cu_seqlens and exits. With a DECREASING
// cu_seqlens the sequences' own ranges overlap and so may these: the outputs are then unspecified
// (never out of bounds).
#pragma once
#include <cstdint>

namespace seer {

// The token rows of one side of the op (queries or keys).
struct TailFillSide {
  const int* cu_seqlens;  // [batch + 1] on the device
  int max_seqlen;         // lengths are clamped to it
  int total;              // token rows of the side's tensors
};

// One output tensor of the fill.
struct TailFillTarget {
  void* ptr;                  // rows: [total, heads, dim] 16-bit elements; lse: contiguous [heads, total] float
  int64_t row_stride_bytes;   // rows: bytes between token rows
  int64_t head_stride_bytes;  // rows: bytes between heads
  int heads;                  // heads of the tensor
  int row_words;              // rows: 4-byte words of one head's row (dim * element bytes / 4); 0: an lse tensor
  float value;                // lse: the value of unowned columns (rows are zeroed)
  int side;                   // index of its TailFillSide in TailFillParams::side
};

constexpr int kTailFillMaxTargets = 3;  // dq, dk, dv

// Everything one fill launch writes.
struct TailFillParams {
  int batch;                                    // sequences (cu_seqlens of every side have batch + 1 entries)
  TailFillSide side[2];                         // queries, keys
  TailFillTarget target[kTailFillMaxTargets];   // the outputs, [0, n_targets)
  int n_targets;                                // outputs in use
};

// Target builders: the rows of a [total, heads, dim] tensor of `elem_bytes`-byte elements (row_stride /
// head_stride in elements; dim * elem_bytes a multiple of 4) set to zero, or the columns of a contiguous
// [heads, total] float tensor set to `value`.
inline TailFillTarget tail_fill_rows(void* ptr, int64_t row_stride, int64_t head_stride, int heads, int dim,
                                     int elem_bytes, int side) {
  return TailFillTarget{ptr, row_stride * elem_bytes, head_stride * elem_bytes, heads, dim * elem_bytes / 4, 0.f,
                        side};
}
inline TailFillTarget tail_fill_lse(float* lse, int heads, float value, int side) {
  return TailFillTarget{lse, 0, 0, heads, 0, value, side};
}

// One launch for all targets (targets without rows or heads are left out; no launch when none is left).
int run_tail_fill(const TailFillParams& params, void* stream);

}  // namespace seer
