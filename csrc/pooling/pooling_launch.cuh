// Launcher template of the attention-pooling main kernel (one instantiation per head dim, element type
// and S-tile path - kWgmma: instantiations/*_sm90.cu - see csrc/generate_instantiations.py). The follow-up passes and the dispatch
// on (head dim, dtype) live in pooling_run.cu.
#pragma once

#include <algorithm>
#include <climits>

#include "common/device_facts.h"
#include "common/launch.h"
#include "pooling/pooling_kernel.cuh"
#include "pooling/pooling_params.h"
#ifndef USE_ROCM
#include "common/sm90_tma.h"
#endif

namespace seer {
namespace pooling {

// One CTA per (query tile, sequence, q head): the work items of PoolingItems (tile_scheduler.h), so
// the tiles with the most keys (the last ones of the longest sequences, all heads) are scheduled first;
// tiles past the end of their sequence exit at once.
//
// Staging capacity `cap` (key blocks per row held in shared memory): every block of the tile's row
// range when it fits (one sweep), else as many as the shared memory budget allows: the device's
// opt-in maximum per block, or half an SM less the per-block reservation (two CTAs per SM, D <= 128).
// Rows with more visible blocks than that take the partial second sweep (tested with long sequences).
// kWgmma: the sm_90a variant (instantiations/*_sm90.cu, compiled for sm_90a only).
template <int kHeadDim, typename Elem, bool kWgmma>
int run_attn_pooling_main_(const PoolingParams& p, void* stream) {
  if (p.head_dim != kHeadDim || p.batch < 0 || p.h_kv < 1 || p.group < 1 || p.h_q != p.h_kv * p.group ||
      p.block_size < 16 || p.block_size % 16 != 0 || p.max_seqlen < 0 || p.h_q > 65535 || p.nb < 0)
    return static_cast<int>(cudaErrorInvalidValue);
  using Traits = PoolingTraits<kHeadDim, Elem, kWgmma>;
#if SEER_HAS_MMA_SYNC
  // The wgmma kernel loads its K tiles by TMA (a map of k in its params). Where no map can be encoded (a
  // base or stride not 16-byte aligned, no driver encoder) it returns cudaErrorNotSupported before any
  // launch, and run_main_ (pooling_run.cu) runs the mma.sync kernel instead.
  PoolingParams q = p;
  if constexpr (kWgmma) {
    if (!sm90::encode_rows_tma(*reinterpret_cast<sm90::TmaMap*>(q.k_tma_map), p.k, p.is_bf16, p.total, p.h_kv,
                               p.head_dim, p.k_row_stride, p.k_head_stride))
      return static_cast<int>(cudaErrorNotSupported);
  }
  if (p.max_seqlen > INT_MAX - Traits::kBlockM) return static_cast<int>(cudaErrorInvalidConfiguration);
  const long long n_x = count_items(PoolingItems<Traits::kBlockM>{p});
  if (n_x == 0 || p.total == 0) return 0;  // no query row anywhere
  if (n_x > INT_MAX) return static_cast<int>(cudaErrorInvalidConfiguration);

  const DeviceFacts dev = current_device_facts();
  if (dev.error != 0) return dev.error;
  long long budget = dev.smem_optin;
  if (Traits::kMinBlocks > 1) budget = std::min<long long>(budget, dev.smem_per_sm / Traits::kMinBlocks - dev.smem_reserved);
  const long long cap_max = (budget - Traits::kSmemKBytes - Traits::kSyncBytes) / (Traits::kBlockM * 4) - 1;  // room for the odd stride
  long long cap = std::min<long long>(p.nb, cap_max);
  if (cap < std::min(p.nb, Traits::kMinStageCols)) return static_cast<int>(cudaErrorInvalidConfiguration);
  if (cap < 1) cap = 1;
  const int stride = static_cast<int>(cap) | 1;
  const int smem = Traits::smem_bytes(stride);

  void (*kernel)(PoolingParams, int, int) = nullptr;
  if constexpr (kWgmma)
    kernel = attn_pooling_kernel_tma<Traits>;
  else
    kernel = attn_pooling_kernel<Traits>;
  const cudaError_t e = allow_smem(kernel, smem);
  if (e != cudaSuccess) return static_cast<int>(e);
  const dim3 grid(static_cast<unsigned>(n_x));
  kernel<<<grid, Traits::kNThreads, smem, static_cast<seer_stream_t>(stream)>>>(q, static_cast<int>(cap), stride);
  return static_cast<int>(SEER_LAST_ERROR());
#else  // no mma.sync mainloop on this platform (ROCm runs csrc/*/hip/)
  (void)p, (void)stream;
  return static_cast<int>(hipErrorNotSupported);
#endif
}

}  // namespace pooling
}  // namespace seer
