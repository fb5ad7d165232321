// Launcher of the Hopper dK/dV kernel of the backward (sm90/bwd_kernel_sm90.cuh): one instantiation per
// (head dim, element type) in instantiations/bwd_hdim*_sm90.cu, compiled for sm_90a. Same contract as
// run_bwd_hdim (bwd_launch.cuh): softmax_d must already hold D_i; atomic path (!deterministic and
// dq_accum set, zeroed by the preprocess kernel where dQ is fused): the kernel also adds dQ into dq_accum
// and the caller converts it - or, with tile counts (AttnParams::tile_count) at a kept-tile density of at
// most 75%, the q-major dQ kernel writes dq and the convert kernel does nothing (bwd_common.h dq_fused);
// at most 30% the 64-key dK/dV CTA runs instead of the 128-key one (dkdv_split, both paths);
// deterministic path: the q-major wgmma dQ kernel (sm90/bwd_dq_kernel_sm90.cuh) follows.
#pragma once

#include "attention/attention_params.h"
#include "attention/bwd_launch_template.cuh"
#include "attention/sm90/bwd_dq_kernel_sm90.cuh"
#include "attention/sm90/bwd_kernel_sm90.cuh"
#include "attention/tile_scheduler.h"
#include "common/launch.h"

namespace seer {
namespace bwd_sm90 {

// The 128-key CTA (two consumer warpgroups; on the atomic path with and without the fused dQ) and, where
// tile counts exist, the 64-key CTA (one consumer warpgroup, two CTAs per SM, never fusing dQ): the
// kept-tile density picks one on the device (bwd_common.h dkdv_split, dq_fused) and the other kernels'
// CTAs exit at once.
template <typename Elem, int D>
int launch_dkdv_sm90(const AttnBwdParams& p, cudaStream_t stream) {
  using T = Traits<D, Elem, 2>;
  using T1 = Traits<D, Elem, 1>;
  const dim3 grid = key_tile_grid(p, T::kBlockN);  // tile_scheduler.h
  if (grid.x == 0) return 0;
  const bool atomic = attn_bwd::dq_atomic(p);  // bwd_common.h
  return SEER_BOOL_SWITCH(p.causal, kCausal, [&] {
    auto launch128 = [&](auto kernel) {
      cudaError_t e = allow_smem(kernel, T::kSmemBytes);  // common/launch.h
      if (e != cudaSuccess) return static_cast<int>(e);
      kernel<<<grid, T::kThreads, T::kSmemBytes, stream>>>(p);
      return static_cast<int>(SEER_LAST_ERROR());
    };
    // Atomic path: the fused-dQ kernel, and with tile counts also the one without (the density picks on the
    // device: bwd_common.h dq_fused); deterministic path: the one without.
    int err = atomic ? launch128(&bwd_dkdv_sm90_kernel<T, kCausal, true>) : 0;
    if (err == 0 && (!atomic || p.tile_count != nullptr)) err = launch128(&bwd_dkdv_sm90_kernel<T, kCausal, false>);
    if (err != 0 || p.tile_count == nullptr) return err;
    auto kernel1 = &bwd_dkdv_sm90_kernel<T1, kCausal, false>;
    cudaError_t e = allow_smem(kernel1, T1::kSmemBytes);
    if (e != cudaSuccess) return static_cast<int>(e);
    kernel1<<<key_tile_grid(p, T1::kBlockN), T1::kThreads, T1::kSmemBytes, stream>>>(p);
    return static_cast<int>(SEER_LAST_ERROR());
  });
}

// The deterministic dQ: persistent, T::kCtasPerSm CTAs per SM taking the row tiles of p's work queue
// (tile_scheduler.h "Work queue").
template <typename Elem, int D>
int launch_dq_sm90(const AttnBwdParams& p, cudaStream_t stream) {
  using T = DqTraits<D, Elem>;
  return sm90_rows::launch_persistent<T>(bwd_dq_sm90_kernel<T>, sm90_rows::with_kv_tma(p), stream);
}

template <typename Elem, int D>
int run_bwd_sm90_(const AttnBwdParams& p, void* stream_ptr) {
#ifndef SEER_ATTN_SM90A
  (void)p;
  (void)stream_ptr;
  return static_cast<int>(cudaErrorNotSupported);  // no sm_90a code in this build
#else
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (p.head_dim != D || !row_tiling_ok(p, attn_bwd::kBwdTileRows))  // tile_scheduler.h
    return static_cast<int>(cudaErrorInvalidValue);
  int err = launch_dkdv_sm90<Elem, D>(p, stream);
  // Deterministic path: dQ here. Atomic path with tile counts: the dK/dV kernel added dQ, or (low tile
  // density, decided on the device) this kernel computes it (bwd_common.h dq_fused).
  if (err == 0 && (p.deterministic || p.dq_accum == nullptr || p.tile_count != nullptr))
    err = launch_dq_sm90<Elem, D>(p, stream);
  return err;
#endif
}

}  // namespace bwd_sm90
}  // namespace seer
