// Tile scheduling of the attention forwards (one job: which work item a CTA computes, in which order).
// ATen-free; used by the sm80 forward (one work item per CTA) and the sm90 forward (persistent).
//
// A work item is one row tile rt of one (sequence b, kv head hk): rt = slot * n_tok_tiles + tt, token
// tile tt of head slot `slot` (tile_tokens tokens x pack heads; attention_params.h). Items are numbered
// heaviest first: the last token tiles (under a causal mask, the rows that see the most keys) come
// first, then head slot, kv head, sequence. So a CTA that starts late gets a light item, and the grid's
// tail is short:
//   one item per CTA  (sm80 forward): item blockIdx.x, grid = num_items(p);
//   persistent        (sm90 forward): items blockIdx.x, blockIdx.x + gridDim.x, ... (static stride),
//                     grid = the resident CTAs.
// Items whose token tile starts past the sequence's clamped length have no rows (the kernels skip them).
#pragma once
#include "attention/attention_params.h"
#include "common/platform.h"

namespace seer {

// Work item w as (sequence, kv head, row tile), with the row tile's token tile and head slot.
struct ItemTile {
  int b, hk, rt;
  int tt, slot;  // rt = slot * n_tok_tiles + tt
};
SEER_DEVICE ItemTile item_tile(const AttnParams& p, int w) {
  const int n_slots = p.group / p.pack;
  const int per_tt = p.batch * p.h_kv * n_slots;
  ItemTile t;
  t.tt = p.n_tok_tiles - 1 - w / per_tt;
  int rem = w % per_tt;
  t.slot = rem % n_slots;
  rem /= n_slots;
  t.hk = rem % p.h_kv;
  t.b = rem / p.h_kv;
  t.rt = t.slot * p.n_tok_tiles + t.tt;
  return t;
}
// Number of work items (the one-item-per-CTA grid).
SEER_HOST_DEVICE long long num_items(const AttnParams& p) {
  return static_cast<long long>(p.n_row_tiles) * p.h_kv * p.batch;
}

// First token of row tile rt, and its first q head.
struct RowTile {
  int tok0, h0;
};
SEER_DEVICE RowTile row_tile(const AttnParams& p, int hk, int rt) {
  const int slot = rt / p.n_tok_tiles;
  return RowTile{(rt - slot * p.n_tok_tiles) * p.tile_tokens, hk * p.group + slot * p.pack};
}

// The persistent schedule of this CTA: items first, first + step, ... below n.
struct PersistentItems {
  int first, step;
  SEER_DEVICE static PersistentItems of_this_cta() {
    return PersistentItems{static_cast<int>(blockIdx.x), static_cast<int>(gridDim.x)};
  }
};

}  // namespace seer
