// Host launchers of the backward dK/dV and dQ kernels for one head dim and element type.
// Included only by the generated instantiation files (instantiations/bwd_hdim*_*.cu), each of which
// explicitly instantiates run_bwd_hdim<D, Elem>; bwd_launch.cu dispatches to them.
#pragma once
#include "attention/bwd_kernel.cuh"
#include "attention/bwd_kernel_v2.cuh"
#include "attention/bwd_launch.cuh"
#include "common/launch.h"

namespace seer {
namespace attn_bwd {

// Tile configuration per head dim. Shared memory (bf16/fp16):
//   D=64 : dK/dV  64 keys, 8 warps, 2 stages  ~77 KB | dQ 64-key windows  ~55 KB
//   D=128: dK/dV  64 keys, 8 warps, 2 stages ~125 KB | dQ 64-key windows ~105 KB
//   D=256: dK/dV  64 keys, 8 warps, 1 stage  ~157 KB | dQ 32-key windows ~134 KB (fits sm80 and sm90)
template <int kHeadDim, typename Elem>
struct BwdConfig;
template <typename Elem>
struct BwdConfig<64, Elem> {
  using Dkdv = DkdvTraits<64, 64, 8, 2, Elem>;
  using Dq = DqTraits<64, 64, Elem>;
};
template <typename Elem>
struct BwdConfig<128, Elem> {
  using Dkdv = DkdvTraits<128, 64, 8, 2, Elem>;
  using Dq = DqTraits<128, 64, Elem>;
};
template <typename Elem>
struct BwdConfig<256, Elem> {
  using Dkdv = DkdvTraits<256, 64, 8, 1, Elem>;
  using Dq = DqTraits<256, 32, Elem>;
};

// Opt in to more than 48 KB of dynamic shared memory.
template <typename Kernel>
cudaError_t allow_smem(Kernel kernel, int bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

// Grid: (key tiles of the longest sequence, kv heads, sequences); tiles past a sequence's end exit.
// Is_atomic: also accumulate dQ into p.dq_accum (atomic path; see bwd_kernel.cuh).
template <typename Kt, bool Is_causal, bool Is_atomic>
int launch_dkdv(const AttnBwdParams& p, cudaStream_t stream) {
  const int n_tiles = (p.max_seqlen_k + Kt::kBlockN - 1) / Kt::kBlockN;
  if (n_tiles == 0 || p.h_kv == 0 || p.batch == 0) return 0;
  auto kernel = &bwd_dkdv_kernel<Kt, Is_causal, Is_atomic>;
  cudaError_t err = allow_smem(kernel, Kt::kSmemBytes);
  if (err != cudaSuccess) return static_cast<int>(err);
  kernel<<<dim3(n_tiles, p.h_kv, p.batch), Kt::kThreads, Kt::kSmemBytes, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

// Grid: (row tiles, kv heads, sequences); row tiles past a sequence's end exit.
template <typename Qt, bool Is_causal>
int launch_dq(const AttnBwdParams& p, cudaStream_t stream) {
  if (p.n_row_tiles == 0 || p.h_kv == 0 || p.batch == 0) return 0;
  auto kernel = &bwd_dq_kernel<Qt, Is_causal>;
  cudaError_t err = allow_smem(kernel, Qt::kSmemBytes);
  if (err != cudaSuccess) return static_cast<int>(err);
  kernel<<<dim3(p.n_row_tiles, p.h_kv, p.batch), Qt::kThreads, Qt::kSmemBytes, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

// Version 2 dK/dV kernel. Grid: (key tiles of the longest sequence x kv heads, sequences), the kv
// head fastest; tiles past a sequence's end exit.
template <typename Kt, bool Is_causal, bool Is_atomic>
int launch_dkdv_v2(const AttnBwdParams& p, cudaStream_t stream) {
  const int n_tiles = (p.max_seqlen_k + Kt::kBlockN - 1) / Kt::kBlockN;
  if (n_tiles == 0 || p.h_kv == 0 || p.batch == 0) return 0;
  auto kernel = &bwd_dkdv_v2_kernel<Kt, Is_causal, Is_atomic>;
  cudaError_t err = allow_smem(kernel, Kt::kSmemBytes);
  if (err != cudaSuccess) return static_cast<int>(err);
  kernel<<<dim3(static_cast<unsigned>(n_tiles) * static_cast<unsigned>(p.h_kv), p.batch), Kt::kThreads,
           Kt::kSmemBytes, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace attn_bwd

template <int kHeadDim, typename Elem>
int run_bwd_dq_hdim(const AttnBwdParams& p, cudaStream_t stream) {
  using Cfg = attn_bwd::BwdConfig<kHeadDim, Elem>;
  return SEER_BOOL_SWITCH(p.causal, kCausal, [&] { return attn_bwd::launch_dq<typename Cfg::Dq, kCausal>(p, stream); });
}

template <int kHeadDim, typename Elem>
int run_bwd_dkdv_v2_hdim(const AttnBwdParams& p, cudaStream_t stream) {
  using Kt = attn_bwd::DkdvV2Traits<kHeadDim, Elem>;
  int dev = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return kBwdV2Unsupported;
  }
  if (optin < Kt::kSmemBytes) return kBwdV2Unsupported;
  const bool atomic = !p.deterministic && p.dq_accum != nullptr;
  return SEER_BOOL_SWITCH(p.causal, kCausal, [&] {
    if (atomic) return attn_bwd::launch_dkdv_v2<Kt, kCausal, true>(p, stream);
    return attn_bwd::launch_dkdv_v2<Kt, kCausal, false>(p, stream);
  });
}

// Deterministic path: dK/dV kernel then dQ kernel. Atomic path (!p.deterministic and p.dq_accum set,
// zero-initialised): the dK/dV kernel also accumulates dQ into p.dq_accum; the caller
// (run_attention_bwd) then converts dq_accum into p.dq.
template <int kHeadDim, typename Elem>
int run_bwd_hdim(const AttnBwdParams& p, cudaStream_t stream) {
  using Cfg = attn_bwd::BwdConfig<kHeadDim, Elem>;
  const bool atomic = !p.deterministic && p.dq_accum != nullptr;
  return SEER_BOOL_SWITCH(p.causal, kCausal, [&] {
    if (atomic) return attn_bwd::launch_dkdv<typename Cfg::Dkdv, kCausal, true>(p, stream);
    int err = attn_bwd::launch_dkdv<typename Cfg::Dkdv, kCausal, false>(p, stream);
    if (err == 0) err = attn_bwd::launch_dq<typename Cfg::Dq, kCausal>(p, stream);
    return err;
  });
}

}  // namespace seer
