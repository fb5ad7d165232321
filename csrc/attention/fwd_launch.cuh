// Launcher template of the block-sparse attention forward kernel (one instantiation per head dim and
// element type, see instantiations/ and csrc/generate_instantiations.py).
#pragma once

#include <climits>

#include "common/launch.h"
#include "attention/attention_params.h"
#include "attention/fwd_kernel.cuh"

namespace seer {
namespace fwd {

// Tile configuration per (head dim, rows per row tile). mma.sync m16n8k16, K/V double buffered. A warp
// owning 32 rows (two 16-row mma tiles) re-uses every K / V fragment it loads from shared memory for
// two mma tiles, which halves the ldmatrix traffic per mma compared with 16 rows per warp (shared-memory
// bandwidth is what bounds an mma.sync mainloop on sm80 / sm90).
// Row tiles (attention_fwd_tile_rows): 64 rows unless a 2D mask row covers 128 rows (B_q % 128 == 0),
// so that a tile never walks the union of two mask rows.
//   D=64 : 64 x 64, 2 warps x 32 rows    | 128 x 64, 4 warps x 32 rows
//   D=128: 64 x 32, 2 warps x 32 rows    | 128 x 32, 4 warps x 32 rows
//   D=256: 64 x 32, 4 warps x 16 rows    | (no 128-row tile: 32 rows per warp do not fit registers)
// (Hopper runs D 64 / 128 on the warp-specialised kernel of sm90/ instead.)
template <int D, int kBlockM, typename Elem>
struct FwdConfig;
template <typename Elem>
struct FwdConfig<64, 64, Elem> {
  using Traits = FwdTraits<64, 64, 64, 2, 4, false, Elem>;
};
template <typename Elem>
struct FwdConfig<64, 128, Elem> {
  using Traits = FwdTraits<64, 128, 64, 4, 2, false, Elem>;
};
template <typename Elem>
struct FwdConfig<128, 64, Elem> {
  using Traits = FwdTraits<128, 64, 32, 2, 4, false, Elem>;
};
template <typename Elem>
struct FwdConfig<128, 128, Elem> {
  using Traits = FwdTraits<128, 128, 32, 4, 2, false, Elem>;
};
template <typename Elem>
struct FwdConfig<256, 64, Elem> {
  using Traits = FwdTraits<256, 64, 32, 4, 1, false, Elem>;
};

// Host launcher. Checks the tiling the API layer chose against the kernel's tile shape, sets the
// dynamic shared-memory limit and launches one CTA per (row tile, kv head, sequence).
template <typename Elem, int D, int kBlockM>
int run_attention_fwd_(const AttnParams& p, void* stream) {
  using T = typename FwdConfig<D, kBlockM, Elem>::Traits;
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
