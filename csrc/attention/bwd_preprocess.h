// Platform-neutral parts of the backward preprocess kernel (CUDA: bwd_launch.cu, ROCm:
// hip/bwd_kernel_hip.h): softmax_d[h * total_q + t] = sum_d dout[t, h, d] * out[t, h, d] - dlse[h * total_q + t]
// (dlse optional), over the rows row = t * h_q + h of the [total_q, h_q] (token, q head) row space.
// ATen-free.
#pragma once
#include <cstdint>

#include "attention/attention_params.h"
#include "common/platform.h"

namespace seer {

struct PreRow {
  int64_t t;       // token
  int h;           // q head
  int64_t o_off;   // element offset of out[t, h, 0]
  int64_t do_off;  // element offset of dout[t, h, 0]
};
SEER_HOST_DEVICE PreRow pre_row(const AttnBwdParams& p, int64_t row) {
  PreRow x;
  x.t = row / p.h_q;
  x.h = static_cast<int>(row - x.t * p.h_q);
  x.o_off = x.t * p.o_row_stride + static_cast<int64_t>(x.h) * p.o_head_stride;
  x.do_off = x.t * p.do_row_stride + static_cast<int64_t>(x.h) * p.do_head_stride;
  return x;
}

// Writes the row's softmax_d from its dot product sum_d dout * out (one lane per row).
SEER_DEVICE void store_softmax_d(const AttnBwdParams& p, const PreRow& x, float dot) {
  const int64_t i = static_cast<int64_t>(x.h) * p.total_q + x.t;
  p.softmax_d[i] = dot - (p.dlse != nullptr ? p.dlse[i] : 0.f);
}

// Atomic path: zeroes the row's slice of dq_accum (contiguous [T_q, H_q, D]: the fp32 workspace the dK/dV
// kernel adds dQ into; the op allocates it uninitialised), lane `sub` of the row's `lanes` lanes, 16-byte
// stores. Called by the preprocess kernels for every row t < total_q when the dK/dV kernel adds dQ.
struct alignas(16) Float4Zero {
  float v[4];
};
SEER_DEVICE void zero_dq_accum_row(const AttnBwdParams& p, int64_t row, int sub, int lanes) {
  float* a = p.dq_accum + row * p.head_dim;
  for (int d = 4 * sub; d < p.head_dim; d += 4 * lanes) *reinterpret_cast<Float4Zero*>(a + d) = Float4Zero{};
}

}  // namespace seer
