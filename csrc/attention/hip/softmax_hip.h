// Online softmax state of one query row held by a group of lanes of a wavefront (HIP kernels): the
// lanes l ^ x for x in {kXorLo, 2 kXorLo, .., 32} (attention: kXorLo = 32, the lane pair l, l ^ 32 of
// a 32x32 MFMA column; decode: kXorLo = 16, the 4 lanes of a 16x16 MFMA column). The lanes hold
// different keys of the row; the running max is shared (log2(64 / kXorLo) shuffles per update), the
// running sum is kept per lane and combined once in the epilogue. Log2 domain: scores arrive
// multiplied by sm_scale * log2(e). A row that has seen no visible key yet has max = -inf and uses
// base 0, so exp2(-inf - 0) = 0 and nothing becomes NaN; no finite sentinels anywhere.
#pragma once
#include "common/hip_mfma.h"

namespace seer {
namespace hipattn {

template <int kXorLo = 32>
struct RowSoftmax {
  static_assert(kXorLo == 16 || kXorLo == 32, "lane groups of a 32x32 or 16x16 MFMA column");
  float m;  // running max (log2 units), -inf while the row has seen nothing
  float l;  // this lane's share of the running sum of exp2(s - m)

  SEER_DEVICE void init() {
    m = -__builtin_inff();
    l = 0.f;
  }
  // Takes a new set of scores (already scaled, -inf where masked): returns the factor the row's
  // accumulator must be multiplied by, and turns the scores into probabilities exp2(s - m_new).
  template <int N>
  SEER_DEVICE float update(float (&s)[N]) {
    float mx = m;
#pragma unroll
    for (int i = 0; i < N; ++i) mx = __builtin_fmaxf(mx, s[i]);
#pragma unroll
    for (int x = kXorLo; x <= 32; x *= 2) mx = __builtin_fmaxf(mx, SEER_SHFL_XOR(mx, x));
    const float base = mx == -__builtin_inff() ? 0.f : mx;
    const float alpha = hip::exp2f_fast(m - base);
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      s[i] = hip::exp2f_fast(s[i] - base);
      sum += s[i];
    }
    l = l * alpha + sum;
    m = mx;
    return alpha;
  }
  // Row total of the sum (every lane of the group gets it).
  SEER_DEVICE float total() const {
    float t = l;
#pragma unroll
    for (int x = kXorLo; x <= 32; x *= 2) t += SEER_SHFL_XOR(t, x);
    return t;
  }
};

}  // namespace hipattn
}  // namespace seer
