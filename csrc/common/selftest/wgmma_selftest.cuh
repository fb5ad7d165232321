// Standalone GPU self-test of the Hopper wgmma building blocks (csrc/common/sm90_primitives.h,
// sm90_wgmma.h) on one attention tile, no torch:
//   S = Q K^T    (wgmma SS, both operands K-major SW128, N = 64 or 128 keys),
//   O = P V      (wgmma RS: P = the S accumulators rounded to 16 bits, used as A fragments in
//                 registers; V MN-major SW128 with the transpose bit), as one N = 128 instruction
//                 (needs LBO = slab stride) or two N = 64 ones (one per 64-column slab).
// Also C = A^T-stored x V (wgmma SS with A MN-major, the backward's dQ = dS K).
// Compared with a float64 host reference. Also sweeps the two (LBO, SBO) orders of the MN-major
// descriptor, so a wrong guess shows up as a failing row rather than as a silently wrong kernel.
//
// Built and run by `make selftest` on sm_90a (cmake target seer_wgmma_selftest), or alone (sm_90a is
// required by wgmma):
//   nvcc -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -Icsrc -x cu -DSEER_WGMMA_SELFTEST_MAIN \
//        csrc/common/selftest/wgmma_selftest.cuh -o /tmp/wgmma_selftest && /tmp/wgmma_selftest
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "common/sm90_primitives.h"
#include "common/sm90_wgmma.h"

namespace seer {
namespace sm90 {
namespace selftest {

constexpr int kM = 64, kD = 128;

template <typename Elem>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Writes this thread's part of an m64nN fp32 wgmma accumulator (N / 2 floats) to a row-major [64][N]
// array: n8 fragment j, element e is row 16 warp + g (+ 8 for e >= 2), column 8 j + 2 t + (e & 1).
template <int N>
__device__ void store_acc(float* out, const float (&acc)[N / 2], int tid) {
  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int j = 0; j < N / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) out[(16 * warp + g + (e >= 2 ? 8 : 0)) * N + 8 * j + 2 * t + (e & 1)] = acc[4 * j + e];
}

// One CTA = one warpgroup. q [64][128], k / v [kN][128] row-major; s [64][kN], o [64][128] fp32.
// o_mode 0: two N = 64 RS instructions per k-step; 1: one N = 128 instruction (LBO / SBO given).
template <typename Elem, int kN>
__global__ void __launch_bounds__(128) tile_kernel(const Elem* q, const Elem* k, const Elem* v, float p_scale,
                                                   int o_mode, uint32_t v_lbo, uint32_t v_sbo, float* s_out,
                                                   float* o_out) {
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  unsigned char* sQ = smem;                      // 64 rows x 2 slabs
  unsigned char* sK = sQ + kM * kD * 2;          // kN rows x 2 slabs
  unsigned char* sV = sK + kN * kD * 2;          // kN rows x 2 slabs
  const int tid = threadIdx.x;
  for (int i = tid; i < kM * kD; i += 128)
    *reinterpret_cast<Elem*>(sQ + sw128_offset(i / kD, i % kD, kM)) = q[i];
  for (int i = tid; i < kN * kD; i += 128) {
    *reinterpret_cast<Elem*>(sK + sw128_offset(i / kD, i % kD, kN)) = k[i];
    *reinterpret_cast<Elem*>(sV + sw128_offset(i / kD, i % kD, kN)) = v[i];
  }
  fence_view_async_shared();
  __syncthreads();

  const uint32_t aQ = static_cast<uint32_t>(__cvta_generic_to_shared(sQ));
  const uint32_t aK = static_cast<uint32_t>(__cvta_generic_to_shared(sK));
  const uint32_t aV = static_cast<uint32_t>(__cvta_generic_to_shared(sV));

  // ---- S = Q K^T ----
  float s[kN / 2];
#pragma unroll
  for (int i = 0; i < kN / 2; ++i) s[i] = 0.f;
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
    const uint32_t off_q = (kk / 4) * (kM * 128) + (kk % 4) * 32;
    const uint32_t off_k = (kk / 4) * (kN * 128) + (kk % 4) * 32;
    wgmma_ss<kN, Elem, 0>(s, make_smem_desc_sw128(aQ + off_q, 16, 1024), make_smem_desc_sw128(aK + off_k, 16, 1024),
                          kk > 0 ? 1 : 0);
  }
  wgmma_commit();
  wgmma_wait<0>();

  store_acc<kN>(s_out, s, tid);

  // ---- O = P V, P = 16-bit(S * p_scale) as A fragments (k-step j = keys 16j .. 16j + 15) ----
  uint32_t pa[kN / 16][4];
#pragma unroll
  for (int j = 0; j < kN / 16; ++j) {
    pa[j][0] = pack2<Elem>(s[8 * j + 0] * p_scale, s[8 * j + 1] * p_scale);
    pa[j][1] = pack2<Elem>(s[8 * j + 2] * p_scale, s[8 * j + 3] * p_scale);
    pa[j][2] = pack2<Elem>(s[8 * j + 4] * p_scale, s[8 * j + 5] * p_scale);
    pa[j][3] = pack2<Elem>(s[8 * j + 6] * p_scale, s[8 * j + 7] * p_scale);
  }
  float o[kD / 2];
#pragma unroll
  for (int i = 0; i < kD / 2; ++i) o[i] = 0.f;
  wgmma_fence();
  if (o_mode == 1) {
#pragma unroll
    for (int j = 0; j < kN / 16; ++j)
      wgmma_rs<128, Elem, 1>(o, pa[j], make_smem_desc_sw128(aV + j * 2048, v_lbo, v_sbo), j > 0 ? 1 : 0);
  } else {
    float(&o0)[32] = *reinterpret_cast<float(*)[32]>(&o[0]);
    float(&o1)[32] = *reinterpret_cast<float(*)[32]>(&o[32]);
#pragma unroll
    for (int j = 0; j < kN / 16; ++j) {
      wgmma_rs<64, Elem, 1>(o0, pa[j], make_smem_desc_sw128(aV + j * 2048, v_lbo, v_sbo), j > 0 ? 1 : 0);
      wgmma_rs<64, Elem, 1>(o1, pa[j], make_smem_desc_sw128(aV + kN * 128 + j * 2048, v_lbo, v_sbo), j > 0 ? 1 : 0);
    }
  }
  wgmma_commit();
  wgmma_wait<0>();
  // o (mode 1): column tile jj of 16 = 8 columns 8jj..; mode 0: o0 = columns 0-63, o1 = 64-127, which
  // is the same register order as one N = 128 accumulator.
  store_acc<kD>(o_out, o, tid);
}

// A stored MN-major (wgmma_ss_ta, imm-trans-a = 1), as the backward's dQ = dS K reads dS^T: at [kN][64]
// row-major (the transposed A, M contiguous), v [kN][128] row-major (MN-major B). c [64][128] fp32 =
// at^T v, as two N = 64 instructions per k-step (one per 64-column slab of v).
template <typename Elem, int kN>
__global__ void __launch_bounds__(128) ta_kernel(const Elem* at, const Elem* v, float* c_out) {
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  unsigned char* sA = smem;              // kN rows x 1 slab (64 M-elements per row)
  unsigned char* sV = sA + kN * kM * 2;  // kN rows x 2 slabs
  const int tid = threadIdx.x;
  for (int i = tid; i < kN * kM; i += 128) *reinterpret_cast<Elem*>(sA + sw128_offset(i / kM, i % kM, kN)) = at[i];
  for (int i = tid; i < kN * kD; i += 128) *reinterpret_cast<Elem*>(sV + sw128_offset(i / kD, i % kD, kN)) = v[i];
  fence_view_async_shared();
  __syncthreads();
  const uint32_t aA = static_cast<uint32_t>(__cvta_generic_to_shared(sA));
  const uint32_t aV = static_cast<uint32_t>(__cvta_generic_to_shared(sV));
  float c0[32], c1[32];
  wgmma_fence();
#pragma unroll
  for (int j = 0; j < kN / 16; ++j) {
    const uint64_t da = make_smem_desc_sw128(aA + j * 2048, kN * 128, 1024);
    wgmma_ss_ta<64, Elem, 1>(c0, da, make_smem_desc_sw128(aV + j * 2048, kN * 128, 1024), j > 0 ? 1 : 0);
    wgmma_ss_ta<64, Elem, 1>(c1, da, make_smem_desc_sw128(aV + kN * 128 + j * 2048, kN * 128, 1024), j > 0 ? 1 : 0);
  }
  wgmma_commit();
  wgmma_wait<0>();
  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = 16 * warp + g + (e >= 2 ? 8 : 0), col = 8 * j + 2 * t + (e & 1);
      c_out[row * kD + col] = c0[4 * j + e];
      c_out[row * kD + 64 + col] = c1[4 * j + e];
    }
}

}  // namespace selftest
}  // namespace sm90
}  // namespace seer

#ifdef SEER_WGMMA_SELFTEST_MAIN
namespace st = seer::sm90::selftest;

#include "common/selftest/check.h"

static float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
static float to_f(__half x) { return __half2float(x); }
template <typename Elem>
static Elem from_f(float x);
template <>
__nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <>
__half from_f<__half>(float x) { return __float2half(x); }

template <typename Elem, int kN>
static int run_case(const char* name, int o_mode, uint32_t lbo, uint32_t sbo) {
  const int M = st::kM, D = st::kD;
  std::vector<Elem> hq(M * D), hk(kN * D), hv(kN * D);
  uint32_t seed = 12345u + kN;
  auto rnd = [&]() { seed = seed * 1664525u + 1013904223u; return ((seed >> 8) & 0xFFFF) / 32768.0f - 1.0f; };
  for (auto& x : hq) x = from_f<Elem>(rnd());
  for (auto& x : hk) x = from_f<Elem>(rnd());
  for (auto& x : hv) x = from_f<Elem>(rnd());
  Elem *dq, *dk, *dv;
  float *ds, *dout;
  CK(cudaMalloc(&dq, M * D * sizeof(Elem)));
  CK(cudaMalloc(&dk, kN * D * sizeof(Elem)));
  CK(cudaMalloc(&dv, kN * D * sizeof(Elem)));
  CK(cudaMalloc(&ds, M * kN * sizeof(float)));
  CK(cudaMalloc(&dout, M * D * sizeof(float)));
  CK(cudaMemcpy(dq, hq.data(), M * D * sizeof(Elem), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dk, hk.data(), kN * D * sizeof(Elem), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dv, hv.data(), kN * D * sizeof(Elem), cudaMemcpyHostToDevice));
  CK(cudaMemset(ds, 0xFF, M * kN * sizeof(float)));  // NaN: unwritten outputs fail
  CK(cudaMemset(dout, 0xFF, M * D * sizeof(float)));
  const int smem = 1024 + (M + 2 * kN) * D * 2;
  auto kern = st::tile_kernel<Elem, kN>;
  CK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const float p_scale = 0.125f;
  kern<<<1, 128, smem>>>(dq, dk, dv, p_scale, o_mode, lbo, sbo, ds, dout);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  std::vector<float> hs(M * kN), ho(M * D);
  CK(cudaMemcpy(hs.data(), ds, hs.size() * 4, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(ho.data(), dout, ho.size() * 4, cudaMemcpyDeviceToHost));
  // S against float64; O against float64 of P = 16-bit(S_gpu * p_scale) (the kernel's own rounding).
  double s_err = 0, s_ref_max = 0, o_err = 0, o_ref_max = 0;
  std::vector<float> p(M * kN);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < kN; ++j) {
      double acc = 0;
      for (int d = 0; d < D; ++d) acc += (double)to_f(hq[i * D + d]) * to_f(hk[j * D + d]);
      const double got = hs[i * kN + j];
      s_err = std::isfinite(got) ? std::fmax(s_err, std::fabs(got - acc)) : INFINITY;
      s_ref_max = std::fmax(s_ref_max, std::fabs(acc));
      p[i * kN + j] = to_f(from_f<Elem>(hs[i * kN + j] * p_scale));
    }
  for (int i = 0; i < M; ++i)
    for (int d = 0; d < D; ++d) {
      double acc = 0;
      for (int j = 0; j < kN; ++j) acc += (double)p[i * kN + j] * to_f(hv[j * D + d]);
      const double got = ho[i * D + d];
      o_err = std::isfinite(got) ? std::fmax(o_err, std::fabs(got - acc)) : INFINITY;
      o_ref_max = std::fmax(o_ref_max, std::fabs(acc));
    }
  const bool ok = s_err <= 1e-3 * s_ref_max + 1e-4 && o_err <= 1e-3 * o_ref_max + 1e-4;
  std::printf("%-44s N=%3d o_mode=%d lbo=%5u sbo=%5u: |S err| %.3g (max |S| %.3g), |O err| %.3g (max |O| %.3g) -> %s\n",
              name, kN, o_mode, lbo, sbo, s_err, s_ref_max, o_err, o_ref_max, ok ? "ok" : "FAIL");
  CK(cudaFree(dq));
  CK(cudaFree(dk));
  CK(cudaFree(dv));
  CK(cudaFree(ds));
  CK(cudaFree(dout));
  return ok ? 0 : 1;
}

template <typename Elem, int kN>
static int run_ta_case(const char* name) {
  const int M = st::kM, D = st::kD;
  std::vector<Elem> ha(kN * M), hv(kN * D);
  uint32_t seed = 777u + kN;
  auto rnd = [&]() { seed = seed * 1664525u + 1013904223u; return ((seed >> 8) & 0xFFFF) / 32768.0f - 1.0f; };
  for (auto& x : ha) x = from_f<Elem>(rnd());
  for (auto& x : hv) x = from_f<Elem>(rnd());
  Elem *da, *dv;
  float* dc;
  CK(cudaMalloc(&da, ha.size() * sizeof(Elem)));
  CK(cudaMalloc(&dv, hv.size() * sizeof(Elem)));
  CK(cudaMalloc(&dc, M * D * sizeof(float)));
  CK(cudaMemcpy(da, ha.data(), ha.size() * sizeof(Elem), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dv, hv.data(), hv.size() * sizeof(Elem), cudaMemcpyHostToDevice));
  CK(cudaMemset(dc, 0xFF, M * D * sizeof(float)));
  const int smem = 1024 + (kN * M + kN * D) * 2;
  auto kern = st::ta_kernel<Elem, kN>;
  CK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  kern<<<1, 128, smem>>>(da, dv, dc);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  std::vector<float> hc(M * D);
  CK(cudaMemcpy(hc.data(), dc, hc.size() * 4, cudaMemcpyDeviceToHost));
  double err = 0, ref_max = 0;
  for (int m = 0; m < M; ++m)
    for (int d = 0; d < D; ++d) {
      double acc = 0;
      for (int k = 0; k < kN; ++k) acc += (double)to_f(ha[k * M + m]) * to_f(hv[k * D + d]);
      const double got = hc[m * D + d];
      err = std::isfinite(got) ? std::fmax(err, std::fabs(got - acc)) : INFINITY;
      ref_max = std::fmax(ref_max, std::fabs(acc));
    }
  const bool ok = err <= 1e-3 * ref_max + 1e-4;
  std::printf("%-44s N=%3d: |C err| %.3g (max |C| %.3g) -> %s\n", name, kN, err, ref_max, ok ? "ok" : "FAIL");
  CK(cudaFree(da));
  CK(cudaFree(dv));
  CK(cudaFree(dc));
  return ok ? 0 : 1;
}

int main() {
  int fails = 0;
  // Expected encoding (sm90_primitives.h): MN-major V, LBO = slab stride (kN * 128 B), SBO = 1024 B.
  fails += run_case<__nv_bfloat16, 64>("bf16 SS n64 + RS 2 x n64", 0, 64 * 128, 1024);
  fails += run_case<__nv_bfloat16, 64>("bf16 SS n64 + RS n128", 1, 64 * 128, 1024);
  fails += run_case<__nv_bfloat16, 128>("bf16 SS n128 + RS n128", 1, 128 * 128, 1024);
  fails += run_case<__half, 128>("fp16 SS n128 + RS n128", 1, 128 * 128, 1024);
  fails += run_case<__half, 64>("fp16 SS n64 + RS 2 x n64", 0, 64 * 128, 1024);
  // Transposed A (the backward's dQ = dS K with dS^T in shared memory), K = 64 / 128 keys.
  fails += run_ta_case<__nv_bfloat16, 64>("bf16 SS_ta 2 x n64 (A MN-major), K 64");
  fails += run_ta_case<__half, 128>("fp16 SS_ta 2 x n64 (A MN-major), K 128");
  std::printf("%d / 7 expected-encoding cases failed\n", fails);
  // The swapped order, for the record (expected to fail for N = 128; 2 x n64 has a single slab).
  run_case<__nv_bfloat16, 64>("bf16 RS n128, swapped LBO/SBO (probe)", 1, 1024, 64 * 128);
  return fails ? 1 : 0;
}
#endif  // SEER_WGMMA_SELFTEST_MAIN
