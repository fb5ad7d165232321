// Hopper (sm_90a) forward of varlen block-sparse attention: warp-specialised, wgmma, mbarrier pipeline.
//
// One CTA = three warpgroups: a producer (warpgroup 0) and two consumers (warpgroups 1, 2). The CTA owns
// a pair of 64-row row tiles of one (sequence, kv head) (attention_params.h "Row tiles"): two heads of a
// GQA group at the same query block (head slots 2s, 2s+1) when the group has an even number of slots,
// else two consecutive query blocks of one slot. Each consumer computes one row tile. Both walk the
// union of the two tiles' kept key blocks (block_iter.h), so a K/V tile kept by both is loaded once
// and serves 128 rows, while each consumer computes only the tiles its own row tile keeps.
//
//   producer : walks the union stream (the only participant of block_iter.h); per tile: wait stage
//              empty, write the tile's metadata (chunk keys, block indices, both tiles' values), gather
//              its K and V rows with cp.async (16-key chunks at any multiple of 16; rows past the key
//              limit zero-filled), cp.async.mbarrier.arrive on the stage's `full` barrier. After the last
//              tile it publishes an end marker the same way.
//   consumer : gathers its Q rows, then visits every union tile: wait `full`, read the metadata; a tile
//              its row tile does not keep is released at once; otherwise S = Q K^T (wgmma, both operands
//              in shared memory), masking only on boundary tiles, online softmax, O += P V (wgmma, P from
//              registers), release. The next kept tile's Q K^T is issued together with the current P V,
//              so that P V overlaps the next softmax (FlashAttention-3's intra-warpgroup overlap); the two
//              consumers interleave freely, the shared ring keeping them within kStages tiles.
//   epilogue : O / l staged through the consumer's Q buffer, written with the rows' strides; lse.
//
// Stages: kStages K/V tiles of kBlockN = 64 keys in the 128-byte-swizzled slab layout wgmma reads
// (common/sm90_primitives.h) plus a small metadata record. Barriers per stage: full (count 129: one
// cp.async arrival per producer thread + the metadata writer's arrival) and empty (count 256: one
// arrival per consumer thread, or 128 at once from the producer for a consumer without a row tile).
// Union tile u uses stage u % kStages, phase (u / kStages) & 1.
#pragma once

#include <cstdint>
#include <cmath>

#include "common/platform.h"
#include "common/sm80_primitives.h"
#include "common/sm90_primitives.h"
#include "common/sm90_pipeline.h"
#include "common/sm90_wgmma.h"
#include "attention/attention_params.h"
#include "attention/block_iter.h"

namespace seer {
namespace fwd_sm90 {

template <int kHeadDim_, typename Elem_>
struct Traits {
  using Elem = Elem_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = 64;   // rows per consumer warpgroup (one row tile)
  static constexpr int kBlockN = 64;   // keys per K/V tile
  static constexpr int kChunks = kBlockN / 16;
  static constexpr int kNFrags = kBlockN / 8;    // n8 fragments of S
  static constexpr int kKSteps = kHeadDim / 16;  // k16 steps of Q K^T
  static constexpr int kThreads = 384;           // producer + 2 consumer warpgroups
  static constexpr int kProducerRegs = 56;
  static constexpr int kConsumerRegs = 224;      // 56 * 128 + 2 * 224 * 128 <= 65536
  static constexpr int kTileBytes = kBlockN * kHeadDim * 2;  // one K (or V) stage
  static constexpr int kQBytes = kBlockM * kHeadDim * 2;
  static constexpr int kStages = kHeadDim == 128 ? 5 : 8;
  // Shared memory (1024-byte aligned base): Q[2], K[kStages], V[kStages], then small regions.
  static constexpr int kOffQ = 0;
  static constexpr int kOffK = kOffQ + 2 * kQBytes;
  static constexpr int kOffV = kOffK + kStages * kTileBytes;
  static constexpr int kOffFull = kOffV + kStages * kTileBytes;  // uint64 [kStages]
  static constexpr int kOffEmpty = kOffFull + 8 * kStages;       // uint64 [kStages]
  static constexpr int kOffRowKmax = kOffEmpty + 8 * kStages;    // int [2][kBlockM]
  static constexpr int kOffRowMask = kOffRowKmax + 4 * 2 * kBlockM;  // const uint8_t* [2][kBlockM]
  static constexpr int kOffMeta = kOffRowMask + 8 * 2 * kBlockM;     // TileMeta [kStages]
  static constexpr int kOffList = kOffMeta + 64 * kStages;           // producer block list: int[128]
  static constexpr int kOffListVal = kOffList + 128 * 4;             // uint8[128]
  static constexpr int kOffWarpCnt = kOffListVal + 128;              // int[4]
  static constexpr int kSmemBytes = kOffWarpCnt + 4 * 4 + 1024;      // + alignment slack
  static_assert(kHeadDim == 64 || kHeadDim == 128, "wgmma N = head dim in P V");
  static_assert(kOffK % 1024 == 0 && kOffV % 1024 == 0 && kTileBytes % 1024 == 0, "SW128 tiles 1024-aligned");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory");
};

// What the producer tells the consumers about the tile in a stage.
struct TileMeta {
  int key[4];      // first key of each 16-key chunk (kNoKey: empty chunk; key[0] == kNoKey: end of stream)
  int blk[4];      // key block of each chunk (user-mask column of value-1 chunks)
  uint32_t vbits;  // tile-mask values per chunk (4 bits at 4c: row a in bits 0-1, row b in bits 2-3)
};
static_assert(sizeof(TileMeta) <= 64, "TileMeta slot");

// The pair of row tiles of CTA `cta` and the CTA's (sequence, kv head). rt_b = -1: no second tile.
struct PairTiles {
  int b, hk, rt_a, rt_b;
};
// Grid: heaviest token tiles first (causal), then pair, kv head, sequence.
SEER_DEVICE PairTiles pair_of_cta(const AttnParams& p, int cta) {
  const int n_slots = p.group / p.pack;
  PairTiles t;
  if (n_slots % 2 == 0) {
    // pairs of head slots (2s, 2s+1) at one token tile
    const int pairs = n_slots / 2;
    const int per_tt = p.batch * p.h_kv * pairs;
    const int tt = p.n_tok_tiles - 1 - cta / per_tt;
    int rem = cta % per_tt;
    const int sp = rem % pairs;
    rem /= pairs;
    t.hk = rem % p.h_kv;
    t.b = rem / p.h_kv;
    t.rt_a = (2 * sp) * p.n_tok_tiles + tt;
    t.rt_b = (2 * sp + 1) * p.n_tok_tiles + tt;
  } else {
    // pairs of token tiles (2j, 2j+1) of one slot
    const int n_tp = (p.n_tok_tiles + 1) / 2;
    const int per_tp = p.batch * p.h_kv * n_slots;
    const int tp = n_tp - 1 - cta / per_tp;
    int rem = cta % per_tp;
    const int slot = rem % n_slots;
    rem /= n_slots;
    t.hk = rem % p.h_kv;
    t.b = rem / p.h_kv;
    t.rt_a = slot * p.n_tok_tiles + 2 * tp;
    t.rt_b = 2 * tp + 1 < p.n_tok_tiles ? t.rt_a + 1 : -1;
  }
  return t;
}
SEER_HOST_DEVICE long long num_ctas(const AttnParams& p) {
  const int n_slots = p.group / p.pack;
  const long long per_bh = n_slots % 2 == 0 ? static_cast<long long>(n_slots / 2) * p.n_tok_tiles
                                            : static_cast<long long>(n_slots) * ((p.n_tok_tiles + 1) / 2);
  return per_bh * p.h_kv * p.batch;
}

// First token of row tile rt, and its first head.
struct RowTile {
  int tok0, h0;
};
SEER_DEVICE RowTile row_tile(const AttnParams& p, int hk, int rt) {
  const int slot = rt / p.n_tok_tiles;
  return RowTile{(rt - slot * p.n_tok_tiles) * p.tile_tokens, hk * p.group + slot * p.pack};
}

template <typename T>
__global__ void __launch_bounds__(T::kThreads, 1) attention_fwd_sm90_kernel(const __grid_constant__ AttnParams p) {
#if SEER_HAS_SM90A
  using Elem = typename T::Elem;
  constexpr int D = T::kHeadDim;
  constexpr int kBlockM = T::kBlockM;
  constexpr int kBlockN = T::kBlockN;
  constexpr int kChunks = T::kChunks;
  constexpr int kStages = T::kStages;
  static_assert(kChunks == 4, "TileMeta holds 4 chunks");

  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char* smem = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
  uint64_t* bar_full = reinterpret_cast<uint64_t*>(smem + T::kOffFull);
  uint64_t* bar_empty = reinterpret_cast<uint64_t*>(smem + T::kOffEmpty);
  TileMeta* meta = reinterpret_cast<TileMeta*>(smem + T::kOffMeta);  // slot s at meta[s] (64-byte stride)
  auto meta_at = [&](int st) { return reinterpret_cast<TileMeta*>(smem + T::kOffMeta + 64 * st); };
  (void)meta;

  const int tid = threadIdx.x;
  const int wg = tid / 128;  // 0 producer, 1-2 consumers
  const int wtid = tid % 128;

  const PairTiles pt = pair_of_cta(p, static_cast<int>(blockIdx.x));
  const int b = pt.b, hk = pt.hk;
  const int q_start = p.cu_seqlens_q[b];
  const int k_start = p.cu_seqlens_k[b];
  // Lengths clamped to the host-side bounds the tiling and the mask shape were sized for.
  const int seqlen_q = max(0, min(p.cu_seqlens_q[b + 1] - q_start, p.max_seqlen_q));
  const int seqlen_k = max(0, min(p.cu_seqlens_k[b + 1] - k_start, p.max_seqlen_k));
  const int causal_off = seqlen_k - seqlen_q;
  const RowTile ta = row_tile(p, hk, pt.rt_a);
  const RowTile tb = pt.rt_b >= 0 ? row_tile(p, hk, pt.rt_b) : RowTile{seqlen_q, 0};
  const bool has_a = ta.tok0 < seqlen_q;
  const bool has_b = tb.tok0 < seqlen_q;
  if (!has_a && !has_b) return;  // uniform

  // Consumer 1 computes tile a, consumer 2 tile b; `shift` locates a consumer's value bits in a
  // chunk nibble (row a: 0, row b: 2; -1: no tile). A missing tile a is replaced by b in the stream.
  const int shift_c1 = has_a ? 0 : -1;
  const int shift_c2 = has_b ? (has_a ? 2 : 0) : -1;

  if (tid == 0) {
    for (int st = 0; st < kStages; ++st) {
      sm90::mbar_init(&bar_full[st], 129);
      sm90::mbar_init(&bar_empty[st], 256);
    }
    sm90::mbar_init_fence();
  }
  __syncthreads();

  if (wg == 0) {
    // =============================== producer ===============================
    sm90::regs_dec<T::kProducerRegs>();
    auto tile_key_limit = [&](const RowTile& t) {
      const int tok_last = min(t.tok0 + p.tile_tokens, seqlen_q) - 1;
      int kl = seqlen_k;
      if (p.causal) kl = max(0, min(kl, tok_last + causal_off + 1));
      return kl;
    };
    const int64_t tm_base = (static_cast<int64_t>(b) * p.h_kv + hk) * p.n_row_tiles * p.nb_k;
    BlockStreamSrc src;
    const uint8_t* row_a = p.tile_mask + tm_base + static_cast<int64_t>(pt.rt_a) * p.nb_k;
    const uint8_t* row_b = has_b ? p.tile_mask + tm_base + static_cast<int64_t>(pt.rt_b) * p.nb_k : nullptr;
    src.row_a = has_a ? row_a : row_b;
    src.row_b = has_a ? row_b : nullptr;
    src.key_limit = max(has_a ? tile_key_limit(ta) : 0, has_b ? tile_key_limit(tb) : 0);
    src.scan_end = src.key_limit > 0 ? min(p.nb_k, (src.key_limit + p.block_size_k - 1) / p.block_size_k) : 0;
    src.block_k = p.block_size_k;
    BlockStreamSmem sm;
    sm.blk = reinterpret_cast<int*>(smem + T::kOffList);
    sm.val = reinterpret_cast<uint8_t*>(smem + T::kOffListVal);
    sm.warp_cnt = reinterpret_cast<int*>(smem + T::kOffWarpCnt);
    auto sync = []() { sm90::named_sync(1, 128); };

    const Elem* gk = static_cast<const Elem*>(p.k) + static_cast<int64_t>(k_start) * p.k_row_stride +
                     static_cast<int64_t>(hk) * p.k_head_stride;
    const Elem* gv = static_cast<const Elem*>(p.v) + static_cast<int64_t>(k_start) * p.v_row_stride +
                     static_cast<int64_t>(hk) * p.v_head_stride;
    constexpr int kRowChunks = D / 8;               // 16-byte chunks per row
    constexpr int kRowsPerPass = 128 / kRowChunks;  // 8 (D 128) or 16 (D 64)
    static_assert(16 % kRowsPerPass == 0, "a copy pass stays inside one 16-key chunk");
    const int chunk = wtid % kRowChunks;
    BlockCursor cur;
    for (int u = 0;; ++u) {
      int ck[kChunks];
      uint32_t vbits;
      block_next_tile<128, kChunks>(cur, src, sm, wtid, sync, ck, vbits);
      const int st = u % kStages;
      sm90::mbar_wait(&bar_empty[st], ((u / kStages) & 1) ^ 1);
      if (wtid == 0) {
        TileMeta* m = meta_at(st);
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          m->key[c] = ck[c];
          m->blk[c] = ck[c] == kNoKey ? 0 : ck[c] / p.block_size_k;
        }
        m->vbits = vbits;
      }
      if (ck[0] != kNoKey) {
        Elem* sK = reinterpret_cast<Elem*>(smem + T::kOffK + st * T::kTileBytes);
        Elem* sV = reinterpret_cast<Elem*>(smem + T::kOffV + st * T::kTileBytes);
#pragma unroll
        for (int pass = 0; pass < kBlockN / kRowsPerPass; ++pass) {
          const int r = pass * kRowsPerPass + wtid / kRowChunks;
          const int c = (pass * kRowsPerPass) / 16;  // compile-time
          const int key = ck[c] + (r & 15);
          const bool ok = key < src.key_limit;  // also false for kNoKey
          const int64_t row = ok ? key : 0;
          const uint32_t off = sm90::sw128_offset(r, chunk * 8, kBlockN) >> 1;
          cp_async_16(sK + off, gk + row * p.k_row_stride + chunk * 8, ok);
          cp_async_16(sV + off, gv + row * p.v_row_stride + chunk * 8, ok);
        }
      }
      sm90::cp_async_mbar_arrive(&bar_full[st]);
      if (wtid == 0) {
        sm90::mbar_arrive(&bar_full[st]);  // release: the metadata above is visible after the wait
        if (shift_c1 < 0) sm90::mbar_arrive_cnt(&bar_empty[st], 128);
        if (shift_c2 < 0) sm90::mbar_arrive_cnt(&bar_empty[st], 128);
      }
      if (ck[0] == kNoKey) break;  // the end marker is out
    }
  } else {
    // =============================== consumers ===============================
    sm90::regs_inc<T::kConsumerRegs>();
    const int ci = wg - 1;  // consumer index 0 / 1
    const int shift = ci == 0 ? shift_c1 : shift_c2;
    const RowTile me = ci == 0 ? (has_a ? ta : tb) : tb;
    if (shift < 0) return;  // no row tile (the producer arrives for this consumer on every stage)
    auto wg_sync = [ci]() { sm90::named_sync(2 + ci, 128); };
    Elem* sQ = reinterpret_cast<Elem*>(smem + T::kOffQ + ci * T::kQBytes);
    int* s_row_kmax = reinterpret_cast<int*>(smem + T::kOffRowKmax) + ci * kBlockM;
    const uint8_t** s_row_mask = reinterpret_cast<const uint8_t**>(smem + T::kOffRowMask) + ci * kBlockM;
    const int lane = wtid & 31, warp = wtid >> 5;
    const int rows_used = p.tile_tokens * p.pack;

    // ---- Q rows (cp.async, zero-filled padding rows) and per-row information ----
    {
      const Elem* gq = static_cast<const Elem*>(p.q);
      constexpr int kRowChunks = D / 8;
      constexpr int kRowsPerPass = 128 / kRowChunks;
      const int chunk = wtid % kRowChunks;
#pragma unroll
      for (int pass = 0; pass < kBlockM / kRowsPerPass; ++pass) {
        const int r = pass * kRowsPerPass + wtid / kRowChunks;
        const int tok = me.tok0 + r / p.pack;
        const int h = me.h0 + r % p.pack;
        const bool ok = r < rows_used && tok < seqlen_q;
        const Elem* srcq = ok ? gq + static_cast<int64_t>(q_start + tok) * p.q_row_stride +
                                    static_cast<int64_t>(h) * p.q_head_stride + chunk * 8
                              : gq;
        cp_async_16(sQ + (sm90::sw128_offset(r, chunk * 8, kBlockM) >> 1), srcq, ok);
      }
      cp_async_commit();
      if (wtid < kBlockM) {
        const int r = wtid;
        const int tok = me.tok0 + r / p.pack;
        const int h = me.h0 + r % p.pack;
        const bool row_ok = r < rows_used && tok < seqlen_q;
        int km = seqlen_k;
        if (p.causal) km = max(0, min(km, tok + causal_off + 1));
        s_row_kmax[r] = row_ok ? km : 0;
        const int hm = h / (p.h_q / p.mask_heads);
        s_row_mask[r] = row_ok ? p.mask + static_cast<int64_t>(b) * p.mask_stride_b +
                                     static_cast<int64_t>(hm) * p.mask_stride_h +
                                     static_cast<int64_t>(tok / p.mask_row_div) * p.mask_stride_row
                               : nullptr;
      }
      cp_async_wait<0>();
      sm90::fence_view_async_shared();
      wg_sync();
    }

    const int g = lane >> 2, t4 = lane & 3;
    const int warp_row0 = warp * 16;
    int kmax_r[2];
    const uint8_t* mrow[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      kmax_r[rr] = s_row_kmax[warp_row0 + g + rr * 8];
      mrow[rr] = s_row_mask[warp_row0 + g + rr * 8];
    }
    // Smallest key bound over the warp's valid rows: a tile all of whose chunks are below it and
    // kept (value 2) needs no masking for this warp. Padding rows (bound 0) are ignored.
    int warp_kmin = 0x7fffffff;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr)
      if (mrow[rr] != nullptr) warp_kmin = min(warp_kmin, kmax_r[rr]);
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) warp_kmin = min(warp_kmin, __shfl_xor_sync(0xffffffffu, warp_kmin, o));
    if (warp_kmin == 0x7fffffff) warp_kmin = 0;
    const float scale_log2 = p.scale_log2;
    const uint32_t sQ_addr = smem_u32(sQ);
    const uint32_t opaque_zero = static_cast<uint32_t>(p.batch) >> 31;  // 0, unknown to the compiler

    float acc_o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) acc_o[i] = 0.f;
    float row_max[2] = {-INFINITY, -INFINITY};
    float row_sum[2] = {0.f, 0.f};

    // S = Q K^T of stage `st` (issued and committed, not waited).
    auto issue_qk = [&](float (&sd)[kBlockN / 2], int st) {
      const uint32_t sK_addr = smem_u32(smem + T::kOffK + st * T::kTileBytes);
      sm90::fence_operands(sd);
      sm90::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < T::kKSteps; ++kk) {
        const uint64_t da = sm90::make_smem_desc_sw128(sQ_addr + (kk / 4) * (kBlockM * 128) + (kk % 4) * 32, 16, 1024);
        const uint64_t db = sm90::make_smem_desc_sw128(sK_addr + (kk / 4) * (kBlockN * 128) + (kk % 4) * 32, 16, 1024);
        sm90::wgmma_ss<kBlockN, Elem, 0>(sd, da, db, kk != 0);
      }
      sm90::wgmma_commit();
    };
    // O += P V of stage `st` (issued and committed, not waited). V is the MN-major B operand: k16
    // step kk starts 16 rows = 2048 bytes further; LBO = the stride of its 64-column slabs.
    auto issue_pv = [&](uint32_t (&pa)[kBlockN / 16][4], int st) {
      const uint32_t sV_addr = smem_u32(smem + T::kOffV + st * T::kTileBytes);
      sm90::fence_operands(acc_o);
      sm90::fence_operands(pa);
      sm90::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk)
        sm90::wgmma_rs<D, Elem, 1>(acc_o, pa[kk], sm90::make_smem_desc_sw128(sV_addr + kk * 2048, kBlockN * 128, 1024), 1);
      sm90::wgmma_commit();
    };
    // Masks S in place: key visibility per row (sequence end / causal) and the chunk values of this
    // row tile (0: not kept, 1: user mask per row, 2: kept). Interior tiles skip it.
    auto mask_tile = [&](float (&sd)[kBlockN / 2], const TileMeta* m, uint32_t v) {
      int ck[kChunks];
#pragma unroll
      for (int c = 0; c < kChunks; ++c) ck[c] = m->key[c];
      bool full = true;
#pragma unroll
      for (int c = 0; c < kChunks; ++c) full &= ((v >> (4 * c)) & 3u) == 2u && ck[c] + 16 <= warp_kmin;
      if (full) return;  // warp-uniform
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const uint32_t val = (v >> (4 * c)) & 3u;
        bool keep[2];
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
          keep[rr] = val == 2u;
          if (val == 1u && mrow[rr] != nullptr) keep[rr] = mrow[rr][static_cast<int64_t>(m->blk[c]) * p.mask_stride_col] != 0;
        }
#pragma unroll
        for (int f = 0; f < 2; ++f) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int rr = e >> 1;
            const int key = ck[c] + f * 8 + 2 * t4 + (e & 1);
            if (!(keep[rr] && key < kmax_r[rr])) sd[4 * (2 * c + f) + e] = -INFINITY;
          }
        }
      }
    };
    // Online softmax of S (log2 domain): new row maxima, P = exp2(S * scale - base) packed as the A
    // fragments of P V, row sums; alpha = rescale factor of the O accumulated so far. A row whose
    // maximum is still -inf uses base 0 (exp2(-inf) = 0, never (-inf) - (-inf)).
    auto softmax = [&](float (&sd)[kBlockN / 2], uint32_t (&pa)[kBlockN / 16][4], float (&alpha)[2]) {
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        float mx = row_max[rr];
#pragma unroll
        for (int nf = 0; nf < T::kNFrags; ++nf) mx = fmaxf(mx, fmaxf(sd[4 * nf + 2 * rr], sd[4 * nf + 2 * rr + 1]));
        mx = quad_max(mx);
        const float base = mx == -INFINITY ? 0.f : mx * scale_log2;
        alpha[rr] = fast_exp2(row_max[rr] * scale_log2 - base);
        row_max[rr] = mx;
        float sum = 0.f;
#pragma unroll
        for (int nf = 0; nf < T::kNFrags; ++nf) {
#pragma unroll
          for (int e = 2 * rr; e < 2 * rr + 2; ++e) {
            sd[4 * nf + e] = fast_exp2(fmaf(sd[4 * nf + e], scale_log2, -base));
            sum += sd[4 * nf + e];
          }
        }
        row_sum[rr] = row_sum[rr] * alpha[rr] + sum;
      }
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        pa[kk][0] = pack2<Elem>(sd[8 * kk + 0], sd[8 * kk + 1]);
        pa[kk][1] = pack2<Elem>(sd[8 * kk + 2], sd[8 * kk + 3]);
        pa[kk][2] = pack2<Elem>(sd[8 * kk + 4], sd[8 * kk + 5]);
        pa[kk][3] = pack2<Elem>(sd[8 * kk + 6], sd[8 * kk + 7]);
      }
    };
    auto rescale_o = [&](const float (&alpha)[2]) {
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        acc_o[4 * j + 0] *= alpha[0];
        acc_o[4 * j + 1] *= alpha[0];
        acc_o[4 * j + 2] *= alpha[1];
        acc_o[4 * j + 3] *= alpha[1];
      }
    };
    auto release = [&](int st) { sm90::mbar_arrive(&bar_empty[st]); };

    // P of the pending tile (its P V not issued yet) lives in pa; pend_u is its union index.
    uint32_t pa[kBlockN / 16][4];
    float alpha[2];
    bool pending = false;
    int pend_u = 0;
    for (int u = 0;; ++u) {
      const int st = u % kStages;
      if (pending && u - pend_u >= kStages) {
        // The producer fills tile u only once the pending tile's stage is released: finish it first.
        issue_pv(pa, pend_u % kStages);
        sm90::wgmma_wait<0>();
        sm90::fence_operands(acc_o);
        release(pend_u % kStages);
        pending = false;
      }
      sm90::mbar_wait(&bar_full[st], (u / kStages) & 1);
      const TileMeta* m = meta_at(st);
      if (m->key[0] == kNoKey) break;  // end of the stream
      const uint32_t v = (m->vbits >> shift) & 0x33333333u;
      if (v == 0) {  // not kept by this row tile
        release(st);
        continue;
      }
      sm90::fence_view_async_shared();  // cp.async (generic proxy) writes -> wgmma (async proxy) reads
      float sd[kBlockN / 2];
      if (!pending) {
        issue_qk(sd, st);
        sm90::wgmma_wait<0>();
        sm90::fence_operands(sd);
        mask_tile(sd, m, v);
        softmax(sd, pa, alpha);
        rescale_o(alpha);
      } else {
        issue_qk(sd, st);
        issue_pv(pa, pend_u % kStages);
        sm90::wgmma_wait<1>();  // Q K^T of this tile done; P V of the pending one may still run
        sm90::fence_operands(sd);
        mask_tile(sd, m, v);
        uint32_t pa_nxt[kBlockN / 16][4];
        softmax(sd, pa_nxt, alpha);
        sm90::wgmma_wait<0>();
        sm90::fence_operands(acc_o);
        release(pend_u % kStages);
        rescale_o(alpha);
        // pa = pa_nxt, written so that the old pa is read here, after P V completed: ptxas then keeps
        // its registers (the A operand of the asynchronous P V) away from the softmax temporaries
        // above; if it reused them it would serialise every wgmma of the kernel (ptxas C7513).
#pragma unroll
        for (int kk = 0; kk < kBlockN / 16; ++kk)
#pragma unroll
          for (int e = 0; e < 4; ++e) pa[kk][e] = pa_nxt[kk][e] ^ (pa[kk][e] & opaque_zero);
      }
      pending = true;
      pend_u = u;
    }
    if (pending) {
      issue_pv(pa, pend_u % kStages);
      sm90::wgmma_wait<0>();
      sm90::fence_operands(acc_o);
      release(pend_u % kStages);
    }

    // ---- epilogue: O / l staged in sQ (its last reader, Q K^T, has completed in every warp), then
    // row stores ----
    wg_sync();
    float inv[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const float l = quad_sum(row_sum[rr]);
      inv[rr] = l > 0.f ? 1.f / l : 0.f;
      const int r = warp_row0 + g + rr * 8;
      const int tok = me.tok0 + r / p.pack;
      const int h = me.h0 + r % p.pack;
      if (t4 == 0 && r < rows_used && tok < seqlen_q) {
        // l > 0 implies a finite max (the max element contributes exp2(0) = 1).
        const float lse = l > 0.f ? (row_max[rr] * scale_log2 + __log2f(l)) * 0.69314718055994530942f : -INFINITY;
        p.lse[static_cast<int64_t>(h) * p.total_q + q_start + tok] = lse;
      }
    }
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const int r = warp_row0 + g + rr * 8;
        const uint32_t val = pack2<Elem>(acc_o[4 * j + 2 * rr] * inv[rr], acc_o[4 * j + 2 * rr + 1] * inv[rr]);
        *reinterpret_cast<uint32_t*>(reinterpret_cast<unsigned char*>(sQ) + sm90::sw128_offset(r, 8 * j + 2 * t4, kBlockM)) = val;
      }
    }
    wg_sync();
    {
      Elem* go = static_cast<Elem*>(p.out);
      constexpr int kRowChunks = D / 8;
      constexpr int kRowsPerPass = 128 / kRowChunks;
      const int chunk = wtid % kRowChunks;
#pragma unroll
      for (int pass = 0; pass < kBlockM / kRowsPerPass; ++pass) {
        const int r = pass * kRowsPerPass + wtid / kRowChunks;
        const int tok = me.tok0 + r / p.pack;
        const int h = me.h0 + r % p.pack;
        if (r < rows_used && tok < seqlen_q) {
          const uint4 val = *reinterpret_cast<const uint4*>(reinterpret_cast<unsigned char*>(sQ) +
                                                            sm90::sw128_offset(r, chunk * 8, kBlockM));
          *reinterpret_cast<uint4*>(go + static_cast<int64_t>(q_start + tok) * p.o_row_stride +
                                    static_cast<int64_t>(h) * p.o_head_stride + chunk * 8) = val;
        }
      }
    }
  }
#endif  // SEER_HAS_SM90A
}

}  // namespace fwd_sm90
}  // namespace seer
