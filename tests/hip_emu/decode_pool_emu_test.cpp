// Runs the HIP decode and pooling kernels (csrc/decode/hip/, csrc/pooling/hip/, unmodified source) on the
// CPU through tests/hip_emu/hip_emu.h and compares them with a float64 reference of SPEC.md sections 3
// and 4. Built and run by tests/test_hip_emu.py.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "decode/hip/decode_kernel_hip.h"
#include "pooling/hip/pooling_kernel_hip.h"

using namespace seer;

static int failures = 0;
static uint16_t to_bits(float f, bool bf16) {
  if (bf16) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
static double fb(uint16_t x, bool bf16) { return seer_emu::bits_to_float(x, bf16); }
static void upd(double& err, double diff) {
  if (!(diff <= err)) err = diff;  // keeps NaN (unwritten outputs)
}

// ---------------------------------------------------------------------------------------------------
struct DecCase {
  const char* name;
  bool bf16, left_pad, first_unmasked, use_indices;
  std::vector<int> lens;
  int S, hq, hkv, bk, splits, min_split_keys;
  double density;
  int L = 1;  // new tokens per sequence (rows: token * group + g; token i sees slots < hi - (L - 1 - i))
};

template <typename Elem, int D>
static void run_decode(const DecCase& c, std::mt19937& rng) {
  const int B = int(c.lens.size()), nb = (c.S + c.bk - 1) / c.bk, group = c.hq / c.hkv, L = c.L;
  std::normal_distribution<float> N(0.f, 1.f);
  std::uniform_real_distribution<double> U(0, 1);
  std::vector<uint16_t> q(size_t(B) * L * c.hq * D), k(size_t(B) * c.S * c.hkv * D), v(k.size());
  for (auto* x : {&q, &k, &v})
    for (auto& e : *x) e = to_bits(N(rng), c.bf16);
  std::vector<uint8_t> mask(size_t(B) * c.hkv * nb);
  for (auto& m : mask) m = U(rng) < c.density;
  const int K = std::max(1, nb / 2);
  std::vector<int> idx(size_t(B) * c.hkv * K, -1);
  for (int bh = 0; bh < B * c.hkv; ++bh) {
    std::vector<int> perm(nb);
    for (int i = 0; i < nb; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int i = 0; i < K; ++i) idx[size_t(bh) * K + i] = U(rng) < 0.8 ? perm[i] : -1;
  }
  std::vector<uint16_t> out(size_t(B) * L * c.hq * D, 0x7fff);
  std::vector<float> lse(size_t(B) * L * c.hq, std::nanf("")), op(size_t(c.splits) * B * L * c.hq * D),
      lp(size_t(c.splits) * B * L * c.hq);
  DecodeParams p{};
  p.batch = B;
  p.h_q = c.hq;
  p.h_kv = c.hkv;
  p.group = group;
  p.head_dim = D;
  p.seqlen_max = c.S;
  p.block_size = c.bk;
  p.num_blocks = nb;
  p.scale = 1.f / std::sqrt(float(D));
  p.scale_log2 = p.scale * 1.4426950408889634f;
  p.is_bf16 = c.bf16;
  p.left_pad = c.left_pad;
  p.first_block_unmasked = c.first_unmasked;
  p.q = q.data();
  p.q_batch_stride = int64_t(L) * c.hq * D;
  p.q_tok_stride = int64_t(c.hq) * D;
  p.q_head_stride = D;
  p.k = k.data();
  p.k_addr = seer::KvAddr{int64_t(c.S) * c.hkv * D, int64_t(c.hkv) * D, nullptr, 0, 0, 0};  // dense cache
  p.k_head_stride = D;
  p.v = v.data();
  p.v_addr = p.k_addr;
  p.v_head_stride = D;
  p.n_tok = L;
  p.out = out.data();
  p.o_batch_stride = int64_t(L) * c.hq * D;
  p.o_tok_stride = int64_t(c.hq) * D;
  p.o_head_stride = D;
  p.lse = lse.data();
  p.cache_seqlens = c.lens.data();
  if (c.use_indices) {
    p.block_indices = idx.data();
    p.idx_stride_b = int64_t(c.hkv) * K;
    p.idx_stride_h = K;
    p.idx_stride_k = 1;
    p.num_indices = K;
  } else {
    p.block_mask = mask.data();
    p.mask_stride_b = int64_t(c.hkv) * nb;
    p.mask_stride_h = nb;
    p.mask_stride_n = 1;
  }
  p.num_splits = c.splits;
  p.min_split_keys = c.min_split_keys;
  p.o_partial = op.data();
  p.lse_partial = lp.data();
  const DecodeParams pc = p;
  const int chunks = (L * group + hipdecode::kRows - 1) / hipdecode::kRows;
  seer_emu::launch(c.splits * chunks, c.hkv, B, hipdecode::kThreads, [&] { hipdecode::decode_split_kernel_hip<Elem, D>(pc); });
  if (c.splits > 1) seer_emu::launch(B * L * c.hq, 1, 1, 64, [&] { hipdecode::decode_combine_kernel_hip<Elem, D>(pc); });

  double err_o = 0, err_l = 0;
  int empty = 0, bad_empty = 0;
  for (int b = 0; b < B; ++b) {
    const int len = std::min(std::max(c.lens[b], 0), c.S);
    const int lo = c.left_pad ? c.S - len : 0, hi = c.left_pad ? c.S : len;
    const int blo = len > 0 ? lo / c.bk : 0, bhi = len > 0 ? (hi + c.bk - 1) / c.bk : 0;
    for (int hk = 0; hk < c.hkv; ++hk) {
      std::set<int> sel;
      for (int n = blo; n < bhi; ++n) {
        bool s = false;
        if (c.use_indices) {
          for (int i = 0; i < K; ++i) s |= idx[(size_t(b) * c.hkv + hk) * K + i] == n;
        } else {
          s = mask[(size_t(b) * c.hkv + hk) * nb + n] != 0;
        }
        if (s || (c.first_unmasked && len > 0 && n == blo)) sel.insert(n);
      }
      for (int t = 0; t < L; ++t)
      for (int h = hk * group; h < (hk + 1) * group; ++h) {
        const size_t row = (size_t(b) * L + t) * c.hq + h;  // [B, L, H_q]
        const int thi = hi - (L - 1 - t);                   // token t's causal limit
        std::vector<std::pair<int, double>> s;
        for (int n : sel)
          for (int slot = n * c.bk; slot < (n + 1) * c.bk; ++slot)
            if (slot >= lo && slot < thi) {
              double acc = 0;
              for (int d = 0; d < D; ++d)
                acc += fb(q[row * D + d], c.bf16) *
                       fb(k[((size_t(b) * c.S + slot) * c.hkv + hk) * D + d], c.bf16);
              s.push_back({slot, acc * p.scale});
            }
        const size_t orow = row * D;
        if (s.empty()) {
          ++empty;
          bool ok = lse[row] == -INFINITY;
          for (int d = 0; d < D; ++d) ok &= out[orow + d] == 0;
          bad_empty += !ok;
          continue;
        }
        double m = -INFINITY, l = 0;
        for (auto& e : s) m = std::max(m, e.second);
        for (auto& e : s) l += std::exp(e.second - m);
        upd(err_l, std::fabs(m + std::log(l) - lse[row]));
        for (int d = 0; d < D; ++d) {
          double o = 0;
          for (auto& e : s) o += std::exp(e.second - m) / l * fb(v[((size_t(b) * c.S + e.first) * c.hkv + hk) * D + d], c.bf16);
          upd(err_o, std::fabs(o - fb(out[orow + d], c.bf16)));
        }
      }
    }
  }
  const double tol = c.bf16 ? 4e-2 : 6e-3;
  const bool ok = err_o < tol && err_l < 1e-3 && bad_empty == 0;
  std::printf("  decode  %-32s out %.1e lse %.1e, %d empty rows (%d wrong)  %s\n", c.name, err_o, err_l, empty, bad_empty,
              ok ? "ok" : "FAIL");
  failures += !ok;
}

// ---------------------------------------------------------------------------------------------------
struct PoolCase {
  const char* name;
  bool bf16, causal, gqa;
  std::vector<int> lens;
  int hq, hkv, bs;
};

template <typename Elem, int D>
static void run_pooling(const PoolCase& c, std::mt19937& rng) {
  const int B = int(c.lens.size()), group = c.hq / c.hkv, h_out = c.gqa ? c.hkv : c.hq;
  std::vector<int> cu = {0};
  for (int l : c.lens) cu.push_back(cu.back() + l);
  const int T = cu.back() + 3;  // 3 token rows after the last sequence: zero rows in pooled_1d
  const int maxl = *std::max_element(c.lens.begin(), c.lens.end()), nb = (maxl + c.bs - 1) / c.bs;
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<uint16_t> q(size_t(T) * c.hq * D), k(size_t(T) * c.hkv * D);
  for (auto* x : {&q, &k})
    for (auto& e : *x) e = to_bits(N(rng), c.bf16);
  std::vector<float> p2(size_t(B) * h_out * nb * nb, 0.f), acc1(c.gqa ? size_t(h_out) * T * nb : 1, 0.f);
  std::vector<uint16_t> p1(size_t(h_out) * T * nb, 0x7fff);
  PoolingParams p{};
  p.batch = B;
  p.h_q = c.hq;
  p.h_kv = c.hkv;
  p.group = group;
  p.h_out = h_out;
  p.head_dim = D;
  p.max_seqlen = maxl;
  p.total = T;
  p.block_size = c.bs;
  p.nb = nb;
  const float scale = 1.f / std::sqrt(float(D));
  p.scale_log2 = scale * 1.4426950408889634f;
  p.causal = c.causal;
  p.gqa_reduce = c.gqa;
  p.is_bf16 = c.bf16;
  p.q = q.data();
  p.q_row_stride = int64_t(c.hq) * D;
  p.q_head_stride = D;
  p.k = k.data();
  p.k_row_stride = int64_t(c.hkv) * D;
  p.k_head_stride = D;
  p.cu_seqlens = cu.data();
  p.pooled_2d = p2.data();
  p.pooled_1d = p1.data();
  p.pooled_1d_accum = c.gqa ? acc1.data() : nullptr;
  const PoolingParams pc = p;
  const int n_m = (maxl + hipattn::kBlockM - 1) / hipattn::kBlockM;
  seer_emu::launch(n_m * B * c.hq, 1, 1, hipattn::kThreads, [&] { hippool::pooling_kernel_hip<Elem, D>(pc); });
  const int64_t rows1 = int64_t(h_out) * T, rows2 = int64_t(B) * h_out * nb;
  if (c.gqa)
    seer_emu::launch(int((rows1 + 3) / 4), 1, 1, 256, [&] {
      hippool::pooling_finish_1d_kernel_hip<Elem>(pc.pooled_1d_accum, static_cast<uint16_t*>(pc.pooled_1d), rows1, nb);
    });
  else
    seer_emu::launch(16, h_out, 1, 256, [&] {
      hippool::pooling_zero_rows_kernel_hip(static_cast<uint16_t*>(pc.pooled_1d), pc.cu_seqlens, B, T, nb);
    });
  seer_emu::launch(int((rows2 + 3) / 4), 1, 1, 256, [&] { hippool::pooling_normalize_kernel_hip(pc.pooled_2d, rows2, nb); });

  // reference
  std::vector<double> r1(size_t(h_out) * T * nb, 0.0), r2(size_t(B) * h_out * nb * nb, 0.0);
  for (int b = 0; b < B; ++b) {
    const int L = c.lens[b];
    for (int h = 0; h < c.hq; ++h) {
      const int hk = h / group, ho = c.gqa ? hk : h;
      for (int i = 0; i < L; ++i) {
        const int lim = c.causal ? i + 1 : L;
        std::vector<double> s(lim);
        double m = -INFINITY;
        for (int j = 0; j < lim; ++j) {
          double a = 0;
          for (int d = 0; d < D; ++d)
            a += fb(q[(size_t(cu[b] + i) * c.hq + h) * D + d], c.bf16) * fb(k[(size_t(cu[b] + j) * c.hkv + hk) * D + d], c.bf16);
          s[j] = a * scale;
          m = std::max(m, s[j]);
        }
        double l = 0;
        for (int j = 0; j < lim; ++j) l += std::exp(s[j] - m);
        for (int j = 0; j < lim; ++j) {
          const double P = std::exp(s[j] - m) / l;
          double& e1 = r1[(size_t(ho) * T + cu[b] + i) * nb + j / c.bs];
          e1 = std::max(e1, P);
          double& e2 = r2[((size_t(b) * h_out + ho) * nb + i / c.bs) * nb + j / c.bs];
          e2 = std::max(e2, P);
        }
      }
    }
  }
  auto normalise = [&](std::vector<double>& x, size_t rows) {
    for (size_t r = 0; r < rows; ++r) {
      double sum = 0;
      for (int j = 0; j < nb; ++j) sum += x[r * nb + j];
      if (sum == 0) continue;
      for (int j = 0; j < nb; ++j) x[r * nb + j] /= sum + 1e-6;
    }
  };
  normalise(r2, size_t(B) * h_out * nb);
  if (c.gqa) normalise(r1, size_t(h_out) * T);
  double e1 = 0, e2 = 0;
  for (size_t e = 0; e < r1.size(); ++e) upd(e1, std::fabs(r1[e] - fb(p1[e], c.bf16)));
  for (size_t e = 0; e < r2.size(); ++e) upd(e2, std::fabs(r2[e] - p2[e]));
  const double tol = c.bf16 ? 8e-3 : 2e-3;
  const bool ok = e1 < tol && e2 < 2e-3;
  std::printf("  pooling %-32s 1d %.1e 2d %.1e  %s\n", c.name, e1, e2, ok ? "ok" : "FAIL");
  failures += !ok;
}

int main() {
  std::mt19937 rng(11);
  using hip16::Bf16;
  using hip16::Fp16;
  // name, bf16, left_pad, first_unmasked, use_indices, lens, S, hq, hkv, bk, splits, min_split_keys, density
  run_decode<Bf16, 64>({"mask right-pad 1 split", true, false, false, false, {300, 0, 17}, 320, 8, 2, 32, 1, 0, 0.5}, rng);
  run_decode<Fp16, 128>({"indices left-pad 3 splits", false, true, false, true, {200, 64}, 256, 4, 1, 16, 3, 64, 0.5}, rng);
  run_decode<Bf16, 64>({"left-pad first block, group 20", true, true, true, false, {150, 70}, 192, 20, 1, 48, 2, 0, 0.3},
                       rng);
  // L > 1: L = 4 x group 4 (one 16-row chunk of 4 tokens; lengths 2 and 0: tokens with no slot), L = 16 x
  // group 1 (16 tokens per chunk, one per row), with splits.
  run_decode<Fp16, 64>({"L4 group 4 mask 2 splits", false, false, false, false, {90, 2, 0, 33}, 96, 8, 2, 16, 2, 0, 0.6, 4},
                       rng);
  run_decode<Bf16, 128>({"L16 group 1 indices left-pad", true, true, true, true, {60, 20, 9}, 64, 2, 2, 16, 3, 0, 0.7, 16},
                        rng);
  // name, bf16, causal, gqa, lens, hq, hkv, bs
  run_pooling<Bf16, 64>({"causal bf16 B64", true, true, false, {200, 70}, 2, 1, 64}, rng);
  run_pooling<Fp16, 128>({"causal fp16 GQA reduce B32", false, true, true, {150}, 4, 2, 32}, rng);
  run_pooling<Bf16, 64>({"non-causal bf16 B16", true, false, false, {90, 40}, 1, 1, 16}, rng);
  if (failures) {
    std::printf("%d case(s) failed\n", failures);
    return 1;
  }
  std::printf("all emulated decode / pooling cases passed\n");
  return 0;
}
