// ROCm (gfx942) attention pooling: instantiations and the launcher run_attn_pooling (the ROCm build
// links this file instead of pooling_run.cu and pooling/instantiations). Compiled only by the ROCm build
// (setup.py / make hip-check; the CUDA source lists leave csrc/*/hip/ out).
#include "common/launch.h"
#include "pooling/hip/pooling_kernel_hip.h"

namespace seer {

int attn_pooling_tile_rows() { return hipattn::kBlockM; }

namespace {
template <typename Elem, int D>
int launch_pooling(const PoolingParams& p, hipStream_t stream) {
  const int64_t n_m = (p.max_seqlen + hipattn::kBlockM - 1) / hipattn::kBlockM;
  const int64_t grid = n_m * p.batch * p.h_q;
  if (grid > 0x7fffffffLL) return static_cast<int>(hipErrorInvalidValue);
  if (grid > 0) {
    hipLaunchKernelGGL((hippool::pooling_kernel_hip<Elem, D>), dim3(static_cast<unsigned>(grid)),
                       dim3(hipattn::kThreads), 0, stream, p);
    SEER_RETURN_IF_LAUNCH_ERROR();
  }
  const int64_t rows_1d = static_cast<int64_t>(p.h_out) * p.total;
  if (rows_1d > 0) {
    if (p.gqa_reduce) {
      hipLaunchKernelGGL((hippool::pooling_finish_1d_kernel_hip<Elem>), dim3(static_cast<unsigned>((rows_1d + 3) / 4)),
                         dim3(256), 0, stream, p.pooled_1d_accum, static_cast<uint16_t*>(p.pooled_1d), rows_1d, p.nb);
    } else {
      hipLaunchKernelGGL(hippool::pooling_zero_rows_kernel_hip, dim3(16, p.h_out), dim3(256), 0, stream,
                         static_cast<uint16_t*>(p.pooled_1d), p.cu_seqlens, p.batch, p.total, p.nb);
    }
    SEER_RETURN_IF_LAUNCH_ERROR();
  }
  const int64_t rows_2d = static_cast<int64_t>(p.batch) * p.h_out * p.nb;
  if (rows_2d > 0) {
    hipLaunchKernelGGL(hippool::pooling_normalize_kernel_hip, dim3(static_cast<unsigned>((rows_2d + 3) / 4)), dim3(256),
                       0, stream, p.pooled_2d, rows_2d, p.nb);
    SEER_RETURN_IF_LAUNCH_ERROR();
  }
  return 0;
}
}  // namespace

int run_attn_pooling(const PoolingParams& p, void* stream) {
  if (p.nb < 0 || p.total < 0 || p.batch < 0 || p.h_out < 1 || (p.gqa_reduce && p.pooled_1d_accum == nullptr) ||
      p.block_size % 16 != 0)
    return static_cast<int>(hipErrorInvalidValue);
  if (p.nb == 0) return 0;
  const hipStream_t s = static_cast<hipStream_t>(stream);
  return dispatch_elem_head_dim<hip16::Bf16, hip16::Fp16, 64, 128, 256>(
      p.is_bf16, p.head_dim, [&](auto e, auto d) { return launch_pooling<decltype(e), decltype(d)::value>(p, s); });
}

}  // namespace seer
