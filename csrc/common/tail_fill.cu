#include "tail_fill.h"
#include "launch.h"

namespace seer {
namespace {

__global__ void zero_tail_rows_kernel(char* ptr, int64_t row_stride_bytes, int64_t head_stride_bytes, int heads,
                                      int row_words, const int* cu_seqlens, int batch, int total) {
  int first = cu_seqlens[batch];
  first = first < 0 ? 0 : first;
  for (int64_t row = first + static_cast<int64_t>(blockIdx.x); row < total; row += gridDim.x) {
    for (int h = blockIdx.y; h < heads; h += gridDim.y) {
      uint32_t* dst = reinterpret_cast<uint32_t*>(ptr + row * row_stride_bytes + h * head_stride_bytes);
      for (int i = threadIdx.x; i < row_words; i += blockDim.x) dst[i] = 0u;
    }
  }
}

__global__ void fill_tail_lse_kernel(float* lse, int heads, const int* cu_seqlens, int batch, int total,
                                     float value) {
  int first = cu_seqlens[batch];
  first = first < 0 ? 0 : first;
  const int64_t n = static_cast<int64_t>(heads) * total;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (static_cast<int>(i % total) >= first) lse[i] = value;
  }
}

}  // namespace

int run_zero_tail_rows(void* ptr, int64_t row_stride, int64_t head_stride, int heads, int dim, int elem_bytes,
                       const int* cu_seqlens, int batch, int total, void* stream) {
  if (total <= 0 || heads <= 0) return 0;
  dim3 grid(total < 256 ? total : 256, heads < 8 ? heads : 8);
  zero_tail_rows_kernel<<<grid, 64, 0, static_cast<seer_stream_t>(stream)>>>(
      static_cast<char*>(ptr), row_stride * elem_bytes, head_stride * elem_bytes, heads, dim * elem_bytes / 4,
      cu_seqlens, batch, total);
  return static_cast<int>(SEER_LAST_ERROR());
}

int run_fill_tail_lse(float* lse, int heads, const int* cu_seqlens, int batch, int total, float value,
                      void* stream) {
  if (total <= 0 || heads <= 0) return 0;
  const int64_t n = static_cast<int64_t>(heads) * total;
  const int blocks = static_cast<int>((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
  fill_tail_lse_kernel<<<blocks, 256, 0, static_cast<seer_stream_t>(stream)>>>(lse, heads, cu_seqlens, batch,
                                                                               total, value);
  return static_cast<int>(SEER_LAST_ERROR());
}

}  // namespace seer
