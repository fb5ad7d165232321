// Backward of varlen block-sparse attention for CDNA3 (gfx942, MI300X): MFMA dK/dV/dQ kernel (the
// atomic path of the CUDA backward, bwd_kernel.cuh), the deterministic path's dQ kernel, plus the
// preprocess and dQ-convert passes.
//
// One workgroup per (128-key tile, kv head, sequence); its 4 wavefronts own 32 keys each and keep K,
// V (in the two register layouts the GEMMs need) and the dK, dV accumulators in registers. The
// workgroup streams the row tiles (32 rows; all q heads of the GQA group are rows, so dK / dV come
// out reduced over the group) whose transposed tile-mask entry is nonzero for one of its 16-key
// chunks. Per row tile (fragment maps: bwd_layout_hip.h):
//   load_row_tile   Q and dO rows -> LDS, row-major and transposed; row stats (lse, D = rowsum(dO O)
//                   - dlse, visible-key bound, user-mask row) -> LDS
//   gemm S, dP      S = Q K^T, dP = dO V^T
//   probabilities   P = exp2(S scale log2e - lse log2e) where visible (tile-mask chunk flag, user mask
//                   for flag 1, causal / length bound, lse finite), else exactly 0; dS = P (dP - D)
//   gemm dV, dK     dV += P^T dO, dK += dS^T Q (A operands straight from the accumulators)
//   gemm dQ         dQ_w = dS K_w per wavefront, summed in LDS (ds_add_f32), then one fp32 atomic per
//                   element into the zero-initialised workspace dq_accum
// dQ = scale * dq_accum (convert pass), dK = scale * sum dS^T Q, dV = sum P^T dO. A row with lse = -inf
// (no visible key) contributes nothing: zero gradients, never NaN.
//
// Deterministic mode (params.deterministic): the same kernel without its dQ part, then
// attention_bwd_dq_kernel_hip (row-tile major, S and dP recomputed, dQ in registers, fixed summation
// order); no dq_accum workspace.
//
// Resources (D 128): K, V, K_w^T fragments 96 VGPRs + dK, dV 128 accumulators -> one wavefront per SIMD
// (up to 512 VGPRs + AGPRs), LDS ~58 KiB per workgroup (Q, dO, Q^T, dO^T, dS slices, fp32 dQ). D 256:
// two workgroups per key tile, one per half of the head dims (bwd_dsplit, bwd_layout_hip.h says why),
// the fp32 dQ sum in the LDS of Q / dO once S and dP are done; LDS ~57 KiB.
#pragma once
#include <cstdint>

#include "attention/hip/fwd_kernel_hip.h"
#include "attention/hip/bwd_layout_hip.h"
#include "attention/bwd_preprocess.h"

namespace seer {
namespace hipattn {

constexpr float kLog2e = 1.4426950408889634f;

// Per-row facts of the streamed row tile, in LDS.
struct RowStats {
  float lse2[kBwdRows];           // lse * log2(e); -inf: the row contributes nothing
  float dsum[kBwdRows];           // softmax_d
  int kmax[kBwdRows];             // keys >= kmax invisible to the row (0: padding row)
  const uint8_t* mask[kBwdRows];  // user-mask row (nullptr: padding row)
};

// LDS of the dK/dV kernel (kTransposed: also Q^T / dO^T) and of the deterministic dQ kernel. The
// workgroup's own dims are kDh = D / bwd_dsplit(D) (all of D, or one half at D 256).
template <int D, bool kTransposed>
struct BwdSmem {
  static constexpr int kDh = D / bwd_dsplit(D);
  // Split D: the fp32 dQ sum [row][kDh] reuses Q's LDS (S and dP, the only readers of Q / dO, are done
  // by then: a barrier separates them).
  static constexpr bool kDqInQ = kDh != D;
  static_assert(!kDqInQ || kBwdRows * kDh * 4 <= kBwdRows * D * 2, "dQ sum fits in Q's LDS");
  uint16_t q[kBwdRows * D];     // k_lds<D> layout
  uint16_t dout[kBwdRows * D];  // k_lds<D> layout
  uint16_t qt[kTransposed ? kBwdRows * kDh : 8];     // vt_lds<32> layout (Q^T, dims d0 ..)
  uint16_t doutt[kTransposed ? kBwdRows * kDh : 8];  // vt_lds<32> layout (dO^T, dims d0 ..)
  uint16_t ds[kWaves][kBwdRows * kDsStride];  // per wavefront: dS[row][key]
  float dq_own[kDqInQ ? 4 : kBwdRows * kDh];  // sum of the wavefronts' dQ_w [row][d - d0] (unless kDqInQ)
  RowStats st;
  SEER_DEVICE float* dq() { return kDqInQ ? reinterpret_cast<float*>(q) : dq_own; }
};

// The 8 chunk flags (2 bits each) of the 128 keys [k0, k0 + 128) for one row tile; `col` returns the
// tile-mask byte of key block n (transposed or row-major tile mask). Keys >= key_end: flag 0.
template <typename Col>
SEER_DEVICE uint32_t chunk_flags(const AttnParams& p, Col&& col, int k0, int key_end) {
  uint32_t f = 0;
  int prev_n = -1, prev_v = 0;
#pragma unroll
  for (int c = 0; c < kBwdKeys / kChunk; ++c) {
    const int key = k0 + kChunk * c;
    if (key >= key_end) break;
    const int n = key / p.block_size_k;
    const int v = n == prev_n ? prev_v : col(n);
    prev_n = n;
    prev_v = v;
    f |= static_cast<uint32_t>(v & 3) << (2 * c);
  }
  return f;
}

// Calls f(index, flags) for every index in [0, n) with nonzero flags(index), in increasing order; 64
// candidates per ballot. Wavefront-uniform (every wavefront of a workgroup makes the same calls).
template <typename Flags, typename F>
SEER_DEVICE void for_each_flagged(int n, Flags&& flags, F&& f) {
  const int lane = hip::tid() % 64;
  for (int base = 0; base < n; base += 64) {
    const uint32_t fl = base + lane < n ? flags(base + lane) : 0u;
    seer_lane_mask_t sel = SEER_BALLOT(fl != 0);
    while (sel != 0) {
      const int bit = static_cast<int>(__builtin_ctzll(sel));
      sel &= sel - 1;
      f(base + bit, static_cast<uint32_t>(__builtin_amdgcn_readlane(static_cast<int>(fl), bit)));
    }
  }
}

// Row stats of row tile rt (threads 0..31).
SEER_DEVICE void load_row_stats(const AttnBwdParams& p, int b, int hk, int rt, const SeqBounds& sb, RowStats& st) {
  const int tid = hip::tid();
  if (tid >= kBwdRows) return;
  const TileRow rp = tile_row(p, hk, rt, tid, sb.seqlen_q);
  const int64_t li = static_cast<int64_t>(rp.head) * p.total_q + sb.q_start + rp.tok;
  const float lse = rp.valid ? p.lse[li] : -__builtin_inff();
  st.lse2[tid] = lse * kLog2e;
  st.dsum[tid] = rp.valid ? p.softmax_d[li] : 0.f;
  row_visibility(p, b, rp.tok, rp.head, rp.valid, sb, st.kmax[tid], st.mask[tid]);
}

// Q and dO rows of row tile rt -> LDS: a lane takes rows (2j, 2j + 1) x 8 dims: two 16-byte chunks
// row-major and (kTransposed, dims [d0, d0 + kDh) only) 8 words of Q^T / dO^T. Padding rows are zero.
template <int D, bool kTransposed>
SEER_DEVICE void load_row_tile(const AttnBwdParams& p, int hk, int rt, int q_start, int seqlen_q, int d0,
                               BwdSmem<D, kTransposed>& sm) {
  constexpr int kDh = BwdSmem<D, kTransposed>::kDh;
  for (int it = hip::tid(); it < (kBwdRows / 2) * (D / 8); it += kThreads) {
    const int j = it % (kBwdRows / 2), dc = it / (kBwdRows / 2);
    u32x4 qv[2], dov[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const TileRow rp = tile_row(p, hk, rt, 2 * j + i, seqlen_q);
      const int64_t t = q_start + rp.tok;
      qv[i] = dov[i] = u32x4{0u, 0u, 0u, 0u};
      if (rp.valid) {
        qv[i] = *reinterpret_cast<const u32x4*>(static_cast<const uint16_t*>(p.q) + t * p.q_row_stride +
                                                static_cast<int64_t>(rp.head) * p.q_head_stride + 8 * dc);
        dov[i] = *reinterpret_cast<const u32x4*>(static_cast<const uint16_t*>(p.dout) + t * p.do_row_stride +
                                                 static_cast<int64_t>(rp.head) * p.do_head_stride + 8 * dc);
      }
      *reinterpret_cast<u32x4*>(sm.q + k_lds<D>(2 * j + i, 8 * dc)) = qv[i];
      *reinterpret_cast<u32x4*>(sm.dout + k_lds<D>(2 * j + i, 8 * dc)) = dov[i];
    }
    if constexpr (kTransposed) {
      if (8 * dc < d0 || 8 * dc >= d0 + kDh) continue;
      uint32_t wq[8], wd[8];
      hip::transpose_pair(qv[0], qv[1], wq);
      hip::transpose_pair(dov[0], dov[1], wd);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const int off = vt_lds<kBwdRows>(8 * dc - d0 + e, 2 * j);
        *reinterpret_cast<uint32_t*>(sm.qt + off) = wq[e];
        *reinterpret_cast<uint32_t*>(sm.doutt + off) = wd[e];
      }
    }
  }
}

// The wavefront's 32 keys [kw0, kw0 + 32) as MFMA operands: kA / vA = B operands of S / dP
// (K[kw0 + lane % 32][16 j + 8 h .. + 7], all D dims), kB = B operand of dQ_w = dS K_w (K[kw0 + 8 s + 4 h +
// e][d0 + 32 nt + lane % 32], the workgroup's kDh dims). Keys >= seqlen_k are zero.
template <int D, int kDh>
SEER_DEVICE void load_key_fragments(const AttnBwdParams& p, const uint16_t* gk, const uint16_t* gv, int kw0, int seqlen_k,
                                    int d0, u32x4 (&kA)[D / 16], u32x4 (&vA)[D / 16], s16x4 (&kB)[kDh / 32][4]) {
  const int lane = hip::tid() % 64, h = lane / 32;
  const int my_key = kw0 + lane % 32;
  const bool ok = my_key < seqlen_k;
#pragma unroll
  for (int j = 0; j < D / 16; ++j) {
    kA[j] = ok ? *reinterpret_cast<const u32x4*>(gk + static_cast<int64_t>(my_key) * p.k_row_stride + 16 * j + 8 * h)
               : u32x4{0u, 0u, 0u, 0u};
    vA[j] = ok ? *reinterpret_cast<const u32x4*>(gv + static_cast<int64_t>(my_key) * p.v_row_stride + 16 * j + 8 * h)
               : u32x4{0u, 0u, 0u, 0u};
  }
#pragma unroll
  for (int nt = 0; nt < kDh / 32; ++nt)
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      uint16_t e4[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = kw0 + mfma::M32x32x8::b_k(lane, e) + 8 * s;
        e4[e] = key < seqlen_k ? gk[static_cast<int64_t>(key) * p.k_row_stride + d0 + 32 * nt + lane % 32] : uint16_t(0);
      }
      kB[nt][s] = __builtin_bit_cast(s16x4, hip::u32x2{e4[0] | (uint32_t(e4[1]) << 16), e4[2] | (uint32_t(e4[3]) << 16)});
    }
}

// S = Q K^T and dP = dO V^T for the wavefront's 32 keys, then P and dS (register r of the lane: tile row
// key_of_srow(c_row(lane, r)), key my_key). Invisible elements get P = dS = 0 exactly.
template <typename Elem, int D>
SEER_DEVICE void probs_and_grads(const AttnBwdParams& p, const uint16_t* sq, const uint16_t* sdout, const RowStats& st,
                                 const u32x4 (&kA)[D / 16], const u32x4 (&vA)[D / 16], int my_key, uint32_t my_flag,
                                 int my_block, float (&pr)[16], float (&dsr)[16]) {
  const int lane = hip::tid() % 64, h = lane / 32;
  f32x16 s = f32x16{}, dp = f32x16{};
  const int arow = key_of_srow(mfma::M32x32x8::a_row(lane));
#pragma unroll
  for (int j = 0; j < D / 16; ++j) {
    const u32x4 a = *reinterpret_cast<const u32x4*>(sq + k_lds<D>(arow, 16 * j + 8 * h));
    const u32x4 ad = *reinterpret_cast<const u32x4*>(sdout + k_lds<D>(arow, 16 * j + 8 * h));
    s = hip::mfma32x32x8<Elem>(hip::lo4(a), hip::lo4(kA[j]), s);
    s = hip::mfma32x32x8<Elem>(hip::hi4(a), hip::hi4(kA[j]), s);
    dp = hip::mfma32x32x8<Elem>(hip::lo4(ad), hip::lo4(vA[j]), dp);
    dp = hip::mfma32x32x8<Elem>(hip::hi4(ad), hip::hi4(vA[j]), dp);
  }
#pragma unroll
  for (int r = 0; r < 16; ++r) {
    const int row = key_of_srow(mfma::M32x32x8::c_row(lane, r));
    const float lse2 = st.lse2[row];
    bool vis = my_flag != 0 && my_key < st.kmax[row] && lse2 > -__builtin_inff();
    if (vis && my_flag == 1) vis = st.mask[row][static_cast<int64_t>(my_block) * p.mask_stride_col] != 0;
    pr[r] = vis ? hip::exp2f_fast(s[r] * p.scale_log2 - lse2) : 0.f;
    dsr[r] = pr[r] * (dp[r] - st.dsum[row]);
  }
}

// Writes dS into the wavefront's LDS slice (row-major) and makes it visible to the wavefront.
template <typename Elem>
SEER_DEVICE void store_ds_slice(uint16_t* ds, const float (&dsr)[16]) {
  const int lane = hip::tid() % 64;
#pragma unroll
  for (int r = 0; r < 16; ++r)
    ds[ds_lds(key_of_srow(mfma::M32x32x8::c_row(lane, r)), lane % 32)] = hip16::from_float<Elem>(dsr[r]);
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");
  __builtin_amdgcn_wave_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");
}

// acc += dS K_w for the 32 dims [32 nt, 32 nt + 32): lane holds dQ[c_row(lane, r)][32 nt + lane % 32].
template <typename Elem>
SEER_DEVICE f32x16 gemm_dq(const uint16_t* ds, const s16x4 (&kB)[4], f32x16 acc) {
  const int lane = hip::tid() % 64, h = lane / 32;
#pragma unroll
  for (int st = 0; st < 4; ++st) {
    const hip::u32x2 a = *reinterpret_cast<const hip::u32x2*>(ds + ds_lds(mfma::M32x32x8::a_row(lane), 8 * st + 4 * h));
    acc = hip::mfma32x32x8<Elem>(__builtin_bit_cast(s16x4, a), kB[st], acc);
  }
  return acc;
}

// dK/dV kernel (and, kAtomicDq, the atomic dQ). Grid: (128-key tiles x bwd_dsplit(D), kv heads, sequences).
template <typename Elem, int D, bool kAtomicDq>
__global__ void __launch_bounds__(kThreads, 1) attention_bwd_kernel_hip(const AttnBwdParams p) {
  using Smem = BwdSmem<D, true>;
  constexpr int kSplit = bwd_dsplit(D), kDh = Smem::kDh;
  __shared__ __attribute__((aligned(16))) Smem sm;
  const int tid = hip::tid(), lane = tid % 64, wave = tid / 64, h = lane / 32;
  const int hk = hip::bid_y(), b = hip::bid_z();
  const SeqBounds sb = seq_bounds(p, b);  // clamped bounds: the rule of every attention kernel (seqlen.h)
  const int q_start = sb.q_start, k_start = sb.k_start, seqlen_q = sb.seqlen_q, seqlen_k = sb.seqlen_k;
  const int k0 = (hip::bid_x() / kSplit) * kBwdKeys;
  const int d0 = (hip::bid_x() % kSplit) * kDh;  // this workgroup's dK / dV / dQ dims [d0, d0 + kDh)
  if (k0 >= seqlen_k) return;  // uniform: no key of this sequence here (keys with no row still get dK = dV = 0)
  const int kw0 = k0 + 32 * wave;          // this wavefront's first key
  const int my_key = kw0 + lane % 32;      // the key of this lane's accumulator column

  const uint16_t* gk = static_cast<const uint16_t*>(p.k) + static_cast<int64_t>(k_start) * p.k_row_stride +
                       static_cast<int64_t>(hk) * p.k_head_stride;
  const uint16_t* gv = static_cast<const uint16_t*>(p.v) + static_cast<int64_t>(k_start) * p.v_row_stride +
                       static_cast<int64_t>(hk) * p.v_head_stride;
  u32x4 kA[D / 16], vA[D / 16];
  s16x4 kB[kDh / 32][4];
  load_key_fragments<D, kDh>(p, gk, gv, kw0, seqlen_k, d0, kA, vA, kB);
  f32x16 dk[kDh / 32], dv[kDh / 32];
#pragma unroll
  for (int nt = 0; nt < kDh / 32; ++nt) dk[nt] = dv[nt] = f32x16{};

  const uint8_t* tmT = p.tile_maskT + (static_cast<int64_t>(b) * p.h_kv + hk) * p.nb_k * p.n_row_tiles;
  const int my_chunk = (32 * wave + lane % 32) / kChunk;
  const int my_block = my_key / p.block_size_k;

  // ---- one row tile ----
  auto process = [&](int rt, uint32_t flags) {
    hip::barrier();  // the previous row tile's LDS readers are done
    load_row_stats(p, b, hk, rt, sb, sm.st);
    if constexpr (kAtomicDq && !Smem::kDqInQ)
      for (int e = tid; e < kBwdRows * kDh; e += kThreads) sm.dq()[e] = 0.f;
    load_row_tile<D, true>(p, hk, rt, q_start, seqlen_q, d0, sm);
    hip::barrier();

    float pr[16], dsr[16];
    probs_and_grads<Elem, D>(p, sm.q, sm.dout, sm.st, kA, vA, my_key, (flags >> (2 * my_chunk)) & 3u, my_block, pr, dsr);
    // dV += P^T dO, dK += dS^T Q.
    s16x4 pf[4], df[4];
#pragma unroll
    for (int st = 0; st < 4; ++st) {
      pf[st] = hip::pack4_finite<Elem>(pr[4 * st], pr[4 * st + 1], pr[4 * st + 2], pr[4 * st + 3]);
      df[st] = hip::pack4<Elem>(dsr[4 * st], dsr[4 * st + 1], dsr[4 * st + 2], dsr[4 * st + 3]);
    }
#pragma unroll
    for (int nt = 0; nt < kDh / 32; ++nt) {
      const int d = 32 * nt + mfma::M32x32x8::b_col(lane);  // - d0
#pragma unroll
      for (int m = 0; m < 2; ++m) {
        const u32x4 bo = *reinterpret_cast<const u32x4*>(sm.doutt + vt_lds<kBwdRows>(d, 16 * m + 8 * h));
        const u32x4 bq = *reinterpret_cast<const u32x4*>(sm.qt + vt_lds<kBwdRows>(d, 16 * m + 8 * h));
        dv[nt] = hip::mfma32x32x8<Elem>(pf[2 * m], hip::lo4(bo), dv[nt]);
        dv[nt] = hip::mfma32x32x8<Elem>(pf[2 * m + 1], hip::hi4(bo), dv[nt]);
        dk[nt] = hip::mfma32x32x8<Elem>(df[2 * m], hip::lo4(bq), dk[nt]);
        dk[nt] = hip::mfma32x32x8<Elem>(df[2 * m + 1], hip::hi4(bq), dk[nt]);
      }
    }
    if constexpr (kAtomicDq) {
      // dQ_w = dS K_w, summed over the wavefronts in LDS, then one fp32 atomic per nonzero element.
      store_ds_slice<Elem>(sm.ds[wave], dsr);
      if constexpr (Smem::kDqInQ) {  // every wavefront is done with Q / dO: their LDS takes the dQ sum
        hip::barrier();
        for (int e = tid; e < kBwdRows * kDh; e += kThreads) sm.dq()[e] = 0.f;
        hip::barrier();
      }
      float* sdq = sm.dq();
#pragma unroll
      for (int nt = 0; nt < kDh / 32; ++nt) {
        const f32x16 acc = gemm_dq<Elem>(sm.ds[wave], kB[nt], f32x16{});
#pragma unroll
        for (int r = 0; r < 16; ++r)
          atomicAdd(&sdq[mfma::M32x32x8::c_row(lane, r) * kDh + 32 * nt + mfma::M32x32x8::c_col(lane)], acc[r]);
      }
      hip::barrier();
      for (int e = tid; e < kBwdRows * kDh; e += kThreads) {
        const float v = sdq[e];
        if (v == 0.f) continue;
        const TileRow rp = tile_row(p, hk, rt, e / kDh, seqlen_q);
        if (!rp.valid) continue;
        unsafeAtomicAdd(p.dq_accum + ((static_cast<int64_t>(q_start) + rp.tok) * p.h_q + rp.head) * D + d0 + e % kDh, v);
      }
    }
  };
  // The row tiles with a kept chunk (transposed tile mask), in increasing order.
  for_each_flagged(
      p.n_row_tiles,
      [&](int rt) {
        return chunk_flags(p, [&](int n) { return static_cast<int>(tmT[static_cast<int64_t>(n) * p.n_row_tiles + rt]); },
                           k0, seqlen_k);
      },
      process);

  // ---- dK (scaled), dV: lane holds key kw0 + c_row(lane, r), dim d0 + 32 nt + lane % 32 ----
#pragma unroll
  for (int nt = 0; nt < kDh / 32; ++nt)
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      const int key = kw0 + mfma::M32x32x8::c_row(lane, r);
      if (key >= seqlen_k) continue;
      const int d = d0 + 32 * nt + mfma::M32x32x8::c_col(lane);
      const int64_t t = static_cast<int64_t>(k_start) + key;
      static_cast<uint16_t*>(p.dk)[t * p.dk_row_stride + static_cast<int64_t>(hk) * p.dk_head_stride + d] =
          hip16::from_float<Elem>(dk[nt][r] * p.scale);
      static_cast<uint16_t*>(p.dv)[t * p.dv_row_stride + static_cast<int64_t>(hk) * p.dv_head_stride + d] =
          hip16::from_float<Elem>(dv[nt][r]);
    }
}

// Deterministic dQ kernel: one workgroup per (32-row tile, kv head, sequence) walks the 128-key windows
// with a kept chunk (row-major tile mask); wavefront w always takes keys [32 w, 32 w + 32) of a window
// and keeps its dQ_w in registers, and the 4 dQ_w are summed in a fixed order at the end: bitwise
// reproducible. S and dP are recomputed (the dK/dV kernel runs without its dQ part). D 256: one
// workgroup per half of the dims (grid x = row tile * 2 + half).
template <typename Elem, int D>
__global__ void __launch_bounds__(kThreads, 1) attention_bwd_dq_kernel_hip(const AttnBwdParams p) {
  using Smem = BwdSmem<D, false>;
  constexpr int kSplit = bwd_dsplit(D), kDh = Smem::kDh;
  __shared__ __attribute__((aligned(16))) Smem sm;
  const int tid = hip::tid(), lane = tid % 64, wave = tid / 64;
  const int rt = hip::bid_x() / kSplit, hk = hip::bid_y(), b = hip::bid_z();
  const int d0 = (hip::bid_x() % kSplit) * kDh;  // this workgroup's dQ dims [d0, d0 + kDh)
  const SeqBounds sb = seq_bounds(p, b);  // clamped bounds: the rule of every attention kernel (seqlen.h)
  const int q_start = sb.q_start, k_start = sb.k_start, seqlen_q = sb.seqlen_q, seqlen_k = sb.seqlen_k;
  const int slot = rt / p.n_tok_tiles;
  const int tok0 = (rt - slot * p.n_tok_tiles) * p.tile_tokens;
  if (tok0 >= seqlen_q) return;  // uniform: the tile has no row
  const int tok_last = imin(tok0 + p.tile_tokens, seqlen_q) - 1;
  const int key_limit = sb.key_limit(tok_last, p.causal);  // keys >= key_limit are invisible to every row of the tile

  load_row_stats(p, b, hk, rt, sb, sm.st);
  load_row_tile<D, false>(p, hk, rt, q_start, seqlen_q, d0, sm);
  hip::barrier();

  const uint16_t* gk = static_cast<const uint16_t*>(p.k) + static_cast<int64_t>(k_start) * p.k_row_stride +
                       static_cast<int64_t>(hk) * p.k_head_stride;
  const uint16_t* gv = static_cast<const uint16_t*>(p.v) + static_cast<int64_t>(k_start) * p.v_row_stride +
                       static_cast<int64_t>(hk) * p.v_head_stride;
  const uint8_t* tm = p.tile_mask + ((static_cast<int64_t>(b) * p.h_kv + hk) * p.n_row_tiles + rt) * p.nb_k;
  f32x16 dq[kDh / 32];
#pragma unroll
  for (int nt = 0; nt < kDh / 32; ++nt) dq[nt] = f32x16{};
  const int my_chunk = (32 * wave + lane % 32) / kChunk;

  for_each_flagged(
      (key_limit + kBwdKeys - 1) / kBwdKeys,
      [&](int w) { return chunk_flags(p, [&](int n) { return static_cast<int>(tm[n]); }, w * kBwdKeys, key_limit); },
      [&](int w, uint32_t flags) {
        const int kw0 = w * kBwdKeys + 32 * wave, my_key = kw0 + lane % 32;
        u32x4 kA[D / 16], vA[D / 16];
        s16x4 kB[kDh / 32][4];
        load_key_fragments<D, kDh>(p, gk, gv, kw0, seqlen_k, d0, kA, vA, kB);
        float pr[16], dsr[16];
        probs_and_grads<Elem, D>(p, sm.q, sm.dout, sm.st, kA, vA, my_key, (flags >> (2 * my_chunk)) & 3u,
                                 my_key / p.block_size_k, pr, dsr);
        __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");  // the previous window's dS reads are done
        __builtin_amdgcn_wave_barrier();
        store_ds_slice<Elem>(sm.ds[wave], dsr);
#pragma unroll
        for (int nt = 0; nt < kDh / 32; ++nt) dq[nt] = gemm_dq<Elem>(sm.ds[wave], kB[nt], dq[nt]);
      });

  // Sum the wavefronts' dQ_w in a fixed order, then dq = scale * sum for every real row of the tile.
  if constexpr (Smem::kDqInQ) hip::barrier();  // every wavefront is done with Q / dO (the sum's LDS)
  float* sdq = sm.dq();
#pragma unroll 1
  for (int w = 0; w < kWaves; ++w) {
    if (w == wave)
#pragma unroll
      for (int nt = 0; nt < kDh / 32; ++nt)
#pragma unroll
        for (int r = 0; r < 16; ++r) {
          float* dst = &sdq[mfma::M32x32x8::c_row(lane, r) * kDh + 32 * nt + mfma::M32x32x8::c_col(lane)];
          *dst = (w == 0 ? 0.f : *dst) + dq[nt][r];
        }
    hip::barrier();
  }
  for (int e = tid; e < kBwdRows * kDh; e += kThreads) {
    const TileRow rp = tile_row(p, hk, rt, e / kDh, seqlen_q);
    if (!rp.valid) continue;
    static_cast<uint16_t*>(p.dq)[(static_cast<int64_t>(q_start) + rp.tok) * p.dq_row_stride +
                                 static_cast<int64_t>(rp.head) * p.dq_head_stride + d0 + e % kDh] =
        hip16::from_float<Elem>(sdq[e] * p.scale);
  }
}

// softmax_d[h, t] = sum_d dout * out - dlse (one wavefront per 4 rows: 16 lanes x 8 dims per row and step);
// atomic path: also zeroes the row's dq_accum (the op allocates it uninitialised).
template <typename Elem>
__global__ void __launch_bounds__(256) attention_bwd_preprocess_kernel_hip(const AttnBwdParams p) {
  const int64_t row = static_cast<int64_t>(hip::bid_x()) * 16 + hip::tid() / 16;
  const int sub = hip::tid() % 16;
  const bool active = row < static_cast<int64_t>(p.total_q) * p.h_q;
  float acc = 0.f;
  PreRow x{};
  if (active) {
    if (!p.deterministic && p.dq_accum != nullptr) zero_dq_accum_row(p, row, sub, 16);  // the atomic dQ workspace
    x = pre_row(p, row);
    const uint16_t* o = static_cast<const uint16_t*>(p.out) + x.o_off;
    const uint16_t* g = static_cast<const uint16_t*>(p.dout) + x.do_off;
    for (int d = 8 * sub; d < p.head_dim; d += 128) {
      const u32x4 a = *reinterpret_cast<const u32x4*>(o + d), c = *reinterpret_cast<const u32x4*>(g + d);
      const uint32_t aw[4] = {a.x, a.y, a.z, a.w}, cw[4] = {c.x, c.y, c.z, c.w};
#pragma unroll
      for (int k = 0; k < 8; ++k)
        acc += hip16::to_float<Elem>(static_cast<uint16_t>(aw[k / 2] >> (16 * (k % 2)))) *
               hip16::to_float<Elem>(static_cast<uint16_t>(cw[k / 2] >> (16 * (k % 2))));
    }
  }
#pragma unroll
  for (int m = 1; m < 16; m *= 2) acc += SEER_SHFL_XOR(acc, m);
  if (active && sub == 0) store_softmax_d(p, x, acc);
}

// dq = dq_accum * scale in the element type, every row (rows nothing attends hold zeros). Grid-stride
// loop over n_groups workgroups of 256 (the launch's grid.x).
template <typename Elem>
__global__ void __launch_bounds__(256) attention_bwd_convert_dq_kernel_hip(const AttnBwdParams p, int n_groups) {
  const int64_t n = static_cast<int64_t>(p.total_q) * p.h_q * p.head_dim;
  for (int64_t i = static_cast<int64_t>(hip::bid_x()) * 256 + hip::tid(); i < n; i += static_cast<int64_t>(n_groups) * 256) {
    const int64_t rh = i / p.head_dim;
    const int d = static_cast<int>(i - rh * p.head_dim);
    const int64_t t = rh / p.h_q;
    const int hh = static_cast<int>(rh - t * p.h_q);
    static_cast<uint16_t*>(p.dq)[t * p.dq_row_stride + static_cast<int64_t>(hh) * p.dq_head_stride + d] =
        hip16::from_float<Elem>(p.dq_accum[i] * p.scale);
  }
}

}  // namespace hipattn
}  // namespace seer
