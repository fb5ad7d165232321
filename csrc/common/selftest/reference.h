// Host-side pieces shared by the torch-free kernel self-tests: the GPU self-tests of csrc/*/selftest/
// (built by `make selftest`, cmake/CMakeLists.txt) and the CPU emulation of the HIP kernels
// (tests/hip_emu/). Plain C++ (no CUDA header of its own), so that both compilers take it:
//   - 16-bit element conversions (bf16 / fp16 bits <-> float, round to nearest even),
//   - a running error maximum that keeps NaN (outputs are pre-filled with NaN: an unwritten element fails),
//   - attention: AttnParams' problem, mask and row-tiling fields as the API layer fills them,
//   - decode and pooling: the random problem of a test case, the params filled from it (for any copy
//     of the data: host pointers for the emulator, device pointers for the GPU) and the float64
//     reference with the comparison (one report line per case).
// Semantics are those of the params headers (csrc/decode/decode_params.h, csrc/pooling/pooling_params.h).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "attention/attention_params.h"
#include "decode/decode_params.h"
#include "pooling/pooling_params.h"

namespace seer {
namespace selftest {

// ---- 16-bit elements ---------------------------------------------------------------------------
inline uint16_t to_bits(float f, bool bf16) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (bf16) {
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
    return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  const uint32_t sign = (u >> 16) & 0x8000u, au = u & 0x7fffffffu;
  if (au > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (au >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: inf
  if (au <= 0x33000000u) return static_cast<uint16_t>(sign);            // <= 2^-25: zero
  const int exp = static_cast<int>(au >> 23);
  if (exp < 113) {  // half subnormal: m * 2^-24, m = mantissa * 2^(exp - 126)
    const uint32_t mant = (au & 0x7fffffu) | 0x800000u, shift = 126 - exp;
    uint32_t m = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (m & 1u))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t h = ((exp - 112u) << 10) | ((au >> 13) & 0x3ffu);
  const uint32_t rem = au & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is right
  return static_cast<uint16_t>(sign | h);
}

inline float from_bits(uint16_t b, bool bf16) {
  uint32_t u;
  if (bf16) {
    u = static_cast<uint32_t>(b) << 16;
  } else {
    const uint32_t sign = static_cast<uint32_t>(b & 0x8000u) << 16, e = (b >> 10) & 0x1fu, m = b & 0x3ffu;
    if (e == 0) return (sign ? -1.f : 1.f) * std::ldexp(static_cast<float>(m), -24);
    u = e == 31 ? (sign | 0x7f800000u | (m << 13)) : (sign | ((e + 112u) << 23) | (m << 13));
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float round_elem(float x, bool bf16) { return from_bits(to_bits(x, bf16), bf16); }
constexpr uint16_t kNanBits = 0x7fff;  // NaN in both fp16 and bf16

// err = max(err, diff), NaN sticky (an unwritten NaN-filled output fails every comparison).
inline void upd(double& err, double diff) {
  if (!std::isnan(err) && !(diff <= err)) err = diff;
}

inline std::vector<uint16_t> random_elems(size_t n, bool bf16, std::mt19937& rng) {
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<uint16_t> x(n);
  for (auto& e : x) e = to_bits(N(rng), bf16);
  return x;
}

// ---- attention ---------------------------------------------------------------------------------
// The problem part of AttnParams; k / v and out contiguous ([T, heads, D]); q strides left to the caller.
inline void fill_attn_problem(AttnParams& p, int B, int hq, int hkv, int D, int max_q, int max_k, int total_q,
                              int total_k, bool causal, bool bf16) {
  p.batch = B;
  p.h_q = hq, p.h_kv = hkv, p.group = hq / hkv, p.head_dim = D;
  p.max_seqlen_q = max_q, p.max_seqlen_k = max_k, p.total_q = total_q, p.total_k = total_k;
  p.scale = 1.f / std::sqrt(static_cast<float>(D));
  p.scale_log2 = p.scale * 1.4426950408889634f;
  p.causal = causal;
  p.is_bf16 = bf16;
  p.k_row_stride = p.v_row_stride = static_cast<int64_t>(hkv) * D;
  p.o_row_stride = static_cast<int64_t>(hq) * D;
  p.k_head_stride = p.v_head_stride = p.o_head_stride = D;
}

// Mask fields: byte mask with the given strides (column stride 1; head stride 0 broadcasts), row_div =
// B_q (2D) or 1 (1D), key blocks of bk keys, nb_k of them per sequence.
inline void fill_attn_mask(AttnParams& p, const uint8_t* mask, int64_t stride_b, int64_t stride_h, int64_t stride_row,
                           int mask_heads, int row_div, int bk, int nb_k) {
  p.mask = mask;
  p.mask_stride_b = stride_b, p.mask_stride_h = stride_h, p.mask_stride_row = stride_row, p.mask_stride_col = 1;
  p.mask_heads = mask_heads;
  p.mask_row_div = p.block_size_q = row_div;
  p.block_size_k = bk;
  p.nb_k = nb_k;
}

// Row tiling as the API layer sets it for a kernel of tile_rows rows: a 1D mask shared by the heads of
// a GQA group packs up to 16 of them per tile (the largest divisor of the group), else one head.
inline void fill_attn_tiling(AttnParams& p, int tile_rows) {
  int pack = 1;
  if (p.mask_row_div == 1 && p.mask_heads != p.h_q && p.group > 1)
    for (int x = 1; x <= 16 && x <= p.group && x <= tile_rows; ++x)
      if (p.group % x == 0) pack = x;
  p.pack = pack;
  p.tile_tokens = tile_rows / pack;
  p.n_tok_tiles = (p.max_seqlen_q + p.tile_tokens - 1) / p.tile_tokens;
  p.n_row_tiles = (p.group / pack) * p.n_tok_tiles;
}

// The work queue a tiling's item order should hold (csrc/attention/tile_scheduler.h "Work queue"), written
// from its definition: sections of `section` kv heads > token tile, last first > sequence > kv head > head
// slot, the items whose token tile starts inside the sequence (seq_q[b], clamped to max_seqlen_q), each as
// its item number (tile_scheduler.h item_at).
inline std::vector<int> want_item_order(const AttnParams& p, const std::vector<int>& seq_q, int section) {
  const int slots = p.group / p.pack;
  const long long per_tt = static_cast<long long>(p.batch) * p.h_kv * slots;
  std::vector<int> order;
  for (int h0 = 0; h0 < p.h_kv; h0 += section)
    for (int tt = p.n_tok_tiles - 1; tt >= 0; --tt)
      for (int b = 0; b < p.batch; ++b) {
        if (tt * p.tile_tokens >= std::min(seq_q[b], p.max_seqlen_q)) continue;
        for (int hk = h0; hk < std::min(p.h_kv, h0 + section); ++hk)
          for (int s = 0; s < slots; ++s)
            order.push_back(static_cast<int>((p.n_tok_tiles - 1 - tt) * per_tt + (static_cast<long long>(b) * p.h_kv + hk) * slots + s));
      }
  return order;
}

// ---- decode ------------------------------------------------------------------------------------
struct DecodeCase {
  const char* name;
  bool bf16, left_pad, first_unmasked, use_indices;
  std::vector<int> lens;  // cache_seqlens (clamped to [0, S] by the kernels)
  int S, hq, hkv, bk, splits, min_split_keys;
  double density;
  int n_tok = 1;      // L new tokens per sequence
  int page_size = 0;  // > 0: paged cache (S / page_size pages per sequence, shuffled over a shared pool)
};

struct DecodeData {
  DecodeCase c;
  int D, B, nb, K, group, max_pages, num_pages;
  std::vector<uint16_t> q;  // [B, L, hq, D]
  std::vector<uint16_t> k, v;  // dense [B, S, hkv, D]; paged [num_pages, page_size, hkv, D]
  std::vector<uint8_t> mask;   // [B, hkv, nb]
  std::vector<int> idx;        // [B, hkv, K], -1 padded
  std::vector<int> table;      // paged: [B, max_pages]
  size_t out_elems() const { return static_cast<size_t>(B) * c.n_tok * c.hq * D; }
  size_t lse_elems() const { return static_cast<size_t>(B) * c.n_tok * c.hq; }
  int sel_cap() const { return std::max(1, c.use_indices ? std::min(nb, K + 1) : nb); }
  size_t sel_elems() const { return static_cast<size_t>(B) * c.hkv * (1 + sel_cap()); }
  // physical K/V row (head 0 offset / (hkv * D)) of logical slot s of sequence b
  size_t kv_row(int b, int s) const {
    if (c.page_size == 0) return static_cast<size_t>(b) * c.S + s;
    return static_cast<size_t>(table[static_cast<size_t>(b) * max_pages + s / c.page_size]) * c.page_size +
           s % c.page_size;
  }
};

inline DecodeData make_decode_data(const DecodeCase& c, int D, std::mt19937& rng) {
  DecodeData d;
  d.c = c;
  d.D = D;
  d.B = static_cast<int>(c.lens.size());
  d.nb = (c.S + c.bk - 1) / c.bk;
  d.group = c.hq / c.hkv;
  d.max_pages = c.page_size ? c.S / c.page_size : 0;
  d.num_pages = c.page_size ? d.B * d.max_pages + 3 : 0;  // 3 pages no table entry points to
  std::uniform_real_distribution<double> U(0, 1);
  const size_t kv_rows = c.page_size ? static_cast<size_t>(d.num_pages) * c.page_size : static_cast<size_t>(d.B) * c.S;
  d.q = random_elems(static_cast<size_t>(d.B) * c.n_tok * c.hq * D, c.bf16, rng);
  d.k = random_elems(kv_rows * c.hkv * D, c.bf16, rng);
  d.v = random_elems(d.k.size(), c.bf16, rng);
  d.mask.resize(static_cast<size_t>(d.B) * c.hkv * d.nb);
  for (auto& m : d.mask) m = U(rng) < c.density;
  d.K = std::max(1, d.nb / 2);
  d.idx.assign(static_cast<size_t>(d.B) * c.hkv * d.K, -1);
  for (int bh = 0; bh < d.B * c.hkv; ++bh) {
    std::vector<int> perm(d.nb);
    for (int i = 0; i < d.nb; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int i = 0; i < d.K; ++i) d.idx[static_cast<size_t>(bh) * d.K + i] = U(rng) < 0.8 ? perm[i] : -1;
    // some duplicates (outside SPEC's contract; the kernels count a listed block once, as the reference)
    for (int i = 1; i < d.K; ++i)
      if (U(rng) < 0.1) d.idx[static_cast<size_t>(bh) * d.K + i] = d.idx[static_cast<size_t>(bh) * d.K + rng() % i];
  }
  if (c.page_size) {
    std::vector<int> pages(d.num_pages);
    for (int i = 0; i < d.num_pages; ++i) pages[i] = i;
    std::shuffle(pages.begin(), pages.end(), rng);
    d.table.assign(pages.begin(), pages.begin() + static_cast<size_t>(d.B) * d.max_pages);
  }
  return d;
}

// Where the kernels read and write (host or device copies of DecodeData's arrays and the outputs).
struct DecodeBuffers {
  const void *q, *k, *v;
  void* out;
  float* lse;
  const int* lens;
  const uint8_t* mask;
  const int* idx;
  const int* table;    // paged only
  int* sel;            // DecodeData::sel_elems() ints
  float* o_partial;    // [splits, B * L * hq, D]
  float* lse_partial;  // [splits, B * L * hq]
};

inline void fill_decode_params(DecodeParams& p, const DecodeData& d, const DecodeBuffers& m) {
  const DecodeCase& c = d.c;
  const int64_t D = d.D;
  p = DecodeParams{};
  p.batch = d.B, p.n_tok = c.n_tok;
  p.h_q = c.hq, p.h_kv = c.hkv, p.group = d.group, p.head_dim = d.D;
  p.seqlen_max = c.S, p.block_size = c.bk, p.num_blocks = d.nb;
  p.scale = 1.f / std::sqrt(static_cast<float>(d.D));
  p.scale_log2 = p.scale * 1.4426950408889634f;
  p.is_bf16 = c.bf16;
  p.left_pad = c.left_pad;
  p.first_block_unmasked = c.first_unmasked;
  p.q = m.q;
  p.q_tok_stride = p.o_tok_stride = c.hq * D;
  p.q_batch_stride = p.o_batch_stride = c.n_tok * p.q_tok_stride;
  p.q_head_stride = p.o_head_stride = D;
  p.k = m.k;
  p.v = m.v;
  if (c.page_size)
    p.k_addr = KvAddr{c.page_size * c.hkv * D, c.hkv * D, m.table, d.max_pages, c.page_size, d.num_pages};
  else
    p.k_addr = KvAddr{c.S * c.hkv * D, c.hkv * D, nullptr, 0, 0, 0};
  p.v_addr = p.k_addr;
  p.k_head_stride = p.v_head_stride = D;
  p.out = m.out;
  p.lse = m.lse;
  p.cache_seqlens = m.lens;
  if (c.use_indices) {
    p.block_indices = m.idx;
    p.idx_stride_b = static_cast<int64_t>(c.hkv) * d.K;
    p.idx_stride_h = d.K;
    p.idx_stride_k = 1;
    p.num_indices = d.K;
  } else {
    p.block_mask = m.mask;
    p.mask_stride_b = static_cast<int64_t>(c.hkv) * d.nb;
    p.mask_stride_h = d.nb;
    p.mask_stride_n = 1;
  }
  p.sel_cap = d.sel_cap();
  p.sel_count = m.sel;
  p.sel_list = m.sel ? m.sel + d.B * c.hkv : nullptr;
  p.num_splits = c.splits;
  p.min_split_keys = c.min_split_keys;
  p.o_partial = m.o_partial;
  p.lse_partial = m.lse_partial;
}

// float64 reference of every (sequence, token, q head) row, compared with out / lse as the kernels
// left them. Prints one line; returns true when the case passes.
inline bool check_decode(const DecodeData& d, const std::vector<uint16_t>& out, const std::vector<float>& lse,
                         const char* label) {
  const DecodeCase& c = d.c;
  const int D = d.D, L = c.n_tok;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  double err_o = 0, err_l = 0;
  int empty = 0, bad_empty = 0;
  for (int b = 0; b < d.B; ++b) {
    const int len = std::min(std::max(c.lens[b], 0), c.S);
    const int lo = c.left_pad ? c.S - len : 0, hi = c.left_pad ? c.S : len;
    const int blo = len > 0 ? lo / c.bk : 0, bhi = len > 0 ? (hi + c.bk - 1) / c.bk : 0;
    for (int hk = 0; hk < c.hkv; ++hk) {
      std::set<int> sel;
      for (int n = blo; n < bhi; ++n) {
        bool s = false;
        if (c.use_indices) {
          for (int i = 0; i < d.K; ++i) s |= d.idx[(static_cast<size_t>(b) * c.hkv + hk) * d.K + i] == n;
        } else {
          s = d.mask[(static_cast<size_t>(b) * c.hkv + hk) * d.nb + n] != 0;
        }
        if (s || (c.first_unmasked && len > 0 && n == blo)) sel.insert(n);
      }
      for (int t = 0; t < L; ++t)
        for (int h = hk * d.group; h < (hk + 1) * d.group; ++h) {
          const size_t row = (static_cast<size_t>(b) * L + t) * c.hq + h;
          const int limit = hi - (L - 1 - t);  // token t sees the valid slots below its own
          std::vector<std::pair<size_t, double>> s;  // (kv row, score)
          for (int n : sel)
            for (int slot = n * c.bk; slot < (n + 1) * c.bk; ++slot)
              if (slot >= lo && slot < hi && slot < limit) {
                const size_t kr = d.kv_row(b, slot) * c.hkv + hk;
                double acc = 0;
                for (int e = 0; e < D; ++e)
                  acc += static_cast<double>(from_bits(d.q[row * D + e], c.bf16)) * from_bits(d.k[kr * D + e], c.bf16);
                s.push_back({kr, acc * scale});
              }
          if (s.empty()) {
            ++empty;
            bool ok = lse[row] == -INFINITY;
            for (int e = 0; e < D; ++e) ok &= from_bits(out[row * D + e], c.bf16) == 0.f;  // +0 or -0
            bad_empty += !ok;
            continue;
          }
          double mx = -INFINITY, l = 0;
          for (auto& e : s) mx = std::max(mx, e.second);
          for (auto& e : s) l += std::exp(e.second - mx);
          upd(err_l, std::fabs(mx + std::log(l) - lse[row]));
          for (int e = 0; e < D; ++e) {
            double o = 0;
            for (auto& x : s) o += std::exp(x.second - mx) / l * from_bits(d.v[x.first * D + e], c.bf16);
            upd(err_o, std::fabs(o - from_bits(out[row * D + e], c.bf16)));
          }
        }
    }
  }
  const double tol = c.bf16 ? 4e-2 : 6e-3;
  const bool ok = err_o < tol && err_l < 1e-3 && bad_empty == 0;
  std::printf("  decode  %-40s %s out %.1e lse %.1e, %d empty rows (%d wrong)  %s\n", c.name, label, err_o, err_l,
              empty, bad_empty, ok ? "ok" : "FAIL");
  return ok;
}

// ---- pooling -----------------------------------------------------------------------------------
struct PoolCase {
  const char* name;
  bool bf16, causal, gqa;
  std::vector<int> lens;
  int hq, hkv, bs;
};

struct PoolData {
  PoolCase c;
  int D, B, T, nb, max_len, h_out, group;
  std::vector<int> cu;         // [B + 1]
  std::vector<uint16_t> q, k;  // [T, hq, D], [T, hkv, D]
  size_t p1_elems() const { return static_cast<size_t>(h_out) * T * nb; }
  size_t p2_elems() const { return static_cast<size_t>(B) * h_out * nb * nb; }
};

inline PoolData make_pool_data(const PoolCase& c, int D, std::mt19937& rng) {
  PoolData d;
  d.c = c;
  d.D = D;
  d.B = static_cast<int>(c.lens.size());
  d.cu = {0};
  for (int l : c.lens) d.cu.push_back(d.cu.back() + l);
  d.T = d.cu.back() + 3;  // 3 token rows after the last sequence: zero rows in pooled_1d
  d.max_len = *std::max_element(c.lens.begin(), c.lens.end());
  d.nb = (d.max_len + c.bs - 1) / c.bs;
  d.group = c.hq / c.hkv;
  d.h_out = c.gqa ? c.hkv : c.hq;
  d.q = random_elems(static_cast<size_t>(d.T) * c.hq * D, c.bf16, rng);
  d.k = random_elems(static_cast<size_t>(d.T) * c.hkv * D, c.bf16, rng);
  return d;
}

// pooled_2d and pooled_1d_accum must be zero-filled before the launch (PoolingParams).
inline void fill_pooling_params(PoolingParams& p, const PoolData& d, const void* q, const void* k, const int* cu,
                                float* pooled_2d, void* pooled_1d, float* pooled_1d_accum) {
  const PoolCase& c = d.c;
  p = PoolingParams{};
  p.batch = d.B, p.total = d.T, p.max_seqlen = d.max_len;
  p.h_q = c.hq, p.h_kv = c.hkv, p.group = d.group, p.h_out = d.h_out, p.head_dim = d.D;
  p.block_size = c.bs, p.nb = d.nb;
  p.scale_log2 = 1.4426950408889634f / std::sqrt(static_cast<float>(d.D));
  p.causal = c.causal;
  p.gqa_reduce = c.gqa;
  p.is_bf16 = c.bf16;
  p.q = q, p.q_row_stride = static_cast<int64_t>(c.hq) * d.D, p.q_head_stride = d.D;  // [T, hq, D]
  p.k = k, p.k_row_stride = static_cast<int64_t>(c.hkv) * d.D, p.k_head_stride = d.D;  // [T, hkv, D]
  p.cu_seqlens = cu;
  p.pooled_2d = pooled_2d;
  p.pooled_1d = pooled_1d;
  p.pooled_1d_accum = c.gqa ? pooled_1d_accum : nullptr;
}

// float64 reference of both maps, compared with the kernels' p1 (q dtype bits) / p2 (float32).
inline bool check_pooling(const PoolData& d, const std::vector<uint16_t>& p1, const std::vector<float>& p2,
                          const char* label) {
  const PoolCase& c = d.c;
  const int D = d.D, nb = d.nb, T = d.T;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> r1(d.p1_elems(), 0.0), r2(d.p2_elems(), 0.0);
  for (int b = 0; b < d.B; ++b) {
    const int L = c.lens[b], q0 = d.cu[b];
    for (int h = 0; h < c.hq; ++h) {
      const int hk = h / d.group, ho = c.gqa ? hk : h;
      for (int i = 0; i < L; ++i) {
        const int lim = c.causal ? i + 1 : L;
        std::vector<double> s(lim);
        double m = -INFINITY;
        for (int j = 0; j < lim; ++j) {
          double a = 0;
          for (int e = 0; e < D; ++e)
            a += static_cast<double>(from_bits(d.q[(static_cast<size_t>(q0 + i) * c.hq + h) * D + e], c.bf16)) *
                 from_bits(d.k[(static_cast<size_t>(q0 + j) * c.hkv + hk) * D + e], c.bf16);
          s[j] = a * scale;
          m = std::max(m, s[j]);
        }
        double l = 0;
        for (int j = 0; j < lim; ++j) l += std::exp(s[j] - m);
        for (int j = 0; j < lim; ++j) {
          const double P = std::exp(s[j] - m) / l;
          double& e1 = r1[(static_cast<size_t>(ho) * T + q0 + i) * nb + j / c.bs];
          e1 = std::max(e1, P);
          double& e2 = r2[((static_cast<size_t>(b) * d.h_out + ho) * nb + i / c.bs) * nb + j / c.bs];
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
  normalise(r2, static_cast<size_t>(d.B) * d.h_out * nb);
  if (c.gqa) normalise(r1, static_cast<size_t>(d.h_out) * T);
  double e1 = 0, e2 = 0;
  for (size_t e = 0; e < r1.size(); ++e) upd(e1, std::fabs(r1[e] - from_bits(p1[e], c.bf16)));
  for (size_t e = 0; e < r2.size(); ++e) upd(e2, std::fabs(r2[e] - p2[e]));
  const double tol = c.bf16 ? 8e-3 : 2e-3;
  const bool ok = e1 < tol && e2 < 2e-3;
  std::printf("  pooling %-40s %s 1d %.1e 2d %.1e  %s\n", c.name, label, e1, e2, ok ? "ok" : "FAIL");
  return ok;
}

}  // namespace selftest
}  // namespace seer
