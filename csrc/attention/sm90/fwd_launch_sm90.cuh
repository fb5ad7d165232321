// Launcher of the Hopper warp-specialised forward (sm90/fwd_kernel_sm90.cuh): one instantiation per
// (head dim, element type) in instantiations/fwd_hdim*_sm90.cu, compiled for sm_90a.
#pragma once

#include <climits>

#include "common/device_facts.h"
#include "common/launch.h"
#include "attention/attention_params.h"
#include "attention/sm90/fwd_kernel_sm90.cuh"

namespace seer {
namespace fwd_sm90 {

template <typename Elem, int D>
int run_attention_fwd_sm90_(const AttnParams& p, void* stream) {
  using T = Traits<D, Elem>;
#ifndef SEER_ATTN_SM90A
  (void)p;
  (void)stream;
  return static_cast<int>(cudaErrorNotSupported);  // no sm_90a code in this build
#else
  if (p.head_dim != D || p.pack < 1 || p.group % p.pack != 0 || p.tile_tokens < 1 ||
      p.tile_tokens * p.pack > T::kBlockM || p.block_size_k < 16 || p.block_size_k % 16 != 0 ||
      p.mask_heads < 1 || p.h_q % p.mask_heads != 0 || p.mask_row_div < 1 ||
      p.n_row_tiles != (p.group / p.pack) * p.n_tok_tiles)
    return static_cast<int>(cudaErrorInvalidValue);
  const long long n_ctas = num_items(p);
  if (n_ctas == 0) return 0;
  if (n_ctas > INT_MAX) return static_cast<int>(cudaErrorInvalidConfiguration);
  auto kernel = attention_fwd_sm90_kernel<T>;
  cudaError_t e = allow_smem(kernel, T::kSmemBytes);  // common/launch.h
  if (e != cudaSuccess) return static_cast<int>(e);
  // Persistent: T::kCtasPerSm CTAs per SM, each looping over the work items with a stride of the grid.
  const DeviceFacts dev = current_device_facts();
  if (dev.error != 0) return dev.error;
  const long long slots = static_cast<long long>(dev.sms) * T::kCtasPerSm;
  const unsigned grid = static_cast<unsigned>(n_ctas < slots ? n_ctas : slots);
  kernel<<<grid, T::kThreads, T::kSmemBytes, static_cast<cudaStream_t>(stream)>>>(p, static_cast<int>(n_ctas));
  return static_cast<int>(SEER_LAST_ERROR());
#endif
}

}  // namespace fwd_sm90
}  // namespace seer
