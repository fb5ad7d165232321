// Work items and grids of the decode kernels (one job: which (sequence, kv head, row chunk, split) a CTA
// computes, and the grid that covers them). ATen-free.
//   select : one CTA per (kv head, sequence); grid (h_kv, batch).
//   split  : one CTA per (split, row chunk, kv head, sequence); grid x = split * n_chunks + chunk (the row
//            chunks of one split adjacent in launch order: they stream the same K/V, the later ones mostly
//            from L2), y = kv head, z = sequence. A row chunk is up to kRows of the L * group rows of
//            (sequence, kv head) (decode_params.h).
//   combine: rows_per_cta rows of [B, L, H_q] per CTA.
#pragma once
#include "common/platform.h"
#include "decode/decode_params.h"

namespace seer {
namespace decode {

// Row chunks of one (sequence, kv head): its L * group rows in chunks of rows_per_chunk.
SEER_HOST_DEVICE int row_chunks(const DecodeParams& p, int rows_per_chunk) {
  return (p.n_tok * p.group + rows_per_chunk - 1) / rows_per_chunk;
}

struct SelectItem {
  int hk, b;  // kv head, sequence
};
SEER_DEVICE SelectItem select_item() { return SelectItem{static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y)}; }
inline dim3 select_grid(const DecodeParams& p) { return dim3(p.h_kv, p.batch); }

struct SplitItem {
  int split, chunk;  // split of the row's kept blocks, row chunk
  int hk, b;         // kv head, sequence
};
SEER_DEVICE SplitItem split_item(int n_chunks) {
  SplitItem t;
  t.split = blockIdx.x / n_chunks;
  t.chunk = blockIdx.x % n_chunks;
  t.hk = blockIdx.y;
  t.b = blockIdx.z;
  return t;
}
inline dim3 split_grid(const DecodeParams& p, int n_chunks) {
  return dim3(static_cast<unsigned>(p.num_splits) * n_chunks, p.h_kv, p.batch);
}

inline dim3 combine_grid(const DecodeParams& p, int rows_per_cta) {
  const int64_t n_rows = static_cast<int64_t>(p.batch) * p.n_tok * p.h_q;
  return dim3(static_cast<unsigned>((n_rows + rows_per_cta - 1) / rows_per_cta));
}

}  // namespace decode
}  // namespace seer
