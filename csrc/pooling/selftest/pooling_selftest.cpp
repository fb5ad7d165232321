// Standalone self-test of the attention-pooling kernels (no torch): calls run_attn_pooling with device
// buffers and compares pooled_1d / pooled_2d with the float64 reference of
// csrc/common/selftest/reference.h (pooled_1d is pre-filled with NaN: every row must be written, rows
// after the last sequence as zeros). Covers causal and non-causal, gqa_reduce, several sequences of
// lengths around the 128-row tile (and a length-1 one), pooling blocks 16 .. 256, long rows whose
// visible blocks exceed the shared-memory staging (the second sweep), head dims 64 / 128 / 256, fp16 and bf16; on a compute
// capability 9.0 device of an sm_90a build every D 64 / 128 run is repeated with the wgmma S tiles
// (PoolingParams::wgmma).
// Built and run with the other self-tests by `make selftest` (cmake target seer_pooling_selftest);
// exits non-zero if any case fails. `seer_pooling_selftest --time`: P1 lengths of WORKLOADS.md (32 q / 8
// kv heads, D 128, bf16, causal, block 64), per head and gqa_reduce, both S-tile paths (CUDA events,
// median of 10; no reference check).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "common/device_facts.h"
#include "common/selftest/check.h"
#include "common/selftest/reference.h"
#include "pooling/pooling_params.h"

using namespace seer;
using namespace seer::selftest;

// Runs one case on one S-tile path (wgmma or mma.sync); time_reps > 0: times that many runs after a
// warm-up instead of checking.
static bool run_path(const PoolCase& c, const PoolData& d, bool wgmma, int time_reps = 0) {
  DeviceArena dev;
  float* p2 = dev.filled(d.p2_elems(), 0.f);  // zero-filled before the launch (PoolingParams)
  uint16_t* p1 = dev.filled(d.p1_elems(), kNanBits);
  float* acc = dev.filled(c.gqa ? d.p1_elems() : 0, 0.f);
  PoolingParams p;
  fill_pooling_params(p, d, dev.copy(d.q), dev.copy(d.k), dev.copy(d.cu), p2, p1, acc);
  p.wgmma = wgmma;
  const int rc = run_attn_pooling(p, nullptr);
  if (rc != 0) {
    std::printf("  pooling %-40s run_attn_pooling returned %d  FAIL\n", c.name, rc);
    return false;
  }
  CK(cudaDeviceSynchronize());
  if (time_reps > 0) {  // outputs are not re-zeroed between runs: the timing of the same work
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> ms(time_reps);
    for (int i = 0; i < time_reps; ++i) {
      CK(cudaEventRecord(e0));
      CK(static_cast<cudaError_t>(run_attn_pooling(p, nullptr)));
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      CK(cudaEventElapsedTime(&ms[i], e0, e1));
    }
    std::sort(ms.begin(), ms.end());
    std::printf("  %s: median %.3f ms (min %.3f)\n", wgmma ? "wgmma S tiles" : "mma.sync S tiles", ms[time_reps / 2], ms[0]);
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return true;
  }
  char label[48];
  std::snprintf(label, sizeof(label), "D%-3d %s%s", d.D, c.bf16 ? "bf16" : "fp16", wgmma ? " wgmma" : "");
  return check_pooling(d, to_host(p1, d.p1_elems()), to_host(p2, d.p2_elems()), label);
}

static bool run_case(const PoolCase& c, int D, std::mt19937& rng) {
  const PoolData d = make_pool_data(c, D, rng);
  bool ok = run_path(c, d, false);
  if (use_sm90_kernels(D, 0)) ok = run_path(c, d, true) && ok;
  return ok;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--time") == 0) {
    std::mt19937 trng(7);
    const std::vector<int> p1 = {16384, 8000, 4096, 2100, 1024, 700, 256, 77};
    bool ok = true;
    for (bool gqa : {false, true}) {
      const PoolCase c{"P1", true, true, gqa, p1, 32, 8, 64};
      const PoolData d = make_pool_data(c, 128, trng);
      std::printf("time: pooling P1 lengths h_q=32 h_kv=8 D=128 bf16 causal block 64 %s\n", gqa ? "gqa_reduce" : "per head");
      ok = run_path(c, d, false, 10) && ok;
      if (use_sm90_kernels(128, 0)) ok = run_path(c, d, true, 10) && ok;
    }
    return ok ? 0 : 1;
  }
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
      // More visible blocks than the shared-memory staging holds (~160-330 by D): the second sweep.
      {"causal B16, 400 key blocks (second sweep)", false, true, false, {6400}, 1, 1, 16},
  };
  return sweep("pooling", cases, [&](const auto& c, int D) { return run_case(c, D, rng); });
}
