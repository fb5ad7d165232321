// Definition of the per-(head dim, dtype) decode launcher (select, split and combine kernels) (see decode_launch.h). Included only by the
// generated instantiation files, so every kernel is compiled exactly once.
#pragma once
#include "common/launch.h"
#include "decode/decode_kernel.cuh"
#include "decode/decode_launch.h"

namespace seer {
namespace decode {

template <int kHeadDim, typename Elem>
int run_decode_(const DecodeParams& p, seer_stream_t stream) {
  using Tr = DecodeTraits<kHeadDim, Elem>;
  constexpr int kSmem = Tr::kSmemBytes;
  auto kernel = block_sparse_decode_kernel<Tr>;
  if (kSmem > 48 * 1024) {
    // Per-function attribute of the current device; cheap, and legal during stream capture.
#ifdef USE_ROCM
    seer_error_t err = hipFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                           hipFuncAttributeMaxDynamicSharedMemorySize, kSmem);
#else
    seer_error_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
#endif
    if (err != SEER_SUCCESS) return static_cast<int>(err);
  }
  // Select: compact every (sequence, kv head) row's selection once (sel_list / sel_count).
  decode_select_kernel<kSelectThreads><<<dim3(p.h_kv, p.batch), kSelectThreads, 0, stream>>>(p);
  seer_error_t err = SEER_LAST_ERROR();
  if (err != SEER_SUCCESS) return static_cast<int>(err);

  const int n_chunks = (p.n_tok * p.group + Tr::kRows - 1) / Tr::kRows;
  const dim3 grid(static_cast<unsigned>(p.num_splits) * n_chunks, p.h_kv, p.batch);
  kernel<<<grid, Tr::kThreads, kSmem, stream>>>(p);
  err = SEER_LAST_ERROR();
  if (err != SEER_SUCCESS) return static_cast<int>(err);

  if (p.num_splits > 1) {
    const int64_t n_rows = static_cast<int64_t>(p.batch) * p.n_tok * p.h_q;
    const unsigned blocks = static_cast<unsigned>((n_rows + kCombineWarps - 1) / kCombineWarps);
    decode_combine_kernel<Elem, kHeadDim><<<blocks, kCombineWarps * 32, 0, stream>>>(p);
    err = SEER_LAST_ERROR();
    if (err != SEER_SUCCESS) return static_cast<int>(err);
  }
  return 0;
}

}  // namespace decode
}  // namespace seer
