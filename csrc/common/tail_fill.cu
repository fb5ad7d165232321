#include "tail_fill.h"
#include "launch.h"

namespace seer {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxSegmentBlocks = 256;  // grid x: segments, grid-stride past this
constexpr int kRowBlocks = 16;          // grid y: row chunks of one segment
                                        // grid z: the target

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

// Rows [lo, hi) of a row target := 0 (this CTA's share: rows lo + blockIdx.y, + gridDim.y, ...).
SEER_DEVICE void zero_rows(const TailFillTarget& t, int lo, int hi) {
  const int words = t.heads * t.row_words;
  for (int64_t row = lo + static_cast<int64_t>(blockIdx.y); row < hi; row += gridDim.y) {
    char* base = static_cast<char*>(t.ptr) + row * t.row_stride_bytes;
    for (int i = threadIdx.x; i < words; i += blockDim.x) {
      const int h = i / t.row_words;
      reinterpret_cast<uint32_t*>(base + h * t.head_stride_bytes)[i - h * t.row_words] = 0u;
    }
  }
}

// Columns [lo, hi) of an lse target [heads, total] := value (this CTA's share of the heads x columns).
SEER_DEVICE void fill_columns(const TailFillTarget& t, int total, int lo, int hi) {
  float* lse = static_cast<float*>(t.ptr);
  const int64_t n = static_cast<int64_t>(hi > lo ? hi - lo : 0) * t.heads;
  for (int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.y) * blockDim.x) {
    const int64_t h = i / (hi - lo);
    lse[h * total + lo + (i - h * (hi - lo))] = t.value;
  }
}

// Target blockIdx.z, unowned ranges blockIdx.x, blockIdx.x + gridDim.x, ...
__global__ void __launch_bounds__(kThreads) tail_fill_kernel(const TailFillParams p) {
  // Selects, not a dynamic index: the params stay in the parameter space.
  static_assert(kTailFillMaxTargets == 3, "target selection");
  const TailFillTarget t = blockIdx.z == 0 ? p.target[0] : (blockIdx.z == 1 ? p.target[1] : p.target[2]);
  // The side's fields one by one (a selected struct copy is a private array on ROCm, promoted to LDS).
  const bool k_side = t.side != 0;
  const int* cu = k_side ? p.side[1].cu_seqlens : p.side[0].cu_seqlens;
  const int max_seqlen = k_side ? p.side[1].max_seqlen : p.side[0].max_seqlen;
  const int total = k_side ? p.side[1].total : p.side[0].total;
  for (int s = blockIdx.x; s < p.batch + 2; s += gridDim.x) {
    int lo, hi;
    unowned_range(cu, p.batch, max_seqlen, total, s, &lo, &hi);
    if (t.row_words > 0)
      zero_rows(t, lo, hi);
    else
      fill_columns(t, total, lo, hi);
  }
}

}  // namespace

int run_tail_fill(const TailFillParams& params, void* stream) {
  if (params.batch < 0 || params.n_targets < 0 || params.n_targets > kTailFillMaxTargets)
    return static_cast<int>(SEER_INVALID_VALUE);
  TailFillParams p = params;
  p.n_targets = 0;
  for (int i = 0; i < params.n_targets; ++i) {
    const TailFillTarget& t = params.target[i];
    if (t.side < 0 || t.side > 1 || t.row_words < 0) return static_cast<int>(SEER_INVALID_VALUE);
    if (t.ptr != nullptr && t.heads > 0 && params.side[t.side].total > 0) p.target[p.n_targets++] = t;
  }
  if (p.n_targets == 0) return 0;
  const int segments = p.batch + 2;
  const dim3 grid(segments < kMaxSegmentBlocks ? segments : kMaxSegmentBlocks, kRowBlocks, p.n_targets);
  tail_fill_kernel<<<grid, kThreads, 0, static_cast<seer_stream_t>(stream)>>>(p);
  return static_cast<int>(SEER_LAST_ERROR());
}

}  // namespace seer
