// Hopper (sm_90a) dK/dV kernel of the varlen block-sparse attention backward (2D and 1D masks): warp-
// specialised, wgmma, mbarrier ring. Same algorithm, masking rules, row tiles and candidate walk as the
// mma.sync dK/dV kernel (bwd_common.h, bwd_dkdv_kernel.cuh: read them first); FlashAttention-3's
// backward structure.
//
// One CTA per (key tile of kBlockN = 128 keys, kv head, sequence) = one producer warpgroup (0)
// and kNWG = 2 consumer warpgroups, consumer c owning keys [64 c, 64 c + 64) of the tile (its K / V rows
// stay in shared memory; warp w of it owns the 16-key chunk 4 c + w). At a low kept-tile density
// (bwd_common.h dkdv_split) the same kernel runs with kNWG = 1: 64-key CTAs, two per SM, each streaming
// its own row tiles (Traits).
//
//   producer : walks the candidate row tiles of the transposed tile mask (every q head of the GQA group,
//              so dK / dV come out reduced over the group without atomics), compacts the kept ones
//              (2-bit tile-mask value per 16-key chunk of the CTA, "chunk flags"), reorders each batch
//              so that the two consumers' row tiles alternate (kNWG 2, alternate_consumers), and per kept
//              row tile: waits for a free stage, writes the per-row record (lse, softmax_d, the row's key limit,
//              its keep bit per 16-key chunk, dq_accum row offset) and gathers the 64 Q and dO rows with
//              cp.async into the stage (128-byte swizzled slabs, common/sm90_primitives.h; a row tile whose
//              rows are all valid, with a head packing that divides a gather pass, as one stepped pointer
//              per thread, else through a per-row address table and a producer barrier), arriving on
//              the stage's `full` barrier (count 256: one plain arrival per thread after its record
//              stores + one cp.async arrival). After the last row tile: an end record (rt = -1).
//   consumer : per row tile: S^T = K Q^T and dP^T = V dO^T (wgmma, both operands in shared memory;
//              M = the consumer's 64 keys, N = 64 rows), P^T = exp2(S^T * scale_log2 - lse log2(e)) (masking
//              only on boundary chunks: tile-mask value 1 per-row bits, sequence end, causal),
//              dS^T = P^T (dP^T - softmax_d), then dV += P^T dO and dK += dS^T Q (wgmma, P^T / dS^T
//              from registers, dO / Q read MN-major from the same stage). Atomic path at a high
//              kept-tile density (bwd_common.h dq_fused; the 128-key CTA's Is_fused_dq instantiation only
//              - the 64-key CTA never adds dQ, the q-major dQ kernel computes it): dS^T is stored to shared
//              memory and dQ_tile = dS K (wgmma, dS^T read MN-major, K MN-major) is added into the fp32
//              dq_accum workspace with 16-byte red.global.add.v4.f32, in whole 256-byte rows staged
//              through a 1 KB area of the warp's own (the L2 adds whole rows ~1.6x faster than fragments:
//              benchmarks/l2_reduce_bench.cu, NOTES v25). D 128, a row tile both
//              consumers keep chunks of: consumer c computes dims [64 c, +64) over all 128 keys (a
//              barrier between the consumers); otherwise each consumer computes all dims over its own 64
//              keys, and a consumer that keeps no chunk of the row tile releases its stage at once and
//              runs ahead (at most kStages - 1 row tiles: the producer refills a stage only when both
//              released it).
//              The stage is released once the wgmmas reading Q / dO have completed.
//   epilogue : dK * scale and dV from registers.
//
// Rows that are not valid get lse = +inf in the record (P = exp2(-inf) = 0, and their Q / dO rows are
// zero-filled). A valid row with lse = -inf sees no key, so the boundary masking zeroes all its P (an
// interior chunk, value 2 and fully visible, is never invisible to a valid row). No NaN, no finite
// sentinel.
#pragma once

#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "attention/attention_params.h"
#include "attention/bwd_common.h"
#include "attention/seqlen.h"
#include "attention/tile_scheduler.h"
#include "common/platform.h"
#include "common/sm80_primitives.h"
#include "common/sm90_pipeline.h"
#include "common/sm90_primitives.h"
#include "common/sm90_wgmma.h"

namespace seer {
namespace bwd_sm90 {

// kNWG_ = 2: the 128-key CTA above 30% kept tiles (one per SM; the two consumers share the row tiles
// both keep). kNWG_ = 1: the 64-key CTA at most 30% (two per SM, each streaming its own row
// tiles; no fused dQ) - at a low density most row tiles are kept by one 64-key block only, so the 128-key
// CTA mostly ran one of its consumers (benchmarks/NOTES.md v8 finding 7). bwd_common.h dkdv_split picks.
template <int kHeadDim_, typename Elem_, int kNWG_ = 2>
struct Traits {
  using Elem = Elem_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kNWG = kNWG_;                      // consumer warpgroups (64 keys each)
  static constexpr int kCtasPerSm = kNWG == 1 ? 2 : 1;
  static constexpr int kBlockM = attn_bwd::kBwdTileRows;  // rows per streamed row tile (64)
  static constexpr int kBlockN = 64 * kNWG;               // keys per CTA
  static constexpr int kChunks = kBlockN / 16;            // 16-key chunks (one per consumer warp)
  static constexpr int kThreads = 128 * (1 + kNWG);
  // setmaxnreg split of the CTA's registers: a CTA is launched with kLaunchRegs per thread (what ptxas
  // allots under __launch_bounds__(kThreads, kCtasPerSm): 168 for 384 threads, 128 for 2 x 256) and the
  // warpgroups can only trade those (a larger sum makes setmaxnreg.inc wait forever).
  static constexpr int kLaunchRegs = (65536 / (kThreads * kCtasPerSm) < 255 ? 65536 / (kThreads * kCtasPerSm) : 255) / 8 * 8;
  static constexpr int kProducerRegs = kNWG == 2 ? 40 : 32;
  static constexpr int kConsumerRegs = kNWG == 2 ? 232 : 224;
  static_assert(kProducerRegs + kNWG * kConsumerRegs <= (1 + kNWG) * kLaunchRegs, "register file");
  // Q / dO stages of the ring (the 64-key CTA: two per SM in 228 KB).
  static constexpr int kStages = kNWG == 2 ? (kHeadDim == 128 ? 3 : 4) : (kHeadDim == 128 ? 2 : 4);
  // dQ (atomic path), D 128 with two consumers: a row tile both consumers keep chunks of is split by head
  // dim (consumer c: dims [64 c, +64) over all 128 keys, a barrier between the two); a row tile only one
  // consumer keeps is that consumer's alone (every dim over its own 64 keys, two 64-dim passes) and the
  // other skips it without waiting. Otherwise (D 64) each consumer covers every dim over its own keys.
  static constexpr bool kDqSplitD = kHeadDim == 128 && kNWG == 2;
  // dS^T buffers: one per stage when a consumer may run ahead of the other (kDqSplitD: a split row tile
  // reads the other consumer's half), else two (each consumer reads only its own rows); none in the
  // 64-key CTA (it never adds dQ).
  static constexpr int kDSBufs = kNWG == 1 ? 0 : kDqSplitD ? kStages : 2;
  static constexpr int kKVBytes = kBlockN * kHeadDim * 2;  // K (or V) of the CTA
  static constexpr int kQBytes = kBlockM * kHeadDim * 2;   // Q (or dO) of one stage
  static constexpr int kDSBytes = kBlockN * kBlockM * 2;   // dS^T [keys][rows], one buffer
  // The fused dQ's staging (whole-row reds): 4 rows of 64 fp32 dims per consumer warp; none in the 64-key CTA.
  static constexpr int kStgBytesPerWarp = 4 * 256;
  static constexpr int kStgBytes = kNWG == 1 ? 0 : kNWG * 4 * kStgBytesPerWarp;
  static constexpr int kRecBytes = 2048;
  static constexpr int kOffK = 0;
  static constexpr int kOffV = kOffK + kKVBytes;
  static constexpr int kOffQ = kOffV + kKVBytes;                     // [kStages]
  static constexpr int kOffDO = kOffQ + kStages * kQBytes;           // [kStages]
  static constexpr int kOffDS = kOffDO + kStages * kQBytes;          // [kDSBufs] (atomic path)
  static constexpr int kOffStg = kOffDS + kDSBufs * kDSBytes;        // [kNWG * 4][kStgBytesPerWarp] (fused dQ)
  static constexpr int kOffRec = kOffStg + kStgBytes;                // RowRec [kStages]
  static constexpr int kOffFull = kOffRec + kStages * kRecBytes;     // uint64 [kStages]
  static constexpr int kOffEmpty = kOffFull + 8 * kStages;           // uint64 [kStages]
  static constexpr int kOffList = kOffEmpty + 8 * kStages;           // int [128] kept row tiles
  static constexpr int kOffFlags = kOffList + 128 * 4;               // uint32 [128] their chunk flags
  static constexpr int kOffWarpCnt = kOffFlags + 128 * 4;            // int [4]
  static constexpr int kOffColOff = kOffWarpCnt + 4 * 4;             // int64 [kChunks] user-mask column offsets
  static constexpr int kOffRowOff = kOffColOff + kChunks * 8;        // RowOff [kBlockM] (producer only)
  static constexpr int kOffOwnCnt = kOffRowOff + kBlockM * 16;       // int [3][4] (producer only)
  static constexpr int kOffList2 = kOffOwnCnt + 3 * 4 * 4;            // int [128] the batch in consumer order
  static constexpr int kOffFlags2 = kOffList2 + 128 * 4;              // uint32 [128] their chunk flags
  static constexpr int kSmemUsed = kOffFlags2 + 128 * 4;
  static constexpr int kSmemBytes = kSmemUsed + 1024;  // + slack to align the base to 1024 bytes
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head dim");
  static_assert(kChunks * 2 <= 32, "chunk flags fit 32 bits");
  static_assert(kOffQ % 1024 == 0 && kOffDO % 1024 == 0 && kOffDS % 1024 == 0 && kQBytes % 1024 == 0,
                "SW128 tiles 1024-aligned");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory per block");
  static_assert(kCtasPerSm * (kSmemBytes + 1024) <= 228 * 1024, "shared memory per SM");
};

// Per-stage record of the streamed row tile (written by the producer, read by the consumers).
struct RowRec {
  int rt;          // row tile; -1: end of the stream
  uint32_t flags;  // chunk flags of the CTA's keys: tile-mask value of chunk c at bits 2c..2c+1
  int tok0;        // first token of the row tile
  int pad_;
  float lse[64];      // lse (natural log; cp.async); +inf for rows that are not valid (P = 0)
  float dd[64];       // softmax_d (cp.async; 0 for rows that are not valid)
  int kmax[64];       // the row sees CTA-local keys < kmax (sequence end, causal); 0 if not valid
  uint32_t keep[64];  // bit c: the row keeps chunk c by the tile mask / user mask (value 2, or value 1
                      // and its mask bit)
  int64_t qacc[64];   // dq_accum offset of the row (-1 if not valid)
};
static_assert(sizeof(RowRec) <= 2048, "RowRec slot");

// Global addresses of one row of the streamed row tile (producer-private, decoded once per stage by the
// thread that writes the row's record, read by every pass of the Q / dO gather; row tiles with invalid
// rows or a head packing that does not divide a gather pass only).
template <typename Elem>
struct RowOff {
  const Elem* q;   // the row in q (q + token * q_row_stride + head * q_head_stride); nullptr: not valid
  const Elem* dO;  // the row in dout
};

// Producer (128 threads, tid 0..127): reorders one batch of compacted row tiles (list / flags [0, total),
// total <= 128) so that the two consumers' work alternates - row tiles both consumers keep chunks of first,
// then the tiles only one of them keeps, consumer 0's and consumer 1's in turn, then the rest of the
// longer of the two. Each class keeps its candidate order (a consumer sees its shared tiles first, then its
// own); the order is a function of the tile mask only, so dK / dV sums stay in one fixed order
// (deterministic, though not bitwise equal to candidate order). In candidate order, a run of more than kStages - 1 tiles of one consumer left
// the other idle (it may skip at most kStages - 1 stages ahead), which at low density - where most kept
// row tiles are one consumer's - is the common case. cnt: int [3][4] scratch.
template <int kChunksPerConsumer, typename Sync>
SEER_DEVICE void alternate_consumers(const int* list, const uint32_t* flags, int* out_list, uint32_t* out_flags,
                                     int* cnt, int total, int tid, Sync sync) {
  const bool in = tid < total;
  const uint32_t f = in ? flags[tid] : 0u;
  constexpr uint32_t kMask0 = (1u << (2 * kChunksPerConsumer)) - 1u;
  const bool k0 = (f & kMask0) != 0u, k1 = (f >> (2 * kChunksPerConsumer)) != 0u;
  const int cls = !in ? 3 : (k0 && k1) ? 0 : (k0 ? 1 : 2);  // 0 both, 1 consumer 0 only, 2 consumer 1 only
  const int lane = tid & 31, warp = tid >> 5;
  unsigned mine = 0;  // this thread's class ballot (no runtime-indexed array: it would go to local memory)
#pragma unroll
  for (int c = 0; c < 3; ++c) {
    const unsigned bal = SEER_BALLOT(cls == c);
    if (lane == 0) cnt[c * 4 + warp] = __popc(bal);
    if (c == cls) mine = bal;
  }
  sync();
  int before = 0, tot[3] = {0, 0, 0};
#pragma unroll
  for (int w = 0; w < 4; ++w)
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      const int x = cnt[c * 4 + w];
      tot[c] += x;
      if (c == cls && w < warp) before += x;
    }
  if (in) {
    const unsigned lt = (1u << lane) - 1u;
    const int rank = before + __popc(mine & lt);
    int pos = rank;
    if (cls != 0) {
      const int m = min(tot[1], tot[2]);
      pos = tot[0] + (rank < m ? 2 * rank + (cls - 1) : m + rank);
    }
    out_list[pos] = list[tid];
    out_flags[pos] = flags[tid];
  }
  sync();  // the reordered batch is visible; cnt is rewritten only after the next compact_list's barriers
}

// Is_fused_dq: this instantiation adds dQ (atomic path, 128-key CTA) and runs only where the kept-tile density
// picks that (bwd_common.h dq_fused); the other instantiation leaves dQ to the q-major dQ kernel. Both are
// launched where the atomic path has tile counts, and the one the density does not pick exits at once
// (uniform over the grid, before any barrier) - so neither carries the other's code and registers.
template <typename T, bool Is_causal, bool Is_fused_dq>
__global__ void __launch_bounds__(T::kThreads, T::kCtasPerSm) bwd_dkdv_sm90_kernel(const __grid_constant__ AttnBwdParams p) {
#if SEER_HAS_SM90A
  using Elem = typename T::Elem;
  constexpr int D = T::kHeadDim;
  constexpr int kBlockM = T::kBlockM, kBlockN = T::kBlockN, kStages = T::kStages, kNWG = T::kNWG;
  constexpr float kLog2e = attn_bwd::kLog2e;
  static_assert(kNWG == 2 || !Is_fused_dq, "the 64-key CTA never adds dQ (it runs at a low density only)");
  // Both CTA sizes are launched where tile counts exist; the one the kept-tile density does not pick
  // exits at once (uniform over the grid, before any barrier; bwd_common.h dkdv_split). Likewise the 128-key
  // CTA with and without the fused dQ on the atomic path (dq_fused).
  if (attn_bwd::dkdv_split(p.tile_count) != (kNWG == 1)) return;
  if (kNWG == 2 && attn_bwd::dq_atomic(p) && attn_bwd::dq_fused(p.tile_count) != Is_fused_dq) return;

  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char* smem = smem_raw + smem_pad_1024(smem_raw);
  uint64_t* bar_full = reinterpret_cast<uint64_t*>(smem + T::kOffFull);
  uint64_t* bar_empty = reinterpret_cast<uint64_t*>(smem + T::kOffEmpty);
  auto rec_at = [&](int st) { return reinterpret_cast<RowRec*>(smem + T::kOffRec + st * T::kRecBytes); };

  const int tid = threadIdx.x;
  // The warpgroup index through a shuffle: ptxas then treats it as warp-uniform, so the consumers'
  // shared-memory descriptors are formed in uniform registers (CUTLASS canonical_warp_group_idx).
  const int wg = __shfl_sync(0xffffffffu, tid / 128, 0), wtid = tid % 128;
  // Item (tile_scheduler.h): key tile, kv head, sequence (head-major; in each head key tile 0, the most
  // row tiles under a causal mask, first).
  const KeyTileItem item = key_tile_item(p);
  const int hk = item.hk, key_tile = item.key_tile, b = item.b;
  const SeqBounds sb = seq_bounds(p, b);
  const int q_start = sb.q_start, seqlen_q = sb.seqlen_q, k_start = sb.k_start, seqlen_k = sb.seqlen_k;
  const int causal_off = sb.causal_off;
  const int key0 = key_tile * kBlockN;
  if (key0 >= seqlen_k) return;  // uniform, before any barrier
  const int n_keys = min(kBlockN, seqlen_k - key0);

  if (tid == 0) {
    for (int st = 0; st < kStages; ++st) {
      sm90::mbar_init(&bar_full[st], 256);
      sm90::mbar_init(&bar_empty[st], 128 * kNWG);
    }
    sm90::mbar_init_fence();
  }
  __syncthreads();

  constexpr int kRowChunks = D / 8;               // 16-byte chunks per row
  constexpr int kRowsPerPass = 128 / kRowChunks;  // rows one warpgroup copies per pass (8 or 16)
  const int chunk = wtid % kRowChunks;

  if (wg == 0) {
    // =============================== producer ===============================
    sm90::regs_dec<T::kProducerRegs>();
    int* sList = reinterpret_cast<int*>(smem + T::kOffList);
    uint32_t* sFlags = reinterpret_cast<uint32_t*>(smem + T::kOffFlags);
    int* sWarpCnt = reinterpret_cast<int*>(smem + T::kOffWarpCnt);
    int64_t* sColOff = reinterpret_cast<int64_t*>(smem + T::kOffColOff);
    RowOff<Elem>* sRowOff = reinterpret_cast<RowOff<Elem>*>(smem + T::kOffRowOff);
    auto sync = []() { sm90::named_sync(1, 128); };
    const auto cand = attn_bwd::row_tile_candidates<Is_causal>(p, seqlen_q, key0, causal_off);  // bwd_common.h
    const int64_t tmT_bh = (static_cast<int64_t>(b) * p.h_kv + hk) * p.nb_k;
    // Row (global token grow, q head) of Q and of dO: both gather paths below start from it.
    auto row_ptrs = [&p](int64_t grow, int head) {
      return RowOff<Elem>{static_cast<const Elem*>(p.q) + grow * p.q_row_stride + static_cast<int64_t>(head) * p.q_head_stride,
                    static_cast<const Elem*>(p.dout) + grow * p.do_row_stride + static_cast<int64_t>(head) * p.do_head_stride};
    };
    // Per-CTA decode (the divisions of tile_row / mask_row_offset that do not depend on the row tile):
    // row wtid (< kBlockM) of every row tile is token tile_tokens * tt + wtid / pack, head h0 + wtid % pack; the
    // user-mask byte of chunk ch is at column offset sColOff[ch] (visible after compact_list's barrier).
    const int rec_dec = [&] {  // (wtid / pack) << 8 | wtid % pack: one register
      const int t = wtid / p.pack;
      return (t << 8) | (wtid - t * p.pack);
    }();
    if (wtid < T::kChunks)
      sColOff[wtid] = static_cast<int64_t>((key0 + 16 * wtid) / p.block_size_k) * p.mask_stride_col;
    // Whole row tiles (every row valid) when the head packing divides a gather pass (pack 1 / 2 / 4 / 8):
    // this thread's Q / dO rows are then one global pointer stepped by kRowsPerPass / pack tokens per
    // pass, with no per-row table in shared memory and no producer barrier per row tile.
    // tok_span: a row tile takes that path iff tok_span < its valid tokens (every row valid; INT_MAX when
    // the packing does not divide a pass); tok_step: tokens per pass (both uniform). gat_dec: (token << 8) |
    // head slot of this thread's first gather row wtid / kRowChunks.
    const int tok_span = kRowsPerPass % p.pack == 0 ? (kBlockM - 1) / p.pack : INT_MAX;
    const int tok_step = kRowsPerPass / p.pack;
    const int gat_dec = [&] {
      const int r0 = wtid / kRowChunks, t = r0 / p.pack;
      return (t << 8) | (r0 - t * p.pack);
    }();
    const int hm_div = p.h_q / p.mask_heads;
    int u = 0;
#pragma unroll 1
    for (int cbase = 0; cbase < cand.n_cand; cbase += 128) {
      const int idx = cbase + wtid;
      int rt = 0;
      uint32_t flags = 0;
      if (idx < cand.n_cand) {
        rt = cand.row_tile(idx, p.n_tok_tiles);
        flags = attn_bwd::chunk_flags<T::kChunks>(p.tile_maskT, tmT_bh * p.n_row_tiles + rt, p.n_row_tiles, key0,
                                                  seqlen_k, p.block_size_k, p.nb_k);
      }
      // Compaction of the kept candidates (increasing candidate order; block_iter.h via bwd_common.h).
      const int total = attn_bwd::compact_list<128>(flags != 0, rt, flags, sList, sFlags, sWarpCnt, wtid, sync);
      static_assert(T::kChunks == 4 * kNWG, "4 chunks per consumer");
      const int* sList2 = sList;
      const uint32_t* sFlags2 = sFlags;
      if constexpr (kNWG == 2) {  // the two consumers' row tiles alternate (one consumer: candidate order)
        int* l2 = reinterpret_cast<int*>(smem + T::kOffList2);
        uint32_t* f2 = reinterpret_cast<uint32_t*>(smem + T::kOffFlags2);
        alternate_consumers<T::kChunks / kNWG>(sList, sFlags, l2, f2, reinterpret_cast<int*>(smem + T::kOffOwnCnt),
                                               total, wtid, sync);
        sList2 = l2;
        sFlags2 = f2;
      }
#pragma unroll 1
      for (int i = 0; i < total; ++i, ++u) {
        const int st = u % kStages;
        const int rti = sList2[i];
        const uint32_t fl = sFlags2[i];
        // Row tile rti: head slot, first token, first q head, valid tokens (tile_row's rule: row r is valid
        // iff r / pack < n_tok).
        const RowTile rtile = row_tile(p, hk, rti);  // tile_scheduler.h
        const int tok0 = rtile.tok0, h0 = rtile.h0;
        const int n_tok = min(p.tile_tokens, seqlen_q - tok0);
        const bool whole = tok_span < n_tok;  // uniform over the warpgroup
        sm90::mbar_wait(&bar_empty[st], ((u / kStages) & 1) ^ 1);
        // Per-row table path: every thread is done reading the table (an earlier row tile's gather)
        // before it is rewritten - whole row tiles between two table tiles have no barrier.
        if (!whole) sync();
        RowRec* rec = rec_at(st);
        if (wtid < kBlockM) {
          const int rec_tok = rec_dec >> 8;
          const int tok = tok0 + rec_tok, head = h0 + (rec_dec & 0xff);
          int kmax = 0;
          uint32_t keep = 0;
          int64_t qacc = -1;
          RowOff<Elem> ro{nullptr, nullptr};
          if (rec_tok < n_tok) {
            const int64_t li = static_cast<int64_t>(head) * p.total_q + q_start + tok;
            cp_async_4(&rec->lse[wtid], p.lse + li);
            cp_async_4(&rec->dd[wtid], p.softmax_d + li);
            kmax = sb.key_limit(tok, Is_causal) - key0;
            const int64_t grow = static_cast<int64_t>(q_start) + tok;
            qacc = (grow * p.h_q + head) * static_cast<int64_t>(D);
            ro = row_ptrs(grow, head);
            // Keep bits: value-2 chunks, and value-1 chunks whose key block the row's mask keeps (the
            // reads are independent, so their latencies overlap; one block's bytes share a line).
            const uint8_t* mrow = p.mask + mask_row_offset(p, b, head, tok, hm_div);  // seqlen.h
#pragma unroll
            for (int ch = 0; ch < T::kChunks; ++ch) {
              const uint32_t v = (fl >> (2 * ch)) & 3u;
              uint32_t bit = v == 2u ? 1u : 0u;
              if (v == 1u) bit = mrow[sColOff[ch]] != 0 ? 1u : 0u;
              keep |= bit << ch;
            }
          } else {
            rec->lse[wtid] = INFINITY;
            rec->dd[wtid] = 0.f;
          }
          rec->kmax[wtid] = kmax;
          rec->keep[wtid] = keep;
          rec->qacc[wtid] = qacc;
          if (!whole) sRowOff[wtid] = ro;
        }
        if (wtid == 0) {
          rec->rt = rti;
          rec->flags = fl;
          rec->tok0 = tok0;
        }
        Elem* sQ = reinterpret_cast<Elem*>(smem + T::kOffQ + st * T::kQBytes);
        Elem* sdO = reinterpret_cast<Elem*>(smem + T::kOffDO + st * T::kQBytes);
        // Rows r = wtid / kRowChunks + kRowsPerPass * pass (a whole 8-row swizzle period per pass: the
        // shared offsets of a thread's rows are one base plus pass * kRowsPerPass * 128 bytes).
        static_assert(kRowsPerPass % 8 == 0, "gather passes step whole swizzle periods");
        if (whole) {
          const int64_t grow = static_cast<int64_t>(q_start) + tok0 + (gat_dec >> 8);
          const int head = h0 + (gat_dec & 0xff);
          const RowOff<Elem> r0 = row_ptrs(grow, head);
          const Elem* gq_r = r0.q + chunk * 8;
          const Elem* gdo_r = r0.dO + chunk * 8;
          const int64_t q_step = tok_step * p.q_row_stride, do_step = tok_step * p.do_row_stride;
          const uint32_t off0 = sm90::sw128_offset(wtid / kRowChunks, chunk * 8, kBlockM);
          cp_async_16_stepped<kBlockM / kRowsPerPass, kRowsPerPass * 128>(smem_u32(sQ) + off0, gq_r, q_step, smem_u32(sdO) + off0,
                                                                        gdo_r, do_step);
        } else {
          sync();  // the table written
          // A row that is not valid is zero-filled (its address is not read).
#pragma unroll 2
          for (int pass = 0; pass < kBlockM / kRowsPerPass; ++pass) {
            const int r = pass * kRowsPerPass + wtid / kRowChunks;
            const RowOff<Elem> ro = sRowOff[r];
            const uint32_t off = sm90::sw128_offset(r, chunk * 8, kBlockM) >> 1;
            const bool ok = ro.q != nullptr;
            cp_async_16_zfill(sQ + off, ro.q + chunk * 8, ok);
            cp_async_16_zfill(sdO + off, ro.dO + chunk * 8, ok);
          }
        }
        sm90::mbar_arrive(&bar_full[st]);  // release: this thread's record stores
        sm90::cp_async_mbar_arrive(&bar_full[st]);
      }
    }
    // End record.
    const int st = u % kStages;
    sm90::mbar_wait(&bar_empty[st], ((u / kStages) & 1) ^ 1);
    if (wtid == 0) rec_at(st)->rt = -1;
    sm90::mbar_arrive(&bar_full[st]);
    sm90::cp_async_mbar_arrive(&bar_full[st]);
  } else {
    // =============================== consumers ===============================
    sm90::regs_inc<T::kConsumerRegs>();
    const int lane = wtid & 31, warp = wtid >> 5;  // computed after the register increase (not carried over it)
    const int c = wg - 1;
    const int g = lane >> 2, t4 = lane & 3;
    // Atomic path: dQ is added here only at a high kept-tile density; else the q-major dQ kernel computes
    // it after this kernel (bwd_common.h dq_fused; the kernel's entry picks the instantiation).
    constexpr bool fuse_dq = Is_fused_dq;
    const uint32_t sK_addr = smem_u32(smem + T::kOffK);
    // K / V of the consumer's keys as the K-major A operand of S^T / dP^T.
    const uint64_t dk_base = sm90::make_smem_desc_sw128(sK_addr + c * (64 * 128), 16, 1024);
    const uint64_t dv_base = sm90::make_smem_desc_sw128(smem_u32(smem + T::kOffV) + c * (64 * 128), 16, 1024);
    // K / V rows [64 c, +64) of the tile (rows past the sequence zero-filled).
    {
      Elem* sK = reinterpret_cast<Elem*>(smem + T::kOffK);
      Elem* sV = reinterpret_cast<Elem*>(smem + T::kOffV);
      const Elem* gk = static_cast<const Elem*>(p.k) + static_cast<int64_t>(hk) * p.k_head_stride;
      const Elem* gv = static_cast<const Elem*>(p.v) + static_cast<int64_t>(hk) * p.v_head_stride;
#pragma unroll
      for (int pass = 0; pass < 64 / kRowsPerPass; ++pass) {
        const int r = 64 * c + pass * kRowsPerPass + wtid / kRowChunks;
        const bool ok = r < n_keys;
        const int64_t row = static_cast<int64_t>(k_start) + key0 + (ok ? r : 0);
        const uint32_t off = sm90::sw128_offset(r, chunk * 8, kBlockN) >> 1;
        cp_async_16(sK + off, gk + row * p.k_row_stride + chunk * 8, ok);
        cp_async_16(sV + off, gv + row * p.v_row_stride + chunk * 8, ok);
      }
      cp_async_commit();
      cp_async_wait<0>();
      sm90::fence_view_async_shared();
      sm90::named_sync(2 + c, 128);
    }

    float acc_dv[D / 2], acc_dk[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) acc_dv[i] = acc_dk[i] = 0.f;
    const int wkey = key0 + 64 * c + 16 * warp;  // first (sequence-local) key of the warp's chunk
    const float scale_log2 = p.scale_log2;

#pragma unroll 1
    for (int u = 0;; ++u) {
      const int st = u % kStages;
      sm90::mbar_wait(&bar_full[st], (u / kStages) & 1);
      const RowRec* rec = rec_at(st);
      if (rec->rt < 0) {
        sm90::mbar_arrive(&bar_empty[st]);
        break;
      }
      const uint32_t flags = rec->flags;
      const uint32_t myflags = (flags >> (8 * c)) & 0xffu;  // this consumer's 4 chunks
      // Both consumers keep a chunk of the row tile: split dQ (kDqSplitD). Else a consumer that keeps
      // nothing releases the stage at once and runs ahead (up to kStages - 1 row tiles).
      const bool split = fuse_dq && T::kDqSplitD && (flags & 0xffu) != 0u && (flags >> 8) != 0u;
      if (myflags == 0u && !split) {
        sm90::mbar_arrive(&bar_empty[st]);
        // Atomic path: the consumer's next worked row tile may reuse the dS^T buffer of its last one
        // (u & 1, or the stage); this barrier orders every warp's dQ reads of that buffer before any
        // warp's next dS^T stores (a worked row tile has its own barrier before its dQ).
        if (fuse_dq) sm90::named_sync(2 + c, 128);
        continue;
      }
      sm90::fence_view_async_shared();  // cp.async (generic proxy) writes -> wgmma (async proxy) reads
      const uint32_t sQ_addr = smem_u32(smem + T::kOffQ + st * T::kQBytes);
      const uint32_t sdO_addr = smem_u32(smem + T::kOffDO + st * T::kQBytes);
      // P^T / dS^T of the tile as the A fragments of the dV / dK wgmmas (k16 step kk = rows 16 kk ..).
      // They are fenced after the wgmma wait below, so ptxas keeps them live (unshared with any
      // temporary) until the asynchronous wgmmas that read them have completed (else it serialises every
      // wgmma of the kernel, ptxas C7513).
      uint32_t pa[4][4], dsa[4][4];
      // Releases the stage once every wgmma reading its Q / dO has completed (after a wgmma wait).
      auto release_stage = [&]() {
        if (myflags != 0) {
          sm90::fence_operands(acc_dv);
          sm90::fence_operands(acc_dk);
          sm90::fence_operands(pa);
          sm90::fence_operands(dsa);
        }
        sm90::mbar_arrive(&bar_empty[st]);
      };
      if (myflags != 0) {  // uniform over the warpgroup
        float acc_s[32], acc_dp[32];
        sm90::fence_operands(acc_s);
        sm90::fence_operands(acc_dp);
        sm90::wgmma_fence();
        const uint64_t dq_base = sm90::make_smem_desc_sw128(sQ_addr, 16, 1024);
        const uint64_t ddo_base = sm90::make_smem_desc_sw128(sdO_addr, 16, 1024);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
          sm90::wgmma_ss<64, Elem, 0>(acc_s, sm90::desc_add(dk_base, (kk / 4) * (kBlockN * 128) + (kk % 4) * 32),
                                      sm90::desc_add(dq_base, (kk / 4) * (kBlockM * 128) + (kk % 4) * 32), kk != 0);
        sm90::wgmma_commit();
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
          sm90::wgmma_ss<64, Elem, 0>(acc_dp, sm90::desc_add(dv_base, (kk / 4) * (kBlockN * 128) + (kk % 4) * 32),
                                      sm90::desc_add(ddo_base, (kk / 4) * (kBlockM * 128) + (kk % 4) * 32), kk != 0);
        sm90::wgmma_commit();
        // acc[4 j + e]: key wkey + g + 8 (e >> 1), row 8 j + 2 t4 + (e & 1) of the row tile.
        sm90::wgmma_wait<1>();  // S^T done; dP^T may still run
        sm90::fence_operands(acc_s);
        const int fw = static_cast<int>((myflags >> (2 * warp)) & 3u);
        const bool interior = fw == 2 && wkey + 16 <= seqlen_k && (!Is_causal || wkey + 15 <= rec->tok0 + causal_off);
        if (interior) {  // warp-uniform
#pragma unroll
          for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
              acc_s[4 * j + e] = fast_exp2(fmaf(acc_s[4 * j + e], scale_log2, rec->lse[8 * j + 2 * t4 + (e & 1)] * -kLog2e));
        } else {  // boundary chunk: the rows' key limits and keep bits (RowRec)
          const int kl = 64 * c + 16 * warp + g;  // CTA-local key of accumulator rows e < 2 (+ 8 for e >= 2)
          const int cidx = 4 * c + warp;
#pragma unroll
          for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e1 = 0; e1 < 2; ++e1) {
              const int col = 8 * j + 2 * t4 + e1;
              const float nl2 = rec->lse[col] * -kLog2e;
              const bool rok = (rec->keep[col] >> cidx) & 1u;
              const int kmax = rec->kmax[col];
#pragma unroll
              for (int h = 0; h < 2; ++h) {
                const int e = 2 * h + e1;
                const bool ok = rok && kl + 8 * h < kmax;
                acc_s[4 * j + e] = ok ? fast_exp2(fmaf(acc_s[4 * j + e], scale_log2, nl2)) : 0.f;
              }
            }
        }
        sm90::wgmma_wait<0>();
        sm90::fence_operands(acc_dp);
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            acc_dp[4 * j + e] = acc_s[4 * j + e] * (acc_dp[4 * j + e] - rec->dd[8 * j + 2 * t4 + (e & 1)]);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            pa[kk][e] = pack2<Elem>(acc_s[8 * kk + 2 * e], acc_s[8 * kk + 2 * e + 1]);
            dsa[kk][e] = pack2<Elem>(acc_dp[8 * kk + 2 * e], acc_dp[8 * kk + 2 * e + 1]);
          }
        }
        // dV += P^T dO, dK += dS^T Q: B = dO / Q of the stage, MN-major (k16 step = 16 rows = 2048 bytes,
        // LBO = the stride of its 64-column slabs).
        sm90::fence_operands(acc_dv);
        sm90::fence_operands(acc_dk);
        sm90::fence_operands(pa);
        sm90::fence_operands(dsa);
        sm90::wgmma_fence();
        const uint64_t ddo_t = sm90::make_smem_desc_sw128(sdO_addr, kBlockM * 128, 1024);
        const uint64_t dq_t = sm90::make_smem_desc_sw128(sQ_addr, kBlockM * 128, 1024);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) sm90::wgmma_rs<D, Elem, 1>(acc_dv, pa[kk], sm90::desc_add(ddo_t, kk * 2048), 1);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) sm90::wgmma_rs<D, Elem, 1>(acc_dk, dsa[kk], sm90::desc_add(dq_t, kk * 2048), 1);
        sm90::wgmma_commit();
      }
      if (fuse_dq) {
        // dS^T -> shared memory [keys][rows] (SW128, one 64-row slab): buffer st (per stage) when split
        // row tiles exist, else u & 1.
        unsigned char* sdS = smem + T::kOffDS + (T::kDqSplitD ? st : (u & 1)) * T::kDSBytes;
        const uint32_t sdS_addr = smem_u32(sdS);
        if (myflags != 0) {
          // dsa[kk][e] holds keys 64 c + 16 warp + 8 (e & 1) + g, rows 16 kk + 8 (e >> 1) + 2 t4 + 0..1:
          // stmatrix kk stores them as four 8 x 8 matrices e, lane 8 e + r addressing key row r of matrix
          // e. Its 16-byte chunk is (2 kk + (e >> 1)) ^ (key % 8) = 2 kk ^ ((e >> 1) ^ r) (the key group
          // starts at a multiple of 8), so the address of stmatrix kk is that of stmatrix 0 XOR 32 kk.
          const int key = 64 * c + 16 * warp + 8 * ((lane >> 3) & 1) + (lane & 7);
          const uint32_t a0 = sdS_addr + key * 128 + ((((lane >> 4) ^ lane) & 7) << 4);
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) sm90::stmatrix_x4_sa(a0 ^ (kk << 5), dsa[kk]);
        } else {  // split: zeros for the dQ wgmmas of the other consumer
#pragma unroll
          for (int i = 0; i < 4; ++i)
            *reinterpret_cast<uint4*>(sdS + (64 * c + 16 * warp + (lane >> 1)) * 128 + (lane & 1) * 64 + 16 * i) =
                make_uint4(0u, 0u, 0u, 0u);
        }
        sm90::fence_view_async_shared();
        if (split)
          sm90::named_sync(4, 128 * kNWG);  // both consumers' dS^T stored
        else
          sm90::named_sync(2 + c, 128);
        // One dQ pass: 64 dims (slab `slab` of K) over the keys from chunk kc0 on (kSteps 16-key chunks),
        // added into dq_accum in whole rows: each warp stages 4 of its 16 dQ rows at a time in its own 1 KB
        // (kOffStg; no barrier - the dS^T the wgmmas read is not reused for it) - the accumulator fragments
        // stored as 16-byte chunks (chunk k of staged row r at position k ^ 2 r), then read back so that
        // each half-warp adds one 256-byte row (16-byte red.global.add.v4.f32 per lane). Both are
        // conflict-free: the rows g of one half-warp (4 q .. 4 q + 3) store chunks 2 j and 2 j + 1 at the
        // 8 distinct positions (2 j ^ 2 r, (2 j + 1) ^ 2 r) mod 8 (an 8-byte store is served per half-warp);
        // a 16-byte load is served per quarter-warp (one row, chunks 0..7 or 8..15: distinct positions mod 8).
        // The L2 adds whole rows ~1.6x faster than the wgmma fragment pattern (NOTES v25).
        unsigned char* stg = smem + T::kOffStg + (4 * c + warp) * T::kStgBytesPerWarp;
        auto dq_pass = [&](auto steps, int slab, int kc0, bool first) {
          constexpr int kSteps = decltype(steps)::value;
          float acc_dq[32];
          sm90::fence_operands(acc_dq);
          sm90::wgmma_fence();
          // A = dS^T [keys][rows] read MN-major, B = K [keys][dims of the slab] read MN-major.
          const uint64_t da = sm90::make_smem_desc_sw128(sdS_addr + kc0 * 2048, kBlockN * 128, 1024);
          const uint64_t db =
              sm90::make_smem_desc_sw128(sK_addr + slab * (kBlockN * 128) + kc0 * 2048, kBlockN * 128, 1024);
#pragma unroll
          for (int i = 0; i < kSteps; ++i)
            sm90::wgmma_ss_ta<64, Elem, 1>(acc_dq, sm90::desc_add(da, i * 2048), sm90::desc_add(db, i * 2048), i != 0);
          sm90::wgmma_commit();
          sm90::wgmma_wait<0>();
          if (first && myflags != 0) {  // dV / dK wgmmas complete too: their operands may be reused
            sm90::fence_operands(acc_dv);
            sm90::fence_operands(acc_dk);
            sm90::fence_operands(pa);
            sm90::fence_operands(dsa);
          }
          sm90::fence_operands(acc_dq);
          float* accum = p.dq_accum + slab * 64;
          const int rr0 = lane >> 4, ck = lane & 15;  // read-back: staged row rr0 + 2 i, chunk ck
#pragma unroll
          for (int h = 0; h < 2; ++h) {  // the warp's rows g + 8 h
#pragma unroll
            for (int q = 0; q < 2; ++q) {  // ... of half-warp q: g = 4 q + r
              if ((g >> 2) == q) {
                const int r = g & 3;
#pragma unroll
                for (int j = 0; j < 8; ++j)
                  *reinterpret_cast<float2*>(stg + r * 256 + (((2 * j + (t4 >> 1)) ^ (2 * r)) << 4) + 8 * (t4 & 1)) =
                      make_float2(acc_dq[4 * j + 2 * h], acc_dq[4 * j + 2 * h + 1]);
              }
              __syncwarp();
#pragma unroll
              for (int i = 0; i < 2; ++i) {
                const int rr = rr0 + 2 * i;
                const float4 v = *reinterpret_cast<const float4*>(stg + rr * 256 + ((ck ^ (2 * rr)) << 4));
                const int64_t qo = rec->qacc[16 * warp + 8 * h + 4 * q + rr];
                if (qo >= 0) attn_bwd::red_add_f32x4(accum + qo + 4 * ck, v.x, v.y, v.z, v.w);
              }
              __syncwarp();  // read back before the next rows are stored
            }
          }
        };
        if (split) {  // slab c over every chunk of both consumers (a consumer that kept none wrote zeros)
          dq_pass(std::integral_constant<int, T::kChunks>{}, c, 0, true);
        } else {  // every slab over the consumer's own 4 chunks
#pragma unroll 1
          for (int slab = 0; slab < D / 64; ++slab) dq_pass(std::integral_constant<int, 4>{}, slab, 4 * c, slab == 0);
        }
        // The stage (Q / dO, its record: the dQ row offsets) goes back only now.
        sm90::mbar_arrive(&bar_empty[st]);
      } else {
        sm90::wgmma_wait<0>();
        release_stage();
      }
    }

    // ---- epilogue: dK * scale, dV for the consumer's keys (zeros where nothing attends)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int kr = 64 * c + 16 * warp + g + 8 * h;
      if (kr < n_keys) {
        const attn_bwd::DkDvRow<Elem> o = attn_bwd::dkdv_row<Elem>(p, static_cast<int64_t>(k_start) + key0 + kr, hk);
        Elem* gdk = o.dk;
        Elem* gdv = o.dv;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
          const int d = 8 * j + 2 * t4;
          *reinterpret_cast<uint32_t*>(gdk + d) = pack2<Elem>(acc_dk[4 * j + 2 * h] * p.scale, acc_dk[4 * j + 2 * h + 1] * p.scale);
          *reinterpret_cast<uint32_t*>(gdv + d) = pack2<Elem>(acc_dv[4 * j + 2 * h], acc_dv[4 * j + 2 * h + 1]);
        }
      }
    }
  }
#endif  // SEER_HAS_SM90A
}

}  // namespace bwd_sm90
}  // namespace seer
