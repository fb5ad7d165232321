// ROCm (gfx942) block-sparse decode: instantiations, the split heuristic and the launcher (the ROCm
// build links this file instead of decode_dispatch.cu). Compiled only by the ROCm build
// (setup.py / make hip-check; the CUDA source lists leave csrc/*/hip/ out).
#include <algorithm>
#include "common/launch.h"
#include "decode/hip/decode_kernel_hip.h"

namespace seer {

int decode_num_splits(const DecodeParams& p, int requested) {
  const int nb = std::max(p.num_blocks, 1);
  if (requested > 0) return std::min(requested, nb);
  if (p.num_blocks <= 1) return 1;
  int dev = 0, cus = 0;
  if (hipGetDevice(&dev) != hipSuccess) dev = 0;
  if (hipDeviceGetAttribute(&cus, hipDeviceAttributeMultiprocessorCount, dev) != hipSuccess || cus <= 0) cus = 304;
  // Two workgroups per CU (LDS and registers, see make hip-check), several waves of them.
  constexpr int kTargetWaves = 8, kMinKeysPerSplit = 256, kMaxSplits = 64;
  const int64_t chunks = (static_cast<int64_t>(p.n_tok) * p.group + hipdecode::kRows - 1) / hipdecode::kRows;
  const int64_t work = static_cast<int64_t>(p.batch) * p.h_kv * chunks;
  const int64_t target = static_cast<int64_t>(kTargetWaves) * 2 * cus;
  if (work <= 0 || work >= target) return 1;
  int64_t splits = (target + work - 1) / work;
  const int64_t by_len = std::max<int64_t>(1, static_cast<int64_t>(p.num_blocks) * p.block_size / kMinKeysPerSplit);
  splits = std::min<int64_t>({splits, by_len, static_cast<int64_t>(kMaxSplits), static_cast<int64_t>(nb)});
  return static_cast<int>(std::max<int64_t>(splits, 1));
}

namespace {
template <typename Elem, int D>
int launch_decode(const DecodeParams& p, hipStream_t stream) {
  if (p.batch <= 0 || p.h_kv <= 0) return 0;
  const int chunks = (p.n_tok * p.group + hipdecode::kRows - 1) / hipdecode::kRows;  // rows: (token, q head)
  hipLaunchKernelGGL((hipdecode::decode_split_kernel_hip<Elem, D>), dim3(p.num_splits * chunks, p.h_kv, p.batch),
                     dim3(hipdecode::kThreads), 0, stream, p);
  hipError_t e = hipGetLastError();
  if (e != hipSuccess || p.num_splits == 1) return static_cast<int>(e);
  hipLaunchKernelGGL((hipdecode::decode_combine_kernel_hip<Elem, D>), dim3(p.batch * p.n_tok * p.h_q), dim3(64), 0, stream, p);
  return static_cast<int>(hipGetLastError());
}
}  // namespace

int run_block_sparse_decode(const DecodeParams& p, void* stream) {
  const hipStream_t s = static_cast<hipStream_t>(stream);
  if (p.num_splits < 1 || p.block_size % hipdecode::kTileKeys != 0 || p.n_tok < 1 || p.n_tok > 16)
    return static_cast<int>(hipErrorInvalidValue);
  return dispatch_elem_head_dim<hip16::Bf16, hip16::Fp16, 64, 128, 256>(
      p.is_bf16, p.head_dim, [&](auto e, auto d) { return launch_decode<decltype(e), decltype(d)::value>(p, s); });
}

const char* decode_error_string(int code) { return hipGetErrorString(static_cast<hipError_t>(code)); }

}  // namespace seer
