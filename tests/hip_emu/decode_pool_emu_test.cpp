// Runs the HIP decode and pooling kernels (csrc/decode/hip/, csrc/pooling/hip/, unmodified source) on the
// CPU through tests/hip_emu/hip_emu.h and compares them with the float64 reference of SPEC.md sections 3
// and 4 that the GPU self-tests use too (csrc/common/selftest/reference.h: problems, params, reference).
// Built and run by tests/test_hip_emu.py.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "common/selftest/reference.h"
#include "decode/hip/decode_kernel_hip.h"
#include "pooling/hip/pooling_kernel_hip.h"

using namespace seer;

static int failures = 0;

template <typename Elem, int D>
static void run_decode(const selftest::DecodeCase& c, std::mt19937& rng) {
  const selftest::DecodeData d = selftest::make_decode_data(c, D, rng);
  std::vector<uint16_t> out(d.out_elems(), selftest::kNanBits);
  // o_partial NaN-filled: a split that writes no partial (empty) must not reach the output.
  std::vector<float> lse(d.lse_elems(), std::nanf("")), op(size_t(c.splits) * d.out_elems(), std::nanf("")),
      lp(size_t(c.splits) * d.lse_elems());
  DecodeParams p;
  selftest::fill_decode_params(p, d, {d.q.data(), d.k.data(), d.v.data(), out.data(), lse.data(), c.lens.data(),
                                      d.mask.data(), d.idx.data(), d.table.data(), nullptr, op.data(), lp.data()});
  const DecodeParams pc = p;
  const int chunks = (c.n_tok * d.group + hipdecode::kRows - 1) / hipdecode::kRows;  // rows: (token, q head)
  seer_emu::launch(c.splits * chunks, c.hkv, d.B, hipdecode::kThreads, [&] { hipdecode::decode_split_kernel_hip<Elem, D>(pc); });
  if (c.splits > 1) seer_emu::launch(d.B * c.n_tok * c.hq, 1, 1, 64, [&] { hipdecode::decode_combine_kernel_hip<Elem, D>(pc); });
  failures += !selftest::check_decode(d, out, lse, "emulated");
}

template <typename Elem, int D>
static void run_pooling(const selftest::PoolCase& c, std::mt19937& rng) {
  const selftest::PoolData d = selftest::make_pool_data(c, D, rng);
  std::vector<float> p2(d.p2_elems(), 0.f), acc1(c.gqa ? d.p1_elems() : 1, 0.f);
  std::vector<uint16_t> p1(d.p1_elems(), selftest::kNanBits);
  PoolingParams p;
  selftest::fill_pooling_params(p, d, d.q.data(), d.k.data(), d.cu.data(), p2.data(), p1.data(), acc1.data());
  const PoolingParams pc = p;
  const int B = d.B, T = d.T, nb = d.nb, h_out = d.h_out;
  const int n_m = (d.max_len + hipattn::kBlockM - 1) / hipattn::kBlockM;
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
  failures += !selftest::check_pooling(d, p1, p2, "emulated");
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
  // L > 1 (last field): L = 4 x group 4 (one 16-row chunk of 4 tokens; lengths 2 and 0: tokens with no
  // slot), L = 16 x group 1 (16 tokens per chunk, one per row), with splits.
  run_decode<Fp16, 64>({"L4 group 4 mask 2 splits", false, false, false, false, {90, 2, 0, 33}, 96, 8, 2, 16, 2, 0, 0.6, 4},
                       rng);
  run_decode<Bf16, 128>({"L16 group 1 indices left-pad", true, true, true, true, {60, 20, 9}, 64, 2, 2, 16, 3, 0, 0.7, 16},
                        rng);
  // Paged cache (page_size 32, pages shuffled over a shared pool), L = 2.
  run_decode<Bf16, 64>({"paged 32 L2 group 2 mask", true, false, true, false, {100, 31}, 128, 4, 2, 32, 2, 0, 0.6, 2, 32},
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
