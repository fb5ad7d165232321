// Device-side helpers of the torch-free GPU self-tests (csrc/*/selftest/*.cpp, `make selftest`):
// CK(call) aborts with the failing call, file and line; device copies that are freed together; the
// attention work queue (allocated, built, checked). Host-side pieces (16-bit conversions, problems, float64 references) are in reference.h.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "attention/attention_params.h"
#include "common/selftest/reference.h"

#define CK(x)                                                                                   \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) {                                                                    \
      std::printf("CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, __LINE__, #x); \
      std::exit(2);                                                                             \
    }                                                                                           \
  } while (0)

namespace seer {
namespace selftest {

// Device allocations of one test case, freed when it goes out of scope.
class DeviceArena {
 public:
  DeviceArena() = default;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  ~DeviceArena() {
    for (void* p : ptrs_) cudaFree(p);
  }
  // n elements (at least one, plus 16 spare bytes: a kernel reading a vector past the end is
  // caught by compute-sanitizer rather than by a crash of the allocator).
  template <typename T>
  T* alloc(size_t n) {
    void* p = nullptr;
    CK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T) + 16));
    ptrs_.push_back(p);
    return static_cast<T*>(p);
  }
  template <typename T>
  T* copy(const std::vector<T>& v) {
    T* d = alloc<T>(v.size());
    if (!v.empty()) CK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
  }
  template <typename T>
  T* filled(size_t n, T value) {
    return copy(std::vector<T>(n, value));
  }

 private:
  std::vector<void*> ptrs_;
};

template <typename T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  if (n) CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

// The work queue of tiling p (AttnParams::item_order / item_queue, capacity item_capacity_of) in the arena,
// built by run_build_item_order with sections of `section` kv heads (zero_counts: n_zero tile counters it
// zeroes). The order is filled with -7 and the counters with 0xdeadbeef first: the builder must write them.
inline int build_item_queue(AttnParams& p, DeviceArena& dev, int section, unsigned long long* zero_counts = nullptr,
                            int n_zero = 0, AttnParams* p2 = nullptr) {
  for (AttnParams* q : {&p, p2}) {
    if (q == nullptr) continue;
    q->item_capacity = static_cast<int>(item_capacity_of(*q));
    q->item_order = dev.filled<int>(static_cast<size_t>(q->item_capacity), -7);
    q->item_queue = dev.filled<unsigned>(3, 0xdeadbeefu);
  }
  return run_build_item_order(p, p2, section, zero_counts, n_zero, nullptr);
}

// Checks tiling p's work queue against want_item_order (reference.h; seq_q: the sequences' query lengths)
// and that its counters are back at 0 (the builder's, or re-armed by the last CTA of a kernel run). Returns
// the number of problems (the first printed, labelled `name`).
inline int check_item_queue(const AttnParams& p, const std::vector<int>& seq_q, int section, const char* name) {
  const std::vector<int> want = want_item_order(p, seq_q, section);
  const std::vector<unsigned> st = to_host(p.item_queue, 3);
  std::vector<int> got(std::min<size_t>(st[0], static_cast<size_t>(p.item_capacity)));
  if (!got.empty()) CK(cudaMemcpy(got.data(), p.item_order, got.size() * sizeof(int), cudaMemcpyDeviceToHost));
  int bad = st[0] != want.size() || st[1] != 0 || st[2] != 0;
  size_t first = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    if (got[i] != want[i] && bad++ == 0) first = i;
  if (bad)
    std::printf("  work queue (%s): count %u (want %zu), counters %u / %u (want 0 / 0), first difference at %zu: %d (want %d)\n",
                name, st[0], want.size(), st[1], st[2], first, first < got.size() ? got[first] : -1,
                first < want.size() ? want[first] : -1);
  return bad;
}

// Runs run(case, head_dim) on every case for head dims 64 / 128 / 256 and both 16-bit types (the case's
// bf16 field is overridden); prints the failure count; returns the exit code (1 if any run failed).
template <typename Case, typename Run>
int sweep(const char* what, const std::vector<Case>& cases, Run run) {
  int fails = 0, runs = 0;
  for (int D : {64, 128, 256})
    for (const Case& c0 : cases)
      for (bool bf16 : {false, true}) {
        Case c = c0;
        c.bf16 = bf16;
        ++runs;
        fails += !run(c, D);
      }
  std::printf("%d / %d %s runs failed\n", fails, runs, what);
  return fails ? 1 : 0;
}

}  // namespace selftest
}  // namespace seer
