// Parts of the Hopper (sm_90a) q-major kernels - the forward (fwd_kernel_sm90.cuh) and the backward's dQ
// kernel (bwd_dq_kernel_sm90.cuh): a CTA works on row tiles of one (sequence, kv head) - 64 rows, or 128
// rows split between two consumer warpgroups (the forward's pair kernel) - and streams the K / V of the
// row tile's kept key blocks through a shared-memory ring (64-key tiles; 128-key for the pair kernel).
//
//   RowTileTraits, ring_setup : the CTA's layout (two CTAs per SM, or one for the pair kernel) and its
//                 barriers.
//   WorkItem    : what a role needs about one work item (uniform over the CTA).
//   kv_producer : the producer warpgroup: per work item, walks the kept-block stream (block_iter.h); per
//                 K/V tile (64 keys; 128 for the pair kernel): reads the user-mask bytes of the tile's value-1 chunks for the row
//                 tile's rows, waits for the stage to be empty, writes the tile's metadata (Meta: chunk
//                 keys, values, per-row keep bits), loads its K and V: each whole 64-key group as TMA boxes
//                 from thread 0 (common/sm90_tma.h; maps from with_kv_tma), the rest with cp.async (16-key
//                 chunks at any multiple of 16; rows past the key limit zero-filled), arrives on `full`
//                 (plain - thread 0's announcing the boxes' bytes - and cp.async). After the last tile of an item it publishes an end marker (key[0] == kNoKey,
//                 key[1] = the CTA's next queue position, claimed at the item's start) and goes on with
//                 that item.
//   gather_tile_rows : Q (or dO) rows of a row tile into shared memory (cp.async).
//   run_roles   : the kernel body up to the role split (producer warpgroup / consumer warpgroups), the CTA's
//                 work from the work queue (tile_scheduler.h ItemQueue).
//   launch_persistent : the host side: T::kCtasPerSm CTAs per SM taking work items from the queue.
//   wgmma_rows_keys : S-shaped GEMM (row operand x K/V stage^T) from shared memory.
//   issue_rows_stage : O-shaped GEMM (a register tile x K/V stage), issued and committed.
//   pack_rows_operand : the S-shaped accumulator packed as the A operand of the O-shaped GEMM.
//   consume_stream : the consumer's walk over one item's K/V tiles (waits for each, calls the kernel's
//                 per-tile step, releases the end marker's stage).
//   ThreadRows, RowMask : a consumer thread's two rows of the row tile: where they live; key limits and
//                 where their keep bits sit in TileMeta::rowkeep, and the masking of an S tile (only
//                 boundary tiles pay for it).
//   end_of_item, handoff_operand : the consumer's pipeline around its items (prefetch of the next item's
//                 rows with the last pending GEMM; the in-flight A operand's register hand-off).
//
// Stage layout (Traits): K[kStages], V[kStages] of kBlockN keys in the 128-byte-swizzled slab layout
// wgmma reads (common/sm90_primitives.h); barriers full (count 256: one plain arrival after its metadata
// stores and one cp.async arrival per producer thread; plus the TMA boxes' bytes) and empty (one per consumer thread); Meta
// [kStages] in kMetaSlot-byte slots; the producer's list scratch (block_iter.h); the producer's hand-over of the
// next queue position (2 ints). Tile u (counted over the whole persistent loop) uses stage u % kStages, phase
// (u / kStages) & 1.
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>

#include "common/device_facts.h"
#include "common/launch.h"
#include "common/platform.h"
#include "common/sm80_primitives.h"
#include "common/sm90_primitives.h"
#include "common/sm90_wgmma.h"
#include "common/sm90_pipeline.h"
#include "common/sm90_tma.h"
#include "attention/attention_params.h"
#include "attention/block_iter.h"
#include "attention/seqlen.h"
#include "attention/tile_scheduler.h"

namespace seer {
namespace sm90_rows {

// A row tile's S-shaped accumulator (N = kBlockN / 2 floats per thread: the n8 fragments of its keys, in
// order) packed as the A operand of the GEMM that follows it (P V, dS K): 16 keys per fragment kk, four
// registers of two elements each.
template <typename Elem, int N>
SEER_DEVICE void pack_rows_operand(const float (&s)[N], uint32_t (&a)[N / 8][4]) {
  static_assert(N % 8 == 0, "whole 16-key fragments");
#pragma unroll
  for (int kk = 0; kk < N / 8; ++kk) {
    a[kk][0] = pack2<Elem>(s[8 * kk + 0], s[8 * kk + 1]);
    a[kk][1] = pack2<Elem>(s[8 * kk + 2], s[8 * kk + 3]);
    a[kk][2] = pack2<Elem>(s[8 * kk + 4], s[8 * kk + 5]);
    a[kk][3] = pack2<Elem>(s[8 * kk + 6], s[8 * kk + 7]);
  }
}

// What the producer tells the consumers about the tile in a stage (kChunks 16-key chunks: 4 for 64-key
// tiles of 64-row row tiles, 8 for the pair kernel's 128-key tiles of 128-row row tiles).
template <int kChunks_>
struct alignas(16) TileMetaT {
  static constexpr int kChunks = kChunks_;
  static_assert(kChunks == 4 || kChunks == 8, "64-key tiles of 64 rows or 128-key tiles of 128 rows");
  // The first 16 bytes are what a consumer reads at every tile, in one load (TileHead).
  uint32_t vbits;    // tile-mask value of chunk c at bits 4c..4c+1
  int lim;           // masking limit: key[kChunks - 1] + 16 when every chunk has value 2 (kept by every row),
                     // else INT_MAX - a warp whose rows all see keys below lim skips the masking (RowMask)
  int key[kChunks];  // first key of each 16-key chunk (kNoKey: empty chunk; key[0] == kNoKey: end of the item's
                     // stream, key[1] then the CTA's next queue position - ItemQueue::n when there is none)
  // The user-mask keep bits of row r of the row tile (bit c: the row keeps chunk c): 4 chunks - nibble
  // r & 1 of byte r / 2 (64 rows); 8 chunks - byte r (128 rows). Written (by the producer, which reads the
  // mask bytes ahead of the consumer) only for tiles with a value-1 chunk, and read only for value-1
  // chunks; 0 for padding rows.
  uint8_t rowkeep[kChunks == 4 ? 32 : 128];
  SEER_HOST_DEVICE static constexpr int keep_byte(int r) { return kChunks == 4 ? r >> 1 : r; }
  SEER_HOST_DEVICE static constexpr int keep_shift(int r) { return kChunks == 4 ? 4 * (r & 1) : 0; }
};
// A tile's first 16 bytes as the consumer loads them (the same fields as TileMetaT's first four words).
struct alignas(16) TileHead {
  uint32_t vbits;  // TileMetaT::vbits: the chunks' tile-mask values
  int lim;         // TileMetaT::lim: masking limit (RowMask::needs)
  int key0, key1;  // key[0], key[1] (key0 == kNoKey: the end marker, key1 then the CTA's next queue position)
};
using TileMeta = TileMetaT<4>;
static_assert(sizeof(TileMetaT<4>) <= 64 && sizeof(TileMetaT<8>) <= 256, "TileMeta slots");
static_assert(offsetof(TileMetaT<8>, key) == 8 && offsetof(TileMetaT<4>, key) == 8, "TileHead = the first 16 bytes");

// Layout of a q-major kernel: a producer warpgroup and kConsumers consumer warpgroups of 64 rows each
// (one: two CTAs per SM, 64-row row tiles, 64-key K/V tiles; two - the forward's pair kernel - one CTA per
// SM, 128-row row tiles whose halves share one stream of 128-key tiles); kRowOps row operands (Q; Q and
// dO) of kBlockM x D per consumer, then the K/V ring of kStages stages, then the barriers, TileMeta slots
// and the producer's list scratch.
template <int kHeadDim_, typename Elem_, int kStages_, int kRowOps_, int kConsumers_ = 1>
struct RowTileTraits {
  using Elem = Elem_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kConsumers = kConsumers_;
  static_assert(kConsumers == 1 || kConsumers == 2, "one or two consumer warpgroups");
  static constexpr int kCtasPerSm = kConsumers == 1 ? 2 : 1;
  static constexpr int kBlockM = 64;                       // rows per consumer warpgroup (its wgmma M)
  static constexpr int kTileRows = kBlockM * kConsumers;   // rows per row tile
  static constexpr int kBlockN = 64 * kConsumers;          // keys per K/V tile
  static constexpr int kChunks = kBlockN / 16;
  using Meta = TileMetaT<kChunks>;
  static constexpr int kMetaSlot = kChunks == 4 ? 64 : 256;  // bytes per TileMeta slot
  static constexpr int kNFrags = kBlockN / 8;    // n8 fragments of S
  static constexpr int kKSteps = kHeadDim / 16;  // k16 steps of a GEMM over the head dim
  static constexpr int kConsumerThreads = 128 * kConsumers;
  static constexpr int kThreads = 128 + kConsumerThreads;  // producer + consumer warpgroups
  // Register split (setmaxnreg) of the 65536 / kCtasPerSm registers of a CTA (the launch gives each
  // thread 65536 / (kCtasPerSm * kThreads): 128 or 168).
  static constexpr int kProducerRegs = kConsumers == 1 ? 48 : 64;
  static constexpr int kConsumerRegs = kConsumers == 1 ? 208 : 216;
  static_assert(kCtasPerSm * 128 * (kProducerRegs + kConsumers * kConsumerRegs) <= 65536, "register file");
  static constexpr int kTileBytes = kBlockN * kHeadDim * 2;  // one K (or V) stage
  static constexpr int kQBytes = kBlockM * kHeadDim * 2;     // one row operand of one consumer
  static constexpr int kStages = kStages_;
  static constexpr int kRowOps = kRowOps_;
  static_assert(kRowOps == 1 || kConsumers == 1, "the pair kernel is the forward's");
  // Shared memory (1024-byte aligned base): row operands, K[kStages], V[kStages], then small regions.
  static constexpr int kOffQ = 0;                 // consumer c's Q at kOffQ + c * kQBytes
  static constexpr int kOffDO = kOffQ + kQBytes;  // second row operand (kRowOps 2)
  static constexpr int kOffK = kOffQ + kRowOps * kConsumers * kQBytes;
  static constexpr int kOffV = kOffK + kStages * kTileBytes;
  static constexpr int kOffFull = kOffV + kStages * kTileBytes;  // uint64 [kStages]
  static constexpr int kOffEmpty = kOffFull + 8 * kStages;       // uint64 [kStages]
  static constexpr int kOffMeta = kOffEmpty + 8 * kStages;       // Meta [kStages] in kMetaSlot-byte slots
  static constexpr int kOffList = kOffMeta + kMetaSlot * kStages;  // producer block list: int[128]
  static constexpr int kOffListVal = kOffList + 128 * 4;         // uint8[128]
  static constexpr int kOffWarpCnt = kOffListVal + 128;          // int[4]
  static constexpr int kOffNext = kOffWarpCnt + 4 * 4;            // int[2]: the producer's next queue position
  // Two CTAs per SM (e.g. 113 KB each for the D 128 forward) or the pair kernel's 225 KB leave no room for
  // alignment slack: the kernels rely on the dynamic shared memory starting 1024-byte aligned (it does on
  // sm_90: there is no static shared memory) and trap otherwise (ring_setup).
  static constexpr int kSmemBytes = kOffNext + 2 * 4;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "wgmma N = head dim");
  static_assert(kRowOps == 1 || kRowOps == 2, "row operands");
  static_assert(kOffDO % 1024 == 0 && kOffK % 1024 == 0 && kOffV % 1024 == 0 && kTileBytes % 1024 == 0,
                "SW128 tiles 1024-aligned");
  static_assert(kCtasPerSm * (kSmemBytes + 1024) <= 228 * 1024 && kSmemBytes <= 227 * 1024, "shared memory");
};

// The CTA's shared memory (checked 1024-byte aligned) with the ring's barriers initialised (full: 256 =
// 128 plain + 128 cp.async arrivals of the producer threads; empty: one per consumer thread). Called by
// every thread.
template <typename T>
SEER_DEVICE unsigned char* ring_setup(unsigned char* smem_raw) {
  const uint32_t pad = smem_pad_1024(smem_raw);
  if (pad != 0) __trap();  // no room to align the SW128 tiles (see RowTileTraits::kSmemBytes)
  unsigned char* smem = smem_raw + pad;
  if (threadIdx.x == 0) {
    uint64_t* bar_full = reinterpret_cast<uint64_t*>(smem + T::kOffFull);
    uint64_t* bar_empty = reinterpret_cast<uint64_t*>(smem + T::kOffEmpty);
    for (int st = 0; st < T::kStages; ++st) {
      sm90::mbar_init(&bar_full[st], 256);
      sm90::mbar_init(&bar_empty[st], T::kConsumerThreads);
    }
    sm90::mbar_init_fence();
  }
  __syncthreads();
  return smem;
}

// Everything a role needs about one work item (uniform over the CTA).
struct WorkItem {
  ItemTile t;
  SeqBounds sb;  // clamped sequence bounds (seqlen.h)
  int q_start, k_start, seqlen_q, seqlen_k;  // copies of sb's
  RowTile rows;  // (the work queue lists only row tiles with rows inside the sequence)
};
SEER_DEVICE WorkItem work_item(const AttnParams& p, int w) {
  WorkItem it;
  it.t = item_tile(p, w);
  const int b = it.t.b;
  it.sb = seq_bounds(p, b);
  it.q_start = it.sb.q_start;
  it.k_start = it.sb.k_start;
  it.seqlen_q = it.sb.seqlen_q;
  it.seqlen_k = it.sb.seqlen_k;
  it.rows = row_tile(p, it.t.hk, it.t.rt);
  return it;
}

// Gathers kBlockM rows r0 .. r0 + kBlockM - 1 of a row tile (row r = token tok0 + r / pack, head h0 + r %
// pack) of a [T, H, D] tensor into a 128-byte-swizzled shared tile of kBlockM rows with cp.async (called
// by a whole warpgroup, wtid 0..127; committed; padding rows zero-filled).
template <typename Elem, int D, int kBlockM>
SEER_DEVICE void gather_tile_rows(Elem* dst, const Elem* g, int64_t row_stride, int64_t head_stride,
                                  const AttnParams& p, const WorkItem& it, int wtid, int r0 = 0) {
  constexpr int kRowChunks = D / 8;
  constexpr int kRowsPerPass = 128 / kRowChunks;
  const int chunk = wtid % kRowChunks;
  const int rows_used = p.tile_tokens * p.pack;
  const RowTile& me = it.rows;
#pragma unroll
  for (int pass = 0; pass < kBlockM / kRowsPerPass; ++pass) {
    const int r = pass * kRowsPerPass + wtid / kRowChunks;
    const int tr = r0 + r;  // row of the row tile
    const int tok = me.tok0 + tr / p.pack;
    const int h = me.h0 + tr % p.pack;
    const bool ok = tr < rows_used && tok < it.seqlen_q;
    const Elem* src = ok ? g + static_cast<int64_t>(it.q_start + tok) * row_stride + static_cast<int64_t>(h) * head_stride + chunk * 8
                         : g;
    cp_async_16(dst + (sm90::sw128_offset(r, chunk * 8, kBlockM) >> 1), src, ok);
  }
  cp_async_commit();
}

// The producer warpgroup (wtid = its thread 0..127) over the CTA's work items: queue position q.first(),
// then the positions thread 0 claims, one per item at the item's start (the atomic's latency hides behind
// the item's stream); the position goes to the consumers in the item's end marker and to the other
// producer threads through shared memory (two slots by item parity: a slot is rewritten two items later,
// after every producer thread has passed the next item's hand-over barrier).
template <typename T>
SEER_DEVICE void kv_producer(const AttnParams& p, unsigned char* smem, int wtid, const ItemQueue& q) {
  using Elem = typename T::Elem;
  constexpr int D = T::kHeadDim, kBlockN = T::kBlockN, kChunks = T::kChunks, kStages = T::kStages;
  using Meta = typename T::Meta;
  uint64_t* bar_full = reinterpret_cast<uint64_t*>(smem + T::kOffFull);
  uint64_t* bar_empty = reinterpret_cast<uint64_t*>(smem + T::kOffEmpty);
  BlockStreamSmem sm;
  sm.blk = reinterpret_cast<int*>(smem + T::kOffList);
  sm.val = reinterpret_cast<uint8_t*>(smem + T::kOffListVal);
  sm.warp_cnt = reinterpret_cast<int*>(smem + T::kOffWarpCnt);
  auto sync = []() { sm90::named_sync(1, 128); };
  constexpr int kRowChunks = D / 8;               // 16-byte chunks per row
  constexpr int kRowsPerPass = 128 / kRowChunks;  // 8 (D 128) or 16 (D 64)
  static_assert(16 % kRowsPerPass == 0, "a copy pass stays inside one 16-key chunk");
  // The whole-group copies below step one shared address by kRowsPerPass rows: the 128-byte swizzle must
  // repeat (it depends on row % 8 only). Holds at D 64 / 128 (16 / 8 rows); D 256 would need 4.
  static_assert(kRowsPerPass % 8 == 0, "shared offsets of a thread's passes differ by whole 8-row swizzle periods");
  const int chunk = wtid % kRowChunks;
  static_assert(T::kTileRows == (kChunks == 4 ? 64 : 128), "Meta::rowkeep holds the row tile's rows");
  int* next_slot = reinterpret_cast<int*>(smem + T::kOffNext);
  const sm90::TmaMap* k_map = reinterpret_cast<const sm90::TmaMap*>(p.kv_tma_map[0]);  // the kernel's parameters
  const sm90::TmaMap* v_map = reinterpret_cast<const sm90::TmaMap*>(p.kv_tma_map[1]);
  if (p.kv_tma && wtid == 0) {
    sm90::tma_prefetch_map(k_map);
    sm90::tma_prefetch_map(v_map);
  }
  int u = 0, k = 0;
  for (int w = q.first(); w < q.n; ++k) {
    const int claimed = wtid == 0 ? q.claim() : 0;  // thread 0's; used at the item's end marker
    const WorkItem it = work_item(p, q.item(w));  // valid (the queue lists valid items only)
    // User-mask row of row tile row wtid (threads 0..kTileRows-1; ThreadRows' rule), nullptr for padding rows.
    const uint8_t* mrow = nullptr;
    if (wtid < T::kTileRows) {
      const int tok = it.rows.tok0 + wtid / p.pack, h = it.rows.h0 + wtid % p.pack;
      if (wtid < p.tile_tokens * p.pack && tok < it.seqlen_q) mrow = p.mask + mask_row_offset(p, it.t.b, h, tok);
    }
    const int64_t tm_base = (static_cast<int64_t>(it.t.b) * p.h_kv + it.t.hk) * p.n_row_tiles * p.nb_k;
    BlockStreamSrc src;
    src.row = p.tile_mask + tm_base + static_cast<int64_t>(it.t.rt) * p.nb_k;
    src.key_limit = it.sb.key_limit(min(it.rows.tok0 + p.tile_tokens, it.seqlen_q) - 1, p.causal);  // last row's
    src.scan_end = src.key_limit > 0 ? min(p.nb_k, (src.key_limit + p.block_size_k - 1) / p.block_size_k) : 0;
    src.block_k = p.block_size_k;
    const Elem* gk = static_cast<const Elem*>(p.k) + static_cast<int64_t>(it.k_start) * p.k_row_stride +
                     static_cast<int64_t>(it.t.hk) * p.k_head_stride;
    const Elem* gv = static_cast<const Elem*>(p.v) + static_cast<int64_t>(it.k_start) * p.v_row_stride +
                     static_cast<int64_t>(it.t.hk) * p.v_head_stride;
    BlockCursor cur;
    for (;; ++u) {
      int ck[kChunks], cb[kChunks];
      uint32_t vbits;
      if constexpr (kChunks == 4) {
        block_next_tile<128, 4>(cur, src, sm, wtid, sync, ck, cb, vbits);
      } else {
        // A 128-key tile as two groups of 4 chunks: a tile of two 64-key blocks takes the iterator's
        // fast path twice (one call of 8 chunks would take its chunk-by-chunk path).
        int ck1[4], cb1[4], ck2[4], cb2[4];
        uint32_t v1, v2;
        block_next_tile<128, 4>(cur, src, sm, wtid, sync, ck1, cb1, v1);
        block_next_tile<128, 4>(cur, src, sm, wtid, sync, ck2, cb2, v2);
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          ck[c] = ck1[c];
          cb[c] = cb1[c];
          ck[4 + c] = ck2[c];
          cb[4 + c] = cb2[c];
        }
        vbits = v1 | (v2 << 16);
      }
      // Keep bits of row wtid for the tile's value-1 chunks (the mask reads issued before the stage wait),
      // behind one uniform branch: a tile without value-1 chunks (every tile of a 2D mask) jumps over the
      // reads' address arithmetic, which ptxas otherwise issues predicated off (SASS, with the value-1
      // mask below: 224 -> 175 instructions per tile of a 2D mask, D 128 forward).
      // Bit 4c: chunk c has value 1 (values are 0, 1, 2 in bits 4c..4c+1; uniform).
      const uint32_t v1bits = vbits & ~(vbits >> 1) & 0x11111111u;
      const bool has_v1 = v1bits != 0;
      uint32_t rk = 0;
      if (has_v1 && mrow != nullptr) {
#pragma unroll
        for (int c = 0; c < kChunks; ++c)
          if (((v1bits >> (4 * c)) & 1u) != 0 && mrow[static_cast<int64_t>(cb[c]) * p.mask_stride_col] != 0) rk |= 1u << c;
      }
      const int st = u % kStages;
      sm90::mbar_wait(&bar_empty[st], ((u / kStages) & 1) ^ 1);
      Meta* m = reinterpret_cast<Meta*>(smem + T::kOffMeta + T::kMetaSlot * st);
      if (wtid == 0) {
#pragma unroll
        for (int c = 0; c < kChunks; ++c) m->key[c] = ck[c];
        if (ck[0] == kNoKey) m->key[1] = claimed;  // the end marker: the CTA's next position
        m->vbits = vbits;
        uint32_t all2 = 0;
#pragma unroll
        for (int c = 0; c < kChunks; ++c) all2 |= 2u << (4 * c);
        m->lim = (vbits & (all2 | (all2 >> 1))) == all2 ? ck[kChunks - 1] + 16 : INT_MAX;
      }
      if (has_v1) {  // uniform
        if constexpr (kChunks == 4) {
          const uint32_t rk_odd = SEER_SHFL_XOR(rk, 1);  // the pair's odd row
          if (wtid < T::kTileRows && (wtid & 1) == 0) m->rowkeep[wtid >> 1] = static_cast<uint8_t>(rk | (rk_odd << 4));
        } else {
          m->rowkeep[wtid] = static_cast<uint8_t>(rk);  // 128 rows, one per producer thread
        }
      }
      // The tile's 64-key groups of 4 chunks: "whole" - 64 consecutive keys all below the key limit (a kept
      // block of 64 keys or more: every tile at P1 / P2's block 64); uniform; kNoKey: no.
      bool whole[kChunks / 4];
      int n_whole = 0;
#pragma unroll
      for (int g = 0; g < kChunks / 4; ++g) {
        whole[g] = ck[4 * g + 3] == ck[4 * g] + 48 && ck[4 * g] + 64 <= src.key_limit;
        n_whole += whole[g] ? 1 : 0;
      }
      // With TMA maps, thread 0 loads the whole groups as boxes: its arrival (release: this thread's metadata
      // stores are visible after the wait) announces their bytes, which complete the phase as they land.
      const bool tma = p.kv_tma && n_whole > 0;  // uniform
      if (wtid == 0 && tma)
        sm90::mbar_arrive_expect_tx(&bar_full[st], static_cast<uint32_t>(n_whole * 2 * (D / 64) * sm90::kTmaBoxBytes));
      else
        sm90::mbar_arrive(&bar_full[st]);
      if (ck[0] != kNoKey) {
        Elem* sK = reinterpret_cast<Elem*>(smem + T::kOffK + st * T::kTileBytes);
        Elem* sV = reinterpret_cast<Elem*>(smem + T::kOffV + st * T::kTileBytes);
        constexpr int kPasses = 16 / kRowsPerPass;  // copy passes per 16-key chunk
        const int rsub = wtid / kRowChunks;          // the thread's row within a pass
        // A whole group is one TMA box per 64-column slab and tensor (from thread 0), or without maps copied
        // without predicates, one pointer per tensor stepped by kRowsPerPass rows and one shared base address
        // (~3 instructions per copy instead of ~7: NOTES v22, the producer issued 39% of the single kernel's
        // instructions at P1 d = 0.1). Other groups are gathered chunk by chunk.
#pragma unroll
        for (int g = 0; g < kChunks / 4; ++g) {
          if (whole[g] && tma) {
            if (wtid == 0) {
              // The stage's earlier contents were written through the generic proxy (cp.async) in some rounds.
              sm90::fence_view_async_shared();
              const int row0 = it.k_start + ck[4 * g];
#pragma unroll
              for (int sl = 0; sl < D / 64; ++sl) {
                const uint32_t off = sm90::sw128_offset(64 * g, 64 * sl, kBlockN);  // 1024-byte aligned
                sm90::tma_load_rows(reinterpret_cast<unsigned char*>(sK) + off, k_map, 64 * sl, it.t.hk, row0, &bar_full[st]);
                sm90::tma_load_rows(reinterpret_cast<unsigned char*>(sV) + off, v_map, 64 * sl, it.t.hk, row0, &bar_full[st]);
              }
            }
            continue;
          }
          if (whole[g]) {
            const int row0 = ck[4 * g] + rsub;
            const Elem* pk = gk + static_cast<int64_t>(row0) * p.k_row_stride + chunk * 8;
            const Elem* pv = gv + static_cast<int64_t>(row0) * p.v_row_stride + chunk * 8;
            const int64_t step_k = static_cast<int64_t>(kRowsPerPass) * p.k_row_stride;
            const int64_t step_v = static_cast<int64_t>(kRowsPerPass) * p.v_row_stride;
            // Pass j's shared bytes lie j * kRowsPerPass rows (of 128 bytes) after pass 0's: the swizzle
            // depends on the row only through row % 8. One base address; the constants become immediates.
            const uint32_t s_k = smem_u32(sK) + sm90::sw128_offset(64 * g + rsub, chunk * 8, kBlockN);
            const uint32_t s_v = smem_u32(sV) + sm90::sw128_offset(64 * g + rsub, chunk * 8, kBlockN);
            cp_async_16_stepped<64 / kRowsPerPass, kRowsPerPass * 128>(s_k, pk, step_k, s_v, pv, step_v);
            continue;
          }
#pragma unroll
          for (int c = 4 * g; c < 4 * g + 4; ++c) {
            // One 64-bit row offset per chunk and tensor, stepped by kRowsPerPass rows for the chunk's
            // later passes. A key past the limit (kNoKey included) is zero-filled and its address is not
            // read (cp.async with no source bytes): a first pass then points at row 0, a later pass may
            // point past the tensor's end (never dereferenced).
            const int key0 = ck[c] + rsub;  // kNoKey + 15 + 8 does not overflow
            const uint32_t row0 = key0 < src.key_limit ? static_cast<uint32_t>(key0) : 0u;
            const Elem* pk = gk + static_cast<int64_t>(row0) * p.k_row_stride + chunk * 8;
            const Elem* pv = gv + static_cast<int64_t>(row0) * p.v_row_stride + chunk * 8;
#pragma unroll
            for (int j = 0; j < kPasses; ++j) {
              const int r = 16 * c + j * kRowsPerPass + rsub;
              const bool ok = key0 + j * kRowsPerPass < src.key_limit;
              const uint32_t off = sm90::sw128_offset(r, chunk * 8, kBlockN) >> 1;
              cp_async_16(sK + off, pk + static_cast<int64_t>(j * kRowsPerPass) * p.k_row_stride, ok);
              cp_async_16(sV + off, pv + static_cast<int64_t>(j * kRowsPerPass) * p.v_row_stride, ok);
            }
          }
        }
      }
      sm90::cp_async_mbar_arrive(&bar_full[st]);
      if (ck[0] == kNoKey) {
        ++u;
        break;  // the end marker of this item is out
      }
    }
    if (wtid == 0) next_slot[k & 1] = claimed;
    sync();
    w = next_slot[k & 1];
  }
}

// Body of a q-major kernel: ring_setup, then the role split - warpgroup 0 runs kv_producer with
// T::kProducerRegs registers, warpgroup 1 + c (c < T::kConsumers) calls consumer(smem, wtid, queue, c) with
// T::kConsumerRegs -, then the CTA's exit from the queue (ItemQueue::cta_done, after every role is done).
template <typename T, typename Consumer>
SEER_DEVICE void run_roles(const AttnParams& p, Consumer&& consumer) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char* smem = ring_setup<T>(smem_raw);
  const int wtid = threadIdx.x % 128;
  const ItemQueue queue = ItemQueue::of(p);  // tile_scheduler.h
  if (threadIdx.x < 128) {
    sm90::regs_dec<T::kProducerRegs>();
    kv_producer<T>(p, smem, wtid, queue);
  } else {
    sm90::regs_inc<T::kConsumerRegs>();
    // Through a shuffle: ptxas then treats the index as warp-uniform and forms the consumer's shared-memory
    // descriptors in uniform registers (CUTLASS canonical_warp_group_idx).
    const int cwg = T::kConsumers == 1 ? 0 : __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x / 128), 0) - 1;
    consumer(smem, wtid, queue, cwg);
  }
  __syncthreads();  // the producer's last claim is made
  if (threadIdx.x == 0) queue.cta_done();
}

// acc (kBlockM rows x kBlockN keys) = A B^T over the head dim, both from shared memory in SW128 slabs: A a
// row operand (Q or dO, kBlockM x D), B a K/V stage (kBlockN x D), both K-major. Issued, not committed:
// the caller fences the accumulator before and commits after.
template <typename T>
SEER_DEVICE void wgmma_rows_keys(float (&acc)[T::kBlockN / 2], uint32_t a_addr, uint32_t b_addr) {
  const uint64_t da = sm90::make_smem_desc_sw128(a_addr, 16, 1024);
  const uint64_t db = sm90::make_smem_desc_sw128(b_addr, 16, 1024);
#pragma unroll
  for (int kk = 0; kk < T::kKSteps; ++kk)
    sm90::wgmma_ss<T::kBlockN, typename T::Elem, 0>(acc, sm90::desc_add(da, (kk / 4) * (T::kBlockM * 128) + (kk % 4) * 32),
                                                    sm90::desc_add(db, (kk / 4) * (T::kBlockN * 128) + (kk % 4) * 32), kk != 0);
}

// acc (kBlockM rows x D) += A B, issued and committed (not waited): A the kBlockM x kBlockN tile packed in
// registers (P in the forward's P V, dS in the dQ kernel's dS K; k16 step kk = keys 16 kk ..), B a K/V
// stage read MN-major (k16 step kk starts 16 rows = 2048 bytes further; LBO = the stride of its
// 64-column slabs).
template <typename T>
SEER_DEVICE void issue_rows_stage(float (&acc)[T::kHeadDim / 2], uint32_t (&a)[T::kBlockN / 16][4], uint32_t b_addr) {
  sm90::fence_operands(acc);
  sm90::fence_operands(a);
  sm90::wgmma_fence();
  const uint64_t db = sm90::make_smem_desc_sw128(b_addr, T::kBlockN * 128, 1024);
#pragma unroll
  for (int kk = 0; kk < T::kBlockN / 16; ++kk)
    sm90::wgmma_rs<T::kHeadDim, typename T::Elem, 1>(acc, a[kk], sm90::desc_add(db, kk * 2048), 1);
  sm90::wgmma_commit();
}

// How an item's stream ended (consume_stream).
struct StreamEnd {
  bool pending;  // a tile is pending (its stage in pend_st): the caller finishes it
  int next;      // the CTA's next queue position (the end marker's key[1]; ItemQueue::n: none)
};

// The consumer's walk over one work item's K/V stream (tile u of the whole persistent loop in stage
// u % kStages): waits for each tile, calls first(st, m, h) for the item's first tile and
// next(st, pend_st, m, h) for the others (m the tile's T::Meta, h its TileHead) (pend_st: the previous tile's
// stage, which the caller releases once the GEMM left pending on it is done - in `next`, or a tile later),
// reads the end marker's next position, releases its stage and leaves u past it.
template <typename T, typename First, typename Next>
SEER_DEVICE StreamEnd consume_stream(unsigned char* smem, int& u, int& pend_st, First&& first, Next&& next) {
  uint64_t* bar_full = reinterpret_cast<uint64_t*>(smem + T::kOffFull);
  uint64_t* bar_empty = reinterpret_cast<uint64_t*>(smem + T::kOffEmpty);
  bool pending = false;
  int w_next;
  // Stage and phase of tile u, stepped along (one division per item, not per tile).
  int st = u % T::kStages, par = (u / T::kStages) & 1;
  for (;; ++u) {
    sm90::mbar_wait(&bar_full[st], par);
    const typename T::Meta* m = reinterpret_cast<const typename T::Meta*>(smem + T::kOffMeta + T::kMetaSlot * st);
    const TileHead h = *reinterpret_cast<const TileHead*>(m);  // one 16-byte load
    if (h.key0 == kNoKey) {  // end of this item's stream
      w_next = h.key1;
      sm90::mbar_arrive(&bar_empty[st]);
      ++u;
      break;
    }
    sm90::fence_view_async_shared();  // cp.async (generic proxy) writes -> wgmma (async proxy) reads
    if (!pending)
      first(st, m, h);
    else
      next(st, pend_st, m, h);
    pending = true;
    pend_st = st;
    if (++st == T::kStages) {
      st = 0;
      par ^= 1;
    }
  }
  return StreamEnd{pending, w_next};
}

// The two rows a consumer thread owns in the wgmma accumulator layout (rows g and g + 8 of its warp's 16
// in the row tile): token, q head, whether the row lies inside the sequence, and where it lives.
struct ThreadRows {
  int tok[2], h[2];
  bool ok[2];
  SEER_DEVICE ThreadRows(const AttnParams& p, const WorkItem& it, int warp_row0, int g) {
    const int rows_used = p.tile_tokens * p.pack;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const int r = warp_row0 + g + rr * 8;
      tok[rr] = it.rows.tok0 + r / p.pack;
      h[rr] = it.rows.h0 + r % p.pack;
      ok[rr] = r < rows_used && tok[rr] < it.seqlen_q;
    }
  }
  // Index of row rr in the [H_q, T_q] row statistics (lse, softmax_d).
  SEER_DEVICE int64_t stat_index(const AttnParams& p, const WorkItem& it, int rr) const {
    return static_cast<int64_t>(h[rr]) * p.total_q + it.q_start + tok[rr];
  }
  // Element offset of row rr in a [T_q, H_q, D] tensor with these strides.
  SEER_DEVICE int64_t offset(const WorkItem& it, int rr, int64_t row_stride, int64_t head_stride) const {
    return static_cast<int64_t>(it.q_start + tok[rr]) * row_stride + static_cast<int64_t>(h[rr]) * head_stride;
  }
};

// The end of an item's stream in a consumer warpgroup (after consume_stream, `end` its result): once every
// warp has passed the warpgroup's barrier `bar` (every S-shaped GEMM of the item has completed) the next
// item's row operands are prefetched - load(next item) - while flush() completes the GEMM left pending on
// the last tile, if any. Returns the next queue position (q.n if none).
template <typename Load, typename Flush>
SEER_DEVICE int end_of_item(const AttnParams& p, const ItemQueue& q, const StreamEnd& end, int bar, Load&& load,
                            Flush&& flush) {
  sm90::named_sync(bar, 128);
  if (end.next < q.n) load(work_item(p, q.item(end.next)));
  if (end.pending) flush();
  return end.next;
}

// dst = next for the A operand (registers) of the pipelined GEMM, written so that the old dst is read
// here, after the GEMM that used it completed: ptxas then keeps those registers (the operand of an
// asynchronous wgmma) away from the temporaries that computed `next`; reusing them would serialise every
// wgmma of the kernel (ptxas C7513). opaque_zero: 0, but unknown to the compiler.
template <int N>
SEER_DEVICE void handoff_operand(uint32_t (&dst)[N][4], const uint32_t (&next)[N][4], uint32_t opaque_zero) {
#pragma unroll
  for (int kk = 0; kk < N; ++kk)
#pragma unroll
    for (int e = 0; e < 4; ++e) dst[kk][e] = next[kk][e] ^ (dst[kk][e] & opaque_zero);
}

// A consumer thread's two rows (ThreadRows) of a row tile: visibility of keys and the masking of S tiles
// (kBlockN keys, the wgmma accumulator layout: element 4 f + e of the thread is row 16 warp + g + 8 (e >> 1),
// key 8 f + 2 t4 + (e & 1) of the tile).
template <typename Meta>
struct RowMask {
  int kmax[2];            // keys >= kmax are invisible (0: padding row)
  int rk_byte;            // Meta::rowkeep byte of row 0 (row 1, 8 rows further: rk_byte + keep_byte(8))
  int rk_shift;           // its bit offset (rows g and g + 8 share the parity)
  int warp_kmin;          // smallest kmax over the warp's valid rows (a tile below it needs no masking)

  SEER_DEVICE RowMask(const AttnParams& p, const WorkItem& it, const ThreadRows& tr, int row0) {
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) kmax[rr] = tr.ok[rr] ? it.sb.key_limit(tr.tok[rr], p.causal) : 0;
    rk_byte = Meta::keep_byte(row0);
    rk_shift = Meta::keep_shift(row0);
    int km = 0x7fffffff;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr)
      if (tr.ok[rr]) km = min(km, kmax[rr]);
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) km = min(km, SEER_SHFL_XOR(km, o));
    warp_kmin = km == 0x7fffffff ? 0 : km;
  }

  // Whether the tile (its TileHead h) needs masking: false when every chunk is kept by every row (value 2:
  // none empty) and lies below warp_kmin (warp-uniform). The producer folds both into h.lim (the stream's
  // keys increase - block_iter.h: kept blocks in column order, a block's chunks in key order - so the last
  // chunk is the highest). Separate from mask() so that a caller can decide before its S GEMM completes.
  SEER_DEVICE bool needs(const TileHead& h) const { return h.lim > warp_kmin; }

  // Masks S in place where needs() says so: key visibility per row (sequence end / causal) and the chunk
  // values of this row tile (0: not kept, 1: the row's keep bit from Meta::rowkeep, 2: kept).
  template <int N>
  SEER_DEVICE void apply(float (&sd)[N], const Meta* m, const TileHead& h, int t4) const {
    if (needs(h)) mask(sd, m, h.vbits, t4);
  }

  // Masks S in place (unconditionally; apply() checks needs() first).
  template <int N>
  SEER_DEVICE void mask(float (&sd)[N], const Meta* m, uint32_t v, int t4) const {
    constexpr int kChunks = N / 8;
    static_assert(kChunks == Meta::kChunks, "S tile = the stage's chunks");
    int ck[kChunks];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) ck[c] = m->key[c];
    const uint32_t rk[2] = {static_cast<uint32_t>(m->rowkeep[rk_byte]) >> rk_shift,
                            static_cast<uint32_t>(m->rowkeep[rk_byte + Meta::keep_byte(8)]) >> rk_shift};
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const uint32_t val = (v >> (4 * c)) & 3u;
      bool keep[2];
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) keep[rr] = val == 2u || (val == 1u && ((rk[rr] >> c) & 1u) != 0u);
#pragma unroll
      for (int f = 0; f < 2; ++f) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int rr = e >> 1;
          const int key = ck[c] + f * 8 + 2 * t4 + (e & 1);
          if (!(keep[rr] && key < kmax[rr])) sd[4 * (2 * c + f) + e] = -INFINITY;
        }
      }
    }
  }
};

// A consumer thread of a q-major kernel: its place in the wgmma accumulator layout of its warpgroup cwg
// (rows 64 cwg .. 64 cwg + 63 of the row tile; warp w of it holds 16 w .. 16 w + 15 of those; the thread
// rows g and g + 8 of them and columns 2 t4, 2 t4 + 1 of each n8 fragment), its warpgroup's named barrier
// (2 + cwg), the ring's `empty` barriers, and a zero the compiler cannot see (handoff_operand).
template <typename T>
struct ConsumerThread {
  uint64_t* bar_empty;
  int g, t4, warp_row0;
  int bar;  // the consumer warpgroup's named barrier
  uint32_t opaque_zero;
  SEER_DEVICE ConsumerThread(const AttnParams& p, unsigned char* smem, int wtid, int cwg = 0)
      : bar_empty(reinterpret_cast<uint64_t*>(smem + T::kOffEmpty)),
        g((wtid & 31) >> 2),
        t4(wtid & 3),
        warp_row0(cwg * T::kBlockM + (wtid >> 5) * 16),
        bar(2 + cwg),
        opaque_zero(static_cast<uint32_t>(p.batch) >> 31) {}
  SEER_DEVICE void release(int st) const { sm90::mbar_arrive(&bar_empty[st]); }  // stage st back to the producer
  // Waits for every GEMM this warpgroup has issued (acc: the accumulator they write), then releases stage st.
  template <int N>
  SEER_DEVICE void drain(float (&acc)[N], int st) const {
    sm90::wgmma_wait<0>();
    sm90::fence_operands(acc);
    release(st);
  }
  SEER_DEVICE void sync() const { sm90::named_sync(bar, 128); }  // the consumer warpgroup
};

// The consumer's loop over its work items: loads the first item's row operands, then per item calls
// body(it, tr, rm) - the item, this thread's two rows and their masking (RowMask<T::Meta>) - which returns
// the next queue position (from end_of_item, which also prefetches that item's row operands).
template <typename T, typename Load, typename Body>
SEER_DEVICE void consume_items(const AttnParams& p, const ItemQueue& q, const ConsumerThread<T>& ct, Load&& load,
                               Body&& body) {
  int w = q.first();
  if (w < q.n) load(work_item(p, q.item(w)));
  while (w < q.n) {
    const WorkItem it = work_item(p, q.item(w));
    const ThreadRows tr(p, it, ct.warp_row0, ct.g);
    const RowMask<typename T::Meta> rm(p, it, tr, ct.warp_row0 + ct.g);
    w = body(it, tr, rm);
  }
}

// Host: p with the TMA maps of its K and V for kv_producer (kv_tma false where either cannot be encoded:
// the producer then gathers every group with cp.async).
template <typename Params>
Params with_kv_tma(const Params& p) {
  Params q = p;
  auto* mk = reinterpret_cast<sm90::TmaMap*>(q.kv_tma_map[0]);
  auto* mv = reinterpret_cast<sm90::TmaMap*>(q.kv_tma_map[1]);
  q.kv_tma = sm90::encode_rows_tma(*mk, p.k, p.is_bf16, p.total_k, p.h_kv, p.head_dim, p.k_row_stride, p.k_head_stride) &&
             sm90::encode_rows_tma(*mv, p.v, p.is_bf16, p.total_k, p.h_kv, p.head_dim, p.v_row_stride, p.v_head_stride);
  return q;
}

// Host: launches `kernel(p)` persistently - T::kCtasPerSm CTAs per SM (at most one per entry of the work
// queue), each taking work items from p's queue (tile_scheduler.h "Work queue"; p.item_order required).
template <typename T, typename Params>
int launch_persistent(void (*kernel)(Params), const Params& p, cudaStream_t stream) {
  if (p.item_order == nullptr || p.item_queue == nullptr || p.item_capacity < 0 || num_items(p) > INT_MAX)
    return static_cast<int>(cudaErrorInvalidValue);
  const long long n_items = p.item_capacity;
  if (n_items == 0) return 0;
  cudaError_t e = allow_smem(kernel, T::kSmemBytes);  // common/launch.h
  if (e != cudaSuccess) return static_cast<int>(e);
  const DeviceFacts dev = current_device_facts();
  if (dev.error != 0) return dev.error;
  const long long slots = static_cast<long long>(dev.sms) * T::kCtasPerSm;
  const unsigned grid = static_cast<unsigned>(n_items < slots ? n_items : slots);
  kernel<<<grid, T::kThreads, T::kSmemBytes, stream>>>(p);
  return static_cast<int>(SEER_LAST_ERROR());
}

}  // namespace sm90_rows
}  // namespace seer
