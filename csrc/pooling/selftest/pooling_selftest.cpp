// Standalone self-test of the attention-pooling kernels (no torch): calls run_attn_pooling with device
// buffers and compares pooled_1d / pooled_2d with the float64 reference of
// csrc/common/selftest/reference.h (pooled_1d is pre-filled with NaN: every row must be written, rows
// after the last sequence as zeros). Covers causal and non-causal, gqa_reduce, several sequences of
// lengths around the 128-row tile (and a length-1 one), pooling blocks 16 .. 256, long rows whose
// visible blocks exceed one staging pass, head dims 64 / 128 / 256, fp16 and bf16.
// Built and run with the other self-tests by `make selftest` (cmake target seer_pooling_selftest);
// exits non-zero if any case fails.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common/selftest/check.h"
#include "common/selftest/reference.h"
#include "pooling/pooling_params.h"

using namespace seer;
using namespace seer::selftest;

static bool run_case(const PoolCase& c, int D, std::mt19937& rng) {
  const PoolData d = make_pool_data(c, D, rng);
  DeviceArena dev;
  float* p2 = dev.filled(d.p2_elems(), 0.f);  // zero-filled before the launch (PoolingParams)
  uint16_t* p1 = dev.filled(d.p1_elems(), kNanBits);
  float* acc = dev.filled(c.gqa ? d.p1_elems() : 0, 0.f);
  PoolingParams p;
  fill_pooling_params(p, d, dev.copy(d.q), dev.copy(d.k), dev.copy(d.cu), p2, p1, acc);
  const int rc = run_attn_pooling(p, nullptr);
  if (rc != 0) {
    std::printf("  pooling %-40s run_attn_pooling returned %d  FAIL\n", c.name, rc);
    return false;
  }
  CK(cudaDeviceSynchronize());
  char label[32];
  std::snprintf(label, sizeof(label), "D%-3d %s", D, c.bf16 ? "bf16" : "fp16");
  return check_pooling(d, to_host(p1, d.p1_elems()), to_host(p2, d.p2_elems()), label);
}

int main(int argc, char** argv) {
  std::mt19937 rng(argc > 1 ? std::atoi(argv[1]) : 11);
  // name, bf16, causal, gqa_reduce, lens, hq, hkv, block size
  const std::vector<PoolCase> cases = {
      {"causal B64", true, true, false, {200, 70}, 2, 1, 64},
      {"causal GQA reduce B32", false, true, true, {150}, 4, 2, 32},
      {"non-causal B16", true, false, false, {90, 40}, 1, 1, 16},
      {"non-causal GQA reduce B128, len 1", false, false, true, {300, 1, 129}, 6, 2, 128},
      {"causal B256, 3 sequences", true, true, false, {513, 256, 17}, 2, 2, 256},
      {"causal B16, 69 key blocks", false, true, false, {1100}, 1, 1, 16},
      {"non-causal GQA reduce B16, 44 key blocks", true, false, true, {700, 64}, 4, 1, 16},
  };
  return sweep("pooling", cases, [&](const auto& c, int D) { return run_case(c, D, rng); });
}
