// Forward kernel of varlen block-sparse attention for CDNA3 (gfx942, MI300X): MFMA mainloop.
//
// Same contract as the CUDA forward (attention_params.h, SPEC.md): one workgroup per row tile
// (kBlockM = 128 rows = (token, q head) pairs sharing one kv head), the row tile's kept key blocks
// from the tile mask (value 1: per-row user-mask check, 2: kept by every row), causal bottom-right,
// clamped sequence lengths, rows with no visible key -> out 0 and lse -inf.
//
// Parts (each a function below):
//   load_q_fragments   Q rows of the wavefront -> registers (B operand of S^T = K Q^T)
//   BlockIter          kept blocks -> 16-key chunks -> K/V tiles of kBlockN keys (block_iter_hip.h)
//   fetch/store_k, _v  gathered K rows and V rows -> registers (one tile ahead) -> LDS (K row-major,
//                      V transposed), zero past the end
//   gemm_s             S^T = K Q^T on v_mfma_f32_32x32x8 (fwd_layout_hip.h has the fragment maps)
//   mask_scores        sequence end / causal / per-row user mask, only on tiles that need it
//   RowSoftmax         online softmax (softmax_hip.h)
//   gemm_o             O^T += V^T P^T with P straight from the S^T accumulators
//   store_rows         O / l and lse (natural log); 0 and -inf for rows without a visible key
//
// Resources (D 128, from `make hip-check`): 4 wavefronts of 64 lanes, LDS = K + V^T tile of 32 keys =
// 16 KiB, ~200 VGPRs: two wavefronts per SIMD (the register file allows 256 per wavefront for two), and
// the LDS would allow four workgroups per CU. D 256: one wavefront per SIMD (VGPRs + AGPRs).
#pragma once
#include <cstdint>

#include "common/platform.h"
#include "common/hip_mfma.h"
#include "attention/attention_params.h"
#include "attention/seqlen.h"
#include "attention/hip/fwd_layout_hip.h"
#include "attention/hip/block_iter_hip.h"
#include "attention/hip/softmax_hip.h"

namespace seer {
namespace hipattn {

using hip::f32x16;
using hip::s16x4;
using hip::u32x4;

using hip::imax;
using hip::imin;

// Per-row facts of the query row a lane holds (lanes l and l + 32 hold the same row).
struct RowInfo {
  bool valid;           // inside the tile's used rows and the sequence
  int token;            // sequence-local token
  int head;             // q head
  int kmax;             // keys >= kmax are invisible to the row (sequence end, causal); 0 if !valid
  const uint8_t* mask;  // user-mask row mask[b, hm, token / mask_row_div, .] (nullptr if !valid)
};

// Tile shape per head dim: 64 keys per K/V tile for D 64; 32 for D 128, which keeps the wavefront
// within 256 VGPRs (O^T 64 + Q 32 + S^T 16 + P 8 + the tile in flight 16 + addresses) for two
// wavefronts per SIMD; 32 for D 256 (O^T 128 + Q 64 + ...: one wavefront per SIMD, VGPRs + AGPRs).
// What a query row sees (forward and backward use it): keys [0, kmax) minus the user mask, kmax =
// SeqBounds::key_limit (seqlen.h: the sequence's keys, cut at the bottom-right-aligned causal diagonal);
// mask = the row mask[b, hm, t / mask_row_div, .]. Sequence-local token. Invalid rows (padding, past the
// sequence) see nothing: kmax 0, mask nullptr.
SEER_DEVICE void row_visibility(const AttnParams& p, int b, int token, int head, bool valid, const SeqBounds& sb,
                                int& kmax, const uint8_t*& mask) {
  kmax = valid ? sb.key_limit(token, p.causal) : 0;
  const int64_t moff = mask_row_offset(p, b, head, token);  // seqlen.h
  mask = valid ? p.mask + moff : nullptr;
}

template <int D>
struct FwdTile {
  static constexpr int kWavesPerSimd = D <= 128 ? 2 : 1;  // occupancy the register budget is sized for
  static constexpr int kBlockN = D <= 64 ? 64 : 32;  // keys per K/V tile
  static constexpr int kHalves = kBlockN / 32;       // 32-key S^T accumulators
  static constexpr int kChunks = kBlockN / kChunk;   // 16-key chunks per tile
  static constexpr int kLdsK = kBlockN * D;          // elements of the K tile (V^T: the same)
  static constexpr int kLdsBytes = 2 * 2 * kLdsK;
  static_assert(D % 64 == 0, "the K swizzle needs rows of >= 8 16-byte chunks");
};

// Q fragments: q[j] = Q[row][16 j + 8 h .. 16 j + 8 h + 7] (h = lane / 32), zeros for invalid rows.
template <int D>
SEER_DEVICE void load_q_fragments(const AttnParams& p, const RowInfo& ri, int q_start, u32x4 (&q)[D / 16]) {
  const int h = mfma::M32x32x8::b_k(hip::tid() % 64, 0) / 4;
  const uint16_t* src = static_cast<const uint16_t*>(p.q) +
                        static_cast<int64_t>(q_start + ri.token) * p.q_row_stride +
                        static_cast<int64_t>(ri.head) * p.q_head_stride + 8 * h;
#pragma unroll
  for (int j = 0; j < D / 16; ++j)
    q[j] = ri.valid ? *reinterpret_cast<const u32x4*>(src + 16 * j) : u32x4{0u, 0u, 0u, 0u};
}

// Cooperative copies of one K/V tile (all kThreads lanes) in two halves: fetch (global -> registers)
// and store (registers -> LDS). The forward issues the fetch of tile i + 1 before the MFMAs of tile i,
// so the global latency overlaps them; 16 VGPRs per lane hold the tile in flight (D 64 and 128).
// Tile row r holds key ck[r / 16] + r % 16; rows whose key is >= key_limit (including empty chunk
// slots) are zero so that P V never meets garbage (0 * NaN).
template <int D>
struct KvStage {
  static constexpr int kBlockN = FwdTile<D>::kBlockN;
  static constexpr int kRowChunks = D / 8;                               // 16-byte chunks per row
  static constexpr int kKIters = kBlockN * kRowChunks / kThreads;        // K chunks per lane
  static constexpr int kVIters = (kBlockN / 2) * kRowChunks / kThreads;  // V (key pair, chunk) items per lane
  static_assert(kKIters >= 1 && kVIters >= 1, "tile copy must give every lane work");
  u32x4 k[kKIters];
  u32x4 va[kVIters], vb[kVIters];
};

// K: lane takes chunk c of row r (8 consecutive lanes: the 8 chunks of a row, k_swizzle'd in LDS).
template <int D, int kChunks = FwdTile<D>::kChunks>
SEER_DEVICE void fetch_k(const uint16_t* gk, int64_t k_stride, int key_limit, const int (&ck)[kChunks],
                         u32x4 (&k)[KvStage<D>::kKIters]) {
#pragma unroll
  for (int it = 0; it < KvStage<D>::kKIters; ++it) {
    const int idx = it * kThreads + hip::tid();
    const int r = idx / KvStage<D>::kRowChunks, c = idx % KvStage<D>::kRowChunks;
    const int key = ck[r / kChunk] + r % kChunk;
    k[it] = key < key_limit ? *reinterpret_cast<const u32x4*>(gk + key * k_stride + 8 * c) : u32x4{0u, 0u, 0u, 0u};
  }
}
template <int D>
SEER_DEVICE void store_k(const u32x4 (&k)[KvStage<D>::kKIters], uint16_t* sK) {
#pragma unroll
  for (int it = 0; it < KvStage<D>::kKIters; ++it) {
    const int idx = it * kThreads + hip::tid();
    const int r = idx / KvStage<D>::kRowChunks, c = idx % KvStage<D>::kRowChunks;
    *reinterpret_cast<u32x4*>(sK + k_lds<D>(r, 8 * c)) = k[it];
  }
}
// V: lane takes keys (2j, 2j + 1) x 8 dims and writes 8 words of V^T (64-key tiles: the lanes of a
// half-wave write 32 consecutive words of one V^T row, distinct banks; 32-key tiles: 2-way).
template <int D, int kChunks = FwdTile<D>::kChunks>
SEER_DEVICE void fetch_v(const uint16_t* gv, int64_t v_stride, int key_limit, const int (&ck)[kChunks], KvStage<D>& st) {
  constexpr int kPairs = KvStage<D>::kBlockN / 2;
#pragma unroll
  for (int it = 0; it < KvStage<D>::kVIters; ++it) {
    const int idx = it * kThreads + hip::tid();
    const int j = idx % kPairs, dc = idx / kPairs;
    const int key0 = ck[(2 * j) / kChunk] + (2 * j) % kChunk, key1 = key0 + 1;  // a pair never straddles a chunk
    st.va[it] = key0 < key_limit ? *reinterpret_cast<const u32x4*>(gv + key0 * v_stride + 8 * dc) : u32x4{0u, 0u, 0u, 0u};
    st.vb[it] = key1 < key_limit ? *reinterpret_cast<const u32x4*>(gv + key1 * v_stride + 8 * dc) : u32x4{0u, 0u, 0u, 0u};
  }
}
template <int D>
SEER_DEVICE void store_vt(const KvStage<D>& st, uint16_t* sVt) {
  constexpr int kPairs = KvStage<D>::kBlockN / 2;
#pragma unroll
  for (int it = 0; it < KvStage<D>::kVIters; ++it) {
    const int idx = it * kThreads + hip::tid();
    const int j = idx % kPairs, dc = idx / kPairs;
    uint32_t w[8];
    hip::transpose_pair(st.va[it], st.vb[it], w);
#pragma unroll
    for (int e = 0; e < 8; ++e) *reinterpret_cast<uint32_t*>(sVt + vt_lds<KvStage<D>::kBlockN>(8 * dc + e, 2 * j)) = w[e];
  }
}

// S^T (two 32-key halves) = K Q^T over the full head dim.
template <typename Elem, int D, int kHalves = FwdTile<D>::kHalves>
SEER_DEVICE void gemm_s(const uint16_t* sK, const u32x4 (&q)[D / 16], f32x16 (&s)[kHalves]) {
  const int lane = hip::tid() % 64;
  const int h = lane / 32;
#pragma unroll
  for (int t = 0; t < kHalves; ++t) {
    s[t] = f32x16{};
    const int row = 32 * t + key_of_srow(mfma::M32x32x8::a_row(lane));
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      const u32x4 a = *reinterpret_cast<const u32x4*>(sK + k_lds<D>(row, 16 * j + 8 * h));
      s[t] = hip::mfma32x32x8<Elem>(hip::lo4(a), hip::lo4(q[j]), s[t]);
      s[t] = hip::mfma32x32x8<Elem>(hip::hi4(a), hip::hi4(q[j]), s[t]);
    }
    __builtin_amdgcn_sched_barrier(0);  // keep the LDS reads of one half together (register pressure)
  }
}

// Scales the scores to log2 units and masks (-inf) keys the row cannot see. `exact` = false skips the
// per-element tests on tiles every row of the wavefront sees completely.
// Per-row user-mask bits of the tile's chunks (true where the chunk has no per-row check). Read before
// the next tile's fetch is issued: loads complete in order, so a wait for these bytes after the
// fetch would also wait for the fetch.
template <int kChunks>
SEER_DEVICE uint32_t chunk_keep_bits(const RowInfo& ri, const int (&cm)[kChunks], int64_t mask_stride_col) {
  uint32_t bits = 0;
#pragma unroll
  for (int c = 0; c < kChunks; ++c)
    if (cm[c] < 0 || (ri.mask != nullptr && ri.mask[cm[c] * mask_stride_col] != 0)) bits |= 1u << c;
  return bits;
}

template <int kHalves, int kChunks = 2 * kHalves>
SEER_DEVICE void mask_scores(const f32x16 (&s)[kHalves], float (&x)[16 * kHalves], float scale_log2, const RowInfo& ri,
                             const int (&ck)[kChunks], uint32_t keep_bits, bool exact) {
  const int lane = hip::tid() % 64;
#pragma unroll
  for (int t = 0; t < kHalves; ++t)
#pragma unroll
    for (int r = 0; r < 16; ++r) x[16 * t + r] = s[t][r] * scale_log2;
  if (!exact) return;
#pragma unroll
  for (int t = 0; t < kHalves; ++t)
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      const int kt = key_of_acc(lane, t, r);  // compile-time up to the lane half
      const int c = kt / kChunk;
      bool keep = false;
#pragma unroll
      for (int cc = 0; cc < kChunks; ++cc)
        if (cc == c) keep = ((keep_bits >> cc) & 1u) && ck[cc] + kt % kChunk < ri.kmax;
      if (!keep) x[16 * t + r] = -__builtin_inff();
    }
}

// O^T += V^T P^T for the 64 keys of the tile; p holds exp2(s - m) in S^T accumulator order.
template <typename Elem, int D, int kBlockN = FwdTile<D>::kBlockN>
SEER_DEVICE void gemm_o(const uint16_t* sVt, const float (&p)[kBlockN / 2], f32x16 (&o)[D / 32]) {
  const int lane = hip::tid() % 64;
  // B operand of step s (8 keys): registers 4s .. 4s + 3 of the S^T accumulator (probabilities in
  // [0, 1]: packed without the NaN test)
  s16x4 pf[kBlockN / 8];
#pragma unroll
  for (int s = 0; s < kBlockN / 8; ++s)
    pf[s] = hip::pack4_finite<Elem>(p[4 * s], p[4 * s + 1], p[4 * s + 2], p[4 * s + 3]);
#pragma unroll
  for (int nt = 0; nt < D / 32; ++nt) {
    const int d = 32 * nt + mfma::M32x32x8::a_row(lane);
#pragma unroll
    for (int t = 0; t < kBlockN / 32; ++t)
#pragma unroll
      for (int m = 0; m < 2; ++m) {
        const u32x4 a = *reinterpret_cast<const u32x4*>(sVt + vt_lds<kBlockN>(d, vt_key0(lane, t, m)));
        o[nt] = hip::mfma32x32x8<Elem>(hip::lo4(a), pf[4 * t + 2 * m], o[nt]);
        o[nt] = hip::mfma32x32x8<Elem>(hip::hi4(a), pf[4 * t + 2 * m + 1], o[nt]);
      }
    __builtin_amdgcn_sched_barrier(0);
  }
}

// Epilogue: lane holds O^T[d][row] for d = 32 nt + 8 (r / 4) + 4 h + r % 4: four consecutive dims per
// register group -> 8-byte stores. lse (natural log) by the lower lane of the pair.
template <typename Elem, int D>
SEER_DEVICE void store_rows(const AttnParams& p, const RowInfo& ri, int q_start, const f32x16 (&o)[D / 32],
                            const RowSoftmax<32>& sm) {
  const int lane = hip::tid() % 64;
  const float l = sm.total();
  if (!ri.valid) return;
  const bool empty = !(l > 0.f);  // no visible key: out 0, lse -inf
  const float inv = empty ? 0.f : 1.f / l;
  const int64_t tok = q_start + ri.token;
  uint16_t* dst = static_cast<uint16_t*>(p.out) + tok * p.o_row_stride + static_cast<int64_t>(ri.head) * p.o_head_stride;
#pragma unroll
  for (int nt = 0; nt < D / 32; ++nt)
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      const int d = 32 * nt + mfma::M32x32x8::c_row(lane, 4 * g);
      const uint32_t w0 = hip::pack2<Elem>(o[nt][4 * g] * inv, o[nt][4 * g + 1] * inv);
      const uint32_t w1 = hip::pack2<Elem>(o[nt][4 * g + 2] * inv, o[nt][4 * g + 3] * inv);
      *reinterpret_cast<hip::u32x2*>(dst + d) = hip::u32x2{w0, w1};
    }
  if (lane < 32)
    p.lse[static_cast<int64_t>(ri.head) * p.total_q + tok] =
        empty ? -__builtin_inff() : sm.m * 0.6931471805599453f + hip::logf_fast(l);
}

// The kernel: grid.x = n_tok_tiles * batch * h_kv * (group / pack), heaviest (last) token tiles first.
template <typename Elem, int D>
__global__ void __launch_bounds__(kThreads, FwdTile<D>::kWavesPerSimd) attention_fwd_kernel_hip(const AttnParams p) {
  using Tile = FwdTile<D>;
  constexpr int kChunks = Tile::kChunks;
  __shared__ __attribute__((aligned(16))) uint16_t smem[2 * Tile::kLdsK];
  uint16_t* sK = smem;
  uint16_t* sVt = smem + Tile::kLdsK;

  const int tid = hip::tid(), lane = tid % 64, wave = tid / 64;
  const int n_slots = p.group / p.pack;
  const int per_tok_tile = p.batch * p.h_kv * n_slots;
  const int tok_tile = p.n_tok_tiles - 1 - hip::bid_x() / per_tok_tile;
  int rem = hip::bid_x() % per_tok_tile;
  const int slot = rem % n_slots;
  rem /= n_slots;
  const int hk = rem % p.h_kv;
  const int b = rem / p.h_kv;

  const SeqBounds sb = seq_bounds(p, b);  // clamped bounds: the rule of every attention kernel (seqlen.h)
  const int q_start = sb.q_start, k_start = sb.k_start, seqlen_q = sb.seqlen_q, seqlen_k = sb.seqlen_k;
  const int tok0 = tok_tile * p.tile_tokens;
  if (tok0 >= seqlen_q) return;  // uniform
  const int rt = slot * p.n_tok_tiles + tok_tile;
  const int h0 = hk * p.group + slot * p.pack;

  // ---- the lane's query row ----
  RowInfo ri;
  {
    const int r = wave * kWaveRows + mfma::M32x32x8::c_col(lane);
    ri.token = tok0 + r / p.pack;
    ri.head = h0 + r % p.pack;
    ri.valid = r < p.tile_tokens * p.pack && ri.token < seqlen_q;
    row_visibility(p, b, ri.token, ri.head, ri.valid, sb, ri.kmax, ri.mask);
  }
  // Smallest kmax over the wavefront's rows: tiles whose keys all lie below it need no masking
  // unless a chunk carries a per-row check.
  int wave_kmin = ri.valid ? ri.kmax : 0x7fffffff;
#pragma unroll
  for (int off = 32; off >= 1; off /= 2) wave_kmin = imin(wave_kmin, SEER_SHFL_XOR(wave_kmin, off));

  u32x4 q[D / 16];
  load_q_fragments<D>(p, ri, q_start, q);

  // ---- kept-block stream of the row tile ----
  const int tok_last = imin(tok0 + p.tile_tokens, seqlen_q) - 1;
  const int key_limit = sb.key_limit(tok_last, p.causal);  // the tile's last row's
  BlockIter it;
  it.init(p.tile_mask + (static_cast<int64_t>(b) * p.h_kv + hk) * p.n_row_tiles * p.nb_k + static_cast<int64_t>(rt) * p.nb_k,
          key_limit > 0 ? imin(p.nb_k, (key_limit + p.block_size_k - 1) / p.block_size_k) : 0, key_limit,
          p.block_size_k);
  const uint16_t* gk = static_cast<const uint16_t*>(p.k) + static_cast<int64_t>(k_start) * p.k_row_stride +
                       static_cast<int64_t>(hk) * p.k_head_stride;
  const uint16_t* gv = static_cast<const uint16_t*>(p.v) + static_cast<int64_t>(k_start) * p.v_row_stride +
                       static_cast<int64_t>(hk) * p.v_head_stride;

  f32x16 o[D / 32];
#pragma unroll
  for (int nt = 0; nt < D / 32; ++nt) o[nt] = f32x16{};
  RowSoftmax<32> sm;
  sm.init();

  // Tiles of the kept-block stream (uniform: every wavefront derives the same chunk tables); the next
  // tile's fetch is in flight while the current one is computed.
  int ck_next[kChunks], cm_next[kChunks];
  bool have = it.next_tile<kChunks>(ck_next, cm_next);
  KvStage<D> stage;
  if (have) {
    fetch_k<D>(gk, p.k_row_stride, key_limit, ck_next, stage.k);
    fetch_v<D>(gv, p.v_row_stride, key_limit, ck_next, stage);
  }
  while (have) {
    hip::barrier();  // previous tile fully consumed
    store_k<D>(stage.k, sK);
    store_vt<D>(stage, sVt);
    hip::barrier();
    int ck[kChunks], cm[kChunks];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) ck[c] = ck_next[c], cm[c] = cm_next[c];
    bool exact = false;  // some element of the tile needs a test (see wave_kmin)
#pragma unroll
    for (int c = 0; c < kChunks; ++c) exact |= cm[c] >= 0 || ck[c] + kChunk > wave_kmin;
    const uint32_t keep_bits = exact ? chunk_keep_bits(ri, cm, p.mask_stride_col) : 0u;
    have = it.next_tile<kChunks>(ck_next, cm_next);
    if (have) {
      fetch_k<D>(gk, p.k_row_stride, key_limit, ck_next, stage.k);
      fetch_v<D>(gv, p.v_row_stride, key_limit, ck_next, stage);
    }

    f32x16 s[Tile::kHalves];
    gemm_s<Elem, D>(sK, q, s);
    float x[Tile::kBlockN / 2];
    mask_scores<Tile::kHalves>(s, x, p.scale_log2, ri, ck, keep_bits, exact);
    const float alpha = sm.update(x);
#pragma unroll
    for (int nt = 0; nt < D / 32; ++nt) o[nt] *= alpha;
    gemm_o<Elem, D>(sVt, x, o);
  }
  store_rows<Elem, D>(p, ri, q_start, o, sm);
}

}  // namespace hipattn
}  // namespace seer
