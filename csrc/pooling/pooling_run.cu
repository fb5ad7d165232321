// Attention pooling: dispatch on (head dim, dtype) to the main kernel (instantiations/*.cu) and the
// small follow-up passes:
//   - normalise_rows_kernel: every row of pooled_2d [B, h_out, nb, nb] divided by (row sum + 1e-6);
//   - gqa_reduce: finalize_1d_kernel converts the fp32 staging [h_kv, T, nb] (max over the group's
//     heads) to pooled_1d with the same row normalisation; it covers every token row, so rows that
//     belong to no sequence come out 0;
//   - otherwise: zero_uncovered_rows_kernel writes zeros to the token rows outside
//     [cu_seqlens[0], cu_seqlens[B]) (the main kernel writes every other row in full); a small
//     grid-stride kernel, since those rows are normally none.
// The row kernels use one warp per row; rows are independent, no atomics, deterministic sums.
// The main kernel's S tiles come from wgmma where PoolingParams::wgmma (sm_90a builds, D 64 / 128), else
// from mma.sync.
#include <climits>
#include <cstdint>
#include <cstdlib>

#include "common/launch.h"
#include "common/platform.h"
#include "pooling/pooling_kernel.cuh"
#include "pooling/pooling_params.h"

namespace seer {
namespace pooling {

template <int kHeadDim, typename Elem, bool kWgmma>
int run_attn_pooling_main_(const PoolingParams& p, void* stream);  // instantiations/*.cu

template <int kHeadDim, typename Elem>
int run_main_(const PoolingParams& p, void* stream) {
#ifdef SEER_ATTN_SM90A  // the *_sm90.cu instantiations are built only then (setup.py, cmake/CMakeLists.txt)
  if constexpr (kHeadDim == 64 || kHeadDim == 128)
    if (p.wgmma) {
      const int rc = run_attn_pooling_main_<kHeadDim, Elem, true>(p, stream);
      if (rc != static_cast<int>(cudaErrorNotSupported)) return rc;  // else: k has no TMA map (nothing launched)
    }
#endif
  return run_attn_pooling_main_<kHeadDim, Elem, false>(p, stream);
}

constexpr int kAuxWarps = 8;  // rows (warps) per CTA of the follow-up kernels
constexpr float kNormEps = 1e-6f;

SEER_DEVICE float warp_sum(float v) {
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) v += SEER_SHFL_XOR(v, m);
  return v;
}

// x[row, :] /= (sum(x[row, :]) + 1e-6) for n_rows contiguous rows of n_cols floats.
__global__ void __launch_bounds__(kAuxWarps * 32) normalise_rows_kernel(float* x, int64_t n_rows, int n_cols) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kAuxWarps + threadIdx.x / 32;
  if (row >= n_rows) return;
  const int lane = threadIdx.x % 32;
  float* xr = x + row * n_cols;
  float s = 0.f;
  for (int j = lane; j < n_cols; j += 32) s += xr[j];
  s = warp_sum(s);
  if (s == 0.f) return;  // all-zero row stays zero
  const float inv = 1.f / (s + kNormEps);
  for (int j = lane; j < n_cols; j += 32) xr[j] *= inv;
}

// out[row, :] = acc[row, :] / (sum(acc[row, :]) + 1e-6), converted to Elem (gqa_reduce 1D map).
template <typename Elem>
__global__ void __launch_bounds__(kAuxWarps * 32)
    finalize_1d_kernel(const float* __restrict__ acc, Elem* __restrict__ out, int64_t n_rows, int n_cols) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kAuxWarps + threadIdx.x / 32;
  if (row >= n_rows) return;
  const int lane = threadIdx.x % 32;
  const float* ar = acc + row * n_cols;
  Elem* orow = out + row * n_cols;
  float s = 0.f;
  for (int j = lane; j < n_cols; j += 32) s += ar[j];
  s = warp_sum(s);
  const float inv = 1.f / (s + kNormEps);
  for (int j = lane; j < n_cols; j += 32) orow[j] = from_float<Elem>(ar[j] * inv);
}

// Rows (h, tok) of out [heads, total, n_cols] with tok outside [cu[0], cu[batch]) (clamped) := 0.
// blockIdx.y = head; the blocks of x stride over the uncovered elements of that head (normally none).
constexpr int kZeroThreads = 256;
constexpr unsigned kZeroBlocksPerHead = 16;
template <typename Elem>
__global__ void __launch_bounds__(kZeroThreads)
    zero_uncovered_rows_kernel(Elem* __restrict__ out, const int* __restrict__ cu_seqlens, int batch, int total,
                               int n_cols) {
  const int first = min(max(__ldg(cu_seqlens), 0), total);
  const int last = min(max(__ldg(cu_seqlens + batch), first), total);
  const int64_t n_head = static_cast<int64_t>(first + (total - last)) * n_cols;  // uncovered elements
  if (n_head == 0) return;
  Elem* base = out + static_cast<int64_t>(blockIdx.y) * total * n_cols;
  const int64_t head_elems = static_cast<int64_t>(first) * n_cols;  // [0, first) rows come first
  const int64_t tail_off = static_cast<int64_t>(last) * n_cols;
  const Elem zero = from_float<Elem>(0.f);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kZeroThreads + threadIdx.x; i < n_head;
       i += static_cast<int64_t>(gridDim.x) * kZeroThreads)
    base[i < head_elems ? i : tail_off + (i - head_elems)] = zero;
}

inline int aux_grid(int64_t n_rows, unsigned* grid) {
  const int64_t g = (n_rows + kAuxWarps - 1) / kAuxWarps;
  if (g > INT_MAX) return static_cast<int>(cudaErrorInvalidConfiguration);
  *grid = static_cast<unsigned>(g);
  return 0;
}

template <typename Elem>
int run_followup_(const PoolingParams& p, seer_stream_t stream) {
  const int64_t nb = p.nb;
  unsigned grid = 0;
  int err = 0;
  // 1D map (every token row, all heads of the output).
  const int64_t rows_1d = static_cast<int64_t>(p.h_out) * p.total;
  if (rows_1d > 0) {
    if (p.gqa_reduce) {
      if ((err = aux_grid(rows_1d, &grid)) != 0) return err;
      finalize_1d_kernel<Elem><<<grid, kAuxWarps * 32, 0, stream>>>(
          p.pooled_1d_accum, reinterpret_cast<Elem*>(p.pooled_1d), rows_1d, static_cast<int>(nb));
    } else {
      if (p.h_out > 65535) return static_cast<int>(cudaErrorInvalidConfiguration);
      zero_uncovered_rows_kernel<Elem><<<dim3(kZeroBlocksPerHead, static_cast<unsigned>(p.h_out)), kZeroThreads, 0,
                                         stream>>>(reinterpret_cast<Elem*>(p.pooled_1d), p.cu_seqlens, p.batch,
                                                   p.total, static_cast<int>(nb));
    }
    if ((err = static_cast<int>(SEER_LAST_ERROR())) != 0) return err;
  }
  // 2D map rows.
  const int64_t rows_2d = static_cast<int64_t>(p.batch) * p.h_out * nb;
  if (rows_2d > 0) {
    if ((err = aux_grid(rows_2d, &grid)) != 0) return err;
    normalise_rows_kernel<<<grid, kAuxWarps * 32, 0, stream>>>(p.pooled_2d, rows_2d, static_cast<int>(nb));
    if ((err = static_cast<int>(SEER_LAST_ERROR())) != 0) return err;
  }
  return 0;
}

template <typename Elem>
int run_all_(const PoolingParams& p, void* stream) {
  int err = 0;
  switch (p.head_dim) {
    case 64: err = run_main_<64, Elem>(p, stream); break;
    case 128: err = run_main_<128, Elem>(p, stream); break;
    case 256: err = run_main_<256, Elem>(p, stream); break;
    default: return static_cast<int>(cudaErrorInvalidValue);
  }
  if (err != 0) return err;
  return run_followup_<Elem>(p, static_cast<seer_stream_t>(stream));
}

}  // namespace pooling

int run_attn_pooling(const PoolingParams& params, void* stream) {
  if (params.nb < 0 || params.total < 0 || params.batch < 0 || params.h_out < 1 ||
      (params.gqa_reduce && params.pooled_1d_accum == nullptr))
    return static_cast<int>(cudaErrorInvalidValue);
  if (params.nb == 0) return 0;  // max_seqlen == 0: both maps are empty
  return params.is_bf16 ? pooling::run_all_<__nv_bfloat16>(params, stream)
                        : pooling::run_all_<__half>(params, stream);
}

int attn_pooling_tile_rows() { return pooling::PoolingTraits<128, __half>::kBlockM; }

}  // namespace seer
