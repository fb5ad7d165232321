// See device_facts.h. Plain host code (a .cu file so that the CUDA builds' source lists pick it up with
// the kernels; the ROCm build does not compile it, and its op layer references none of it).
#include "common/device_facts.h"

#include <atomic>

#include <cuda_runtime.h>

namespace seer {

namespace {

constexpr int kMaxCachedDevices = 64;

// One device's cached facts: the fields are written before `ready` (release) and read after it (acquire).
struct CachedFacts {
  std::atomic<int> ready{0};
  std::atomic<int> sms{0}, smem_per_sm{0}, smem_optin{0}, smem_reserved{0}, major{0}, minor{0}, l2_bytes{0};
};
CachedFacts g_cache[kMaxCachedDevices];

DeviceFacts query(int device) {
  DeviceFacts f{};
  const struct {
    int* dst;
    cudaDeviceAttr attr;
  } items[] = {{&f.sms, cudaDevAttrMultiProcessorCount},
               {&f.smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor},
               {&f.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin},
               {&f.smem_reserved, cudaDevAttrReservedSharedMemoryPerBlock},
               {&f.major, cudaDevAttrComputeCapabilityMajor},
               {&f.minor, cudaDevAttrComputeCapabilityMinor},
               {&f.l2_bytes, cudaDevAttrL2CacheSize}};
  for (const auto& it : items) {
    const cudaError_t e = cudaDeviceGetAttribute(it.dst, it.attr, device);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // do not leave the error for the next launch check
      DeviceFacts bad{};
      bad.error = static_cast<int>(e);
      return bad;
    }
  }
  return f;
}

}  // namespace

bool device_code_has_sm90a() {
#ifdef SEER_ATTN_SM90A
  return true;
#else
  return false;
#endif
}

DeviceFacts device_facts(int device) {
  if (device < 0 || device >= kMaxCachedDevices) return query(device);
  CachedFacts& c = g_cache[device];
  if (c.ready.load(std::memory_order_acquire)) {
    return DeviceFacts{0,
                       c.sms.load(std::memory_order_relaxed),
                       c.smem_per_sm.load(std::memory_order_relaxed),
                       c.smem_optin.load(std::memory_order_relaxed),
                       c.smem_reserved.load(std::memory_order_relaxed),
                       c.major.load(std::memory_order_relaxed),
                       c.minor.load(std::memory_order_relaxed),
                       c.l2_bytes.load(std::memory_order_relaxed)};
  }
  const DeviceFacts f = query(device);
  if (f.error == 0) {  // a benign race: every writer stores the same values
    c.sms.store(f.sms, std::memory_order_relaxed);
    c.smem_per_sm.store(f.smem_per_sm, std::memory_order_relaxed);
    c.smem_optin.store(f.smem_optin, std::memory_order_relaxed);
    c.smem_reserved.store(f.smem_reserved, std::memory_order_relaxed);
    c.major.store(f.major, std::memory_order_relaxed);
    c.minor.store(f.minor, std::memory_order_relaxed);
    c.l2_bytes.store(f.l2_bytes, std::memory_order_relaxed);
    c.ready.store(1, std::memory_order_release);
  }
  return f;
}

DeviceFacts current_device_facts() {
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    DeviceFacts bad{};
    bad.error = static_cast<int>(e);
    return bad;
  }
  return device_facts(device);
}

}  // namespace seer
