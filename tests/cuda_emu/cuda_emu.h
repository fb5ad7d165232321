// Host-thread emulation of the CUDA device features the NVIDIA kernels use (csrc/, mma.sync and sm_90a
// wgmma paths), so that their unmodified source - and the torch-free self-test harnesses that drive
// them - run on a machine without a GPU (tests/cuda_emu/run_emu_selftests.sh; compiled with clang++
// -DSEER_CUDA_EMU; common/platform.h includes this header instead of the CUDA runtime's device side).
// Never part of a build of the extension. It checks logic (indices, pipelines, barrier counts, layouts),
// not speed or the hardware's rounding: MMAs accumulate in fp32 in a fixed order.
//
// Model:
//   - A CTA runs as blockDim host threads; CTAs of a grid run one after the other. Threads that return
//     leave every barrier they belong to.
//   - Warp-collective operations (shuffles, votes, ldmatrix, mma.sync) are a rendezvous of the warp's 32
//     threads; wgmma of the warpgroup's 128 (its register A operand is gathered at issue). A collective
//     reached by part of a warp deadlocks here (the watchdog aborts and names the waiting threads).
//   - cp.async copies are queued per thread and land at cp.async.wait_group / cp.async.mbarrier.arrive
//     (never earlier), so a read before the wait sees the shared memory's previous contents (dynamic
//     shared memory starts as 0xFF bytes: NaN in fp32, bf16 and fp16).
//   - wgmma groups are queued per thread and execute at wgmma.wait_group (reading shared memory then,
//     as the hardware may): a stage released or overwritten before the wait corrupts the result here too.
//   - mbarriers live in their shared-memory word (pending count, expected count, phase); an arrival
//     beyond the expected count aborts ("over-arrival"), which on the GPU would silently corrupt phases.
//   - wgmma descriptors are decoded as documented in common/sm90_primitives.h (128-byte swizzle, K-major:
//     SBO between 8-row groups; MN-major: LBO between 64-element slabs, SBO between 8-row groups);
//     the swizzle XORs address bits [4:6] with [7:9], as on the hardware (tiles 1024-byte aligned).
#pragma once
#include <cuda_runtime.h>  // host-side declarations and types only (no device code is compiled)
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <bit>
#include <type_traits>
#include <vector>

#undef __shared__
#define __shared__ static  // block-scope static shared arrays (CTAs run one after the other)
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

namespace seer_emu {

constexpr int kWarp = 32;
constexpr int kWarpGroup = 128;
constexpr int kSlot = 64;  // bytes a thread deposits per rendezvous
constexpr size_t kSmemBytes = 232448;  // sm_90 opt-in maximum per block

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "cuda_emu: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

// Progress counter for the deadlock watchdog: bumped by every completed rendezvous / barrier / arrival.
inline std::atomic<uint64_t> g_progress{0};

struct NamedBar {
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t gen = 0;
};

struct Cta {
  explicit Cta(int n, size_t smem_bytes)
      : nthreads(n), sync(n), slots(static_cast<size_t>(n)), smem(static_cast<unsigned char*>(std::aligned_alloc(1024, kSmemBytes))) {
    if (smem_bytes > kSmemBytes) fail("dynamic shared memory above the sm_90 maximum");
    std::memset(smem, 0xFF, kSmemBytes);
    for (int w = 0; w < (n + kWarp - 1) / kWarp; ++w) warp_bar.emplace_back(std::make_unique<std::barrier<>>(std::min(kWarp, n - w * kWarp)));
    for (int g = 0; g < (n + kWarpGroup - 1) / kWarpGroup; ++g)
      wg_bar.emplace_back(std::make_unique<std::barrier<>>(std::min(kWarpGroup, n - g * kWarpGroup)));
  }
  ~Cta() { std::free(smem); }
  int nthreads;
  std::barrier<> sync;  // __syncthreads
  std::vector<std::unique_ptr<std::barrier<>>> warp_bar, wg_bar;
  struct alignas(64) Slot {
    unsigned char b[kSlot];
  };
  std::vector<Slot> slots;
  NamedBar named[16];
  unsigned char* smem;
};

struct Copy {
  void* dst;
  const void* src;
  int bytes;
  bool zero;
};

struct WgOp;  // a queued wgmma (below)

struct Thread {
  Cta* cta = nullptr;
  int linear = 0;
  std::vector<std::vector<Copy>> cp_groups;  // committed, oldest first
  std::vector<Copy> cp_open;                 // issued since the last commit
  std::vector<std::vector<std::shared_ptr<WgOp>>> wg_groups;
  std::vector<std::shared_ptr<WgOp>> wg_open;
};
inline thread_local Thread t;
}  // namespace seer_emu

// The built-in index variables, per host thread.
inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

namespace seer_emu {

inline int lane() { return t.linear % kWarp; }

// Deposits `v`; returns read(slots of this group's threads, first thread index).
template <int kGroup, typename T, typename R>
auto rendezvous(const T& v, R&& read) {
  static_assert(sizeof(T) <= kSlot, "deposit too large");
  Cta& c = *t.cta;
  std::barrier<>& bar = kGroup == kWarp ? *c.warp_bar[t.linear / kWarp] : *c.wg_bar[t.linear / kWarpGroup];
  const int first = t.linear / kGroup * kGroup;
  std::memcpy(c.slots[t.linear].b, &v, sizeof(T));
  bar.arrive_and_wait();
  auto r = read(&c.slots[first]);
  bar.arrive_and_wait();
  g_progress.fetch_add(1, std::memory_order_relaxed);
  return r;
}
template <typename T>
T slot_as(const Cta::Slot* s, int i) {
  T r;
  std::memcpy(&r, s[i].b, sizeof(T));
  return r;
}

// ------------------------------ shared memory addresses ------------------------------
inline unsigned char* dynamic_smem() { return t.cta->smem; }
inline uint32_t to_shared(const void* p) {
  const auto* b = static_cast<const unsigned char*>(p);
  if (b < t.cta->smem || b >= t.cta->smem + kSmemBytes) fail("__cvta_generic_to_shared of a pointer outside dynamic shared memory");
  return static_cast<uint32_t>(b - t.cta->smem);
}
inline unsigned char* from_shared(uint32_t a) {
  if (a >= kSmemBytes) fail("shared-memory address out of range");
  return t.cta->smem + a;
}

// ------------------------------ cp.async ------------------------------
inline void land(const Copy& c) {
  if (c.zero) std::memset(c.dst, 0, static_cast<size_t>(c.bytes));
  else std::memcpy(c.dst, c.src, static_cast<size_t>(c.bytes));
}
inline void cp_issue(void* dst, const void* src, int bytes, bool zero) { t.cp_open.push_back({dst, src, bytes, zero}); }
inline void cp_commit() {
  t.cp_groups.push_back(std::move(t.cp_open));
  t.cp_open.clear();
}
inline void cp_wait(int n) {
  while (static_cast<int>(t.cp_groups.size()) > n) {
    for (const Copy& c : t.cp_groups.front()) land(c);
    t.cp_groups.erase(t.cp_groups.begin());
  }
}
inline void cp_land_all() {
  cp_wait(0);
  for (const Copy& c : t.cp_open) land(c);
  t.cp_open.clear();
}

// ------------------------------ mbarriers ------------------------------
// Word layout: bits 0..19 pending arrivals, 20..39 expected count, bit 63 phase.
inline std::atomic_ref<uint64_t> mbar_word(uint64_t* bar) {
  to_shared(bar);  // must be in shared memory
  return std::atomic_ref<uint64_t>(*bar);
}
inline void mbar_init(uint64_t* bar, int count) {
  if (count <= 0 || count >= (1 << 20)) fail("mbarrier.init: bad count");
  mbar_word(bar).store(static_cast<uint64_t>(count) | (static_cast<uint64_t>(count) << 20));
}
inline void mbar_arrive(uint64_t* bar, int count) {
  auto w = mbar_word(bar);
  uint64_t v = w.load();
  for (;;) {
    const uint64_t pending = v & 0xFFFFF, expected = (v >> 20) & 0xFFFFF, phase = v >> 63;
    if (expected == 0) fail("mbarrier arrive on an uninitialised barrier");
    if (static_cast<uint64_t>(count) > pending) fail("mbarrier over-arrival (more arrivals than the expected count in one phase)");
    uint64_t nv;
    if (pending == static_cast<uint64_t>(count)) nv = expected | (expected << 20) | ((phase ^ 1) << 63);
    else nv = (pending - count) | (expected << 20) | (phase << 63);
    if (w.compare_exchange_weak(v, nv)) break;
  }
  g_progress.fetch_add(1, std::memory_order_relaxed);
}
inline void mbar_wait(uint64_t* bar, int parity) {
  auto w = mbar_word(bar);
  while (static_cast<int>(w.load() >> 63) == (parity & 1)) std::this_thread::yield();
}

// ------------------------------ named barriers ------------------------------
inline void named_sync(int id, int threads) {
  if (id < 0 || id >= 16 || threads <= 0 || threads % kWarp) fail("bar.sync: bad id or thread count");
  NamedBar& b = t.cta->named[id];
  std::unique_lock<std::mutex> lk(b.m);
  const uint64_t gen = b.gen;
  if (++b.arrived == threads) {
    b.arrived = 0;
    ++b.gen;
    g_progress.fetch_add(1, std::memory_order_relaxed);
    b.cv.notify_all();
  } else {
    b.cv.wait(lk, [&] { return b.gen != gen; });
  }
}

// ------------------------------ 16-bit elements ------------------------------
template <typename Elem>
float elem_to_float(uint16_t bits) {
  if constexpr (std::is_same_v<Elem, __half>) {
    __half h;
    std::memcpy(&h, &bits, 2);
    return __half2float(h);
  } else {
    return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
  }
}
inline uint16_t half_of(uint32_t r, int hi) { return static_cast<uint16_t>(hi ? r >> 16 : r & 0xFFFF); }
inline uint16_t smem_u16(uint32_t addr) {
  uint16_t v;
  std::memcpy(&v, from_shared(addr), 2);
  return v;
}

// ------------------------------ ldmatrix / mma.sync ------------------------------
// x4 (kMats 4) / x2 (2): matrix j's 8 row addresses come from lanes 8j .. 8j + 7; lane l receives row l / 4,
// elements 2 (l % 4) + 0..1 of each matrix (transposed: rows 2 (l % 4) + 0..1, element l / 4).
template <int kMats, bool kTrans>
void ldmatrix(uint32_t* r, uint32_t addr) {
  const int l = lane();
  rendezvous<kWarp>(addr, [&](const Cta::Slot* s) {
    for (int j = 0; j < kMats; ++j) {
      uint16_t e[2];
      for (int h = 0; h < 2; ++h) {
        const int row = kTrans ? 2 * (l % 4) + h : l / 4, col = kTrans ? l / 4 : 2 * (l % 4) + h;
        e[h] = smem_u16(slot_as<uint32_t>(s, 8 * j + row) + 2 * col);
      }
      r[j] = static_cast<uint32_t>(e[0]) | (static_cast<uint32_t>(e[1]) << 16);
    }
    return 0;
  });
}
template <typename Elem>
void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  struct Regs {
    uint32_t a[4], b[2];
  } mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
  const int l = lane(), g = l / 4, tq = l % 4;
  rendezvous<kWarp>(mine, [&](const Cta::Slot* s) {
    for (int e = 0; e < 4; ++e) {
      const int row = g + (e >= 2 ? 8 : 0), col = 2 * tq + (e & 1);
      float acc = 0.f;
      for (int k = 0; k < 16; ++k) {
        const Regs ra = slot_as<Regs>(s, 4 * (row % 8) + (k % 8) / 2);
        const Regs rb = slot_as<Regs>(s, 4 * col + (k % 8) / 2);
        const float av = elem_to_float<Elem>(half_of(ra.a[(row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k % 2));
        const float bv = elem_to_float<Elem>(half_of(rb.b[k >= 8 ? 1 : 0], k % 2));
        acc += av * bv;
      }
      d[e] += acc;
    }
    return 0;
  });
}

// ------------------------------ wgmma ------------------------------
// Byte address of element (i, k) of a 128-byte-swizzled operand: K-major (i along M / N, k along K) or
// MN-major (i along M / N contiguous in 64-element slabs LBO apart, k along K in rows).
inline uint32_t sw128_addr(uint64_t desc, int i, int k, bool mn_major) {
  const uint32_t start = static_cast<uint32_t>(desc & 0x3FFF) << 4;
  const uint32_t lbo = static_cast<uint32_t>((desc >> 16) & 0x3FFF) << 4;
  const uint32_t sbo = static_cast<uint32_t>((desc >> 32) & 0x3FFF) << 4;
  if ((desc >> 62) != 1) fail("wgmma descriptor: layout type is not the 128-byte swizzle");
  uint32_t a;
  if (!mn_major) a = start + (i / 8) * sbo + (i % 8) * 128 + k * 2;
  else a = start + (k / 8) * sbo + (k % 8) * 128 + (i / 64) * lbo + (i % 64) * 2;
  return a ^ (((a >> 7) & 7) << 4);
}

struct WgOp {
  int n = 0;
  bool bf16 = true, a_regs = false, a_mn = false, b_mn = false;
  float* d = nullptr;
  uint64_t da = 0, db = 0;
  int scale_d = 0;
  std::shared_ptr<std::vector<uint32_t>> a;  // register A: 4 per thread of the warpgroup
  // This thread's part: d[4j + e] = row 16 w + g (+ 8 for e >= 2), column 8 j + 2 t + (e & 1).
  void run(int wtid) const {
    const int w = wtid / 32, l = wtid % 32, g = l / 4, tq = l % 4;
    for (int j = 0; j < n / 8; ++j)
      for (int e = 0; e < 4; ++e) {
        const int row = 16 * w + g + (e >= 2 ? 8 : 0), col = 8 * j + 2 * tq + (e & 1);
        float acc = 0.f;
        for (int k = 0; k < 16; ++k) {
          uint16_t ab;
          if (a_regs) {
            const int owner = 32 * (row / 16) + 4 * (row % 8) + (k % 8) / 2;
            const int reg = (row % 16 >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
            ab = half_of((*a)[4 * owner + reg], k % 2);
          } else {
            ab = smem_u16(sw128_addr(da, row, k, a_mn));
          }
          const uint16_t bb = smem_u16(sw128_addr(db, col, k, b_mn));
          const float av = bf16 ? elem_to_float<__nv_bfloat16>(ab) : elem_to_float<__half>(ab);
          const float bv = bf16 ? elem_to_float<__nv_bfloat16>(bb) : elem_to_float<__half>(bb);
          acc += av * bv;
        }
        float& out = d[4 * j + e];
        out = scale_d ? out + acc : acc;
      }
  }
};

template <int N, typename Elem, int kTransB>
void wgmma_issue(float* d, uint64_t da, uint64_t db, int scale_d, bool a_mn, const uint32_t* a) {
  auto op = std::make_shared<WgOp>();
  op->n = N;
  op->bf16 = std::is_same_v<Elem, __nv_bfloat16>;
  op->d = d;
  op->da = da;
  op->db = db;
  op->scale_d = scale_d;
  op->a_mn = a_mn;
  op->b_mn = kTransB != 0;
  struct A4 {
    uint32_t r[4];
  } mine{};
  if (a) std::memcpy(mine.r, a, sizeof(mine.r));
  // .sync.aligned: every thread of the warpgroup issues it together (gathers the register A operand).
  op->a_regs = a != nullptr;
  auto regs = rendezvous<kWarpGroup>(mine, [&](const Cta::Slot* s) {
    std::shared_ptr<std::vector<uint32_t>> v;
    if (a) {
      v = std::make_shared<std::vector<uint32_t>>(4 * kWarpGroup);
      for (int i = 0; i < kWarpGroup; ++i) {
        const A4 x = slot_as<A4>(s, i);
        std::memcpy(v->data() + 4 * i, x.r, sizeof(x.r));
      }
    }
    return v;
  });
  op->a = regs;
  t.wg_open.push_back(op);
}
inline void wgmma_commit() {
  t.wg_groups.push_back(std::move(t.wg_open));
  t.wg_open.clear();
}
inline void wgmma_wait(int n) {
  if (!t.wg_open.empty()) fail("wgmma.wait_group with issued but uncommitted wgmma operations");
  while (static_cast<int>(t.wg_groups.size()) > n) {
    for (const auto& op : t.wg_groups.front()) op->run(t.linear % kWarpGroup);
    t.wg_groups.erase(t.wg_groups.begin());
  }
}

// ------------------------------ launch ------------------------------
inline void thread_exit() {
  cp_land_all();
  if (!t.wg_open.empty() || !t.wg_groups.empty()) fail("a thread exited with wgmma operations not waited for");
  Cta& c = *t.cta;
  c.sync.arrive_and_drop();
  c.warp_bar[t.linear / kWarp]->arrive_and_drop();
  c.wg_bar[t.linear / kWarpGroup]->arrive_and_drop();
}

// Aborts the process when no thread made progress for `seconds` while a grid runs.
struct Watchdog {
  std::atomic<bool> stop{false};
  std::thread th;
  explicit Watchdog(int seconds) {
    th = std::thread([this, seconds] {
      uint64_t last = g_progress.load();
      auto since = std::chrono::steady_clock::now();
      while (!stop.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        const uint64_t now = g_progress.load();
        if (now != last) {
          last = now;
          since = std::chrono::steady_clock::now();
        } else if (std::chrono::steady_clock::now() - since > std::chrono::seconds(seconds)) {
          fail("deadlock: no thread made progress for the watchdog's limit (a barrier count or a collective "
               "reached by part of a warp)");
        }
      }
    });
  }
  ~Watchdog() {
    stop = true;
    th.join();
  }
};

inline int& sm_count() {
  static int n = [] {
    const char* e = std::getenv("SEER_EMU_SMS");
    return e ? std::atoi(e) : 4;
  }();
  return n;
}

template <typename... P, typename... A>
cudaError_t run_grid(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) {
  const int n = static_cast<int>(block.x * block.y * block.z);
  if (n <= 0 || n > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0) return cudaErrorInvalidConfiguration;
  if (smem > kSmemBytes) return cudaErrorInvalidValue;
  std::tuple<std::decay_t<P>...> targs(std::forward<A>(args)...);
  Watchdog dog(60);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        Cta cta(n, smem);
        std::vector<std::thread> threads;
        threads.reserve(n);
        for (int i = 0; i < n; ++i)
          threads.emplace_back([&, i] {
            t = Thread{};
            t.cta = &cta;
            t.linear = i;
            threadIdx = uint3{static_cast<unsigned>(i % block.x), static_cast<unsigned>(i / block.x % block.y),
                              static_cast<unsigned>(i / (block.x * block.y))};
            blockIdx = uint3{x, y, z};
            gridDim = grid;
            blockDim = block;
            std::apply(kernel, targs);
            thread_exit();
          });
        for (auto& th : threads) th.join();
      }
  return cudaSuccess;
}

inline cudaError_t& last_error() {
  static cudaError_t e = cudaSuccess;
  return e;
}

// SEER_LAUNCH(kernel, grid, block, smem, stream)(args...) under the emulation (common/platform.h).
template <typename K>
struct Launch {
  K kernel;
  dim3 grid, block;
  size_t smem;
  template <typename... A>
  void operator()(A&&... args) const {
    const cudaError_t e = run_grid(kernel, grid, block, smem, std::forward<A>(args)...);
    if (e != cudaSuccess) last_error() = e;
  }
};
template <typename K, typename S>
Launch<K> launch(K kernel, dim3 grid, dim3 block, size_t smem, S) {
  return Launch<K>{kernel, grid, block, smem};
}

}  // namespace seer_emu

// cudaLaunchKernelEx(&config, kernel, args...) (programmatic dependent launch in decode): the grid runs
// at once; the launch attributes change nothing on the host.
namespace seer_emu {
template <typename... P, typename... A>
cudaError_t launch_ex(const cudaLaunchConfig_t* cfg, void (*kernel)(P...), A&&... args) {
  const cudaLaunchConfig_t& c = *cfg;
  return run_grid(kernel, c.gridDim, c.blockDim, c.dynamicSmemBytes, std::forward<A>(args)...);
}
}  // namespace seer_emu
#define cudaLaunchKernelEx seer_emu::launch_ex
// The runtime's C++ overloads taking a kernel (declared by cuda_runtime.h for nvcc only).
template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}
template <typename... P>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, void (*kernel)(P...)) {
  return cudaFuncGetAttributes(a, reinterpret_cast<const void*>(kernel));
}

// ------------------------------ device built-ins ------------------------------

inline void __syncthreads() {
  seer_emu::t.cta->sync.arrive_and_wait();
  seer_emu::g_progress.fetch_add(1, std::memory_order_relaxed);
}
inline void __syncwarp(unsigned = 0xffffffffu) {
  seer_emu::rendezvous<seer_emu::kWarp>(0, [](const seer_emu::Cta::Slot*) { return 0; });
}
[[noreturn]] inline void __trap() { seer_emu::fail("__trap() (a device-side assertion)"); }

template <typename T>
T __shfl_xor_sync(unsigned, T v, int m) {
  const int l = seer_emu::lane();
  return seer_emu::rendezvous<seer_emu::kWarp>(v, [&](const seer_emu::Cta::Slot* s) { return seer_emu::slot_as<T>(s, l ^ m); });
}
template <typename T>
T __shfl_sync(unsigned, T v, int src) {
  return seer_emu::rendezvous<seer_emu::kWarp>(v, [&](const seer_emu::Cta::Slot* s) { return seer_emu::slot_as<T>(s, src & 31); });
}
inline unsigned __ballot_sync(unsigned, int pred) {
  return seer_emu::rendezvous<seer_emu::kWarp>(pred != 0, [](const seer_emu::Cta::Slot* s) {
    unsigned m = 0;
    for (int i = 0; i < 32; ++i) m |= static_cast<unsigned>(seer_emu::slot_as<bool>(s, i)) << i;
    return m;
  });
}
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == 0xffffffffu; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
inline float __uint_as_float(unsigned u) { return std::bit_cast<float>(u); }
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }
inline float __int_as_float(int u) { return std::bit_cast<float>(u); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __fdividef(float a, float b) { return a / b; }
template <typename T>
T __ldg(const T* p) {
  return *p;
}
inline size_t __cvta_generic_to_shared(const void* p) { return seer_emu::to_shared(p); }

template <typename T>
T atomicAdd(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_add(v);
}
inline unsigned atomicMax(unsigned* p, unsigned v) {
  std::atomic_ref<unsigned> r(*p);
  unsigned cur = r.load();
  while (cur < v && !r.compare_exchange_weak(cur, v)) {
  }
  return cur;
}
// CUDA's integer / float min and max device overloads.
#define SEER_EMU_MINMAX(T)                                   \
  inline T min(T a, T b) { return b < a ? b : a; }          \
  inline T max(T a, T b) { return a < b ? b : a; }
SEER_EMU_MINMAX(int)
SEER_EMU_MINMAX(unsigned)
SEER_EMU_MINMAX(long)
SEER_EMU_MINMAX(unsigned long)
SEER_EMU_MINMAX(long long)
SEER_EMU_MINMAX(unsigned long long)
#undef SEER_EMU_MINMAX
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }

inline unsigned atomicOr(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_or(v); }
