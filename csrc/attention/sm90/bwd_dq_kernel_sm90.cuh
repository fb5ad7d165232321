// Hopper (sm_90a) dQ kernel of the backward, q-major and deterministic: dQ = scale * sum over the kept
// keys of dS K, dS = P * (dP - D_i), P = exp2(S * scale_log2 - lse_i * log2 e), recomputed per K/V tile.
//
// The forward's structure (fwd_kernel_sm90.cuh) with the backward's math: two CTAs per SM, each = the
// producer warpgroup of row_tile_parts_sm90.cuh (K/V of the row tile's kept blocks through a ring of
// 64-key stages) and one consumer warpgroup (64 rows). Per K/V tile the consumer issues S = Q K^T and
// dP = dO V^T (wgmma, all operands in shared memory), masks S on boundary tiles, forms dS in registers
// and issues dQ += dS K (wgmma, dS from registers, K the MN-major B operand). The next tile's S / dP
// are issued together with the current dQ GEMM so that it overlaps the next dS computation. A row tile
// is one CTA's and its kept tiles come in a fixed order: no atomics, bitwise reproducible. Runs on the
// deterministic path, and on the atomic path when the tile density is low (bwd_common.h dq_fused; it
// then exits at once where the dK/dV kernel has added dQ).
// Rows with lse = -inf (no visible key) and padding rows get P = 0: their dQ is zero.
#pragma once

#include <cstdint>
#include <cmath>

#include "common/platform.h"
#include "common/sm80_primitives.h"
#include "common/softmax.h"
#include "common/epilogue.h"
#include "common/sm90_primitives.h"
#include "common/sm90_pipeline.h"
#include "common/sm90_wgmma.h"
#include "attention/attention_params.h"
#include "attention/bwd_common.h"
#include "attention/sm90/row_tile_parts_sm90.cuh"

namespace seer {
namespace bwd_sm90 {

// Q and dO, then kStages K/V stages (2 for D 128, 97 KB: two CTAs per SM).
template <int kHeadDim, typename Elem>
using DqTraits = sm90_rows::RowTileTraits<kHeadDim, Elem, kHeadDim == 128 ? 2 : 5, 2>;

template <typename T>
__global__ void __launch_bounds__(T::kThreads, T::kCtasPerSm) bwd_dq_sm90_kernel(const __grid_constant__ AttnBwdParams p) {
#if SEER_HAS_SM90A
  using Elem = typename T::Elem;
  using sm90_rows::TileMeta;
  using sm90_rows::WorkItem;
  using sm90_rows::work_item;
  constexpr int D = T::kHeadDim, kBlockM = T::kBlockM, kBlockN = T::kBlockN;

  // Atomic path at a high tile density: the dK/dV kernel has added dQ already (bwd_common.h dq_fused). Uniform
  // over the grid (the work queue's re-arm needs every CTA or none: tile_scheduler.h ItemQueue::cta_done).
  if (attn_bwd::dq_fused_atomic(p)) return;

  sm90_rows::run_roles<T>(p, [&](unsigned char* smem, int wtid, const ItemQueue& queue, int) {
    // =============================== consumer ===============================
    const sm90_rows::ConsumerThread<T> ct(p, smem, wtid);  // row_tile_parts_sm90.cuh
    const int t4 = ct.t4;
    Elem* sQ = reinterpret_cast<Elem*>(smem + T::kOffQ);
    Elem* sdO = reinterpret_cast<Elem*>(smem + T::kOffDO);
    const uint32_t sQ_addr = smem_u32(sQ), sdO_addr = smem_u32(sdO);
    const float scale_log2 = p.scale_log2;

    // Q and dO rows of a row tile into sQ / sdO (cp.async, committed).
    auto load_rows = [&](const WorkItem& it) {
      sm90_rows::gather_tile_rows<Elem, D, kBlockM>(sQ, static_cast<const Elem*>(p.q), p.q_row_stride, p.q_head_stride, p, it, wtid);
      sm90_rows::gather_tile_rows<Elem, D, kBlockM>(sdO, static_cast<const Elem*>(p.dout), p.do_row_stride, p.do_head_stride, p, it,
                                                    wtid);
    };

    float acc_dq[D / 2];
    int u = 0;
    // Per item: this thread's two rows (tr) and their masking (rm) (row_tile_parts_sm90.cuh).
    sm90_rows::consume_items(p, queue, ct, load_rows, [&](const WorkItem& it, const sm90_rows::ThreadRows& tr,
                                                 const sm90_rows::RowMask<TileMeta>& rm) {
      // This thread's two rows: lse * log2(e) (+inf: P = 0 for a padding row or one with no visible key)
      // and D_i.
      float lse2[2], dd[2];
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        lse2[rr] = INFINITY;
        dd[rr] = 0.f;
        if (tr.ok[rr]) {
          const int64_t li = tr.stat_index(p, it, rr);
          const float l = p.lse[li];
          lse2[rr] = l == -INFINITY ? INFINITY : l * attn_bwd::kLog2e;
          dd[rr] = p.softmax_d[li];
        }
      }

      cp_async_wait<0>();  // this item's Q / dO (prefetched)
      sm90::fence_view_async_shared();
      ct.sync();

#pragma unroll
      for (int i = 0; i < D / 2; ++i) acc_dq[i] = 0.f;

      // S = Q K^T and dP = dO V^T of stage `st` (issued and committed, not waited).
      auto issue_s_dp = [&](float (&sd)[kBlockN / 2], float (&dp)[kBlockN / 2], int st) {
        const uint32_t sK_addr = smem_u32(smem + T::kOffK + st * T::kTileBytes);
        const uint32_t sV_addr = smem_u32(smem + T::kOffV + st * T::kTileBytes);
        sm90::fence_operands(sd);
        sm90::fence_operands(dp);
        sm90::wgmma_fence();
        sm90_rows::wgmma_rows_keys<T>(sd, sQ_addr, sK_addr);  // row_tile_parts_sm90.cuh
        sm90_rows::wgmma_rows_keys<T>(dp, sdO_addr, sV_addr);
        sm90::wgmma_commit();
      };
      // dQ += dS K of stage `st` (issued and committed, not waited); K is the MN-major B operand as V in
      // the forward's P V.
      auto issue_dq = [&](uint32_t (&dsa)[kBlockN / 16][4], int st) {
        sm90_rows::issue_rows_stage<T>(acc_dq, dsa, smem_u32(smem + T::kOffK + st * T::kTileBytes));
      };
      // dS = P * (dP - D_i), P = exp2(S * scale_log2 - lse2), packed as the A fragments of dS K.
      auto form_ds = [&](float (&sd)[kBlockN / 2], const float (&dp)[kBlockN / 2], uint32_t (&dsa)[kBlockN / 16][4]) {
#pragma unroll
        for (int i = 0; i < kBlockN / 2; ++i) {
          const int rr = (i & 3) >> 1;
          sd[i] = fast_exp2(fmaf(sd[i], scale_log2, -lse2[rr])) * (dp[i] - dd[rr]);
        }
        sm90_rows::pack_rows_operand<Elem>(sd, dsa);
      };

      // dS of the pending tile (its dQ GEMM not issued yet) lives in dsa; pend_st is its stage.
      uint32_t dsa[kBlockN / 16][4];
      int pend_st = 0;
      const sm90_rows::StreamEnd end = sm90_rows::consume_stream<T>(
          smem, u, pend_st,
          [&](int st, const TileMeta* m, const sm90_rows::TileHead& h) {
            float sd[kBlockN / 2], dp[kBlockN / 2];
            issue_s_dp(sd, dp, st);
            sm90::wgmma_wait<0>();
            sm90::fence_operands(sd);
            sm90::fence_operands(dp);
            rm.apply(sd, m, h, t4);
            form_ds(sd, dp, dsa);
          },
          [&](int st, int pst, const TileMeta* m, const sm90_rows::TileHead& h) {
            float sd[kBlockN / 2], dp[kBlockN / 2];
            if constexpr (T::kStages <= 2) {
              // Two stages (D 128): the pending tile's dQ GEMM first, then this tile's S / dP, so the
              // pending stage goes back to the producer as soon as its dQ GEMM completes (while S / dP
              // still run) and the next tile's K / V load overlaps this tile's S / dP and dS. The dS math
              // then overlaps no GEMM of this warpgroup (the SM's other CTA fills that).
              issue_dq(dsa, pst);
              issue_s_dp(sd, dp, st);
              sm90::wgmma_wait<1>();  // dQ of the pending tile done (groups complete in order)
              sm90::fence_operands(acc_dq);
              ct.release(pst);
              sm90::wgmma_wait<0>();
              sm90::fence_operands(sd);
              sm90::fence_operands(dp);
              rm.apply(sd, m, h, t4);
              form_ds(sd, dp, dsa);
              return;
            }
            // More stages (D 64): this tile's S / dP first, the pending dQ GEMM overlapping its dS math.
            issue_s_dp(sd, dp, st);
            issue_dq(dsa, pst);
            sm90::wgmma_wait<1>();  // S / dP of this tile done; dQ of the pending one may still run
            sm90::fence_operands(sd);
            sm90::fence_operands(dp);
            rm.apply(sd, m, h, t4);
            uint32_t dsa_nxt[kBlockN / 16][4];
            form_ds(sd, dp, dsa_nxt);
            ct.drain(acc_dq, pst);
            sm90_rows::handoff_operand(dsa, dsa_nxt, ct.opaque_zero);  // dsa = dsa_nxt, after the dQ GEMM read dsa
          });
      // The next item's Q / dO load while the last dQ GEMM and the epilogue run.
      const int w_next = sm90_rows::end_of_item(p, queue, end, ct.bar, load_rows, [&]() {
        issue_dq(dsa, pend_st);
        ct.drain(acc_dq, pend_st);
      });

      // ---- epilogue: dQ * scale from registers (4-byte stores of column pairs) ----
      Elem* gdq = static_cast<Elem*>(p.dq);
#pragma unroll
      for (int rr = 0; rr < 2; ++rr)
        if (tr.ok[rr]) store_row_pairs(frags(acc_dq), rr, p.scale, gdq + tr.offset(it, rr, p.dq_row_stride, p.dq_head_stride) + 2 * t4);
      return w_next;
    });
  });
#endif  // SEER_HAS_SM90A
}

}  // namespace bwd_sm90
}  // namespace seer
