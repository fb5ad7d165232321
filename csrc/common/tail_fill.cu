#include "tail_fill.h"
#include "launch.h"

namespace seer {
namespace {

constexpr int kMaxSegmentBlocks = 256;  // grid x: segments, grid-stride past this
constexpr int kRowBlocks = 16;          // grid y: row chunks of one segment

// Unowned row range [lo, hi) number s of the batch + 2 ranges (see tail_fill.h): s < batch: past the
// clamped length of sequence s; s == batch: past the last sequence; s == batch + 1: before the first.
SEER_DEVICE void unowned_range(const int* cu, int batch, int max_seqlen, int total, int s, int* lo, int* hi) {
  int a, b;
  if (s < batch) {
    const int start = cu[s], len = cu[s + 1] - start;
    a = start + (len < 0 ? 0 : (len < max_seqlen ? len : max_seqlen));
    b = cu[s + 1];
  } else if (s == batch) {
    a = cu[batch];
    b = total;
  } else {
    a = 0;
    b = cu[0];
  }
  *lo = a < 0 ? 0 : a;
  *hi = b > total ? total : b;
}

__global__ void zero_unowned_rows_kernel(char* ptr, int64_t row_stride_bytes, int64_t head_stride_bytes, int heads,
                                         int row_words, const int* cu_seqlens, int batch, int max_seqlen,
                                         int total) {
  const int words = heads * row_words;
  for (int s = blockIdx.x; s < batch + 2; s += gridDim.x) {
    int lo, hi;
    unowned_range(cu_seqlens, batch, max_seqlen, total, s, &lo, &hi);
    for (int64_t row = lo + static_cast<int64_t>(blockIdx.y); row < hi; row += gridDim.y) {
      char* base = ptr + row * row_stride_bytes;
      for (int i = threadIdx.x; i < words; i += blockDim.x) {
        const int h = i / row_words;
        reinterpret_cast<uint32_t*>(base + h * head_stride_bytes)[i - h * row_words] = 0u;
      }
    }
  }
}

__global__ void fill_unowned_lse_kernel(float* lse, int heads, const int* cu_seqlens, int batch, int max_seqlen,
                                        int total, float value) {
  for (int s = blockIdx.x; s < batch + 2; s += gridDim.x) {
    int lo, hi;
    unowned_range(cu_seqlens, batch, max_seqlen, total, s, &lo, &hi);
    const int64_t n = static_cast<int64_t>(hi > lo ? hi - lo : 0) * heads;
    for (int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.y) * blockDim.x) {
      const int64_t h = i / (hi - lo);
      lse[h * total + lo + (i - h * (hi - lo))] = value;
    }
  }
}

dim3 fill_grid(int batch) {
  const int segments = batch + 2;
  return dim3(segments < kMaxSegmentBlocks ? segments : kMaxSegmentBlocks, kRowBlocks);
}

}  // namespace

int run_zero_unowned_rows(void* ptr, int64_t row_stride, int64_t head_stride, int heads, int dim, int elem_bytes,
                          const int* cu_seqlens, int batch, int max_seqlen, int total, void* stream) {
  if (total <= 0 || heads <= 0 || batch < 0) return 0;
  zero_unowned_rows_kernel<<<fill_grid(batch), 128, 0, static_cast<seer_stream_t>(stream)>>>(
      static_cast<char*>(ptr), row_stride * elem_bytes, head_stride * elem_bytes, heads, dim * elem_bytes / 4,
      cu_seqlens, batch, max_seqlen, total);
  return static_cast<int>(SEER_LAST_ERROR());
}

int run_fill_unowned_lse(float* lse, int heads, const int* cu_seqlens, int batch, int max_seqlen, int total,
                         float value, void* stream) {
  if (total <= 0 || heads <= 0 || batch < 0) return 0;
  fill_unowned_lse_kernel<<<fill_grid(batch), 256, 0, static_cast<seer_stream_t>(stream)>>>(
      lse, heads, cu_seqlens, batch, max_seqlen, total, value);
  return static_cast<int>(SEER_LAST_ERROR());
}

}  // namespace seer
