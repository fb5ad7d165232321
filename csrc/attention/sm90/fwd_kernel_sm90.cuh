// Hopper (sm_90a) forward of varlen block-sparse attention: warp-specialised, wgmma, mbarrier pipeline,
// persistent.
//
// Single kernel: two CTAs per SM, each = a producer warpgroup (0) and a consumer warpgroup (1); the two
// CTAs of an SM hide each other's latencies (the pair kernel: see below). A CTA takes work items from the
// work queue (tile_scheduler.h "Work queue": valid items only, kv-head sections that keep their K/V in the
// L2, heaviest first inside a section, claimed one at a time); a work item is one row tile (64 rows; pair
// kernel 128) of one (sequence, kv head) (attention_params.h "Row tiles").
//
//   producer : walks the row tile's kept-block stream (block_iter.h); per K/V tile: reads the user-mask
//              bytes of its value-1 chunks for the tile's rows, waits for the stage to be empty, writes
//              the tile's metadata (chunk keys, tile-mask values, per-row keep bits), loads its K
//              and V (whole 64-key groups as TMA boxes, the rest with cp.async in 16-key chunks; rows
//              past the key limit zero-filled), arrives on `full`. After the last tile
//              of a work item it publishes an end marker (with the CTA's next item, claimed at this one's
//              start) and goes on with that item, so its first tiles load while the consumer finishes
//              this one.
//   consumer : per tile t: wait `full`; issue S = Q K^T of t (wgmma, both operands in shared memory)
//              together with P V of t - 1 (wgmma, P from registers); wait for S only; masking only on
//              boundary tiles; online softmax in the lazy form (a row's base moves only when its max grows
//              by more than 2^8, so O is rarely rescaled); then settle: wait for the P V of t - 1, release
//              its stage (a tile after it was read), rescale O, pack t's P as the next P V's A operand.
//              The softmax of t thus overlaps the P V of t - 1 (FlashAttention-3's intra-warpgroup
//              overlap; the wait behind a branch - wgmma_wait_late - keeps ptxas from hoisting it above
//              the softmax, benchmarks/NOTES.md v8 finding 8, v31). After its last Q K^T of an item the
//              consumer prefetches the next item's Q.
//   epilogue : O / l written from registers with the rows' strides; lse.
//
// Stages: kStages K/V tiles of kBlockN = 64 keys (pair: 128) in the 128-byte-swizzled slab layout wgmma
// reads (common/sm90_primitives.h) plus a metadata record. Barriers per stage: full (count 256: a plain and
// a cp.async arrival per producer thread, and the TMA boxes' bytes) and empty (one arrival per consumer thread: 128, pair 256).
// Tile u (counted over the whole persistent loop) uses stage u % kStages, phase (u / kStages) & 1.
//
// The pair kernel (Traits<D, Elem, true>; NOTES v13, v17): the same code with one CTA per SM of a producer
// and two consumer warpgroups, each on one 64-row half of a 128-row row tile; the halves share the tile's
// stream of 128-key K/V tiles (the 128-row tile mask: the union of the halves' blocks; a half masks the
// rows that do not keep a block; the two warpgroups take turns issuing their GEMMs - ping-pong, NOTES v28).
// Per 64 keys of a consumer it issues fewer instructions (the softmax's and
// the GEMMs' fixed costs per 128 keys, one producer for two consumers): faster where the halves share
// their blocks (density 1, masks shared over 128 rows), slower where the union is much larger than either
// half's blocks. The API layer launches both kernels; AttnParams::fwd_pick lets the tile counts of both
// tile masks decide on the device which one runs (tile_scheduler.h fwd_pick_pair).
#pragma once

#include <type_traits>

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
#include "attention/sm90/row_tile_parts_sm90.cuh"

namespace seer {
namespace fwd_sm90 {

// Q, then kStages K/V stages: single (two CTAs per SM) 3 64-key stages for D 128 (113 KB), 5 for D 64; pair
// (one CTA per SM, Q of 128 rows) 3 128-key stages for D 128 (225 KB), 6 for D 64 (209 KB).
template <int kHeadDim, typename Elem, bool kPair = false>
using Traits = std::conditional_t<kPair, sm90_rows::RowTileTraits<kHeadDim, Elem, kHeadDim == 128 ? 3 : 6, 1, 2>,
                                  sm90_rows::RowTileTraits<kHeadDim, Elem, kHeadDim == 128 ? 3 : 5, 1>>;

using sm90_rows::WorkItem;
using sm90_rows::work_item;

template <typename T>
__global__ void __launch_bounds__(T::kThreads, T::kCtasPerSm) attention_fwd_sm90_kernel(const __grid_constant__ AttnParams p) {
#if SEER_HAS_SM90A
  using Elem = typename T::Elem;
  constexpr int D = T::kHeadDim, kBlockM = T::kBlockM, kBlockN = T::kBlockN;
  using Meta = typename T::Meta;
  // Launched beside the other tiling's kernel: the tile counts pick one (uniform over the grid - it must be:
  // the work queue is re-armed by the last of all CTAs, tile_scheduler.h ItemQueue::cta_done).
  if (p.fwd_pick != nullptr && fwd_pick_pair(p.fwd_pick) != (T::kConsumers == 2)) return;

  sm90_rows::run_roles<T>(p, [&](unsigned char* smem, int wtid, const ItemQueue& queue, int cwg) {
    // =============================== consumer ===============================
    // Consumer warpgroup cwg: rows 64 cwg .. 64 cwg + 63 of each row tile.
    const sm90_rows::ConsumerThread<T> ct(p, smem, wtid, cwg);  // row_tile_parts_sm90.cuh
    const int t4 = ct.t4;
    Elem* sQ = reinterpret_cast<Elem*>(smem + T::kOffQ + cwg * T::kQBytes);
    const uint32_t sQ_addr = smem_u32(sQ);
    const float scale_log2 = p.scale_log2;

    // Gathers this warpgroup's Q rows of a row tile into sQ (cp.async, committed; zero-filled padding rows).
    auto load_q = [&](const WorkItem& it) {
      sm90_rows::gather_tile_rows<Elem, D, kBlockM>(sQ, static_cast<const Elem*>(p.q), p.q_row_stride, p.q_head_stride, p, it, wtid,
                                                    cwg * kBlockM);
    };

    // Pair kernel: the two consumer warpgroups take turns issuing their GEMMs of a tile (FlashAttention-3's
    // ping-pong; named barriers 4 + cwg, each completed by this warpgroup's bar.sync and the other's
    // bar.arrive), so one warpgroup's softmax runs while the other's GEMMs hold the tensor cores. Both
    // walk the same tile stream, so the turns pair up over the whole kernel; warpgroup 1 opens with the
    // arrival that lets warpgroup 0 issue first (it stays unmatched after the last tile).
    constexpr bool kPingPong = T::kConsumers == 2;
    auto turn_wait = [&]() {
      if constexpr (kPingPong) {
        if (cwg == 0) sm90::named_sync(4, 256);
        else sm90::named_sync(5, 256);
      }
    };
    auto turn_pass = [&]() {
      if constexpr (kPingPong) {
        if (cwg == 0) sm90::named_arrive(5, 256);
        else sm90::named_arrive(4, 256);
      }
    };
    if (kPingPong && cwg == 1) sm90::named_arrive(4, 256);

    float acc_o[D / 2];
    int u = 0;
    // Per item: this thread's two rows (tr) and their masking (rm) (row_tile_parts_sm90.cuh).
    sm90_rows::consume_items(p, queue, ct, load_q, [&](const WorkItem& it, const sm90_rows::ThreadRows& tr,
                                                 const sm90_rows::RowMask<Meta>& rm) {
      cp_async_wait<0>();  // this item's Q (prefetched)
      sm90::fence_view_async_shared();
      ct.sync();

#pragma unroll
      for (int i = 0; i < D / 2; ++i) acc_o[i] = 0.f;
      float row_max[2] = {-INFINITY, -INFINITY};
      float row_sum[2] = {0.f, 0.f};

      // S = Q K^T of stage `st` (issued and committed, not waited).
      auto issue_qk = [&](float (&sd)[kBlockN / 2], int st) {
        const uint32_t sK_addr = smem_u32(smem + T::kOffK + st * T::kTileBytes);
        sm90::fence_operands(sd);
        sm90::wgmma_fence();
        sm90_rows::wgmma_rows_keys<T>(sd, sQ_addr, sK_addr);  // row_tile_parts_sm90.cuh
        sm90::wgmma_commit();
      };
      // O += P V of stage `st` (issued and committed, not waited).
      auto issue_pv = [&](uint32_t (&pa)[kBlockN / 16][4], int st) {
        sm90_rows::issue_rows_stage<T>(acc_o, pa, smem_u32(smem + T::kOffV + st * T::kTileBytes));
      };
      // Online softmax of S in place (common/softmax.h, the lazy form): row bases, P = exp2(S * scale - base),
      // row sums; alpha = rescale factor of the O accumulated so far (exactly 1 unless a row's max grew by
      // more than 2^8 since its base was set).
      auto softmax = [&](float (&sd)[kBlockN / 2], float (&alpha)[2]) {
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) alpha[rr] = online_softmax_row_lazy(frags(sd), rr, row_max[rr], row_sum[rr], scale_log2);
      };
      // O *= alpha, skipped when no row of the warp changed its maximum (warp-uniform).
      auto rescale_o = [&](const float (&alpha)[2]) {
        if (SEER_ALL(alpha[0] == 1.f && alpha[1] == 1.f)) return;
        rescale_rows(frags(acc_o), alpha);
      };

      // pa: the A operand of the P V issued last (possibly in flight), then - once that P V is done - the
      // newest tile's P (its P V not issued yet, pend_st its stage).
      uint32_t pa[kBlockN / 16][4];
      float alpha[2];
      int pend_st = 0;
      // After the softmax of a tile that is not the item's first: wait for the P V in flight (that of the
      // previous tile, stage pst, issued with this tile's S, so it ran during the softmax), release its stage,
      // rescale O (it holds every tile before this one) to the rows' current bases, and pack this tile's P
      // into pa as the A operand of its P V. (The first tile only packs: nothing is in flight and O is zero.)
      auto settle = [&](const float (&sd)[kBlockN / 2], int pst) {
        sm90::wgmma_wait_late<0>(ct.opaque_zero);  // after the softmax, not hoisted above it
        sm90::fence_operands(acc_o);
        ct.release(pst);
        rescale_o(alpha);
        sm90_rows::pack_rows_operand<Elem>(sd, pa);
      };
      const sm90_rows::StreamEnd end = sm90_rows::consume_stream<T>(
          smem, u, pend_st,
          [&](int st, const Meta* m, const sm90_rows::TileHead& h) {
            const bool masked = rm.needs(h);  // read before the GEMM: its shared load overlaps it
            float sd[kBlockN / 2];
            turn_wait();
            issue_qk(sd, st);
            turn_pass();
            sm90::wgmma_wait<0>();
            sm90::fence_operands(sd);
            if (masked) rm.mask(sd, m, h.vbits, t4);
            softmax(sd, alpha);
            sm90_rows::pack_rows_operand<Elem>(sd, pa);
          },
          [&](int st, int pst, const Meta* m, const sm90_rows::TileHead& h) {
            const bool masked = rm.needs(h);
            float sd[kBlockN / 2];
            turn_wait();
            issue_qk(sd, st);
            issue_pv(pa, pst);  // P V of the previous tile
            turn_pass();
            sm90::wgmma_wait<1>();  // Q K^T of this tile done; the P V may still run (during the softmax)
            sm90::fence_operands(sd);
            if (masked) rm.mask(sd, m, h.vbits, t4);
            softmax(sd, alpha);
            settle(sd, pst);
          });
      // The next item's Q loads while the last P V and the epilogue run.
      const int w_next = sm90_rows::end_of_item(p, queue, end, ct.bar, load_q, [&]() {
        issue_pv(pa, pend_st);
        ct.drain(acc_o, pend_st);
      });

      // ---- epilogue: O / l from registers (4-byte stores of column pairs), lse ----
      Elem* go = static_cast<Elem*>(p.out);
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const RowTotal tot = row_finish(row_sum[rr]);
        if (tr.ok[rr]) {
          if (t4 == 0) p.lse[tr.stat_index(p, it, rr)] = row_lse(row_max[rr], tot.l, scale_log2);
          store_row_pairs(frags(acc_o), rr, tot.inv, go + tr.offset(it, rr, p.o_row_stride, p.o_head_stride) + 2 * t4);
        }
      }
      return w_next;
    });
  });
#endif  // SEER_HAS_SM90A
}

}  // namespace fwd_sm90
}  // namespace seer
