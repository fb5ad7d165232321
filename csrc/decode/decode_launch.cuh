// Definition of the per-(head dim, dtype) decode launcher (select, split and combine kernels) (see decode_launch.h). Included only by the
// generated instantiation files, so every kernel is compiled exactly once.
#pragma once
#include "common/launch.h"
#include "decode/decode_kernel.cuh"
#include "decode/decode_launch.h"

namespace seer {
namespace decode {

template <int kHeadDim, typename Elem>
int run_decode_(const DecodeParams& p, seer_stream_t stream) {
  using Tr = DecodeTraits<kHeadDim, Elem>;
  constexpr int kSmem = Tr::kSmemBytes;
  auto kernel = block_sparse_decode_kernel<Tr>;
  if (kSmem > 48 * 1024) {
    // Per-function attribute of the current device; cheap, and legal during stream capture.
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    if (err != cudaSuccess) return static_cast<int>(err);
  }
  // Select: compact every (sequence, kv head) row's selection once (sel_list / sel_count).
  decode_select_kernel<kSelectThreads><<<dim3(p.h_kv, p.batch), kSelectThreads, 0, stream>>>(p);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return static_cast<int>(err);

  // The split and combine kernels launch as programmatic dependents of the kernel before them on
  // sm_90+ (p.grid_dep): their launch and the split kernel's q loads overlap the previous kernel's
  // tail; each waits in the kernel (griddepcontrol.wait) before reading the previous kernel's output.
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
    cfg.numAttrs = p.grid_dep ? 1 : 0;
    return cfg;
  };
  const int n_chunks = (p.n_tok * p.group + Tr::kRows - 1) / Tr::kRows;
  cudaLaunchConfig_t cfg = config(dim3(static_cast<unsigned>(p.num_splits) * n_chunks, p.h_kv, p.batch), Tr::kThreads, kSmem);
  err = cudaLaunchKernelEx(&cfg, kernel, p);
  if (err != cudaSuccess) return static_cast<int>(err);

  if (p.num_splits > 1) {
    const int64_t n_rows = static_cast<int64_t>(p.batch) * p.n_tok * p.h_q;
    const unsigned blocks = static_cast<unsigned>((n_rows + kCombineWarps - 1) / kCombineWarps);
    cfg = config(dim3(blocks), kCombineWarps * 32, 0);
    err = cudaLaunchKernelEx(&cfg, decode_combine_kernel<Elem, kHeadDim>, p);
    if (err != cudaSuccess) return static_cast<int>(err);
  }
  return 0;
}

}  // namespace decode
}  // namespace seer
