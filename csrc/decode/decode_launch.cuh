// Definition of the per-(head dim, dtype) decode launcher (select, split and combine kernels; see
// decode_launch.h). Included only by the generated instantiation files, so every kernel is compiled
// exactly once.
#pragma once
#include <atomic>

#include "common/launch.h"
#include "decode/decode_kernel.cuh"
#include "decode/decode_launch.h"

namespace seer {
namespace decode {

// Whether the code loaded for `kernel` on the current device was compiled from sm_90+ PTX, so that
// SEER_GRID_DEP_WAIT() in it is a real griddepcontrol.wait (platform.h).
constexpr int kMaxGridDepDevices = 64;
template <typename Kernel>
bool has_grid_dep_wait(Kernel kernel) {
  cudaFuncAttributes a{};
  return cudaFuncGetAttributes(&a, kernel) == cudaSuccess && a.ptxVersion >= 90 && a.binaryVersion >= 90;
}

template <int kHeadDim, typename Elem>
int run_decode_(const DecodeParams& p, seer_stream_t stream) {
  using Tr = DecodeTraits<kHeadDim, Elem>;
  constexpr int kSmem = Tr::kSmemBytes;
  auto kernel = block_sparse_decode_kernel<Tr>;
  auto combine = decode_combine_kernel<Elem, kHeadDim>;
  // Per-function attribute of the current device; cheap, and legal during stream capture.
  cudaError_t err = allow_smem(kernel, kSmem);
  if (err != cudaSuccess) return static_cast<int>(err);
  // Select: compact every (sequence, kv head) row's selection once (sel_list / sel_count).
  decode_select_kernel<kSelectThreads><<<select_grid(p), kSelectThreads, 0, stream>>>(p);
  SEER_RETURN_IF_LAUNCH_ERROR();

  // The split and combine kernels launch as programmatic dependents of the kernel before them on
  // compute capability >= 9.0 (p.grid_dep), when the code loaded for them has the wait compiled in
  // (their PTX is for sm_90+: a build whose only Hopper code is JIT-compiled compute_80 PTX has none):
  // their launch and the split kernel's length reads and upper-bound exits overlap the previous kernel's
  // tail; each waits in the kernel (griddepcontrol.wait) before reading the previous kernel's output.
  // Cached per device (0 unknown, 1 yes, 2 no; a benign race: every writer stores the same value).
  static std::atomic<int> wait_known[kMaxGridDepDevices];
  int dev = 0;
  bool has_wait = false;
  if (p.grid_dep && cudaGetDevice(&dev) == cudaSuccess && dev >= 0 && dev < kMaxGridDepDevices) {
    int known = wait_known[dev].load(std::memory_order_relaxed);
    if (known == 0) {
      known = has_grid_dep_wait(kernel) && has_grid_dep_wait(combine) ? 1 : 2;
      wait_known[dev].store(known, std::memory_order_relaxed);
    }
    has_wait = known == 1;
  }
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  auto config = [&](dim3 grid, int threads, int smem) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = has_wait ? 1 : 0;
    return cfg;
  };
  cudaLaunchConfig_t cfg = config(split_grid(p, row_chunks(p, Tr::kRows)), Tr::kThreads, kSmem);
  err = cudaLaunchKernelEx(&cfg, kernel, p);
  if (err != cudaSuccess) return static_cast<int>(err);

  if (p.num_splits > 1) {
    cfg = config(combine_grid(p, kCombineWarps), kCombineWarps * 32, 0);
    err = cudaLaunchKernelEx(&cfg, combine, p);
    if (err != cudaSuccess) return static_cast<int>(err);
  }
  return 0;
}

}  // namespace decode
}  // namespace seer
