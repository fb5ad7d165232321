// Launcher template of the attention-pooling main kernel (one instantiation per head dim and element
// type, see instantiations/ and generate_instantiations.py). The follow-up passes and the dispatch
// on (head dim, dtype) live in pooling_run.cu.
#pragma once

#include <climits>

#include "common/launch.h"
#include "pooling/pooling_kernel.cuh"
#include "pooling/pooling_params.h"

namespace seer {
namespace pooling {

// One CTA per (query tile, sequence) x q head. blockIdx.x = m_rev * batch + b with the query tile
// m = n_m - 1 - m_rev, so the tiles with the most keys (the last ones of the longest sequences) are
// scheduled first; tiles past the end of their sequence exit at once.
template <int kHeadDim, typename Elem>
int run_attn_pooling_main_(const PoolingParams& p, void* stream) {
  using Traits = PoolingTraits<kHeadDim, Elem>;
#if SEER_HAS_MMA_SYNC
  if (p.head_dim != kHeadDim || p.batch < 0 || p.h_kv < 1 || p.group < 1 || p.h_q != p.h_kv * p.group ||
      p.block_size < 16 || p.block_size % 16 != 0 || p.max_seqlen < 0 || p.h_q > 65535)
    return static_cast<int>(cudaErrorInvalidValue);
  const long long n_m = (static_cast<long long>(p.max_seqlen) + Traits::kBlockM - 1) / Traits::kBlockM;
  const long long n_x = n_m * p.batch;
  if (n_x == 0 || p.total == 0) return 0;  // no query row anywhere
  if (n_x > INT_MAX) return static_cast<int>(cudaErrorInvalidConfiguration);
  auto kernel = attn_pooling_kernel<Traits>;
  constexpr int smem = Traits::kSmemBytes;
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return static_cast<int>(e);
  }
  const dim3 grid(static_cast<unsigned>(n_x), static_cast<unsigned>(p.h_q));
  kernel<<<grid, Traits::kNThreads, smem, static_cast<seer_stream_t>(stream)>>>(p);
  return static_cast<int>(SEER_LAST_ERROR());
#else
  (void)p;
  (void)stream;
  return static_cast<int>(hipErrorNotSupported);
#endif
}

}  // namespace pooling
}  // namespace seer
