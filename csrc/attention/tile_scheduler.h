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
//   persistent        : items blockIdx.x, blockIdx.x + gridDim.x, ... (static stride),
//                       grid = the resident CTAs.
// For attention, the row tile is rt = slot * n_tok_tiles + tt (tile_tokens tokens x pack heads;
// attention_params.h); for pooling a slot is one q head of the kv head's group.
// Items whose token tile starts past the sequence's clamped length have no rows (the kernels skip them).
//
// Key-tile items (the backward's dK/dV kernels, sm80 and sm90): one CTA per (key tile of kBlockN keys,
// kv head, sequence); grid x = key tile * h_kv + kv head (the heads of key tile 0, under a causal mask
// the one with the most row tiles, first), grid y = sequence. Key tiles past a sequence's end exit.
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

// The persistent schedule of this CTA: items first, first + step, ... below n.
struct PersistentItems {
  int first, step;
  SEER_DEVICE static PersistentItems of_this_cta() {
    return PersistentItems{static_cast<int>(blockIdx.x), static_cast<int>(gridDim.x)};
  }
};

// Key-tile item of this CTA (dK/dV kernels).
struct KeyTileItem {
  int b, hk;     // sequence, kv head
  int key_tile;  // keys [key_tile * kBlockN, +kBlockN) of the sequence
};
SEER_DEVICE KeyTileItem key_tile_item(const AttnParams& p) {
  KeyTileItem t;
  t.hk = static_cast<int>(blockIdx.x % static_cast<unsigned>(p.h_kv));
  t.key_tile = static_cast<int>(blockIdx.x / static_cast<unsigned>(p.h_kv));
  t.b = blockIdx.y;
  return t;
}
// Grid of the key-tile items for kBlockN-key tiles: x = 0 when there is no item.
inline dim3 key_tile_grid(const AttnParams& p, int block_n) {
  const int n_tiles = (p.max_seqlen_k + block_n - 1) / block_n;
  if (n_tiles == 0 || p.h_kv == 0 || p.batch == 0) return dim3(0, 0);
  return dim3(static_cast<unsigned>(n_tiles) * static_cast<unsigned>(p.h_kv), p.batch);
}

}  // namespace seer
