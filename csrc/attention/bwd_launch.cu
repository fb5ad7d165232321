// Entry points of the block-sparse attention backward: run_attention_bwd (preprocess + dK/dV + dQ)
// and attention_bwd_tile_rows. With params.bwd_wgmma (sm_90a builds, D 64 / 128) the dK/dV kernel is
// the Hopper one (sm90/bwd_kernel_sm90.cuh), else the mma.sync one. The dK/dV and dQ kernels are instantiated per (head dim, dtype) in
// instantiations/bwd_hdim*_*.cu; the small preprocess kernel lives here.
#include <algorithm>
#include <cstdint>

#include "attention/attention_params.h"
#include "attention/bwd_common.h"
#include "attention/bwd_preprocess.h"
#include "attention/bwd_launch.cuh"
#include "common/device_facts.h"
#include "common/launch.h"
#include "common/platform.h"
#include "common/sm80_primitives.h"

namespace seer {
#ifdef SEER_ATTN_SM90A  // the *_sm90.cu files are built only then (setup.py, cmake/CMakeLists.txt)
namespace bwd_sm90 {
// Defined in instantiations/bwd_hdim*_sm90.cu (sm90/bwd_launch_sm90.cuh).
template <typename Elem, int D>
int run_bwd_sm90_(const AttnBwdParams& p, void* stream);
#define SEER_BWD_SM90_EXTERN(ELEM, D) extern template int run_bwd_sm90_<ELEM, D>(const AttnBwdParams&, void*);
SEER_BWD_SM90_EXTERN(__half, 64)
SEER_BWD_SM90_EXTERN(__half, 128)
SEER_BWD_SM90_EXTERN(__nv_bfloat16, 64)
SEER_BWD_SM90_EXTERN(__nv_bfloat16, 128)
#undef SEER_BWD_SM90_EXTERN
}  // namespace bwd_sm90
#endif
namespace attn_bwd {

// softmax_d[h * total_q + t] = sum_d dout[t, h, d] * out[t, h, d] - (dlse ? dlse[h * total_q + t] : 0).
// 8 lanes per (token, head) row, 16-byte loads (8 elements) per lane and step; fp32 sum. On the atomic path
// with dQ fused into the dK/dV kernel it also zeroes the row's dq_accum (every row t < total_q, tail rows
// included: the convert kernel reads them all).
constexpr int kPreThreads = 256;
constexpr int kPreLanes = 8;

template <typename Elem>
__global__ void __launch_bounds__(kPreThreads) bwd_preprocess_kernel(const __grid_constant__ AttnBwdParams p) {
  const int64_t n_rows = static_cast<int64_t>(p.total_q) * p.h_q;
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * kPreThreads + threadIdx.x) / kPreLanes;
  const int sub = threadIdx.x % kPreLanes;
  const bool active = row < n_rows;
  PreRow x{};
  float acc = 0.f;
  if (active) {
    // Atomic path with dQ fused into the dK/dV kernel (bwd_common.h dq_fused_atomic): its workspace starts at 0.
    if (dq_fused_atomic(p)) zero_dq_accum_row(p, row, sub, kPreLanes);
    x = pre_row(p, row);
    const Elem* o = static_cast<const Elem*>(p.out) + x.o_off;
    const Elem* dout = static_cast<const Elem*>(p.dout) + x.do_off;
    for (int d = sub * 8; d < p.head_dim; d += kPreLanes * 8) {
      const uint4 a = *reinterpret_cast<const uint4*>(o + d);
      const uint4 c = *reinterpret_cast<const uint4*>(dout + d);
      const Elem* ea = reinterpret_cast<const Elem*>(&a);
      const Elem* ec = reinterpret_cast<const Elem*>(&c);
#pragma unroll
      for (int k = 0; k < 8; ++k) acc += to_float<Elem>(ea[k]) * to_float<Elem>(ec[k]);
    }
  }
  // All lanes take part in the shuffles (the 8 lanes of a row are consecutive in one warp).
#pragma unroll
  for (int m = 1; m < kPreLanes; m <<= 1) acc += SEER_SHFL_XOR(acc, m);
  if (active && sub == 0) store_softmax_d(p, x, acc);
}

// Atomic path: dq[t, h, :] = dq_accum[t, h, :] * scale for every row t < total_q (rows nothing
// attends, and tail rows past cu_seqlens_q[batch], hold the zeros the preprocess kernel wrote).
// One thread per 8 elements: two 16-byte loads, one 16-byte store.
constexpr int kConvThreads = 256;

template <typename Elem>
__global__ void __launch_bounds__(kConvThreads) bwd_dq_convert_kernel(const __grid_constant__ AttnBwdParams p) {
  if (!dq_fused(p.tile_count)) return;  // the q-major dQ kernel wrote dq (bwd_common.h)
  const int vec_per_row = p.head_dim / 8;
  const int64_t n_vec = static_cast<int64_t>(p.total_q) * p.h_q * vec_per_row;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x; i < n_vec;
       i += static_cast<int64_t>(gridDim.x) * kConvThreads) {
    const int64_t rh = i / vec_per_row;  // t * h_q + h
    const int d = static_cast<int>(i - rh * vec_per_row) * 8;
    const int64_t t = rh / p.h_q;
    const int h = static_cast<int>(rh - t * p.h_q);
    const float4* src = reinterpret_cast<const float4*>(p.dq_accum + rh * p.head_dim + d);
    const float4 a = src[0], c = src[1];
    uint4 o;
    o.x = pack2<Elem>(a.x * p.scale, a.y * p.scale);
    o.y = pack2<Elem>(a.z * p.scale, a.w * p.scale);
    o.z = pack2<Elem>(c.x * p.scale, c.y * p.scale);
    o.w = pack2<Elem>(c.z * p.scale, c.w * p.scale);
    Elem* dst = static_cast<Elem*>(p.dq) + t * p.dq_row_stride + static_cast<int64_t>(h) * p.dq_head_stride + d;
    *reinterpret_cast<uint4*>(dst) = o;
  }
}

template <typename Elem>
int launch_dq_convert(const AttnBwdParams& p, cudaStream_t stream) {
  const int64_t n_vec = static_cast<int64_t>(p.total_q) * p.h_q * (p.head_dim / 8);
  if (n_vec == 0) return 0;
  const DeviceFacts dev = current_device_facts();  // grid: up to 16 CTAs per SM, grid-stride beyond
  if (dev.error != 0) return dev.error;
  const int64_t blocks = std::min<int64_t>((n_vec + kConvThreads - 1) / kConvThreads, static_cast<int64_t>(dev.sms) * 16);
  bwd_dq_convert_kernel<Elem><<<static_cast<unsigned>(blocks), kConvThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

template <typename Elem>
int launch_preprocess(const AttnBwdParams& p, cudaStream_t stream) {
  const int64_t n_rows = static_cast<int64_t>(p.total_q) * p.h_q;
  if (n_rows == 0) return 0;
  const int64_t blocks = (n_rows * kPreLanes + kPreThreads - 1) / kPreThreads;
  bwd_preprocess_kernel<Elem><<<static_cast<unsigned>(blocks), kPreThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace attn_bwd

namespace {
// The Hopper dK/dV kernel: sm_90a builds, params.bwd_wgmma (compute capability 9.0), D 64 / 128.
bool use_bwd_sm90(const AttnBwdParams& p) {
#ifdef SEER_ATTN_SM90A
  return p.bwd_wgmma && (p.head_dim == 64 || p.head_dim == 128);
#else
  (void)p;
  return false;
#endif
}
int run_bwd_sm90(const AttnBwdParams& p, cudaStream_t stream) {
#ifdef SEER_ATTN_SM90A
  if (p.head_dim == 64)
    return p.is_bf16 ? bwd_sm90::run_bwd_sm90_<__nv_bfloat16, 64>(p, stream) : bwd_sm90::run_bwd_sm90_<__half, 64>(p, stream);
  return p.is_bf16 ? bwd_sm90::run_bwd_sm90_<__nv_bfloat16, 128>(p, stream) : bwd_sm90::run_bwd_sm90_<__half, 128>(p, stream);
#else
  (void)p;
  (void)stream;
  return static_cast<int>(cudaErrorNotSupported);
#endif
}

}  // namespace

int attention_bwd_tile_rows(int /*head_dim*/) { return attn_bwd::kBwdTileRows; }

int run_attention_bwd(const AttnBwdParams& params, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  // Only the sm90 kernels read tile counts (bwd_common.h dq_fused, dkdv_split): elsewhere the dK/dV kernel
  // always adds dQ, so the convert kernel must not look at them.
  AttnBwdParams p = params;
  if (!use_bwd_sm90(p)) p.tile_count = nullptr;
  if (p.head_dim != 64 && p.head_dim != 128 && p.head_dim != 256) return static_cast<int>(cudaErrorInvalidValue);
  int err = p.is_bf16 ? attn_bwd::launch_preprocess<__nv_bfloat16>(p, stream)
                      : attn_bwd::launch_preprocess<__half>(p, stream);
  if (err != 0) return err;
  if (use_bwd_sm90(p))
    err = run_bwd_sm90(p, stream);
  else
    switch (p.head_dim) {
      case 64:
        err = p.is_bf16 ? run_bwd_hdim<64, __nv_bfloat16>(p, stream) : run_bwd_hdim<64, __half>(p, stream);
        break;
      case 128:
        err = p.is_bf16 ? run_bwd_hdim<128, __nv_bfloat16>(p, stream) : run_bwd_hdim<128, __half>(p, stream);
        break;
      default:
        err = p.is_bf16 ? run_bwd_hdim<256, __nv_bfloat16>(p, stream) : run_bwd_hdim<256, __half>(p, stream);
        break;
    }
  if (err != 0) return err;
  // Atomic path (bwd_common.h dq_atomic): dq = dq_accum * scale.
  if (attn_bwd::dq_atomic(p))
    err = p.is_bf16 ? attn_bwd::launch_dq_convert<__nv_bfloat16>(p, stream)
                    : attn_bwd::launch_dq_convert<__half>(p, stream);
  return err;
}

}  // namespace seer
