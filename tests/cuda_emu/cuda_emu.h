// Host-thread emulation of the CUDA device features the NVIDIA kernels use (csrc/, mma.sync and sm_90a
// wgmma paths), so that their unmodified source - and the torch-free self-test harnesses that drive
// them - run on a machine without a GPU (tests/cuda_emu/run_emu_selftests.sh; compiled with clang++
// -DSEER_CUDA_EMU; common/platform.h includes this header instead of the CUDA runtime's device side).
// Never part of a build of the extension. It checks logic (indices, pipelines, barrier counts, layouts),
// not speed or the hardware's rounding: MMAs accumulate in fp32 in a fixed order.
//
// Model:
//   - A CTA's threads are fibers on one host thread, switched wherever a thread waits or arrives on an
//     mbarrier, in rounds of a freshly drawn order (SEER_EMU_SEED); CTAs of a grid run one after the other. Threads that return leave every barrier they belong to.
//   - Warp-collective operations (shuffles, votes, ldmatrix, mma.sync) are a rendezvous of the warp's 32
//     threads; wgmma of the warpgroup's 128 (its register A operand is gathered at issue). A collective
//     reached by part of a warp, or a barrier that never completes, is a deadlock: the emulation aborts
//     and names what each waiting thread waits for.
//   - cp.async copies are queued per thread and land at cp.async.wait_group / cp.async.mbarrier.arrive
//     (never earlier), so a read before the wait sees the shared memory's previous contents (dynamic
//     shared memory starts as 0xFF bytes: NaN in fp32, bf16 and fp16).
//   - wgmma groups are queued per thread and execute at wgmma.wait_group; their shared-memory operands
//     are read at issue and again at the wait, and must not differ (the hardware reads them at some time
//     in between): a stage read before its data landed, or overwritten before the wait, aborts.
//   - mbarriers live in their shared-memory word (pending count, expected count, transaction bytes,
//     phase; TMA boxes - common/sm90_tma.h - are copied at issue and then complete their bytes); an arrival
//     beyond the expected count aborts ("over-arrival"), which on the GPU would silently corrupt phases.
//     Every barrier must end its CTA between phases (a count below the arrivals leaves a partial phase).
//     Every arrival lets the other threads run, so a phase that completes before its last arrival (a
//     count too low) lets its waiters read data that has not landed.
//   - wgmma descriptors are decoded as documented in common/sm90_primitives.h (128-byte swizzle, K-major:
//     SBO between 8-row groups; MN-major: LBO between 64-element slabs, SBO between 8-row groups);
//     the swizzle XORs address bits [4:6] with [7:9], as on the hardware (tiles 1024-byte aligned).
#pragma once
#include <cuda_runtime.h>  // host-side declarations and types only (no device code is compiled)
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <tuple>
#include <bit>
#include <type_traits>
#include <vector>

#undef __shared__
#define __shared__ static  // block-scope static shared arrays (CTAs run one after the other)
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

// The built-in index variables (threadIdx is switched with the running thread).
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

namespace seer_emu {

constexpr int kWarp = 32;
constexpr int kWarpGroup = 128;
constexpr int kSlot = 64;  // bytes a thread deposits per rendezvous
constexpr size_t kSmemBytes = 232448;  // sm_90 opt-in maximum per block
constexpr size_t kStackBytes = 256 * 1024;  // per emulated thread

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "cuda_emu: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

// ------------------------------ threads as fibers ------------------------------
// The threads of a CTA are fibers on one host thread, switched only where a thread waits or arrives (cooperative,
// in rounds): no locks, and a collective costs a few context switches. seer_emu_switch (x86-64,
// cuda_emu_runtime.cpp) saves the callee-saved registers and the stack pointer and resumes another.
extern "C" void seer_emu_switch(void** save_sp, void* resume_sp);

// AddressSanitizer builds (build.sh SANITIZE=address) are told about every stack switch.
#if defined(__SANITIZE_ADDRESS__)
#define SEER_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SEER_EMU_ASAN 1
#endif
#endif
#ifdef SEER_EMU_ASAN
extern "C" void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
#endif
inline const void* g_sched_stack = nullptr;  // the scheduler's stack (ASan builds)
inline size_t g_sched_stack_size = 0;

struct Copy {
  void* dst;
  const void* src;
  int bytes;
  bool zero;
};
struct WgOp;      // a thread's share of a queued wgmma (below)
struct WgShared;  // the warpgroup's wgmma

struct Fiber {
  int linear = 0;
  uint3 tid{};
  void* sp = nullptr;
  unsigned char* stack = nullptr;
  bool done = false, progressed = false;
  const char* waiting = nullptr;  // what the thread waits for (deadlock report)
  void* fake_stack = nullptr;     // ASan's fake stack while switched out
  std::vector<std::vector<Copy>> cp_groups;  // committed cp.async groups, oldest first
  std::vector<Copy> cp_open;                 // issued since the last commit
  std::vector<std::vector<std::shared_ptr<WgOp>>> wg_groups;
  std::vector<std::shared_ptr<WgOp>> wg_open;
};

// Arrive-and-wait barrier over a fixed group whose members may leave (exited threads).
struct GroupBar {
  int size = 0, arrived = 0;
  uint64_t gen = 0;
};

struct Cta {
  int nthreads = 0;
  GroupBar sync;  // __syncthreads
  std::vector<GroupBar> warp_bar, wg_bar;
  struct alignas(64) Slot {
    unsigned char b[kSlot];
  };
  std::vector<Slot> slots;
  struct Named {
    int arrived = 0;
    uint64_t gen = 0;
  } named[16];
  unsigned char* smem = nullptr;
  std::vector<uint64_t*> mbarriers;  // initialised in this CTA
  std::shared_ptr<WgShared> wg_op[8];  // the warpgroup's wgmma being issued
  uint64_t wg_op_gen[8] = {};
  std::vector<Fiber> fibers;
  void* sched_sp = nullptr;
};

inline Cta* g_cta = nullptr;   // the running CTA
inline Fiber* g_cur = nullptr;  // the running thread

// This thread -> the scheduler (dying: the thread has returned and is never resumed).
inline void to_scheduler(bool dying = false) {
  Fiber* f = g_cur;
#ifdef SEER_EMU_ASAN
  __sanitizer_start_switch_fiber(dying ? nullptr : &f->fake_stack, g_sched_stack, g_sched_stack_size);
#endif
  static void* dead_sp;  // not on this stack: ASan releases a dying fiber's fake stack at the switch
  seer_emu_switch(dying ? &dead_sp : &f->sp, g_cta->sched_sp);
#ifdef SEER_EMU_ASAN
  __sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#endif
}
inline void yield_waiting(const char* what) {
  g_cur->waiting = what;
  to_scheduler();
}
// Lets the other threads run (this one is not waiting).
inline void yield_point() {
  g_cur->progressed = true;
  g_cur->waiting = nullptr;
  to_scheduler();
}
// Spins (by yielding) until cond() holds.
template <typename C>
void wait_until(const char* what, C&& cond) {
  if (cond()) return;
  do yield_waiting(what);
  while (!cond());
  g_cur->waiting = nullptr;
  g_cur->progressed = true;
}
inline void bar_arrive_wait(GroupBar& b, const char* what) {
  const uint64_t gen = b.gen;
  if (++b.arrived >= b.size) {
    b.arrived = 0;
    ++b.gen;
    g_cur->progressed = true;
    return;
  }
  wait_until(what, [&] { return b.gen != gen; });
}
inline void bar_leave(GroupBar& b) {
  --b.size;
  if (b.size > 0 && b.arrived >= b.size) {
    b.arrived = 0;
    ++b.gen;
  }
}

inline int linear() { return g_cur->linear; }
inline int lane() { return g_cur->linear % kWarp; }

// Deposits `v`; returns read(slots of this group's threads).
template <int kGroup, typename T, typename R>
auto rendezvous(const T& v, R&& read) {
  static_assert(sizeof(T) <= kSlot, "deposit too large");
  Cta& c = *g_cta;
  GroupBar& bar = kGroup == kWarp ? c.warp_bar[linear() / kWarp] : c.wg_bar[linear() / kWarpGroup];
  const char* what = kGroup == kWarp ? "a warp collective (shuffle / vote / ldmatrix / mma.sync)" : "a warpgroup wgmma";
  const int first = linear() / kGroup * kGroup;
  std::memcpy(c.slots[linear()].b, &v, sizeof(T));
  bar_arrive_wait(bar, what);
  auto r = read(&c.slots[first]);
  bar_arrive_wait(bar, what);
  return r;
}
template <typename T>
T slot_as(const Cta::Slot* s, int i) {
  T r;
  std::memcpy(&r, s[i].b, sizeof(T));
  return r;
}

// ------------------------------ shared memory addresses ------------------------------
inline unsigned char* dynamic_smem() { return g_cta->smem; }
inline uint32_t to_shared(const void* p) {
  const auto* b = static_cast<const unsigned char*>(p);
  if (b < g_cta->smem || b >= g_cta->smem + kSmemBytes) fail("__cvta_generic_to_shared of a pointer outside dynamic shared memory");
  return static_cast<uint32_t>(b - g_cta->smem);
}
inline unsigned char* from_shared(uint32_t a) {
  if (a >= kSmemBytes) fail("shared-memory address out of range");
  return g_cta->smem + a;
}

// ------------------------------ cp.async ------------------------------
inline void land(const Copy& c) {
  if (c.zero) std::memset(c.dst, 0, static_cast<size_t>(c.bytes));
  else std::memcpy(c.dst, c.src, static_cast<size_t>(c.bytes));
}
inline void cp_issue(void* dst, const void* src, int bytes, bool zero) { g_cur->cp_open.push_back({dst, src, bytes, zero}); }
inline void cp_commit() {
  g_cur->cp_groups.push_back(std::move(g_cur->cp_open));
  g_cur->cp_open.clear();
}
inline void cp_wait(int n) {
  while (static_cast<int>(g_cur->cp_groups.size()) > n) {
    for (const Copy& c : g_cur->cp_groups.front()) land(c);
    g_cur->cp_groups.erase(g_cur->cp_groups.begin());
  }
}
inline void cp_land_all() {
  cp_wait(0);
  for (const Copy& c : g_cur->cp_open) land(c);
  g_cur->cp_open.clear();
}

// ------------------------------ mbarriers ------------------------------
// Word layout: bits 0..19 pending arrivals, 20..39 expected count, 40..62 pending transaction bytes
// (expect_tx / complete_tx: TMA), bit 63 phase. A phase completes when its last arrival is in and no
// announced byte is still pending.
inline std::atomic_ref<uint64_t> mbar_word(uint64_t* bar) {
  to_shared(bar);  // must be in shared memory
  return std::atomic_ref<uint64_t>(*bar);
}
constexpr uint64_t kMbarTxMax = (uint64_t{1} << 23) - 1;
inline void mbar_init(uint64_t* bar, int count) {
  if (count <= 0 || count >= (1 << 20)) fail("mbarrier.init: bad count");
  g_cta->mbarriers.push_back(bar);
  mbar_word(bar).store(static_cast<uint64_t>(count) | (static_cast<uint64_t>(count) << 20));
}
// `count` arrivals that announce `tx_add` bytes (>= 0), or (count 0) `-tx_add` bytes completed.
inline void mbar_update(uint64_t* bar, int count, int64_t tx_add) {
  auto w = mbar_word(bar);
  uint64_t v = w.load();
  for (;;) {
    const uint64_t pending = v & 0xFFFFF, expected = (v >> 20) & 0xFFFFF, tx = (v >> 40) & kMbarTxMax, phase = v >> 63;
    if (expected == 0) fail("mbarrier arrive on an uninitialised barrier");
    if (static_cast<uint64_t>(count) > pending) fail("mbarrier over-arrival (more arrivals than the expected count in one phase)");
    const int64_t ntx = static_cast<int64_t>(tx) + tx_add;
    if (ntx < 0) fail("mbarrier complete_tx of more bytes than announced (expect_tx) in the phase");
    if (static_cast<uint64_t>(ntx) > kMbarTxMax) fail("mbarrier transaction count overflow");
    const uint64_t npend = pending - count;
    uint64_t nv;
    if (npend == 0 && ntx == 0) nv = expected | (expected << 20) | ((phase ^ 1) << 63);
    else nv = npend | (expected << 20) | (static_cast<uint64_t>(ntx) << 40) | (phase << 63);
    if (w.compare_exchange_weak(v, nv)) break;
  }
  // Let the other threads run between arrivals: a phase that completes early (a count below the number
  // of arrivals) is seen before the rest of the producer's data lands.
  yield_point();
}
inline void mbar_arrive(uint64_t* bar, int count) { mbar_update(bar, count, 0); }
inline void mbar_arrive_tx(uint64_t* bar, int count, uint32_t bytes) { mbar_update(bar, count, bytes); }
inline void mbar_complete_tx(uint64_t* bar, uint32_t bytes) { mbar_update(bar, 0, -static_cast<int64_t>(bytes)); }
inline void mbar_wait(uint64_t* bar, int parity) {
  auto w = mbar_word(bar);
  wait_until("an mbarrier phase", [&] { return static_cast<int>(w.load() >> 63) != (parity & 1); });
}

// ------------------------------ named barriers ------------------------------
inline void named_sync(int id, int threads) {
  if (id < 0 || id >= 16 || threads <= 0 || threads % kWarp) fail("bar.sync: bad id or thread count");
  Cta::Named& b = g_cta->named[id];
  const uint64_t gen = b.gen;
  if (++b.arrived == threads) {
    b.arrived = 0;
    ++b.gen;
    g_cur->progressed = true;
    return;
  }
  wait_until("a named barrier (bar.sync)", [&] { return b.gen != gen; });
}

// bar.arrive: counts toward the barrier's `threads` without waiting (a producer / consumer pairing of
// named barriers: the other side's bar.sync completes the phase).
inline void named_arrive(int id, int threads) {
  if (id < 0 || id >= 16 || threads <= 0 || threads % kWarp) fail("bar.arrive: bad id or thread count");
  Cta::Named& b = g_cta->named[id];
  if (++b.arrived == threads) {
    b.arrived = 0;
    ++b.gen;
  }
  yield_point();
}

// ------------------------------ 16-bit elements ------------------------------
// fp16 -> fp32 through a table (the host conversion of cuda_fp16.h is a software routine).
inline const float* half_table() {
  static const std::vector<float> t = [] {
    std::vector<float> v(65536);
    for (uint32_t i = 0; i < 65536; ++i) {
      const uint16_t b = static_cast<uint16_t>(i);
      __half h;
      std::memcpy(&h, &b, 2);
      v[i] = __half2float(h);
    }
    return v;
  }();
  return t.data();
}
template <typename Elem>
float elem_to_float(uint16_t bits) {
  if constexpr (std::is_same_v<Elem, __half>) return half_table()[bits];
  else return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
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
// stmatrix x4 (kMats 4): lane 8 j + r gives the address of matrix j's row r and writes that row: its
// elements 2 t, 2 t + 1 are register j of lane 4 r + t.
template <int kMats>
void stmatrix(uint32_t addr, const uint32_t (&r)[kMats]) {
  struct Dep {
    uint32_t addr, r[kMats];
  } mine{addr, {}};
  for (int j = 0; j < kMats; ++j) mine.r[j] = r[j];
  const int l = lane();
  rendezvous<kWarp>(mine, [&](const Cta::Slot* s) {
    if (l < 8 * kMats) {
      const int j = l / 8, row = l % 8;
      for (int t = 0; t < 4; ++t) {
        const uint32_t v = slot_as<Dep>(s, 4 * row + t).r[j];
        std::memcpy(from_shared(mine.addr + 4 * t), &v, 4);
      }
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
    auto regs = [&](int i) { return reinterpret_cast<const Regs*>(s[i].b); };
    float arow[2][16], bcol[2][16];  // this lane's rows g, g + 8 of A and columns 2 t, 2 t + 1 of B
    for (int k = 0; k < 16; ++k) {
      const Regs* ra = regs(4 * g + (k % 8) / 2);
      arow[0][k] = elem_to_float<Elem>(half_of(ra->a[k >= 8 ? 2 : 0], k % 2));
      arow[1][k] = elem_to_float<Elem>(half_of(ra->a[k >= 8 ? 3 : 1], k % 2));
      for (int c = 0; c < 2; ++c)
        bcol[c][k] = elem_to_float<Elem>(half_of(regs(4 * (2 * tq + c) + (k % 8) / 2)->b[k >= 8 ? 1 : 0], k % 2));
    }
    for (int e = 0; e < 4; ++e) {
      float acc = 0.f;
      for (int k = 0; k < 16; ++k) acc += arow[e >> 1][k] * bcol[e & 1][k];
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

// One wgmma of a warpgroup (shared by its 128 threads): D[64 x n] (+)= A[64 x 16] B[16 x n].
struct WgShared {
  int n = 0;
  bool bf16 = true, a_regs = false, a_mn = false, b_mn = false;
  uint64_t da = 0, db = 0;
  std::vector<uint32_t> a;             // register A: 4 per thread of the warpgroup
  std::vector<float> at_issue;   // A B [64 x n] at the issue
  std::vector<float> at_wait[4];  // rows [16 w, 16 w + 16) of A B at warp w's first wait
  // Rows [row0, row0 + rows) of A B from the operands as they are now.
  std::vector<float> products(int row0 = 0, int rows = 64) const {
    auto cvt = [&](uint16_t x) { return bf16 ? elem_to_float<__nv_bfloat16>(x) : elem_to_float<__half>(x); };
    std::vector<float> am(64 * 16), bm(static_cast<size_t>(n) * 16), r(static_cast<size_t>(rows) * n);
    for (int row = row0; row < row0 + rows; ++row)
      for (int k = 0; k < 16; ++k) {
        if (a_regs) {  // mma.sync's A fragment of the warp holding the row
          const int owner = 32 * (row / 16) + 4 * (row % 8) + (k % 8) / 2;
          const int reg = (row % 16 >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
          am[row * 16 + k] = cvt(half_of(a[4 * owner + reg], k % 2));
        } else {
          am[row * 16 + k] = cvt(smem_u16(sw128_addr(da, row, k, a_mn)));
        }
      }
    for (int col = 0; col < n; ++col)
      for (int k = 0; k < 16; ++k) bm[col * 16 + k] = cvt(smem_u16(sw128_addr(db, col, k, b_mn)));
    for (int row = row0; row < row0 + rows; ++row)
      for (int col = 0; col < n; ++col) {
        float acc = 0.f;
        for (int k = 0; k < 16; ++k) acc += am[row * 16 + k] * bm[col * 16 + k];
        r[static_cast<size_t>(row - row0) * n + col] = acc;
      }
    return r;
  }
};

// A thread's share of a queued wgmma: its accumulator registers d[4j + e] = row 16 w + g (+ 8 for
// e >= 2), column 8 j + 2 t + (e & 1).
struct WgOp {
  std::shared_ptr<WgShared> op;
  float* d = nullptr;
  int scale_d = 0;
  // At wgmma.wait_group: the warp's 16 rows of the products again from the operands as they are at the
  // warp's first wait (wait_group is per warp: one warp may pass it while another's share still reads).
  // They must equal those at issue: the hardware reads the operands at some time in between, so a
  // difference is a race (an operand read before its data landed, or overwritten in flight).
  void run(int wtid) const {
    WgShared& o = *op;
    const int w = wtid / 32, l = wtid % 32, g = l / 4, tq = l % 4;
    std::vector<float>& mine = o.at_wait[w];
    if (mine.empty()) {
      mine = o.products(16 * w, 16);
      if (std::memcmp(mine.data(), o.at_issue.data() + static_cast<size_t>(16 * w) * o.n,
                      mine.size() * sizeof(float)) != 0)
        fail("a wgmma's shared-memory operand changed between its issue and its wait_group (read before the data "
             "landed, or overwritten while in flight)");
    }
    for (int j = 0; j < o.n / 8; ++j)
      for (int e = 0; e < 4; ++e) {
        const float r = mine[static_cast<size_t>(g + (e >= 2 ? 8 : 0)) * o.n + 8 * j + 2 * tq + (e & 1)];
        float& out = d[4 * j + e];
        out = scale_d ? out + r : r;
      }
  }
};

template <int N, typename Elem, int kTransB>
void wgmma_issue(float* d, uint64_t da, uint64_t db, int scale_d, bool a_mn, const uint32_t* a) {
  struct A4 {
    uint32_t r[4];
  } mine{};
  if (a) std::memcpy(mine.r, a, sizeof(mine.r));
  // .sync.aligned: every thread of the warpgroup issues it together. The first thread past the rendezvous
  // builds the shared operation (the register A operand gathered, the products at issue).
  const int wg = linear() / kWarpGroup;
  auto shared = rendezvous<kWarpGroup>(mine, [&](const Cta::Slot* s) {
    Cta& c = *g_cta;
    if (c.wg_op_gen[wg] != c.wg_bar[wg].gen || !c.wg_op[wg]) {
      auto o = std::make_shared<WgShared>();
      o->n = N;
      o->bf16 = std::is_same_v<Elem, __nv_bfloat16>;
      o->da = da;
      o->db = db;
      o->a_mn = a_mn;
      o->b_mn = kTransB != 0;
      o->a_regs = a != nullptr;
      if (a) {
        o->a.resize(4 * kWarpGroup);
        for (int i = 0; i < kWarpGroup; ++i) std::memcpy(o->a.data() + 4 * i, s[i].b, 16);
      }
      o->at_issue = o->products();
      c.wg_op[wg] = o;
      c.wg_op_gen[wg] = c.wg_bar[wg].gen;
    }
    return c.wg_op[wg];
  });
  WgOp mine_op;
  mine_op.op = shared;
  mine_op.d = d;
  mine_op.scale_d = scale_d;
  g_cur->wg_open.push_back(std::make_shared<WgOp>(mine_op));
}
inline void wgmma_commit() {
  g_cur->wg_groups.push_back(std::move(g_cur->wg_open));
  g_cur->wg_open.clear();
}
inline void wgmma_wait(int n) {
  if (!g_cur->wg_open.empty()) fail("wgmma.wait_group with issued but uncommitted wgmma operations");
  while (static_cast<int>(g_cur->wg_groups.size()) > n) {
    for (const auto& op : g_cur->wg_groups.front()) op->run(linear() % kWarpGroup);
    g_cur->wg_groups.erase(g_cur->wg_groups.begin());
  }
}

// ------------------------------ launch ------------------------------
inline int& sm_count() {
  static int n = [] {
    const char* e = std::getenv("SEER_EMU_SMS");
    return e ? std::atoi(e) : 4;
  }();
  return n;
}

// Runs one CTA: its threads as fibers until all returned; aborts on a deadlock (see below).
inline void run_cta(Cta& cta, void (*entry)(void*), void* arg, std::vector<unsigned char*>& stacks) {
  g_cta = &cta;
  const int n = cta.nthreads;
  struct Start {
    void (*entry)(void*);
    void* arg;
  };
  static thread_local Start start;
  start = {entry, arg};
  auto trampoline = +[]() {
#ifdef SEER_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_sched_stack, &g_sched_stack_size);
#endif
    start.entry(start.arg);
    // thread exit: pending cp.async land, the thread leaves its barriers
    Fiber& f = *g_cur;
    cp_land_all();
    if (!f.wg_open.empty() || !f.wg_groups.empty()) fail("a thread exited with wgmma operations not waited for");
    bar_leave(g_cta->sync);
    bar_leave(g_cta->warp_bar[f.linear / kWarp]);
    bar_leave(g_cta->wg_bar[f.linear / kWarpGroup]);
    f.done = true;
    to_scheduler(true);
    fail("a finished thread was resumed");
  };
  while (static_cast<int>(stacks.size()) < n) {
    auto* st = static_cast<unsigned char*>(std::aligned_alloc(4096, kStackBytes));
    if (!st) fail("out of memory for thread stacks");
    stacks.push_back(st);
  }
  cta.fibers.resize(n);
  for (int i = 0; i < n; ++i) {
    Fiber& f = cta.fibers[i];
    f.linear = i;
    f.stack = stacks[i];
    // Initial frame for seer_emu_switch: six callee-saved registers, then the return address.
    auto* top = reinterpret_cast<uintptr_t*>(f.stack + kStackBytes - 64);
    top = reinterpret_cast<uintptr_t*>(reinterpret_cast<uintptr_t>(top) & ~uintptr_t(15));
    top[1] = 0;
    top[0] = reinterpret_cast<uintptr_t>(static_cast<void (*)()>(trampoline));
    f.sp = top - 6;
    for (int r = 0; r < 6; ++r) top[-1 - r] = 0;
  }
  // Rounds: every live thread runs once per round, in an order drawn afresh each round (seeded by
  // SEER_EMU_SEED), so that no fixed interleaving hides a race; two rounds in which no thread got past a
  // wait are a deadlock.
  static uint64_t rng = [] {
    const char* e = std::getenv("SEER_EMU_SEED");
    return e ? std::strtoull(e, nullptr, 10) * 0x9E3779B97F4A7C15ull + 1 : 0x853C49E6748FEA9Bull;
  }();
  std::vector<int> order(n);
  int live = n, idle_rounds = 0;
  while (live > 0) {
    for (int i = 0; i < n; ++i) order[i] = i;
    for (int i = n - 1; i > 0; --i) {
      rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
      std::swap(order[i], order[static_cast<int>(rng % static_cast<uint64_t>(i + 1))]);
    }
    bool progress = false;
    for (int i : order) {
      Fiber& f = cta.fibers[i];
      if (f.done) continue;
      g_cur = &f;
      threadIdx = f.tid;
      f.progressed = false;
#ifdef SEER_EMU_ASAN
      void* sched_fake = nullptr;
      __sanitizer_start_switch_fiber(&sched_fake, f.stack, kStackBytes);
#endif
      seer_emu_switch(&cta.sched_sp, f.sp);
#ifdef SEER_EMU_ASAN
      __sanitizer_finish_switch_fiber(sched_fake, nullptr, nullptr);
#endif
      if (f.done) --live;
      progress |= f.done || f.progressed;
    }
    idle_rounds = progress ? 0 : idle_rounds + 1;
    if (idle_rounds >= 2) {
      std::fprintf(stderr, "cuda_emu: deadlock in CTA (%u, %u, %u); waiting threads:\n", blockIdx.x, blockIdx.y, blockIdx.z);
      for (const Fiber& g : cta.fibers)
        if (!g.done) std::fprintf(stderr, "  thread %d (warp %d): %s\n", g.linear, g.linear / kWarp, g.waiting ? g.waiting : "?");
      fail("deadlock (a barrier count, or a collective reached by part of a warp)");
    }
  }
  // Every mbarrier ends between phases: a phase with some but not all of its arrivals means the count
  // and the number of arrivals disagree (a count too low shifts every later phase earlier).
  for (uint64_t* bar : cta.mbarriers) {
    const uint64_t v = *bar, pending = v & 0xFFFFF, expected = (v >> 20) & 0xFFFFF;
    if (pending != expected || ((v >> 40) & kMbarTxMax) != 0) {
      std::fprintf(stderr, "cuda_emu: mbarrier at shared offset %u ends with %llu of %llu arrivals in its last phase\n",
                   static_cast<unsigned>(reinterpret_cast<unsigned char*>(bar) - cta.smem),
                   static_cast<unsigned long long>(expected - pending), static_cast<unsigned long long>(expected));
      fail("an mbarrier's count does not match its arrivals");
    }
  }
  g_cur = nullptr;
  g_cta = nullptr;
}

template <typename... P, typename... A>
cudaError_t run_grid(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) {
  const int n = static_cast<int>(block.x * block.y * block.z);
  if (n <= 0 || n > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0) return cudaErrorInvalidConfiguration;
  if (smem > kSmemBytes) return cudaErrorInvalidValue;
  struct Bound {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...> args;
  } bound{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  auto entry = +[](void* b) {
    auto* x = static_cast<Bound*>(b);
    std::apply(x->kernel, x->args);
  };
  static std::vector<unsigned char*> stacks;  // reused across launches
  unsigned char* shm = static_cast<unsigned char*>(std::aligned_alloc(1024, kSmemBytes));
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        Cta cta;
        cta.nthreads = n;
        cta.sync.size = n;
        for (int w = 0; w < (n + kWarp - 1) / kWarp; ++w) cta.warp_bar.push_back(GroupBar{std::min(kWarp, n - w * kWarp)});
        for (int g = 0; g < (n + kWarpGroup - 1) / kWarpGroup; ++g)
          cta.wg_bar.push_back(GroupBar{std::min(kWarpGroup, n - g * kWarpGroup)});
        cta.slots.resize(n);
        std::memset(shm, 0xFF, kSmemBytes);  // NaN bytes: a read before a write shows
        cta.smem = shm;
        blockIdx = uint3{x, y, z};
        cta.fibers.resize(n);
        for (int i = 0; i < n; ++i)
          cta.fibers[i].tid = uint3{static_cast<unsigned>(i % block.x), static_cast<unsigned>(i / block.x % block.y),
                                    static_cast<unsigned>(i / (block.x * block.y))};
        run_cta(cta, entry, &bound, stacks);
      }
  std::free(shm);
  return cudaSuccess;
}

inline cudaError_t& last_error() {
  static cudaError_t e = cudaSuccess;
  return e;
}

// seer_emu::launch(kernel, grid, block, smem, stream)(args...): what emu_source.py makes of a launch.
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

inline void __syncthreads() { seer_emu::bar_arrive_wait(seer_emu::g_cta->sync, "__syncthreads"); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }  // CTAs run one after the other
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
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32); }
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
