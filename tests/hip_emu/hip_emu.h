// Lockstep CPU emulation of the few HIP / AMDGPU device features the HIP kernels (csrc/*/hip/) use, so
// that their unmodified source runs on the host (tests/hip_emu/*_emu_test.cpp, compiled with clang++
// and -DSEER_HIP_EMU -DUSE_ROCM; csrc/common/platform.h includes this header instead of the HIP runtime).
//
// A workgroup runs as 256 host threads (4 wavefronts x 64 lanes). Every cross-lane operation (shuffle,
// ballot, readlane, MFMA) is a rendezvous of the 64 threads of the wavefront: each deposits its operand,
// all wait, each reads what it needs, all wait again. That is the semantics of the hardware for the
// wavefront-uniform control flow the kernels use; a cross-lane operation reached by only part of a
// wavefront deadlocks here (and would read garbage on the hardware). __shared__ variables become
// function-local statics (workgroups run one after the other). The MFMA model is the CDNA3 ISA layout
// (the same as tests/hip_layout), computed in fp32 from the 16-bit operands.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

typedef void* hipStream_t;
enum hipError_t { hipSuccess = 0, hipErrorInvalidValue = 1, hipErrorNotSupported = 801 };

namespace seer_emu {

constexpr int kLanes = 64;
constexpr int kSlot = 64;  // bytes a lane deposits per rendezvous

struct Wave {
  std::barrier<> bar{kLanes};
  alignas(64) unsigned char slot[kLanes][kSlot];
};
struct Block {
  explicit Block(int threads) : bar(threads), waves(threads / kLanes) {}
  std::barrier<> bar;
  std::vector<Wave> waves;
};
struct ThreadId {
  Block* block = nullptr;
  int tid = 0, bx = 0, by = 0, bz = 0;
};
inline thread_local ThreadId t_id;

inline int lane() { return t_id.tid % kLanes; }
inline Wave& wave() { return t_id.block->waves[t_id.tid / kLanes]; }

// Deposits `v`, then returns what `read(slots)` computes from every lane's deposit.
template <typename T, typename R>
auto rendezvous(const T& v, R&& read) {
  static_assert(sizeof(T) <= kSlot, "deposit too large");
  Wave& w = wave();
  std::memcpy(w.slot[lane()], &v, sizeof(T));
  w.bar.arrive_and_wait();
  auto r = read(w);
  w.bar.arrive_and_wait();
  return r;
}
template <typename T>
T from_lane(const T& v, int src) {
  return rendezvous(v, [&](Wave& w) {
    T r;
    std::memcpy(&r, w.slot[src & (kLanes - 1)], sizeof(T));
    return r;
  });
}

// Runs kernel() for every workgroup of grid (x, y, z) with `threads` threads each.
inline void launch(int gx, int gy, int gz, int threads, const std::function<void()>& kernel) {
  for (int z = 0; z < gz; ++z)
    for (int y = 0; y < gy; ++y)
      for (int x = 0; x < gx; ++x) {
        Block block(threads);
        std::vector<std::thread> ts;
        ts.reserve(threads);
        for (int t = 0; t < threads; ++t)
          ts.emplace_back([&, t] {
            t_id.block = &block;
            t_id.tid = t;
            t_id.bx = x, t_id.by = y, t_id.bz = z;
            kernel();
          });
        for (auto& th : ts) th.join();
      }
}

inline float bits_to_float(uint16_t x, bool bf16) {
  if (bf16) {
    uint32_t u = static_cast<uint32_t>(x) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  _Float16 h;
  std::memcpy(&h, &x, 2);
  return static_cast<float>(h);
}

typedef short s16x4 __attribute__((ext_vector_type(4)));
typedef _Float16 h16x4 __attribute__((ext_vector_type(4)));
typedef float f32x16 __attribute__((ext_vector_type(16)));
typedef float f32x4 __attribute__((ext_vector_type(4)));

// D = A B + C: M x N x K = 32 x 32 x 8 or 16 x 16 x 16, A / B as 4 x 16-bit per lane (CDNA3 layout).
template <int M, typename C>
C mfma(s16x4 a, s16x4 b, C c, bool bf16) {
  struct Ops {
    s16x4 a, b;
  };
  const Ops mine{a, b};
  return rendezvous(mine, [&](Wave& w) {
    auto A = [&](int i, int k) {
      const int l = i + M * (k / 4);
      Ops o;
      std::memcpy(&o, w.slot[l], sizeof(o));
      return bits_to_float(static_cast<uint16_t>(o.a[k % 4]), bf16);
    };
    auto B = [&](int k, int j) {
      const int l = j + M * (k / 4);
      Ops o;
      std::memcpy(&o, w.slot[l], sizeof(o));
      return bits_to_float(static_cast<uint16_t>(o.b[k % 4]), bf16);
    };
    constexpr int K = M == 32 ? 8 : 16;
    constexpr int R = M == 32 ? 16 : 4;
    C d = c;
    const int ln = lane();
    for (int r = 0; r < R; ++r) {
      const int i = M == 32 ? 8 * (r / 4) + 4 * (ln / 32) + r % 4 : 4 * (ln / 16) + r;
      const int j = ln % M;
      float acc = 0.f;
      for (int k = 0; k < K; ++k) acc += A(i, k) * B(k, j);
      d[r] += acc;
    }
    return d;
  });
}

inline std::atomic<int>& atomic_guard() {
  static std::atomic<int> g{0};
  return g;
}

}  // namespace seer_emu

// ---- the device builtins and HIP functions the kernels call -----------------------------------------
#define __builtin_amdgcn_workitem_id_x() (seer_emu::t_id.tid)
#define __builtin_amdgcn_workgroup_id_x() (seer_emu::t_id.bx)
#define __builtin_amdgcn_workgroup_id_y() (seer_emu::t_id.by)
#define __builtin_amdgcn_workgroup_id_z() (seer_emu::t_id.bz)
#define __builtin_amdgcn_s_barrier() (seer_emu::t_id.block->bar.arrive_and_wait())
#define __builtin_amdgcn_fence(order, scope) std::atomic_thread_fence(std::memory_order_seq_cst)
#define __builtin_amdgcn_wave_barrier() (seer_emu::wave().bar.arrive_and_wait())
#define __builtin_amdgcn_sched_barrier(x) ((void)0)
#define __builtin_amdgcn_exp2f(x) std::exp2f(x)
#define __builtin_amdgcn_logf(x) std::log2f(x)
#define __builtin_amdgcn_readlane(v, l) seer_emu::from_lane((v), (l))
#define __builtin_amdgcn_mbcnt_lo(mask, v) \
  (static_cast<unsigned>(__builtin_popcount((mask) & static_cast<unsigned>((1ull << (seer_emu::lane() < 32 ? seer_emu::lane() : 32)) - 1ull))) + (v))
#define __builtin_amdgcn_mbcnt_hi(mask, v) \
  (static_cast<unsigned>(__builtin_popcount((mask) & static_cast<unsigned>((1ull << (seer_emu::lane() > 32 ? seer_emu::lane() - 32 : 0)) - 1ull))) + (v))
#define __builtin_amdgcn_mfma_f32_32x32x8bf16_1k(a, b, c, x, y, z) seer_emu::mfma<32>((a), (b), (c), true)
#define __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(a, b, c, x, y, z) seer_emu::mfma<16>((a), (b), (c), true)
#define __builtin_amdgcn_mfma_f32_32x32x8f16(a, b, c, x, y, z) \
  seer_emu::mfma<32>(__builtin_bit_cast(seer_emu::s16x4, (a)), __builtin_bit_cast(seer_emu::s16x4, (b)), (c), false)
#define __builtin_amdgcn_mfma_f32_16x16x16f16(a, b, c, x, y, z) \
  seer_emu::mfma<16>(__builtin_bit_cast(seer_emu::s16x4, (a)), __builtin_bit_cast(seer_emu::s16x4, (b)), (c), false)

template <typename T>
inline T __shfl_xor(T v, int m) { return seer_emu::from_lane(v, seer_emu::lane() ^ m); }
template <typename T>
inline T __shfl(T v, int src) { return seer_emu::from_lane(v, src); }
inline unsigned long long __ballot(int pred) {
  return seer_emu::rendezvous(static_cast<unsigned char>(pred != 0), [](seer_emu::Wave& w) {
    unsigned long long m = 0;
    for (int l = 0; l < seer_emu::kLanes; ++l) m |= static_cast<unsigned long long>(w.slot[l][0] != 0) << l;
    return m;
  });
}
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
// HIP's integer min / max device functions (global namespace; used by the shared headers, e.g. seqlen.h).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned __float_as_uint(float f) { return __builtin_bit_cast(unsigned, f); }
inline float __uint_as_float(unsigned u) { return __builtin_bit_cast(float, u); }
inline float atomicAdd(float* addr, float v) { return std::atomic_ref<float>(*addr).fetch_add(v); }
inline float unsafeAtomicAdd(float* addr, float v) { return std::atomic_ref<float>(*addr).fetch_add(v); }
inline unsigned atomicMax(unsigned* addr, unsigned v) {
  std::atomic_ref<unsigned> a(*addr);
  unsigned cur = a.load();
  while (cur < v && !a.compare_exchange_weak(cur, v)) {
  }
  return cur;
}
