// Tile-mask builder of the block-sparse attention kernels (layout and values: attention_params.h).
//
// For every (sequence b, kv head hk, row tile rt, key block n) it decides from the user mask
//   0: no valid row of the tile attends to any key of block n (block outside the sequence's key range,
//      entirely above the causal diagonal of every row of the tile, or masked off for every row that
//      could see it),
//   1: some rows keep block n and some do not: the kernels check mask[b, hm, t / mask_row_div, n] per row,
//   2: every valid row of the tile that can see block n keeps it (the kernels skip the per-row check;
//      causal / length masking of individual elements is applied by the kernels in any case).
// A row "can see" block n when its first key n*B_k is visible: n*B_k < seqlen_k and, if causal,
// n*B_k <= t + seqlen_k - seqlen_q. Rows that cannot see block n have no visible key in it, so their
// mask bit does not matter for the result; ignoring them only turns some 1s into 2s or 0s.
//
// The user mask is read with its strides (stride 0 allowed). Each distinct (mask head, mask row) pair
// of a tile is read once per block: for 2D masks the tile's tokens map to a few mask rows
// (t / B_q), for 1D masks every token is its own row; the pack heads of a tile share one mask head
// when the mask is given per kv head (or broadcast).
//
// Work split: a CTA of 32 x 8 threads owns a 32 (row tiles) x 32 (key blocks) patch of one (b, hk):
// threadIdx.x runs along n (coalesced user-mask reads when stride_col == 1, coalesced tile_mask
// writes), and the patch is transposed through shared memory for coalesced tile_maskT writes.
// Patches are enumerated by a 1D grid-stride loop, so any batch / h_kv / n_row_tiles / nb_k fits.
//
// run_build_tile_masks_pair (the Hopper forward's two tilings, attention_params.h fwd_pick): one pass
// that writes the tile mask of the 64-row tiling and of the pair tiling (row tiles of twice its tokens),
// the pair value combined from the values of its two halves, and counts both tilings' tiles.
#include <cstdint>

#include "common/platform.h"
#include "common/launch.h"
#include "attention/attention_params.h"
#include "attention/seqlen.h"

namespace seer {
namespace {

constexpr int kPatch = 32;        // row tiles and key blocks per CTA patch
constexpr int kThreadsY = 8;      // threads along row tiles (each covers kPatch / kThreadsY row tiles)
constexpr long long kMaxGrid = 1 << 20;

// Value of tile_mask[b][hk][rt][n] (see the file comment); sb: the bounds of sequence b (seqlen.h).
// `visible`: some row of the tile can see block n (before the user mask).
__device__ __forceinline__ uint8_t tile_value(const AttnParams& p, int b, int hk, int rt, int n,
                                              const SeqBounds& sb, bool& visible) {
  visible = false;
  const int seqlen_q = sb.seqlen_q, seqlen_k = sb.seqlen_k;
  const int slot = rt / p.n_tok_tiles;
  const int tok0 = (rt - slot * p.n_tok_tiles) * p.tile_tokens;
  if (tok0 >= seqlen_q) return 0;  // tile past the end of the sequence
  const int tok_last = min(tok0 + p.tile_tokens, seqlen_q) - 1;
  const int key0 = n * p.block_size_k;  // n < nb_k = ceil(max_seqlen_k / B_k): no overflow
  if (key0 >= seqlen_k) return 0;       // block outside the sequence's keys
  const int off = sb.causal_off;        // causal: key j visible to token t iff j <= t + off
  if (p.causal && key0 > tok_last + off) return 0;
  visible = true;

  const int mrd = p.mask_row_div;
  const int heads_per_mask_head = p.h_q / p.mask_heads;
  const int h0 = hk * p.group + slot * p.pack;
  const int mr_first = tok0 / mrd, mr_last = tok_last / mrd;
  bool any = false, all = true;
  int prev_hm = -1;
  for (int i = 0; i < p.pack; ++i) {
    const int hm = (h0 + i) / heads_per_mask_head;
    if (hm == prev_hm) continue;  // consecutive heads: equal mask heads are adjacent
    prev_hm = hm;
    const uint8_t* col = p.mask + static_cast<int64_t>(b) * p.mask_stride_b +
                         static_cast<int64_t>(hm) * p.mask_stride_h + static_cast<int64_t>(n) * p.mask_stride_col;
    // Mask rows from the last (largest tokens) down: once a row segment cannot see block n, no
    // earlier one can either.
    for (int mr = mr_last; mr >= mr_first; --mr) {
      if (p.causal) {
        const int seg_hi = min(tok_last, mr * mrd + (mrd - 1));  // largest token of this mask row
        if (key0 > seg_hi + off) break;
      }
      const bool keep = col[static_cast<int64_t>(mr) * p.mask_stride_row] != 0;
      any |= keep;
      all &= keep;
      if (any && !all) return 1;
    }
  }
  return any ? (all ? 2 : 1) : 0;
}

// Patch `patch` of a CTA's grid-stride walk: its key-block patch np, row-tile patch rp, kv head, sequence.
struct Patch {
  int np, rp, hk, b;
};
__device__ __forceinline__ Patch patch_at(long long patch, int n_rt_patches, int n_n_patches, int h_kv) {
  Patch pa;
  pa.np = static_cast<int>(patch % n_n_patches);
  patch /= n_n_patches;
  pa.rp = static_cast<int>(patch % n_rt_patches);
  patch /= n_rt_patches;
  pa.hk = static_cast<int>(patch % h_kv);
  pa.b = static_cast<int>(patch / h_kv);
  return pa;
}

// Adds this thread's tile counts into dst[0] (kept) and dst[1] (visible), summed over each 32 lanes first:
// lane 0 of each 32-thread row adds (a HIP wavefront of 64 holds two). Called by every thread.
__device__ __forceinline__ void add_tile_counts(unsigned long long* dst, int kept, int visible) {
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) {
    kept += SEER_SHFL_XOR(kept, o);
    visible += SEER_SHFL_XOR(visible, o);
  }
  if ((threadIdx.x & 31) == 0 && visible > 0) {
    atomicAdd(dst, static_cast<unsigned long long>(kept));
    atomicAdd(dst + 1, static_cast<unsigned long long>(visible));
  }
}

// blockDim = (kPatch, kThreadsY). (No __launch_bounds__: with it ptxas caps sm_80 at 40 regs and spills.)
__global__ void build_tile_mask_kernel(const AttnParams p, int n_rt_patches, int n_n_patches, long long n_patches) {
  __shared__ uint8_t s_val[kPatch][kPatch + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  int n_kept = 0, n_visible = 0;  // this thread's tiles (p.tile_count)
  for (long long patch = blockIdx.x; patch < n_patches; patch += gridDim.x) {  // uniform per CTA
    const Patch pa = patch_at(patch, n_rt_patches, n_n_patches, p.h_kv);
    const int np = pa.np, rp = pa.rp, hk = pa.hk, b = pa.b;

    const SeqBounds sb = seq_bounds(p, b);  // clamped lengths, the rule of every attention kernel
    const int64_t bh = static_cast<int64_t>(b) * p.h_kv + hk;

    // tile_mask: threads along n.
    const int n = np * kPatch + tx;
#pragma unroll
    for (int i = 0; i < kPatch / kThreadsY; ++i) {
      const int rt = rp * kPatch + ty + i * kThreadsY;
      uint8_t v = 0;
      if (rt < p.n_row_tiles && n < p.nb_k) {
        bool visible;
        v = tile_value(p, b, hk, rt, n, sb, visible);
        p.tile_mask[(bh * p.n_row_tiles + rt) * p.nb_k + n] = v;
        n_kept += v != 0;
        n_visible += visible;
      }
      s_val[ty + i * kThreadsY][tx] = v;
    }
    __syncthreads();
    // tile_maskT (if asked for: the backward): threads along rt.
    if (p.tile_maskT != nullptr) {  // uniform
      const int rt = rp * kPatch + tx;
#pragma unroll
      for (int i = 0; i < kPatch / kThreadsY; ++i) {
        const int n2 = np * kPatch + ty + i * kThreadsY;
        if (rt < p.n_row_tiles && n2 < p.nb_k) p.tile_maskT[(bh * p.nb_k + n2) * p.n_row_tiles + rt] = s_val[tx][ty + i * kThreadsY];
      }
    }
    __syncthreads();  // s_val is rewritten by the next patch
  }
  if (p.tile_count != nullptr) add_tile_counts(p.tile_count, n_kept, n_visible);  // uniform
}

// The value of a row tile made of the rows of two tiles with values va / vb (visible: some row of the
// half can see the block): the union's rows keep the block if either half's do (any); every visible row
// keeps it (all) if each half has no visible row or all its visible rows keep it (value 2).
__device__ __forceinline__ uint8_t union_value(uint8_t va, bool visa, uint8_t vb, bool visb) {
  const bool any = va != 0 || vb != 0;
  const bool all = (va == 2 || !visa) && (vb == 2 || !visb);
  return any ? (all ? 2 : 1) : 0;
}

// The patches of the 64-row kernel above, over pair row tiles: a CTA of 32 x 8 threads owns 32 pair row
// tiles x 32 key blocks of one (b, hk) (threadIdx.x along n: coalesced writes of both masks). Pair tile
// rt2 = slot * n_tok_tiles2 + tt2 has the halves slot * n_tok_tiles + 2 tt2 (+ 1 if it exists); each thread
// computes both halves' values, writes them and their union. No transposes (the forward reads none).
__global__ void build_tile_masks_pair_kernel(const AttnParams p, const AttnParams p2, int n_rt_patches, int n_n_patches,
                                             long long n_patches) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  int n_kept = 0, n_visible = 0, n_kept2 = 0, n_visible2 = 0;  // this thread's tiles
  for (long long patch = blockIdx.x; patch < n_patches; patch += gridDim.x) {  // uniform per CTA
    const Patch pa = patch_at(patch, n_rt_patches, n_n_patches, p.h_kv);
    const int np = pa.np, rp = pa.rp, hk = pa.hk, b = pa.b;
    const SeqBounds sb = seq_bounds(p, b);
    const int64_t bh = static_cast<int64_t>(b) * p.h_kv + hk;
    const int n = np * kPatch + tx;
#pragma unroll
    for (int i = 0; i < kPatch / kThreadsY; ++i) {
      const int rt2 = rp * kPatch + ty + i * kThreadsY;
      if (rt2 >= p2.n_row_tiles || n >= p.nb_k) continue;
      const int slot = rt2 / p2.n_tok_tiles, tt2 = rt2 - slot * p2.n_tok_tiles;
      uint8_t v[2] = {0, 0};
      bool vis[2] = {false, false};
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int tt = 2 * tt2 + h;
        if (tt >= p.n_tok_tiles) continue;  // no such 64-row tile (its rows are past every sequence)
        const int rt = slot * p.n_tok_tiles + tt;
        v[h] = tile_value(p, b, hk, rt, n, sb, vis[h]);
        p.tile_mask[(bh * p.n_row_tiles + rt) * p.nb_k + n] = v[h];
        n_kept += v[h] != 0;
        n_visible += vis[h];
      }
      const uint8_t v2 = union_value(v[0], vis[0], v[1], vis[1]);
      p2.tile_mask[(bh * p2.n_row_tiles + rt2) * p2.nb_k + n] = v2;
      n_kept2 += v2 != 0;
      n_visible2 += vis[0] || vis[1];
    }
  }
  // Counts: fwd_pick [0..1] of the 64-row tiling, [2..3] of the pair tiling (as tile_count).
  add_tile_counts(p.tile_count, n_kept, n_visible);
  add_tile_counts(p.tile_count + 2, n_kept2, n_visible2);
}

}  // namespace

// The tiling and mask fields a builder relies on (attention_params.h "Row tiles").
static bool tiling_ok(const AttnParams& p) {
  return p.pack >= 1 && p.group % p.pack == 0 && p.tile_tokens >= 1 && p.n_tok_tiles >= 1 && p.mask_heads >= 1 &&
         p.h_q % p.mask_heads == 0 && p.mask_row_div >= 1 && p.block_size_k >= 1 &&
         p.n_row_tiles == (p.group / p.pack) * p.n_tok_tiles;
}

int run_build_tile_masks_pair(const AttnParams& p, const AttnParams& p2, void* stream) {
  if (p.batch <= 0 || p.h_kv <= 0 || p2.n_row_tiles <= 0 || p.nb_k <= 0) return 0;  // nothing to build
  // p2: the pair tiling of p (pair_tiling_of), counts in p.tile_count[0..3].
  const AttnParams want = pair_tiling_of(p);
  if (!tiling_ok(p) || p2.pack != p.pack || p2.tile_tokens != want.tile_tokens || p2.n_tok_tiles != want.n_tok_tiles ||
      p2.n_row_tiles != want.n_row_tiles || p2.nb_k != p.nb_k || p.tile_count == nullptr || p.tile_maskT != nullptr)
    return static_cast<int>(cudaErrorInvalidValue);
  const int n_rt_patches = (p2.n_row_tiles + kPatch - 1) / kPatch;
  const int n_n_patches = (p.nb_k + kPatch - 1) / kPatch;
  const long long n_patches = static_cast<long long>(p.batch) * p.h_kv * n_rt_patches * n_n_patches;
  const unsigned grid = static_cast<unsigned>(n_patches < kMaxGrid ? n_patches : kMaxGrid);
  build_tile_masks_pair_kernel<<<grid, dim3(kPatch, kThreadsY), 0, static_cast<seer_stream_t>(stream)>>>(
      p, p2, n_rt_patches, n_n_patches, n_patches);
  return static_cast<int>(SEER_LAST_ERROR());
}

int run_build_tile_mask(const AttnParams& p, void* stream) {
  if (p.batch <= 0 || p.h_kv <= 0 || p.n_row_tiles <= 0 || p.nb_k <= 0) return 0;  // nothing to build
  if (!tiling_ok(p)) return static_cast<int>(cudaErrorInvalidValue);
  const int n_rt_patches = (p.n_row_tiles + kPatch - 1) / kPatch;
  const int n_n_patches = (p.nb_k + kPatch - 1) / kPatch;
  const long long n_patches = static_cast<long long>(p.batch) * p.h_kv * n_rt_patches * n_n_patches;
  const unsigned grid = static_cast<unsigned>(n_patches < kMaxGrid ? n_patches : kMaxGrid);
  build_tile_mask_kernel<<<grid, dim3(kPatch, kThreadsY), 0, static_cast<seer_stream_t>(stream)>>>(
      p, n_rt_patches, n_n_patches, n_patches);
  return static_cast<int>(SEER_LAST_ERROR());
}

}  // namespace seer
