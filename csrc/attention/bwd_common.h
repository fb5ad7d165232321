// Shared parts of the block-sparse attention backward (2D and 1D masks share every kernel): the
// algorithm, the masking rule, and the device helpers the dK/dV kernel (bwd_dkdv_kernel.cuh) and the
// dQ kernel (bwd_dq_kernel.cuh) both use.
//
// Two paths (selected by params.deterministic, see bwd_launch_template.cuh):
// Deterministic (no atomics, fixed summation order; 7 GEMMs per (key tile, row tile) pair):
//   1. bwd_preprocess_kernel  (bwd_launch.cu): softmax_d[h, t] = sum_d dout * out - dlse.
//   2. bwd_dkdv_kernel<.., Is_atomic = false>: one CTA per (key tile of kBlockN keys, kv head,
//      sequence). K/V of the tile stay in shared memory; the CTA streams every row tile rt whose
//      tile_maskT entry is nonzero for a key block overlapping the tile (all q heads of the GQA group
//      are rows of those tiles, so dK/dV come out reduced over the group) and accumulates
//      dV += P^T dO, dK += dS^T Q in registers.
//   3. bwd_dq_kernel: one CTA per (row tile, kv head, sequence). Q/dO of the tile stay in shared
//      memory; the CTA streams the key windows (kBlockN keys) holding a kept key block and accumulates
//      dQ += dS K. S and dP are recomputed (no fp32 atomics, no dq_accum workspace).
// Atomic (FlashAttention-2 style, 5 GEMMs per pair; the default of the Python autograd):
//   1. as above;
//   2. bwd_dkdv_kernel<.., Is_atomic = true>: as above, plus, for every streamed row tile, a third phase
//      dQ_tile = dS K (dS^T is already in shared memory, K too) whose fp32 result is added into the
//      zero-initialised workspace dq_accum [T_q, H_q, D] (contiguous) with red.global.add(.v4).f32;
//   3. bwd_dq_convert_kernel (bwd_launch.cu): dq = dq_accum * scale in the element type, every row.
//   The summation order of dq then depends on the CTA schedule (not bitwise reproducible).
//
// Notation: a "row" is a (query token, query head) pair (see attention_params.h, "Row tiles").
// Logits x = scale * q.k; P = exp(x - lse) = exp2(s * scale_log2 - lse * log2(e)); dS = P * (dP - D)
// is the gradient of x; dQ = scale * dS K, dK = scale * dS^T Q, dV = P^T dO.
//
// Sequence bounds (q_start, clamped seqlen_q / seqlen_k, causal offset, row -> (token, head)): seqlen.h,
// the rule of every attention kernel. Masking of one (row i, key j) element, i/j sequence-local:
// visible iff
//   row valid (inside the tile's used rows and the sequence) and lse_i != -inf,
//   j < seqlen_k, tile-mask value of j's key block for the row tile != 0,
//   value 1: mask[b, hm, i / mask_row_div, j / B_k] != 0, causal: j <= i + seqlen_k - seqlen_q.
// Invisible elements get P = 0 exactly (hence dS = 0); no finite sentinel is used.
//
// Key windows: key tile / window w covers keys [w*kBlockN, (w+1)*kBlockN) of the sequence. B_k and
// kBlockN are multiples of 16, so each 16-key chunk of a window lies inside one key block; a window
// carries one 2-bit tile-mask value per 16-key chunk ("chunk flags"). This handles B_k < kBlockN
// (several blocks per window), B_k >= kBlockN and B_k not a multiple of kBlockN alike.
//
// Fragment layouts of mma.m16n8k16 / ldmatrix: see csrc/common/sm80_primitives.h. Shared-memory rows
// are padded by 8 elements (16 B) so that the 8 row addresses of every ldmatrix hit distinct banks.
// Operand loads (lane = 4g + t; x4 = four 8x8 matrices addressed by lanes 0-7, 8-15, 16-23, 24-31):
//  A 16x16 from a row-major [m][k] tile:      row m0 + (lane & 15), col k0 + (lane >> 4) * 8.
//  B for two n8 tiles from row-major [n][k]:  row n0 + (lane & 7) + (lane >> 4) * 8,
//                                             col k0 + ((lane >> 3) & 1) * 8       (ldmatrix, no trans)
//  B for two n8 tiles from row-major [k][n]:  row k0 + (lane & 7) + ((lane >> 3) & 1) * 8,
//                                             col n0 + (lane >> 4) * 8            (ldmatrix.trans)
// In the last two, registers {0,1} are the B fragment of n-tile n0..n0+7 and {2,3} of n0+8..n0+15.
#pragma once
#include <cstdint>

#include "attention/attention_params.h"
#include "attention/block_iter.h"
#include "attention/seqlen.h"
#include "common/platform.h"
#include "common/sm80_primitives.h"

namespace seer {
namespace attn_bwd {

constexpr float kLog2e = 1.4426950408889634f;
// Rows per row tile of the backward kernels (== attention_bwd_tile_rows for every head dim).
constexpr int kBwdTileRows = 64;

// dQ path of the atomic (non-deterministic) sm90 backward, decided on the device from the tile counts of
// the tile-mask builder (no host sync): at a kept-tile density above kDqFusedMinDensityPct percent the
// dK/dV kernel adds dQ with fp32 atomics; below, the dK/dV kernel skips dQ and the q-major dQ kernel
// computes it. H200, P1 lengths (benchmarks/NOTES.md v11): fused 1.7% faster at density 1, 15% slower
// at density 0.5 (14.19 vs 11.98-12.02 ms). Without counts (tile_count == nullptr): fused.
constexpr int kDqFusedMinDensityPct = 75;
// Kept tiles (tile_count[0]) above `pct` percent of the visible ones (tile_count[1]); exact integers.
SEER_DEVICE bool kept_above_pct(const unsigned long long* tile_count, int pct) {
  return tile_count[0] * 100ull > tile_count[1] * static_cast<unsigned long long>(pct);
}
SEER_DEVICE bool dq_fused(const unsigned long long* tile_count) {
  return tile_count == nullptr || kept_above_pct(tile_count, kDqFusedMinDensityPct);
}
// The atomic path: not deterministic, with the fp32 dq_accum workspace (dQ accumulated there, converted
// after the kernels). The one rule the launchers and the kernels share.
SEER_HOST_DEVICE bool dq_atomic(const AttnBwdParams& p) { return !p.deterministic && p.dq_accum != nullptr; }
// The atomic path with dQ added by the dK/dV kernel (dq_fused), so the q-major dQ kernel skips it and the
// preprocess zeroes the workspace.
SEER_DEVICE bool dq_fused_atomic(const AttnBwdParams& p) { return dq_atomic(p) && dq_fused(p.tile_count); }

// CTA size of the sm90 dK/dV kernel, from the same counts (both paths): at a kept-tile density of at most
// kDkdvSplitMaxDensityPct percent 64 keys per CTA, two CTAs per SM each streaming its own row tiles (it
// never adds dQ: the threshold lies below dq_fused's); otherwise 128 keys per CTA whose two consumers
// share the row tiles both keep (sm90/bwd_kernel_sm90.cuh Traits). H200, P1 lengths (NOTES v11): 64 keys
// 8% faster at density 0.1, equal at 0.5, 5% slower at 1. Without counts: 128.
constexpr int kDkdvSplitMaxDensityPct = 30;
static_assert(kDkdvSplitMaxDensityPct <= kDqFusedMinDensityPct, "the 64-key CTA never adds dQ");
SEER_DEVICE bool dkdv_split(const unsigned long long* tile_count) {
  return tile_count != nullptr && !kept_above_pct(tile_count, kDkdvSplitMaxDensityPct);
}

// Chunk flags of the kChunks 16-key chunks starting at sequence-local key `key0`: 2 bits per chunk,
// the tile-mask value of the chunk's key block (0 for keys past the sequence). The tile-mask entry of
// block n is tm[base + n * stride_n]. Consecutive chunks of one block read one byte.
template <int kChunks>
SEER_DEVICE uint32_t chunk_flags(const uint8_t* tm, int64_t base, int64_t stride_n, int key0, int seqlen_k,
                                 int block_k, int nb_k) {
  uint32_t flags = 0;
  int prev_n = -1;
  uint32_t v = 0;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int key = key0 + c * 16;
    if (key < seqlen_k) {
      const int n = key / block_k;
      if (n < nb_k) {
        if (n != prev_n) {
          v = tm[base + n * stride_n] & 3u;
          prev_n = n;
        }
        flags |= v << (2 * c);
      }
    }
  }
  return flags;
}

// The candidate row tiles of a key tile (the dK/dV kernels' walk down a transposed tile-mask column):
// the token tiles of every head slot that some key of the tile can be visible to. Candidate idx is token
// tile tt_lo + idx % tt_range of head slot idx / tt_range.
struct RowTileCandidates {
  int tt_lo;     // first token tile (causal: the first whose last row can see key0), else 0
  int tt_range;  // token tiles per head slot
  int n_cand;    // candidates: head slots x tt_range
  // Row tile of candidate idx < n_cand.
  SEER_DEVICE int row_tile(int idx, int n_tok_tiles) const {
    const int slot = idx / tt_range;
    return slot * n_tok_tiles + tt_lo + (idx - slot * tt_range);
  }
};
template <bool Is_causal>
SEER_DEVICE RowTileCandidates row_tile_candidates(const AttnParams& p, int seqlen_q, int key0, int causal_off) {
  const int n_slots = p.group / p.pack;
  const int tt_hi = min(p.n_tok_tiles, (seqlen_q + p.tile_tokens - 1) / p.tile_tokens);
  const int tt_lo = Is_causal ? max(0, key0 - causal_off) / p.tile_tokens : 0;
  const int tt_range = max(0, tt_hi - tt_lo);
  return RowTileCandidates{tt_lo, tt_range, n_slots * tt_range};
}

// Stream compaction of one candidate per thread (block_iter.h's step, shared with the forwards):
// appends, in thread order, (value, flags) of the threads with `keep` to list/list_flags and returns
// the count (same in every thread). The kThreads threads of the participant all call it (tid: the
// thread's index inside it, int or threadIdx.x, see block_list_slot; sync(): its barrier); it starts
// with a barrier because the previous list may still be in use.
template <int kThreads, typename Index, typename Sync>
SEER_DEVICE int compact_list(bool keep, int value, uint32_t flags, int* list, uint32_t* list_flags, int* warp_cnt,
                             Index tid, Sync sync) {
  sync();
  const ListSlot ls = block_list_slot<kThreads>(keep, tid, warp_cnt, sync);
  if (keep) {
    const int pos = ls.pos();
    list[pos] = value;
    list_flags[pos] = flags;
  }
  sync();
  return ls.total;
}

// cp.async of the Q and dO rows of row tile rt into sQ / sdO ([kBlockM][kLd]); rows that are not
// valid are zero-filled (their global memory is not read).
template <typename T>
SEER_DEVICE void load_q_do_tile(const AttnBwdParams& p, int hk, int rt, int q_start, int seqlen_q,
                                typename T::Elem* sQ, typename T::Elem* sdO) {
  using Elem = typename T::Elem;
  constexpr int kRowChunks = T::kHeadDim / 8;  // 16-byte chunks per row
  const Elem* q = static_cast<const Elem*>(p.q);
  const Elem* dout = static_cast<const Elem*>(p.dout);
#pragma unroll 1
  for (int idx = threadIdx.x; idx < T::kBlockM * kRowChunks; idx += T::kThreads) {
    const int r = idx / kRowChunks, c = idx - r * kRowChunks;
    const TileRow x = tile_row(p, hk, rt, r, seqlen_q);
    const int64_t tok = static_cast<int64_t>(q_start) + (x.valid ? x.tok : 0);
    const int64_t hd = x.valid ? x.head : 0;
    const Elem* gq = q + tok * p.q_row_stride + hd * p.q_head_stride + c * 8;
    const Elem* gdo = dout + tok * p.do_row_stride + hd * p.do_head_stride + c * 8;
    cp_async_16(sQ + r * T::kLd + c * 8, x.valid ? gq : q, x.valid);
    cp_async_16(sdO + r * T::kLd + c * 8, x.valid ? gdo : dout, x.valid);
  }
}

// cp.async of keys [key0, key0 + n_rows) (sequence-local; global row k_start + key) of kv head hk into
// sK / sV ([kRows][kLd]); rows past n_valid are zero-filled.
template <typename T, int kRows>
SEER_DEVICE void load_kv_tile(const AttnBwdParams& p, int hk, int64_t k_row0, int n_valid, typename T::Elem* sK,
                              typename T::Elem* sV) {
  using Elem = typename T::Elem;
  constexpr int kRowChunks = T::kHeadDim / 8;
  const Elem* k = static_cast<const Elem*>(p.k);
  const Elem* v = static_cast<const Elem*>(p.v);
#pragma unroll 1
  for (int idx = threadIdx.x; idx < kRows * kRowChunks; idx += T::kThreads) {
    const int r = idx / kRowChunks, c = idx - r * kRowChunks;
    const bool ok = r < n_valid;
    const int64_t row = k_row0 + (ok ? r : 0);
    const Elem* gk = k + row * p.k_row_stride + static_cast<int64_t>(hk) * p.k_head_stride + c * 8;
    const Elem* gv = v + row * p.v_row_stride + static_cast<int64_t>(hk) * p.v_head_stride + c * 8;
    cp_async_16(sK + r * T::kLd + c * 8, ok ? gk : k, ok);
    cp_async_16(sV + r * T::kLd + c * 8, ok ? gv : v, ok);
  }
}

// The dK and dV rows of packed key `row` (k_start + sequence-local key) of kv head hk (the epilogues).
template <typename Elem>
struct DkDvRow {
  Elem* dk;
  Elem* dv;
};
template <typename Elem>
SEER_DEVICE DkDvRow<Elem> dkdv_row(const AttnBwdParams& p, int64_t row, int hk) {
  return {static_cast<Elem*>(p.dk) + row * p.dk_row_stride + static_cast<int64_t>(hk) * p.dk_head_stride,
          static_cast<Elem*>(p.dv) + row * p.dv_row_stride + static_cast<int64_t>(hk) * p.dv_head_stride};
}


// Zeroes mma accumulator fragments (float [N][4] or [M][N][4]).
template <int N>
SEER_DEVICE void zero_acc(float (&a)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) a[j][e] = 0.f;
}
template <int M, int N>
SEER_DEVICE void zero_acc(float (&a)[M][N][4]) {
#pragma unroll
  for (int i = 0; i < M; ++i) zero_acc(a[i]);
}

template <typename Elem>
SEER_DEVICE void mma_pair(float (&d0)[4], float (&d1)[4], const uint32_t (&a)[4], const uint32_t (&b)[4]) {
  // b holds two n8 B fragments as loaded by one ldmatrix_x4: {b[0], b[1]} for d0, {b[2], b[3]} for d1.
  const uint32_t b0[2] = {b[0], b[1]};
  const uint32_t b1[2] = {b[2], b[3]};
  mma_16816<Elem>(d0, a, b0);
  mma_16816<Elem>(d1, a, b1);
}

// One k-step (16 deep) of a warp's 32 x (16 kN) product: two 16-row A fragments at a and
// a + a_mi_step, kN B fragment pairs (16 columns each) at b + jj * b_jj_step (element offsets of the
// lane's ldmatrix rows; kTransA / kTransB: ldmatrix.trans), acc[mi][2 jj .. 2 jj + 1] += A_mi B_jj.
template <int kN, bool kTransA, bool kTransB, typename Elem>
SEER_DEVICE void warp_mma_2xn(float (&acc)[2][2 * kN][4], const Elem* a, int a_mi_step, const Elem* b,
                              int b_jj_step) {
  uint32_t af[2][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
    if constexpr (kTransA)
      ldmatrix_x4_trans(af[mi], a + mi * a_mi_step);
    else
      ldmatrix_x4(af[mi], a + mi * a_mi_step);
  }
#pragma unroll
  for (int jj = 0; jj < kN; ++jj) {
    uint32_t bf[4];
    if constexpr (kTransB)
      ldmatrix_x4_trans(bf, b + jj * b_jj_step);
    else
      ldmatrix_x4(bf, b + jj * b_jj_step);
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) mma_pair<Elem>(acc[mi][2 * jj], acc[mi][2 * jj + 1], af[mi], bf);
  }
}

// Adds v to the four consecutive floats at `addr` (16-byte aligned) in global memory, result unused
// (RED). sm_90: one 16-byte vector reduction.
SEER_DEVICE void red_add_f32x4(float* addr, float a, float b, float c, float d) {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900)
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(addr), "f"(a), "f"(b), "f"(c), "f"(d));
#else
  atomicAdd(addr, a);
  atomicAdd(addr + 1, b);
  atomicAdd(addr + 2, c);
  atomicAdd(addr + 3, d);
#endif
}

}  // namespace attn_bwd
}  // namespace seer
