// Launcher template of the block-sparse attention forward kernel (one instantiation per head dim and
// element type, see instantiations/ and generate_instantiations.py).
#pragma once

#include <climits>

#include "common/launch.h"
#include "attention/attention_params.h"
#include "attention/fwd_kernel.cuh"

namespace seer {
namespace fwd {

// Tile configuration per head dim (mma.sync, one 16-row mma tile per warp, K/V double buffered).
// Chosen so that sm_90 compiles with no spills (nvcc --resource-usage):
//   D=64 : 128 x 64, 8 warps, Q read from smem, <= 128 regs -> 2 CTAs / SM (smem ~51 KB each)
//   D=128: 128 x 32, 8 warps, Q read from smem, <= 128 regs -> 2 CTAs / SM (smem ~83 KB each)
//          (128 x 64 needs ~190 regs: 1 CTA / SM; FwdTraits<128, 128, 64, 8, 1, false, Elem> is the
//          alternative to benchmark)
//   D=256: 128 x 32, 8 warps, Q read from smem, ~230 regs  -> 1 CTA / SM (smem ~132 KB)
// Q fragments in registers (kQInRegs) only fit without spills when the CTA may use > 128 regs.
template <int D, typename Elem>
struct FwdConfig;
template <typename Elem>
struct FwdConfig<64, Elem> {
  using Traits = FwdTraits<64, 128, 64, 8, 2, false, Elem>;
};
// Benchmark knob: -DSEER_FWD_D128_BLOCK_N=64 selects the 128 x 64 tile (1 CTA / SM, ~190 regs).
#ifndef SEER_FWD_D128_BLOCK_N
#define SEER_FWD_D128_BLOCK_N 32
#endif
template <typename Elem>
struct FwdConfig<128, Elem> {
  using Traits = FwdTraits<128, 128, SEER_FWD_D128_BLOCK_N, 8, (SEER_FWD_D128_BLOCK_N <= 32 ? 2 : 1), false, Elem>;
};
template <typename Elem>
struct FwdConfig<256, Elem> {
  using Traits = FwdTraits<256, 128, 32, 8, 1, false, Elem>;
};

// Host launcher. Checks the tiling the API layer chose against the kernel's tile shape, sets the
// dynamic shared-memory limit and launches one CTA per (row tile, kv head, sequence).
template <typename Elem, int D>
int run_attention_fwd_(const AttnParams& p, void* stream) {
  using T = typename FwdConfig<D, Elem>::Traits;
#if SEER_HAS_MMA_SYNC
  if (p.head_dim != D || p.pack < 1 || p.group % p.pack != 0 || p.tile_tokens < 1 ||
      p.tile_tokens * p.pack > T::kBlockM || p.block_size_k < 16 || p.block_size_k % 16 != 0 ||
      p.mask_heads < 1 || p.h_q % p.mask_heads != 0 || p.mask_row_div < 1 ||
      p.n_row_tiles != (p.group / p.pack) * p.n_tok_tiles)
    return static_cast<int>(cudaErrorInvalidValue);
  const long long n_ctas = static_cast<long long>(p.n_row_tiles) * p.h_kv * p.batch;
  if (n_ctas == 0) return 0;
  if (n_ctas > INT_MAX) return static_cast<int>(cudaErrorInvalidConfiguration);
  auto kernel = attention_fwd_kernel<T>;
  const int smem = T::kSmemBytes;
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return static_cast<int>(e);
  }
  kernel<<<static_cast<unsigned>(n_ctas), T::kNThreads, smem, static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(SEER_LAST_ERROR());
#else
  (void)p;
  (void)stream;
  return static_cast<int>(hipErrorNotSupported);
#endif
}

}  // namespace fwd
}  // namespace seer
