// Runs the HIP forward and backward attention kernels (csrc/attention/hip/, unmodified source) on the
// CPU through the lockstep wavefront emulation of tests/hip_emu/hip_emu.h, and compares out / lse and
// dq / dk / dv with a float64 reference of SPEC.md's semantics: varlen, GQA, 2D and 1D block masks
// through the tile mask (built here by the rule of attention_params.h), causal bottom-right, rows with
// no visible key -> out 0, lse -inf, zero gradients. Built and run by tests/test_hip_emu.py.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "attention/hip/bwd_kernel_hip.h"
#include "common/selftest/reference.h"

using namespace seer;

static int failures = 0;

using selftest::from_bits;
using selftest::to_bits;
using selftest::upd;  // running max that keeps a NaN (an unwritten output reads as NaN): any NaN fails

struct Case {
  const char* name;
  int D;
  bool bf16, causal, mask1d;
  std::vector<int> lens_q, lens_k;
  int hq, hkv, mask_heads, bq, bk;
  double density;
  bool deterministic;
  bool backward = true;
};

struct Problem {
  Case c;
  int B, Tq, Tk, max_q, max_k, nbq, nbk, mrows;
  std::vector<int> cu_q, cu_k;
  std::vector<uint16_t> q, k, v, dout;
  std::vector<uint8_t> mask;  // [B][Hm][mrows][nbk]
  bool keep(int b, int hm, int mrow, int n) const { return mask[((size_t(b) * c.mask_heads + hm) * mrows + mrow) * nbk + n] != 0; }
};

// Tile mask by the rule of attention_params.h (same as tile_mask.cu's tile_value).
static void build_tile_mask(const Problem& pr, AttnParams& p, std::vector<uint8_t>& tm, std::vector<uint8_t>& tmT) {
  tm.assign(size_t(p.batch) * p.h_kv * p.n_row_tiles * p.nb_k, 0);
  tmT.assign(tm.size(), 0);
  for (int b = 0; b < p.batch; ++b) {
    const int lq = std::min(pr.cu_q[b + 1] - pr.cu_q[b], p.max_seqlen_q), lk = std::min(pr.cu_k[b + 1] - pr.cu_k[b], p.max_seqlen_k);
    for (int hk = 0; hk < p.h_kv; ++hk)
      for (int rt = 0; rt < p.n_row_tiles; ++rt)
        for (int n = 0; n < p.nb_k; ++n) {
          const int slot = rt / p.n_tok_tiles, tok0 = (rt % p.n_tok_tiles) * p.tile_tokens;
          bool any = false, all = true;
          for (int r = 0; r < p.tile_tokens * p.pack; ++r) {
            const int t = tok0 + r / p.pack, h = hk * p.group + slot * p.pack + r % p.pack;
            if (t >= lq) continue;
            const int key0 = n * p.block_size_k;
            if (key0 >= lk || (p.causal && key0 > t + lk - lq)) continue;  // the row cannot see block n
            const bool kp = pr.keep(b, h / (p.h_q / p.mask_heads), t / p.mask_row_div, n);
            any |= kp;
            all &= kp;
          }
          const uint8_t val = any ? (all ? 2 : 1) : 0;
          tm[((size_t(b) * p.h_kv + hk) * p.n_row_tiles + rt) * p.nb_k + n] = val;
          tmT[((size_t(b) * p.h_kv + hk) * p.nb_k + n) * p.n_row_tiles + rt] = val;
        }
  }
}

template <typename Elem, int D>
static void run(const Case& c, std::mt19937& rng) {
  Problem pr;
  pr.c = c;
  pr.B = int(c.lens_q.size());
  pr.cu_q = {0};
  pr.cu_k = {0};
  for (int b = 0; b < pr.B; ++b) pr.cu_q.push_back(pr.cu_q.back() + c.lens_q[b]), pr.cu_k.push_back(pr.cu_k.back() + c.lens_k[b]);
  pr.Tq = pr.cu_q.back();
  pr.Tk = pr.cu_k.back();
  pr.max_q = *std::max_element(c.lens_q.begin(), c.lens_q.end());
  pr.max_k = *std::max_element(c.lens_k.begin(), c.lens_k.end());
  pr.nbk = (pr.max_k + c.bk - 1) / c.bk;
  pr.mrows = c.mask1d ? pr.max_q : (pr.max_q + c.bq - 1) / c.bq;
  std::normal_distribution<float> N(0.f, 1.f);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  auto fill = [&](std::vector<uint16_t>& x, size_t n) {
    x.resize(n);
    for (auto& e : x) e = to_bits(N(rng), c.bf16);
  };
  fill(pr.q, size_t(pr.Tq) * c.hq * D);
  fill(pr.k, size_t(pr.Tk) * c.hkv * D);
  fill(pr.v, size_t(pr.Tk) * c.hkv * D);
  fill(pr.dout, size_t(pr.Tq) * c.hq * D);
  pr.mask.resize(size_t(pr.B) * c.mask_heads * pr.mrows * pr.nbk);
  for (auto& m : pr.mask) m = U(rng) < c.density ? 1 : 0;
  // Non-causal: one mask row fully off, so some rows see no key (out 0, lse -inf, zero gradients).
  if (!c.causal)
    for (int n = 0; n < pr.nbk; ++n) pr.mask[size_t(pr.mrows - 1) * pr.nbk + n] = 0;

  // ---- params as the API layer fills them ----
  AttnBwdParams p{};
  selftest::fill_attn_problem(p, pr.B, c.hq, c.hkv, D, pr.max_q, pr.max_k, pr.Tq, pr.Tk, c.causal, c.bf16);
  p.q = pr.q.data();
  p.q_row_stride = int64_t(c.hq) * D;
  p.q_head_stride = D;
  p.k = pr.k.data();
  p.v = pr.v.data();
  std::vector<uint16_t> out(size_t(pr.Tq) * c.hq * D, 0x7fff);  // NaN pattern: unwritten rows show
  std::vector<float> lse(size_t(c.hq) * pr.Tq, std::nanf(""));
  p.out = out.data();
  p.lse = lse.data();
  p.cu_seqlens_q = pr.cu_q.data();
  p.cu_seqlens_k = pr.cu_k.data();
  selftest::fill_attn_mask(p, pr.mask.data(), int64_t(c.mask_heads) * pr.mrows * pr.nbk, int64_t(pr.mrows) * pr.nbk,
                           pr.nbk, c.mask_heads, c.mask1d ? 1 : c.bq, c.bk, pr.nbk);
  auto tile = [&](int rows) { selftest::fill_attn_tiling(p, rows); };
  std::vector<uint8_t> tm, tmT;

  // ---- forward ----
  tile(hipattn::kBlockM);
  build_tile_mask(pr, p, tm, tmT);
  p.tile_mask = tm.data();
  p.tile_maskT = tmT.data();
  const AttnParams pf = p;
  seer_emu::launch(p.n_tok_tiles * p.batch * p.h_kv * (p.group / p.pack), 1, 1, hipattn::kThreads,
                   [&] { hipattn::attention_fwd_kernel_hip<Elem, D>(pf); });

  // ---- backward ----
  std::vector<uint16_t> dq(out.size(), 0), dk(pr.k.size(), 0), dv(pr.v.size(), 0);
  if (c.backward) {
  std::fill(dq.begin(), dq.end(), 0x7fff);
  std::fill(dk.begin(), dk.end(), 0x7fff);
  std::fill(dv.begin(), dv.end(), 0x7fff);
  // dq_accum starts as NaN: the preprocess kernel must zero it (the op allocates it uninitialised).
  std::vector<float> softmax_d(lse.size()), dq_accum(out.size(), std::nanf(""));
  p.out = out.data();
  p.dout = pr.dout.data();
  p.do_row_stride = int64_t(c.hq) * D;
  p.do_head_stride = D;
  p.dlse = nullptr;
  p.softmax_d = softmax_d.data();
  p.dq = dq.data();
  p.dk = dk.data();
  p.dv = dv.data();
  p.dq_row_stride = p.o_row_stride;
  p.dk_row_stride = p.dv_row_stride = p.k_row_stride;
  p.dq_head_stride = p.dk_head_stride = p.dv_head_stride = D;
  p.dq_accum = c.deterministic ? nullptr : dq_accum.data();
  p.deterministic = c.deterministic;
  tile(hipattn::kBwdRows);
  build_tile_mask(pr, p, tm, tmT);
  p.tile_mask = tm.data();
  p.tile_maskT = tmT.data();
  const AttnBwdParams pb = p;
  const int n_rows = pr.Tq * c.hq;
  seer_emu::launch((n_rows + 15) / 16, 1, 1, 256, [&] { hipattn::attention_bwd_preprocess_kernel_hip<Elem>(pb); });
  constexpr int split = hipattn::bwd_dsplit(D);  // D 256: a workgroup per half of the head dims
  const int key_tiles = (p.max_seqlen_k + hipattn::kBwdKeys - 1) / hipattn::kBwdKeys * split;
  if (c.deterministic) {
    seer_emu::launch(key_tiles, p.h_kv, p.batch, hipattn::kThreads, [&] { hipattn::attention_bwd_kernel_hip<Elem, D, false>(pb); });
    seer_emu::launch(p.n_row_tiles * split, p.h_kv, p.batch, hipattn::kThreads, [&] { hipattn::attention_bwd_dq_kernel_hip<Elem, D>(pb); });
  } else {
    seer_emu::launch(key_tiles, p.h_kv, p.batch, hipattn::kThreads, [&] { hipattn::attention_bwd_kernel_hip<Elem, D, true>(pb); });
    seer_emu::launch(4, 1, 1, 256, [&] { hipattn::attention_bwd_convert_dq_kernel_hip<Elem>(pb, 4); });
  }
  }  // backward

  // ---- float64 reference ----
  const bool bf = c.bf16;
  double err_o = 0, err_lse = 0, err_dq = 0, err_dk = 0, err_dv = 0;
  int bad_empty = 0, empty_rows = 0;
  std::vector<double> rdk(pr.k.size(), 0.0), rdv(pr.v.size(), 0.0);
  const int group = c.hq / c.hkv;
  for (int b = 0; b < pr.B; ++b) {
    const int lq = c.lens_q[b], lk = c.lens_k[b];
    for (int h = 0; h < c.hq; ++h) {
      const int hk = h / group, hm = h / (c.hq / c.mask_heads);
      for (int i = 0; i < lq; ++i) {
        const size_t qrow = (size_t(pr.cu_q[b] + i) * c.hq + h) * D;
        std::vector<double> s(lk), P(lk, 0.0);
        double m = -INFINITY;
        std::vector<char> vis(lk, 0);
        for (int j = 0; j < lk; ++j) {
          vis[j] = (!c.causal || j <= i + lk - lq) && pr.keep(b, hm, c.mask1d ? i : i / c.bq, j / c.bk);
          if (!vis[j]) continue;
          const size_t krow = (size_t(pr.cu_k[b] + j) * c.hkv + hk) * D;
          double acc = 0;
          for (int d = 0; d < D; ++d) acc += from_bits(pr.q[qrow + d], bf) * from_bits(pr.k[krow + d], bf);
          s[j] = acc * p.scale;
          m = std::max(m, s[j]);
        }
        const size_t lrow = size_t(h) * pr.Tq + pr.cu_q[b] + i;
        if (m == -INFINITY) {  // no visible key
          ++empty_rows;
          bool ok = lse[lrow] == -INFINITY;
          for (int d = 0; d < D; ++d) ok &= out[qrow + d] == 0 && from_bits(dq[qrow + d], bf) == 0.0;
          bad_empty += !ok;
          continue;
        }
        double l = 0;
        for (int j = 0; j < lk; ++j)
          if (vis[j]) l += (P[j] = std::exp(s[j] - m));
        for (int j = 0; j < lk; ++j) P[j] /= l;
        upd(err_lse, std::fabs(m + std::log(l) - lse[lrow]));
        std::vector<double> o(D, 0.0), dp(lk, 0.0);
        for (int j = 0; j < lk; ++j)
          if (vis[j]) {
            const size_t vrow = (size_t(pr.cu_k[b] + j) * c.hkv + hk) * D;
            for (int d = 0; d < D; ++d) o[d] += P[j] * from_bits(pr.v[vrow + d], bf);
          }
        double Di = 0;
        for (int d = 0; d < D; ++d) {
          upd(err_o, std::fabs(o[d] - from_bits(out[qrow + d], bf)));
          Di += from_bits(pr.dout[qrow + d], bf) * o[d];
        }
        std::vector<double> rdq(D, 0.0);
        for (int j = 0; j < lk; ++j) {
          if (!vis[j]) continue;
          const size_t krow = (size_t(pr.cu_k[b] + j) * c.hkv + hk) * D;
          for (int d = 0; d < D; ++d) dp[j] += from_bits(pr.dout[qrow + d], bf) * from_bits(pr.v[krow + d], bf);
          const double ds = P[j] * (dp[j] - Di);
          for (int d = 0; d < D; ++d) {
            rdq[d] += ds * p.scale * from_bits(pr.k[krow + d], bf);
            rdk[krow + d] += ds * p.scale * from_bits(pr.q[qrow + d], bf);
            rdv[krow + d] += P[j] * from_bits(pr.dout[qrow + d], bf);
          }
        }
        if (c.backward)
          for (int d = 0; d < D; ++d) upd(err_dq, std::fabs(rdq[d] - from_bits(dq[qrow + d], bf)));
      }
    }
  }
  for (size_t e = 0; c.backward && e < rdk.size(); ++e) {
    upd(err_dk, std::fabs(rdk[e] - from_bits(dk[e], bf)));
    upd(err_dv, std::fabs(rdv[e] - from_bits(dv[e], bf)));
  }
  // 16-bit inputs are exact; the kernels round P (and dS) to 16 bits before the second GEMMs and the
  // outputs at the end: tolerances of a few 16-bit ulps of O(1) values.
  const double tol = bf ? 4e-2 : 5e-3;
  const bool ok = err_o < tol && err_lse < 1e-3 && err_dq < tol && err_dk < tol && err_dv < tol && bad_empty == 0;
  std::printf("  %-34s out %.1e lse %.1e dq %.1e dk %.1e dv %.1e, %d empty rows (%d wrong)  %s\n", c.name, err_o, err_lse,
              err_dq, err_dk, err_dv, empty_rows, bad_empty, ok ? "ok" : "FAIL");
  failures += !ok;
}

int main() {
  std::mt19937 rng(7);
  using hip16::Bf16;
  using hip16::Fp16;
  // name, D, bf16, causal, mask1d, lens_q, lens_k, hq, hkv, mask_heads, bq, bk, density, deterministic
  run<Bf16, 64>({"2D causal bf16 D64 GQA2", 64, true, true, false, {150, 40}, {150, 70}, 4, 2, 4, 64, 64, 0.6, false}, rng);
  run<Fp16, 64>({"2D non-causal fp16 D64 Bq32 Bk48", 64, false, false, false, {90, 33}, {130, 17}, 2, 1, 1, 32, 48, 0.5, false}, rng);
  run<Bf16, 128>({"1D causal bf16 D128 GQA4 packed", 128, true, true, true, {70, 20}, {70, 50}, 8, 2, 2, 1, 16, 0.5, false}, rng);
  run<Fp16, 64>({"1D per-head fp16 D64 det.", 64, false, true, true, {60}, {80}, 2, 1, 2, 1, 32, 0.5, true}, rng);
  run<Bf16, 64>({"2D causal bf16 D64 deterministic", 64, true, true, false, {100, 30}, {100, 30}, 2, 1, 1, 16, 16, 0.7, true}, rng);
  run<Fp16, 128>({"2D fp16 D128 B 128 mask bcast det.", 128, false, true, false, {260}, {300}, 2, 2, 1, 128, 128, 0.6, true},
                 rng);
  run<Bf16, 256>({"2D causal bf16 D256 GQA2", 256, true, true, false, {80, 30}, {160, 30}, 2, 1, 2, 32, 32, 0.6, false}, rng);
  run<Fp16, 256>({"1D non-causal fp16 D256 det.", 256, false, false, true, {40}, {50}, 1, 1, 1, 1, 16, 0.5, true}, rng);
  if (failures) {
    std::printf("%d case(s) failed\n", failures);
    return 1;
  }
  std::printf("all emulated attention cases passed\n");
  return 0;
}
