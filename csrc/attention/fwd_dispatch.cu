// run_attention_fwd / attention_fwd_tile_rows: dispatch on element type and head dim to the launcher
// instantiations (instantiations/fwd_hdim*_*.cu).
#include "common/launch.h"
#include "attention/attention_params.h"
#include "attention/fwd_launch.cuh"

namespace seer {
namespace fwd {
// Defined in instantiations/fwd_hdim{64,128,256}_{fp16,bf16}.cu.
extern template int run_attention_fwd_<__half, 64>(const AttnParams&, void*);
extern template int run_attention_fwd_<__half, 128>(const AttnParams&, void*);
extern template int run_attention_fwd_<__half, 256>(const AttnParams&, void*);
extern template int run_attention_fwd_<__nv_bfloat16, 64>(const AttnParams&, void*);
extern template int run_attention_fwd_<__nv_bfloat16, 128>(const AttnParams&, void*);
extern template int run_attention_fwd_<__nv_bfloat16, 256>(const AttnParams&, void*);
}  // namespace fwd

int run_attention_fwd(const AttnParams& p, void* stream) {
  switch (p.head_dim) {
    case 64:
      return p.is_bf16 ? fwd::run_attention_fwd_<__nv_bfloat16, 64>(p, stream)
                       : fwd::run_attention_fwd_<__half, 64>(p, stream);
    case 128:
      return p.is_bf16 ? fwd::run_attention_fwd_<__nv_bfloat16, 128>(p, stream)
                       : fwd::run_attention_fwd_<__half, 128>(p, stream);
    case 256:
      return p.is_bf16 ? fwd::run_attention_fwd_<__nv_bfloat16, 256>(p, stream)
                       : fwd::run_attention_fwd_<__half, 256>(p, stream);
    default:
#ifdef USE_ROCM
      return static_cast<int>(hipErrorInvalidValue);
#else
      return static_cast<int>(cudaErrorInvalidValue);
#endif
  }
}

int attention_fwd_tile_rows(int head_dim) {
  switch (head_dim) {
    case 64:
      return fwd::FwdConfig<64, __half>::Traits::kBlockM;
    case 128:
      return fwd::FwdConfig<128, __half>::Traits::kBlockM;
    case 256:
      return fwd::FwdConfig<256, __half>::Traits::kBlockM;
    default:
      return 128;  // unsupported head dims are rejected by the API layer before any launch
  }
}

}  // namespace seer
