// Host launchers of the backward dK/dV and dQ kernels for one head dim and element type.
// Included only by the generated instantiation files (instantiations/bwd_hdim*_*.cu), each of which
// explicitly instantiates run_bwd_hdim<D, Elem>; bwd_launch.cu dispatches to them.
#pragma once
#include <climits>

#include "attention/bwd_dkdv_kernel.cuh"
#include "attention/bwd_dq_kernel.cuh"
#include "attention/bwd_launch.cuh"
#include "common/device_facts.h"
#include "common/launch.h"

namespace seer {
namespace attn_bwd {

// Tile configuration per head dim: Dkdv is used when the device's opt-in shared memory per block
// holds it (H100 / H200: 227 KB; A100: 163 KB for D 64), else DkdvSmall (A100 for D 128 / 256;
// sm_86 / sm_89: 99 KB, D 64 / 128). Shared memory (bf16 / fp16):
//   D=64 : dK/dV 128 keys, 2 stages 113.5 KB; small: 64 keys 77.5 KB   | dQ 64-key windows  ~55 KB
//   D=128: dK/dV 128 keys, 2 stages 177.5 KB; small: 64 keys 125.5 KB  | dQ 64-key windows ~105 KB
//   D=256: dK/dV  64 keys, 2 stages 221.5 KB; small: 1 stage 153.8 KB  | dQ 32-key windows ~134 KB
// (D=128 small keeps two stages with 64 keys: one stage of 128 keys spills on the causal kernels.)
template <int kHeadDim, typename Elem>
struct BwdConfig {
  static_assert(kHeadDim == 64 || kHeadDim == 128 || kHeadDim == 256, "head dim");
  static constexpr bool kWide = kHeadDim <= 128;  // 128-key dK/dV tiles fit 227 KB
  using Dkdv = DkdvTraits<kHeadDim, kWide ? 128 : 64, 2, Elem>;
  using DkdvSmall = DkdvTraits<kHeadDim, 64, kWide ? 2 : 1, Elem>;
  using Dq = DqTraits<kHeadDim, kWide ? 64 : 32, Elem>;
};

// dK/dV kernel. Grid: the key-tile items (tile_scheduler.h). Is_atomic: also accumulate dQ into
// p.dq_accum.
template <typename Kt, bool Is_causal, bool Is_atomic>
int launch_dkdv(const AttnBwdParams& p, cudaStream_t stream) {
  const dim3 grid = key_tile_grid(p, Kt::kBlockN);
  if (grid.x == 0) return 0;
  auto kernel = &bwd_dkdv_kernel<Kt, Is_causal, Is_atomic>;
  cudaError_t err = allow_smem(kernel, Kt::kSmemBytes);
  if (err != cudaSuccess) return static_cast<int>(err);
  kernel<<<grid, Kt::kThreads, Kt::kSmemBytes, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

// dQ kernel (deterministic path). Grid: one row-tile item per CTA, heaviest first (tile_scheduler.h);
// row tiles past a sequence's end exit.
template <typename Qt, bool Is_causal>
int launch_dq(const AttnBwdParams& p, cudaStream_t stream) {
  const long long n_ctas = num_items(p);
  if (n_ctas == 0) return 0;
  if (n_ctas > INT_MAX) return static_cast<int>(cudaErrorInvalidConfiguration);
  auto kernel = &bwd_dq_kernel<Qt, Is_causal>;
  cudaError_t err = allow_smem(kernel, Qt::kSmemBytes);
  if (err != cudaSuccess) return static_cast<int>(err);
  kernel<<<static_cast<unsigned>(n_ctas), Qt::kThreads, Qt::kSmemBytes, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

// Deterministic path: dK/dV kernel then dQ kernel. Atomic path: the dK/dV kernel also adds dQ into
// p.dq_accum.
template <typename Kt, typename Qt>
int run_bwd_kernels(const AttnBwdParams& p, cudaStream_t stream) {
  const bool atomic = dq_atomic(p);  // bwd_common.h
  return SEER_BOOL_SWITCH(p.causal, kCausal, [&] {
    if (atomic) return launch_dkdv<Kt, kCausal, true>(p, stream);
    int err = launch_dkdv<Kt, kCausal, false>(p, stream);
    if (err == 0) err = launch_dq<Qt, kCausal>(p, stream);
    return err;
  });
}

}  // namespace attn_bwd

template <int kHeadDim, typename Elem>
int run_bwd_hdim(const AttnBwdParams& p, cudaStream_t stream) {
  using Cfg = attn_bwd::BwdConfig<kHeadDim, Elem>;
  using Big = typename Cfg::Dkdv;
  using Small = typename Cfg::DkdvSmall;
  const DeviceFacts dev = current_device_facts();
  if (dev.error != 0) return dev.error;
  if (dev.smem_optin >= Big::kSmemBytes) return attn_bwd::run_bwd_kernels<Big, typename Cfg::Dq>(p, stream);
  return attn_bwd::run_bwd_kernels<Small, typename Cfg::Dq>(p, stream);
}

}  // namespace seer
