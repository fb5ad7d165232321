// Run-time dispatch of the decode launchers on (head dim, dtype), and the split-KV heuristic.
// Compiles no kernel itself (the instantiations/ files do); it only reads the traits' shapes.
#include <algorithm>
#include <cstdint>

#include "common/device_facts.h"
#include "common/launch.h"
#include "decode/decode_kernel.cuh"
#include "decode/decode_launch.h"
#include "decode/decode_params.h"

namespace seer {

namespace {

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
// 8 waves (D1 on 132 SMs: 17 splits) rather than v8's 12 (25): `seer_decode_selftest --time` on the H100
// (benchmarks/NOTES.md v16) had 16 splits 2.2-2.7% faster than 25 at d = 0.1 (fewer exiting CTAs), 0.4-0.8%
// at d = 0.5, equal at d = 1; 12 splits cost up to 1.1% on paged caches at d = 1, 8 splits 2-5% at d >= 0.5.
constexpr int kTargetWaves = 8;         // with row-adaptive splits
constexpr int kTargetWavesUniform = 4;  // min_split_keys == 0 (every row uses all splits): v0's value
constexpr int kMinKeysPerSplit = 256;
constexpr int kMaxAutoSplits = 64;

// Device attributes (cached per device, common/device_facts.h); an H100's values if the query fails.
struct DecodeDevice {
  int sms, smem_per_sm, major;
};
DecodeDevice decode_device() {
  const DeviceFacts f = current_device_facts();
  if (f.error != 0) return {132, 228 * 1024, 0};
  return {f.sms > 0 ? f.sms : 132, f.smem_per_sm > 0 ? f.smem_per_sm : 228 * 1024, f.major};
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
  const DecodeDevice dev = decode_device();
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
  if (p.min_split_keys > 0) {
    // Row-adaptive splits: a row listing `sel` blocks works in ceil(sel * block_size / min_split_keys)
    // of them, so more splits than the most any row can list only add CTAs that exit at once. The index
    // form bounds `sel` by its K entries (+ the forced first block): D1 at density 0.1 keeps ~52 of 512.
    const int64_t listed = static_cast<int64_t>(p.num_indices) + (p.first_block_unmasked ? 1 : 0);
    const int64_t most = p.block_indices != nullptr ? std::min<int64_t>(nb, listed) : nb;
    splits = decode_row_splits(most, p.block_size, p.min_split_keys, static_cast<int>(splits));
  }
  return static_cast<int>(std::max<int64_t>(splits, 1));
}

int run_block_sparse_decode(const DecodeParams& params, void* stream) {
  seer_stream_t s = static_cast<seer_stream_t>(stream);
  DecodeParams p = params;
  p.grid_dep = decode_device().major >= 9;
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
