// Standalone self-test of the block-sparse decode kernels (no torch): calls run_block_sparse_decode with
// device buffers and compares out / lse with the float64 reference of csrc/common/selftest/reference.h
// (out and lse are pre-filled with NaN: every row must be written; rows with no key: out 0, lse -inf).
// Covers dense and paged caches (shuffled pages, a block table, spare pages), block masks and block
// indices (-1 padded), right / left padding, first_block_unmasked, L = 1 .. 16 new tokens, GQA groups
// of 1 .. 20 (several 16-row chunks), lengths 0 and above S_max (clamped), explicit and automatic
// split counts (row-adaptive splitting on and off), head dims 64 / 128 / 256, fp16 and bf16.
// Built and run with the other self-tests by `make selftest` (cmake target seer_decode_selftest);
// exits non-zero if any case fails.
// `seer_decode_selftest --time`: D1 of WORKLOADS.md (batch 32, cache lengths uniform in [1024, 32768] with
// one at 32768, 32 q / 8 kv heads, D 128, bf16), block masks of density 0 (nothing kept: the fixed cost of
// the three kernels) / 0.1 / 0.5 / 1, blocks of 64 and 32 keys, contiguous and paged (page 16) caches: the
// time of one decode (select, split, combine kernels, min_split_keys as the op) for the automatic split
// count and for 16 / 12 / 8 splits (the most a row may use; rows listing fewer blocks use fewer), two ways:
// "hot", a CUDA graph replayed 50 times back to back (masks, lists and the q tile stay in L2); "cold", the
// median of 30 replays each after a 256 MiB write that flushes L2, as benchmarks/ time every op. K / V
// values do not matter for the time.
#include <algorithm>
#include <cmath>
#include <cstring>
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

// --time (see the top of the file). Returns the exit code.
static int time_d1() {
  const int B = 32, S = 32768, hq = 32, hkv = 8, D = 128;
  std::mt19937 rng(5);
  std::vector<int> lens(B);
  std::uniform_int_distribution<int> len_d(1024, S);
  for (int b = 0; b < B; ++b) lens[b] = b == 0 ? S : len_d(rng);
  DeviceArena dev;
  const size_t kv_elems = static_cast<size_t>(B) * S * hkv * D;
  uint16_t* k = dev.alloc<uint16_t>(kv_elems);
  uint16_t* v = dev.alloc<uint16_t>(kv_elems);
  CK(cudaMemset(k, 0x3c, kv_elems * 2));  // bf16 0x3c3c = 0.0115
  CK(cudaMemset(v, 0x3c, kv_elems * 2));
  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const size_t flush_bytes = size_t{256} << 20;
  void* flush = dev.alloc<uint8_t>(flush_bytes);
  for (int page : {0, 16})
    for (int bk : {64, 32})
      for (double density : {0.0, 0.1, 0.5, 1.0}) {
        DecodeCase c{"D1", true, false, false, false, lens, S, hq, hkv, bk, 0, 0, density, 1, page};
        DecodeData d;
        d.c = c;
        d.D = D;
        d.B = B;
        d.nb = S / bk;
        d.group = hq / hkv;
        d.max_pages = page ? S / page : 0;
        d.num_pages = page ? B * d.max_pages : 0;
        d.K = 1;
        std::uniform_real_distribution<double> U(0, 1);
        d.mask.resize(static_cast<size_t>(B) * hkv * d.nb);
        for (auto& m : d.mask) m = U(rng) < density;
        if (page) {  // pages of the pool in a shuffled order
          d.table.resize(static_cast<size_t>(B) * d.max_pages);
          for (size_t i = 0; i < d.table.size(); ++i) d.table[i] = static_cast<int>(i);
          std::shuffle(d.table.begin(), d.table.end(), rng);
        }
        std::vector<uint16_t> q(static_cast<size_t>(B) * hq * D, 0x3c3c);
        DecodeBuffers m{};
        m.q = dev.copy(q);
        m.k = k;
        m.v = v;
        m.out = dev.alloc<uint16_t>(d.out_elems());
        m.lse = dev.alloc<float>(d.lse_elems());
        m.lens = dev.copy(lens);
        m.mask = dev.copy(d.mask);
        m.idx = nullptr;
        m.table = page ? dev.copy(d.table) : nullptr;
        m.sel = dev.alloc<int>(d.sel_elems());
        std::printf("time: D1 bf16 D 128 %s block %d density %.1f:", page ? "paged16" : "contiguous", bk, density);
        for (int splits : {0, 16, 12, 8}) {  // 0: automatic (the op's choice); else requested splits per row
          c.min_split_keys = kDecodeMinSplitKeys;  // as the op
          d.c = c;
          DecodeParams p;
          fill_decode_params(p, d, m);
          p.num_splits = decode_num_splits(p, splits);
          DeviceArena ws;
          if (p.num_splits > 1) {
            p.o_partial = ws.alloc<float>(static_cast<size_t>(p.num_splits) * d.out_elems());
            p.lse_partial = ws.alloc<float>(static_cast<size_t>(p.num_splits) * d.lse_elems());
          }
          for (int i = 0; i < 3; ++i)
            if (run_block_sparse_decode(p, stream) != 0) {
              std::printf(" run_block_sparse_decode failed\n");
              return 1;
            }
          cudaGraph_t graph;
          cudaGraphExec_t exec;
          CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
          const int rc = run_block_sparse_decode(p, stream);
          CK(cudaStreamEndCapture(stream, &graph));
          if (rc != 0) return 1;
          CK(cudaGraphInstantiate(&exec, graph, 0));
          cudaEvent_t e0, e1;
          CK(cudaEventCreate(&e0));
          CK(cudaEventCreate(&e1));
          std::vector<float> ts;
          for (int rep = 0; rep < 5; ++rep) {
            CK(cudaEventRecord(e0, stream));
            for (int i = 0; i < 50; ++i) CK(cudaGraphLaunch(exec, stream));
            CK(cudaEventRecord(e1, stream));
            CK(cudaEventSynchronize(e1));
            float ms = 0;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            ts.push_back(ms * 1000.f / 50);
          }
          std::sort(ts.begin(), ts.end());
          const float hot = ts[2];
          constexpr int kCold = 30;
          std::vector<cudaEvent_t> ev(2 * kCold);
          for (auto& e : ev) CK(cudaEventCreate(&e));
          for (int rep = 0; rep < kCold; ++rep) {
            CK(cudaMemsetAsync(flush, rep & 0xff, flush_bytes, stream));
            CK(cudaEventRecord(ev[2 * rep], stream));
            CK(cudaGraphLaunch(exec, stream));
            CK(cudaEventRecord(ev[2 * rep + 1], stream));
          }
          CK(cudaStreamSynchronize(stream));
          ts.clear();
          for (int rep = 0; rep < kCold; ++rep) {
            float ms = 0;
            CK(cudaEventElapsedTime(&ms, ev[2 * rep], ev[2 * rep + 1]));
            ts.push_back(ms * 1000.f);
          }
          for (auto& e : ev) CK(cudaEventDestroy(e));
          std::sort(ts.begin(), ts.end());
          std::printf("  %s%d splits hot %.1f cold %.1f us", splits ? "" : "auto ", p.num_splits, hot, ts[kCold / 2]);
          CK(cudaEventDestroy(e0));
          CK(cudaEventDestroy(e1));
          CK(cudaGraphExecDestroy(exec));
          CK(cudaGraphDestroy(graph));
        }
        std::printf("\n");
        std::fflush(stdout);
      }
  CK(cudaStreamDestroy(stream));
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--time") == 0) return time_d1();
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
      // 2560 blocks: long select passes, list windows of the split CTAs refilled (shares > 512 blocks)
      {"long mask row, 1 split, first block", true, false, true, false, {40955, 3000}, 40960, 4, 1, 16, 1, 0, 0.4},
      {"long indices row, 2 splits", false, false, false, true, {40960, 30000}, 40960, 4, 1, 16, 2, 0, 0.5},
  };
  return sweep("decode", cases, [&](const auto& c, int D) { return run_case(c, D, rng); });
}
