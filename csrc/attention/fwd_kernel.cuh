// Forward kernel of varlen block-sparse attention (2D and 1D block masks share it).
//
// FlashAttention-2 style mainloop on sm80+ mma.sync (m16n8k16, fp32 accumulation), compiled for sm_80
// and sm_90. One CTA computes one row tile (attention_params.h: kBlockM rows = (token, q head) pairs
// that share one kv head) of one sequence:
//
//   1. Q rows are gathered (per-row token/head strides) into shared memory with 16-byte cp.async.
//   2. The tile-mask row tile_mask[b][hk][rt][0..nb_k) is streamed: kept blocks (value != 0) are
//      compacted chunk by chunk into a shared list (warp ballots). The kept blocks are cut into
//      16-key "chunks" (B_k is a multiple of 16); kBlockN/16 consecutive chunks of that stream form one
//      K/V tile. So a tile gathers several small blocks (B_k < kBlockN), or covers part of a large one
//      (B_k > kBlockN), and a block of any size in [16, 256] never leaves a partially filled tile
//      except at the very end of the stream. Chunks past the last visible key of the tile (sequence
//      end, causal diagonal of the tile's last row) are dropped.
//   3. K/V tiles are double buffered: the tile i+1 is in flight (cp.async) while tile i is computed.
//      K/V rows are gathered per key (a chunk starts at any multiple of 16 inside the sequence).
//   4. S = Q K^T (each warp owns 16 rows), per-element masking (key >= seqlen_k, causal, and for
//      chunks of tile-mask value 1 the user mask byte of (row, block)), online softmax in the log2
//      domain, O += P V with P re-used from the S accumulators as the A operand.
//   5. Epilogue: O / l staged through shared memory and written with the rows' (token, head)
//      strides; lse = ln(sum exp) (natural log), -inf and O = 0 for rows with no visible key.
//
// Shared memory layout per CTA (all tiles row-major, rows of kHeadDim elements, 16-byte chunks of a
// row XOR-swizzled by (row % 8) so that ldmatrix and cp.async are bank-conflict free):
//   [Q  kBlockM x D] [K0 kBlockN x D] [V0 kBlockN x D] [K1] [V1]
//   [kept-block list: int blk[kNThreads], uint8 val[kNThreads]] [int warp_count[kNWarps]]
//   [chunk tables of the two stages: int key[2][kChunks], int check[2][kChunks]]
//   [per-row key bound int[kBlockM]] [per-row user-mask row pointer [kBlockM]] [CtaState]
// The Q region is re-used to stage O in the epilogue.
//
// Hopper runs D 64 / 128 on the warp-specialised wgmma kernel of sm90/ instead (fwd_dispatch.cu).
#pragma once

#include <cstdint>
#include <cmath>

#include "common/platform.h"
#include "common/sm80_primitives.h"
#include "common/softmax.h"
#include "common/epilogue.h"
#include "attention/attention_params.h"
#include "attention/block_iter.h"
#include "attention/tile_scheduler.h"
#include "attention/seqlen.h"

namespace seer {
namespace fwd {

// ------------------------------------------------------------------------------------------------
// Traits: tile shape and shared-memory layout for one (head dim, element type) instantiation.
// ------------------------------------------------------------------------------------------------
template <int kHeadDim_, int kBlockM_, int kBlockN_, int kNWarps_, int kMinBlocksPerSm_, bool kQInRegs_,
          typename Elem_>
struct FwdTraits {
  using Elem = Elem_;                                    // __half or __nv_bfloat16
  static constexpr int kHeadDim = kHeadDim_;             // D
  static constexpr int kBlockM = kBlockM_;               // rows per row tile (CTA)
  static constexpr int kBlockN = kBlockN_;               // keys per K/V tile
  static constexpr int kNWarps = kNWarps_;               // each warp owns kWarpRows consecutive rows
  static constexpr int kMTiles = kBlockM / (16 * kNWarps);  // 16-row mma tiles per warp (1 or 2)
  static constexpr int kWarpRows = 16 * kMTiles;
  static constexpr int kNThreads = kNWarps * 32;
  static constexpr int kMinBlocksPerSm = kMinBlocksPerSm_;  // __launch_bounds__ occupancy hint
  static constexpr bool kQInRegs = kQInRegs_;            // keep the Q A-fragments in registers
  static constexpr int kChunks = kBlockN / 16;           // 16-key chunks per K/V tile
  static constexpr int kNFrags = kBlockN / 8;            // n8 fragments of S per warp
  static constexpr int kDFrags = kHeadDim / 8;           // n8 fragments of O per warp
  static constexpr int kKSteps = kHeadDim / 16;          // k16 steps of Q K^T
  static constexpr int kRowChunks = kHeadDim / 8;        // 16-byte chunks per row
  static constexpr int kRowsPerPass = kNThreads / kRowChunks;  // rows one pass of the CTA copies

  static_assert(kMTiles >= 1 && kBlockM == 16 * kNWarps * kMTiles, "whole 16-row mma tiles per warp");
  static_assert(kBlockN / 16 * kMTiles * 2 <= 32, "keep bits of a tile must fit 32 bits");
  static_assert(kBlockN % 16 == 0 && kBlockN >= 16, "kBlockN must be a multiple of 16");
  static_assert(kHeadDim % 64 == 0, "the XOR swizzle needs rows of >= 8 16-byte chunks");
  static_assert(kNThreads % kRowChunks == 0, "a copy pass must cover whole rows");
  static_assert(kBlockM % kRowsPerPass == 0 && kBlockN % kRowsPerPass == 0, "copy passes must tile the rows");
  static_assert(kNThreads % 32 == 0 && kNThreads <= 1024, "block size");

  // Byte offsets of the shared-memory regions.
  static constexpr int kSmemQ = kBlockM * kHeadDim * 2;
  static constexpr int kSmemKV = kBlockN * kHeadDim * 2;  // one K (or V) stage
  static constexpr int kOffQ = 0;
  static constexpr int kOffK0 = kOffQ + kSmemQ;
  static constexpr int kOffV0 = kOffK0 + kSmemKV;
  static constexpr int kOffK1 = kOffV0 + kSmemKV;
  static constexpr int kOffV1 = kOffK1 + kSmemKV;
  static constexpr int kOffListBlk = kOffV1 + kSmemKV;            // int[kNThreads]
  static constexpr int kOffListVal = kOffListBlk + 4 * kNThreads;  // uint8[kNThreads]
  static constexpr int kOffWarpCnt = kOffListVal + kNThreads;      // int[kNWarps]
  static constexpr int kOffChunkKey = kOffWarpCnt + 4 * kNWarps;    // int[2 stages][kChunks]
  static constexpr int kOffChunkChk = kOffChunkKey + 8 * kChunks;   // int[2 stages][kChunks]
  static constexpr int kOffRowKmax = kOffChunkChk + 8 * kChunks;    // int[kBlockM]
  static constexpr int kOffRowMask = kOffRowKmax + 4 * kBlockM;     // const uint8_t*[kBlockM] (8-aligned)
  static constexpr int kOffState = kOffRowMask + 8 * kBlockM;       // CtaState (8-aligned)
  static constexpr int kSmemBytes = kOffState + 128;
  static_assert(kOffRowMask % 8 == 0 && kOffState % 8 == 0, "alignment of the pointer arrays");
};

// Element offset of (row, col) in a swizzled shared tile with rows of D elements; col % 8 == 0 for
// the 16-byte accesses (cp.async, ldmatrix, epilogue reads), any even col for 4-byte accesses.
template <int D>
SEER_DEVICE int swz(int row, int col) {
  return row * D + ((((col >> 3) ^ row) & 7) | ((col >> 3) & ~7)) * 8 + (col & 7);
}

// Byte offset of swz<D>(row + row_shift, col + col_shift) given off = 2 * swz<D>(row, col), for shifts
// (compile-time after unrolling) with row_shift % 8 == 0 and col_shift % 8 == 0 whose chunk bits do
// not overlap the lane's own column chunk bits (here: lane column chunk in {0, 1}, col_shift a
// multiple of 16). The swizzle is an XOR of the low 3 chunk bits with (row % 8), which a row shift by
// a multiple of 8 leaves unchanged, so the shifted address is off ^ c1 + c2: one LOP3 + immediate.
template <int D>
SEER_DEVICE uint32_t swz_shift_rt(uint32_t off, int row_shift, int col_shift) {
  const uint32_t chunk = static_cast<uint32_t>(col_shift >> 3);
  return (off ^ ((chunk & 7u) << 4)) + (chunk & ~7u) * 16u + static_cast<uint32_t>(row_shift * D * 2);
}

// Element offset of (row, col) of a Q / K / V tile (the ldmatrix swizzle).
template <typename T>
SEER_DEVICE int tile_off(int row, int col, int rows) {
  (void)rows;
  return swz<T::kHeadDim>(row, col);
}

// Per-CTA values the mainloop needs only at tile boundaries. They are kept in shared memory rather
// than in registers, so that the register budget goes to the accumulators (written by thread 0 in
// the prologue; every later read follows at least one __syncthreads).
struct CtaState {
  const uint8_t* tm_row;  // tile_mask[b][hk][rt][.]
  const void* k_base;     // k + cu_seqlens_k[b] * k_row_stride + hk * k_head_stride
  const void* v_base;     // v + cu_seqlens_k[b] * v_row_stride + hk * v_head_stride
  int key_limit;          // keys >= key_limit are invisible to every row of the tile
  int scan_end;           // tile-mask columns [0, scan_end) can hold kept blocks
  BlockCursor cursor[2];  // cursor after the previous issue; ping-pong (see the mainloop)
};
static_assert(sizeof(CtaState) <= 128, "CtaState must fit its shared-memory slot");

// ------------------------------------------------------------------------------------------------
// The kernel.
// ------------------------------------------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(T::kNThreads, T::kMinBlocksPerSm) attention_fwd_kernel(const AttnParams p) {
#if SEER_HAS_MMA_SYNC
  using Elem = typename T::Elem;
  constexpr int D = T::kHeadDim, kBlockM = T::kBlockM, kBlockN = T::kBlockN, kChunks = T::kChunks;
  constexpr int kNThreads = T::kNThreads, kMT = T::kMTiles, kWarpRows = T::kWarpRows;

  extern __shared__ __align__(128) unsigned char smem_raw[];
  // wgmma's swizzled tiles need a 1024-byte-aligned base (the slack is in kSmemBytes).
  unsigned char* smem = smem_raw;
  Elem* sQ = reinterpret_cast<Elem*>(smem + T::kOffQ);
  CtaState* st = reinterpret_cast<CtaState*>(smem + T::kOffState);
  int* s_row_kmax = reinterpret_cast<int*>(smem + T::kOffRowKmax);
  const uint8_t** s_row_mask = reinterpret_cast<const uint8_t**>(smem + T::kOffRowMask);
  int* s_chunk_key = reinterpret_cast<int*>(smem + T::kOffChunkKey);
  int* s_chunk_chk = reinterpret_cast<int*>(smem + T::kOffChunkChk);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  // ---- which tile: work item blockIdx.x, heaviest first (tile_scheduler.h) -------------------------
  const ItemTile item = item_tile(p, static_cast<int>(blockIdx.x));
  const int tok_tile = item.tt, slot = item.slot, hk = item.hk, b = item.b;

  const SeqBounds sb = seq_bounds(p, b);  // clamped lengths (seqlen.h)
  const int q_start = sb.q_start, k_start = sb.k_start, seqlen_q = sb.seqlen_q;
  const int tok0 = tok_tile * p.tile_tokens;
  if (tok0 >= seqlen_q) return;  // whole tile past the end of the sequence (uniform)

  const int rt = slot * p.n_tok_tiles + tok_tile;
  const int h0 = hk * p.group + slot * p.pack;  // first q head of the tile
  const int rows_used = p.tile_tokens * p.pack;  // rows >= rows_used are padding

  // ---- gather Q rows (cp.async, zero-filled padding rows) ---------------------------------------
  {
    const Elem* gq = static_cast<const Elem*>(p.q);
    const int chunk = tid % T::kRowChunks;
#pragma unroll
    for (int pass = 0; pass < kBlockM / T::kRowsPerPass; ++pass) {
      const int r = pass * T::kRowsPerPass + tid / T::kRowChunks;
      const TileRow x = tile_row_at(p, tok0, h0, rows_used, seqlen_q, r);
      const Elem* src = x.valid ? gq + static_cast<int64_t>(q_start + x.tok) * p.q_row_stride +
                                      static_cast<int64_t>(x.head) * p.q_head_stride + chunk * 8
                                : gq;
      cp_async_16(sQ + tile_off<T>(r, chunk * 8, kBlockM), src, x.valid);
    }
  }

  // ---- per-row information (token bounds, user-mask row), one entry per tile row -----------------
#pragma unroll
  for (int r = tid; r < kBlockM; r += kNThreads) {
    const TileRow x = tile_row_at(p, tok0, h0, rows_used, seqlen_q, r);  // seqlen.h
    s_row_kmax[r] = x.valid ? sb.key_limit(x.tok, p.causal) : 0;  // keys >= kmax are invisible to row r (0: padding row)
    const int64_t moff = mask_row_offset(p, b, x.head, x.tok);
    s_row_mask[r] = x.valid ? p.mask + moff : nullptr;
  }

  // ---- key-block stream -----------------------------------------------------------------------
  // Reads the per-CTA state of the stream from shared memory (after the prologue).
  auto make_stream = [&](const CtaState& s) {
    BlockStreamSrc ks;
    ks.row = s.tm_row;
    ks.key_limit = s.key_limit;
    ks.scan_end = s.scan_end;
    ks.block_k = p.block_size_k;
    return ks;
  };
  BlockStreamSmem sm;
  sm.blk = reinterpret_cast<int*>(smem + T::kOffListBlk);
  sm.val = reinterpret_cast<uint8_t*>(smem + T::kOffListVal);
  sm.warp_cnt = reinterpret_cast<int*>(smem + T::kOffWarpCnt);
  auto cta_sync = []() { __syncthreads(); };
  // Issues the K/V tile that follows `cur` in the stream into stage `stage`: fills the stage's chunk
  // table (thread 0) and the cp.async copies of the gathered rows (zero-filled rows for keys past
  // the tile's key limit or empty chunk slots, so that P V never multiplies garbage). Returns
  // whether the tile holds any chunk. Uniform (may refill the block list: contains barriers).
  auto issue_tile = [&](int stage, BlockCursor& cur, const CtaState& s) -> bool {
    const BlockStreamSrc ks = make_stream(s);
    int ck[kChunks], cb[kChunks];
    uint32_t vbits;
    block_next_tile<kNThreads, kChunks>(cur, ks, sm, tid, cta_sync, ck, cb, vbits);
    if (tid == 0) {
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        s_chunk_key[stage * kChunks + c] = ck[c];
        // block index of a chunk whose rows check the user mask (tile-mask value 1), else -1
        s_chunk_chk[stage * kChunks + c] = ((vbits >> (4 * c)) & 3u) == 1u ? cb[c] : -1;
      }
    }
    if (ck[0] == kNoKey) return false;  // empty tile: nothing to copy
    Elem* sK = reinterpret_cast<Elem*>(smem + (stage ? T::kOffK1 : T::kOffK0));
    Elem* sV = reinterpret_cast<Elem*>(smem + (stage ? T::kOffV1 : T::kOffV0));
    const Elem* gk = static_cast<const Elem*>(s.k_base);
    const Elem* gv = static_cast<const Elem*>(s.v_base);
    const int chunk = tid % T::kRowChunks;
#pragma unroll
    for (int pass = 0; pass < kBlockN / T::kRowsPerPass; ++pass) {
      const int r = pass * T::kRowsPerPass + tid / T::kRowChunks;
      const int c = r >> 4;
      int key0 = ck[0];
#pragma unroll
      for (int i = 1; i < kChunks; ++i) key0 = c == i ? ck[i] : key0;
      const int key = key0 + (r & 15);
      const bool ok = key < s.key_limit;  // also false for kNoKey
      const int64_t row = ok ? key : 0;
      cp_async_16(sK + tile_off<T>(r, chunk * 8, kBlockN), gk + row * p.k_row_stride + chunk * 8, ok);
      cp_async_16(sV + tile_off<T>(r, chunk * 8, kBlockN), gv + row * p.v_row_stride + chunk * 8, ok);
    }
    return true;
  };

  bool has_cur, has_nxt;
  {
    CtaState s0;
    s0.tm_row = p.tile_mask + (static_cast<int64_t>(b) * p.h_kv + hk) * p.n_row_tiles * p.nb_k +
                static_cast<int64_t>(rt) * p.nb_k;
    s0.k_base = static_cast<const Elem*>(p.k) + static_cast<int64_t>(k_start) * p.k_row_stride +
                static_cast<int64_t>(hk) * p.k_head_stride;
    s0.v_base = static_cast<const Elem*>(p.v) + static_cast<int64_t>(k_start) * p.v_row_stride +
                static_cast<int64_t>(hk) * p.v_head_stride;
    const int key_limit = sb.key_limit(min(tok0 + p.tile_tokens, seqlen_q) - 1, p.causal);  // last row's
    s0.key_limit = key_limit;
    s0.scan_end = key_limit > 0 ? min(p.nb_k, (key_limit + p.block_size_k - 1) / p.block_size_k) : 0;
    BlockCursor cur;
    has_cur = issue_tile(0, cur, s0);
    cp_async_commit();  // group: Q + tile 0
    has_nxt = issue_tile(1, cur, s0);
    cp_async_commit();  // group: tile 1
    if (tid == 0) {
      s0.cursor[0] = cur;  // read by the first mainloop iteration
      *st = s0;
    }
  }

  // ---- accumulators ---------------------------------------------------------------------------
  const int g = lane >> 2, t4 = lane & 3;
  float acc_o[kMT][T::kDFrags][4];
  float row_max[kMT][2];  // running max of the raw scores (unscaled)
  float row_sum[kMT][2];  // this thread's partial sum of exp (quad-reduced at the end)
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int i = 0; i < T::kDFrags; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc_o[mt][i][e] = 0.f;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) row_max[mt][rr] = -INFINITY, row_sum[mt][rr] = 0.f;
  }
  const int warp_row0 = warp * kWarpRows;  // first tile row of this warp
  // Smallest key bound over the warp's valid rows (0 if it has none): a K/V tile whose chunks are all
  // below it and need no user-mask check is fully visible to every row of the warp, so the
  // per-element masking is skipped (only tiles on the causal diagonal / sequence end / value-1
  // blocks pay for it). Padding rows are ignored: their Q is zero, so unmasked scores stay finite,
  // and they are never written.
  int warp_kmin = 0x7fffffff;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const int r = warp_row0 + mt * 16 + g + rr * 8;
      const int tok = tok0 + r / p.pack;
      if (r < rows_used && tok < seqlen_q) warp_kmin = min(warp_kmin, sb.key_limit(tok, p.causal));
    }
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) warp_kmin = min(warp_kmin, SEER_SHFL_XOR(warp_kmin, o));
  if (warp_kmin == 0x7fffffff) warp_kmin = 0;
  const float scale_log2 = p.scale_log2;

  // Per-lane byte offsets of the ldmatrix sources; compile-time shifts go through swz_shift_rt.
  // Q A fragment (x4): lanes 0-15 rows 0-15 cols 0-7 (a0: rows 0-7, a1: rows 8-15), lanes 16-31
  // rows 0-15 cols 8-15 (a2, a3).
  const uint32_t q_off = 2u * swz<D>(warp_row0 + (lane & 15), (lane >> 4) * 8);
  const uint32_t sQ_addr = smem_u32(sQ);
  // K B fragments (x4, non-trans, two n8 key fragments per call):
  //   lanes 0-7: keys 0-7 dims 0-7 (b0 of frag 0), 8-15: keys 0-7 dims 8-15 (b1 of frag 0),
  //   16-23: keys 8-15 dims 0-7 (b0 of frag 1), 24-31: keys 8-15 dims 8-15 (b1 of frag 1).
  const uint32_t k_off = 2u * swz<D>((lane & 7) + ((lane >> 4) << 3), ((lane >> 3) & 1) * 8);
  // V B fragments (x4, trans, two n8 dim fragments per call):
  //   lanes 0-7: keys 0-7 dims 0-7 (b0 of dim frag 0), 8-15: keys 8-15 dims 0-7 (b1 of frag 0),
  //   16-23: keys 0-7 dims 8-15 (b0 of frag 1), 24-31: keys 8-15 dims 8-15 (b1 of frag 1).
  const uint32_t v_off = 2u * swz<D>((lane & 7) + ((lane >> 3) & 1) * 8, (lane >> 4) * 8);

  uint32_t q_frag[T::kQInRegs ? kMT : 1][T::kQInRegs ? T::kKSteps : 1][4];
  if constexpr (T::kQInRegs) {
    if (has_cur) {
      cp_async_wait<1>();  // Q (and tile 0) landed
      __syncthreads();
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int kk = 0; kk < T::kKSteps; ++kk)
          ldmatrix_x4_sa(q_frag[mt][kk], sQ_addr + swz_shift_rt<D>(q_off, mt * 16, kk * 16));
    }
  }

  // ---- mainloop over the K/V tiles of the stream ------------------------------------------------
  // Iteration i computes tile i from stage i % 2, then issues tile i + 2 into the same stage. The
  // stream cursor ping-pongs between st->cursor[i % 2] (read) and st->cursor[(i + 1) % 2] (written by
  // thread 0): a slot is rewritten only one iteration after its last read, with a barrier between.
  int stage = 0;
  while (has_cur) {  // uniform
    cp_async_wait<1>();  // this tile landed (the next one may still be in flight)
    __syncthreads();
    const uint32_t sK_addr = smem_u32(smem + (stage ? T::kOffK1 : T::kOffK0));
    const uint32_t sV_addr = smem_u32(smem + (stage ? T::kOffV1 : T::kOffV0));

    // Chunk table of this tile, and the user-mask bytes of this thread's rows for the chunks that
    // need them (loads issued before the Q K^T mma so that their latency overlaps it).
    // Bit (c * kMT + mt) * 2 + rr of keep_bits set = row (mt, rr) keeps chunk c by the mask.
    int ck[kChunks];
    bool any_check = false, full = true;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      ck[c] = s_chunk_key[stage * kChunks + c];
      any_check |= s_chunk_chk[stage * kChunks + c] >= 0;
      full &= ck[c] + 16 <= warp_kmin;  // kNoKey + 16 does not overflow and is > any bound
    }
    full &= !any_check;  // warp-uniform
    uint32_t keep_bits = 0xffffffffu;
    if (any_check) {  // CTA-uniform
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const int cm = s_chunk_chk[stage * kChunks + c];
        if (cm >= 0) {
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
              const uint8_t* mrow = s_row_mask[warp_row0 + mt * 16 + g + rr * 8];
              const bool keep = mrow != nullptr && mrow[static_cast<int64_t>(cm) * p.mask_stride_col] != 0;
              if (!keep) keep_bits &= ~(1u << ((c * kMT + mt) * 2 + rr));
            }
        }
      }
    }

    // S = Q K^T for the warp's kWarpRows rows x kBlockN keys. Each K fragment feeds kMT mma tiles.
    float s[kMT][T::kNFrags][4];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int i = 0; i < T::kNFrags; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][i][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < T::kKSteps; ++kk) {
      uint32_t a_reg[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        if constexpr (T::kQInRegs) {
#pragma unroll
          for (int e = 0; e < 4; ++e) a_reg[mt][e] = q_frag[mt][kk][e];
        } else {
          ldmatrix_x4_sa(a_reg[mt], sQ_addr + swz_shift_rt<D>(q_off, mt * 16, kk * 16));
        }
      }
#pragma unroll
      for (int nn = 0; nn < T::kNFrags / 2; ++nn) {
        uint32_t bk[4];
        ldmatrix_x4_sa(bk, sK_addr + swz_shift_rt<D>(k_off, nn * 16, kk * 16));
        mma_16816_x2<Elem>(s, nn, a_reg, bk);
      }
    }

    // Masking (skipped for tiles fully visible to the warp's rows): s[mt][nf][e] is row
    // mt * 16 + g + 8 * (e >> 1) of the warp, key (chunk nf / 2) offset (nf & 1) * 8 + 2 * t4 + (e & 1).
    if (!full) {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        int kmax[2];
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) kmax[rr] = s_row_kmax[warp_row0 + mt * 16 + g + rr * 8];
#pragma unroll
        for (int nf = 0; nf < T::kNFrags; ++nf) {
          const int c = nf >> 1;
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int rr = e >> 1;
            const int key = ck[c] + (nf & 1) * 8 + 2 * t4 + (e & 1);
            const bool vis = key < kmax[rr] && ((keep_bits >> ((c * kMT + mt) * 2 + rr)) & 1u);
            if (!vis) s[mt][nf][e] = -INFINITY;
          }
        }
      }
    }

    // Online softmax (common/softmax.h), then O *= alpha per row.
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr)
        rescale_row(acc_o[mt], rr, online_softmax_row(s[mt], rr, row_max[mt][rr], row_sum[mt][rr], scale_log2));

    // O += P V. The A fragment of keys [16kk, 16kk+16) is made of S fragments 2kk (a0: row g,
    // a1: row g+8; keys 2t4..) and 2kk+1 (a2, a3; keys 8+2t4..), lower key in the low half. Each V
    // fragment feeds kMT mma tiles.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      uint32_t a_reg[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        a_reg[mt][0] = pack2<Elem>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        a_reg[mt][1] = pack2<Elem>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        a_reg[mt][2] = pack2<Elem>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        a_reg[mt][3] = pack2<Elem>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dd = 0; dd < T::kDFrags / 2; ++dd) {
        uint32_t bv[4];
        ldmatrix_x4_trans_sa(bv, sV_addr + swz_shift_rt<D>(v_off, kk * 16, dd * 16));
        mma_16816_x2<Elem>(acc_o, dd, a_reg, bv);
      }
    }

    __syncthreads();  // every warp is done with this stage (tiles and chunk table): refill it
    has_cur = has_nxt;
    {
      BlockCursor cur = st->cursor[stage];
      has_nxt = issue_tile(stage, cur, *st);  // tile i + 2 into the stage tile i used
      if (tid == 0) st->cursor[stage ^ 1] = cur;
    }
    cp_async_commit();  // (possibly empty group: keeps the wait<1> accounting simple)
    stage ^= 1;
  }

  // ---- epilogue -------------------------------------------------------------------------------
  cp_async_wait<0>();  // no copy may still target shared memory (empty tiles: Q is still in flight)
  __syncthreads();     // every warp is done reading sQ / sK / sV
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const RowTotal tot = row_finish(row_sum[mt][rr]);
      const int r = warp_row0 + mt * 16 + g + rr * 8;
      store_row_pairs<Elem>(acc_o[mt], rr, tot.inv, [&](int df) { return sQ + swz<D>(r, df * 8 + 2 * t4); });
      const int tok = tok0 + r / p.pack;
      const int h = h0 + r % p.pack;
      if (t4 == 0 && r < rows_used && tok < seqlen_q)
        p.lse[static_cast<int64_t>(h) * p.total_q + q_start + tok] = row_lse(row_max[mt][rr], tot.l, scale_log2);
    }
  __syncthreads();
  {
    Elem* go = static_cast<Elem*>(p.out);
    const int chunk = tid % T::kRowChunks;
#pragma unroll
    for (int pass = 0; pass < kBlockM / T::kRowsPerPass; ++pass) {
      const int r = pass * T::kRowsPerPass + tid / T::kRowChunks;
      const int tok = tok0 + r / p.pack;
      const int h = h0 + r % p.pack;
      if (r < rows_used && tok < seqlen_q) {
        const uint4 v = *reinterpret_cast<const uint4*>(sQ + swz<D>(r, chunk * 8));
        *reinterpret_cast<uint4*>(go + static_cast<int64_t>(q_start + tok) * p.o_row_stride +
                                  static_cast<int64_t>(h) * p.o_head_stride + chunk * 8) = v;
      }
    }
  }
#endif  // SEER_HAS_MMA_SYNC
}

}  // namespace fwd
}  // namespace seer
