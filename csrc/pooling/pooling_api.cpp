// Torch-facing layer of seer_attn::attn_pooling (SPEC section 3): checks every input (messages name the
// op, the argument and the bad value, mirroring seer_attn/checks.py), allocates the outputs (and, for
// gqa_reduce, the fp32 1D staging) with torch, fills PoolingParams and calls run_attn_pooling on the
// current stream. Never synchronises the device unless SEER_ATTN_CHECK_INPUTS=1 asks for the value
// checks of cu_seqlens (copied to the host, the CPU reference's checks); otherwise the kernels clamp
// its values so that bad ones never read or write out of bounds.
//
// Memory: outputs only (pooled_2d float32 [B, H_out, nb, nb], pooled_1d q.dtype [H_out, T, nb]);
// gqa_reduce adds a float32 staging of the 1D map, [H_kv, T, nb] (freed on return). No T x T buffer,
// no LSE workspace. q / k are copied only when their rows are not 16-byte aligned.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/all.h>
#include <torch/library.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <tuple>

#include "common/device_facts.h"
#include "common/torch_utils.h"
#include "pooling/pooling_params.h"

namespace seer {
namespace {

constexpr const char* kOp = "attn_pooling";

#define SEER_POOL_CHECK(cond, ...) SEER_TORCH_CHECK((cond), "seer_attn::", kOp, ": ", __VA_ARGS__)

// q (is_q) or k: rank, device, dtype, last-dim contiguity.
void check_qk(const char* name, bool is_q, const at::Tensor& t, const char* layout, const at::Tensor& q) {
  SEER_POOL_CHECK(t.dim() == 3, name, " must be a 3-D tensor ", layout, ", got shape ", t.sizes());
  SEER_POOL_CHECK(t.is_cuda(), name, " must be a CUDA tensor, got device ", t.device());
  if (is_q) {
    SEER_POOL_CHECK(t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16,
                    "q must be float16 or bfloat16, got ", dtype_name(t.scalar_type()));
  } else {
    SEER_POOL_CHECK(t.scalar_type() == q.scalar_type(), name, " must have the same dtype as q (",
                    dtype_name(q.scalar_type()), "), got ", dtype_name(t.scalar_type()));
    SEER_POOL_CHECK(t.device() == q.device(), name, " must be on the same device as q (", q.device(), "), got ",
                    t.device());
  }
  SEER_POOL_CHECK(t.size(-1) == 1 || t.stride(-1) == 1, name,
                  " must have a contiguous last dim (stride(-1) == 1), got stride(-1) = ", t.stride(-1));
}

std::tuple<at::Tensor, at::Tensor> attn_pooling_cuda(const at::Tensor& q_in, const at::Tensor& k_in,
                                                     const at::Tensor& cu_seqlens_in, int64_t max_seqlen,
                                                     double sm_scale, int64_t block_size, bool causal,
                                                     bool gqa_reduce) {
  // ---- checks -------------------------------------------------------------------------------
  check_qk("q", true, q_in, "[T, H_q, D]", q_in);
  check_qk("k", false, k_in, "[T, H_kv, D]", q_in);
  const int64_t total = q_in.size(0), h_q = q_in.size(1), d = q_in.size(2);
  const int64_t h_kv = k_in.size(1);
  SEER_POOL_CHECK(d == 64 || d == 128 || d == 256, "q head dim must be one of 64, 128, 256, got ", d);
  SEER_POOL_CHECK(k_in.size(2) == d, "k head dim must equal q's (", d, "), got ", k_in.size(2));
  SEER_POOL_CHECK(h_kv >= 1, "k must have at least one head, got ", h_kv);
  SEER_POOL_CHECK(h_q % h_kv == 0, "k number of heads must divide q's (", h_q, "), got ", h_kv);
  SEER_POOL_CHECK(k_in.size(0) == total, "k must have the same number of tokens as q (", total, "), got ",
                  k_in.size(0));
  SEER_POOL_CHECK(cu_seqlens_in.scalar_type() == at::kInt, "cu_seqlens must be int32, got ",
                  dtype_name(cu_seqlens_in.scalar_type()));
  SEER_POOL_CHECK(cu_seqlens_in.dim() == 1 && cu_seqlens_in.size(0) >= 1,
                  "cu_seqlens must be a 1-D tensor of B+1 >= 1 entries, got shape ", cu_seqlens_in.sizes());
  SEER_POOL_CHECK(cu_seqlens_in.device() == q_in.device(), "cu_seqlens must be on the same device as q (",
                  q_in.device(), "), got ", cu_seqlens_in.device());
  SEER_POOL_CHECK(max_seqlen >= 0, "max_seqlen must be >= 0, got ", max_seqlen);
  SEER_POOL_CHECK(max_seqlen <= INT_MAX, "max_seqlen must fit in int32, got ", max_seqlen);
  SEER_POOL_CHECK(block_size >= 16 && block_size <= 256 && block_size % 16 == 0,
                  "block_size must be a multiple of 16 in [16, 256], got ", block_size);
  SEER_POOL_CHECK(std::isfinite(sm_scale) && sm_scale > 0, "sm_scale must be finite and > 0, got ", sm_scale);
  SEER_POOL_CHECK(total <= INT_MAX, "q must have at most ", INT_MAX, " tokens, got ", total);
  SEER_POOL_CHECK(h_q <= 65535, "q must have at most 65535 heads, got ", h_q);
  const int64_t batch = cu_seqlens_in.size(0) - 1;
  SEER_POOL_CHECK(batch <= INT_MAX, "cu_seqlens has too many entries, got ", cu_seqlens_in.size(0));
  // SEER_ATTN_CHECK_INPUTS=1: the values too, as the CPU reference checks them (copies cu_seqlens to the host).
  if (seer::check_inputs_enabled())
    seer::check_cu_seqlens_data(kOp, "cu_seqlens", cu_seqlens_in, total, "q", "max_seqlen", max_seqlen);

  const c10::cuda::CUDAGuard device_guard(q_in.device());
  const at::Tensor q = aligned_for_16b_rows(q_in);
  const at::Tensor k = aligned_for_16b_rows(k_in);
  const at::Tensor cu_seqlens = cu_seqlens_in.contiguous();

  // ---- outputs ------------------------------------------------------------------------------
  const int64_t nb = (max_seqlen + block_size - 1) / block_size;
  const int64_t h_out = gqa_reduce ? h_kv : h_q;
  const auto f32 = q.options().dtype(at::kFloat);
  at::Tensor pooled_2d = at::zeros({batch, h_out, nb, nb}, f32);  // atomic max target: must start at 0
  at::Tensor pooled_1d = at::empty({h_out, total, nb}, q.options());  // fully written by the kernels
  at::Tensor accum_1d;
  if (gqa_reduce && nb > 0 && total > 0) accum_1d = at::zeros({h_kv, total, nb}, f32);
  if (nb == 0 || total == 0) return {pooled_2d, pooled_1d};  // no token: both maps are all zero

  // ---- params -------------------------------------------------------------------------------
  PoolingParams p{};
  p.batch = static_cast<int>(batch);
  p.h_q = static_cast<int>(h_q);
  p.h_kv = static_cast<int>(h_kv);
  p.group = static_cast<int>(h_q / h_kv);
  p.h_out = static_cast<int>(h_out);
  p.head_dim = static_cast<int>(d);
  p.max_seqlen = static_cast<int>(max_seqlen);
  p.total = static_cast<int>(total);
  p.block_size = static_cast<int>(block_size);
  p.nb = static_cast<int>(nb);
  p.scale_log2 = static_cast<float>(sm_scale * 1.4426950408889634);
  p.causal = causal;
  p.gqa_reduce = gqa_reduce;
  p.is_bf16 = q.scalar_type() == at::kBFloat16;
  p.wgmma = use_sm90_kernels(static_cast<int>(d), q.device().index());
  seer::bind_rows(q, p.q, p.q_row_stride, p.q_head_stride);
  seer::bind_rows(k, p.k, p.k_row_stride, p.k_head_stride);
  p.cu_seqlens = cu_seqlens.data_ptr<int>();
  p.pooled_2d = pooled_2d.data_ptr<float>();
  p.pooled_1d = pooled_1d.data_ptr();
  p.pooled_1d_accum = accum_1d.defined() ? accum_1d.data_ptr<float>() : nullptr;

  const int err = run_attn_pooling(p, c10::cuda::getCurrentCUDAStream().stream());
  SEER_POOL_CHECK(err == 0, "kernel launch failed with CUDA error ", err, " (",
                  cudaGetErrorString(static_cast<cudaError_t>(err)), ")");
  return {pooled_2d, pooled_1d};
}

}  // namespace
}  // namespace seer

TORCH_LIBRARY_IMPL(seer_attn, CUDA, m) { m.impl("attn_pooling", &seer::attn_pooling_cuda); }
