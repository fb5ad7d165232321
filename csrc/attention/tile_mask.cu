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
// Work split: a CTA of 256 threads owns a patch of 32 row tiles x 128 key blocks of one (b, hk); a thread
// owns one row tile and a group of 16 consecutive key blocks. Everything that depends on the row tile only
// (its tokens, head slot, mask rows) is computed once per thread, and each distinct (mask head, mask row)
// of the tile is read as 16 bytes at once (one 16-byte load when the mask's columns are contiguous and the
// address is aligned, else byte loads); the 16 values are kept as bit masks and written as one 16-byte
// store where the rows of the tile mask are 16-byte aligned (nb_k % 16 == 0). A warp covers 4 row tiles
// x 128 blocks: coalesced mask reads and tile_mask writes. tile_maskT goes through shared memory (threads
// along the row tiles when writing it). Patches are enumerated by a 1D grid-stride loop, so any batch /
// h_kv / n_row_tiles / nb_k fits. (NOTES v22: the one-entry-per-thread form of v21 spent 0.1 ms at P1 and
// 0.35 ms at P2 on the integer arithmetic of each entry, against ~10-30 us of memory traffic.)
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

constexpr int kRowsPerPatch = 32;    // row tiles per CTA patch (threadIdx.x >> 3)
constexpr int kGroup = 16;           // key blocks per thread (one 16-byte store)
constexpr int kGroupsPerPatch = 8;   // threadIdx.x & 7
constexpr int kColsPerPatch = kGroup * kGroupsPerPatch;  // key blocks per CTA patch
constexpr int kThreads = kRowsPerPatch * kGroupsPerPatch;
constexpr long long kMaxGrid = 1 << 20;

// Bit i of each mask: key block n0 + i of one row tile (blocks at or past nb_k: all bits clear).
struct TileBits {
  uint32_t vis;  // some row of the tile can see the block (before the user mask)
  uint32_t one;  // value 1: some visible rows keep it, some do not
  uint32_t two;  // value 2: every row that can see it keeps it
};

// Bits [0, k) for k in any int range, clamped to [0, 16].
__device__ __forceinline__ uint32_t low_bits(int k) { return k <= 0 ? 0u : k >= kGroup ? 0xffffu : (1u << k) - 1u; }

// Bit i set iff the user-mask byte col[i * stride_col] is non-zero, for i < n_read (<= count; the bits
// from n_read to count are then clear). count: the group's blocks inside the mask (16 but in the last group
// of a row); with 16 contiguous aligned bytes they are read as one 16-byte load.
__device__ __forceinline__ uint32_t keep_bits(const uint8_t* col, int64_t stride_col, int count, int n_read) {
  if (count == kGroup && stride_col == 1 && (reinterpret_cast<uintptr_t>(col) & 15) == 0) {
    const uint4 w4 = *reinterpret_cast<const uint4*>(col);
    const uint32_t w[4] = {w4.x, w4.y, w4.z, w4.w};
    uint32_t bits = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      // high bit of each byte set iff the byte is non-zero; then those 4 bits gathered to bits 0..3
      const uint32_t nz = ((((w[j] & 0x7f7f7f7fu) + 0x7f7f7f7fu) | w[j]) & 0x80808080u) >> 7;
      bits |= ((nz | (nz >> 7) | (nz >> 14) | (nz >> 21)) & 0xfu) << (4 * j);
    }
    return bits;
  }
  uint32_t bits = 0;
  for (int i = 0; i < n_read; ++i) bits |= static_cast<uint32_t>(col[i * stride_col] != 0) << i;
  return bits;
}

// The values of key blocks n0 .. n0 + 15 of row tile rt of (b, hk) (attention_params.h; sb: the bounds of
// sequence b, seqlen.h). Reads each distinct (mask head, mask row) of the tile once, from the last mask
// row down: once a row segment sees none of the 16 blocks, no earlier one does.
__device__ __forceinline__ TileBits tile_bits(const AttnParams& p, int b, int hk, int rt, int n0, const SeqBounds& sb) {
  TileBits t{0u, 0u, 0u};
  const int slot = rt / p.n_tok_tiles;
  const int tok0 = (rt - slot * p.n_tok_tiles) * p.tile_tokens;
  if (tok0 >= sb.seqlen_q) return t;  // tile past the end of the sequence
  const int tok_last = min(tok0 + p.tile_tokens, sb.seqlen_q) - 1;
  const int bk = p.block_size_k;
  // Blocks [0, n_vis) are visible to the tile's last row, so to some row (n_vis <= nb_k: seqlen_k <= max_seqlen_k).
  const int n_vis = (sb.key_limit(tok_last, p.causal) + bk - 1) / bk;
  t.vis = low_bits(n_vis - n0);
  if (t.vis == 0u) return t;
  const int count = min(kGroup, p.nb_k - n0);  // >= 1: n0 < n_vis <= nb_k

  const int mrd = p.mask_row_div;
  const int heads_per_mask_head = p.h_q / p.mask_heads;
  const int h0 = hk * p.group + slot * p.pack;
  const int mr_first = tok0 / mrd, mr_last = tok_last / mrd;
  uint32_t any = 0u, all = 0xffffu;
  int prev_hm = -1;
  for (int i = 0; i < p.pack; ++i) {
    const int hm = (h0 + i) / heads_per_mask_head;
    if (hm == prev_hm) continue;  // consecutive heads: equal mask heads are adjacent
    prev_hm = hm;
    const uint8_t* col = p.mask + static_cast<int64_t>(b) * p.mask_stride_b + static_cast<int64_t>(hm) * p.mask_stride_h +
                         static_cast<int64_t>(n0) * p.mask_stride_col;
    for (int mr = mr_last; mr >= mr_first; --mr) {
      const int seg_hi = min(tok_last, mr * mrd + (mrd - 1));  // largest token of this mask row in the tile
      const int n_seen = min(count, (sb.key_limit(seg_hi, p.causal) + bk - 1) / bk - n0);  // blocks it sees
      if (n_seen <= 0) break;
      const uint32_t seen = low_bits(n_seen);
      const uint32_t keep = keep_bits(col + static_cast<int64_t>(mr) * p.mask_stride_row, p.mask_stride_col, count, n_seen);
      any |= keep & seen;
      all &= keep | ~seen;
      if ((any & ~all & t.vis) == t.vis) return TileBits{t.vis, t.vis, 0u};  // every block already value 1
    }
  }
  t.one = t.vis & any & ~all;
  t.two = t.vis & any & all;
  return t;
}

// The 4 bytes of value bits 4j .. 4j + 3 (byte i = 2 * two_i + one_i).
__device__ __forceinline__ uint32_t value_word(const TileBits& t, int j) {
  const uint32_t o = (t.one >> (4 * j)) & 0xfu, w = (t.two >> (4 * j)) & 0xfu;
  return ((o * 0x00204081u) & 0x01010101u) + (((w * 0x00204081u) & 0x01010101u) << 1);
}

// Writes the values of blocks n0 .. n0 + count - 1 to dst[0 .. count) (one 16-byte store when whole and aligned).
__device__ __forceinline__ void store_values(uint8_t* dst, const TileBits& t, int count) {
  if (count == kGroup && (reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
    *reinterpret_cast<uint4*>(dst) = make_uint4(value_word(t, 0), value_word(t, 1), value_word(t, 2), value_word(t, 3));
    return;
  }
  for (int i = 0; i < count; ++i) dst[i] = static_cast<uint8_t>(((t.two >> i) & 1u) * 2u + ((t.one >> i) & 1u));
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

// blockDim = kThreads (1D). (No __launch_bounds__: with it ptxas caps sm_80 at 40 regs and spills.)
__global__ void build_tile_mask_kernel(const AttnParams p, int n_rt_patches, int n_n_patches, long long n_patches) {
  constexpr int kRowBytes = kColsPerPatch + 4;  // 132: the transposed reads of 32 row tiles hit 32 banks
  __shared__ uint32_t s_val[kRowsPerPatch * kRowBytes / 4];
  uint8_t* s_bytes = reinterpret_cast<uint8_t*>(s_val);
  const int tg = threadIdx.x & (kGroupsPerPatch - 1), tr = threadIdx.x / kGroupsPerPatch;
  int n_kept = 0, n_visible = 0;  // this thread's tiles (p.tile_count)
  for (long long patch = blockIdx.x; patch < n_patches; patch += gridDim.x) {  // uniform per CTA
    const Patch pa = patch_at(patch, n_rt_patches, n_n_patches, p.h_kv);
    const SeqBounds sb = seq_bounds(p, pa.b);  // clamped lengths, the rule of every attention kernel
    const int64_t bh = static_cast<int64_t>(pa.b) * p.h_kv + pa.hk;
    const int rt = pa.rp * kRowsPerPatch + tr;
    const int n0 = pa.np * kColsPerPatch + tg * kGroup;
    TileBits t{0u, 0u, 0u};
    if (rt < p.n_row_tiles && n0 < p.nb_k) {
      t = tile_bits(p, pa.b, pa.hk, rt, n0, sb);
      store_values(p.tile_mask + (bh * p.n_row_tiles + rt) * p.nb_k + n0, t, min(kGroup, p.nb_k - n0));
      n_kept += __popc(t.one | t.two);
      n_visible += __popc(t.vis);
    }
    // tile_maskT (if asked for: the backward): through shared memory, threads along the row tiles.
    if (p.tile_maskT != nullptr) {  // uniform
#pragma unroll
      for (int j = 0; j < 4; ++j) s_val[(tr * kRowBytes + tg * kGroup) / 4 + j] = value_word(t, j);
      __syncthreads();
      const int lane = threadIdx.x & 31, grp = threadIdx.x >> 5;
      const int rt2 = pa.rp * kRowsPerPatch + lane;
#pragma unroll 4
      for (int j = 0; j < kColsPerPatch / 8; ++j) {
        const int nl = grp + 8 * j, n = pa.np * kColsPerPatch + nl;
        if (rt2 < p.n_row_tiles && n < p.nb_k) p.tile_maskT[(bh * p.nb_k + n) * p.n_row_tiles + rt2] = s_bytes[lane * kRowBytes + nl];
      }
      __syncthreads();  // s_val is rewritten by the next patch
    }
  }
  if (p.tile_count != nullptr) add_tile_counts(p.tile_count, n_kept, n_visible);  // uniform
}

// The pair tile made of the rows of two tiles a and b: its rows keep a block if either half's do (any);
// every visible row keeps it (value 2) if each half has no visible row or all its visible rows keep it.
__device__ __forceinline__ TileBits union_bits(const TileBits& a, const TileBits& b) {
  const uint32_t any = a.one | a.two | b.one | b.two;
  const uint32_t all = (a.two | ~a.vis) & (b.two | ~b.vis);
  return TileBits{a.vis | b.vis, any & ~all, any & all};
}

// The patches of the 64-row kernel above, over pair row tiles: a CTA owns 32 pair row tiles x 128 key
// blocks of one (b, hk). Pair tile rt2 = slot * n_tok_tiles2 + tt2 has the halves slot * n_tok_tiles + 2 tt2
// (+ 1 if it exists); each thread computes both halves' values, writes them and their union. No transposes
// (the forward reads none).
__global__ void build_tile_masks_pair_kernel(const AttnParams p, const AttnParams p2, int n_rt_patches, int n_n_patches,
                                             long long n_patches) {
  const int tg = threadIdx.x & (kGroupsPerPatch - 1), tr = threadIdx.x / kGroupsPerPatch;
  int n_kept = 0, n_visible = 0, n_kept2 = 0, n_visible2 = 0;  // this thread's tiles
  for (long long patch = blockIdx.x; patch < n_patches; patch += gridDim.x) {  // uniform per CTA
    const Patch pa = patch_at(patch, n_rt_patches, n_n_patches, p.h_kv);
    const int rt2 = pa.rp * kRowsPerPatch + tr;
    const int n0 = pa.np * kColsPerPatch + tg * kGroup;
    if (rt2 >= p2.n_row_tiles || n0 >= p.nb_k) continue;
    const SeqBounds sb = seq_bounds(p, pa.b);
    const int64_t bh = static_cast<int64_t>(pa.b) * p.h_kv + pa.hk;
    const int count = min(kGroup, p.nb_k - n0);
    const int slot = rt2 / p2.n_tok_tiles, tt2 = rt2 - slot * p2.n_tok_tiles;
    TileBits h[2] = {{0u, 0u, 0u}, {0u, 0u, 0u}};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int tt = 2 * tt2 + i;
      if (tt >= p.n_tok_tiles) continue;  // no such 64-row tile (its rows are past every sequence)
      const int rt = slot * p.n_tok_tiles + tt;
      h[i] = tile_bits(p, pa.b, pa.hk, rt, n0, sb);
      store_values(p.tile_mask + (bh * p.n_row_tiles + rt) * p.nb_k + n0, h[i], count);
      n_kept += __popc(h[i].one | h[i].two);
      n_visible += __popc(h[i].vis);
    }
    const TileBits u = union_bits(h[0], h[1]);
    store_values(p2.tile_mask + (bh * p2.n_row_tiles + rt2) * p2.nb_k + n0, u, count);
    n_kept2 += __popc(u.one | u.two);
    n_visible2 += __popc(u.vis);
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
  const int n_rt_patches = (p2.n_row_tiles + kRowsPerPatch - 1) / kRowsPerPatch;
  const int n_n_patches = (p.nb_k + kColsPerPatch - 1) / kColsPerPatch;
  const long long n_patches = static_cast<long long>(p.batch) * p.h_kv * n_rt_patches * n_n_patches;
  const unsigned grid = static_cast<unsigned>(n_patches < kMaxGrid ? n_patches : kMaxGrid);
  build_tile_masks_pair_kernel<<<grid, kThreads, 0, static_cast<seer_stream_t>(stream)>>>(
      p, p2, n_rt_patches, n_n_patches, n_patches);
  return static_cast<int>(SEER_LAST_ERROR());
}

int run_build_tile_mask(const AttnParams& p, void* stream) {
  if (p.batch <= 0 || p.h_kv <= 0 || p.n_row_tiles <= 0 || p.nb_k <= 0) return 0;  // nothing to build
  if (!tiling_ok(p)) return static_cast<int>(cudaErrorInvalidValue);
  const int n_rt_patches = (p.n_row_tiles + kRowsPerPatch - 1) / kRowsPerPatch;
  const int n_n_patches = (p.nb_k + kColsPerPatch - 1) / kColsPerPatch;
  const long long n_patches = static_cast<long long>(p.batch) * p.h_kv * n_rt_patches * n_n_patches;
  const unsigned grid = static_cast<unsigned>(n_patches < kMaxGrid ? n_patches : kMaxGrid);
  build_tile_mask_kernel<<<grid, kThreads, 0, static_cast<seer_stream_t>(stream)>>>(
      p, n_rt_patches, n_n_patches, n_patches);
  return static_cast<int>(SEER_LAST_ERROR());
}

}  // namespace seer
