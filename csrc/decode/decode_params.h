// Parameters of the block-sparse flash-decoding kernels (SPEC §4). ATen-free: filled by
// csrc/decode/decode_api.cpp, read by the kernels in decode_kernel.cuh.
//
// One new query token per sequence attends to the selected key blocks of its KV cache. Key selection
// is per (sequence b, kv head hk) and shared by the hk's GQA group of q heads.
//
// Work decomposition. A CTA handles (sequence b, kv head hk, head chunk c, split s):
//   - head chunk c: q heads hk*group + 16c .. hk*group + min(group, 16c + 16) - 1 (one mma m-tile of
//     16 rows; groups above 16 heads use ceil(group / 16) chunks that re-read the same K/V, mostly
//     from L2 because the chunks of one split are adjacent in the grid);
//   - split s: a contiguous share [r0, r1) of the ranks of the *selected* blocks of (b, hk), with
//     r_s = floor(total * s / num_splits). The CTA compacts the mask row (or the valid index entries)
//     itself, so splits stay balanced at any density and no data-dependent host work is needed.
//   Grid: x = split * n_head_chunks + chunk, y = kv head, z = sequence.
//
// Block n covers cache slots [n*block_size, (n+1)*block_size). Valid slots of sequence b, with
// len = clamp(cache_seqlens[b], 0, S_max) (clamped on device; values are never validated by a sync):
//   right-padded: [0, len);  left-padded: [S_max - len, S_max).
// Selected blocks: mask[b, hk, n] != 0 (mask form) or the entries of indices[b, hk, :] (index form),
// restricted to blocks holding at least one valid slot (other entries, -1 padding and entries >= nb
// are ignored). first_block_unmasked adds the block holding the first valid slot (attended once).
// Keys are the valid slots of the selected blocks. No key at all: out = 0, lse = -inf.
//
// Split-KV. With num_splits > 1 every CTA writes its normalised partial output and its lse
// (natural log; -inf when the split saw no key) to o_partial / lse_partial, and a combine kernel merges
// them with a NaN-safe log-sum-exp. With num_splits == 1 the CTA writes out / lse directly.
//
// Paged KV cache (not implemented; how it would plug in). A block_table [B, max_pages] int32 maps the
// logical page p of sequence b to a physical page; with page_size a multiple of block_size, logical
// block n lives in physical page block_table[b][n*block_size / page_size] at row offset
// (n*block_size) % page_size. Only the loader's address computation changes: replace
//   k + b*k_batch_stride + slot*k_row_stride
// by
//   k + block_table[b*bt_stride + slot / page_size]*k_page_stride + (slot % page_size)*k_row_stride
// (one table read per 16-key tile, since a tile never straddles a block and hence never a page). The
// cache tensors become [num_pages, page_size, H_kv, D]; S_max becomes max_pages * page_size. Selection,
// splitting, masking and the combine are unchanged.
#pragma once
#include <cstdint>

namespace seer {

struct DecodeParams {
  // ---- problem ---------------------------------------------------------------------------
  int batch;        // B: sequences (one query token each)
  int h_q;          // query heads
  int h_kv;         // key/value heads; h_q % h_kv == 0
  int group;        // h_q / h_kv (q heads sharing one kv head and one key selection)
  int head_dim;     // D in {64, 128, 256}
  int seqlen_max;   // S_max: cache slots per sequence (k_cache.size(1))
  int block_size;   // B_k: multiple of 16 in [16, 256]
  int num_blocks;   // nb = ceil(S_max / block_size)
  float scale;      // sm_scale (softmax scale applied to q.k)
  float scale_log2; // sm_scale * log2(e): the kernel works in base 2
  bool is_bf16;     // element type of q / caches / out (else fp16)
  bool left_pad;    // valid slots are [S_max - len, S_max) instead of [0, len)
  bool first_block_unmasked;  // always attend the block holding the first valid slot

  // ---- tensors (element strides; the last dim is contiguous; data 16-byte aligned and the
  //      strides below multiples of 8 elements, which the API layer guarantees) ---------------
  const void* q;  int64_t q_batch_stride, q_head_stride;                  // [B, H_q, D]
  const void* k;  int64_t k_batch_stride, k_row_stride, k_head_stride;    // [B, S_max, H_kv, D]
  const void* v;  int64_t v_batch_stride, v_row_stride, v_head_stride;    // [B, S_max, H_kv, D]
  void* out;      int64_t o_batch_stride, o_head_stride;                  // [B, H_q, D], q's dtype
  float* lse;                 // [B, H_q] contiguous float32, natural log
  const int* cache_seqlens;   // [B] int32 (clamped to [0, S_max] on device)

  // ---- key selection: exactly one of block_mask / block_indices is non-null --------------
  const uint8_t* block_mask;  // bytes, nonzero = keep; [B, H_kv, >= nb], any strides (0 allowed)
  int64_t mask_stride_b, mask_stride_h, mask_stride_n;   // in bytes
  const int* block_indices;   // int32 [B, H_kv, K], -1 padded, any order, no duplicates
  int64_t idx_stride_b, idx_stride_h, idx_stride_k;      // in elements
  int num_indices;            // K (0 allowed)

  // ---- split-KV --------------------------------------------------------------------------
  int num_splits;        // >= 1 (resolved by decode_num_splits; never 0 here): splits per (b, hk), at most
  // Row-adaptive splitting (num_splits > 1 only): a (b, hk) row with `sel` selected blocks uses only
  // ns_row = min(num_splits, max(1, ceil(sel * block_size / min_split_keys))) splits, so that every
  // working CTA streams >= ~min_split_keys keys; CTAs of splits >= ns_row write lse_partial = -inf
  // (ignored by the combine) and exit. Lets num_splits be large enough for the longest rows without
  // fragmenting short ones (cache lengths vary 32x in D1). 0 = off: every row uses num_splits.
  int min_split_keys;
  float* o_partial;      // [num_splits, B, H_q, D] float32 workspace (only when num_splits > 1)
  float* lse_partial;    // [num_splits, B, H_q] float32 workspace (only when num_splits > 1)
};

// Resolves the number of splits: `requested` > 0 is honoured (clamped to [1, max(nb, 1)]); 0 picks
// one from the device's SM count (cached per device), the occupancy of the kernel for head_dim,
// batch * h_kv * head chunks and nb * block_size. Reads no tensor data. Call with the target device
// current (the API layer holds a CUDAGuard).
int decode_num_splits(const DecodeParams& params, int requested);
// Launches the decode kernel (and the combine kernel when num_splits > 1) on `stream`
// (a cudaStream_t). Returns 0 on success or the CUDA error code of the failed call.
int run_block_sparse_decode(const DecodeParams& params, void* stream);
// Text of an error code returned by run_block_sparse_decode.
const char* decode_error_string(int code);

}  // namespace seer
