// Hopper (sm_90) TMA loads of row groups of a [rows, heads, cols] tensor of 16-bit elements (K and V of the
// attention kernels: [T_k, H_kv, D]) into the 128-byte-swizzled slab layout wgmma reads
// (common/sm90_primitives.h "SW128"): one box = 64 consecutive rows x 64 columns of one head, which lands
// as one 8 KB slab piece - 16-byte chunk c of box row r at r * 128 + ((c ^ (r % 8)) << 4), for a
// 1024-byte-aligned destination.
//
//   TmaMap           : the 128-byte tensor map (CUtensorMap) as plain bytes, so that params structs shared
//                      with other platforms can hold one; a kernel reads it from its __grid_constant__
//                      parameters.
//   rows_tma_describable : host: whether a map can describe a tensor (the encoders' shared test).
//   encode_rows_tma  : host: the map of a tensor, or false where none can describe it (a base or stride
//                      that is not 16-byte aligned, no driver encoder) - the caller then keeps its cp.async
//                      path. The encoder comes from the runtime's driver entry point: nothing links libcuda.
//   tma_load_rows    : device: one box into shared memory; its bytes complete_tx on an mbarrier.
//   mbar_arrive_expect_tx : device: an arrival that also announces `bytes` to come on the barrier's phase.
//
// Under SEER_CUDA_EMU (tests/cuda_emu) the map holds the emulation's own description and the box is
// copied at issue, with the same swizzle, then completed on the emulated barrier.
#pragma once
#include <cstdint>
#include <cstring>

#include "common/platform.h"
#include "common/sm90_pipeline.h"

#if !defined(SEER_CUDA_EMU)
#include <cuda.h>  // CUtensorMap and the encoder's types (header only)
#endif

namespace seer {
namespace sm90 {

struct alignas(128) TmaMap {
  unsigned char bytes[128];
};

constexpr int kTmaBoxRows = 64;  // rows (keys) per box
constexpr int kTmaBoxCols = 64;  // 16-bit columns per box: one 128-byte swizzle row
constexpr int kTmaBoxBytes = kTmaBoxRows * kTmaBoxCols * 2;

// Host: whether a map can describe a [rows, heads, cols] tensor of 16-bit elements (element strides row_stride,
// head_stride): a 16-byte-aligned base and strides (the driver's rule; strides below 2^40 bytes), whole 64-column
// boxes, at least one row and head. The real encoder and the emulation's share it.
inline bool rows_tma_describable(const void* base, int64_t rows, int64_t heads, int64_t cols, int64_t row_stride,
                                 int64_t head_stride) {
  return base != nullptr && (reinterpret_cast<uintptr_t>(base) & 15) == 0 && rows >= 1 && rows <= UINT32_MAX && heads >= 1 &&
         cols % kTmaBoxCols == 0 && row_stride > 0 && head_stride > 0 && (row_stride * 2) % 16 == 0 &&
         (head_stride * 2) % 16 == 0 && row_stride * 2 < (int64_t{1} << 40) && head_stride * 2 < (int64_t{1} << 40);
}

#if defined(SEER_CUDA_EMU)
struct EmuTmaMap {
  const unsigned char* base;
  int64_t dim[3];           // cols, heads, rows
  int64_t stride_bytes[3];  // 2, head stride, row stride
};
static_assert(sizeof(EmuTmaMap) <= sizeof(TmaMap), "emulated map fits");

inline bool encode_rows_tma(TmaMap& map, const void* base, bool /*bf16*/, int64_t rows, int64_t heads, int64_t cols,
                            int64_t row_stride, int64_t head_stride) {
  if (!rows_tma_describable(base, rows, heads, cols, row_stride, head_stride)) return false;
  EmuTmaMap e{static_cast<const unsigned char*>(base), {cols, heads, rows}, {2, head_stride * 2, row_stride * 2}};
  std::memset(map.bytes, 0, sizeof(map.bytes));
  std::memcpy(map.bytes, &e, sizeof(e));
  return true;
}
SEER_DEVICE void tma_prefetch_map(const TmaMap*) {}
SEER_DEVICE void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) { seer_emu::mbar_arrive_tx(bar, 1, bytes); }
// Box (col0 .. col0 + 63, head, row0 .. row0 + 63); rows past the tensor's end are zero-filled.
SEER_DEVICE void tma_load_rows(void* smem_dst, const TmaMap* map, int col0, int head, int row0, uint64_t* bar) {
  EmuTmaMap e;
  std::memcpy(&e, map->bytes, sizeof(e));
  if ((seer_emu::to_shared(smem_dst) & 1023u) != 0) seer_emu::fail("tma_load_rows: destination not 1024-byte aligned");
  if (col0 < 0 || col0 + kTmaBoxCols > e.dim[0] || head < 0 || head >= e.dim[1] || row0 < 0)
    seer_emu::fail("tma_load_rows: box outside the tensor");
  unsigned char* dst = static_cast<unsigned char*>(smem_dst);
  for (int r = 0; r < kTmaBoxRows; ++r)
    for (int c = 0; c < 8; ++c) {
      unsigned char* d = dst + r * 128 + ((c ^ (r & 7)) << 4);
      if (row0 + r < e.dim[2])
        std::memcpy(d, e.base + (row0 + r) * e.stride_bytes[2] + head * e.stride_bytes[1] + (col0 + 8 * c) * 2, 16);
      else
        std::memset(d, 0, 16);
    }
  seer_emu::mbar_complete_tx(bar, kTmaBoxBytes);
}
#else
// cuTensorMapEncodeTiled's type (the CUDA 12.0 ABI the entry point is asked for).
using TensorMapEncodeFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*, const cuuint64_t*,
                                       const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                       CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
// Host: the driver's cuTensorMapEncodeTiled through the runtime (found once; nullptr without a driver).
inline TensorMapEncodeFn tensor_map_encoder() {
  static const TensorMapEncodeFn fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return static_cast<TensorMapEncodeFn>(nullptr);
    }
    return reinterpret_cast<TensorMapEncodeFn>(f);
  }();
  return fn;
}

// Host: the map of a [rows, heads, cols] tensor (element strides row_stride, head_stride; columns
// contiguous) with 64 x 64 boxes, 128-byte swizzle, rows past `rows` zero-filled. False: no map (keep cp.async).
inline bool encode_rows_tma(TmaMap& map, const void* base, bool bf16, int64_t rows, int64_t heads, int64_t cols,
                            int64_t row_stride, int64_t head_stride) {
  static_assert(sizeof(CUtensorMap) == sizeof(TmaMap), "TmaMap holds a CUtensorMap");
  if (!rows_tma_describable(base, rows, heads, cols, row_stride, head_stride)) return false;
  const TensorMapEncodeFn encode = tensor_map_encoder();
  if (encode == nullptr) return false;
  const cuuint64_t dim[3] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(heads), static_cast<cuuint64_t>(rows)};
  const cuuint64_t stride[2] = {static_cast<cuuint64_t>(head_stride * 2), static_cast<cuuint64_t>(row_stride * 2)};
  const cuuint32_t box[3] = {kTmaBoxCols, 1, kTmaBoxRows};
  const cuuint32_t estride[3] = {1, 1, 1};
  CUtensorMap m;
  const CUresult r = encode(&m, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3,
                            const_cast<void*>(base), dim, stride, box, estride, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) return false;
  std::memcpy(map.bytes, &m, sizeof(m));
  return true;
}

// Device: the map's descriptor into the TMA unit's cache ahead of the first load.
SEER_DEVICE void tma_prefetch_map(const TmaMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}
// One arrival on `bar` that adds `bytes` to the transaction count of its current phase (release, as mbar_arrive).
SEER_DEVICE void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
// Box (col0 .. col0 + 63, head, row0 .. row0 + 63) of the map's tensor into smem_dst (1024-byte aligned);
// its bytes complete_tx on `bar`. Issued by one thread.
SEER_DEVICE void tma_load_rows(void* smem_dst, const TmaMap* map, int col0, int head, int row0, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(
          smem_addr(smem_dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(col0), "r"(head), "r"(row0), "r"(smem_addr(bar))
      : "memory");
}
#endif

}  // namespace sm90
}  // namespace seer
