// Hopper (sm_90) synchronisation parts of a warp-specialised mainloop: shared-memory mbarriers (stage
// full / empty signalling between a producer warpgroup and consumer warpgroups), cp.async completion
// on an mbarrier, named barriers (one warpgroup synchronising without the others) and register
// reallocation between warpgroups (setmaxnreg, sm_90a only).
//
// mbarrier phases: a barrier initialised with count N completes a phase after N arrivals and flips its
// phase bit. wait(bar, parity) returns once the phase with that parity has completed; on a freshly
// initialised barrier wait(bar, 1) returns at once (the "previous" phase counts as complete), which is
// how a producer passes the first round of `empty` barriers.
#pragma once
#include <cstdint>

#include "common/platform.h"

namespace seer {
namespace sm90 {

SEER_DEVICE uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

#if defined(SEER_CUDA_EMU)
// tests/cuda_emu: the barriers in their shared-memory words (over-arrival and deadlock abort).
SEER_DEVICE void mbar_init(uint64_t* bar, int count) { seer_emu::mbar_init(bar, count); }
SEER_DEVICE void mbar_init_fence() {}
SEER_DEVICE void mbar_arrive(uint64_t* bar) { seer_emu::mbar_arrive(bar, 1); }
SEER_DEVICE void mbar_arrive_cnt(uint64_t* bar, int count) { seer_emu::mbar_arrive(bar, count); }
SEER_DEVICE void mbar_wait(uint64_t* bar, int parity) { seer_emu::mbar_wait(bar, parity); }
SEER_DEVICE void cp_async_mbar_arrive(uint64_t* bar) {
  seer_emu::cp_land_all();
  seer_emu::mbar_arrive(bar, 1);
}
SEER_DEVICE void named_sync(int id, int threads) { seer_emu::named_sync(id, threads); }
SEER_DEVICE void named_arrive(int id, int threads) { seer_emu::named_arrive(id, threads); }
template <int N>
SEER_DEVICE void regs_inc() {}
template <int N>
SEER_DEVICE void regs_dec() {}
#else
SEER_DEVICE void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// Makes barrier initialisation visible before other threads (and the async proxy) use the barriers.
SEER_DEVICE void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }

SEER_DEVICE void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// `count` arrivals at once (e.g. a producer arriving for a consumer warpgroup that skips a stage).
SEER_DEVICE void mbar_arrive_cnt(uint64_t* bar, int count) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
SEER_DEVICE void mbar_wait(uint64_t* bar, int parity) {
  const uint32_t a = smem_addr(bar);
  uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(a), "r"(parity)
        : "memory");
  } while (!done);
}
// One arrival on `bar` once every cp.async this thread issued before has landed (the barrier's count
// includes this arrival: .noinc).
SEER_DEVICE void cp_async_mbar_arrive(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}

// Named barriers (id 0 is __syncthreads): `threads` = participating threads, a multiple of 32.
SEER_DEVICE void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
// An arrival on named barrier `id` without waiting (the threads that bar.sync on it complete its phase).
SEER_DEVICE void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Register reallocation (sm_90a): every warp of a warpgroup executes the same call.
template <int N>
SEER_DEVICE void regs_inc() {
#if SEER_HAS_SM90A
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N>
SEER_DEVICE void regs_dec() {
#if SEER_HAS_SM90A
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
#endif  // SEER_CUDA_EMU

}  // namespace sm90
}  // namespace seer
