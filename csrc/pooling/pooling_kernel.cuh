// Attention pooling, main kernel: block maxima of the softmax probabilities, without a T x T buffer.
//
// ONE SWEEP WHEN THE ROW'S BLOCKS FIT IN SHARED MEMORY. A block maximum of P = exp2(S - lse) needs
// the row's final LSE, known only once every visible key has been seen; but since exp is monotone,
// max_P(block) = exp2(max_S(block) - lse): only the raw per-(row, key block) maximum of S must be
// kept until the LSE is known. Each CTA owns kBlockM = 128 query rows of one q head of one sequence
// and sweeps the visible keys tile by tile (K double-buffered in shared memory by cp.async,
// S = Q K^T with mma.sync m16n8k16 - or, with Traits::kWgmma, one wgmma chain per warpgroup
// (pooling_mainloop_sm90.cuh) - Q fragments held in registers):
//   pass 1 (every tile): online max / sum of exp2 over S -> LSE (registers), and the max of S over
//     every key block is staged (fp32, unscaled) in shared memory, one slot per (row, block) for
//     blocks [0, cap). When the tile's visible blocks all fit (n_blk <= cap), that is the only sweep:
//     the staged maxima become exp2(max * scale - lse) at write-out. (P1's 16384-token sequence at
//     block 64 needs up to 256 slots = 128 KiB per CTA; the two-CTA budget at D 128 holds ~160, so its
//     later tiles take pass 2.)
//   pass 2 (only tiles with more than cap visible blocks, e.g. 65536 tokens at block 64): blocks
//     [0, cap) are written out after pass 1; the keys from cap * B on are swept again (S recomputed
//     bit-identically, only a max per element) and staged in windows of cap blocks, each window
//     written out once its blocks are complete.
// Write-out (per warp, its 16 rows, lane = block column): 1D in the output dtype (or, gqa_reduce,
// atomic max into the fp32 staging [h_kv, T, nb] on the float bits: non-negative floats order like
// their bits); 2D: the warp's 16 rows lie in one query block (block sizes are multiples of 16), so
// the column max over them is atomically max-ed into pooled_2d (fp32, zero-filled), row-normalised
// by a later small kernel. Every 1D column of every row of the tile is written (zeros above the
// diagonal and past the sequence's last block), so the 1D output needs no pre-fill. Workspace: none
// (gqa_reduce: the fp32 1D staging). Masked logits are -inf (never a finite sentinel); a row with no
// visible key has lse = -inf and pools to 0, never NaN. Logits are kept unscaled in the mainloop:
// the scale is folded into the exp2 argument with one FFMA (max commutes with a positive scale).
#pragma once

#include <cstdint>

#include "common/platform.h"
#include "common/sm80_primitives.h"
#include "common/softmax.h"
#include "attention/tile_scheduler.h"
#include "pooling/pooling_mainloop_sm90.cuh"
#include "pooling/pooling_params.h"
#ifndef USE_ROCM
#include "common/sm90_pipeline.h"
#include "common/sm90_tma.h"
#endif

namespace seer {
namespace pooling {

// Compile-time configuration of the main kernel: K tiles of 64 keys, <= 128 registers and staging capped
// so that 2 CTAs fit on an SM for D <= 128 (rows with more visible blocks than the cap take the partial
// second sweep). A 128-key / 1-CTA-per-SM shape measured slower (H100: P1 9.15 vs 6.93 ms,
// benchmarks/NOTES.md v1) and was removed. kWgmma: S tiles by wgmma (pooling_mainloop_sm90.cuh, sm_90a
// builds, D 64 / 128; K tiles then in the 128-byte-swizzled slab layout wgmma reads), else mma.sync.
template <int kHeadDim_, typename Elem_, bool kWgmma_ = false>
struct PoolingTraits {
  using Elem = Elem_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr bool kWgmma = kWgmma_;
  static constexpr int kNWarps = 8;                 // warps per CTA, 16 query rows each
  static constexpr int kNThreads = kNWarps * 32;
  static constexpr int kBlockM = 16 * kNWarps;      // query rows per CTA (128)
  static constexpr int kBlockN = 64;                // keys per K tile
  static constexpr int kNFrag = kBlockN / 8;        // n8 accumulator fragments per warp and tile
  static constexpr int kKSteps = kHeadDim / 16;     // k16 steps of the QK^T product
  static constexpr int kChunks = kHeadDim / 8;      // 16-byte chunks per row of Q / K
  static constexpr int kChunksPerTile = kBlockN / 16;  // 16-key column chunks per K tile
  static constexpr int kTileElems = kBlockN * kHeadDim;  // one K buffer
  static constexpr int kSmemKBytes = 2 * kTileElems * (int)sizeof(Elem);  // double buffer (also holds Q at start)
  // Fewest staging columns the windowed second sweep supports: a K tile spans at most
  // ceil((kBlockN - 1) / 16) + 1 key blocks.
  static constexpr int kMinStageCols = kChunksPerTile + 1;
  static constexpr int kMinBlocks = kHeadDim <= 128 ? 2 : 1;

  static_assert(kHeadDim % 16 == 0 && kHeadDim >= 64, "head dim");
  static_assert(!kWgmma || kHeadDim == 64 || kHeadDim == 128, "wgmma S tiles: D 64 / 128");
  static_assert(kBlockM * kHeadDim <= 2 * kTileElems, "Q staging must fit in the K double buffer");

  // The wgmma kernel's K-tile pipeline after the staging: two mbarriers (a buffer's tile landed) and two
  // counters (warps done reading a buffer's tile).
  static constexpr int kSyncBytes = 32;
  // Dynamic shared memory of a launch with `stage_stride` floats per staged row.
  static constexpr int smem_bytes(int stage_stride) { return kSmemKBytes + kBlockM * stage_stride * 4 + kSyncBytes; }

  // Swizzled element offset of 16-byte chunk c of row r in a [rows][kHeadDim] shared tile: the low 3
  // bits of the chunk index are XOR-ed with r % 8, so the 8 rows of an ldmatrix 8x8 matrix hit 8
  // distinct bank groups.
  static SEER_DEVICE int swz(int r, int c) { return r * kHeadDim + ((c ^ (r & 7)) << 3); }
};

// The work items of the main kernel (an item space of tile_scheduler.h, heaviest first): query tiles of
// kBlockM rows of the longest sequence x sequences x kv heads x the q heads of a kv head's group (item
// slot j: q head hk * group + j). One CTA per item.
template <int kBlockM>
struct PoolingItems {
  const PoolingParams& p;
  SEER_HOST_DEVICE int n_tiles() const { return (p.max_seqlen + kBlockM - 1) / kBlockM; }
  SEER_HOST_DEVICE int batch() const { return p.batch; }
  SEER_HOST_DEVICE int h_kv() const { return p.h_kv; }
  SEER_HOST_DEVICE int n_slots() const { return p.group; }
};

// Asynchronously copies rows [0, kRows) of a [rows][kHeadDim] global tile into swizzled shared
// memory (Traits::swz: the Q tile, read by ldmatrix); rows >= rows_valid are zero-filled (global memory
// is not read for them).
template <typename Traits, int kRows>
SEER_DEVICE void load_tile_async(typename Traits::Elem* smem, const typename Traits::Elem* gmem,
                                 int64_t row_stride, int rows_valid, int tid) {
  constexpr int kTotal = kRows * Traits::kChunks;
  static_assert(kTotal % Traits::kNThreads == 0, "tile chunks must divide evenly among threads");
#pragma unroll
  for (int i = 0; i < kTotal / Traits::kNThreads; ++i) {
    const int idx = tid + i * Traits::kNThreads;
    const int r = idx / Traits::kChunks;
    const int c = idx % Traits::kChunks;
    const bool pred = r < rows_valid;
    const typename Traits::Elem* src = pred ? gmem + r * row_stride + c * 8 : gmem;
    cp_async_16(smem + Traits::swz(r, c), src, pred);
  }
}

// The K-tile copies of one thread, set up once per CTA (computing each chunk's row, swizzled offset and
// 64-bit global offset per tile, as load_tile_async does for Q, cost ~130 instructions per tile and warp
// at D 128: a fifth of the mainloop's issue slots on the H100, NOTES v21). Thread tid copies chunk
// tid % kChunks of rows r0, r0 + kStep, ... with kStep = kNThreads / kChunks a multiple of 8: both
// layouts (Traits::swz and the wgmma slab layout) depend on the row only through row % 8, so the thread's
// shared offsets are one base plus constants, and its global addresses one pointer (src0, set up once) plus
// key0 rows. Rows >= rows_valid are zero-filled (global memory not read).
template <typename Traits, bool kSw128>
struct KTileCopier {
  using Elem = typename Traits::Elem;
  static constexpr int kRows = Traits::kBlockN;
  static constexpr int kStep = Traits::kNThreads / Traits::kChunks;  // rows between a thread's chunks
  static constexpr int kPer = kRows / kStep;                          // chunks per thread and tile
  static constexpr int kStepBytes = kSw128 ? kStep * 128 : kStep * Traits::kHeadDim * (int)sizeof(Elem);
  static_assert(Traits::kNThreads % Traits::kChunks == 0 && kStep % 8 == 0 && kRows % kStep == 0,
                "a thread's rows must share row % 8");
  int r0;            // this thread's first row of a tile
  uint32_t s_off;    // byte offset of (r0, its chunk) in a tile
  const Elem* src0;  // its chunk of key r0: keys (row stride `row_stride` elements) start at k_base
  SEER_DEVICE KTileCopier(int tid, const Elem* k_base, int64_t row_stride) {
    r0 = tid / Traits::kChunks;
    const int c = tid % Traits::kChunks;
    s_off = kSw128 ? sm90::sw128_offset(r0, c * 8, kRows)
                   : static_cast<uint32_t>(Traits::swz(r0, c) * (int)sizeof(Elem));
    src0 = k_base + static_cast<int64_t>(r0) * row_stride + c * 8;
  }
  // Copies keys [key0, key0 + kRows) into the shared tile at s_tile (the same row_stride as the
  // constructor's); rows >= rows_valid (counted from key0) are zero-filled.
  SEER_DEVICE void copy(unsigned char* s_tile, int key0, int64_t row_stride, int rows_valid) const {
    const Elem* src = src0 + static_cast<int64_t>(key0) * row_stride;
    const int64_t step = static_cast<int64_t>(kStep) * row_stride;
    if (rows_valid >= kRows) {  // every tile but a sequence's last: no predicates, one pointer stepped
      cp_async_16_stepped<kPer, kStepBytes>(smem_u32(s_tile) + s_off, src, step);
    } else {
      const Elem* row0 = src - static_cast<int64_t>(r0) * row_stride;  // key key0 (valid: rows_valid > 0)
      const int rv = rows_valid - r0;  // (compared with constants: no per-chunk row kept live across tiles)
#pragma unroll
      for (int i = 0; i < kPer; ++i, src += step) {
        const bool pred = i * kStep < rv;
        cp_async_16_zfill(s_tile + s_off + i * kStepBytes, pred ? src : row0, pred);
      }
    }
  }
};

// cap: staged key blocks per row (>= min(nb, kMinStageCols)); stage_stride: floats per staged row
// (odd, >= cap: the 8 rows written by one store instruction fall in distinct banks).
// The kernel's body; the two kernels below differ only in how p is passed (PRef: PoolingParams by value for
// the mma.sync kernel, a reference to the __grid_constant__ parameter for the wgmma kernel).
template <typename Traits, typename PRef>
SEER_DEVICE void attn_pooling_body(PRef p, const int cap, const int stage_stride) {
#if SEER_HAS_MMA_SYNC
  using Elem = typename Traits::Elem;
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN;
  constexpr int kNFrag = Traits::kNFrag, kKSteps = Traits::kKSteps, kCh = Traits::kChunksPerTile;

  extern __shared__ __align__(128) unsigned char pooling_smem[];
  Elem* sK = reinterpret_cast<Elem*>(pooling_smem);  // 2 K buffers; Q before the first K load
  // wgmma reads the K tiles through 128-byte-swizzle descriptors: they must start 1024-byte aligned (the
  // dynamic shared memory does on sm_90, without static shared memory).
  if (Traits::kWgmma && (smem_u32(pooling_smem) & 1023u) != 0) __trap();
  float* sStage = reinterpret_cast<float*>(pooling_smem + Traits::kSmemKBytes);
  // wgmma kernel: tile_full[b] completes when buffer b's tile has landed (TMA bytes), tile_reads[b] counts the
  // warps done reading it (monotonic; every kNWarps-th arrival is the last of a tile).
  uint64_t* const tile_full =
      reinterpret_cast<uint64_t*>(pooling_smem + Traits::kSmemKBytes + Traits::kBlockM * stage_stride * 4);
  int* const tile_reads = reinterpret_cast<int*>(tile_full + 2);

  // ---- which tile: work item blockIdx.x, heaviest (last) query tiles first (tile_scheduler.h) ----
  const ItemTile item = item_at(PoolingItems<kBlockM>{p}, static_cast<int>(blockIdx.x));
  const int b = item.b, hk = item.hk, m_block = item.tt;
  const int h = hk * p.group + item.slot;
  const int h_out = p.gqa_reduce ? hk : h;

  // Sequence bounds, clamped so that bad cu_seqlens never lead out of [0, T) or past max_seqlen.
  const int start = min(max(__ldg(p.cu_seqlens + b), 0), p.total);
  const int end = min(max(__ldg(p.cu_seqlens + b + 1), start), p.total);
  const int L = min(end - start, p.max_seqlen);
  const int m0 = m_block * kBlockM;  // sequence-local first query row of the tile
  if (m_block < 0 || m0 >= L) return;
  // Keys visible to some row of the tile: [0, n_end).
  const int n_end = p.causal ? min(L, m0 + kBlockM) : L;
  const int n_tiles = (n_end + kBlockN - 1) / kBlockN;
  const int B = p.block_size;
  const int nb = p.nb;
  const int n_blk = (n_end + B - 1) / B;  // key blocks visible to some row of the tile (<= nb)
  const bool two_pass = n_blk > cap;
  // Pass 2 (two_pass only) re-sweeps the tiles holding keys >= cap * B.
  const int p2_tile0 = two_pass ? (cap * B) / kBlockN : n_tiles;
  const int n_iters = n_tiles + (n_tiles - p2_tile0);

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int g = lane / 4;  // accumulator row (and row + 8) of this lane
  const int t = lane % 4;  // accumulator column pair of this lane

  const Elem* q_base = reinterpret_cast<const Elem*>(p.q) + static_cast<int64_t>(start + m0) * p.q_row_stride +
                       static_cast<int64_t>(h) * p.q_head_stride;
  const Elem* k_base = reinterpret_cast<const Elem*>(p.k) + static_cast<int64_t>(start) * p.k_row_stride +
                       static_cast<int64_t>(hk) * p.k_head_stride;

  // ---- Q: global -> shared (swizzled) -> registers (A fragments of all k16 steps) ------------
  if constexpr (Traits::kWgmma) {
    if (tid == 0) {
      sm90::mbar_init(&tile_full[0], 1);
      sm90::mbar_init(&tile_full[1], 1);
      tile_reads[0] = 0;
      tile_reads[1] = 0;
      sm90::mbar_init_fence();
    }
  }
  load_tile_async<Traits, kBlockM>(sK, q_base, p.q_row_stride, L - m0, tid);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  uint32_t qf[kKSteps][4];
  {
    // ldmatrix x4: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15),
    // (rows 8-15, k 8-15) of the warp's 16 rows = a0..a3 of the m16n8k16 A fragment.
    const int r = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) ldmatrix_x4(qf[kk], sK + Traits::swz(r, kk * 2 + (lane >> 4)));
  }
  __syncthreads();  // Q staging is overwritten by the first K tile below

  // ---- per-warp / per-lane row state ---------------------------------------------------------
  const int wrow0 = m0 + warp * 16;  // sequence-local first row of this warp
  const bool warp_active = wrow0 < L;
  const int row_a = wrow0 + g, row_b = wrow0 + g + 8;  // the two rows this lane accumulates
  const bool valid_a = row_a < L, valid_b = row_b < L;
  // Keys any row of this warp can see, and the first key index at which masking starts.
  const int warp_key_end = p.causal ? min(wrow0 + 16, L) : L;
  const int warp_mask_from = p.causal ? min(wrow0 + 1, L) : L;
  const float scale_log2 = p.scale_log2;
  const int S = stage_stride;

  float row_m[2] = {-INFINITY, -INFINITY};  // pass 1: running max of the raw logits
  float row_l[2] = {0.f, 0.f};              // pass 1: this lane's partial sum of exp2((s - row_m) * scale)
  float lse_lane = -INFINITY;               // after pass 1: log2-sum-exp2 of row (lane & 15) of the warp
  float run[2] = {-INFINITY, -INFINITY};    // max of raw s over the current key block so far
  int blk = 0;                              // current key block (CTA-uniform)
  int blk_end = min(B, n_end);              // end key of the current block, min((blk+1)*B, n_end)
  int win_base = 0;                         // key block of staging slot 0
  int stage_from = 0;                       // first key whose block is tracked (pass 2: cap * B)

  float* stage_warp = sStage + warp * 16 * S;  // this warp's 16 staging rows
  // The staging row a block maximum is written to by this lane: lane t = 0 stages row g, t = 1 row g + 8.
  float* const stage_lane = stage_warp + (g + 8 * (t & 1)) * S;

  // Byte offsets of this lane's ldmatrix row address for the K fragments of k-step kk, key pair np:
  //   swz(np*16 + kr, 2*kk + kb) * 2 = np*16*kRowBytes + (kk/4)*128 + k_off[kk%4]
  // with kr = (lane & 7) + 8 * (lane >> 4), kb = (lane >> 3) & 1: since kr % 8 == lane % 8 and the XOR
  // only touches the low 3 chunk bits, 4 per-lane values cover every k-step (the rest are immediates).
  constexpr int kRowBytes = Traits::kHeadDim * (int)sizeof(Elem);
  const uint32_t sK_addr = static_cast<uint32_t>(__cvta_generic_to_shared(sK));
  uint32_t k_off[4];
  {
    const int kr = (lane & 7) + ((lane >> 4) << 3);
    const int kb = (lane >> 3) & 1;
#pragma unroll
    for (int j = 0; j < 4; ++j) k_off[j] = kr * kRowBytes + (((2 * j + kb) ^ (lane & 7)) << 4);
  }

  // Writes block columns [lo, zend) of the warp's rows (lane = column, 32 at a time): the staged
  // maxima (slot j - win_base) for j < hi, zeros beyond; 1D to the output (or the gqa staging), 2D
  // column max by atomics.
  auto write_out = [&](int lo, int hi, int zend) {
    __syncwarp();  // staged values (written by lanes t < 2) visible to every lane
    for (int j0 = lo; j0 < zend; j0 += 32) {
      const int j = j0 + lane;
      const bool col_ok = j < zend;
      const bool staged = j < hi;
      const float* src = stage_warp + (j - win_base);
      float colmax = 0.f;
#pragma unroll 4
      for (int r = 0; r < 16; ++r) {
        const int row = wrow0 + r;
        if (row >= L) break;  // warp-uniform
        const float lse_r = SEER_SHFL(lse_lane, r);
        const float v =
            (staged && lse_r != -INFINITY) ? fast_exp2(fmaf(src[r * S], scale_log2, -lse_r)) : 0.f;
        colmax = fmaxf(colmax, v);
        if (col_ok) {
          const int64_t tok = static_cast<int64_t>(start) + row;
          if (!p.gqa_reduce) {
            Elem* out = reinterpret_cast<Elem*>(p.pooled_1d);
            out[(static_cast<int64_t>(h) * p.total + tok) * nb + j] = from_float<Elem>(v);
          } else if (v > 0.f) {
            atomicMax(reinterpret_cast<unsigned int*>(p.pooled_1d_accum) +
                          (static_cast<int64_t>(hk) * p.total + tok) * nb + j,
                      __float_as_uint(v));
          }
        }
      }
      if (col_ok && colmax > 0.f) {
        const int qb = wrow0 / B;  // the warp's 16 rows share one query block
        atomicMax(reinterpret_cast<unsigned int*>(p.pooled_2d) +
                      ((static_cast<int64_t>(b) * p.h_out + h_out) * nb + qb) * nb + j,
                  __float_as_uint(colmax));
      }
    }
    __syncwarp();  // every lane done reading before the slots are staged again
  };
  // Columns the final write-out covers: all nb (zeros included), or for gqa_reduce only the visible
  // blocks (the zero-filled fp32 staging needs no zeros).
  const int zend_final = p.gqa_reduce ? n_blk : nb;

  // wgmma: a warpgroup (4 warps, 64 rows) computes its S tile together - when any of its rows is inside
  // the sequence and the tile is not entirely above all its rows' causal diagonals (uniform per warpgroup).
  const int wg_row0 = m0 + (warp / 4) * 64;
  const bool wg_active = wg_row0 < L;
  const int wg_key_end = p.causal ? min(wg_row0 + 64, L) : L;

  // ---- the sweep(s) over the K tiles, as one double-buffered loop ----------------------------
  const KTileCopier<Traits, Traits::kWgmma> copier(tid, k_base, p.k_row_stride);
  unsigned char* const sK_bytes = reinterpret_cast<unsigned char*>(sK);
  constexpr int kTileBytes = Traits::kTileElems * (int)sizeof(Elem);
  // Key blocks of a whole number of K tiles (P1 / P2's 64): a tile lies in one block, so the block
  // maxima need no per-chunk bookkeeping (CTA-uniform).
  const bool whole_tiles = B % kBlockN == 0;
  // Tile t's first key (pass 2 re-sweeps from tile p2_tile0 after pass 1's n_tiles tiles).
  auto tile_key = [&](int t) { return (t < n_tiles ? t : p2_tile0 + (t - n_tiles)) * kBlockN; };
  // wgmma kernel: tile t into buffer t & 1 by TMA (one thread): D / 64 boxes of 64 keys x 64 columns, each an
  // 8 KB slab of the SW128 layout; keys past the tensor's end land as zeros, keys past the sequence are
  // masked like any invisible key.
  auto issue_tile = [&](int t) {
#ifndef USE_ROCM
    if constexpr (Traits::kWgmma) {
      uint64_t* bar = &tile_full[t & 1];
      sm90::mbar_arrive_expect_tx(bar, kTileBytes);
#pragma unroll
      for (int sl = 0; sl < Traits::kHeadDim / 64; ++sl)
        sm90::tma_load_rows(sK_bytes + (t & 1) * kTileBytes + sl * (kBlockN * 128),
                            reinterpret_cast<const sm90::TmaMap*>(p.k_tma_map), sl * 64, hk, start + tile_key(t), bar);
    }
#endif
  };
  if constexpr (Traits::kWgmma) {
    if (tid == 0) {
      sm90::fence_view_async_shared();  // the Q staging's generic reads of these bytes -> the TMA's writes
      issue_tile(0);
      if (n_iters > 1) issue_tile(1);
    }
  } else {
    copier.copy(sK_bytes, 0, p.k_row_stride, n_end);
    cp_async_commit();
  }

  // Waits for tile `it` (visible to every thread) and starts the copy of tile it + 1 into the other buffer
  // (every warp is done with tile it - 1, which it held, once the barrier passes). in_pass1: tile it + 1
  // exists and is a pass-1 tile (the fast sweep's).
  // wgmma kernel: waits for tile `it` only (no CTA barrier: the two warpgroups run up to a tile apart).
  auto begin_tile = [&](int it, bool in_pass1) {
    if constexpr (Traits::kWgmma) {
      sm90::mbar_wait(&tile_full[it & 1], (it >> 1) & 1);
    } else {
      cp_async_wait<0>();
      __syncthreads();
      if (in_pass1 || it + 1 < n_iters) {
        const int nx = it + 1;
        const int n_next = (in_pass1 || nx < n_tiles ? nx : p2_tile0 + (nx - n_tiles)) * kBlockN;
        copier.copy(sK_bytes + (nx & 1) * kTileBytes, n_next, p.k_row_stride, n_end - n_next);
      }
      cp_async_commit();
    }
  };
  // wgmma kernel: this warp is done reading tile `it` (its warpgroup's wgmma waited, or none ran); the last
  // of the CTA's warps to say so loads tile it + 2 into the buffer.
  auto end_tile = [&](int it) {
    if constexpr (Traits::kWgmma) {
      __syncwarp();
      static_assert((Traits::kNWarps & (Traits::kNWarps - 1)) == 0, "warps per CTA: a power of two");
      if (lane == 0 && (atomicAdd(&tile_reads[it & 1], 1) & (Traits::kNWarps - 1)) == Traits::kNWarps - 1 && it + 2 < n_iters)
        issue_tile(it + 2);
    }
  };
  // The warpgroup's S tile by wgmma (sm_90a; all 128 threads of an active warpgroup call it together).
  auto wgmma_tile = [&](float (&acc)[kNFrag][4], int it) {
    if constexpr (Traits::kWgmma) {
      // The buffer's offset through a shuffle: ptxas then treats it as warp-uniform and forms the wgmma
      // descriptors in uniform registers (the per-k-step R2UR / LEA / MOV go; as run_roles' cwg).
      const uint32_t buf = __shfl_sync(0xffffffffu, (it & 1) * kTileBytes, 0);
      pool_s_tile_sm90<Traits>(acc, qf, sK_addr + buf);
    }
  };
  // The warp's S tile by mma.sync (the other builds).
  auto mma_tile = [&](float (&acc)[kNFrag][4], int it) {
#pragma unroll
    for (int nf = 0; nf < kNFrag; ++nf)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nf][e] = 0.f;
    const uint32_t sKt = sK_addr + (it & 1) * kTileBytes;
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
#pragma unroll
      for (int np = 0; np < kNFrag / 2; ++np) {
        // ldmatrix x4 of K rows (keys) np*16 .. +15: matrices (keys 0-7, d 0-7), (keys 0-7,
        // d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15) = b0, b1 of n8 fragments 2np, 2np+1
        // (B[k][n] = K[n][k], so K's rows are the B fragment's columns).
        uint32_t bfr[4];
        ldmatrix_x4_sa(bfr, sKt + k_off[kk & 3] + (kk >> 2) * 128 + np * 16 * kRowBytes);
        const uint32_t b_lo[2] = {bfr[0], bfr[1]};
        const uint32_t b_hi[2] = {bfr[2], bfr[3]};
        mma_16816<Elem>(acc[2 * np], qf[kk], b_lo);
        mma_16816<Elem>(acc[2 * np + 1], qf[kk], b_hi);
      }
    }
  };
  // Per row (this lane's two rows, hh): the max of each 16-key chunk (cm) over this lane's values and the
  // row's maximum over the tile (tq, reduced over the row's quad when `quad`).
  auto tile_max = [&](const float (&acc)[kNFrag][4], float (&cm)[kCh][2], float (&tq)[2], bool quad) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
#pragma unroll
      for (int c = 0; c < kCh; ++c)
        cm[c][hh] = fmaxf(fmaxf(acc[2 * c][2 * hh], acc[2 * c][2 * hh + 1]),
                          fmaxf(acc[2 * c + 1][2 * hh], acc[2 * c + 1][2 * hh + 1]));
      float tmax = cm[0][hh];
#pragma unroll
      for (int c = 1; c < kCh; ++c) tmax = fmaxf(tmax, cm[c][hh]);
      if (quad) tq[hh] = quad_max(tmax);
    }
  };
  // Pass 1's online max / sum over the tile (tq: the rows' tile maxima; scale folded into the exp2
  // argument). The exponentials overwrite the logits (acc is not read after this) and are summed as a tree:
  // no register is added and no MUFU result waits on the previous one's sum (the serial sum stalled on
  // them: short-scoreboard waits, NOTES v21).
  auto pass1_stats = [&](float (&acc)[kNFrag][4], const float (&tq)[2]) {
    float base[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const float m_new = fmaxf(row_m[hh], tq[hh]);
      base[hh] = row_base(m_new, scale_log2);  // common/softmax.h: 0 while m_new = -inf
      row_l[hh] *= fast_exp2(fmaf(row_m[hh], scale_log2, -base[hh]));
      row_m[hh] = m_new;
    }
#pragma unroll
    for (int nf = 0; nf < kNFrag; ++nf)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nf][e] = fast_exp2(fmaf(acc[nf][e], scale_log2, -base[e / 2]));
#pragma unroll
    for (int w = 1; w < kNFrag; w *= 2)
#pragma unroll
      for (int nf = 0; nf < kNFrag; nf += 2 * w)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[nf][e] += acc[nf + w][e];
    row_l[0] += acc[0][0] + acc[0][1];
    row_l[1] += acc[0][2] + acc[0][3];
  };
  // Block `blk` complete: stage its maximum of the two rows (slot blk - win_base; only blocks < cap in
  // pass 1) and move on. run: this lane's values (chunk path) or already the quad's (`reduced`).
  auto close_block = [&](bool reduced, bool staged) {
    const float v0 = reduced ? run[0] : quad_max(run[0]);
    const float v1 = reduced ? run[1] : quad_max(run[1]);
    if (staged && t < 2) stage_lane[blk - win_base] = t == 0 ? v0 : v1;
    run[0] = -INFINITY;
    run[1] = -INFINITY;
    ++blk;
    blk_end = min((blk + 1) * B, n_end);
  };

  // ---- the fast sweep: tiles every row of the CTA sees whole, in pass 1 ------------------------
  // Whole-tile blocks only; tile keys below the CTA's first row's causal limit (so below every row's and
  // inside the sequence: no masking, every active warp's tile `seen`), blocks below cap (staged), and not
  // pass 1's last tile (which ends the pass). The general sweep below takes the rest (diagonal tiles,
  // pass 2, chunked blocks) from where this one stops; the state (row_m / row_l, run, blk) carries over.
  int n_fast = 0;
  if (whole_tiles) {
    const int vis = p.causal ? min(m0 + 1, L) : L;  // keys [0, vis) are visible to every row of the tile
    n_fast = min(min(vis / kBlockN, n_tiles - 1), (cap * B) / kBlockN);
  }
  for (int it = 0; it < n_fast; ++it) {
    const int n0 = it * kBlockN;
    begin_tile(it, true);
    float acc[kNFrag][4];
    if constexpr (Traits::kWgmma) {
      if (wg_active) wgmma_tile(acc, it);  // warpgroup-uniform; the warps of an active warpgroup all take part
      end_tile(it);
      if (!wg_active) continue;
    }
    if (!warp_active) continue;  // rows past the sequence: nothing to compute or write
    if constexpr (!Traits::kWgmma) mma_tile(acc, it);
    float cm[kCh][2], tq[2];
    tile_max(acc, cm, tq, true);
    pass1_stats(acc, tq);
    run[0] = fmaxf(run[0], tq[0]);
    run[1] = fmaxf(run[1], tq[1]);
    if (n0 + kBlockN >= blk_end) close_block(true, true);
  }

  // ---- the general sweep(s) over the remaining K tiles ----------------------------------------
  for (int it = n_fast; it < n_iters; ++it) {
    const bool pass2 = it >= n_tiles;
    const int n0 = (pass2 ? p2_tile0 + (it - n_tiles) : it) * kBlockN;
    begin_tile(it, false);

    // ---- S = Q K^T for the warp's 16 rows x kBlockN keys (raw logits), masked -----------------
    float acc[kNFrag][4];
    if constexpr (Traits::kWgmma) {
      // warpgroup-uniform; the warps of an active warpgroup all take part
      if (wg_active && n0 < wg_key_end) wgmma_tile(acc, it);
      end_tile(it);
      if (!wg_active) continue;
    }
    if (!warp_active) continue;  // rows past the sequence: nothing to compute or write

    // A tile entirely above the warp's causal diagonal (!seen) adds nothing: pass 1 skips it, tq stays
    // -inf and cm is not read (the warpgroup's wgmma did not run when its rows all miss it). cm is set only
    // for seen tiles: initialising it on the other path made ptxas set its registers to -inf at every tile.
    const bool seen = n0 < warp_key_end;
    float cm[kCh][2];
    float tq[2] = {-INFINITY, -INFINITY};
    if (seen) {
      if constexpr (!Traits::kWgmma) mma_tile(acc, it);
      // Accumulator (nf, e): row g + 8 * (e / 2), key n0 + nf * 8 + 2t + e % 2. Only tiles crossing
      // the warp's diagonal (or the sequence end) need the per-element mask.
      if (n0 + kBlockN > warp_mask_from) {
        // Keys [0, lim) are visible to a row (computed here, not kept live across the sweep).
        const int lim_a = p.causal ? min(row_a + 1, L) : L;
        const int lim_b = p.causal ? min(row_b + 1, L) : L;
#pragma unroll
        for (int nf = 0; nf < kNFrag; ++nf)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int col = n0 + nf * 8 + 2 * t + (e & 1);
            const int lim = e < 2 ? lim_a : lim_b;
            if (col >= lim) acc[nf][e] = -INFINITY;
          }
      }
      tile_max(acc, cm, tq, !pass2 || whole_tiles);
      if (!pass2) pass1_stats(acc, tq);
    }

    if (pass2) {
      // ---- pass 2: write out the staging window once the tile would overrun it ----------------
      const int tile_last_blk = (min(n0 + kBlockN, n_end) - 1) / B;
      if (tile_last_blk >= win_base + cap) {
        const int done = n0 / B;  // blocks before the one holding key n0 are complete
        write_out(win_base, done, done);
        win_base = done;
      }
    }

    // ---- block maxima: one per completed block, staged in shared memory --------------------------
    if (whole_tiles) {
      // The tile lies in block `blk` (tiles and blocks start at multiples of kBlockN; pass 2 starts at
      // cap * B, a tile boundary): its keys past n_end are masked (-inf).
      run[0] = fmaxf(run[0], tq[0]);
      run[1] = fmaxf(run[1], tq[1]);
      if (n0 + kBlockN >= blk_end) close_block(true, pass2 || blk < cap);
    } else {
#pragma unroll
      for (int c = 0; c < kCh; ++c) {
        const int col0 = n0 + c * 16;  // key blocks are multiples of 16: a chunk lies in one block
        if (col0 >= n_end) break;
        if (col0 < stage_from) continue;
        if (seen) {
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) run[hh] = fmaxf(run[hh], cm[c][hh]);
        }
        if (col0 + 16 >= blk_end) close_block(false, pass2 || blk < cap);
      }
    }

    if (it == n_tiles - 1) {
      // ---- end of pass 1: final LSE of the two rows (log2 units; -inf without visible key) -----
      float lse2[2];
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const float l = quad_sum(row_l[hh]);
        // (row_lse2 alone gives the same value; the explicit -inf test keeps the measured code.)
        lse2[hh] = row_m[hh] == -INFINITY ? -INFINITY : row_lse2(row_m[hh], l, scale_log2);
      }
      if (!valid_a) lse2[0] = -INFINITY;  // rows past the sequence pool to 0
      if (!valid_b) lse2[1] = -INFINITY;
      {
        // Lane l (< 16) of the warp gets the LSE of row l = (l & 7) + 8 * (l >> 3), held by lane 4 (l & 7).
        const float la = SEER_SHFL(lse2[0], (lane & 7) * 4);
        const float lb = SEER_SHFL(lse2[1], (lane & 7) * 4);
        lse_lane = (lane & 8) ? lb : la;
      }
      if (!two_pass) {
        write_out(0, n_blk, zend_final);
      } else {
        write_out(0, cap, cap);
        blk = cap;
        blk_end = min((cap + 1) * B, n_end);
        win_base = cap;
        stage_from = cap * B;
        run[0] = -INFINITY;
        run[1] = -INFINITY;
      }
    }
  }

  // ---- pass 2: the last window, then zeros up to nb -----------------------------------------
  if (warp_active && two_pass) write_out(win_base, n_blk, zend_final);
#endif  // SEER_HAS_MMA_SYNC
}

// The mma.sync kernel (Traits::kWgmma false).
template <typename Traits>
__global__ void __launch_bounds__(Traits::kNThreads, Traits::kMinBlocks)
    attn_pooling_kernel(const PoolingParams p, const int cap, const int stage_stride) {
  attn_pooling_body<Traits, const PoolingParams>(p, cap, stage_stride);
}
// The wgmma kernel: p as a __grid_constant__ parameter, so that its TMA map (p.k_tma_map) is addressed in
// parameter space (the mma.sync kernel keeps a plain parameter: __grid_constant__ made ptxas spill 92 bytes
// there, against 32).
template <typename Traits>
__global__ void __launch_bounds__(Traits::kNThreads, Traits::kMinBlocks)
    attn_pooling_kernel_tma(const __grid_constant__ PoolingParams p, const int cap, const int stage_stride) {
  attn_pooling_body<Traits, const PoolingParams&>(p, cap, stage_stride);
}

}  // namespace pooling
}  // namespace seer
