// Hopper (sm_90a) S tile of the attention-pooling main kernel (pooling_kernel.cuh, Traits::kWgmma):
// S = Q K^T for a warpgroup's 64 query rows x kBlockN keys with wgmma, A = the Q fragments the kernel
// already holds in registers (mma.sync's m16k16 A layout per warp, which wgmma's register A operand
// shares), B = the K tile in shared memory in the 128-byte-swizzled slab layout (common/sm90_primitives.h).
// The accumulator comes back in the mma.sync C layout the rest of the kernel reads (wgmma's per-warp
// layout is the same). All 128 threads of the warpgroup call it together.
#pragma once

#include <cstdint>

#include "common/platform.h"
#include "common/sm90_primitives.h"
#include "common/sm90_wgmma.h"

namespace seer {
namespace pooling {

template <typename Traits>
SEER_DEVICE void pool_s_tile_sm90(float (&acc)[Traits::kNFrag][4], const uint32_t (&qf)[Traits::kKSteps][4],
                                  uint32_t sK_tile_addr) {
  using Elem = typename Traits::Elem;
  constexpr int kBlockN = Traits::kBlockN;
  static_assert(Traits::kNFrag * 4 == kBlockN / 2, "one wgmma accumulator of kBlockN columns");
  float(&d)[kBlockN / 2] = *reinterpret_cast<float(*)[kBlockN / 2]>(&acc);
  // K-major B (keys x head dim): k16 step kk is in slab kk / 4 (kBlockN rows of 128 bytes), 32 bytes in.
  const uint64_t db = sm90::make_smem_desc_sw128(sK_tile_addr, 16, 1024);
  sm90::fence_operands(d);
  sm90::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < Traits::kKSteps; ++kk)
    sm90::wgmma_rs<kBlockN, Elem, 0>(d, qf[kk], sm90::desc_add(db, (kk / 4) * (kBlockN * 128) + (kk % 4) * 32), kk != 0);
  sm90::wgmma_commit();
  sm90::wgmma_wait<0>();
  sm90::fence_operands(d);
}

}  // namespace pooling
}  // namespace seer
