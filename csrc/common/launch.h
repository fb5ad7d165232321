// Host-side helpers shared by launchers (ATen-free).
#pragma once
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include "platform.h"

// Launchers return the error code (seer_error_t, platform.h) so that the *_api.cpp layer (which may
// use TORCH_CHECK) reports it with the op name.
namespace seer {
// Opt `kernel` in to `bytes` of dynamic shared memory when that is more than the default 48 KB.
template <typename Kernel>
inline seer_error_t allow_smem(Kernel kernel, int bytes) {
  if (bytes <= 48 * 1024) return SEER_SUCCESS;
  return SEER_SET_MAX_DYNAMIC_SMEM(kernel, bytes);
}
}  // namespace seer

// In a launcher returning int: return the error of the last launch, if any.
#define SEER_RETURN_IF_LAUNCH_ERROR()                                    \
  do {                                                                   \
    const seer_error_t seer_e_ = SEER_LAST_ERROR();                      \
    if (seer_e_ != SEER_SUCCESS) return static_cast<int>(seer_e_);       \
  } while (0)

namespace seer {

// The (element type, head dim) switch of the launchers: calls launch(Elem{}, HeadDim<D>{}) with
// Elem = Bf16 or Fp16 (is_bf16) for the D of Ds equal to head_dim and returns its status;
// SEER_INVALID_VALUE for any other head dim. Bf16 / Fp16 are the platform's element types (CUDA:
// __nv_bfloat16 / __half, HIP kernels: hip16::Bf16 / hip16::Fp16).
template <int D>
using HeadDim = std::integral_constant<int, D>;
template <typename Bf16, typename Fp16, int... Ds, typename F>
int dispatch_elem_head_dim(bool is_bf16, int head_dim, F&& launch) {
  int status = static_cast<int>(SEER_INVALID_VALUE);
  (void)((head_dim == Ds &&
          ((status = is_bf16 ? launch(Bf16{}, HeadDim<Ds>{}) : launch(Fp16{}, HeadDim<Ds>{})), true)) ||
         ...);
  return status;
}

}  // namespace seer

// Compile-time switches (flash-attention style): turn a runtime bool into a constexpr.
#define SEER_BOOL_SWITCH(COND, NAME, ...) \
  [&] {                                   \
    if (COND) {                           \
      constexpr static bool NAME = true;  \
      return __VA_ARGS__();               \
    } else {                              \
      constexpr static bool NAME = false; \
      return __VA_ARGS__();               \
    }                                     \
  }()
