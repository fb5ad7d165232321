// Attention pooling for CDNA3 (gfx942, MI300X): MFMA main kernel + follow-up passes.
//
// Same contract as the CUDA pooling (pooling_params.h): one workgroup per (128-row query tile,
// sequence, q head), heaviest (last) query tiles first; max-pooled softmax probabilities per
// (row, key block) into pooled_1d (or, gqa_reduce, an atomic max into the fp32 staging), and the
// column maxima of each query block into pooled_2d (atomic max on the float bits: non-negative
// floats order like their bits), then row normalisation passes. No T x T buffer.
//
// Unlike the CUDA kernel (one sweep, per-(row, block) maxima staged in shared memory) this port
// sweeps the visible keys twice: pass 1 computes each row's LSE (online max / sum), pass 2 recomputes
// S and turns the running max of each (row, key block) into exp2(max * scale - lse) as soon as the
// block ends. It needs no staging, so the LDS holds just the K tile; the price is S computed twice.
// The S^T = K Q^T step, the K tile loader, the tile shapes and the LDS layout are the forward's
// (attention/hip/fwd_kernel_hip.h); the 32 keys of an S^T half are two 16-key chunks, each chunk's 16
// keys of a row held 8 by lane l and 8 by lane l ^ 32 (fwd_layout_hip.h, key_of_srow).
#pragma once
#include <cstdint>

#include "common/platform.h"
#include "common/hip_mfma.h"
#include "pooling/pooling_params.h"
#include "attention/hip/fwd_kernel_hip.h"

namespace seer {
namespace hippool {

using hip::f32x16;
using hip::u32x4;
using hip::imax;
using hip::imin;
constexpr float kNormEps = 1e-6f;

SEER_DEVICE void atomic_max_nonneg(float* addr, float v) {
  atomicMax(reinterpret_cast<unsigned int*>(addr), __float_as_uint(v));
}

// Max over the 8 registers of one 16-key chunk of an S^T half (key_of_srow: register r of lane half h
// holds key 16 (r / 8) + 8 h + 4 ((r / 4) % 2) + r % 4, so chunk c is registers 8c .. 8c + 7 of lanes
// l and l ^ 32; checked by tests/hip_layout), combined with the partner lane: the row's chunk max.
SEER_DEVICE float chunk_max(const float (&x)[16], int c) {
  float m = -__builtin_inff();
#pragma unroll
  for (int r = 0; r < 8; ++r) m = __builtin_fmaxf(m, x[8 * c + r]);
  return __builtin_fmaxf(m, SEER_SHFL_XOR(m, 32));
}

template <typename Elem, int D>
__global__ void __launch_bounds__(hipattn::kThreads, 2) pooling_kernel_hip(const PoolingParams p) {
  using Tile = hipattn::FwdTile<D>;
  constexpr int kBlockN = Tile::kBlockN, kHalves = Tile::kHalves, kChunks = Tile::kChunks;
  constexpr int kBlockM = hipattn::kBlockM;
  __shared__ __attribute__((aligned(16))) uint16_t sK[Tile::kLdsK];

  const int tid = hip::tid(), lane = tid % 64, wave = tid / 64;
  const int n_m = (p.max_seqlen + kBlockM - 1) / kBlockM;
  const int h = hip::bid_x() % p.h_q;
  const int mb = hip::bid_x() / p.h_q;
  const int b = mb % p.batch;
  const int m_block = n_m - 1 - mb / p.batch;
  const int hk = h / p.group;
  const int h_out = p.gqa_reduce ? hk : h;

  const int start = imin(imax(p.cu_seqlens[b], 0), p.total);
  const int end = imin(imax(p.cu_seqlens[b + 1], start), p.total);
  const int L = imin(end - start, p.max_seqlen);
  const int m0 = m_block * kBlockM;
  if (m_block < 0 || m0 >= L) return;  // uniform
  const int n_end = p.causal ? imin(L, m0 + kBlockM) : L;  // keys visible to some row of the tile
  const int B = p.block_size, nb = p.nb;
  const int n_tiles = (n_end + kBlockN - 1) / kBlockN;

  // ---- the lane's query row ----
  hipattn::RowInfo ri;
  ri.token = m0 + wave * hipattn::kWaveRows + mfma::M32x32x8::c_col(lane);
  ri.head = h;
  ri.valid = ri.token < L;
  ri.kmax = ri.valid ? (p.causal ? imin(ri.token + 1, L) : L) : 0;
  ri.mask = nullptr;
  int wave_kmin = ri.valid ? ri.kmax : 0x7fffffff;
#pragma unroll
  for (int off = 32; off >= 1; off /= 2) wave_kmin = imin(wave_kmin, SEER_SHFL_XOR(wave_kmin, off));
  // Q fragments (the forward's loader; q / k strides of PoolingParams have the same meaning).
  AttnParams qa{};
  qa.q = p.q;
  qa.q_row_stride = p.q_row_stride;
  qa.q_head_stride = p.q_head_stride;
  u32x4 q[D / 16];
  hipattn::load_q_fragments<D>(qa, ri, start, q);
  const uint16_t* gk = static_cast<const uint16_t*>(p.k) + static_cast<int64_t>(start) * p.k_row_stride +
                       static_cast<int64_t>(hk) * p.k_head_stride;

  // S^T of tile `tile` in log2 units, masked (-inf) where the row cannot see the key.
  auto scores = [&](int tile, float (&x)[16 * kHalves]) {
    int ck[kChunks], cm[kChunks];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) ck[c] = tile * kBlockN + 16 * c, cm[c] = -1;
    hip::barrier();  // previous tile consumed
    u32x4 kst[hipattn::KvStage<D>::kKIters];
    hipattn::fetch_k<D>(gk, p.k_row_stride, n_end, ck, kst);
    hipattn::store_k<D>(kst, sK);
    hip::barrier();
    f32x16 s[kHalves];
    hipattn::gemm_s<Elem, D>(sK, q, s);
    const bool exact = (tile + 1) * kBlockN > wave_kmin;
    hipattn::mask_scores<kHalves>(s, x, p.scale_log2, ri, ck, (1u << kChunks) - 1u, exact);  // no user mask
  };

  // ---- pass 1: LSE of every row (log2 units) ----
  hipattn::RowSoftmax<32> sm;
  sm.init();
  for (int tile = 0; tile < n_tiles; ++tile) {
    float x[16 * kHalves];
    scores(tile, x);
    sm.update(x);
  }
  const float l = sm.total();
  const float lse2 = l > 0.f ? sm.m + __builtin_amdgcn_logf(l) : -__builtin_inff();

  // ---- pass 2: block maxima ----
  const int64_t tok = static_cast<int64_t>(start) + ri.token;
  uint16_t* out1d = static_cast<uint16_t*>(p.pooled_1d) + (static_cast<int64_t>(h_out) * p.total + tok) * nb;
  float* acc1d = p.gqa_reduce ? p.pooled_1d_accum + (static_cast<int64_t>(h_out) * p.total + tok) * nb : nullptr;
  float* out2d = p.pooled_2d + (static_cast<int64_t>(b) * p.h_out + h_out) * nb * nb;
  // The block max of P for this row, written to both maps. Uniform call (contains shuffles).
  auto emit = [&](int blk, float smax) {
    const float pv = (ri.valid && smax > -__builtin_inff() && lse2 > -__builtin_inff()) ? hip::exp2f_fast(smax - lse2)
                                                                                          : 0.f;
    if (ri.valid && lane < 32) {
      if (p.gqa_reduce) atomic_max_nonneg(acc1d + blk, pv);
      else out1d[blk] = hip16::from_float<Elem>(pv);
    }
    // 2D: max over the 16 rows of a lane group (16 consecutive rows lie in one query block, since
    // block sizes are multiples of 16 and a wavefront's rows start at a multiple of 32).
    float cmax = pv;
#pragma unroll
    for (int off = 8; off >= 1; off /= 2) cmax = __builtin_fmaxf(cmax, SEER_SHFL_XOR(cmax, off));
    const int row16 = m0 + wave * hipattn::kWaveRows + (lane & 16);
    if ((lane == 0 || lane == 16) && row16 < L && cmax > 0.f) atomic_max_nonneg(out2d + (row16 / B) * nb + blk, cmax);
  };
  int cur = 0;
  float run = -__builtin_inff();
  for (int tile = 0; tile < n_tiles; ++tile) {
    float x[16 * kHalves];
    scores(tile, x);
#pragma unroll
    for (int t = 0; t < kHalves; ++t)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int key0 = tile * kBlockN + 32 * t + 16 * c;
        if (key0 >= n_end) continue;  // uniform
        const int blk = key0 / B;
        if (blk != cur) {
          emit(cur, run);
          cur = blk;
          run = -__builtin_inff();
        }
        float xs[16];
#pragma unroll
        for (int r = 0; r < 16; ++r) xs[r] = x[16 * t + r];
        run = __builtin_fmaxf(run, chunk_max(xs, c));
      }
  }
  if (n_tiles > 0) emit(cur, run);
  // Blocks past the swept range: 0 in the 1D map (it has no pre-fill unless gqa_reduce).
  if (!p.gqa_reduce && ri.valid && lane < 32)
    for (int blk = n_tiles > 0 ? cur + 1 : 0; blk < nb; ++blk) out1d[blk] = hip16::from_float<Elem>(0.f);
}

// ---- follow-up passes (no matrix work): one wavefront per row ----
// pooled_2d rows: x /= (sum + 1e-6); all-zero rows stay zero.
__global__ void __launch_bounds__(256) pooling_normalize_kernel_hip(float* x, int64_t n_rows, int n_cols) {
  const int64_t row = static_cast<int64_t>(hip::bid_x()) * 4 + hip::tid() / 64;
  if (row >= n_rows) return;
  const int lane = hip::tid() % 64;
  float* xr = x + row * n_cols;
  float s = 0.f;
  for (int j = lane; j < n_cols; j += 64) s += xr[j];
#pragma unroll
  for (int off = 32; off >= 1; off /= 2) s += SEER_SHFL_XOR(s, off);
  if (s == 0.f) return;
  const float inv = 1.f / (s + kNormEps);
  for (int j = lane; j < n_cols; j += 64) xr[j] *= inv;
}
// gqa_reduce: fp32 1D staging -> row-normalised output dtype.
template <typename Elem>
__global__ void __launch_bounds__(256) pooling_finish_1d_kernel_hip(const float* acc, uint16_t* out, int64_t n_rows,
                                                                     int n_cols) {
  const int64_t row = static_cast<int64_t>(hip::bid_x()) * 4 + hip::tid() / 64;
  if (row >= n_rows) return;
  const int lane = hip::tid() % 64;
  const float* ar = acc + row * n_cols;
  float s = 0.f;
  for (int j = lane; j < n_cols; j += 64) s += ar[j];
#pragma unroll
  for (int off = 32; off >= 1; off /= 2) s += SEER_SHFL_XOR(s, off);
  const float inv = 1.f / (s + kNormEps);
  for (int j = lane; j < n_cols; j += 64) out[row * n_cols + j] = hip16::from_float<Elem>(ar[j] * inv);
}
// Token rows of pooled_1d outside every sequence ([0, cu[0]) and [cu[B], T)) -> 0. grid.y = head.
__global__ void __launch_bounds__(256) pooling_zero_rows_kernel_hip(uint16_t* out, const int* cu, int batch, int total,
                                                                     int n_cols) {
  const int first = imin(imax(cu[0], 0), total);
  const int last = imin(imax(cu[batch], first), total);
  const int64_t n = static_cast<int64_t>(first + (total - last)) * n_cols;
  uint16_t* base = out + static_cast<int64_t>(hip::bid_y()) * total * n_cols;
  const int64_t head_elems = static_cast<int64_t>(first) * n_cols, tail = static_cast<int64_t>(last) * n_cols;
  for (int64_t i = static_cast<int64_t>(hip::bid_x()) * 256 + hip::tid(); i < n; i += 16 * 256)
    base[i < head_elems ? i : tail + (i - head_elems)] = 0;  // +0.0 in fp16 and bf16
}

}  // namespace hippool
}  // namespace seer
