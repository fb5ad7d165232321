// Standalone self-test of the block-sparse decode kernels (no torch): calls run_block_sparse_decode with
// device buffers and compares out / lse with the float64 reference of csrc/common/selftest/reference.h
// (out and lse are pre-filled with NaN: every row must be written; rows with no key: out 0, lse -inf).
// Covers dense and paged caches (shuffled pages, a block table, spare pages), block masks and block
// indices (-1 padded), right / left padding, first_block_unmasked, L = 1 .. 16 new tokens, GQA groups
// of 1 .. 20 (several 16-row chunks), lengths 0 and above S_max (clamped), explicit and automatic
// split counts (row-adaptive splitting on and off), head dims 64 / 128 / 256, fp16 and bf16.
// Built and run with the other self-tests by `make selftest` (cmake target seer_decode_selftest);
// exits non-zero if any case fails.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common/selftest/check.h"
#include "common/selftest/reference.h"
#include "decode/decode_params.h"

using namespace seer;
using namespace seer::selftest;

static bool run_case(const DecodeCase& c, int D, std::mt19937& rng) {
  const DecodeData d = make_decode_data(c, D, rng);
  DeviceArena dev;
  DecodeBuffers m{};
  m.q = dev.copy(d.q);
  m.k = dev.copy(d.k);
  m.v = dev.copy(d.v);
  m.out = dev.filled(d.out_elems(), kNanBits);
  m.lse = dev.filled(d.lse_elems(), NAN);
  m.lens = dev.copy(c.lens);
  m.mask = dev.copy(d.mask);
  m.idx = dev.copy(d.idx);
  m.table = c.page_size ? dev.copy(d.table) : nullptr;
  m.sel = dev.filled(d.sel_elems(), -7);
  DecodeParams p;
  fill_decode_params(p, d, m);
  // As the API layer: resolve the split count (0 = from the device), then size the workspace.
  p.num_splits = decode_num_splits(p, c.splits);
  if (p.num_splits > 1) {
    p.o_partial = dev.filled(static_cast<size_t>(p.num_splits) * d.out_elems(), NAN);
    p.lse_partial = dev.filled(static_cast<size_t>(p.num_splits) * d.lse_elems(), NAN);
  }
  const int rc = run_block_sparse_decode(p, nullptr);
  if (rc != 0) {
    std::printf("  decode  %-40s run_block_sparse_decode returned %d (%s)  FAIL\n", c.name, rc,
                decode_error_string(rc));
    return false;
  }
  CK(cudaDeviceSynchronize());
  char label[48];
  std::snprintf(label, sizeof(label), "D%-3d %s splits %2d", D, c.bf16 ? "bf16" : "fp16", p.num_splits);
  return check_decode(d, to_host(static_cast<const uint16_t*>(m.out), d.out_elems()), to_host(m.lse, d.lse_elems()),
                      label);
}

int main(int argc, char** argv) {
  std::mt19937 rng(argc > 1 ? std::atoi(argv[1]) : 11);
  // name, bf16, left_pad, first_unmasked, use_indices, lens, S, hq, hkv, bk, splits (0: auto), min_split_keys,
  // density, n_tok (L), page_size (0: dense)
  const std::vector<DecodeCase> cases = {
      {"mask right-pad 1 split", true, false, false, false, {300, 0, 17}, 320, 8, 2, 32, 1, 0, 0.5},
      {"indices left-pad 3 splits", false, true, false, true, {200, 64}, 256, 4, 1, 16, 3, 64, 0.5},
      {"left-pad first block, group 20", true, true, true, false, {150, 70}, 192, 20, 1, 48, 2, 0, 0.3},
      {"mask auto splits, len > S (clamped)", false, false, false, false, {1000, 513, 1}, 640, 8, 8, 64, 0, 256, 0.6},
      {"indices auto splits, group 8", true, false, true, true, {900, 33}, 1024, 16, 2, 128, 0, 256, 0.4},
      {"paged mask, page 16", true, false, false, false, {200, 0, 96}, 256, 4, 2, 32, 0, 256, 0.6, 1, 16},
      {"paged indices, page 64, L 4", false, false, true, true, {250, 64, 5}, 320, 8, 2, 64, 2, 0, 0.5, 4, 64},
      {"paged mask, page 128, L 3, group 4", true, false, false, false, {384, 130}, 384, 8, 2, 16, 5, 64, 0.3, 3,
       128},
      {"mask L 16, group 2 (2 row chunks)", false, false, false, false, {100, 40}, 128, 4, 2, 16, 1, 0, 0.7, 16},
      {"left-pad indices L 2, 4 splits", true, true, false, true, {120, 7}, 160, 6, 3, 32, 4, 0, 0.5, 2},
      {"empty mask: every row 0 / -inf", false, false, false, false, {64, 10}, 64, 2, 1, 16, 2, 0, 0.0},
  };
  return sweep("decode", cases, [&](const auto& c, int D) { return run_case(c, D, rng); });
}
