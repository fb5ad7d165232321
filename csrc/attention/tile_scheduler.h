// Tile scheduling of the attention kernels (one job: which work item a CTA computes, in which order,
// and the grid that covers them). ATen-free.
//
// Row-tile items (sm80 forward and the backward's dQ kernel: one item per CTA; sm90 forward:
// persistent; attention pooling, whose query tiles are row tiles of one head): a work item is one
// token tile tt of one head slot of one (sequence b, kv head hk). Items are numbered heaviest first:
// the last token tiles (under a causal mask, the rows that see the most keys) come first, then
// sequence, kv head, head slot (the fastest). So a CTA that starts late gets a light item, and the
// grid's tail is short:
//   one item per CTA  : item blockIdx.x, grid = num_items(.);
//   persistent (sm90) : the work queue below, grid = the resident CTAs.
// For attention, the row tile is rt = slot * n_tok_tiles + tt (tile_tokens tokens x pack heads;
// attention_params.h); for pooling a slot is one q head of the kv head's group.
// Items whose token tile starts past the sequence's clamped length have no rows (the kernels skip them).
//
// Work queue (the persistent sm90 kernels: the forward's single and pair kernels, the dQ kernel). Built per
// call on the device (run_build_item_order, item_order.cu: the sequence lengths live in cu_seqlens, which
// the host never reads): item_order lists the valid items only - a packed batch of one long and many short
// sequences has most of its item numbers past some sequence's end (P1 of WORKLOADS.md: 75% at 64-row
// tiles) - in this order:
//   section of kv heads (item_section_heads: the K and V of a section's heads fit in half the L2)
//     > token tile, last first (under a causal mask the heaviest first)
//       > sequence > kv head of the section > head slot.
// Host side (attention_params.h): item_capacity_of sizes item_order, item_section_heads the sections.
// Sections keep the K/V that concurrently running items read inside the L2: with every kv head at once
// a 2D mask at density 0.1 re-reads its K/V blocks from DRAM (a model of the LRU L2: 81% / 38% hits at P1 /
// P2 against 97% / 98% by sections; NOTES v18). A CTA takes position blockIdx.x first, then claims the next
// position from a counter (atomicAdd: a CTA that drew light items takes more, where the static stride
// over the item numbers left P1 12-14% above its ideal makespan). The producer warpgroup claims (at the start of an
// item, so the atomic's latency hides behind the item's stream) and hands the position to the consumers in
// the item's end-of-stream record (row_tile_parts_sm90.cuh). The last CTA of a run re-arms the counter.
//
// Key-tile items (the backward's dK/dV kernels, sm80 and sm90): one CTA per (key tile of kBlockN keys,
// kv head, sequence); grid x = kv head * key tiles + key tile (head-major: one kv head's key tiles run
// together, so they share the Q / dO rows they read in the L2; within a head key tile 0, under a causal
// mask the one with the most row tiles, first), grid y = sequence. Key tiles past a sequence's end exit.
#pragma once
#include "attention/attention_params.h"
#include "common/platform.h"

namespace seer {

// Work item w as (sequence, kv head, row tile), with the row tile's token tile and head slot.
struct ItemTile {
  int b, hk, rt;
  int tt, slot;  // rt = slot * n_tiles + tt
};

// An item space is a type with n_tiles(), batch(), h_kv() and n_slots() (n_tiles token tiles x batch
// sequences x h_kv kv heads x n_slots head slots): AttnRowTiles below, pooling's PoolingItems. The
// accessors read their params where the arithmetic uses them, so item_at compiles to what a decode
// written against the params would (the forwards' SASS is unchanged by this indirection).
// Item w of the space, heaviest first (rt: slot * n_tiles + tt).
template <typename Space>
SEER_DEVICE ItemTile item_at(const Space& s, int w) {
  const int n_slots = s.n_slots();
  const int per_tt = s.batch() * s.h_kv() * n_slots;
  ItemTile t;
  t.tt = s.n_tiles() - 1 - w / per_tt;
  int rem = w % per_tt;
  t.slot = rem % n_slots;
  rem /= n_slots;
  t.hk = rem % s.h_kv();
  t.b = rem / s.h_kv();
  t.rt = t.slot * s.n_tiles() + t.tt;
  return t;
}
// Number of items of the space (the one-item-per-CTA grid).
template <typename Space>
SEER_HOST_DEVICE long long count_items(const Space& s) {
  return static_cast<long long>(s.n_tiles()) * s.n_slots() * s.h_kv() * s.batch();
}

// The row tiles of attention (forward, dQ): token tiles of tile_tokens tokens x head slots of pack heads.
struct AttnRowTiles {
  const AttnParams& p;
  SEER_HOST_DEVICE int n_tiles() const { return p.n_tok_tiles; }
  SEER_HOST_DEVICE int batch() const { return p.batch; }
  SEER_HOST_DEVICE int h_kv() const { return p.h_kv; }
  SEER_HOST_DEVICE int n_slots() const { return p.group / p.pack; }
};
SEER_DEVICE ItemTile item_tile(const AttnParams& p, int w) { return item_at(AttnRowTiles{p}, w); }
// Number of work items (the one-item-per-CTA grid).
SEER_HOST_DEVICE long long num_items(const AttnParams& p) {
  return static_cast<long long>(p.n_row_tiles) * p.h_kv * p.batch;
}

// The row tiling and mask fields a row-tile kernel of `tile_rows` rows (and K/V chunks of 16 keys) relies
// on, as the API layer sets them (attention_params.h "Row tiles"); launchers return cudaErrorInvalidValue
// otherwise.
SEER_HOST_DEVICE bool row_tiling_ok(const AttnParams& p, int tile_rows) {
  return p.pack >= 1 && p.group % p.pack == 0 && p.tile_tokens >= 1 && p.tile_tokens * p.pack <= tile_rows &&
         p.block_size_k >= 16 && p.block_size_k % 16 == 0 && p.mask_heads >= 1 && p.h_q % p.mask_heads == 0 &&
         p.mask_row_div >= 1 && p.n_row_tiles == (p.group / p.pack) * p.n_tok_tiles;
}

// First token of row tile rt, and its first q head.
struct RowTile {
  int tok0, h0;
};
SEER_DEVICE RowTile row_tile(const AttnParams& p, int hk, int rt) {
  const int slot = rt / p.n_tok_tiles;
  return RowTile{(rt - slot * p.n_tok_tiles) * p.tile_tokens, hk * p.group + slot * p.pack};
}

// The forward's choice between its sm90 kernels (AttnParams::fwd_pick: kept tiles of the 64-row tile mask in
// c[0], of the 128-row one in c[2]). A kept 128-row tile costs the pair kernel about 0.78x what two kept
// 64-row tiles cost the single kernel (NOTES v13: 20-25% faster at density 1, where every tile is kept in
// both tilings); below that the 128-row tiles hold rows that do not keep the block (the union of the
// halves' blocks) and the single kernel wins. Pair iff kept64 >= 1.7 kept128: 2D masks of 64-row blocks
// drawn independently switch near density 0.8 (kept64 / kept128 = 2 / (2 - d)); masks whose rows share
// their blocks over 128 rows (B_q >= 128, 1D masks shared by a GQA group) keep the ratio near 2 at
// every density. Exact integers; the same answer in every thread of both kernels (and on the host, for
// the self-test's report).
SEER_HOST_DEVICE bool fwd_pick_pair(const unsigned long long* c) { return c[0] * 10ull >= c[2] * 17ull; }

// A persistent kernel's view of its work queue (AttnParams::item_order / item_queue). n: the valid items.
struct ItemQueue {
  const int* order;
  unsigned* state;
  int n;
  SEER_DEVICE static ItemQueue of(const AttnParams& p) {
    return ItemQueue{p.item_order, p.item_queue, static_cast<int>(p.item_queue[0])};
  }
  // This CTA's first position (n: none).
  SEER_DEVICE int first() const { return static_cast<int>(blockIdx.x) < n ? static_cast<int>(blockIdx.x) : n; }
  // Claims the next unclaimed position (n: none left). One thread of the CTA calls it per item.
  SEER_DEVICE int claim() const {
    const unsigned pos = gridDim.x + atomicAdd(state + 1, 1u);
    return pos < static_cast<unsigned>(n) ? static_cast<int>(pos) : n;
  }
  // The item (item_tile numbering) at position pos < n.
  SEER_DEVICE int item(int pos) const { return order[pos]; }
  // Called by one thread of each CTA once the CTA has claimed its last position: the last CTA of the run
  // sets the counters back to 0 for the next run on the same queue. So every CTA of a run must get here
  // (a kernel that exits early does so with its whole grid, before claiming: then nothing needs re-arming),
  // and runs on one queue must follow each other (one stream; never two runs of it at once).
  SEER_DEVICE void cta_done() const {
    __threadfence();
    if (atomicAdd(state + 2, 1u) == gridDim.x - 1) {
      state[1] = 0;
      state[2] = 0;
    }
  }
};

// Key-tile item of this CTA (dK/dV kernels). Head-major: x = kv head x key tiles + key tile, so the CTAs
// running together (dispatched in x order) hold the key tiles of one kv head, key tile 0 (the most rows)
// first, and read the Q / dO rows of one head group: a window that stays in the L2 at a low density,
// where a key-major order reads the rows of every head at once (NOTES v18 item 4,
// benchmarks/dkdv_order_model.cpp).
struct KeyTileItem {
  int b, hk;     // sequence, kv head
  int key_tile;  // keys [key_tile * kBlockN, +kBlockN) of the sequence
};
SEER_DEVICE KeyTileItem key_tile_item(const AttnParams& p) {
  const unsigned n_tiles = gridDim.x / static_cast<unsigned>(p.h_kv);  // key_tile_grid: n_tiles x h_kv
  KeyTileItem t;
  t.hk = static_cast<int>(blockIdx.x / n_tiles);
  t.key_tile = static_cast<int>(blockIdx.x % n_tiles);
  t.b = blockIdx.y;
  return t;
}
// Grid of the key-tile items for kBlockN-key tiles: x = 0 when there is no item. key_tile_item reads the
// key-tile count back as gridDim.x / h_kv: a launch must use exactly this grid (no padding).
inline dim3 key_tile_grid(const AttnParams& p, int block_n) {
  const int n_tiles = (p.max_seqlen_k + block_n - 1) / block_n;
  if (n_tiles == 0 || p.h_kv == 0 || p.batch == 0) return dim3(0, 0);
  return dim3(static_cast<unsigned>(n_tiles) * static_cast<unsigned>(p.h_kv), p.batch);
}

}  // namespace seer
