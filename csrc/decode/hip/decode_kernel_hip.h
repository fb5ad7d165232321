// Block-sparse flash-decoding for CDNA3 (gfx942, MI300X): MFMA split kernel + combine kernel.
//
// Same contract as the CUDA decode (decode_params.h): one workgroup per (sequence b, kv head hk,
// row chunk of <= 16 rows, split); the rows of (b, hk) are the (token, q head) pairs r = token * group
// + g of the L = n_tok new tokens (row_token / row_head, decode_layout_hip.h), token i sees the valid
// slots below token_slot_hi(hi, L, i) (its own slot and the ones before it); the split owns the ranks [r0, r1) of the selected blocks of
// (b, hk) (mask entries of the valid block range or valid index entries, in entry order, plus the
// forced first block of first_block_unmasked as rank 0), with the same row-adaptive split count.
//
// Parts:
//   SelectedBlocks   wavefront-uniform walk over the source row (64 entries per ballot) that hands out
//                    the selected blocks of rank [r0, r1) in rank order; count() gives the total
//   per wavefront    16-key tiles t = wave, wave + 4, .. of the split's blocks; S^T = K Q^T on
//                    v_mfma_f32_16x16x16 (A = 16 keys from global, B = the 16 rows (q) in registers,
//                    reduction over D in 32-wide slices, mfma::kpack32_index), masking of slots
//                    outside the valid range, online softmax (RowSoftmax<16>: a head is the 4 lanes
//                    of a 16x16 column), O^T += V^T P^T with V^T staged in the wavefront's own LDS
//                    slice and P^T = the S^T accumulators as they are (16x16 C layout = B layout)
//   merge            the 4 wavefronts' (m, l, O^T) through LDS (same LDS as the V^T slices), then
//                    out / lse, or the split's normalised partial and its lse
// The combine kernel merges split partials with a NaN-safe log-sum-exp (empty splits: lse -inf).
#pragma once
#include <cstdint>

#include "common/platform.h"
#include "common/hip_mfma.h"
#include "decode/decode_params.h"
#include "attention/hip/softmax_hip.h"
#include "decode/hip/decode_layout_hip.h"

namespace seer {
namespace hipdecode {

using hip::f32x4;
using hip::s16x4;
using hip::u32x4;

constexpr int kWaves = 4;
constexpr int kThreads = 64 * kWaves;
constexpr int kRows = 16;        // rows ((token, q head) pairs) per workgroup (one 16x16 MFMA column block)
constexpr float kLn2 = 0.6931471805599453f;

using hip::imax;
using hip::imin;

template <int D>
struct DecodeTile {
  static constexpr int kVtElems = D * kVtStride;                  // one wavefront's V^T slice
  static constexpr int kMergeFloats = kRows * D;                  // merged O (aliases the V^T slices)
  static constexpr int kLdsBytes = (kWaves * kVtElems * 2 > kMergeFloats * 4 ? kWaves * kVtElems * 2 : kMergeFloats * 4) +
                                   2 * kWaves * kRows * 4;        // + m, l per wavefront and head
  static_assert(D % 32 == 0, "32-wide reduction slices");
};

// The selected blocks of one (b, hk) row in rank order. Uniform per wavefront.
struct SelectedBlocks {
  const uint8_t* mask_row;  // mask form (else nullptr)
  int64_t mask_stride;
  const int* idx_row;       // index form
  int64_t idx_stride;
  int n_src;                // source entries
  int blk_lo, blk_hi;       // blocks holding a valid slot
  bool extra;               // first_block_unmasked: block blk_lo is rank 0, not selected again

  // Block of source entry e if selected (and not the forced first block), else -1.
  SEER_DEVICE int entry_block(int e) const {
    if (e >= n_src) return -1;
    int n;
    if (mask_row != nullptr) {
      n = blk_lo + e;
      if (mask_row[static_cast<int64_t>(n) * mask_stride] == 0) return -1;
    } else {
      n = idx_row[static_cast<int64_t>(e) * idx_stride];
      if (n < blk_lo || n >= blk_hi) return -1;
    }
    if (extra && n == blk_lo) return -1;
    return n;
  }
  SEER_DEVICE int count() const {
    const int lane = static_cast<int>(__builtin_amdgcn_mbcnt_hi(~0u, __builtin_amdgcn_mbcnt_lo(~0u, 0u)));
    int total = extra ? 1 : 0;
    for (int base = 0; base < n_src; base += 64) total += SEER_POPC_LANES(SEER_BALLOT(entry_block(base + lane) >= 0));
    return total;
  }
  // Calls f(block) for the blocks of rank [r0, r1), in rank order.
  template <typename F>
  SEER_DEVICE void for_each(int r0, int r1, F&& f) const {
    const int lane = static_cast<int>(__builtin_amdgcn_mbcnt_hi(~0u, __builtin_amdgcn_mbcnt_lo(~0u, 0u)));
    int rank = 0;
    if (extra) {
      if (r0 <= 0 && 0 < r1) f(blk_lo);
      rank = 1;
    }
    for (int base = 0; base < n_src && rank < r1; base += 64) {
      const int n = entry_block(base + lane);
      seer_lane_mask_t sel = SEER_BALLOT(n >= 0);
      const int cnt = SEER_POPC_LANES(sel);
      if (rank + cnt <= r0) {
        rank += cnt;
        continue;
      }
      while (sel != 0 && rank < r1) {
        const int bit = static_cast<int>(__builtin_ctzll(sel));
        sel &= sel - 1;
        if (rank >= r0) f(__builtin_amdgcn_readlane(n, bit));
        ++rank;
      }
    }
  }
};

template <typename Elem, int D>
__global__ void __launch_bounds__(kThreads, 2) decode_split_kernel_hip(const DecodeParams p) {
  using Tile = DecodeTile<D>;
  __shared__ __attribute__((aligned(16))) unsigned char smem[Tile::kLdsBytes];
  const int tid = hip::tid(), lane = tid % 64, wave = tid / 64;
  uint16_t* sVt = reinterpret_cast<uint16_t*>(smem) + wave * Tile::kVtElems;  // this wavefront's slice

  const int L = p.n_tok;
  const int n_rows_all = L * p.group;  // rows of (b, hk): token * group + g
  const int n_chunks = (n_rows_all + kRows - 1) / kRows;
  const int split = hip::bid_x() / n_chunks, chunk = hip::bid_x() % n_chunks;
  const int hk = hip::bid_y(), b = hip::bid_z();
  const int row0 = chunk * kRows;      // first row of this workgroup
  const int rows = imin(kRows, n_rows_all - row0);
  // Row r of the workgroup: its index in the [B, L, H_q] rows of lse / out / the split partials.
  const int64_t n_out_rows = (int64_t)p.batch * L * p.h_q;
  auto out_row = [&](int r) -> int64_t {
    return ((int64_t)b * L + row_token(row0 + r, p.group)) * p.h_q + row_head(row0 + r, hk, p.group);
  };

  // ---- valid slots, block range, selection ----
  const int S = p.seqlen_max, Bk = p.block_size;
  const int len = imin(imax(p.cache_seqlens[b], 0), S);
  const int lo = p.left_pad ? S - len : 0, hi = p.left_pad ? S : len;
  SelectedBlocks sb;
  sb.blk_lo = len > 0 ? lo / Bk : 0;
  sb.blk_hi = len > 0 ? (hi + Bk - 1) / Bk : 0;
  sb.extra = p.first_block_unmasked && len > 0;
  sb.mask_row = p.block_mask != nullptr ? p.block_mask + static_cast<int64_t>(b) * p.mask_stride_b +
                                              static_cast<int64_t>(hk) * p.mask_stride_h
                                        : nullptr;
  sb.mask_stride = p.mask_stride_n;
  sb.idx_row = p.block_mask != nullptr ? nullptr
                                       : p.block_indices + static_cast<int64_t>(b) * p.idx_stride_b +
                                             static_cast<int64_t>(hk) * p.idx_stride_h;
  sb.idx_stride = p.idx_stride_k;
  sb.n_src = p.block_mask != nullptr ? sb.blk_hi - sb.blk_lo : (len > 0 ? p.num_indices : 0);

  const int total_sel = sb.count();
  int ns_row = p.num_splits;  // row-adaptive split count (decode_params.h)
  if (p.num_splits > 1 && p.min_split_keys > 0) {
    const int ub_splits = decode_row_splits(sb.blk_hi - sb.blk_lo, Bk, p.min_split_keys, p.num_splits);
    ns_row = decode_row_splits(total_sel, Bk, p.min_split_keys, ub_splits);
  }
  const int64_t part0 = (int64_t)split * n_out_rows;  // this split's rows in lse_partial / o_partial
  if (split >= ns_row) {  // uniform: nothing to do, the combine ignores lse = -inf
    if (tid < rows) p.lse_partial[part0 + out_row(tid)] = -__builtin_inff();
    return;
  }
  const int r0 = (int)((int64_t)total_sel * split / ns_row), r1 = (int)((int64_t)total_sel * (split + 1) / ns_row);

  // ---- q: B operand, lane holds row lane % 16, dims 32 j + 8 (lane / 16) .. + 7 ----
  const int head = mfma::M16x16x16::b_col(lane);  // the row (of this workgroup) of the lane's column
  // Causal limit of that row's token (L > 1; L = 1: hi). Padding rows take the last real row's.
  const int my_hi = token_slot_hi(hi, L, row_token(imin(row0 + head, n_rows_all - 1), p.group));
  u32x4 q[D / 32];
  {
    const uint16_t* src = static_cast<const uint16_t*>(p.q) + (int64_t)b * p.q_batch_stride +
                          (int64_t)row_token(row0 + head, p.group) * p.q_tok_stride +
                          (int64_t)row_head(row0 + head, hk, p.group) * p.q_head_stride;
#pragma unroll
    for (int j = 0; j < D / 32; ++j)
      q[j] = head < rows ? *reinterpret_cast<const u32x4*>(src + dim0(lane, j)) : u32x4{0u, 0u, 0u, 0u};
  }
  // K/V rows through common/kv_addr.h (dense or paged caches); head hk of each row.
  const uint16_t* k_base = static_cast<const uint16_t*>(p.k) + (int64_t)hk * p.k_head_stride;
  const uint16_t* v_base = static_cast<const uint16_t*>(p.v) + (int64_t)hk * p.v_head_stride;

  f32x4 o[D / 16];
#pragma unroll
  for (int nt = 0; nt < D / 16; ++nt) o[nt] = f32x4{};
  hipattn::RowSoftmax<16> sm;
  sm.init();

  // ---- mainloop: this wavefront's 16-key tiles ----
  int tile = 0;
  const int tpb = Bk / kTileKeys;
  sb.for_each(r0, r1, [&](int blk) {
    for (int i = 0; i < tpb; ++i, ++tile) {
      if (tile % kWaves != wave) continue;
      const int slot0 = blk * Bk + i * kTileKeys;
      // S^T = K Q^T: A = K[slot0 + lane % 16][32 j + 8 (lane / 16) ..]
      const int kslot = slot0 + mfma::M16x16x16::a_row(lane);
      const bool kok = kslot >= lo && kslot < hi;
      f32x4 s = f32x4{};
#pragma unroll
      for (int j = 0; j < D / 32; ++j) {
        const u32x4 a = kok ? *reinterpret_cast<const u32x4*>(k_base + p.k_addr.row(b, kslot) + dim0(lane, j))
                            : u32x4{0u, 0u, 0u, 0u};
        s = hip::mfma16x16x16<Elem>(hip::lo4(a), hip::lo4(q[j]), s);
        s = hip::mfma16x16x16<Elem>(hip::hi4(a), hip::hi4(q[j]), s);
      }
      // V tile -> this wavefront's V^T slice: lane takes key pair (2j, 2j + 1) x 8 dims.
      __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");  // previous tile's V^T reads are done
      __builtin_amdgcn_wave_barrier();
#pragma unroll
      for (int it = 0; it < (kTileKeys / 2) * (D / 8) / 64; ++it) {
        const int idx = it * 64 + lane;
        const int j = idx % (kTileKeys / 2), dc = idx / (kTileKeys / 2);
        const int sl0 = slot0 + 2 * j, sl1 = sl0 + 1;
        u32x4 va = {0u, 0u, 0u, 0u}, vb = {0u, 0u, 0u, 0u};
        if (sl0 >= lo && sl0 < hi) va = *reinterpret_cast<const u32x4*>(v_base + p.v_addr.row(b, sl0) + 8 * dc);
        if (sl1 >= lo && sl1 < hi) vb = *reinterpret_cast<const u32x4*>(v_base + p.v_addr.row(b, sl1) + 8 * dc);
        uint32_t w[8];
        hip::transpose_pair(va, vb, w);
#pragma unroll
        for (int e = 0; e < 8; ++e) *reinterpret_cast<uint32_t*>(sVt + vt_lds(8 * dc + e, 2 * j)) = w[e];
      }
      __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");
      __builtin_amdgcn_wave_barrier();
      __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");
      // Mask slots outside [lo, my_hi): S^T register r of lane holds key 4 (lane / 16) + r.
      float x[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int slot = slot0 + mfma::M16x16x16::c_row(lane, r);
        x[r] = slot >= lo && slot < my_hi ? s[r] * p.scale_log2 : -__builtin_inff();
      }
      const float alpha = sm.update(x);
      // O^T += V^T P^T: A = V^T[16 nt + lane % 16][keys 4 (lane / 16) ..], B = P^T = x as it lies.
      const s16x4 pf = hip::pack4_finite<Elem>(x[0], x[1], x[2], x[3]);  // probabilities in [0, 1]
#pragma unroll
      for (int nt = 0; nt < D / 16; ++nt) {
        const hip::u32x2 a = *reinterpret_cast<const hip::u32x2*>(
            sVt + vt_lds(16 * nt + mfma::M16x16x16::a_row(lane), mfma::M16x16x16::a_k(lane, 0)));
        o[nt] = hip::mfma16x16x16<Elem>(__builtin_bit_cast(s16x4, a), pf, o[nt] * alpha);
      }
    }
  });

  // ---- merge the wavefronts: m, l per head; then O, one wavefront after the other (deterministic) ----
  float* s_o = reinterpret_cast<float*>(smem);  // [head][D] (aliases the V^T slices)
  float* s_m = reinterpret_cast<float*>(smem + (Tile::kLdsBytes - 2 * kWaves * kRows * 4));
  float* s_l = s_m + kWaves * kRows;
  const float l_w = sm.total();
  hip::barrier();  // every wavefront is done with its V^T slice
  if (lane < 16) {
    s_m[wave * kRows + head] = sm.m;
    s_l[wave * kRows + head] = l_w;
  }
  hip::barrier();
  float m_all = -__builtin_inff();
#pragma unroll
  for (int w = 0; w < kWaves; ++w) m_all = __builtin_fmaxf(m_all, s_m[w * kRows + head]);
  const float base_all = m_all == -__builtin_inff() ? 0.f : m_all;
  const float f_w = hip::exp2f_fast(sm.m - base_all);  // this wavefront's weight for its head
#pragma unroll 1
  for (int w = 0; w < kWaves; ++w) {
    if (w == wave) {
#pragma unroll
      for (int nt = 0; nt < D / 16; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          float* dst = s_o + head * D + 16 * nt + mfma::M16x16x16::c_row(lane, r);
          *dst = (w == 0 ? 0.f : *dst) + o[nt][r] * f_w;
        }
    }
    hip::barrier();
  }

  const bool direct = p.num_splits == 1;
  for (int e = tid; e < kRows * D; e += kThreads) {  // thread: (head h, dim d)
    const int h = e / D, d = e % D;
    if (h >= rows) break;
    float m = -__builtin_inff();
#pragma unroll
    for (int w = 0; w < kWaves; ++w) m = __builtin_fmaxf(m, s_m[w * kRows + h]);
    const float base = m == -__builtin_inff() ? 0.f : m;
    float l = 0.f;
#pragma unroll
    for (int w = 0; w < kWaves; ++w) l += s_l[w * kRows + h] * hip::exp2f_fast(s_m[w * kRows + h] - base);
    const float acc = s_o[h * D + d];
    const bool empty = !(l > 0.f);
    const float val = empty ? 0.f : acc / l;
    const float lse = empty ? -__builtin_inff() : base * kLn2 + hip::logf_fast(l);
    if (direct) {
      static_cast<uint16_t*>(p.out)[(int64_t)b * p.o_batch_stride + (int64_t)row_token(row0 + h, p.group) * p.o_tok_stride +
                                    (int64_t)row_head(row0 + h, hk, p.group) * p.o_head_stride + d] =
          hip16::from_float<Elem>(val);
      if (d == 0) p.lse[out_row(h)] = lse;
    } else {
      p.o_partial[(part0 + out_row(h)) * D + d] = val;
      if (d == 0) p.lse_partial[part0 + out_row(h)] = lse;
    }
  }
}

// Merges the split partials of one (b, token, q head) row per wavefront: NaN-safe log-sum-exp (a split
// with lse = -inf contributes nothing; every split empty: out 0, lse -inf). No matrix work.
template <typename Elem, int D>
__global__ void __launch_bounds__(64) decode_combine_kernel_hip(const DecodeParams p) {
  const int row = hip::bid_x();  // (b * L + token) * h_q + h
  const int lane = hip::tid();
  const int64_t n_rows = (int64_t)p.batch * p.n_tok * p.h_q;
  float m = -__builtin_inff();
  for (int s = 0; s < p.num_splits; ++s) m = __builtin_fmaxf(m, p.lse_partial[s * n_rows + row]);
  const float base = m == -__builtin_inff() ? 0.f : m;
  float wsum = 0.f;
  float acc[D / 64];
#pragma unroll
  for (int i = 0; i < D / 64; ++i) acc[i] = 0.f;
  for (int s = 0; s < p.num_splits; ++s) {
    const float ls = p.lse_partial[s * n_rows + row];
    if (ls == -__builtin_inff()) continue;  // an empty split wrote no o_partial (0 * garbage could be NaN)
    const float w = hip::exp2f_fast((ls - base) * 1.4426950408889634f);
    wsum += w;
#pragma unroll
    for (int i = 0; i < D / 64; ++i) acc[i] += w * p.o_partial[(s * n_rows + row) * D + 64 * i + lane];
  }
  const bool empty = !(wsum > 0.f);
  const int bt = row / p.h_q, h = row % p.h_q;  // bt = b * L + token
  uint16_t* out = static_cast<uint16_t*>(p.out) + (int64_t)(bt / p.n_tok) * p.o_batch_stride +
                  (int64_t)(bt % p.n_tok) * p.o_tok_stride + (int64_t)h * p.o_head_stride;
#pragma unroll
  for (int i = 0; i < D / 64; ++i) out[64 * i + lane] = hip16::from_float<Elem>(empty ? 0.f : acc[i] / wsum);
  if (lane == 0) p.lse[row] = empty ? -__builtin_inff() : base + hip::logf_fast(wsum);
}

}  // namespace hipdecode
}  // namespace seer
