// Parameters of the block-sparse varlen attention kernels (2D and 1D masks, forward and backward).
// ATen-free: filled by csrc/attention/attention_api.cpp, read by the kernels.
//
// One kernel family serves both mask kinds. A "row" is a (query token, query head) pair. The mask
// row used by query token t (sequence-local) is  t / mask_row_div  : mask_row_div = B_q for a 2D
// mask, 1 for a 1D (per-token) mask. So a 2D mask is a 1D mask whose rows repeat B_q times.
//
// Row tiles. Rows are processed in tiles of `tile_tokens * pack` rows that share one K/V stream
// (all heads in a tile belong to one kv head). For kv head hk of sequence b, q heads
// hk*group .. hk*group+group-1 are split into `group/pack` head slots of `pack` consecutive heads;
// row tile rt = slot * n_tok_tiles + tok_tile covers tokens [tok_tile*tile_tokens, +tile_tokens) of
// the heads of that slot, row r of the tile being token tok_tile*tile_tokens + r / pack,
// head hk*group + slot*pack + r % pack. pack = 1 except for 1D masks shared by a GQA group, where
// packing the group's heads into one tile lets them share one key-block union.
//
// Tile mask (built by run_build_tile_mask, read by forward and backward):
//   tile_mask  [batch][h_kv][n_row_tiles][nb_k]  uint8
//   tile_maskT [batch][h_kv][nb_k][n_row_tiles]  uint8 (same values, transposed, for the backward;
//              nullptr in the forward, which does not read it: the builder then skips it)
//   value 0: no row of the tile attends to key block n (mask off, block outside the sequence's key
//            range, or entirely above the causal diagonal for every row of the tile);
//         1: some rows do: the kernel must check mask[b, hm, t / mask_row_div, n] per row;
//         2: every row of the tile that can see block n (its first key is inside the sequence and,
//            if causal, not above the row's diagonal) keeps it by the mask. Causal / length masking
//            of individual elements is always applied by the kernels, so rows that cannot see the
//            block are masked there anyway.
//   Rows/tiles past the end of a sequence are "not valid" and ignored when building. Kernels clamp
//   the starts and ends read from cu_seqlens to [0, T] and the lengths to max_seqlen_* (seqlen.h), so
//   inconsistent input never reads or writes out of bounds.
#pragma once
#include <cstdint>

namespace seer {

struct AttnParams {
  // ---- problem ---------------------------------------------------------------------------
  int batch;         // number of sequences B
  int h_q;           // query heads
  int h_kv;          // key/value heads; h_q % h_kv == 0
  int group;         // h_q / h_kv
  int head_dim;      // D (64, 128, 256)
  int max_seqlen_q;  // upper bound on sequence lengths (host int; never read from device data)
  int max_seqlen_k;
  int total_q;       // T_q (rows of q)
  int total_k;       // T_k
  float scale;       // sm_scale
  float scale_log2;  // sm_scale * log2(e)
  bool causal;       // bottom-right aligned: key j visible to query i iff j <= i + seqlen_k - seqlen_q
  bool is_bf16;      // element type of q/k/v/out (else fp16)
  bool fwd_wgmma;    // forward: run the sm_90a wgmma kernel (D 64/128, 64-row tiles); the API layer sets it
                     // only for an sm_90a build on a compute-capability-9.0 device (fwd_dispatch.cu)
  bool fwd_pair;     // with fwd_wgmma: attention_fwd_tile_rows asks for 128-row tiles, which run_attention_fwd
                     // gives to the pair kernel (two consumer warpgroups share one 128-key K/V stream;
                     // sm90/fwd_kernel_sm90.cuh). run_attention_fwd picks it for any tiling of more than 64
                     // rows (tile_tokens * pack): the op's pair tiling has twice the 64-row tiling's tokens.

  // ---- tensors (element strides; the last dim is contiguous) -------------------------------
  const void* q;  int64_t q_row_stride, q_head_stride;   // [T_q, H_q, D]
  const void* k;  int64_t k_row_stride, k_head_stride;   // [T_k, H_kv, D]
  const void* v;  int64_t v_row_stride, v_head_stride;   // [T_k, H_kv, D]
  void* out;      int64_t o_row_stride, o_head_stride;   // [T_q, H_q, D], written by forward
  float* lse;                                            // [H_q, T_q] contiguous, natural log
  const int* cu_seqlens_q;                               // [B+1] int32
  const int* cu_seqlens_k;                               // [B+1] int32

  // ---- mask (bytes, nonzero = keep; any strides, stride 0 allowed) -------------------------
  const uint8_t* mask;
  int64_t mask_stride_b, mask_stride_h, mask_stride_row, mask_stride_col;  // in elements (bytes)
  int mask_heads;     // H_mask in {h_q, h_kv, 1}: mask head of q head h is h / (h_q / H_mask)
  int mask_row_div;   // B_q for 2D masks, 1 for 1D masks
  int block_size_q;   // B_q (2D) or 1 (1D); equals mask_row_div
  int block_size_k;   // B_k: key block n covers keys [n*B_k, (n+1)*B_k) of its sequence
  int nb_k;           // ceil(max_seqlen_k / B_k): key blocks per sequence considered

  // ---- row tiling and tile mask ----------------------------------------------------------
  int pack;           // heads packed per row tile (divides group)
  int tile_tokens;    // tokens per row tile
  int n_tok_tiles;    // ceil(max_seqlen_q / tile_tokens)
  int n_row_tiles;    // (group / pack) * n_tok_tiles
  uint8_t* tile_mask;   // [batch][h_kv][n_row_tiles][nb_k]
  uint8_t* tile_maskT;  // [batch][h_kv][nb_k][n_row_tiles]; nullptr: not built (the forward)
  unsigned long long* tile_count;  // optional [2] zero-initialised device counters the tile-mask builder
                                   // adds to: tiles with a nonzero value, tiles some row can see (sequence /
                                   // causal bounds); nullptr: not counted. The sm90 backward reads them to
                                   // pick its dQ path and its dK/dV CTA size (bwd_common.h dq_fused,
                                   // dkdv_split).
  const unsigned long long* fwd_pick;  // optional [4]: the tile counts (as tile_count) of the 64-row tile mask, then
                                       // of the 128-row one. Set (by the API layer), the sm90 forward kernels
                                       // launched for both tilings run only where fwd_pick_pair (tile_scheduler.h)
                                       // picks their tiling, the other exits at once; nullptr: the kernel runs.

  // ---- work queue of the persistent sm90 kernels (forward, dQ; tile_scheduler.h "Work queue") ----------
  const int* item_order;  // [item_capacity] int32: positions 0 .. item_queue[0] - 1 hold this tiling's valid
                          // work items (item_tile numbering) in the order the CTAs take them; built per call by
                          // run_build_item_order. Required by the persistent sm90 kernels (their launchers
                          // return cudaErrorInvalidValue without it); the other kernels do not read it.
  unsigned* item_queue;   // [3] uint32: [0] number of valid items (the builder writes it), [1] the next-position
                          // counter CTAs claim from, [2] CTAs done; [1] and [2] start 0 (the builder) and the last
                          // CTA of a kernel run sets them back to 0, so a built queue serves any number of runs.
  int item_capacity;      // entries of item_order: an upper bound on the valid items (item_capacity_of)

  // ---- TMA maps of K and V (sm90 q-major producers: the forward, the dQ kernel) ------------------------
  // CUtensorMap bytes of k and v as [T_k, H_kv, D] with 64-key x 64-column boxes (common/sm90_tma.h),
  // encoded by those kernels' launchers into their copy of the params (the kernels read them as
  // __grid_constant__ parameters); kv_tma false: none could be encoded, the producers gather with cp.async.
  alignas(128) unsigned char kv_tma_map[2][128];
  bool kv_tma;
};

struct AttnBwdParams : AttnParams {
  const void* dout; int64_t do_row_stride, do_head_stride;  // [T_q, H_q, D]
  const float* dlse;  // [H_q, T_q] gradient into lse, or nullptr
  float* softmax_d;   // workspace [H_q, T_q]: D_i = rowsum(dout * out) - dlse_i
  void* dq;  int64_t dq_row_stride, dq_head_stride;  // [T_q, H_q, D] outputs (contiguous)
  void* dk;  int64_t dk_row_stride, dk_head_stride;  // [T_k, H_kv, D], reduced over the GQA group
  void* dv;  int64_t dv_row_stride, dv_head_stride;
  float* dq_accum;    // optional fp32 workspace [T_q, H_q, D] (atomic path; run_attention_bwd zeroes it where the dK/dV kernel adds into it), nullptr if unused
  bool deterministic; // no atomics whose order changes results
  bool bwd_wgmma;     // run the sm_90a wgmma dK/dV kernel (sm90/bwd_kernel_sm90.cuh; D 64 / 128); set only for
                      // an sm_90a build on a compute-capability-9.0 device (as fwd_wgmma)
};

// The pair kernel's tiling of a 64-row tiling p (the op and the self-test use it; run_build_tile_masks_pair
// checks it): p with fwd_pair set, the same pack and twice its tokens per row tile (128 rows, fewer where
// 64 / pack is not whole), so each pair tile is exactly the union of two 64-row tiles. No work queue (p's
// lists p's items).
inline AttnParams pair_tiling_of(const AttnParams& p) {
  AttnParams q = p;
  q.fwd_pair = true;
  q.item_order = nullptr;  // p's work queue numbers p's items: the pair tiling builds its own
  q.item_queue = nullptr;
  q.item_capacity = 0;
  q.tile_tokens = 2 * p.tile_tokens;
  q.n_tok_tiles = (p.max_seqlen_q + q.tile_tokens - 1) / q.tile_tokens;
  q.n_row_tiles = (p.group / p.pack) * q.n_tok_tiles;
  return q;
}

// Entries of a tiling's item_order (tile_scheduler.h "Work queue"): the valid items are at most
// (ceil(T_q / tile_tokens) + batch) token tiles (a sequence of n rows has ceil(n / tile_tokens) <=
// n / tile_tokens + 1) times the head slots of every kv head, and never more than all item numbers.
// (Inconsistent cu_seqlens may claim more: the builder drops entries past the capacity - their rows are
// then not computed, as the contract allows for such input.)
inline long long item_capacity_of(const AttnParams& p) {
  if (p.pack < 1 || p.tile_tokens < 1) return 0;
  const long long slots = p.group / p.pack;
  const long long bound = ((static_cast<long long>(p.total_q) + p.tile_tokens - 1) / p.tile_tokens + p.batch) * p.h_kv * slots;
  const long long all = static_cast<long long>(p.n_row_tiles) * p.h_kv * p.batch;
  return bound < all ? bound : all;
}

// kv heads per section of the work queue (tile_scheduler.h): as many as keep the K and V of the section's
// heads (every sequence: T_k rows x D x 2 bytes, twice) within half of the L2 (l2_bytes), at least one.
inline int item_section_heads(const AttnParams& p, long long l2_bytes) {
  const long long per_head = 4ll * p.total_k * p.head_dim;
  if (p.h_kv <= 1) return 1;
  if (per_head <= 0) return p.h_kv;
  const long long s = l2_bytes / 2 / per_head;
  return s < 1 ? 1 : (s > p.h_kv ? p.h_kv : static_cast<int>(s));
}

// Launchers (defined in .cu files, dispatch on head_dim / dtype internally). Return 0 on success or
// the CUDA error code of the failed launch.
int run_build_tile_mask(const AttnParams& params, void* stream);
// The forward's two tile masks in one pass (tile_mask.cu): p's (64-row tiling, no transpose) and p2's - the pair
// tiling of p: the same pack, twice its tile_tokens, n_tok_tiles = ceil(p.n_tok_tiles / 2) - counting both
// into p.tile_count[0..3] (zero-initialised; what fwd_pick reads).
int run_build_tile_masks_pair(const AttnParams& p, const AttnParams& p2, void* stream);
// The work queue(s) of one or two tilings (item_order.cu; tile_scheduler.h "Work queue"): p's, and p2's when
// p2 != nullptr (the forward's pair tiling), their K/V in sections of `section_heads` kv heads
// (item_section_heads). zero_counts (optional): n_zero_counts tile counters (AttnParams::tile_count) set to 0
// on the way (the tile-mask builder, launched after it, adds into them).
int run_build_item_order(const AttnParams& p, const AttnParams* p2, int section_heads, unsigned long long* zero_counts,
                         int n_zero_counts, void* stream);
int run_attention_fwd(const AttnParams& params, void* stream);
int run_attention_bwd(const AttnBwdParams& params, void* stream);
// Rows per row tile (kBlockM) the forward / backward kernels use; the API layer sets
// tile_tokens = rows / pack and builds the tile mask accordingly before calling the kernel. The
// forward chooses per call from the problem and mask fields filled so far (head_dim, is_bf16,
// mask_row_div, mask_heads, h_q, group, max_seqlen_*): 64 rows, or 128 for a 2D mask with
// B_q % 128 == 0 (D 64 / 128). run_attention_fwd runs the kernel whose tile has tile_tokens * pack rows.
int attention_fwd_tile_rows(const AttnParams& params);
int attention_bwd_tile_rows(int head_dim);

}  // namespace seer
