// The per-N operand lists below (between the GENERATED markers) are written by
// csrc/common/generate_sm90_wgmma.py; the rest is hand-written.
// Hopper warpgroup MMA (wgmma.mma_async, sm_90a only): D[64 x N] (+)= A[64 x 16] * B[16 x N], fp32
// accumulators. All 128 threads of a warpgroup call it together. Accumulator layout (per thread,
// warp w of the warpgroup, lane l, g = l / 4, t = l % 4): d[4j + 0..1] = rows 16w + g, columns
// 8j + 2t + 0..1; d[4j + 2..3] = row 16w + g + 8, same columns (mma.sync's C layout, N / 8 times).
//   wgmma_ss<N, Elem, kTransB>(d, desc_a, desc_b, scale_d): A and B from shared memory (descriptors).
//   wgmma_ss_ta<N, Elem, kTransB>(...): as wgmma_ss with A stored MN-major (M contiguous).
//   wgmma_rs<N, Elem, kTransB>(d, a, desc_b, scale_d): A from registers (a[4] = mma.sync's m16k16 A
//     fragment of the warp's 16 rows), B from shared memory.
// scale_d = 0 overwrites D, 1 accumulates. kTransB = 1: B is stored MN-major (N contiguous).
#pragma once
#include <cstdint>

#include "common/platform.h"

namespace seer {
namespace sm90 {

template <int N, typename Elem, int kTransB>
struct Wgmma;

#if defined(SEER_CUDA_EMU)
// tests/cuda_emu: the same operations queued on host threads (run at wgmma.wait_group).
template <int N, typename Elem, int kTransB>
struct Wgmma {
  static void ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int scale_d) {
    seer_emu::wgmma_issue<N, Elem, kTransB>(d, desc_a, desc_b, scale_d, false, nullptr);
  }
  static void ss_ta(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int scale_d) {
    seer_emu::wgmma_issue<N, Elem, kTransB>(d, desc_a, desc_b, scale_d, true, nullptr);
  }
  static void rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
    seer_emu::wgmma_issue<N, Elem, kTransB>(d, 0, desc_b, scale_d, false, a);
  }
};
#elif SEER_HAS_SM90A
// One specialisation: N, element type, its PTX type name, then per N the accumulator operand list
// (D_REGS), the asm outputs (D_OUTS) and the operand numbers that follow the accumulators (SS: desc_a,
// desc_b, scale_d, kTransB; RS: a[0..3], desc_b, scale_d, kTransB).
#define SEER_WGMMA_SPECIALISATION(N, ELEM, PTX_T, D_REGS, D_OUTS, SS_A, SS_B, SS_SCALE, SS_TRANS, RS_A, RS_B,    \
                                  RS_SCALE, RS_TRANS)                                                            \
  template <int kTransB>                                                                                        \
  struct Wgmma<N, ELEM, kTransB> {                                                                              \
    static __device__ __forceinline__ void ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int scale_d) { \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " SS_SCALE ", 0;\n"                                        \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTX_T "." PTX_T " {" D_REGS "}, " SS_A      \
                   ", " SS_B ", p, 1, 1, 0, " SS_TRANS ";\n}\n"                                                  \
                   : D_OUTS                                                                                     \
                   : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(kTransB));                                     \
    }                                                                                                           \
    /* ss_ta: A stored MN-major (M contiguous: imm-trans-a = 1), e.g. the dS^T tile read as dS. */            \
    static __device__ __forceinline__ void ss_ta(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b,           \
                                                 int scale_d) {                                                 \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " SS_SCALE ", 0;\n"                                        \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTX_T "." PTX_T " {" D_REGS "}, " SS_A      \
                   ", " SS_B ", p, 1, 1, 1, " SS_TRANS ";\n}\n"                                                  \
                   : D_OUTS                                                                                     \
                   : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(kTransB));                                     \
    }                                                                                                           \
    static __device__ __forceinline__ void rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b,       \
                                              int scale_d) {                                                    \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " RS_SCALE ", 0;\n"                                        \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTX_T "." PTX_T " {" D_REGS "}, {" RS_A     \
                   "}, " RS_B ", p, 1, 1, " RS_TRANS ";\n}\n"                                                    \
                   : D_OUTS                                                                                     \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d), "n"(kTransB));      \
    }                                                                                                           \
  };

// BEGIN GENERATED by csrc/common/generate_sm90_wgmma.py (the operand lists per N; do not edit)
#define SEER_WGMMA_D_REGS_64 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define SEER_WGMMA_D_OUTS_64 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
SEER_WGMMA_SPECIALISATION(64, __nv_bfloat16, "bf16", SEER_WGMMA_D_REGS_64, SEER_WGMMA_D_OUTS_64, "%32", "%33", "%34", "%35", "%32, %33, %34, %35", "%36", "%37", "%38")
SEER_WGMMA_SPECIALISATION(64, __half, "f16", SEER_WGMMA_D_REGS_64, SEER_WGMMA_D_OUTS_64, "%32", "%33", "%34", "%35", "%32, %33, %34, %35", "%36", "%37", "%38")
#undef SEER_WGMMA_D_REGS_64
#undef SEER_WGMMA_D_OUTS_64

#define SEER_WGMMA_D_REGS_128 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define SEER_WGMMA_D_OUTS_128 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
SEER_WGMMA_SPECIALISATION(128, __nv_bfloat16, "bf16", SEER_WGMMA_D_REGS_128, SEER_WGMMA_D_OUTS_128, "%64", "%65", "%66", "%67", "%64, %65, %66, %67", "%68", "%69", "%70")
SEER_WGMMA_SPECIALISATION(128, __half, "f16", SEER_WGMMA_D_REGS_128, SEER_WGMMA_D_OUTS_128, "%64", "%65", "%66", "%67", "%64, %65, %66, %67", "%68", "%69", "%70")
#undef SEER_WGMMA_D_REGS_128
#undef SEER_WGMMA_D_OUTS_128
// END GENERATED

#undef SEER_WGMMA_SPECIALISATION
#endif  // SEER_CUDA_EMU / SEER_HAS_SM90A

// Without sm_90a code (an sm_80 pass of the same file) the wrappers exist but trap: only sm_90a
// kernels call them (common/platform.h, SEER_HAS_SM90A).
template <int N, typename Elem, int kTransB = 0>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int scale_d) {
#if SEER_HAS_SM90A
  Wgmma<N, Elem, kTransB>::ss(d, desc_a, desc_b, scale_d);
#else
  (void)d, (void)desc_a, (void)desc_b, (void)scale_d;
  SEER_TRAP();
#endif
}

// A stored MN-major (imm-trans-a = 1): the descriptor of A is built like an MN-major B's.
template <int N, typename Elem, int kTransB = 0>
__device__ __forceinline__ void wgmma_ss_ta(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int scale_d) {
#if SEER_HAS_SM90A
  Wgmma<N, Elem, kTransB>::ss_ta(d, desc_a, desc_b, scale_d);
#else
  (void)d, (void)desc_a, (void)desc_b, (void)scale_d;
  SEER_TRAP();
#endif
}

template <int N, typename Elem, int kTransB = 0>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
#if SEER_HAS_SM90A
  Wgmma<N, Elem, kTransB>::rs(d, a, desc_b, scale_d);
#else
  (void)d, (void)a, (void)desc_b, (void)scale_d;
  SEER_TRAP();
#endif
}

}  // namespace sm90
}  // namespace seer
