// Launcher of the Hopper warp-specialised forward (sm90/fwd_kernel_sm90.cuh): one instantiation per
// (head dim, element type) and kernel (single: 64-row tiles, instantiations/fwd_hdim*_sm90.cu; pair:
// 128-row tiles, fwd_hdim*_pair_sm90.cu), compiled for sm_90a.
#pragma once

#include "attention/attention_params.h"
#include "attention/sm90/fwd_kernel_sm90.cuh"

namespace seer {
namespace fwd_sm90 {

template <typename Elem, int D, bool kPair = false>
int run_attention_fwd_sm90_(const AttnParams& p, void* stream) {
  using T = Traits<D, Elem, kPair>;
#ifndef SEER_ATTN_SM90A
  (void)p;
  (void)stream;
  return static_cast<int>(cudaErrorNotSupported);  // no sm_90a code in this build
#else
  if (p.head_dim != D || !row_tiling_ok(p, T::kTileRows))  // tile_scheduler.h
    return static_cast<int>(cudaErrorInvalidValue);
  // Persistent: T::kCtasPerSm CTAs per SM taking the work items of p's queue (tile_scheduler.h "Work queue").
  // K / V whole 64-key groups by TMA where the tensors allow a map (sm90_rows::with_kv_tma).
  return sm90_rows::launch_persistent<T>(attention_fwd_sm90_kernel<T>, sm90_rows::with_kv_tma(p),
                                         static_cast<cudaStream_t>(stream));
#endif
}

}  // namespace fwd_sm90
}  // namespace seer
