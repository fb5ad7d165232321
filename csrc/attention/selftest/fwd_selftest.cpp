// Standalone self-test of the tile-mask builder and the forward kernel (no torch). Built and run with
// the other self-tests by `make selftest` (cmake target seer_fwd_selftest, cmake/CMakeLists.txt); with
// the 90a arch (SEER_ATTN_SM90A), every D 64 / 128 case also runs the Hopper warp-specialised kernels
// (sm90/, AttnParams::fwd_wgmma): the single one, the pair kernel (fwd_pair), and both launched with the
// device-side pick between them (fwd_pick), as the op runs them. `seer_fwd_selftest --time` times the mma.sync and sm90 kernels on a
// causal 16k-token sequence and on the P1 lengths of WORKLOADS.md (32 q / 8 kv heads, D 128, bf16,
// 64x64 blocks) at densities 1.0, 0.5, 0.1 (the mask is drawn over all blocks; no reference check;
// CUDA events, median of 10), then on P1 with 1D per-token-independent masks (per kv head, B_k 64);
// `--time-sm90` the Hopper single and pair kernels only, 2D masks at densities 1 and 0.1.
//
// For each case it (1) builds the tile mask on the GPU and compares it with a CPU re-derivation of the
// values documented in attention_params.h, (2) runs the forward kernel and compares out / lse with a
// float64 CPU reference, checking that every valid row is written (out and lse are pre-filled with
// NaN) and that nothing outside the sequences' rows is touched; sm90 runs also check the work queue the
// kernels took their items from (its order entry by entry, its counters re-armed: the checked outputs are
// those of a second run on the same queue). Last, the unowned-row fill of the op
// layer (common/tail_fill.h) on NaN-filled buffers. Prints one line per case and exits non-zero on the
// first class of failure.
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <random>
#include <vector>

#include "attention/attention_params.h"
#include "attention/tile_scheduler.h"  // fwd_pick_pair
#include "common/device_facts.h"

using namespace seer;

// impl 0: mma.sync kernel; 1: the sm_90a warp-specialised kernel (AttnParams::fwd_wgmma); 2: its pair
// kernel (fwd_pair, 128-row tiles); 3: what the library runs on Hopper for D 64 / 128 - both sm90 kernels
// launched, the tile counts of both tile masks picking one on the device (fwd_pick; p2: the 128-row
// tiling). The kernel is selected through the params.
static int run_fwd_impl(const AttnParams& p, const AttnParams& p2, int impl) {
  if (impl == 3) {
    const int rc = run_attention_fwd(p2, nullptr);
    if (rc != 0) return rc;
  }
  return run_attention_fwd(p, nullptr);
}

#include "common/selftest/check.h"
#include "common/selftest/reference.h"
#include "common/tail_fill.h"

// The unowned-row fill (common/tail_fill.h) on NaN-filled buffers, in its one launch: rows of out and
// columns of lse (query side) and rows of dk (key side, its own cu_seqlens) that no sequence owns
// (before the first, past a length clamped to max_seqlen, past the last) become 0 / -inf, every owned
// one keeps its NaN. Queries: cu = {3, 50, 60, 200}, total 230, max_seqlen 40: owned [3, 43), [50, 60),
// [60, 100). Keys: cu = {0, 20, 20, 90}, total 120, max_seqlen 50: owned [0, 20), [20, 70). Returns 0
// when right.
static int unowned_rows_check() {
  const int batch = 3, heads = 3, heads_k = 2, dim = 64;
  const int total = 230, max_seqlen = 40, total_k = 120, max_seqlen_k = 50;
  const std::vector<int> cu = {3, 50, 60, 200}, cu_k = {0, 20, 20, 90};
  auto owned = [&](const std::vector<int>& c, int max_len, int r) {
    for (int b = 0; b < batch; ++b)
      if (r >= c[b] && r < c[b] + std::min(c[b + 1] - c[b], max_len)) return true;
    return false;
  };
  selftest::DeviceArena a;
  const int* d_cu = a.copy(cu);
  const int* d_cu_k = a.copy(cu_k);
  const uint16_t kNaN16 = 0x7fff;  // a NaN in fp16 and bf16
  uint16_t* out = a.filled<uint16_t>(static_cast<size_t>(total) * heads * dim, kNaN16);
  float* lse = a.filled<float>(static_cast<size_t>(heads) * total, std::nanf(""));
  uint16_t* dk = a.filled<uint16_t>(static_cast<size_t>(total_k) * heads_k * dim, kNaN16);
  TailFillParams fill{};
  fill.batch = batch;
  fill.side[0] = TailFillSide{d_cu, max_seqlen, total};
  fill.side[1] = TailFillSide{d_cu_k, max_seqlen_k, total_k};
  fill.target[0] = tail_fill_rows(out, heads * dim, dim, heads, dim, 2, 0);
  fill.target[1] = tail_fill_lse(lse, heads, -INFINITY, 0);
  fill.target[2] = tail_fill_rows(dk, heads_k * dim, dim, heads_k, dim, 2, 1);
  fill.n_targets = 3;
  CK(static_cast<cudaError_t>(run_tail_fill(fill, nullptr)));
  CK(cudaDeviceSynchronize());
  const std::vector<uint16_t> h_out = selftest::to_host(out, static_cast<size_t>(total) * heads * dim);
  const std::vector<float> h_lse = selftest::to_host(lse, static_cast<size_t>(heads) * total);
  const std::vector<uint16_t> h_dk = selftest::to_host(dk, static_cast<size_t>(total_k) * heads_k * dim);
  int bad = 0;
  for (int r = 0; r < total; ++r) {
    const bool own = owned(cu, max_seqlen, r);
    for (int i = 0; i < heads * dim; ++i) bad += h_out[static_cast<size_t>(r) * heads * dim + i] != (own ? kNaN16 : 0);
    for (int h = 0; h < heads; ++h) {
      const float v = h_lse[static_cast<size_t>(h) * total + r];
      bad += own ? !std::isnan(v) : !(std::isinf(v) && v < 0);
    }
  }
  for (int r = 0; r < total_k; ++r) {
    const bool own = owned(cu_k, max_seqlen_k, r);
    for (int i = 0; i < heads_k * dim; ++i)
      bad += h_dk[static_cast<size_t>(r) * heads_k * dim + i] != (own ? kNaN16 : 0);
  }
  std::printf("unowned-row fill: %d wrong values -> %s\n", bad, bad ? "FAIL" : "ok");
  return bad ? 1 : 0;
}

using selftest::from_bits;
using selftest::to_bits;

struct Case {
  int D;
  bool bf16;
  std::vector<int> seq_q, seq_k;
  int h_q, h_kv;
  bool mask_2d;    // else 1D
  int mask_heads;  // h_q, h_kv or 1 (1 is given as a stride-0 broadcast)
  int bq, bk;
  bool causal;
  float density;
  int q_row_pad;  // extra elements per q row (non-contiguous q)
  // K / V given with head stride 0 (every kv head reads head 0's rows): no TMA map describes a stride-0 head,
  // so the sm_90a producers gather whole 64-key groups with cp.async (the path other cases never take).
  bool kv_bcast = false;
};

// impl: 0 = mma.sync kernel, 1 = sm_90a warp-specialised kernel, 2 = its pair kernel, 3 = both, picked on
// the device (run_fwd_impl).
// time_reps > 0: time that many launches after the first and skip the reference check.
static int run_case(const Case& c, uint64_t seed, int impl = 0, int time_reps = 0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unif(-1.f, 1.f);
  std::uniform_real_distribution<float> u01(0.f, 1.f);
  const int B = static_cast<int>(c.seq_q.size());
  std::vector<int> cu_q(B + 1, 0), cu_k(B + 1, 0);
  int max_q = 0, max_k = 0;
  for (int b = 0; b < B; ++b) {
    cu_q[b + 1] = cu_q[b] + c.seq_q[b];
    cu_k[b + 1] = cu_k[b] + c.seq_k[b];
    max_q = std::max(max_q, c.seq_q[b]);
    max_k = std::max(max_k, c.seq_k[b]);
  }
  const int Tq = cu_q[B], Tk = cu_k[B], D = c.D;
  const int group = c.h_q / c.h_kv;
  // q: [Tq, h_q, D] with padded rows; k, v contiguous [Tk, h_kv, D].
  const int64_t q_row_stride = static_cast<int64_t>(c.h_q) * D + c.q_row_pad;
  std::vector<uint16_t> hq(static_cast<size_t>(Tq) * q_row_stride + 8), hk(static_cast<size_t>(Tk) * c.h_kv * D),
      hv(hk.size());
  for (auto& x : hq) x = to_bits(unif(rng), c.bf16);
  for (auto& x : hk) x = to_bits(unif(rng), c.bf16);
  for (auto& x : hv) x = to_bits(unif(rng), c.bf16);
  // mask [B, H_mask, rows, nb_k] (row count over-allocated by 1, columns too - below: "mask too big" is legal)
  const int nb_k = (max_k + c.bk - 1) / c.bk;
  const int mrd = c.mask_2d ? c.bq : 1;
  const int m_rows = (c.mask_2d ? (max_q + c.bq - 1) / c.bq : max_q) + 1;
  // Columns: over-allocated; for odd seeds by 3 (rows unaligned: the builder's byte loads), for even seeds
  // to a multiple of 16 (its 16-byte loads of whole 16-block groups).
  const int m_cols = seed % 2 ? nb_k + 3 : (nb_k + 15) / 16 * 16 + 16;
  const int stored_heads = c.mask_heads == 1 ? 1 : c.mask_heads;
  std::vector<uint8_t> hm(static_cast<size_t>(B) * stored_heads * m_rows * m_cols);
  // kept: any non-zero byte (a uint8 mask is read in place), 0x80 and 0xff included
  for (auto& x : hm) x = u01(rng) < c.density ? static_cast<uint8_t>(1 + rng() % 255) : 0;
  const int64_t msb = static_cast<int64_t>(stored_heads) * m_rows * m_cols;
  const int64_t msh = c.mask_heads == 1 ? 0 : static_cast<int64_t>(m_rows) * m_cols;  // stride 0 broadcast
  const int64_t msr = m_cols, msc = 1;
  auto mask_at = [&](int b, int hmi, int row, int n) {
    return hm[b * msb + hmi * msh + static_cast<int64_t>(row) * msr + n * msc];
  };

  // ---- params (as the API layer fills them) and device buffers ----
  AttnParams p{};
  selftest::fill_attn_problem(p, B, c.h_q, c.h_kv, D, max_q, max_k, Tq, Tk, c.causal, c.bf16);
  p.q_row_stride = q_row_stride;
  p.q_head_stride = D;
  if (c.kv_bcast) p.k_head_stride = p.v_head_stride = 0;
  selftest::DeviceArena dev;
  selftest::fill_attn_mask(p, dev.copy(hm), msb, msh, msr, c.mask_heads, mrd, c.bk, nb_k);
  p.fwd_wgmma = impl != 0;
  selftest::fill_attn_tiling(p, attention_fwd_tile_rows(p));
  // impl 2: the op's pair tiling (pair_tiling_of: twice the 64-row tiling's tokens; 128 rows, fewer where
  // 64 / pack is not whole, e.g. 120 for pack 5, 104 for pack 13).
  if (impl == 2) p = pair_tiling_of(p);
  const int pack = p.pack;
  const size_t out_elems = static_cast<size_t>(Tq) * c.h_q * D;
  const size_t tm_elems = static_cast<size_t>(B) * c.h_kv * p.n_row_tiles * nb_k;
  p.q = dev.copy(hq);
  p.k = dev.copy(hk);
  p.v = dev.copy(hv);
  p.out = dev.filled(out_elems, selftest::kNanBits);
  p.lse = dev.filled(static_cast<size_t>(c.h_q) * Tq, NAN);
  p.cu_seqlens_q = dev.copy(cu_q);
  p.cu_seqlens_k = dev.copy(cu_k);
  p.tile_mask = dev.filled(tm_elems, static_cast<uint8_t>(0xee));
  p.tile_maskT = dev.filled(tm_elems, static_cast<uint8_t>(0xee));
  // impl 3 (as the API): the pair tiling (twice p's tokens per row tile) beside p's 64-row one, both tile
  // masks built in one pass (no transposes) that counts their tiles into fwd_pick.
  AttnParams p2 = p;
  if (impl == 3) {
    p2 = pair_tiling_of(p);
    p2.tile_mask = dev.filled(static_cast<size_t>(B) * c.h_kv * p2.n_row_tiles * nb_k, static_cast<uint8_t>(0xee));
    p.tile_maskT = p2.tile_maskT = nullptr;
    p.tile_count = dev.filled(4, 0x5a5a5a5a5a5a5a5aull);  // the queues' launch zeroes them (as in the op)
    p.fwd_pick = p2.fwd_pick = p.tile_count;
  }
  // sm90 kernels: the work queue(s) (tile_scheduler.h "Work queue"), built as the op builds them; the checked
  // runs use sections of at most 3 kv heads (several sections, a shorter last one where h_kv = 8), the timed
  // ones the op's L2 rule.
  const int section = time_reps > 0 ? item_section_heads(p, current_device_facts().l2_bytes) : (c.h_kv >= 3 ? 3 : 1);
  if (impl != 0) {
    const int rq = impl == 3 ? selftest::build_item_queue(p, dev, section, p.tile_count, 4, &p2)
                             : selftest::build_item_queue(p, dev, section);
    if (rq != 0) {
      std::printf("  run_build_item_order returned %d\n", rq);
      return 1;
    }
  }

  int rc = impl == 3 ? run_build_tile_masks_pair(p, p2, nullptr) : run_build_tile_mask(p, nullptr);
  if (rc != 0) {
    std::printf("  run_build_tile_mask returned %d\n", rc);
    return 1;
  }
  unsigned long long cnt[4] = {0, 0, 0, 0};  // impl 3: the tile counts fwd_pick reads
  if (impl == 3) {
    CK(cudaMemcpy(cnt, p.fwd_pick, sizeof(cnt), cudaMemcpyDeviceToHost));
    const bool pair = fwd_pick_pair(cnt);
    std::printf("  kept tiles: %llu of 64 rows, %llu of 128 rows -> %s kernel\n", cnt[0], cnt[2], pair ? "pair" : "single");
  }
  rc = run_fwd_impl(p, p2, impl);
  if (rc != 0) {
    std::printf("  run_attention_fwd returned %d\n", rc);
    return 1;
  }
  CK(cudaDeviceSynchronize());
  // sm90: a second run on the same work queue (re-armed by the first) writes the outputs checked below.
  if (time_reps == 0 && impl != 0) {
    const std::vector<uint16_t> nan_out(out_elems, selftest::kNanBits);
    const std::vector<float> nan_lse(static_cast<size_t>(c.h_q) * Tq, NAN);
    CK(cudaMemcpy(p.out, nan_out.data(), out_elems * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(p.lse, nan_lse.data(), nan_lse.size() * sizeof(float), cudaMemcpyHostToDevice));
    rc = run_fwd_impl(p, p2, impl);
    if (rc != 0) {
      std::printf("  run_attention_fwd (second run) returned %d\n", rc);
      return 1;
    }
    CK(cudaDeviceSynchronize());
  }
  if (time_reps > 0) {
    std::vector<float> ms(time_reps);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < time_reps; ++i) {
      CK(cudaEventRecord(e0));
      rc |= run_fwd_impl(p, p2, impl);
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      CK(cudaEventElapsedTime(&ms[i], e0, e1));
    }
    std::sort(ms.begin(), ms.end());
    // kept pairs: causal, mask-kept (query, key) pairs summed over q heads
    double pairs = 0;
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < c.h_q; ++h)
        for (int t = 0; t < c.seq_q[b]; ++t) {
          const int kmax = c.causal ? std::min(c.seq_k[b], t + c.seq_k[b] - c.seq_q[b] + 1) : c.seq_k[b];
          for (int n = 0; n * c.bk < kmax; ++n)
            if (mask_at(b, h / (c.h_q / c.mask_heads), t / mrd, n)) pairs += std::min(c.bk, kmax - n * c.bk);
        }
    const double med = ms[time_reps / 2];
    std::printf("  impl %d: median %.3f ms (min %.3f), %.1f TFLOP/s on kept pairs (4 * pairs * D)%s\n", impl, med,
                ms[0], 4.0 * pairs * D / (med * 1e-3) / 1e12, rc ? " LAUNCH ERROR" : "");
    return rc;
  }

  // ---- (1) tile mask(s) vs CPU (p's and its transpose; impl 3: p's and p2's, no transposes) ----
  int tm_bad = 0;
  unsigned long long kept_want[2] = {0, 0};  // tiles with a nonzero value, p's and p2's
  unsigned long long vis_want[2] = {0, 0};   // tiles some row of which can see the block (before the mask)
  for (const AttnParams* q : {&p, &p2}) {
    if (q == &p2 && impl != 3) break;
    const size_t n_tm = static_cast<size_t>(B) * c.h_kv * q->n_row_tiles * nb_k;
    std::vector<uint8_t> tm(n_tm), tmT(n_tm);
    CK(cudaMemcpy(tm.data(), q->tile_mask, n_tm, cudaMemcpyDeviceToHost));
    if (q->tile_maskT != nullptr) CK(cudaMemcpy(tmT.data(), q->tile_maskT, n_tm, cudaMemcpyDeviceToHost));
  for (int b = 0; b < B; ++b)
    for (int hk_ = 0; hk_ < c.h_kv; ++hk_)
      for (int rt = 0; rt < q->n_row_tiles; ++rt)
        for (int n = 0; n < nb_k; ++n) {
          const int slot = rt / q->n_tok_tiles, tt = rt % q->n_tok_tiles;
          const int sq = c.seq_q[b], sk = c.seq_k[b], off = sk - sq;
          bool any = false, all = true, vis = false;
          for (int r = 0; r < q->tile_tokens * pack; ++r) {
            const int t = tt * q->tile_tokens + r / pack, h = hk_ * group + slot * pack + r % pack;
            if (t >= sq) continue;
            const int key0 = n * c.bk;
            if (key0 >= sk || (c.causal && key0 > t + off)) continue;  // row cannot see block n
            vis = true;
            const bool keep = mask_at(b, h / (c.h_q / c.mask_heads), t / mrd, n) != 0;
            any |= keep;
            all &= keep;
          }
          const uint8_t want = any ? (all ? 2 : 1) : 0;
          kept_want[q == &p2] += want != 0;
          vis_want[q == &p2] += vis;
          const size_t i = ((static_cast<size_t>(b) * c.h_kv + hk_) * q->n_row_tiles + rt) * nb_k + n;
          const size_t iT = ((static_cast<size_t>(b) * c.h_kv + hk_) * nb_k + n) * q->n_row_tiles + rt;
          const uint8_t gotT = q->tile_maskT != nullptr ? tmT[iT] : want;
          if (tm[i] != want || gotT != want) {
            if (tm_bad < 5)
              std::printf("  tile_mask%s[b=%d hk=%d rt=%d n=%d] = %d / T %d, want %d\n", q == &p2 ? " (pair)" : "", b, hk_, rt, n,
                          tm[i], gotT, want);
            ++tm_bad;
          }
        }
  }
  if (impl == 3 && (cnt[0] != kept_want[0] || cnt[2] != kept_want[1] || cnt[1] != vis_want[0] || cnt[3] != vis_want[1])) {
    std::printf("  tile counts (kept / visible) %llu / %llu and %llu / %llu, want %llu / %llu and %llu / %llu\n", cnt[0], cnt[1],
                cnt[2], cnt[3], kept_want[0], vis_want[0], kept_want[1], vis_want[1]);
    ++tm_bad;
  }
  // The work queue(s): the builder's order, and the counters re-armed by the kernel run (impl 3: the kernel
  // that exited never touched its queue).
  if (impl != 0) {
    tm_bad += selftest::check_item_queue(p, c.seq_q, section, impl == 3 ? "64-row tiling" : "kernel's tiling");
    if (impl == 3) tm_bad += selftest::check_item_queue(p2, c.seq_q, section, "pair tiling");
  }

  // ---- (2) forward vs float64 reference ----
  std::vector<uint16_t> out(out_elems);
  std::vector<float> lse(static_cast<size_t>(c.h_q) * Tq);
  CK(cudaMemcpy(out.data(), p.out, out_elems * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(lse.data(), p.lse, lse.size() * 4, cudaMemcpyDeviceToHost));
  double max_err = 0, max_lse_err = 0;
  int bad_rows = 0, empty_rows = 0;
  std::vector<double> sc(max_k > 0 ? max_k : 1), acc(D);
  for (int b = 0; b < B; ++b) {
    const int sq = c.seq_q[b], sk = c.seq_k[b], off = sk - sq;
    for (int i = 0; i < sq; ++i)
      for (int h = 0; h < c.h_q; ++h) {
        const int hk_ = c.kv_bcast ? 0 : h / group, hmi = h / (c.h_q / c.mask_heads);
        const size_t qrow = static_cast<size_t>(cu_q[b] + i) * q_row_stride + static_cast<size_t>(h) * D;
        double mx = -INFINITY;
        for (int j = 0; j < sk; ++j) {
          const bool vis = mask_at(b, hmi, i / mrd, j / c.bk) != 0 && (!c.causal || j <= i + off);
          if (!vis) {
            sc[j] = -INFINITY;
            continue;
          }
          const size_t krow = (static_cast<size_t>(cu_k[b] + j) * c.h_kv + hk_) * D;
          double s = 0;
          for (int d = 0; d < D; ++d) s += static_cast<double>(from_bits(hq[qrow + d], c.bf16)) * from_bits(hk[krow + d], c.bf16);
          sc[j] = s * p.scale;
          mx = std::max(mx, sc[j]);
        }
        double l = 0;
        for (int d = 0; d < D; ++d) acc[d] = 0;
        if (mx != -INFINITY)
          for (int j = 0; j < sk; ++j) {
            if (sc[j] == -INFINITY) continue;
            const double w = std::exp(sc[j] - mx);
            l += w;
            const size_t vrow = (static_cast<size_t>(cu_k[b] + j) * c.h_kv + hk_) * D;
            for (int d = 0; d < D; ++d) acc[d] += w * from_bits(hv[vrow + d], c.bf16);
          }
        const double want_lse = l > 0 ? mx + std::log(l) : -INFINITY;
        const float got_lse = lse[static_cast<size_t>(h) * Tq + cu_q[b] + i];
        bool row_bad = false;
        if (l == 0) {
          ++empty_rows;
          row_bad |= !(std::isinf(got_lse) && got_lse < 0);
        } else {
          const double e = std::fabs(got_lse - want_lse);
          max_lse_err = std::max(max_lse_err, e);
          row_bad |= !(e < 2e-3 * std::max(1.0, std::fabs(want_lse)));
        }
        for (int d = 0; d < D; ++d) {
          const double want = l > 0 ? acc[d] / l : 0.0;
          const float got = from_bits(out[(static_cast<size_t>(cu_q[b] + i) * c.h_q + h) * D + d], c.bf16);
          const double e = std::fabs(got - want);
          if (!(e <= (c.bf16 ? 2e-2 : 4e-3) + 1e-2 * std::fabs(want))) row_bad = true;
          if (std::isfinite(e)) max_err = std::max(max_err, e); else row_bad = true;
        }
        if (row_bad) {
          if (bad_rows < 5)
            std::printf("  bad row b=%d i=%d h=%d: lse got %g want %g, out[0] got %g want %g\n", b, i, h, got_lse,
                        want_lse, from_bits(out[(static_cast<size_t>(cu_q[b] + i) * c.h_q + h) * D], c.bf16),
                        l > 0 ? acc[0] / l : 0.0);
          ++bad_rows;
        }
      }
  }
  std::printf("  tile-mask mismatches %d, bad rows %d (empty rows %d), max |out err| %.3g, max |lse err| %.3g\n",
              tm_bad, bad_rows, empty_rows, max_err, max_lse_err);
  return (tm_bad ? 1 : 0) | (bad_rows ? 2 : 0);
}

int main(int argc, char** argv) {
  // --time: every kernel (impl 0 = mma.sync, 1-3 = sm90 single / pair / picked) at densities 1, 0.5, 0.1;
  // --time-sm90: the sm90 single and pair kernels only, 2D masks at densities 1 and 0.1 (a shorter run for a
  // device call: each run draws its inputs anew, ~4 s on the host for the P1 lengths).
  const bool time_all = argc > 1 && std::strcmp(argv[1], "--time") == 0;
  const bool time_sm90 = argc > 1 && std::strcmp(argv[1], "--time-sm90") == 0;
  if (time_all || time_sm90) {
    int rc = 0;
    const std::vector<int> p1 = {16384, 8000, 4096, 2100, 1024, 700, 256, 77};
    const std::vector<float> dens = time_sm90 ? std::vector<float>{1.0f, 0.1f} : std::vector<float>{1.0f, 0.5f, 0.1f};
    auto time_impls = [&](const Case& c) {
      if (time_all) rc |= run_case(c, 7, 0, 10);
#ifdef SEER_ATTN_SM90A
      for (int impl = 1; impl <= (time_sm90 ? 2 : 3); ++impl) rc |= run_case(c, 7, impl, 10);
#endif
    };
    for (float d : dens) {
      const Case t{128, true, {16384}, {16384}, 32, 8, true, 32, 64, 64, true, d, 0};
      const Case t1{128, true, p1, p1, 32, 8, true, 32, 64, 64, true, d, 0};
      for (const Case* c : {&t, &t1}) {
        std::printf("time: %s h_q=32 h_kv=8 D=128 bf16 2D 64x64 causal density %.2f (mask drawn over all blocks)\n",
                    c == &t ? "S=16384" : "P1 lengths", d);
        time_impls(*c);
      }
    }
    // 1D per-token-independent masks (every token row drawn on its own; per kv head, GQA group 4 packed):
    // nearly every (row tile, block) pair is value 1 below density 1 (WORKLOADS.md's hard case for tiling).
    for (float d : time_sm90 ? std::vector<float>{} : dens) {
      const Case t{128, true, p1, p1, 32, 8, false, 8, 1, 64, true, d, 0};
      std::printf("time: P1 lengths h_q=32 h_kv=8 D=128 bf16 1D per-token (per kv head) B_k 64 causal density %.2f\n", d);
      time_impls(t);
    }
    return rc ? 1 : 0;
  }
  std::vector<Case> cases = {
      // D, bf16, seq_q, seq_k, h_q, h_kv, 2d, mask_heads, bq, bk, causal, density, q_row_pad
      {64, false, {200}, {200}, 2, 2, true, 2, 64, 64, false, 1.0f, 0},       // dense, non-causal
      {64, false, {200}, {200}, 2, 2, true, 2, 64, 64, true, 1.0f, 0},        // dense causal
      {128, false, {1, 17, 130, 300}, {1, 17, 130, 300}, 4, 2, true, 4, 64, 64, true, 0.5f, 8},
      {128, true, {77, 256}, {300, 256}, 4, 1, true, 1, 32, 48, true, 0.5f, 0},  // seqlen_k > seqlen_q, bcast mask
      {128, false, {150}, {150}, 2, 2, true, 2, 128, 16, true, 0.3f, 0},       // B_k 16 (4 blocks per tile)
      {256, false, {190, 33}, {190, 40}, 2, 1, true, 1, 64, 256, false, 0.6f, 0},
      {256, true, {129}, {129}, 1, 1, true, 1, 16, 112, true, 0.7f, 0},
      {64, false, {100, 250}, {100, 250}, 8, 2, false, 2, 1, 32, true, 0.4f, 0},  // 1D GQA (pack 4)
      {128, true, {300}, {300}, 7, 1, false, 1, 1, 64, true, 0.3f, 0},           // 1D, group 7 (pack 7)
      {128, false, {64, 190}, {64, 190}, 4, 2, false, 4, 1, 80, false, 0.5f, 16}, // 1D per head (pack 1)
      {64, false, {40}, {10}, 2, 2, true, 2, 16, 16, true, 1.0f, 0},             // seqlen_k < seqlen_q: empty rows
      {128, false, {300}, {300}, 2, 2, true, 2, 64, 64, true, 0.0f, 0},          // empty mask: all rows 0 / -inf
      {64, true, {1000}, {1000}, 2, 1, false, 1, 1, 16, true, 0.05f, 0},         // 1D sparse, many tiles
      // 128-row tiles (2D, B_q % 128 == 0) and the unmasked fully-visible tile path
      {64, true, {300, 1, 129}, {300, 1, 129}, 4, 2, true, 4, 256, 32, true, 0.6f, 0},
      {128, true, {515, 64}, {600, 64}, 4, 1, true, 1, 128, 64, true, 0.7f, 0},
      {128, true, {700, 190}, {700, 190}, 4, 2, true, 4, 64, 64, true, 1.0f, 8},  // dense 2D, bf16
      {128, true, {333, 77, 64}, {333, 77, 64}, 8, 2, true, 8, 64, 64, true, 0.5f, 0},
      // 128-row tiles of rows that keep different blocks (the pair kernel's value-1 chunks from 2D masks of
      // 64-row blocks), 128-key tiles gathered from 16-key blocks, a stream past one list window (132 blocks)
      {128, false, {2100, 300}, {2100, 300}, 2, 1, true, 2, 64, 16, true, 0.9f, 0},
      {64, true, {700, 129}, {700, 129}, 4, 2, true, 4, 64, 32, false, 0.85f, 0},
      // GQA groups whose packed tiles leave padding rows: pack 13 (52 / 104 rows), pack 5 (60 / 120 rows)
      {64, true, {129, 65, 3}, {129, 65, 3}, 13, 1, false, 1, 1, 32, true, 0.6f, 0},
      {128, false, {300, 64}, {300, 64}, 5, 1, false, 1, 1, 64, false, 0.8f, 0},
      // Rows of 157 blocks at a low density: the sm_90a producers' block stream crosses two list windows, the
      // second often empty (its end only known after scanning it: an end marker after the last tile). Guards a
      // stream end decided too early (benchmarks/candidates/no_marker.patch, NOTES v36)
      {64, true, {2500}, {2500}, 2, 1, true, 2, 64, 16, false, 0.05f, 0},
      // K / V with a stride-0 head dim (kv_bcast): the sm_90a producers' cp.async whole-group and chunk paths
      {128, true, {300, 1, 129}, {300, 1, 129}, 4, 2, true, 4, 64, 64, true, 0.6f, 0, true},
      {64, false, {200, 77}, {260, 77}, 4, 2, false, 2, 1, 32, true, 0.5f, 8, true},
  };
  int fails = 0, runs = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::printf("case %zu: D=%d %s h_q=%d h_kv=%d %s mask_heads=%d bq=%d bk=%d causal=%d density=%.2f%s\n", i, c.D,
                c.bf16 ? "bf16" : "fp16", c.h_q, c.h_kv, c.mask_2d ? "2D" : "1D", c.mask_heads, c.bq, c.bk, c.causal,
                c.density, c.kv_bcast ? " kv head stride 0" : "");
    const int r = run_case(c, 1234 + i);
    std::printf("  -> %s\n", r == 0 ? "ok" : "FAIL");
    fails += r != 0;
    ++runs;
#ifdef SEER_ATTN_SM90A
    if (c.D == 64 || c.D == 128) {  // the sm_90a kernels on the same case: single, pair, picked on the device
      for (int impl = 1; impl <= 3; ++impl) {
        const int rw = run_case(c, 1234 + i, impl);
        std::printf("  -> sm90 %s: %s\n", impl == 1 ? "single" : impl == 2 ? "pair" : "picked", rw == 0 ? "ok" : "FAIL");
        fails += rw != 0;
        ++runs;
      }
    }
#endif
  }
  fails += unowned_rows_check();
  ++runs;
  std::printf("%d / %d runs failed\n", fails, runs);
  return fails ? 1 : 0;
}
