// Device-side helpers of the torch-free GPU self-tests (csrc/*/selftest/*.cpp, `make selftest`):
// CK(call) aborts with the failing call, file and line; device copies that are freed together.
// Host-side pieces (16-bit conversions, problems, float64 references) are in reference.h.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

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
