// Run-time dispatch of the decode launchers on (head dim, dtype), and the split-KV heuristic.
// Compiles no kernel itself (the instantiations/ files do); it only reads the traits' shapes.
#include <algorithm>
#include <atomic>
#include <cstdint>

#include "common/launch.h"
#include "decode/decode_kernel.cuh"
#include "decode/decode_launch.h"
#include "decode/decode_params.h"

namespace seer {

namespace {

constexpr int kMaxDevices = 64;
// Automatic splits: aim for kTargetWaves waves of CTAs so that uneven sequence lengths balance out
// dynamically; never split a full cache into pieces shorter than kMinKeysPerSplit slots (each split
// pays a fixed cost: selection scan, pipeline fill, a partial row written and re-read), and never use
// more than kMaxAutoSplits.
//
// The kernel splits rows adaptively (DecodeParams::min_split_keys): num_splits is the count for the
// longest rows, a row with few selected blocks uses fewer (its other CTAs exit at once). So the
// waves target counts the CTAs of the longest rows; short rows (D1: lengths 1K..32K) and low densities
// cost little more than the exiting CTAs. v0 (4 waves, no adaptation) gave D1 5 splits, and CTAs whose
// work differed ~30x between rows: a long tail at low density (d = 0.1: 62% of the copy bandwidth).
constexpr int kTargetWaves = 12;        // with row-adaptive splits
constexpr int kTargetWavesUniform = 4;  // min_split_keys == 0 (every row uses all splits): v0's value
constexpr int kMinKeysPerSplit = 256;
constexpr int kMaxAutoSplits = 64;

// Device attributes, cached per device (a benign race: every writer stores the same value).
struct DeviceInfo {
  std::atomic<int> sms{0};
  std::atomic<int> smem_per_sm{0};
  std::atomic<int> major{0};
};
DeviceInfo g_devices[kMaxDevices];

struct DeviceFacts {
  int sms;          // streaming multiprocessors
  int smem_per_sm;  // shared memory bytes per SM
  int major;        // compute capability major
};

DeviceFacts device_info() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) dev = 0;
  DeviceInfo* info = (dev >= 0 && dev < kMaxDevices) ? &g_devices[dev] : nullptr;
  if (info != nullptr && info->sms.load(std::memory_order_acquire) > 0) {
    return {info->sms.load(std::memory_order_relaxed), info->smem_per_sm.load(std::memory_order_relaxed),
            info->major.load(std::memory_order_relaxed)};
  }
  int n = 0, s = 0, major = 0;
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) n = 0;
  if (cudaDeviceGetAttribute(&s, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess) s = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) major = 0;
  if (n <= 0) n = 132;           // fall back to an H100's values rather than fail
  if (s <= 0) s = 228 * 1024;
  if (info != nullptr) {
    info->smem_per_sm.store(s, std::memory_order_relaxed);
    info->major.store(major, std::memory_order_relaxed);
    info->sms.store(n, std::memory_order_release);  // last: readers test it (acquire)
  }
  return {n, s, major};
}

// Dynamic shared memory of the split kernel for a head dim (0 if unsupported).
int decode_smem_bytes(int head_dim) {
  switch (head_dim) {
    case 64: return decode::DecodeTraits<64, __half>::kSmemBytes;
    case 128: return decode::DecodeTraits<128, __half>::kSmemBytes;
    case 256: return decode::DecodeTraits<256, __half>::kSmemBytes;
    default: return 0;
  }
}

}  // namespace

int decode_num_splits(const DecodeParams& p, int requested) {
  const int nb = std::max(p.num_blocks, 1);
  if (requested > 0) return std::min(requested, nb);
  if (p.num_blocks <= 1) return 1;
  const DeviceFacts dev = device_info();
  const int sms = dev.sms, smem_per_sm = dev.smem_per_sm;
  const int smem = decode_smem_bytes(p.head_dim);
  constexpr int kThreads = decode::DecodeTraits<64, __half>::kThreads;
  // CTAs per SM: shared memory (1 KiB reserved per CTA) and thread limits; registers (~150 per thread,
  // 64 threads per CTA) never bind before these.
  int per_sm = smem > 0 ? smem_per_sm / (smem + 1024) : 1;
  per_sm = std::max(1, std::min(per_sm, 2048 / kThreads));
  const int64_t slots = static_cast<int64_t>(sms) * per_sm;
  const int n_chunks = (p.n_tok * p.group + decode::DecodeTraits<64, __half>::kRows - 1) /
                       decode::DecodeTraits<64, __half>::kRows;
  const int64_t work = static_cast<int64_t>(p.batch) * p.h_kv * n_chunks;  // CTAs without splitting
  const int64_t target = (p.min_split_keys > 0 ? kTargetWaves : kTargetWavesUniform) * slots;
  if (work <= 0 || work >= target) return 1;
  int64_t splits = (target + work - 1) / work;
  const int64_t max_by_len = std::max<int64_t>(1, static_cast<int64_t>(p.num_blocks) * p.block_size / kMinKeysPerSplit);
  splits = std::min<int64_t>(splits, std::min<int64_t>(max_by_len, kMaxAutoSplits));
  splits = std::min<int64_t>(splits, nb);
  return static_cast<int>(std::max<int64_t>(splits, 1));
}

int run_block_sparse_decode(const DecodeParams& params, void* stream) {
  seer_stream_t s = static_cast<seer_stream_t>(stream);
  DecodeParams p = params;
  p.grid_dep = device_info().major >= 9;
  if (p.is_bf16) {
    switch (p.head_dim) {
      case 64: return decode::run_decode_<64, __nv_bfloat16>(p, s);
      case 128: return decode::run_decode_<128, __nv_bfloat16>(p, s);
      case 256: return decode::run_decode_<256, __nv_bfloat16>(p, s);
      default: break;
    }
  } else {
    switch (p.head_dim) {
      case 64: return decode::run_decode_<64, __half>(p, s);
      case 128: return decode::run_decode_<128, __half>(p, s);
      case 256: return decode::run_decode_<256, __half>(p, s);
      default: break;
    }
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

const char* decode_error_string(int code) { return SEER_ERROR_STRING(static_cast<seer_error_t>(code)); }

}  // namespace seer
