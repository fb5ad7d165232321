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
struct FwdConfig {
  static_assert((D == 64 || D == 128 || D == 256) && (kBlockM == 64 || kBlockM == 128) &&
                    !(D == 256 && kBlockM == 128),
                "forward tile configurations: D 64 / 128 with 64 or 128 rows, D 256 with 64 rows");
  static constexpr int kBlockN = D == 64 ? 64 : 32;                               // keys per K/V tile
  static constexpr int kNWarps = kBlockM == 128 || D == 256 ? 4 : 2;              // 32 rows per warp (D 256: 16)
  static constexpr int kMinBlocksPerSm = D == 256 ? 1 : (kBlockM == 128 ? 2 : 4);  // occupancy hint
  using Traits = FwdTraits<D, kBlockM, kBlockN, kNWarps, kMinBlocksPerSm, false, Elem>;
};

// Host launcher. Checks the tiling the API layer chose against the kernel's tile shape, sets the
// dynamic shared-memory limit and launches one CTA per (row tile, kv head, sequence).
template <typename Elem, int D, int kBlockM>
int run_attention_fwd_(const AttnParams& p, void* stream) {
  using T = typename FwdConfig<D, kBlockM, Elem>::Traits;
#if SEER_HAS_MMA_SYNC
  if (p.head_dim != D || !row_tiling_ok(p, T::kBlockM))  // tile_scheduler.h
    return static_cast<int>(cudaErrorInvalidValue);
  const long long n_ctas = num_items(p);  // one work item per CTA (tile_scheduler.h)
  if (n_ctas == 0) return 0;
  if (n_ctas > INT_MAX) return static_cast<int>(cudaErrorInvalidConfiguration);
  auto kernel = attention_fwd_kernel<T>;
  const int smem = T::kSmemBytes;
  if (const cudaError_t e = allow_smem(kernel, smem); e != cudaSuccess) return static_cast<int>(e);
  kernel<<<static_cast<unsigned>(n_ctas), T::kNThreads, smem, static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(SEER_LAST_ERROR());
#else  // no mma.sync mainloop on this platform (ROCm runs csrc/*/hip/)
  (void)p, (void)stream;
  return static_cast<int>(hipErrorNotSupported);
#endif
}

}  // namespace fwd
}  // namespace seer
