// L2 fp32 reduction throughput on Hopper - the bound of a dQ added with atomics (benchmarks/NOTES.md v24):
// 64-row x 128-float tiles added into a workspace, by per-thread red.global.add.v4.f32 (whole 512-byte rows
// per warp instruction, or the wgmma-fragment pattern of the dK/dV kernel: 16 rows x 32 bytes) or by
// cp.reduce.async.bulk .add.f32 from shared memory (64 rows of 512 bytes, or one contiguous 32 KB tile),
// against plain 16-byte stores. Workspace layouts: rows (tokens x 32 heads x 128: row stride 16 KB) or
// tiled (each tile contiguous); sizes: 16 MB (stays in the L2) and 512 MB (does not: DRAM-bound).
//
//   nvcc -arch=sm_90a -O3 -o /tmp/l2_reduce_bench benchmarks/l2_reduce_bench.cu && /tmp/l2_reduce_bench
#include <cstdint>
#include <cstdio>

#include <cuda_runtime.h>

#define CK(x)                                                           \
  do {                                                                  \
    cudaError_t e_ = (x);                                               \
    if (e_ != cudaSuccess) {                                            \
      std::printf("%s: %s\n", #x, cudaGetErrorString(e_));              \
      return 1;                                                         \
    }                                                                   \
  } while (0)

constexpr int kRowStride = 32 * 128;  // floats between the rows of one head's tile (layout "rows")

__device__ __forceinline__ float* tile_base(float* acc, int tile, bool tiled) {
  if (tiled) return acc + static_cast<size_t>(tile) * 64 * 128;
  const int tt = tile / 32, h = tile % 32;
  return acc + static_cast<size_t>(tt) * 64 * kRowStride + h * 128;
}
// The tile a CTA adds in iteration `it` (scattered over the workspace).
__device__ __forceinline__ int pick(int it, int n_tiles) { return static_cast<int>((blockIdx.x * 7919u + it * 104729u) % n_tiles); }

// mode 0: red.v4, whole rows; 1: red.v4, wgmma-fragment pattern; 2: st.v4, whole rows.
__global__ void __launch_bounds__(128) k_red(float* acc, int n_tiles, int iters, int mode, int tiled) {
  const int t = threadIdx.x, lane = t & 31, w = t >> 5, g = lane >> 2, t4 = lane & 3;
  for (int it = 0; it < iters; ++it) {
    float* base = tile_base(acc, pick(it, n_tiles), tiled);
    const int rs = tiled ? 128 : kRowStride;
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      float* a = mode == 1 ? base + static_cast<size_t>(16 * w + g + 8 * (t4 & 1)) * rs + 8 * k + 4 * (t4 >> 1)
                           : base + static_cast<size_t>(w + 4 * k) * rs + lane * 4;
      if (mode == 2)
        asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(a), "f"(1.f), "f"(1.f), "f"(1.f), "f"(1.f) : "memory");
      else
        asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(a), "f"(1.f), "f"(1.f), "f"(1.f), "f"(1.f) : "memory");
    }
  }
}

// mode 3: 64 bulk reductions of 512 bytes (threads 0..63, one row each); mode 4: one of 32 KB (tiled only).
// Two shared source buffers in turn; a thread waits until its previous group has read its buffer.
__global__ void __launch_bounds__(128) k_bulk(float* acc, int n_tiles, int iters, int mode, int tiled) {
  __shared__ __align__(128) float s[2][64 * 128];
  for (int i = threadIdx.x; i < 2 * 64 * 128; i += 128) (&s[0][0])[i] = 1.f;
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  __syncthreads();
  for (int it = 0; it < iters; ++it) {
    float* base = tile_base(acc, pick(it, n_tiles), tiled);
    const uint32_t sb = static_cast<uint32_t>(__cvta_generic_to_shared(&s[it & 1][0]));
    const bool issuer = mode == 3 ? threadIdx.x < 64 : threadIdx.x == 0;
    if (!issuer) continue;
    if (mode == 3) {
      float* gp = base + static_cast<size_t>(threadIdx.x) * (tiled ? 128 : kRowStride);
      asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], 512;" ::"l"(gp),
                   "r"(sb + threadIdx.x * 512)
                   : "memory");
    } else {
      asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], 32768;" ::"l"(base), "r"(sb)
                   : "memory");
    }
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    asm volatile("cp.async.bulk.wait_group.read 1;" ::: "memory");
  }
  asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}

int main() {
  const int iters = 100, max_tiles = 16384;
  float* acc;
  CK(cudaMalloc(&acc, static_cast<size_t>(max_tiles) * 64 * 128 * 4));
  CK(cudaMemset(acc, 0, static_cast<size_t>(max_tiles) * 64 * 128 * 4));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs; %d tiles of 32 KB per CTA, 128 threads per CTA, best of 3 after a warm-up\n", prop.name,
              prop.multiProcessorCount, iters);
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  const char* names[] = {"red.v4 whole rows", "red.v4 fragment pattern", "st.v4 whole rows", "bulk 64 x 512 B",
                         "bulk 32 KB"};
  for (int n_tiles : {512, max_tiles})
    for (int grid_mult : {1, 2})
      for (int tiled = 0; tiled <= 1; ++tiled)
        for (int mode = 0; mode <= 4; ++mode) {
          if (mode == 4 && !tiled) continue;
          const int grid = prop.multiProcessorCount * grid_mult;
          float best = 1e30f;
          for (int r = 0; r < 4; ++r) {
            CK(cudaEventRecord(e0));
            if (mode <= 2)
              k_red<<<grid, 128>>>(acc, n_tiles, iters, mode, tiled);
            else
              k_bulk<<<grid, 128>>>(acc, n_tiles, iters, mode, tiled);
            CK(cudaEventRecord(e1));
            CK(cudaEventSynchronize(e1));
            CK(cudaGetLastError());
            float ms = 0.f;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (r > 0 && ms < best) best = ms;
          }
          const double bytes = static_cast<double>(grid) * iters * 64 * 128 * 4;
          std::printf("workspace %4d MB  CTAs %4d  %-5s  %-24s %8.3f ms  %7.1f GB/s\n", n_tiles / 32, grid,
                      tiled ? "tiled" : "rows", names[mode], best, bytes / best / 1e6);
        }
  return 0;
}
