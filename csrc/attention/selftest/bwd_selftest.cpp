// Standalone self-test of the attention backward kernels (no torch, no forward kernel, no tile-mask
// kernel: the forward pass, the tile mask and the float64 reference are computed on the host here).
// Built and run with the other self-tests by `make selftest` (cmake target seer_bwd_selftest,
// cmake/CMakeLists.txt). It sweeps head dims 64 / 128 / 256, dtypes, 1D/2D
// masks, causal, GQA packing and block sizes, and runs every case on both backward paths
// (deterministic, and atomic with the fp32 dq_accum workspace) through run_attention_bwd (the
// configuration the device gets) AND on every dK/dV configuration of BwdConfig (Dkdv and DkdvSmall,
// launched directly, so the A100 configuration is tested on an H100 too). Cases with max_q / max_k give
// cu_seqlens whose lengths exceed max_seqlen_q/k: the kernels must use the clamped lengths (seqlen.h)
// and write nothing outside them. Prints the worst error of dq / dk / dv per case, configuration and
// path with the location (token, head, dim) of the worst element; exits non-zero if any case fails.
//
// Hopper dK/dV kernel (sm90/bwd_kernel_sm90.cuh): build for sm_90a with -DSEER_ATTN_SM90A and the sm90
// instantiations, then every D 64 / 128 case also runs impl 1 (AttnBwdParams::bwd_wgmma through
// run_attention_bwd: deterministic and atomic without tile counts (the 128-key CTA), deterministic and
// atomic q-major with counts of density 0 (the 64-key CTA), atomic with dense counts (the 128-key CTA
// fusing dQ, preprocess zeroing and convert with counts present)) and a sweep covers the sm90 kernel (D 64 / 128, fp16 / bf16, 2D
// 64x64 and 128x128 blocks, 1D GQA group 4, causal or not, densities 0.1 / 0.5 / 1, varlen lengths that
// are not multiples of 64, seqlen_q < seqlen_k and >, an empty sequence):
//
//   nvcc -x cu -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -DSEER_ATTN_SM90A --use_fast_math \
//     --expt-relaxed-constexpr -Icsrc csrc/attention/selftest/bwd_selftest.cpp csrc/attention/bwd_launch.cu \
//     csrc/common/device_facts.cu csrc/attention/instantiations/bwd_*.cu -o /tmp/bwd_selftest && /tmp/bwd_selftest && /tmp/bwd_selftest --time
//
// `--time`: P1 lengths of WORKLOADS.md, 32 q / 8 kv heads, D 128, bf16, causal, 2D 64x64 and 1D GQA
// (B_k 64) masks, densities 1 / 0.5 / 0.1 (mask drawn per block, not the workload's causal-row rule):
// median ms of 10 runs of run_attention_bwd (preprocess, which zeroes dq_accum where it is added into,
// + dK/dV (+ dQ) + convert) for impl 0 (both paths) and impl 1 (five rows: deterministic, atomic, with
// forced counts of density 0 "atomic, q-major dQ, 64-key dK/dV" and "deterministic, 64-key dK/dV", and of
// density 0.5 "atomic, q-major dQ, 128-key dK/dV");
// no float64 reference: the atomic-path gradients of the two implementations are compared.
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "attention/attention_params.h"
#include "attention/bwd_launch_template.cuh"
#include "common/platform.h"

#include "common/selftest/check.h"
#include "common/selftest/reference.h"

namespace {

using seer::AttnBwdParams;
using seer::selftest::from_bits;
using seer::selftest::round_elem;
using seer::selftest::to_bits;

struct Case {
  int D;
  bool bf16;
  bool is1d;
  bool causal;
  int hq, hkv;
  int bq, bk;         // bq ignored for 1D
  int mask_heads;     // hq, hkv or 1
  std::vector<std::pair<int, int>> seqs;  // (seqlen_q, seqlen_k) as laid out by cu_seqlens
  double density;
  int max_q = 0, max_k = 0;  // max_seqlen_q / _k given to the kernels; 0: the longest sequence. Smaller
                             // values make the input inconsistent: every length is clamped to them.
  bool kv_bcast = false;     // K / V given with head stride 0 (every kv head reads head 0's rows)
};

template <typename T>
T* to_device(const std::vector<T>& v) {
  T* d = nullptr;
  CK(cudaMalloc(&d, std::max<size_t>(1, v.size()) * sizeof(T)));
  if (!v.empty()) CK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// impl 0: the mma.sync kernels (run_attention_bwd and every BwdConfig configuration); impl 1: the
// sm_90a kernel (run_attention_bwd with bwd_wgmma). time_reps > 0: time that many runs of
// run_attention_bwd per path instead of checking (no reference computed; impl -1 times both).
bool run_case(const Case& c, std::mt19937& rng, int impl = 0, int time_reps = 0) {
  const bool timing = time_reps > 0;
  const int B = static_cast<int>(c.seqs.size()), D = c.D, hq = c.hq, hkv = c.hkv, group = hq / hkv;
  std::vector<int> cuq(B + 1, 0), cuk(B + 1, 0);
  int maxq = 0, maxk = 0;
  for (int b = 0; b < B; ++b) {
    cuq[b + 1] = cuq[b] + c.seqs[b].first;
    cuk[b + 1] = cuk[b] + c.seqs[b].second;
    maxq = std::max(maxq, c.seqs[b].first);
    maxk = std::max(maxk, c.seqs[b].second);
  }
  const int Tq = cuq[B], Tk = cuk[B];
  if (c.max_q > 0) maxq = c.max_q;
  if (c.max_k > 0) maxk = c.max_k;
  // Clamped lengths (seqlen.h): the rows of sequence b are [cuq[b], cuq[b] + sq_of(b)).
  auto sq_of = [&](int b) { return std::max(0, std::min(c.seqs[b].first, maxq)); };
  auto sk_of = [&](int b) { return std::max(0, std::min(c.seqs[b].second, maxk)); };
  // Rows / keys inside a clamped sequence: the only ones the kernels must write (the API layer fills
  // the rest); others are not checked.
  std::vector<char> q_owned(Tq, 0), k_owned(Tk, 0);
  for (int b = 0; b < B; ++b) {
    for (int i = 0; i < sq_of(b); ++i) q_owned[cuq[b] + i] = 1;
    for (int j = 0; j < sk_of(b); ++j) k_owned[cuk[b] + j] = 1;
  }
  const int div = c.is1d ? 1 : c.bq;
  const int nb_k = (maxk + c.bk - 1) / c.bk;
  const int mrows = c.is1d ? maxq : (maxq + c.bq - 1) / c.bq;
  const int mcols = nb_k + 1;  // one spare column: strides need not equal the used extent
  const int Hm = c.mask_heads;
  std::uniform_real_distribution<float> U(-1.f, 1.f), U01(0.f, 1.f);
  std::vector<uint8_t> mask(static_cast<size_t>(B) * Hm * std::max(mrows, 1) * mcols);
  for (auto& m : mask) m = U01(rng) < c.density;
  auto mask_at = [&](int b, int h, int row, int col) {
    const int hm = h / (hq / Hm);
    return mask[((static_cast<size_t>(b) * Hm + hm) * std::max(mrows, 1) + row) * mcols + col] != 0;
  };
  // Inputs (rounded to the element type; q/dout with a padded head stride to test strides).
  const int q_hs = D + 8, q_rs = hq * q_hs;
  std::vector<float> q(static_cast<size_t>(Tq) * q_rs), dout(q.size()), k(static_cast<size_t>(Tk) * hkv * D),
      v(k.size());
  for (auto* vec : {&q, &dout, &k, &v})
    for (auto& x : *vec) x = round_elem(U(rng), c.bf16);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  auto Q = [&](int t, int h, int d) { return q[static_cast<size_t>(t) * q_rs + h * q_hs + d]; };
  auto DO = [&](int t, int h, int d) { return dout[static_cast<size_t>(t) * q_rs + h * q_hs + d]; };
  auto K = [&](int t, int h, int d) { return k[(static_cast<size_t>(t) * hkv + (c.kv_bcast ? 0 : h)) * D + d]; };
  auto V = [&](int t, int h, int d) { return v[(static_cast<size_t>(t) * hkv + (c.kv_bcast ? 0 : h)) * D + d]; };

  // Host forward + backward reference (float64) with out rounded to the element type as the GPU sees it.
  std::vector<float> out(static_cast<size_t>(Tq) * hq * D, 0.f), lse(static_cast<size_t>(hq) * Tq, -INFINITY);
  std::vector<double> dq_ref(timing ? 0 : static_cast<size_t>(Tq) * hq * D, 0.0), dk_ref(timing ? 0 : k.size(), 0.0),
      dv_ref(timing ? 0 : k.size(), 0.0);
  if (timing) {  // no forward: out random, lse a finite value of the right size (P <= 1)
    for (auto& x : out) x = round_elem(U(rng), c.bf16);
    for (auto& x : lse) x = 6.f;
  }
  for (int b = 0; b < B && !timing; ++b) {
    const int sq = sq_of(b), sk = sk_of(b), q0 = cuq[b], k0 = cuk[b];
    for (int h = 0; h < hq; ++h) {
      const int hk = h / group;
      for (int i = 0; i < sq; ++i) {
        std::vector<double> s(sk), p(sk, 0.0), dp(sk);
        std::vector<char> vis(sk, 0);
        double mx = -INFINITY;
        for (int j = 0; j < sk; ++j) {
          vis[j] = mask_at(b, h, i / div, j / c.bk) && (!c.causal || j <= i + sk - sq);
          if (!vis[j]) continue;
          double acc = 0;
          for (int d = 0; d < D; ++d) acc += double(Q(q0 + i, h, d)) * K(k0 + j, hk, d);
          s[j] = acc * scale;
          mx = std::max(mx, s[j]);
        }
        if (mx == -INFINITY) continue;  // no visible key: out 0, lse -inf, zero gradients
        double sum = 0;
        for (int j = 0; j < sk; ++j)
          if (vis[j]) sum += std::exp(s[j] - mx);
        const double l = mx + std::log(sum);
        lse[static_cast<size_t>(h) * Tq + q0 + i] = static_cast<float>(l);
        std::vector<double> o(D, 0.0);
        for (int j = 0; j < sk; ++j)
          if (vis[j]) {
            p[j] = std::exp(s[j] - l);
            for (int d = 0; d < D; ++d) o[d] += p[j] * V(k0 + j, hk, d);
          }
        double Dd = 0;
        for (int d = 0; d < D; ++d) {
          const float ob = round_elem(static_cast<float>(o[d]), c.bf16);
          out[(static_cast<size_t>(q0 + i) * hq + h) * D + d] = ob;
          Dd += double(ob) * DO(q0 + i, h, d);
        }
        for (int j = 0; j < sk; ++j) {
          if (!vis[j]) continue;
          double acc = 0;
          for (int d = 0; d < D; ++d) acc += double(DO(q0 + i, h, d)) * V(k0 + j, hk, d);
          const double ds = p[j] * (acc - Dd);
          for (int d = 0; d < D; ++d) {
            dq_ref[(static_cast<size_t>(q0 + i) * hq + h) * D + d] += scale * ds * K(k0 + j, hk, d);
            dk_ref[(static_cast<size_t>(k0 + j) * hkv + hk) * D + d] += scale * ds * Q(q0 + i, h, d);
            dv_ref[(static_cast<size_t>(k0 + j) * hkv + hk) * D + d] += p[j] * DO(q0 + i, h, d);
          }
        }
      }
    }
  }

  // Row tiling and tile mask (attention_params.h semantics; what run_build_tile_mask produces).
  AttnBwdParams p{};
  seer::selftest::fill_attn_problem(p, B, hq, hkv, D, maxq, maxk, Tq, Tk, c.causal, c.bf16);
  if (c.kv_bcast) p.k_head_stride = p.v_head_stride = 0;
  seer::selftest::DeviceArena dev;
  seer::selftest::fill_attn_mask(p, dev.copy(mask), static_cast<int64_t>(Hm) * std::max(mrows, 1) * mcols,
                                 static_cast<int64_t>(std::max(mrows, 1)) * mcols, mcols, Hm, div, c.bk, nb_k);
  seer::selftest::fill_attn_tiling(p, seer::attention_bwd_tile_rows(D));
  const int pack = p.pack, tile_tokens = p.tile_tokens, n_tok_tiles = p.n_tok_tiles, n_row_tiles = p.n_row_tiles;
  std::vector<uint8_t> tm(static_cast<size_t>(B) * hkv * n_row_tiles * std::max(nb_k, 1), 0),
      tmT(tm.size(), 0);
  for (int b = 0; b < B; ++b) {
    const int sq = sq_of(b), sk = sk_of(b);
    for (int hk = 0; hk < hkv; ++hk)
      for (int rt = 0; rt < n_row_tiles; ++rt)
        for (int n = 0; n < nb_k && n * c.bk < sk; ++n) {
          bool any = false, all = true, seen = false;
          for (int r = 0; r < pack * tile_tokens; ++r) {
            const int slot = rt / n_tok_tiles, tt = rt % n_tok_tiles;
            const int tok = tt * tile_tokens + r / pack, h = hk * group + slot * pack + r % pack;
            if (tok >= sq) continue;
            seen = true;
            const bool keep = mask_at(b, h, tok / div, n);
            all = all && keep;
            if (keep && (!c.causal || n * c.bk <= tok + sk - sq)) any = true;
          }
          if (!seen || !any) continue;
          const uint8_t val = all ? 2 : 1;
          tm[((static_cast<size_t>(b) * hkv + hk) * n_row_tiles + rt) * nb_k + n] = val;
          tmT[((static_cast<size_t>(b) * hkv + hk) * nb_k + n) * n_row_tiles + rt] = val;
        }
  }

  // Device buffers.
  auto bits = [&](const std::vector<float>& x) {
    std::vector<uint16_t> r(x.size());
    for (size_t i = 0; i < x.size(); ++i) r[i] = to_bits(x[i], c.bf16);
    return r;
  };
  std::vector<uint16_t> q_bits = bits(q), do_bits = bits(dout);
  p.q = dev.copy(q_bits);
  p.q_row_stride = p.do_row_stride = q_rs;
  p.q_head_stride = p.do_head_stride = q_hs;
  p.k = dev.copy(bits(k));
  p.v = dev.copy(bits(v));
  p.out = dev.copy(bits(out));
  p.lse = dev.copy(lse);
  p.cu_seqlens_q = dev.copy(cuq);
  p.cu_seqlens_k = dev.copy(cuk);
  p.tile_mask = dev.copy(tm);
  p.tile_maskT = dev.copy(tmT);
  // sm90: the dQ kernel's work queue (tile_scheduler.h "Work queue"), sections of one kv head, built once:
  // each kernel run re-arms it (checked at the end).
  std::vector<int> seq_q(B);
  for (int b = 0; b < B; ++b) seq_q[b] = c.seqs[b].first;
  if (impl != 0) CK(static_cast<cudaError_t>(seer::selftest::build_item_queue(p, dev, 1)));
  p.dout = dev.copy(do_bits);
  p.dlse = nullptr;
  p.softmax_d = dev.filled(static_cast<size_t>(hq) * Tq, NAN);
  // outputs (contiguous; refilled with NaN before every run below)
  uint16_t* d_dq = dev.alloc<uint16_t>(static_cast<size_t>(Tq) * hq * D);
  uint16_t* d_dk = dev.alloc<uint16_t>(k.size());
  uint16_t* d_dv = dev.alloc<uint16_t>(k.size());
  p.dq = d_dq;
  p.dk = d_dk;
  p.dv = d_dv;
  p.dq_row_stride = p.o_row_stride;
  p.dk_row_stride = p.dv_row_stride = p.k_row_stride;
  p.dq_head_stride = p.dk_head_stride = p.dv_head_stride = D;
  float* d_dqacc = dev.alloc<float>(static_cast<size_t>(Tq) * hq * D);

  auto fetch = [&](uint16_t* dptr, size_t n) {
    std::vector<uint16_t> h(n);
    if (n) CK(cudaMemcpy(h.data(), dptr, n * 2, cudaMemcpyDeviceToHost));
    std::vector<float> r(n);
    for (size_t i = 0; i < n; ++i) r[i] = from_bits(h[i], c.bf16);
    return r;
  };
  // Compares got with ref on the rows marked in owned (row = element / (heads * D)).
  auto check = [&](const char* name, const std::vector<float>& got, const std::vector<double>& ref, int heads,
                   const std::vector<char>& owned) {
    double max_ref = 1e-6, max_err = 0;
    size_t worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) max_ref = std::max(max_ref, std::fabs(ref[i]));
    for (size_t i = 0; i < ref.size(); ++i) {
      if (!owned[i / (static_cast<size_t>(heads) * D)]) continue;
      const float x = got[i];
      const double e = std::isfinite(x) ? std::fabs(x - ref[i]) : INFINITY;
      if (!(e <= max_err)) {
        max_err = e;
        worst = i;
      }
    }
    const double rel = max_err / max_ref;
    const double tol = c.bf16 ? 3e-2 : 1e-2;
    const bool bad = !(rel <= tol);
    const size_t row = worst / (static_cast<size_t>(heads) * D);
    std::printf("  %s: max|err| %.3e  max|ref| %.3e  rel %.3e %s (worst at row %zu head %zu dim %zu: got %g want %g)\n",
                name, max_err, max_ref, rel, bad ? "FAIL" : "ok", row, (worst / D) % heads, worst % D,
                ref.empty() ? 0.0 : double(got[worst]), ref.empty() ? 0.0 : ref[worst]);
    return !bad;
  };
  std::printf("D=%d %s %s causal=%d hq=%d hkv=%d pack=%d bq=%d bk=%d Hm=%d density=%.2f seqs:", D,
              c.bf16 ? "bf16" : "fp16", c.is1d ? "1D" : "2D", c.causal, hq, hkv, pack, c.bq, c.bk, Hm, c.density);
  for (auto& s : c.seqs) std::printf(" (%d,%d)", s.first, s.second);
  if (c.max_q > 0 || c.max_k > 0) std::printf(" clamped to max_seqlen (%d,%d)", maxq, maxk);
  std::printf("\n");
  // Both paths: deterministic (dK/dV kernel + dQ kernel) and atomic (fused dQ into a zeroed fp32
  // workspace + convert). Outputs are refilled with NaN before each run. cfg 0: run_attention_bwd (the
  // device's configuration; also computes softmax_d, which cfg 1 / 2 reuse); cfg 1 / 2: the Dkdv /
  // DkdvSmall configuration launched directly (dq of the atomic path then checked from dq_accum * scale).
  bool ok = true;
  const size_t nq = static_cast<size_t>(Tq) * hq * D, nk = k.size();
  p.bwd_wgmma = impl == 1;
  std::vector<float> timing_ref[3];  // impl 0's dq, dk, dv (timing with impl -1)
  // Tile counts of density 0 (AttnParams::tile_count = {0 kept, 1 visible}) for the sm90 paths "atomic,
  // q-major dQ" (the dK/dV kernel leaves dQ to the q-major dQ kernel, bwd_common.h dq_fused) and
  // "deterministic, 64-key": both then run the 64-key dK/dV CTA (bwd_common.h dkdv_split).
  // Counts of density 1 ({1, 1}): the production path of a dense mask (the 64-key grid exits, the 128-key
  // kernel fuses dQ; preprocess zeroing and convert with counts present). Counts of density 0.5 ({1, 2}):
  // "atomic, q-major dQ, 128-key" (neither fused nor split: the 128-key kernel on the atomic path leaves
  // dQ to the q-major dQ kernel).
  unsigned long long* d_counts = nullptr;  // {kept, visible} x 3: density 0, 1, 0.5
  if (impl != 0) {
    const unsigned long long counts[6] = {0ull, 1ull, 1ull, 1ull, 1ull, 2ull};
    CK(cudaMalloc(&d_counts, sizeof(counts)));
    CK(cudaMemcpy(d_counts, counts, sizeof(counts), cudaMemcpyHostToDevice));
  }
  unsigned long long* const d_tcount = d_counts;
  unsigned long long* const d_tcount_hi = d_counts == nullptr ? nullptr : d_counts + 2;
  unsigned long long* const d_tcount_mid = d_counts == nullptr ? nullptr : d_counts + 4;
  if (timing) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    // impl -1: both implementations on the same inputs.
    for (int im = impl < 0 ? 0 : impl; im <= (impl < 0 ? 1 : impl); ++im)
      // sm90: 2 atomic, q-major dQ, 64-key; 3 deterministic, 64-key; 4 atomic, q-major dQ, 128-key
      for (int det = 0; det <= (im == 1 ? 4 : 1); ++det) {
        p.bwd_wgmma = im == 1;
        p.deterministic = det == 1 || det == 3;
        p.dq_accum = p.deterministic ? nullptr : d_dqacc;
        p.tile_count = det == 4 ? d_tcount_mid : det >= 2 ? d_tcount : nullptr;
        std::vector<float> ms;
        for (int r = 0; r <= time_reps; ++r) {  // run 0: warm-up
          CK(cudaEventRecord(e0));
          CK(static_cast<cudaError_t>(seer::run_attention_bwd(p, nullptr)));
          CK(cudaEventRecord(e1));
          CK(cudaEventSynchronize(e1));
          float t = 0.f;
          CK(cudaEventElapsedTime(&t, e0, e1));
          if (r > 0) ms.push_back(t);
        }
        std::sort(ms.begin(), ms.end());
        std::printf("  impl %d (%s) %s: median %.3f ms (min %.3f)\n", im, im ? "sm90 wgmma" : "mma.sync",
                    det == 1 ? "deterministic" : det == 0 ? "atomic" : det == 2 ? "atomic, q-major dQ, 64-key dK/dV"
                    : det == 3 ? "deterministic, 64-key dK/dV" : "atomic, q-major dQ, 128-key dK/dV",
                    ms[ms.size() / 2], ms[0]);
        if ((det == 0 || det == 2 || det == 4) && impl < 0) {  // the two implementations' atomic-path gradients against each other
          for (int o = 0; o < 3; ++o) {
            std::vector<float> g = fetch(o == 0 ? d_dq : (o == 1 ? d_dk : d_dv), o == 0 ? nq : nk);
            if (im == 0) {
              timing_ref[o] = std::move(g);
              continue;
            }
            double mx = 1e-6, err = 0;
            for (size_t i = 0; i < g.size(); ++i) {
              mx = std::max(mx, std::fabs(double(timing_ref[o][i])));
              const double e = std::isfinite(g[i]) ? std::fabs(double(g[i]) - timing_ref[o][i]) : INFINITY;
              if (!(e <= err)) err = e;
            }
            const bool bad = !(err / mx <= (c.bf16 ? 3e-2 : 1e-2));
            std::printf("  sm90 vs mma.sync %s: max|diff| %.3e max|mma.sync| %.3e rel %.3e %s\n",
                        o == 0 ? "dq" : (o == 1 ? "dk" : "dv"), err, mx, err / mx, bad ? "FAIL" : "ok");
            ok = ok && !bad;
          }
        }
      }
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    p.tile_count = nullptr;
  }
  const int n_cfg = timing ? 0 : (impl == 1 ? 1 : 3);
  for (int cfg = 0; cfg < n_cfg; ++cfg)
    // sm90: 3 atomic with dense counts, 2 deterministic 64-key, -1 atomic q-major 64-key, -2 atomic q-major
    // 128-key (counts of density 0.5)
    for (int det = impl == 1 ? 3 : 1; det >= (impl == 1 ? -2 : 0); --det) {
      if (nq) CK(cudaMemset(d_dq, 0xff, nq * 2));  // 0xffff: NaN in fp16 and bf16
      if (nk) CK(cudaMemset(d_dk, 0xff, nk * 2));
      if (nk) CK(cudaMemset(d_dv, 0xff, nk * 2));
      // run_attention_bwd zeroes dq_accum itself where the dK/dV kernel adds into it (its preprocess kernel):
      // NaN before it proves that; the kernels launched directly (cfg 1 / 2) need it zeroed here.
      if (nq) CK(cudaMemset(d_dqacc, cfg == 0 ? 0xff : 0, nq * sizeof(float)));
      p.deterministic = det == 1 || det == 2;
      p.dq_accum = p.deterministic ? nullptr : d_dqacc;
      p.tile_count = det == -1 || det == 2 ? d_tcount : det == 3 ? d_tcount_hi : det == -2 ? d_tcount_mid : nullptr;
      const char* name = impl == 1 ? "sm90 wgmma" : cfg == 0 ? "run_attention_bwd" : (cfg == 1 ? "Dkdv" : "DkdvSmall");
      auto launch = [&](auto cfg_tag) {
        using Cfg = decltype(cfg_tag);
        using Kt = typename Cfg::Dkdv;
        using Ks = typename Cfg::DkdvSmall;
        if (cfg == 1) return seer::attn_bwd::run_bwd_kernels<Kt, typename Cfg::Dq>(p, nullptr);
        return seer::attn_bwd::run_bwd_kernels<Ks, typename Cfg::Dq>(p, nullptr);
      };
      int err = 0;
      if (cfg == 0)
        err = seer::run_attention_bwd(p, nullptr);
      else if (D == 64)
        err = c.bf16 ? launch(seer::attn_bwd::BwdConfig<64, __nv_bfloat16>{})
                     : launch(seer::attn_bwd::BwdConfig<64, __half>{});
      else if (D == 128)
        err = c.bf16 ? launch(seer::attn_bwd::BwdConfig<128, __nv_bfloat16>{})
                     : launch(seer::attn_bwd::BwdConfig<128, __half>{});
      else
        err = c.bf16 ? launch(seer::attn_bwd::BwdConfig<256, __nv_bfloat16>{})
                     : launch(seer::attn_bwd::BwdConfig<256, __half>{});
      CK(static_cast<cudaError_t>(err));
      CK(cudaDeviceSynchronize());
      std::printf(" [%s %s]\n", name,
                  det == 1 ? "deterministic" : det == 0 ? "atomic" : det == 2 ? "deterministic, 64-key dK/dV"
                  : det == 3 ? "atomic, dense counts" : det == -1 ? "atomic, q-major dQ, 64-key dK/dV"
                  : "atomic, q-major dQ, 128-key dK/dV");
      std::vector<float> got_dq;
      if (cfg != 0 && det == 0) {
        std::vector<float> acc(nq);
        if (nq) CK(cudaMemcpy(acc.data(), d_dqacc, nq * sizeof(float), cudaMemcpyDeviceToHost));
        got_dq.resize(nq);
        for (size_t i = 0; i < nq; ++i) got_dq[i] = round_elem(acc[i] * scale, c.bf16);
      } else {
        got_dq = fetch(d_dq, nq);
      }
      ok = check("dq", got_dq, dq_ref, hq, q_owned) && ok;
      ok = check("dk", fetch(d_dk, nk), dk_ref, hkv, k_owned) && ok;
      ok = check("dv", fetch(d_dv, nk), dv_ref, hkv, k_owned) && ok;
    }
  p.tile_count = nullptr;
  if (d_counts != nullptr) CK(cudaFree(d_counts));
  if (impl == 1 && seer::selftest::check_item_queue(p, seq_q, 1, "dQ tiling") != 0) ok = false;
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--time") == 0) {
    const std::vector<int> p1 = {16384, 8000, 4096, 2100, 1024, 700, 256, 77};
    std::vector<std::pair<int, int>> p1s;
    for (int l : p1) p1s.push_back({l, l});
    std::mt19937 trng(7);
    int fails = 0;
    for (bool is1d : {false, true})
      for (double d : {1.0, 0.5, 0.1}) {
        // 2D: per-q-head mask, 64x64 blocks; 1D: per-kv-head mask (GQA group 4 packed), B_k 64.
        Case t{128, true, is1d, true, 32, 8, is1d ? 1 : 64, 64, is1d ? 8 : 32, p1s, d};
        std::printf("time: P1 lengths h_q=32 h_kv=8 D=128 bf16 %s causal density %.2f (mask drawn per block)\n",
                    is1d ? "1D GQA (B_k 64)" : "2D 64x64", d);
#ifdef SEER_ATTN_SM90A
        fails += !run_case(t, trng, -1, 10);  // impl 0 and 1 on the same inputs, compared
#else
        fails += !run_case(t, trng, 0, 10);
#endif
      }
    return fails == 0 ? 0 : 1;
  }
  // Arguments: [seed] [--shard i/n] (every n-th case from the i-th: n processes share the sweep, as the
  // CPU emulation of tests/cuda_emu does). Each case draws its inputs from (seed, its index).
  int seed = 1234, shard_i = 0, shard_n = 1;
  for (int a = 1; a < argc; ++a) {
    if (std::strcmp(argv[a], "--shard") == 0 && a + 1 < argc &&
        std::sscanf(argv[a + 1], "%d/%d", &shard_i, &shard_n) == 2 && shard_n > 0 && shard_i >= 0 && shard_i < shard_n) {
      ++a;
    } else if (std::isdigit(static_cast<unsigned char>(argv[a][0]))) {
      seed = std::atoi(argv[a]);
    } else {
      std::fprintf(stderr, "usage: %s [seed] [--shard i/n] | --time\n", argv[0]);
      return 2;
    }
  }
  std::mt19937 rng;
  int case_index = 0;
  // Whether the next case is this process's; if so, rng holds its inputs' generator.
  auto mine = [&]() {
    const int i = case_index++;
    rng.seed(static_cast<uint32_t>(seed) * 1000003u + static_cast<uint32_t>(i));
    return i % shard_n == shard_i;
  };
  const std::vector<std::pair<int, int>> seqs = {{130, 130}, {61, 200}, {0, 40}, {257, 97}};
  int fails = 0, total = 0;
  // Every case on the mma.sync kernels and, in an sm_90a build (D 64 / 128), on the same inputs on the
  // sm90 kernel.
  auto run_both = [&](const Case& c) {
    if (!mine()) return;
    std::mt19937 r1 = rng;
    ++total;
    fails += !run_case(c, rng);
#ifdef SEER_ATTN_SM90A
    if (c.D == 64 || c.D == 128) {
      ++total;
      fails += !run_case(c, r1, 1);
    }
#else
    (void)r1;
#endif
  };
  for (int D : {64, 128, 256})
    for (bool bf16 : {false, true})
      for (bool is1d : {false, true})
        for (bool causal : {false, true}) {
          Case c;
          c.D = D;
          c.bf16 = bf16;
          c.is1d = is1d;
          c.causal = causal;
          c.hq = 8;
          c.hkv = is1d ? 2 : 4;  // 1D: group 4 with a per-kv-head mask -> pack 4
          c.mask_heads = is1d ? c.hkv : c.hq;
          c.bq = 32;
          c.bk = (D == 128) ? 48 : (D == 64 ? 16 : 80);
          c.seqs = seqs;
          c.density = 0.6;
          run_both(c);
        }
  // Dense sanity case (every block kept: tile-mask value 2 everywhere) and a GQA group of 7.
  Case dense{128, true, false, true, 4, 1, 64, 64, 1, {{300, 300}}, 1.0};
  run_both(dense);
  Case g7{64, false, true, false, 7, 1, 1, 64, 1, {{100, 150}, {33, 20}}, 0.5};
  run_both(g7);
  // More than 256 candidate row tiles per key tile (16 heads x 18 token tiles; the candidate list is
  // rebuilt in batches), B_q = B_k = 128 > kBlockN, and many key tiles adding into one dq row (atomic).
  Case many{64, true, false, true, 16, 1, 128, 128, 1, {{1100, 1100}, {37, 300}}, 0.7};
  run_both(many);
  // B_k = 32 < kBlockN with a per-kv-head 2D mask, fp16, seqlen_q < seqlen_k (bottom-right causal).
  Case bk32{128, false, false, true, 8, 2, 64, 32, 2, {{500, 520}, {64, 64}}, 0.5};
  run_both(bk32);
  // Workload-like 2D mask (B_q = B_k = 64, GQA 4) over several 128-key tiles, and B_k = 80 (not a
  // divisor of the 128-key v2 tile: windows straddle key blocks) with a 1D mask, fp16.
  Case wl{128, true, false, true, 8, 2, 64, 64, 8, {{700, 700}, {129, 129}, {1, 1}}, 0.5};
  run_both(wl);
  Case bk80{128, false, true, true, 4, 2, 1, 80, 2, {{400, 450}, {90, 90}}, 0.5};
  run_both(bk80);
  // K / V with a stride-0 head dim: no TMA map describes it, so the q-major dQ kernel's producer gathers
  // whole 64-key groups with cp.async (the path the other cases leave to TMA); the dK / dV kernel as ever.
  Case kvb{128, true, false, true, 8, 2, 64, 64, 8, {{700, 700}, {129, 129}, {1, 1}}, 0.5};
  kvb.kv_bcast = true;
  run_both(kvb);
  // Inconsistent input: cu_seqlens lengths above max_seqlen_q / _k (clamped by every kernel; rows and
  // keys past the clamped lengths are left to the API layer and not checked), every head dim.
  for (int D : {64, 128, 256}) {
    Case clamp{D, true, false, true, 8, 2, 64, 64, 8, {{300, 250}, {90, 400}, {40, 40}}, 0.7};
    clamp.max_q = 200;
    clamp.max_k = 180;
    run_both(clamp);
  }
#ifdef SEER_ATTN_SM90A
  // The sm90 kernel sweep: D x dtype x mask kind (2D 64x64, 2D 128x128, 1D GQA group 4) x causal x density.
  const std::vector<std::pair<int, int>> vseqs = {{130, 130}, {61, 200}, {0, 40}, {257, 97}, {200, 333}, {1, 1}};
  for (int D : {64, 128})
    for (bool bf16 : {false, true})
      for (int kind = 0; kind < 3; ++kind)
        for (bool causal : {false, true})
          for (double density : {0.1, 0.5, 1.0}) {
            Case c;
            c.D = D;
            c.bf16 = bf16;
            c.is1d = kind == 2;
            c.causal = causal;
            c.hq = 8;
            c.hkv = 2;  // GQA group 4 (1D: per-kv-head mask -> pack 4)
            c.mask_heads = c.is1d ? c.hkv : c.hq;
            c.bq = kind == 1 ? 128 : 64;
            c.bk = kind == 1 ? 128 : 64;
            c.seqs = vseqs;
            c.density = density;
            if (!mine()) continue;
            ++total;
            fails += !run_case(c, rng, 1);
          }
#endif
  std::printf("%d / %d cases passed\n", total - fails, total);
  return fails == 0 ? 0 : 1;
}
