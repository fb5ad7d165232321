// run_attention_fwd / attention_fwd_tile_rows: dispatch on element type, head dim and row-tile size
// to the launcher instantiations (instantiations/fwd_hdim*.cu, csrc/generate_instantiations.py):
// the Hopper warp-specialised kernel (sm90/, sm_90a builds on compute capability 9.0, D 64 / 128),
// else the mma.sync kernel (fwd_kernel.cuh).
#include "common/launch.h"
#include "attention/attention_params.h"
#include "attention/fwd_launch.cuh"
#ifdef SEER_ATTN_SM90A
#include "attention/sm90/fwd_launch_sm90.cuh"
#endif

namespace seer {
namespace fwd {
// Defined in instantiations/fwd_hdim*_sm80.cu.
#define SEER_FWD_EXTERN(ELEM, D, M) extern template int run_attention_fwd_<ELEM, D, M>(const AttnParams&, void*);
SEER_FWD_EXTERN(__half, 64, 64)
SEER_FWD_EXTERN(__half, 64, 128)
SEER_FWD_EXTERN(__half, 128, 64)
SEER_FWD_EXTERN(__half, 128, 128)
SEER_FWD_EXTERN(__half, 256, 64)
SEER_FWD_EXTERN(__nv_bfloat16, 64, 64)
SEER_FWD_EXTERN(__nv_bfloat16, 64, 128)
SEER_FWD_EXTERN(__nv_bfloat16, 128, 64)
SEER_FWD_EXTERN(__nv_bfloat16, 128, 128)
SEER_FWD_EXTERN(__nv_bfloat16, 256, 64)
#undef SEER_FWD_EXTERN
}  // namespace fwd
#ifdef SEER_ATTN_SM90A  // the *_sm90.cu files are built only then (setup.py, cmake/CMakeLists.txt)
namespace fwd_sm90 {
// Defined in instantiations/fwd_hdim*_sm90.cu.
#define SEER_FWD_SM90_EXTERN(ELEM, D)                                                   \
  extern template int run_attention_fwd_sm90_<ELEM, D>(const AttnParams&, void*); \
  extern template int run_attention_fwd_sm90_<ELEM, D, true>(const AttnParams&, void*);
SEER_FWD_SM90_EXTERN(__half, 64)
SEER_FWD_SM90_EXTERN(__half, 128)
SEER_FWD_SM90_EXTERN(__nv_bfloat16, 64)
SEER_FWD_SM90_EXTERN(__nv_bfloat16, 128)
#undef SEER_FWD_SM90_EXTERN
}  // namespace fwd_sm90
#endif

namespace fwd {
template <typename Elem>
int run_dtype(const AttnParams& p, void* stream) {
  // The API layer sets tile_tokens = tile_rows / pack with tile_rows from attention_fwd_tile_rows;
  // the kernel whose row tile holds tile_tokens * pack rows runs (the launcher re-checks the fit).
  const bool m128 = static_cast<long long>(p.tile_tokens) * p.pack > 64;
#ifdef SEER_ATTN_SM90A
  if (p.fwd_wgmma) {  // the single kernel (64-row tiles) or the pair kernel (128-row tiles)
    if (p.head_dim == 64)
      return m128 ? fwd_sm90::run_attention_fwd_sm90_<Elem, 64, true>(p, stream) : fwd_sm90::run_attention_fwd_sm90_<Elem, 64>(p, stream);
    if (p.head_dim == 128)
      return m128 ? fwd_sm90::run_attention_fwd_sm90_<Elem, 128, true>(p, stream) : fwd_sm90::run_attention_fwd_sm90_<Elem, 128>(p, stream);
  }
#endif
  switch (p.head_dim) {
    case 64:
      return m128 ? run_attention_fwd_<Elem, 64, 128>(p, stream) : run_attention_fwd_<Elem, 64, 64>(p, stream);
    case 128:
      return m128 ? run_attention_fwd_<Elem, 128, 128>(p, stream) : run_attention_fwd_<Elem, 128, 64>(p, stream);
    case 256:
      if (m128) break;  // no 128-row tile for D=256 (attention_fwd_tile_rows never asks for one)
      return run_attention_fwd_<Elem, 256, 64>(p, stream);
    default:
      break;
  }
  return static_cast<int>(cudaErrorInvalidValue);
}
}  // namespace fwd

int run_attention_fwd(const AttnParams& p, void* stream) {
  return p.is_bf16 ? fwd::run_dtype<__nv_bfloat16>(p, stream) : fwd::run_dtype<__half>(p, stream);
}

// Hopper kernels: 64-row tiles, 128 for the pair kernel (AttnParams::fwd_pair). Otherwise 64-row tiles, unless a 2D mask row is shared by a whole
// 128-row tile (B_q % 128 == 0: then the 128-row tile halves the K/V traffic per row and its tile mask
// has no value-1 entries from mixing mask rows). A 1D mask (mask_row_div 1) always gets 64 rows; heads
// of a GQA group packed into a tile (pack <= 16) still fit: 64 rows = 64 / pack tokens x pack heads.
// D=256 has only the 64-row tile.
int attention_fwd_tile_rows(const AttnParams& p) {
  if (p.fwd_wgmma && (p.head_dim == 64 || p.head_dim == 128)) return p.fwd_pair ? 128 : 64;  // 64 rows per warpgroup
  if ((p.head_dim == 64 || p.head_dim == 128) && p.mask_row_div >= 128 && p.mask_row_div % 128 == 0) return 128;
  return 64;
}

}  // namespace seer
