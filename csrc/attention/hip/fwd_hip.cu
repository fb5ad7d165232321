// ROCm (gfx942) forward of varlen block-sparse attention: instantiations and the launcher
// run_attention_fwd (the ROCm build links this file instead of fwd_dispatch.cu). Compiled only by the ROCm
// build (setup.py / make hip-check; the CUDA source lists leave csrc/*/hip/ out).
#include "common/launch.h"
#include "attention/hip/fwd_kernel_hip.h"

namespace seer {

int attention_fwd_tile_rows(const AttnParams&) { return hipattn::kBlockM; }

namespace {
template <typename Elem, int D>
int launch_fwd(const AttnParams& p, hipStream_t stream) {
  const int n_slots = p.group / p.pack;
  const long long grid = static_cast<long long>(p.n_tok_tiles) * p.batch * p.h_kv * n_slots;
  if (grid <= 0) return 0;
  if (grid > 0x7fffffffLL) return static_cast<int>(hipErrorInvalidValue);
  hipLaunchKernelGGL((hipattn::attention_fwd_kernel_hip<Elem, D>), dim3(static_cast<unsigned>(grid)),
                     dim3(hipattn::kThreads), 0, stream, p);
  return static_cast<int>(hipGetLastError());
}
}  // namespace

int run_attention_fwd(const AttnParams& p, void* stream) {
  if (p.tile_tokens * p.pack > hipattn::kBlockM) return static_cast<int>(hipErrorInvalidValue);
  const hipStream_t s = static_cast<hipStream_t>(stream);
  return dispatch_elem_head_dim<hip16::Bf16, hip16::Fp16, 64, 128, 256>(
      p.is_bf16, p.head_dim, [&](auto e, auto d) { return launch_fwd<decltype(e), decltype(d)::value>(p, s); });
}

}  // namespace seer
