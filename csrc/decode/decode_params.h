// Parameters of the block-sparse flash-decoding kernels (SPEC §4). ATen-free: filled by
// csrc/decode/decode_api.cpp, read by the kernels in decode_kernel.cuh.
//
// L new query tokens per sequence (L = 1..16; L = 1 is classic decode) attend to the selected key
// blocks of its KV cache. The L tokens are the last L valid slots: token i sees the valid slots up to
// its own (slot < hi - (L - 1 - i)). Key selection is per (sequence b, kv head hk) and shared by the
// L tokens and the hk's GQA group of q heads: the rows of (b, hk) are (token, head) pairs, row
// r = token * group + g (L * group rows).
//
// Two kernels (plus the combine):
//   1. select (one CTA per (b, hk)): compacts the selection once into a workspace list of block ids
//      sel_list[(b * h_kv + hk) * sel_cap + i], i < sel_count[b * h_kv + hk]: the blocks holding a
//      valid slot that are selected (mask != 0, or listed in the indices: duplicates once, -1 and
//      out-of-range entries ignored), the block of the first valid slot first when
//      first_block_unmasked. Ascending block order otherwise.
//   2. split kernel, one CTA per (sequence b, kv head hk, row chunk c, split s):
//      - row chunk c: rows 16c .. min(L * group, 16c + 16) - 1 (one mma m-tile of 16 rows; more than
//        16 rows use several chunks that re-read the same K/V, mostly from L2 because the chunks of one
//        split are adjacent in the grid);
//      - split s: a contiguous share [r0, r1) of the row's sel_count listed blocks, r_s =
//        floor(count * s / ns_row), where ns_row <= num_splits follows the kept-block count
//        (min_split_keys below). Reads its share of the list, no scan of the mask.
//   Grid: x = split * n_row_chunks + chunk, y = kv head, z = sequence.
//
// Block n covers logical slots [n*block_size, (n+1)*block_size). Valid slots of sequence b, with
// len = clamp(cache_seqlens[b], 0, S_max) (clamped on device; values are never validated by a sync):
//   right-padded: [0, len);  left-padded (dense caches only): [S_max - len, S_max).
// Keys are the valid slots of the selected blocks, causally limited per token. No key at all:
// out = 0, lse = -inf.
//
// K/V addressing (common/kv_addr.h): dense caches [B, S_max, H_kv, D], or paged caches
// [num_pages, page_size, H_kv, D] with block_table [B, max_pages] (S_max = max_pages * page_size,
// page_size a multiple of 16, so a 16-key tile never straddles a page: one table read per tile).
//
// Split-KV. With num_splits > 1 every CTA writes its normalised partial output and its lse
// (natural log; -inf when the split saw no key) to o_partial / lse_partial, and a combine kernel merges
// them with a NaN-safe log-sum-exp. With num_splits == 1 the CTA writes out / lse directly.
#pragma once
#include <cstdint>

#include "common/kv_addr.h"

namespace seer {

struct DecodeParams {
  // ---- problem ---------------------------------------------------------------------------
  int batch;        // B: sequences
  int n_tok;        // L: new query tokens per sequence (1..16)
  int h_q;          // query heads
  int h_kv;         // key/value heads; h_q % h_kv == 0
  int group;        // h_q / h_kv (q heads sharing one kv head and one key selection)
  int head_dim;     // D in {64, 128, 256}
  int seqlen_max;   // S_max: logical slots per sequence (dense: k_cache.size(1); paged: max_pages * page_size)
  int block_size;   // B_k: multiple of 16 in [16, 256]
  int num_blocks;   // nb = ceil(S_max / block_size)
  float scale;      // sm_scale (softmax scale applied to q.k)
  float scale_log2; // sm_scale * log2(e): the kernel works in base 2
  bool is_bf16;     // element type of q / caches / out (else fp16)
  bool left_pad;    // valid slots are [S_max - len, S_max) instead of [0, len) (dense only)
  bool first_block_unmasked;  // always attend the block holding the first valid slot

  // ---- tensors (element strides; the last dim is contiguous; data 16-byte aligned and the
  //      strides below multiples of 8 elements, which the API layer guarantees) ---------------
  const void* q;  int64_t q_batch_stride, q_tok_stride, q_head_stride;    // [B, L, H_q, D]
  const void* k;  KvAddr k_addr; int64_t k_head_stride;                   // dense or paged, see kv_addr.h
  const void* v;  KvAddr v_addr; int64_t v_head_stride;                   // (same block table as k)
  void* out;      int64_t o_batch_stride, o_tok_stride, o_head_stride;    // [B, L, H_q, D], q's dtype
  float* lse;                 // [B, L, H_q] contiguous float32, natural log
  const int* cache_seqlens;   // [B] int32 (clamped to [0, S_max] on device)

  // ---- key selection: exactly one of block_mask / block_indices is non-null --------------
  const uint8_t* block_mask;  // bytes, nonzero = keep; [B, H_kv, >= nb], any strides (0 allowed)
  int64_t mask_stride_b, mask_stride_h, mask_stride_n;   // in bytes
  const int* block_indices;   // int32 [B, H_kv, K], -1 padded, any order (duplicates count once)
  int64_t idx_stride_b, idx_stride_h, idx_stride_k;      // in elements
  int num_indices;            // K (0 allowed)

  // ---- compacted selection (written by the select kernel, read by the split kernel) -------
  int* sel_list;              // int32 [B * H_kv, sel_cap] block ids
  int* sel_count;             // int32 [B * H_kv] listed blocks per row
  int sel_cap;                // >= the most blocks a row can list: nb (mask) or min(nb, K + 1) (indices)

  // ---- split-KV --------------------------------------------------------------------------
  bool grid_dep;         // launch the split and combine kernels as programmatic dependents of the kernel
                         // before them (compute capability >= 9.0; set by run_block_sparse_decode)
  int num_splits;        // >= 1 (resolved by decode_num_splits; never 0 here): splits per (b, hk), at most
  // Row-adaptive splitting (num_splits > 1 only): a (b, hk) row with `sel` listed blocks uses only
  // ns_row = min(num_splits, max(1, ceil(sel * block_size / min_split_keys))) splits, so that every
  // working CTA streams >= ~min_split_keys keys; CTAs of splits >= ns_row write lse_partial = -inf
  // (ignored by the combine) and exit. Lets num_splits be large enough for the longest rows without
  // fragmenting short or sparse ones (cache lengths vary 32x in D1). 0 = off: every row uses num_splits.
  int min_split_keys;    // the op uses kDecodeMinSplitKeys
  float* o_partial;      // [num_splits, B * L * H_q, D] float32 workspace (only when num_splits > 1)
  float* lse_partial;    // [num_splits, B * L * H_q] float32 workspace (only when num_splits > 1)
};

// The op's min_split_keys (the self-test times with it too). H200, `seer_decode_selftest --time` (D1, one
// run, benchmarks/NOTES.md v8): 384 the fastest of 256 / 384 / 512 / 768 / 1024 on all 8 rows (contiguous /
// paged16, blocks 64 / 32, d = 0.1 / 0.5), 0.3-1.8% below 512; 1024 and up cost 15-100% at d = 0.1 (too few
// CTAs to hide the per-CTA latency).
constexpr int kDecodeMinSplitKeys = 384;

// The row-adaptive split rule (DecodeParams::min_split_keys > 0), in one place: a row listing (at most)
// `blocks` blocks works in ceil(blocks * block_size / min_split_keys) splits, at least 1 and at most `cap`.
// The split kernels (CUDA and HIP) apply it to a row's bound and then its count, decode_num_splits to the
// most any row can list.
SEER_HOST_DEVICE int decode_row_splits(int64_t blocks, int block_size, int min_split_keys, int cap) {
  const int64_t want = (blocks * block_size + min_split_keys - 1) / min_split_keys;
  return want < 1 ? 1 : (want < cap ? static_cast<int>(want) : cap);
}

// Resolves the number of splits: `requested` > 0 is honoured (clamped to [1, max(nb, 1)]); 0 picks
// one from the device's SM count (cached per device), the occupancy of the kernel for head_dim,
// batch * h_kv * head chunks and nb * block_size. Reads no tensor data. Call with the target device
// current (the API layer holds a CUDAGuard).
int decode_num_splits(const DecodeParams& params, int requested);
// Launches the select kernel, the split kernel (and the combine kernel when num_splits > 1) on `stream`
// (a cudaStream_t). Returns 0 on success or the CUDA error code of the failed call.
int run_block_sparse_decode(const DecodeParams& params, void* stream);
// Text of an error code returned by run_block_sparse_decode.
const char* decode_error_string(int code);

}  // namespace seer
