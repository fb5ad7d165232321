// Backward dQ kernel (deterministic path): one CTA per (row tile, kv head, sequence) keeps the tile's
// Q / dO in shared memory, streams the kBlockN-key windows that hold a kept key block (double-buffered
// K / V), recomputes S and dP, and accumulates dQ = scale * dS K in registers in a fixed order (no
// atomics): bitwise reproducible. Algorithm, masking and helpers: bwd_common.h.
#pragma once
#include "attention/bwd_common.h"
#include "attention/tile_scheduler.h"

namespace seer {
namespace attn_bwd {

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

// dQ += dS K for one row tile of 64 rows (deterministic path; bwd_common.h has the algorithm).
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
  // Work item blockIdx.x, heaviest first (tile_scheduler.h).
  const ItemTile item = item_tile(p, static_cast<int>(blockIdx.x));
  const int rt = item.rt, hk = item.hk, b = item.b;
  const SeqBounds sb = seq_bounds(p, b);  // clamped lengths (seqlen.h)
  const int q_start = sb.q_start, seqlen_q = sb.seqlen_q;
  const int k_start = sb.k_start, seqlen_k = sb.seqlen_k;
  const int tok0 = item.tt * p.tile_tokens;  // first token of the row tile
  if (tok0 >= seqlen_q) return;
  const int causal_off = sb.causal_off;

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
  zero_acc(acc_dq);

  // Candidate windows: all windows before the last key any row of the tile can see.
  const int key_end = sb.key_limit(min(seqlen_q, tok0 + p.tile_tokens) - 1, Is_causal);
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
    const int cnt = compact_list<Qt::kThreads>(flags != 0, w_c, flags, sList, sFlags, sWarpCnt, threadIdx.x,
                                                [] { __syncthreads(); });
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
      zero_acc(acc_s);
      zero_acc(acc_dp);
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
