// Sequence bounds of one sequence of the varlen attention kernels: the ONE rule every attention
// kernel (forward, backward, tile-mask builder; CUDA and HIP) uses for where a sequence's rows and keys
// are and which keys a row sees (SeqBounds::key_limit), and where a kernel's query row finds its user-mask
// row (mask_row_offset; the tile-mask builder addresses mask columns itself). Torch-free; host and device.
//
// Sequence b owns query rows [q_start, q_start + seqlen_q) and key rows [k_start, k_start + seqlen_k)
// with q_start = cu_seqlens_q[b] clamped to [0, total_q], its end cu_seqlens_q[b + 1] clamped to
// [q_start, total_q], and the length between them clamped to max_seqlen_* (the same for keys):
// inconsistent input (a length above max_seqlen, a decreasing cu_seqlens, offsets outside [0, T]) then
// never reads or writes outside the tensors and the rows and tiles the launch was sized for (grids,
// tile masks and workspaces are sized from max_seqlen_*). For consistent input the clamps change
// nothing. Rows past the clamped length belong to no sequence (out 0, lse -inf, zero gradients); with a
// decreasing or out-of-range cu_seqlens the outputs are unspecified (still in bounds).
// The checked path (SEER_ATTN_CHECK_INPUTS=1, and the CPU reference always) rejects
// such input instead.
//
// Causal masking is bottom-right aligned: key j is visible to query i (both sequence-local) iff
// j <= i + causal_off with causal_off = seqlen_k - seqlen_q.
#pragma once
#include <cstdint>

#include "attention/attention_params.h"
#include "common/platform.h"

namespace seer {

struct SeqBounds {
  int q_start;     // first global query row of the sequence (cu_seqlens_q[b], clamped to [0, total_q])
  int k_start;     // first global key row (cu_seqlens_k[b], clamped to [0, total_k])
  int seqlen_q;    // clamped query count: min(clamp(cu_q[b+1], q_start, total_q) - q_start, max_seqlen_q)
  int seqlen_k;    // clamped key count (the same with k)
  int causal_off;  // seqlen_k - seqlen_q: key j visible to query i iff j <= i + causal_off

  // Keys [0, key_limit(tok)) are visible to query token tok (before the block mask): all seqlen_k
  // keys, or, when causal, min(seqlen_k, tok + causal_off + 1) clamped at 0.
  SEER_HOST_DEVICE int key_limit(int tok, bool causal) const {
    return causal ? max(0, min(seqlen_k, tok + causal_off + 1)) : seqlen_k;
  }
};

// One side's clamped [start, start + len) from cu[b], cu[b + 1]: start in [0, total], end in [start, total],
// len <= max_seqlen.
SEER_HOST_DEVICE void clamp_rows(int cu_b, int cu_b1, int total, int max_seqlen, int& start, int& len) {
  start = max(0, min(cu_b, total));
  const int end = max(start, min(cu_b1, total));
  len = min(end - start, max_seqlen);
}

// Bounds of sequence b (reads cu_seqlens_q[b], [b+1], cu_seqlens_k[b], [b+1]).
SEER_HOST_DEVICE SeqBounds seq_bounds(const AttnParams& p, int b) {
  SeqBounds s;
  clamp_rows(p.cu_seqlens_q[b], p.cu_seqlens_q[b + 1], p.total_q, p.max_seqlen_q, s.q_start, s.seqlen_q);
  clamp_rows(p.cu_seqlens_k[b], p.cu_seqlens_k[b + 1], p.total_k, p.max_seqlen_k, s.k_start, s.seqlen_k);
  s.causal_off = s.seqlen_k - s.seqlen_q;
  return s;
}

// Byte offset of the user-mask row of query (head, tok) of sequence b (tok sequence-local):
// mask[b, head / heads_per_mask_head, tok / mask_row_div, 0], heads_per_mask_head = h_q / mask_heads (a caller
// that decodes many rows may pass it precomputed).
SEER_HOST_DEVICE int64_t mask_row_offset(const AttnParams& p, int b, int head, int tok, int heads_per_mask_head) {
  return static_cast<int64_t>(b) * p.mask_stride_b + static_cast<int64_t>(head / heads_per_mask_head) * p.mask_stride_h +
         static_cast<int64_t>(tok / p.mask_row_div) * p.mask_stride_row;
}
SEER_HOST_DEVICE int64_t mask_row_offset(const AttnParams& p, int b, int head, int tok) {
  return mask_row_offset(p, b, head, tok, p.h_q / p.mask_heads);
}

// Row r of row tile rt of kv head hk (attention_params.h, "Row tiles").
struct TileRow {
  int tok;     // sequence-local query token
  int head;    // query head
  bool valid;  // r is a used row of the tile (r < tile_tokens * pack) and tok < seqlen_q
};
SEER_HOST_DEVICE TileRow tile_row(const AttnParams& p, int hk, int rt, int r, int seqlen_q) {
  const int slot = rt / p.n_tok_tiles;
  const int tt = rt - slot * p.n_tok_tiles;
  const int rtok = r / p.pack;
  TileRow x;
  x.tok = tt * p.tile_tokens + rtok;
  x.head = hk * p.group + slot * p.pack + (r - rtok * p.pack);
  x.valid = rtok < p.tile_tokens && x.tok < seqlen_q;
  return x;
}
// The same for a row tile whose first token tok0 and first q head h0 are known (the forward kernels;
// rows_used = tile_tokens * pack).
SEER_HOST_DEVICE TileRow tile_row_at(const AttnParams& p, int tok0, int h0, int rows_used, int seqlen_q, int r) {
  TileRow x;
  x.tok = tok0 + r / p.pack;
  x.head = h0 + r % p.pack;
  x.valid = r < rows_used && x.tok < seqlen_q;
  return x;
}

}  // namespace seer
