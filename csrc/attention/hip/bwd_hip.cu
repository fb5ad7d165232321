// ROCm (gfx942) backward of varlen block-sparse attention: instantiations and the launcher
// run_attention_bwd (the ROCm build links this file instead of bwd_launch.cu): atomic dQ (default) or
// deterministic (separate dQ kernel). Compiled only by the ROCm build
// (setup.py / make hip-check; the CUDA source lists leave csrc/*/hip/ out).
#include "common/launch.h"
#include "attention/hip/bwd_kernel_hip.h"

namespace seer {

int attention_bwd_tile_rows(int /*head_dim*/) { return hipattn::kBwdRows; }

namespace {
template <typename Elem, int D>
int launch_bwd(const AttnBwdParams& p, hipStream_t stream) {
  const int64_t n_rows = static_cast<int64_t>(p.total_q) * p.h_q;
  if (n_rows > 0) {
    hipLaunchKernelGGL((hipattn::attention_bwd_preprocess_kernel_hip<Elem>), dim3(static_cast<unsigned>((n_rows + 15) / 16)),
                       dim3(256), 0, stream, p);
    SEER_RETURN_IF_LAUNCH_ERROR();
  }
  // D 256: two workgroups per key tile / row tile, one per half of the head dims (bwd_layout_hip.h).
  constexpr int kSplit = hipattn::bwd_dsplit(D);
  const int key_tiles = (p.max_seqlen_k + hipattn::kBwdKeys - 1) / hipattn::kBwdKeys * kSplit;
  if (key_tiles > 0 && p.batch > 0 && p.h_kv > 0) {
    if (p.deterministic)
      hipLaunchKernelGGL((hipattn::attention_bwd_kernel_hip<Elem, D, false>), dim3(key_tiles, p.h_kv, p.batch),
                         dim3(hipattn::kThreads), 0, stream, p);
    else
      hipLaunchKernelGGL((hipattn::attention_bwd_kernel_hip<Elem, D, true>), dim3(key_tiles, p.h_kv, p.batch),
                         dim3(hipattn::kThreads), 0, stream, p);
    SEER_RETURN_IF_LAUNCH_ERROR();
  }
  if (p.deterministic) {
    if (p.n_row_tiles > 0 && p.batch > 0 && p.h_kv > 0) {
      hipLaunchKernelGGL((hipattn::attention_bwd_dq_kernel_hip<Elem, D>), dim3(p.n_row_tiles * kSplit, p.h_kv, p.batch),
                         dim3(hipattn::kThreads), 0, stream, p);
      SEER_RETURN_IF_LAUNCH_ERROR();
    }
    return 0;
  }
  if (n_rows > 0) {
    const int64_t blocks = (n_rows * D + 255) / 256;
    const int groups = static_cast<int>(blocks < 4096 ? blocks : 4096);
    hipLaunchKernelGGL((hipattn::attention_bwd_convert_dq_kernel_hip<Elem>), dim3(groups), dim3(256), 0, stream, p,
                       groups);
    SEER_RETURN_IF_LAUNCH_ERROR();
  }
  return 0;
}
}  // namespace

int run_attention_bwd(const AttnBwdParams& p, void* stream) {
  if ((!p.deterministic && p.dq_accum == nullptr) || p.tile_tokens * p.pack > hipattn::kBwdRows)
    return static_cast<int>(hipErrorInvalidValue);
  const hipStream_t s = static_cast<hipStream_t>(stream);
  return dispatch_elem_head_dim<hip16::Bf16, hip16::Fp16, 64, 128, 256>(
      p.is_bf16, p.head_dim, [&](auto e, auto d) { return launch_bwd<decltype(e), decltype(d)::value>(p, s); });
}

}  // namespace seer
