// Backward dK/dV kernel (both paths; the atomic one also adds dQ into the fp32 workspace). Algorithm,
// masking rules and helpers: bwd_common.h (read it first). One CTA per (key tile, kv head, sequence)
// keeps K / V of its kBlockN keys in shared memory and streams the candidate 64-row row tiles whose
// tile_maskT entry is nonzero; phase 1 computes S^T = K Q^T and dP^T = V dO^T and writes P^T / dS^T
// to shared memory, phase 2 accumulates dV += P^T dO and dK += dS^T Q in registers, phase 3 (atomic
// path) adds dQ_tile = dS K into the fp32 workspace. Tile shapes, chosen for the shared-memory
// bandwidth (every mma operand comes from shared memory through ldmatrix; the SM reads ~128 B/clk):
//   - kBlockN keys per CTA (128 for D 64 / 128, 64 for D 256 and the small configurations of
//     bwd_launch_template.cuh): each streamed Q/dO tile (and each dq_accum row update) serves kBlockN keys;
//   - phase 1: warp (wn, wx) owns keys [32 wn, +32) x rows [wx * kRowsW, +kRowsW) (kRowsW = 32 with
//     128 keys: per 16-deep k-step 8 ldmatrix.x4 feed 16 mma, 256 B/mma; 16 with 64 keys);
//   - phase 2: warp (wn, wx) owns keys [32 wn, +32) x dims [wx * kDimW, +kDimW) (D=128: D/2 dims,
//     4 + 2 * D/32 ldmatrix.x4 feed D/2 mma per k-step, 192 B/mma; D=256: D/4 dims);
//   - phase 3: warp (wr, wh) owns rows [32 wr, +32) x dims [wh * D/4, +D/4) (D=128: 256 B/mma), in
//     kDqChunk-dim passes, and adds its fp32 results with one 16-byte red.global.add.v4.f32 per 4
//     elements on sm_90 (a quad shuffle gathers 4 consecutive columns of one row per lane).
// The warp's 32 keys are two 16-key chunks, each with its own 2-bit tile-mask flag: a chunk whose flag
// is 0 gets P = dS = 0 (written as zeros if the other chunk of the warp is live); a warp whose two
// chunks are 0 skips phases 1-2 and leaves its P^T/dS^T rows unwritten, which phase 3 never reads
// (it skips chunks whose flag is 0, uniformly over the CTA).
// Q/dO are double-buffered (kStages 2: tile i+1 loads while tile i computes) when the device's opt-in
// shared memory per block holds it, else single-buffered (kStages 1); see BwdConfig.
#pragma once
#include "attention/bwd_common.h"
#include "attention/tile_scheduler.h"

namespace seer {
namespace attn_bwd {

template <int kHeadDim_, int kBlockN_, int kStages_, typename Elem_>
struct DkdvTraits {
  using Elem = Elem_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = kBwdTileRows;  // rows per streamed row tile (64)
  static constexpr int kBlockN = kBlockN_;      // keys per CTA
  static constexpr int kNWarps = 8;
  static constexpr int kThreads = kNWarps * 32;
  static constexpr int kStages = kStages_;      // shared buffers of the streamed Q/dO tile (1 or 2)
  static constexpr int kLd = kHeadDim + 8;   // row pitch (elements) of sK, sV, sQ, sdO
  static constexpr int kLdP = kBlockM + 8;   // row pitch (elements) of sPt, sdSt
  static constexpr int kChunks = kBlockN / 16;
  // Phases 1-2: warp (wn = warp % kWarpsN, wx = warp / kWarpsN).
  static constexpr int kKeysW = 32;
  static constexpr int kWarpsN = kBlockN / kKeysW;   // 4 (128 keys) or 2 (64 keys)
  static constexpr int kWarpsX = kNWarps / kWarpsN;  // 2 or 4
  static constexpr int kRowsW = kBlockM / kWarpsX;   // phase 1: rows per warp (32 or 16)
  static constexpr int kDimW = kHeadDim / kWarpsX;   // phase 2: dims per warp
  // Phase 3: warp (wr = warp / kDqWarpsD, wh = warp % kDqWarpsD).
  static constexpr int kDqWarpsM = 2;
  static constexpr int kDqWarpsD = kNWarps / kDqWarpsM;  // 4
  static constexpr int kDqRowsW = kBlockM / kDqWarpsM;   // 32
  static constexpr int kDqDimW = kHeadDim / kDqWarpsD;   // 64 (D=256), 32 (D=128), 16 (D=64)
  static constexpr int kDqChunk = kDqDimW < 32 ? kDqDimW : 32;  // dims per phase-3 pass
  static_assert(kBlockN % kKeysW == 0 && kNWarps % kWarpsN == 0, "warp layout");
  static_assert(kRowsW % 16 == 0 && kDqRowsW == 32, "warp layout");
  static_assert(kDimW % 16 == 0 && kDqChunk % 16 == 0 && kDqDimW % kDqChunk == 0,
                "warp tile must be a multiple of 16");
  static_assert(kStages == 1 || kStages == 2, "stages");
  static_assert(kChunks <= 16, "chunk flags must fit 32 bits");

  static constexpr int kKVBytes = kBlockN * kLd * int(sizeof(Elem));
  static constexpr int kQBytes = kBlockM * kLd * int(sizeof(Elem));
  static constexpr int kPBytes = kBlockN * kLdP * int(sizeof(Elem));
  static constexpr int kOffK = 0;
  static constexpr int kOffV = kOffK + kKVBytes;
  static constexpr int kOffQ = kOffV + kKVBytes;                 // [kStages][kBlockM][kLd]
  static constexpr int kOffDO = kOffQ + kStages * kQBytes;       // [kStages][kBlockM][kLd]
  static constexpr int kOffPt = kOffDO + kStages * kQBytes;      // P^T  [kBlockN][kLdP]
  static constexpr int kOffDSt = kOffPt + kPBytes;               // dS^T [kBlockN][kLdP]
  static constexpr int kOffMOff = kOffDSt + kPBytes;             // int64 [kStages][kBlockM] mask row offset
  static constexpr int kOffQAcc = kOffMOff + kStages * kBlockM * 8;  // int64 [kStages][kBlockM] dq_accum row
  static constexpr int kOffLse = kOffQAcc + kStages * kBlockM * 8;   // float [kStages][kBlockM] raw lse
  static constexpr int kOffD = kOffLse + kStages * kBlockM * 4;      // float [kStages][kBlockM] softmax_d
  static constexpr int kOffTok = kOffD + kStages * kBlockM * 4;      // int [kStages][kBlockM] token
  static constexpr int kOffList = kOffTok + kStages * kBlockM * 4;   // int [kThreads] row tiles to visit
  static constexpr int kOffFlags = kOffList + kThreads * 4;          // uint32 [kThreads] chunk flags
  static constexpr int kOffWarpCnt = kOffFlags + kThreads * 4;       // int [kNWarps]
  static constexpr int kSmemBytes = (kOffWarpCnt + kNWarps * 4 + 15) / 16 * 16;
};

template <typename Kt, bool Is_causal, bool Is_atomic>
__global__ void __launch_bounds__(Kt::kThreads, 1) bwd_dkdv_kernel(const __grid_constant__ AttnBwdParams p) {
  using Elem = typename Kt::Elem;
  constexpr int kBlockM = Kt::kBlockM, kBlockN = Kt::kBlockN, kLd = Kt::kLd, kLdP = Kt::kLdP;
  constexpr int kRowsW = Kt::kRowsW, kDimW = Kt::kDimW, kDqDimW = Kt::kDqDimW, kDqChunk = Kt::kDqChunk;
  extern __shared__ __align__(16) unsigned char smem[];
  Elem* sK = reinterpret_cast<Elem*>(smem + Kt::kOffK);
  Elem* sV = reinterpret_cast<Elem*>(smem + Kt::kOffV);
  Elem* sQ = reinterpret_cast<Elem*>(smem + Kt::kOffQ);
  Elem* sdO = reinterpret_cast<Elem*>(smem + Kt::kOffDO);
  Elem* sPt = reinterpret_cast<Elem*>(smem + Kt::kOffPt);
  Elem* sdSt = reinterpret_cast<Elem*>(smem + Kt::kOffDSt);
  int64_t* sMOff = reinterpret_cast<int64_t*>(smem + Kt::kOffMOff);
  int64_t* sQAcc = reinterpret_cast<int64_t*>(smem + Kt::kOffQAcc);  // dq_accum row offset or -1
  float* sLse = reinterpret_cast<float*>(smem + Kt::kOffLse);  // raw lse (natural log)
  float* sDd = reinterpret_cast<float*>(smem + Kt::kOffD);
  int* sTok = reinterpret_cast<int*>(smem + Kt::kOffTok);
  int* sList = reinterpret_cast<int*>(smem + Kt::kOffList);
  uint32_t* sFlags = reinterpret_cast<uint32_t*>(smem + Kt::kOffFlags);
  int* sWarpCnt = reinterpret_cast<int*>(smem + Kt::kOffWarpCnt);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  // The CTA's key tile, kv head, sequence (tile_scheduler.h: head-major, key tile 0 first in each head).
  const KeyTileItem item = key_tile_item(p);
  const int hk = item.hk, key_tile = item.key_tile, b = item.b;
  const SeqBounds sb = seq_bounds(p, b);  // clamped lengths (seqlen.h)
  const int q_start = sb.q_start, seqlen_q = sb.seqlen_q;
  const int k_start = sb.k_start, seqlen_k = sb.seqlen_k;
  const int key0 = key_tile * kBlockN;
  if (key0 >= seqlen_k) return;
  const int n_keys = min(kBlockN, seqlen_k - key0);
  const int causal_off = sb.causal_off;

  load_kv_tile<Kt, kBlockN>(p, hk, static_cast<int64_t>(k_start) + key0, n_keys, sK, sV);
  cp_async_commit();

  const int wn = warp % Kt::kWarpsN;  // key slice [32 wn, +32) (phases 1, 2)
  const int wx = warp / Kt::kWarpsN;  // phase 1: rows [wx * kRowsW, +kRowsW); phase 2: dims [wx * kDimW, +kDimW)
  const int wkey = key0 + wn * 32;    // first (sequence-local) key of the warp's slice
  // Thread keys: wkey + 16 mi + g + 8 h (m-tile mi = chunk 2 wn + mi, accumulator elements 2h, 2h+1).
  bool key_ok[2][2];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) key_ok[mi][h] = wkey + 16 * mi + g + 8 * h < seqlen_k;

  float acc_dv[2][kDimW / 8][4], acc_dk[2][kDimW / 8][4];
  zero_acc(acc_dv);
  zero_acc(acc_dk);

  const RowTileCandidates cand = row_tile_candidates<Is_causal>(p, seqlen_q, key0, causal_off);
  const int64_t tmT_bh = (static_cast<int64_t>(b) * p.h_kv + hk) * p.nb_k;

  // Per-row data of row tile rt into stage st (thread tid < kBlockM: row tid). lse and softmax_d are
  // copied with cp.async in the commit group of the tile's Q/dO (no register stays live across the
  // compute phases, no warp stalls on their latency); the rest is index arithmetic. Rows that are not
  // valid get lse = -inf (P = 0) and a dq_accum offset of -1 (skipped by phase 3).
  auto issue_meta = [&](int rt, int st) {
    if (tid < kBlockM) {
      const TileRow x = tile_row(p, hk, rt, tid, seqlen_q);
      const int s = st * kBlockM + tid;
      sTok[s] = x.tok;
      if (x.valid) {
        const int64_t li = static_cast<int64_t>(x.head) * p.total_q + q_start + x.tok;
        cp_async_4(sLse + s, p.lse + li);
        cp_async_4(sDd + s, p.softmax_d + li);
        sMOff[s] = mask_row_offset(p, b, x.head, x.tok);
        if (Is_atomic)
          sQAcc[s] = ((static_cast<int64_t>(q_start) + x.tok) * p.h_q + x.head) * static_cast<int64_t>(Kt::kHeadDim);
      } else {
        sLse[s] = -INFINITY;
        sDd[s] = 0.f;
        sMOff[s] = 0;
        if (Is_atomic) sQAcc[s] = -1;
      }
    }
  };
  auto load_rows = [&](int rt, int st) {
    load_q_do_tile<Kt>(p, hk, rt, q_start, seqlen_q, sQ + st * kBlockM * kLd, sdO + st * kBlockM * kLd);
  };

  // Per-lane ldmatrix offsets (elements), see the operand-load table in bwd_common.h.
  // Phase 1: A = K / V rows (keys) [32 wn + 16 mi, +16), B = Q / dO rows [wx * kRowsW + 16 jj, +16).
  const int a1_off = (wn * 32 + (lane & 15)) * kLd + (lane >> 4) * 8;
  const int b1_off = (wx * kRowsW + (lane & 7) + (lane >> 4) * 8) * kLd + ((lane >> 3) & 1) * 8;
  // Phase 2: A = P^T / dS^T rows (keys) [32 wn + 16 mi, +16), B = dO / Q [rows][dims] (trans).
  const int a2_off = (wn * 32 + (lane & 15)) * kLdP + (lane >> 4) * 8;
  const int b2_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * kLd + wx * kDimW + (lane >> 4) * 8;
  // Phase 3: A = dS rows [32 wr + 16 mi, +16) from dS^T (trans), B = K [keys][dims] (trans).
  const int wr = warp / Kt::kDqWarpsD, wh = warp % Kt::kDqWarpsD;
  const int a3_off = ((lane & 7) + (lane >> 4) * 8) * kLdP + wr * 32 + ((lane >> 3) & 1) * 8;
  const int b3_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * kLd + wh * kDqDimW + (lane >> 4) * 8;

#pragma unroll 1
  for (int cbase = 0; cbase < cand.n_cand; cbase += Kt::kThreads) {
    const int idx = cbase + tid;
    int rt = 0;
    uint32_t flags = 0;
    if (idx < cand.n_cand) {
      rt = cand.row_tile(idx, p.n_tok_tiles);
      flags = chunk_flags<Kt::kChunks>(p.tile_maskT, tmT_bh * p.n_row_tiles + rt, p.n_row_tiles, key0, seqlen_k,
                                       p.block_size_k, p.nb_k);
    }
    const int cnt = compact_list<Kt::kThreads>(flags != 0, rt, flags, sList, sFlags, sWarpCnt, threadIdx.x,
                                                [] { __syncthreads(); });
    if (cnt == 0) continue;

    if constexpr (Kt::kStages == 2) {
      load_rows(sList[0], 0);
      issue_meta(sList[0], 0);
      cp_async_commit();
    }
#pragma unroll 1
    for (int i = 0; i < cnt; ++i) {
      const int st = Kt::kStages == 2 ? (i & 1) : 0;
      if constexpr (Kt::kStages == 2) {
        cp_async_wait<0>();
        __syncthreads();  // tile i visible; every warp is done with tile i-1 (stage st^1, sPt, sdSt)
        if (i + 1 < cnt) {
          load_rows(sList[i + 1], st ^ 1);
          issue_meta(sList[i + 1], st ^ 1);
        }
        cp_async_commit();
      } else {
        __syncthreads();  // every warp is done with tile i-1 (the one stage, sPt, sdSt)
        load_rows(sList[i], 0);
        issue_meta(sList[i], 0);
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();  // tile i visible
      }
      const Elem* sQs = sQ + st * kBlockM * kLd;
      const Elem* sdOs = sdO + st * kBlockM * kLd;
      const uint32_t tflags = sFlags[i];
      const int fl[2] = {static_cast<int>((tflags >> (4 * wn)) & 3u), static_cast<int>((tflags >> (4 * wn + 2)) & 3u)};
      const bool warp_on = (fl[0] | fl[1]) != 0;

      // ---- phase 1: S^T, dP^T for keys [wkey, +32) x rows [wx * kRowsW, +kRowsW) -> P^T, dS^T ----
      if (warp_on) {
        float acc_s[2][kRowsW / 8][4], acc_dp[2][kRowsW / 8][4];
        zero_acc(acc_s);
        zero_acc(acc_dp);
        // S^T then dP^T (two passes over the head dim: half the fragment registers of one fused pass,
        // which leaves room to unroll and overlap the ldmatrix of step kk+1 with the mma of step kk).
        auto gemm = [&](float (&acc)[2][kRowsW / 8][4], const Elem* sA, const Elem* sB) {
#pragma unroll 4
          for (int kk = 0; kk < Kt::kHeadDim / 16; ++kk)
            warp_mma_2xn<kRowsW / 16, false, false>(acc, sA + a1_off + kk * 16, 16 * kLd, sB + b1_off + kk * 16,
                                                     16 * kLd);
        };
        gemm(acc_s, sK, sQs);
        gemm(acc_dp, sV, sdOs);
        // acc[mi][j][e]: key wkey + 16 mi + g + 8 (e >> 1), row wx * kRowsW + 8 j + 2 t4 + (e & 1).
        const float* sLses = sLse + st * kBlockM;
        const float* sDs = sDd + st * kBlockM;
        const int* sToks = sTok + st * kBlockM;
        const int64_t* sMOffs = sMOff + st * kBlockM;
#pragma unroll
        for (int j = 0; j < kRowsW / 8; ++j) {
#pragma unroll
          for (int cc = 0; cc < 2; ++cc) {
            const int r = wx * kRowsW + j * 8 + 2 * t4 + cc;
            const float lse2 = sLses[r] * kLog2e;  // -inf stays -inf
            const float dd = sDs[r];
            const int tok_lim = sToks[r] + causal_off;
            const bool row_live = lse2 != -INFINITY;  // valid row with at least one visible key
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
              bool row_ok = row_live && fl[mi] != 0;
              if (row_ok && fl[mi] == 1)  // per-row mask check (tile-mask value 1 only)
                row_ok = p.mask[sMOffs[r] + static_cast<int64_t>((wkey + 16 * mi) / p.block_size_k) *
                                                p.mask_stride_col] != 0;
#pragma unroll
              for (int h = 0; h < 2; ++h) {
                const int e = 2 * h + cc;
                bool ok = row_ok && key_ok[mi][h];
                if (Is_causal) ok = ok && (wkey + 16 * mi + g + 8 * h <= tok_lim);
                const float pr = ok ? fast_exp2(fmaf(acc_s[mi][j][e], p.scale_log2, -lse2)) : 0.f;
                acc_s[mi][j][e] = pr;
                acc_dp[mi][j][e] = pr * (acc_dp[mi][j][e] - dd);
              }
            }
          }
        }
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          const int row0 = wn * 32 + mi * 16 + g;
#pragma unroll
          for (int j = 0; j < kRowsW / 8; ++j) {
            const int col = wx * kRowsW + j * 8 + 2 * t4;
            *reinterpret_cast<uint32_t*>(sPt + row0 * kLdP + col) = pack2<Elem>(acc_s[mi][j][0], acc_s[mi][j][1]);
            *reinterpret_cast<uint32_t*>(sPt + (row0 + 8) * kLdP + col) =
                pack2<Elem>(acc_s[mi][j][2], acc_s[mi][j][3]);
            *reinterpret_cast<uint32_t*>(sdSt + row0 * kLdP + col) = pack2<Elem>(acc_dp[mi][j][0], acc_dp[mi][j][1]);
            *reinterpret_cast<uint32_t*>(sdSt + (row0 + 8) * kLdP + col) =
                pack2<Elem>(acc_dp[mi][j][2], acc_dp[mi][j][3]);
          }
        }
      }
      __syncthreads();  // P^T, dS^T complete

      // ---- phase 2: dV += P^T dO, dK += dS^T Q for keys [wkey, +32) x dims [wx * kDimW, +kDimW) ---
      if (warp_on) {
#pragma unroll
        for (int kk = 0; kk < kBlockM / 16; ++kk) {
          uint32_t ap[2][4], ads[2][4];
#pragma unroll
          for (int mi = 0; mi < 2; ++mi) {
            ldmatrix_x4(ap[mi], sPt + a2_off + mi * 16 * kLdP + kk * 16);
            ldmatrix_x4(ads[mi], sdSt + a2_off + mi * 16 * kLdP + kk * 16);
          }
#pragma unroll
          for (int jj = 0; jj < kDimW / 16; ++jj) {
            uint32_t bdo[4], bq[4];
            ldmatrix_x4_trans(bdo, sdOs + b2_off + kk * 16 * kLd + jj * 16);
            ldmatrix_x4_trans(bq, sQs + b2_off + kk * 16 * kLd + jj * 16);
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
              mma_pair<Elem>(acc_dv[mi][2 * jj], acc_dv[mi][2 * jj + 1], ap[mi], bdo);
              mma_pair<Elem>(acc_dk[mi][2 * jj], acc_dk[mi][2 * jj + 1], ads[mi], bq);
            }
          }
        }
      }

      // ---- phase 3 (atomic path): dq_accum[rows 32 wr + ..] += dS K for dims [wh * kDqDimW, +kDqDimW),
      // kDqChunk dims at a time (one pass for D 64 / 128; D 256 keeps its accumulators short-lived).
      if constexpr (Is_atomic) {
#pragma unroll 1
        for (int dc = 0; dc < kDqDimW; dc += kDqChunk) {
          float acc_dq[2][kDqChunk / 8][4];
          zero_acc(acc_dq);
#pragma unroll
          for (int kk = 0; kk < Kt::kChunks; ++kk) {
            if ((tflags >> (2 * kk)) & 3u)  // uniform over the CTA; flag-0 chunks hold stale data
              warp_mma_2xn<kDqChunk / 16, true, true>(acc_dq, sdSt + a3_off + kk * 16 * kLdP, 16,
                                                      sK + b3_off + kk * 16 * kLd + dc, 16);
          }
          // Lane pair (t4, t4 ^ 1) of a quad: the even lane gathers row g, columns 2 t4 .. 2 t4 + 3, the
          // odd lane row g + 8, columns 2 (t4 - 1) .. 2 (t4 - 1) + 3 of every n8 tile.
          const bool odd = (t4 & 1) != 0;
          const int64_t* sQAccs = sQAcc + st * kBlockM;
          float* accum = p.dq_accum;
#pragma unroll
          for (int mi = 0; mi < 2; ++mi) {
            const int64_t qoff = sQAccs[wr * 32 + mi * 16 + g + (odd ? 8 : 0)];
#pragma unroll
            for (int j = 0; j < kDqChunk / 8; ++j) {
              const float* c = acc_dq[mi][j];
              const float s0 = odd ? c[0] : c[2], s1 = odd ? c[1] : c[3];
              const float r0 = SEER_SHFL_XOR(s0, 1);
              const float r1 = SEER_SHFL_XOR(s1, 1);
              const int d = wh * kDqDimW + dc + j * 8 + 2 * (t4 & 2);
              if (qoff >= 0) {
                if (odd)
                  red_add_f32x4(accum + qoff + d, r0, r1, c[2], c[3]);
                else
                  red_add_f32x4(accum + qoff + d, c[0], c[1], r0, r1);
              }
            }
          }
        }
      }
    }
  }
  cp_async_wait<0>();  // nothing may be in flight at exit (e.g. K/V when no row tile was visited)

  // ---- epilogue: every key of the tile gets dk (times scale) and dv, zeros where nothing attends
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int kr = wn * 32 + mi * 16 + g + 8 * h;
      if (kr < n_keys) {
        const DkDvRow<Elem> o = dkdv_row<Elem>(p, static_cast<int64_t>(k_start) + key0 + kr, hk);
        Elem* gdk = o.dk;
        Elem* gdv = o.dv;
#pragma unroll
        for (int j = 0; j < kDimW / 8; ++j) {
          const int d = wx * kDimW + j * 8 + 2 * t4;
          *reinterpret_cast<uint32_t*>(gdk + d) =
              pack2<Elem>(acc_dk[mi][j][2 * h] * p.scale, acc_dk[mi][j][2 * h + 1] * p.scale);
          *reinterpret_cast<uint32_t*>(gdv + d) = pack2<Elem>(acc_dv[mi][j][2 * h], acc_dv[mi][j][2 * h + 1]);
        }
      }
    }
}

}  // namespace attn_bwd
}  // namespace seer
