// Rows of a packed [T, H, D] tensor that lie past the last sequence (row >= cu_seqlens[batch]) belong
// to no sequence; the kernels never visit them. These helpers give them defined values (zeros for
// out/dq/dk/dv, -inf for lse) reading cu_seqlens[batch] on the device, so no host sync is needed.
#pragma once
#include <cstdint>

namespace seer {

// rows [cu_seqlens[batch], total) of a [total, heads, dim] tensor of `elem_bytes`-byte elements
// (row_stride/head_stride in elements; dim * elem_bytes a multiple of 4) are set to zero.
int run_zero_tail_rows(void* ptr, int64_t row_stride, int64_t head_stride, int heads, int dim, int elem_bytes,
                       const int* cu_seqlens, int batch, int total, void* stream);
// columns [cu_seqlens[batch], total) of a contiguous [heads, total] float tensor are set to `value`.
int run_fill_tail_lse(float* lse, int heads, const int* cu_seqlens, int batch, int total, float value,
                      void* stream);

}  // namespace seer
