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

}  // namespace seer
