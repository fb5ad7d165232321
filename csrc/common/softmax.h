// Online softmax of the attention kernels, in the log2 domain, over accumulator rows of the sm80+
// mma.sync m16n8 C layout (and of wgmma's, which is the same per warp): a thread holds, for each n8
// fragment nf of a 16-row tile, elements s[nf][2 rr] and s[nf][2 rr + 1] of row rr (rr = 0: row g,
// rr = 1: row g + 8, g = lane / 4); the 4 lanes of a quad hold the other columns of the same rows.
//
// Conventions every kernel shares (forward sm80 / sm90, pooling, decode):
//   - scores are raw (unscaled) logits; the scale sm_scale * log2(e) is folded into the exp2
//     argument with one FFMA (max commutes with a positive scale);
//   - masked scores are -inf, never a finite sentinel;
//   - a row whose running max is still -inf (no visible key yet) uses 0 as its exponent base, so that
//     exp2(-inf - 0) = 0 and no (-inf) - (-inf) NaN can appear (row_base);
//   - the running sum is kept per lane and reduced over the quad once, at the end (row_finish);
//   - a row with no visible key ends with l = 0: out = 0 (inv = 0) and lse = -inf.
// ATen-free. The quad shuffles go through platform.h (sm80_primitives.h: quad_max / quad_sum).
#pragma once

#include "common/platform.h"
#include "common/sm80_primitives.h"

namespace seer {

constexpr float kLn2 = 0.69314718055994530942f;

// View of a flat wgmma accumulator (float[4 * DF], n8 fragment j at 4 j .. 4 j + 3) in the [DF][4]
// form the helpers take; the same registers.
template <int N>
SEER_DEVICE float (&frags(float (&acc)[N]))[N / 4][4] {
  static_assert(N % 4 == 0, "whole n8 fragments");
  return *reinterpret_cast<float(*)[N / 4][4]>(&acc);
}

// Exponent base of a row whose running max (raw logits) is m: m * scale_log2, 0 while m = -inf.
SEER_DEVICE float row_base(float m, float scale_log2) { return m == -INFINITY ? 0.f : m * scale_log2; }

// Rescale factor of what a row accumulated under the old max m_old once its base became `base`
// (0 when m_old = -inf: nothing was accumulated).
SEER_DEVICE float row_alpha(float m_old, float scale_log2, float base) { return fast_exp2(m_old * scale_log2 - base); }

// Max of row rr's scores in fragments [B, E) as a pairwise tree (depth log2 of the element count, where a
// linear chain would be one dependent FMNMX per element).
template <int B, int E, int NF>
SEER_DEVICE float row_max_range(const float (&s)[NF][4], int rr) {
  if constexpr (E - B == 1) {
    return fmaxf(s[B][2 * rr], s[B][2 * rr + 1]);
  } else {
    constexpr int M = (B + E) / 2;
    return fmaxf(row_max_range<B, M>(s, rr), row_max_range<M, E>(s, rr));
  }
}

// The row's max over its scores and the running max m (quad-reduced).
template <int NF>
SEER_DEVICE float row_max_with(const float (&s)[NF][4], int rr, float m) {
  return quad_max(fmaxf(m, row_max_range<0, NF>(s, rr)));
}
// Replaces row rr's scores by P = exp2(s * scale_log2 - base) and returns this lane's sum of them, added in
// four partial sums (chains of NF / 2 dependent FADDs instead of one of 2 NF).
template <int NF>
SEER_DEVICE float row_exp_sum(float (&s)[NF][4], int rr, float base, float scale_log2) {
  float sum[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int nf = 0; nf < NF; ++nf) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float& x = s[nf][2 * rr + e];
      x = fast_exp2(fmaf(x, scale_log2, -base));
      sum[2 * (nf & 1) + e] += x;
    }
  }
  return (sum[0] + sum[1]) + (sum[2] + sum[3]);
}

// One online-softmax step of row rr of a 16-row accumulator tile s[NF][4] (raw logits, -inf where
// masked): m / l = the row's running max and this lane's running sum. Updates m, replaces the row's
// scores by P = exp2(s * scale_log2 - base), adds them to l (after rescaling it) and returns alpha,
// the factor the row's output accumulator must be multiplied by (the sm80 forward, decode).
template <int NF>
SEER_DEVICE float online_softmax_row(float (&s)[NF][4], int rr, float& m, float& l, float scale_log2) {
  const float mx = row_max_with(s, rr, m);
  const float base = row_base(mx, scale_log2);
  const float alpha = row_alpha(m, scale_log2, base);
  m = mx;
  l = l * alpha + row_exp_sum(s, rr, base, scale_log2);
  return alpha;
}

// How far (log2 units) a row's max may grow before online_softmax_row_lazy moves its exponent base.
constexpr float kLazySlackLog2 = 8.f;

// online_softmax_row with FlashAttention-4's conditional rescale (the sm90 forward): the row keeps its exponent base
// (m stays the max it was set at) until its max grows by more than kLazySlackLog2, so alpha is exactly 1
// - the caller skips the output rescale - on all but a few tiles of a row. P then reaches at most
// 2^kLazySlackLog2: fp32 sums and the 16-bit P operands (bf16, and fp16 up to 65504) hold it with the
// same relative precision, and the base cancels in O / l and enters lse = m * scale + log2(l) the way l
// was summed, so the outputs are those of the exact-max form up to rounding. m = -inf (nothing seen)
// moves at the first finite score; while the max stays -inf, (mx - m) is NaN and nothing moves.
template <int NF>
SEER_DEVICE float online_softmax_row_lazy(float (&s)[NF][4], int rr, float& m, float& l, float scale_log2) {
  const float mx = row_max_with(s, rr, m);
  float alpha = 1.f;
  if ((mx - m) * scale_log2 > kLazySlackLog2) {  // uniform over the row's quad
    alpha = row_alpha(m, scale_log2, row_base(mx, scale_log2));
    m = mx;
  }
  l = l * alpha + row_exp_sum(s, rr, row_base(m, scale_log2), scale_log2);
  return alpha;
}

// o[DF][4] (row rr) *= alpha.
template <int DF>
SEER_DEVICE void rescale_row(float (&o)[DF][4], int rr, float alpha) {
#pragma unroll
  for (int df = 0; df < DF; ++df) {
    o[df][2 * rr] *= alpha;
    o[df][2 * rr + 1] *= alpha;
  }
}

// Both rows at once: o[DF][4] *= alpha[rr] (row rr).
template <int DF>
SEER_DEVICE void rescale_rows(float (&o)[DF][4], const float (&alpha)[2]) {
#pragma unroll
  for (int df = 0; df < DF; ++df) {
    o[df][0] *= alpha[0];
    o[df][1] *= alpha[0];
    o[df][2] *= alpha[1];
    o[df][3] *= alpha[1];
  }
}

// End of a row: its total sum over the quad (l) and the factor that normalises its output (1 / l,
// 0 for a row with no visible key, whose accumulator is 0 as well).
struct RowTotal {
  float l;
  float inv;
};
SEER_DEVICE RowTotal row_finish(float lane_sum) {
  const float l = quad_sum(lane_sum);
  return RowTotal{l, l > 0.f ? 1.f / l : 0.f};
}

// log2-sum-exp2 of a finished row (log2 units): m * scale_log2 + log2(l); -inf without visible key.
// l > 0 implies a finite max (the max element contributes exp2(0) = 1).
SEER_DEVICE float row_lse2(float m, float l, float scale_log2) {
  return l > 0.f ? m * scale_log2 + __log2f(l) : -INFINITY;
}
// The same in natural-log units (the lse output of the attention ops).
SEER_DEVICE float row_lse(float m, float l, float scale_log2) {
  return l > 0.f ? (m * scale_log2 + __log2f(l)) * kLn2 : -INFINITY;
}

}  // namespace seer
