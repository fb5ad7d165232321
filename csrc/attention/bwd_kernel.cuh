// Backward kernels of the block-sparse varlen attention (2D and 1D masks share them).
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
//      zero-initialised workspace dq_accum [T_q, H_q, D] (contiguous) with red.global.add(.v2).f32;
//   3. bwd_dq_convert_kernel (bwd_launch.cu): dq = dq_accum * scale in the element type, every row.
//   The summation order of dq then depends on the CTA schedule (not bitwise reproducible).
//
// Notation: a "row" is a (query token, query head) pair (see attention_params.h, "Row tiles").
// Logits x = scale * q.k; P = exp(x - lse) = exp2(s * scale_log2 - lse * log2(e)); dS = P * (dP - D)
// is the gradient of x; dQ = scale * dS K, dK = scale * dS^T Q, dV = P^T dO.
//
// Masking of one (row i, key j) element, i/j sequence-local: visible iff
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
#pragma once
#include <cstdint>

#include "attention/attention_params.h"
#include "attention/seqlen.h"
#include "common/platform.h"
#include "common/sm80_primitives.h"

namespace seer {
namespace attn_bwd {

constexpr float kLog2e = 1.4426950408889634f;
// Rows per row tile of the backward kernels (== attention_bwd_tile_rows for every head dim).
constexpr int kBwdTileRows = 64;

// ------------------------------------------------------------------------------------------------
// Traits
// ------------------------------------------------------------------------------------------------

// dK/dV kernel. Phase 1 (S^T = K Q^T, dP^T = V dO^T, elementwise -> P^T, dS^T in shared memory):
// warp (wn, wm) owns keys [16 wn, +16) x rows [wm * kColsW, +kColsW). Phase 2 (dV += P^T dO,
// dK += dS^T Q): warp (wn, wd) owns keys [16 wn, +16) x dims [wd * kDimW, +kDimW).
template <int kHeadDim_, int kBlockN_, int kNWarps_, int kStages_, typename Elem_>
struct DkdvTraits {
  using Elem = Elem_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = kBwdTileRows;  // rows per streamed row tile
  static constexpr int kBlockN = kBlockN_;      // keys per CTA
  static constexpr int kNWarps = kNWarps_;
  static constexpr int kThreads = kNWarps * 32;
  static constexpr int kStages = kStages_;      // shared buffers of the streamed Q/dO tile (1 or 2)
  static constexpr int kLd = kHeadDim + 8;      // row pitch (elements) of sK, sV, sQ, sdO
  static constexpr int kLdP = kBlockM + 8;      // row pitch (elements) of sPt, sdSt
  static constexpr int kWarpsN = kBlockN / 16;  // warps along the keys (both phases)
  static constexpr int kWarpsM1 = kNWarps / kWarpsN;  // phase 1: warps along the rows
  static constexpr int kColsW = kBlockM / kWarpsM1;   // phase 1: rows per warp
  static constexpr int kWarpsD2 = kNWarps / kWarpsN;  // phase 2: warps along the head dim
  static constexpr int kDimW = kHeadDim / kWarpsD2;   // phase 2: dims per warp
  static constexpr int kChunks = kBlockN / 16;        // 16-key chunks per tile (2 flag bits each)
  static_assert(kBlockN % 16 == 0 && kNWarps % kWarpsN == 0, "warp layout");
  static_assert(kColsW % 16 == 0 && kDimW % 16 == 0, "warp tile must be a multiple of 16");
  static_assert(kStages == 1 || kStages == 2, "stages");
  static_assert(kChunks <= 16, "chunk flags must fit 32 bits");

  // Shared memory (byte offsets; every region is a multiple of 16 bytes).
  static constexpr int kKVBytes = kBlockN * kLd * int(sizeof(Elem));  // sK or sV
  static constexpr int kQBytes = kBlockM * kLd * int(sizeof(Elem));   // one stage of sQ or sdO
  static constexpr int kPBytes = kBlockN * kLdP * int(sizeof(Elem));  // sPt or sdSt
  static constexpr int kOffK = 0;
  static constexpr int kOffV = kOffK + kKVBytes;
  static constexpr int kOffQ = kOffV + kKVBytes;                 // [kStages][kBlockM][kLd]
  static constexpr int kOffDO = kOffQ + kStages * kQBytes;       // [kStages][kBlockM][kLd]
  static constexpr int kOffPt = kOffDO + kStages * kQBytes;      // P^T  [kBlockN][kLdP]
  static constexpr int kOffDSt = kOffPt + kPBytes;               // dS^T [kBlockN][kLdP]
  static constexpr int kOffMOff = kOffDSt + kPBytes;             // int64 [kStages][kBlockM] mask row offset
  static constexpr int kOffLse = kOffMOff + kStages * kBlockM * 8;  // float [kStages][kBlockM] lse*log2e
  static constexpr int kOffD = kOffLse + kStages * kBlockM * 4;     // float [kStages][kBlockM] softmax_d
  static constexpr int kOffTok = kOffD + kStages * kBlockM * 4;     // int [kStages][kBlockM] token
  static constexpr int kOffList = kOffTok + kStages * kBlockM * 4;  // int [kThreads] row tiles to visit
  static constexpr int kOffFlags = kOffList + kThreads * 4;         // uint32 [kThreads] chunk flags
  static constexpr int kOffWarpCnt = kOffFlags + kThreads * 4;      // int [kNWarps]
  static constexpr int kOffQAcc = (kOffWarpCnt + kNWarps * 4 + 15) / 16 * 16;  // int64 [kStages][kBlockM]
  static constexpr int kSmemBytes = kOffQAcc + kStages * kBlockM * 8;
  // Atomic path, phase 3 (dQ_tile = dS K): warp (wr, wh) owns rows [16 wr, +16) x dims
  // [wh * kDqDimW, +kDqDimW), processed kDqChunk dims at a time (short-lived accumulators).
  static constexpr int kDqWarpsM = kBlockM / 16;
  static constexpr int kDqWarpsD = kNWarps / kDqWarpsM;
  static constexpr int kDqDimW = kHeadDim / kDqWarpsD;
  static constexpr int kDqChunk = kDqDimW < 32 ? kDqDimW : 32;
  static_assert(kNWarps % kDqWarpsM == 0 && kDqDimW % kDqChunk == 0 && kDqChunk % 16 == 0, "dq warp layout");
};

// Adds (a, b) to the two consecutive floats at `addr` (8-byte aligned) in global memory; the result
// is not returned, so this compiles to RED (fire-and-forget). sm_90: one vectorised RED.
SEER_DEVICE void red_add_f32x2(float* addr, float a, float b) {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900)
  atomicAdd(reinterpret_cast<float2*>(addr), make_float2(a, b));
#else
  atomicAdd(addr, a);
  atomicAdd(addr + 1, b);
#endif
}

// dQ kernel: warp w owns rows [16 w, +16) of the row tile and all kBlockN keys of a window.
template <int kHeadDim_, int kBlockN_, typename Elem_>
struct DqTraits {
  using Elem = Elem_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = kBwdTileRows;  // rows of the CTA's row tile
  static constexpr int kBlockN = kBlockN_;      // keys per streamed window
  static constexpr int kNWarps = kBlockM / 16;
  static constexpr int kThreads = kNWarps * 32;
  static constexpr int kLd = kHeadDim + 8;  // row pitch (elements) of every tile in shared memory
  static constexpr int kChunks = kBlockN / 16;
  static_assert(kBlockN % 16 == 0 && kChunks <= 16, "window");

  static constexpr int kQBytes = kBlockM * kLd * int(sizeof(Elem));   // sQ or sdO
  static constexpr int kKVBytes = kBlockN * kLd * int(sizeof(Elem));  // one stage of sK or sV
  static constexpr int kOffQ = 0;
  static constexpr int kOffDO = kOffQ + kQBytes;
  static constexpr int kOffK = kOffDO + kQBytes;        // [2][kBlockN][kLd]
  static constexpr int kOffV = kOffK + 2 * kKVBytes;    // [2][kBlockN][kLd]
  static constexpr int kOffList = kOffV + 2 * kKVBytes; // int [kThreads] windows to visit
  static constexpr int kOffFlags = kOffList + kThreads * 4;  // uint32 [kThreads] chunk flags
  static constexpr int kOffWarpCnt = kOffFlags + kThreads * 4;
  static constexpr int kSmemBytes = (kOffWarpCnt + kNWarps * 4 + 15) / 16 * 16;
};

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

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

// Stream compaction of one candidate per thread: appends, in thread order, (value, flags) of the
// threads with `keep` to list/list_flags and returns the count (same in every thread). All threads
// of the CTA call it; it starts with a barrier because the previous list may still be in use.
template <int kNWarps>
SEER_DEVICE int compact_list(bool keep, int value, uint32_t flags, int* list, uint32_t* list_flags,
                             int* warp_cnt) {
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const unsigned ballot = __ballot_sync(0xffffffffu, keep);
  if (lane == 0) warp_cnt[warp] = __popc(ballot);
  __syncthreads();
  int base = 0, total = 0;
#pragma unroll
  for (int w = 0; w < kNWarps; ++w) {
    const int c = warp_cnt[w];
    base += w < warp ? c : 0;
    total += c;
  }
  if (keep) {
    const int pos = base + __popc(ballot & ((1u << lane) - 1u));
    list[pos] = value;
    list_flags[pos] = flags;
  }
  __syncthreads();
  return total;
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

// Offset (bytes) of mask[b, hm(head), tok / mask_row_div, 0].
SEER_DEVICE int64_t mask_row_offset(const AttnParams& p, int b, int head, int tok) {
  const int hm = head / (p.h_q / p.mask_heads);
  return static_cast<int64_t>(b) * p.mask_stride_b + static_cast<int64_t>(hm) * p.mask_stride_h +
         static_cast<int64_t>(tok / p.mask_row_div) * p.mask_stride_row;
}

template <typename Elem>
SEER_DEVICE void mma_pair(float (&d0)[4], float (&d1)[4], const uint32_t (&a)[4], const uint32_t (&b)[4]) {
  // b holds two n8 B fragments as loaded by one ldmatrix_x4: {b[0], b[1]} for d0, {b[2], b[3]} for d1.
  const uint32_t b0[2] = {b[0], b[1]};
  const uint32_t b1[2] = {b[2], b[3]};
  mma_16816<Elem>(d0, a, b0);
  mma_16816<Elem>(d1, a, b1);
}

// ------------------------------------------------------------------------------------------------
// dK / dV
// ------------------------------------------------------------------------------------------------
//
// Operand loads (lane = 4g + t; x4 = four 8x8 matrices addressed by lanes 0-7, 8-15, 16-23, 24-31):
//  A 16x16 from a row-major [m][k] tile:      row m0 + (lane & 15), col k0 + (lane >> 4) * 8.
//  B for two n8 tiles from row-major [n][k]:  row n0 + (lane & 7) + (lane >> 4) * 8,
//                                             col k0 + ((lane >> 3) & 1) * 8       (ldmatrix, no trans)
//  B for two n8 tiles from row-major [k][n]:  row k0 + (lane & 7) + ((lane >> 3) & 1) * 8,
//                                             col n0 + (lane >> 4) * 8            (ldmatrix.trans)
// In the last two, registers {0,1} are the B fragment of n-tile n0..n0+7 and {2,3} of n0+8..n0+15.
template <typename Kt, bool Is_causal, bool Is_atomic>
__global__ void __launch_bounds__(Kt::kThreads, 1) bwd_dkdv_kernel(const __grid_constant__ AttnBwdParams p) {
  using Elem = typename Kt::Elem;
  constexpr int kBlockM = Kt::kBlockM, kBlockN = Kt::kBlockN, kLd = Kt::kLd, kLdP = Kt::kLdP;
  constexpr int kColsW = Kt::kColsW, kDimW = Kt::kDimW, kStages = Kt::kStages;
  extern __shared__ __align__(16) unsigned char smem[];
  Elem* sK = reinterpret_cast<Elem*>(smem + Kt::kOffK);
  Elem* sV = reinterpret_cast<Elem*>(smem + Kt::kOffV);
  Elem* sQ = reinterpret_cast<Elem*>(smem + Kt::kOffQ);
  Elem* sdO = reinterpret_cast<Elem*>(smem + Kt::kOffDO);
  Elem* sPt = reinterpret_cast<Elem*>(smem + Kt::kOffPt);
  Elem* sdSt = reinterpret_cast<Elem*>(smem + Kt::kOffDSt);
  int64_t* sMOff = reinterpret_cast<int64_t*>(smem + Kt::kOffMOff);
  float* sLse2 = reinterpret_cast<float*>(smem + Kt::kOffLse);
  float* sDd = reinterpret_cast<float*>(smem + Kt::kOffD);
  int* sTok = reinterpret_cast<int*>(smem + Kt::kOffTok);
  int* sList = reinterpret_cast<int*>(smem + Kt::kOffList);
  uint32_t* sFlags = reinterpret_cast<uint32_t*>(smem + Kt::kOffFlags);
  int* sWarpCnt = reinterpret_cast<int*>(smem + Kt::kOffWarpCnt);
  int64_t* sQAcc = reinterpret_cast<int64_t*>(smem + Kt::kOffQAcc);  // dq_accum row offset or -1

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const int hk = blockIdx.y, b = blockIdx.z;
  const int q_start = p.cu_seqlens_q[b], seqlen_q = p.cu_seqlens_q[b + 1] - q_start;
  const int k_start = p.cu_seqlens_k[b], seqlen_k = p.cu_seqlens_k[b + 1] - k_start;
  const int key0 = blockIdx.x * kBlockN;  // first (sequence-local) key of this CTA
  if (key0 >= seqlen_k) return;
  const int n_keys = min(kBlockN, seqlen_k - key0);
  const int causal_off = seqlen_k - seqlen_q;

  load_kv_tile<Kt, kBlockN>(p, hk, static_cast<int64_t>(k_start) + key0, n_keys, sK, sV);
  cp_async_commit();

  // Warp coordinates. Both phases use the same key slice (16 keys = one chunk, so one key block).
  const int wn = warp % Kt::kWarpsN;
  const int wm = warp / Kt::kWarpsN;  // phase 1: row slice
  const int wd = warp / Kt::kWarpsN;  // phase 2: dim slice
  const int wkey = key0 + wn * 16;    // first key of the warp's slice
  const int wblock = wkey / p.block_size_k;
  const int64_t wblock_col = static_cast<int64_t>(wblock) * p.mask_stride_col;
  const bool key_ok0 = wkey + g < seqlen_k, key_ok1 = wkey + g + 8 < seqlen_k;

  float acc_dv[kDimW / 8][4], acc_dk[kDimW / 8][4];
#pragma unroll
  for (int j = 0; j < kDimW / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc_dv[j][e] = acc_dk[j][e] = 0.f;

  // Candidate row tiles: every head slot x the token tiles of the sequence (causal: only those whose
  // last token can see key0, i.e. tok >= key0 - causal_off).
  const int n_slots = p.group / p.pack;
  const int tt_hi = min(p.n_tok_tiles, (seqlen_q + p.tile_tokens - 1) / p.tile_tokens);
  const int tt_lo = Is_causal ? max(0, key0 - causal_off) / p.tile_tokens : 0;
  const int tt_range = max(0, tt_hi - tt_lo);
  const int n_cand = n_slots * tt_range;
  const int64_t tmT_bh = (static_cast<int64_t>(b) * p.h_kv + hk) * p.nb_k;  // row n at (tmT_bh + n) * n_row_tiles

  // Per-row data of a row tile (thread tid < kBlockM holds row tid). fetch_meta issues the global
  // loads; store_meta (which consumes them) runs one compute step later, so the prefetch of tile i+1
  // does not stall its warps on the lse / softmax_d loads.
  struct RowMeta {
    float lse, dd;  // raw lse (natural log; -inf for rows that are not valid) and softmax_d
    int tok;        // sequence-local token
    int64_t moff;   // mask row offset (mask_row_offset)
    int64_t qacc;   // atomic path: element offset of the row in dq_accum, -1 if the row is not valid
  };
  auto fetch_meta = [&](int rt) {
    RowMeta m{-INFINITY, 0.f, 0, 0, -1};
    if (tid < kBlockM) {
      const TileRow x = tile_row(p, hk, rt, tid, seqlen_q);
      m.tok = x.tok;
      if (x.valid) {
        const int64_t li = static_cast<int64_t>(x.head) * p.total_q + q_start + x.tok;
        m.lse = p.lse[li];
        m.dd = p.softmax_d[li];
        m.moff = mask_row_offset(p, b, x.head, x.tok);
        if (Is_atomic)
          m.qacc = ((static_cast<int64_t>(q_start) + x.tok) * p.h_q + x.head) * static_cast<int64_t>(Kt::kHeadDim);
      }
    }
    return m;
  };
  auto store_meta = [&](const RowMeta& m, int st) {
    if (tid < kBlockM) {
      sLse2[st * kBlockM + tid] = m.lse * kLog2e;  // -inf stays -inf
      sDd[st * kBlockM + tid] = m.dd;
      sTok[st * kBlockM + tid] = m.tok;
      sMOff[st * kBlockM + tid] = m.moff;
      if (Is_atomic) sQAcc[st * kBlockM + tid] = m.lse == -INFINITY ? int64_t(-1) : m.qacc;
    }
  };
  // cp.async of the Q/dO rows of row tile rt into stage st.
  auto load_rows = [&](int rt, int st) {
    load_q_do_tile<Kt>(p, hk, rt, q_start, seqlen_q, sQ + st * kBlockM * kLd, sdO + st * kBlockM * kLd);
  };

#pragma unroll 1
  for (int cbase = 0; cbase < n_cand; cbase += Kt::kThreads) {
    // ---- which row tiles of this batch of candidates touch the key tile -----------------------
    const int idx = cbase + tid;
    int rt = 0;
    uint32_t flags = 0;
    if (idx < n_cand) {
      const int slot = idx / tt_range;
      rt = slot * p.n_tok_tiles + tt_lo + (idx - slot * tt_range);
      flags = chunk_flags<Kt::kChunks>(p.tile_maskT, tmT_bh * p.n_row_tiles + rt, p.n_row_tiles, key0, seqlen_k,
                                       p.block_size_k, p.nb_k);
    }
    const int cnt = compact_list<Kt::kNWarps>(flags != 0, rt, flags, sList, sFlags, sWarpCnt);
    if (cnt == 0) continue;

    if constexpr (kStages == 2) {
      load_rows(sList[0], 0);
      cp_async_commit();
      store_meta(fetch_meta(sList[0]), 0);
    }
#pragma unroll 1
    for (int i = 0; i < cnt; ++i) {
      int st = 0;
      RowMeta next{-INFINITY, 0.f, 0, 0, -1};  // kStages == 2: metadata of tile i+1, stored after phase 2
      if constexpr (kStages == 2) {
        st = i & 1;
        cp_async_wait<0>();
        __syncthreads();  // tile i visible; every warp is done with tile i-1 (stage st^1, sPt, sdSt)
        if (i + 1 < cnt) {
          load_rows(sList[i + 1], st ^ 1);
          next = fetch_meta(sList[i + 1]);
        }
        cp_async_commit();
      } else {
        __syncthreads();  // every warp is done with tile i-1
        load_rows(sList[i], 0);
        cp_async_commit();
        store_meta(fetch_meta(sList[i]), 0);
        cp_async_wait<0>();
        __syncthreads();
      }
      const Elem* sQs = sQ + st * kBlockM * kLd;
      const Elem* sdOs = sdO + st * kBlockM * kLd;
      const float* sLse2s = sLse2 + st * kBlockM;
      const float* sDs = sDd + st * kBlockM;
      const int* sToks = sTok + st * kBlockM;
      const int64_t* sMOffs = sMOff + st * kBlockM;
      const int flag = (sFlags[i] >> (2 * wn)) & 3;  // tile-mask value of the warp's key block

      // ---- phase 1: S^T = K Q^T and dP^T = V dO^T for keys [wkey, +16) x rows [wm*kColsW, +kColsW)
      if (flag != 0) {
        float acc_s[kColsW / 8][4], acc_dp[kColsW / 8][4];
#pragma unroll
        for (int j = 0; j < kColsW / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc_s[j][e] = acc_dp[j][e] = 0.f;
        const Elem* a_k = sK + (wn * 16 + (lane & 15)) * kLd + (lane >> 4) * 8;
        const Elem* a_v = sV + (wn * 16 + (lane & 15)) * kLd + (lane >> 4) * 8;
        const int b_off = (wm * kColsW + (lane & 7) + (lane >> 4) * 8) * kLd + ((lane >> 3) & 1) * 8;
        // Partial unroll: full unrolling of the head-dim loop makes ptxas hoist every ldmatrix and
        // spill at D = 256 (with the 128 dK/dV accumulator registers live).
#pragma unroll 4
        for (int kk = 0; kk < Kt::kHeadDim / 16; ++kk) {
          uint32_t ak[4], av[4];
          ldmatrix_x4(ak, a_k + kk * 16);
          ldmatrix_x4(av, a_v + kk * 16);
#pragma unroll
          for (int jj = 0; jj < kColsW / 16; ++jj) {
            uint32_t bq[4], bdo[4];
            ldmatrix_x4(bq, sQs + b_off + jj * 16 * kLd + kk * 16);
            ldmatrix_x4(bdo, sdOs + b_off + jj * 16 * kLd + kk * 16);
            mma_pair<Elem>(acc_s[2 * jj], acc_s[2 * jj + 1], ak, bq);
            mma_pair<Elem>(acc_dp[2 * jj], acc_dp[2 * jj + 1], av, bdo);
          }
        }
        // Elementwise: acc[j][e] is key wkey + g + 8*(e>>1), row wm*kColsW + 8j + 2t + (e&1).
#pragma unroll
        for (int j = 0; j < kColsW / 8; ++j) {
          float pv[4], dsv[4];
#pragma unroll
          for (int cc = 0; cc < 2; ++cc) {
            const int r = wm * kColsW + j * 8 + 2 * t4 + cc;
            const float lse2 = sLse2s[r];
            const float dd = sDs[r];
            bool row_ok = lse2 != -INFINITY;  // valid row with at least one visible key
            if (row_ok && flag == 1) row_ok = p.mask[sMOffs[r] + wblock_col] != 0;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const int e = 2 * h + cc;
              bool ok = row_ok && (h == 0 ? key_ok0 : key_ok1);
              if (Is_causal) ok = ok && (wkey + g + 8 * h <= sToks[r] + causal_off);
              const float pr = ok ? fast_exp2(fmaf(acc_s[j][e], p.scale_log2, -lse2)) : 0.f;
              pv[e] = pr;
              dsv[e] = pr * (acc_dp[j][e] - dd);
            }
          }
          const int col = wm * kColsW + j * 8 + 2 * t4;
          const int row0 = wn * 16 + g;
          *reinterpret_cast<uint32_t*>(sPt + row0 * kLdP + col) = pack2<Elem>(pv[0], pv[1]);
          *reinterpret_cast<uint32_t*>(sPt + (row0 + 8) * kLdP + col) = pack2<Elem>(pv[2], pv[3]);
          *reinterpret_cast<uint32_t*>(sdSt + row0 * kLdP + col) = pack2<Elem>(dsv[0], dsv[1]);
          *reinterpret_cast<uint32_t*>(sdSt + (row0 + 8) * kLdP + col) = pack2<Elem>(dsv[2], dsv[3]);
        }
      }
      __syncthreads();  // P^T, dS^T complete

      // ---- phase 2: dV += P^T dO, dK += dS^T Q for keys [wkey, +16) x dims [wd*kDimW, +kDimW) ---
      // (A key slice whose flag is 0 has P = dS = 0 for the whole tile: skip it; its sPt/sdSt rows
      //  were not written this iteration.)
      if (flag != 0) {
        const Elem* a_p = sPt + (wn * 16 + (lane & 15)) * kLdP + (lane >> 4) * 8;
        const Elem* a_ds = sdSt + (wn * 16 + (lane & 15)) * kLdP + (lane >> 4) * 8;
        const int b_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * kLd + wd * kDimW + (lane >> 4) * 8;
#pragma unroll
        for (int kk = 0; kk < kBlockM / 16; ++kk) {
          uint32_t ap[4], ads[4];
          ldmatrix_x4(ap, a_p + kk * 16);
          ldmatrix_x4(ads, a_ds + kk * 16);
#pragma unroll
          for (int jj = 0; jj < kDimW / 16; ++jj) {
            uint32_t bdo[4], bq[4];
            ldmatrix_x4_trans(bdo, sdOs + b_off + kk * 16 * kLd + jj * 16);
            ldmatrix_x4_trans(bq, sQs + b_off + kk * 16 * kLd + jj * 16);
            mma_pair<Elem>(acc_dv[2 * jj], acc_dv[2 * jj + 1], ap, bdo);
            mma_pair<Elem>(acc_dk[2 * jj], acc_dk[2 * jj + 1], ads, bq);
          }
        }
      }

      // ---- phase 3 (atomic path): dq_accum[rows] += dS K for rows [16 wr, +16) x dims of warp wh --
      // dS (rows x keys) is read from dS^T [key][row] with ldmatrix.trans (A operand), K [key][d] with
      // ldmatrix.trans (B operand). 16-key chunks whose flag is 0 were not written this iteration
      // (stale shared memory) and contribute nothing: skipped (the flags are uniform over the CTA).
      if constexpr (Is_atomic) {
        constexpr int kDqChunk = Kt::kDqChunk;
        const uint32_t tflags = sFlags[i];
        const int wr = warp % Kt::kDqWarpsM, wh = warp / Kt::kDqWarpsM;
        const int64_t* sQAccs = sQAcc + st * kBlockM;
        const int64_t qoff0 = sQAccs[wr * 16 + g], qoff1 = sQAccs[wr * 16 + g + 8];
        uint32_t a_ds[Kt::kChunks][4];
        const Elem* a_src = sdSt + ((lane & 7) + (lane >> 4) * 8) * kLdP + wr * 16 + ((lane >> 3) & 1) * 8;
#pragma unroll
        for (int kk = 0; kk < Kt::kChunks; ++kk) {
          if ((tflags >> (2 * kk)) & 3u) {
            ldmatrix_x4_trans(a_ds[kk], a_src + kk * 16 * kLdP);
          } else {
#pragma unroll
            for (int e = 0; e < 4; ++e) a_ds[kk][e] = 0u;
          }
        }
        const int bt_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * kLd + (lane >> 4) * 8;
        float* accum = p.dq_accum;
#pragma unroll 1
        for (int dc = 0; dc < Kt::kDqDimW; dc += kDqChunk) {
          const int d0 = wh * Kt::kDqDimW + dc;
          float acc_dq[kDqChunk / 8][4];
#pragma unroll
          for (int j = 0; j < kDqChunk / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc_dq[j][e] = 0.f;
#pragma unroll
          for (int kk = 0; kk < Kt::kChunks; ++kk) {
            if ((tflags >> (2 * kk)) & 3u) {
#pragma unroll
              for (int jj = 0; jj < kDqChunk / 16; ++jj) {
                uint32_t bk[4];
                ldmatrix_x4_trans(bk, sK + bt_off + kk * 16 * kLd + d0 + jj * 16);
                mma_pair<Elem>(acc_dq[2 * jj], acc_dq[2 * jj + 1], a_ds[kk], bk);
              }
            }
          }
#pragma unroll
          for (int j = 0; j < kDqChunk / 8; ++j) {
            const int d = d0 + j * 8 + 2 * t4;
            if (qoff0 >= 0) red_add_f32x2(accum + qoff0 + d, acc_dq[j][0], acc_dq[j][1]);
            if (qoff1 >= 0) red_add_f32x2(accum + qoff1 + d, acc_dq[j][2], acc_dq[j][3]);
          }
        }
      }
      // Stage st^1 is not read before the barrier at the top of the next iteration.
      if constexpr (kStages == 2) {
        if (i + 1 < cnt) store_meta(next, st ^ 1);
      }
    }
  }
  cp_async_wait<0>();  // nothing may be in flight at exit (e.g. K/V when no row tile was visited)

  // ---- epilogue: every key of the tile gets dk (times scale) and dv, zeros where nothing attends
  Elem* dk = static_cast<Elem*>(p.dk);
  Elem* dv = static_cast<Elem*>(p.dv);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int kr = wn * 16 + g + 8 * h;
    if (kr < n_keys) {
      const int64_t row = static_cast<int64_t>(k_start) + key0 + kr;
      Elem* gdk = dk + row * p.dk_row_stride + static_cast<int64_t>(hk) * p.dk_head_stride;
      Elem* gdv = dv + row * p.dv_row_stride + static_cast<int64_t>(hk) * p.dv_head_stride;
#pragma unroll
      for (int j = 0; j < kDimW / 8; ++j) {
        const int d = wd * kDimW + j * 8 + 2 * t4;
        *reinterpret_cast<uint32_t*>(gdk + d) =
            pack2<Elem>(acc_dk[j][2 * h] * p.scale, acc_dk[j][2 * h + 1] * p.scale);
        *reinterpret_cast<uint32_t*>(gdv + d) = pack2<Elem>(acc_dv[j][2 * h], acc_dv[j][2 * h + 1]);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// dQ
// ------------------------------------------------------------------------------------------------
template <typename Qt, bool Is_causal>
__global__ void __launch_bounds__(Qt::kThreads, 1) bwd_dq_kernel(const __grid_constant__ AttnBwdParams p) {
  using Elem = typename Qt::Elem;
  constexpr int kBlockN = Qt::kBlockN, kLd = Qt::kLd, kHeadDim = Qt::kHeadDim;
  extern __shared__ __align__(16) unsigned char smem[];
  Elem* sQ = reinterpret_cast<Elem*>(smem + Qt::kOffQ);
  Elem* sdO = reinterpret_cast<Elem*>(smem + Qt::kOffDO);
  Elem* sK = reinterpret_cast<Elem*>(smem + Qt::kOffK);
  Elem* sV = reinterpret_cast<Elem*>(smem + Qt::kOffV);
  int* sList = reinterpret_cast<int*>(smem + Qt::kOffList);
  uint32_t* sFlags = reinterpret_cast<uint32_t*>(smem + Qt::kOffFlags);
  int* sWarpCnt = reinterpret_cast<int*>(smem + Qt::kOffWarpCnt);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  // Reversed so that the last token tiles (the most keys under a causal mask) start first.
  const int rt = p.n_row_tiles - 1 - static_cast<int>(blockIdx.x);
  const int hk = blockIdx.y, b = blockIdx.z;
  const int q_start = p.cu_seqlens_q[b], seqlen_q = p.cu_seqlens_q[b + 1] - q_start;
  const int k_start = p.cu_seqlens_k[b], seqlen_k = p.cu_seqlens_k[b + 1] - k_start;
  const int tok0 = (rt % p.n_tok_tiles) * p.tile_tokens;  // first token of the row tile
  if (tok0 >= seqlen_q) return;
  const int causal_off = seqlen_k - seqlen_q;

  load_q_do_tile<Qt>(p, hk, rt, q_start, seqlen_q, sQ, sdO);
  cp_async_commit();

  // The thread's two rows: warp*16 + g + 8*h (accumulator elements 2h, 2h+1).
  int row_tok[2], row_head[2];
  bool row_valid[2], row_live[2];
  float row_lse2[2], row_d[2];
  int64_t row_moff[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const TileRow x = tile_row(p, hk, rt, warp * 16 + g + 8 * h, seqlen_q);
    row_tok[h] = x.tok;
    row_head[h] = x.head;
    row_valid[h] = x.valid;
    row_lse2[h] = -INFINITY;
    row_d[h] = 0.f;
    row_moff[h] = 0;
    if (x.valid) {
      const int64_t li = static_cast<int64_t>(x.head) * p.total_q + q_start + x.tok;
      row_lse2[h] = p.lse[li] * kLog2e;
      row_d[h] = p.softmax_d[li];
      row_moff[h] = mask_row_offset(p, b, x.head, x.tok);
    }
    row_live[h] = row_lse2[h] != -INFINITY;  // valid row with at least one visible key
  }

  float acc_dq[kHeadDim / 8][4];
#pragma unroll
  for (int j = 0; j < kHeadDim / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc_dq[j][e] = 0.f;

  // Candidate windows: all windows before the last key any row of the tile can see.
  int key_end = seqlen_k;
  if (Is_causal) {
    const int last_tok = min(seqlen_q, tok0 + p.tile_tokens) - 1;
    key_end = min(seqlen_k, last_tok + 1 + causal_off);
  }
  const int n_win = key_end > 0 ? (key_end + kBlockN - 1) / kBlockN : 0;
  const int64_t tm_row = ((static_cast<int64_t>(b) * p.h_kv + hk) * p.n_row_tiles + rt) * p.nb_k;

  auto load_window = [&](int w, int st) {
    const int wk0 = w * kBlockN;
    load_kv_tile<Qt, kBlockN>(p, hk, static_cast<int64_t>(k_start) + wk0, seqlen_k - wk0,
                              sK + st * kBlockN * kLd, sV + st * kBlockN * kLd);
  };

#pragma unroll 1
  for (int cbase = 0; cbase < n_win; cbase += Qt::kThreads) {
    const int w_c = cbase + tid;
    uint32_t flags = 0;
    if (w_c < n_win)
      flags = chunk_flags<Qt::kChunks>(p.tile_mask, tm_row, 1, w_c * kBlockN, seqlen_k, p.block_size_k, p.nb_k);
    const int cnt = compact_list<Qt::kNWarps>(flags != 0, w_c, flags, sList, sFlags, sWarpCnt);
    if (cnt == 0) continue;

    load_window(sList[0], 0);
    cp_async_commit();
#pragma unroll 1
    for (int i = 0; i < cnt; ++i) {
      const int st = i & 1;
      cp_async_wait<0>();
      __syncthreads();  // window i (and Q/dO) visible; every warp is done with window i-1
      if (i + 1 < cnt) load_window(sList[i + 1], st ^ 1);
      cp_async_commit();

      const Elem* sKs = sK + st * kBlockN * kLd;
      const Elem* sVs = sV + st * kBlockN * kLd;
      const int wk0 = sList[i] * kBlockN;
      const uint32_t wflags = sFlags[i];

      // ---- S = Q K^T, dP = dO V^T for rows [16 warp, +16) x the window's keys ------------------
      float acc_s[kBlockN / 8][4], acc_dp[kBlockN / 8][4];
#pragma unroll
      for (int j = 0; j < kBlockN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc_s[j][e] = acc_dp[j][e] = 0.f;
      const Elem* a_q = sQ + (warp * 16 + (lane & 15)) * kLd + (lane >> 4) * 8;
      const Elem* a_do = sdO + (warp * 16 + (lane & 15)) * kLd + (lane >> 4) * 8;
      const int b_off = ((lane & 7) + (lane >> 4) * 8) * kLd + ((lane >> 3) & 1) * 8;
#pragma unroll
      for (int kk = 0; kk < kHeadDim / 16; ++kk) {
        uint32_t aq[4], ado[4];
        ldmatrix_x4(aq, a_q + kk * 16);
        ldmatrix_x4(ado, a_do + kk * 16);
#pragma unroll
        for (int jj = 0; jj < kBlockN / 16; ++jj) {
          uint32_t bk[4], bv[4];
          ldmatrix_x4(bk, sKs + b_off + jj * 16 * kLd + kk * 16);
          ldmatrix_x4(bv, sVs + b_off + jj * 16 * kLd + kk * 16);
          mma_pair<Elem>(acc_s[2 * jj], acc_s[2 * jj + 1], aq, bk);
          mma_pair<Elem>(acc_dp[2 * jj], acc_dp[2 * jj + 1], ado, bv);
        }
      }

      // ---- elementwise: acc[j][e] is row warp*16 + g + 8*(e>>1), key wk0 + 8j + 2t + (e&1) -------
      // acc_s is overwritten by dS = P * (dP - D).
#pragma unroll
      for (int c = 0; c < Qt::kChunks; ++c) {
        const int flag = (wflags >> (2 * c)) & 3;
        const int ckey = wk0 + c * 16;  // all 16 keys of the chunk lie in key block ckey / B_k
        bool row_keep[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          row_keep[h] = flag != 0 && row_live[h];
          if (row_keep[h] && flag == 1)
            row_keep[h] =
                p.mask[row_moff[h] + static_cast<int64_t>(ckey / p.block_size_k) * p.mask_stride_col] != 0;
        }
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) {
          const int j = 2 * c + jj;
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int h = e >> 1;
            const int key = ckey + jj * 8 + 2 * t4 + (e & 1);
            bool ok = row_keep[h] && key < seqlen_k;
            if (Is_causal) ok = ok && key <= row_tok[h] + causal_off;
            const float pr = ok ? fast_exp2(fmaf(acc_s[j][e], p.scale_log2, -row_lse2[h])) : 0.f;
            acc_s[j][e] = pr * (acc_dp[j][e] - row_d[h]);
          }
        }
      }

      // ---- dQ += dS K: dS accumulators become A fragments (keys = k dim); K row-major [key][d] ---
      const int bt_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * kLd + (lane >> 4) * 8;
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        uint32_t a[4];
        a[0] = pack2<Elem>(acc_s[2 * kk][0], acc_s[2 * kk][1]);
        a[1] = pack2<Elem>(acc_s[2 * kk][2], acc_s[2 * kk][3]);
        a[2] = pack2<Elem>(acc_s[2 * kk + 1][0], acc_s[2 * kk + 1][1]);
        a[3] = pack2<Elem>(acc_s[2 * kk + 1][2], acc_s[2 * kk + 1][3]);
#pragma unroll
        for (int jj = 0; jj < kHeadDim / 16; ++jj) {
          uint32_t bk[4];
          ldmatrix_x4_trans(bk, sKs + bt_off + kk * 16 * kLd + jj * 16);
          mma_pair<Elem>(acc_dq[2 * jj], acc_dq[2 * jj + 1], a, bk);
        }
      }
    }
  }
  cp_async_wait<0>();

  // ---- epilogue: dq * scale for every valid row (zeros for rows that attend nothing) -----------
  Elem* dq = static_cast<Elem*>(p.dq);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (row_valid[h]) {
      Elem* gdq = dq + (static_cast<int64_t>(q_start) + row_tok[h]) * p.dq_row_stride +
                  static_cast<int64_t>(row_head[h]) * p.dq_head_stride;
#pragma unroll
      for (int j = 0; j < kHeadDim / 8; ++j) {
        const int d = j * 8 + 2 * t4;
        *reinterpret_cast<uint32_t*>(gdq + d) =
            pack2<Elem>(acc_dq[j][2 * h] * p.scale, acc_dq[j][2 * h + 1] * p.scale);
      }
    }
  }
}

}  // namespace attn_bwd
}  // namespace seer
