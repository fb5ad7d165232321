// Builder of the persistent sm90 kernels' work queue (AttnParams::item_order / item_queue; the order and why:
// tile_scheduler.h "Work queue"). One launch builds the queue of one tiling, or of the forward's two (the
// single kernel's and the pair kernel's; the device-side pick runs one of them).
//
// The order is section > token tile (last first) > sequence > kv head > head slot, valid items only. An
// entry is one (token tile tt, sequence b) with tt < tiles(b) = ceil(seqlen_q(b) / tile_tokens); inside a
// section it stands for its section's kv heads x head slots consecutive items. Entries of the levels above
// tt (tt' > tt) come first: above(tt) = sum_b max(0, tiles(b) - 1 - tt) of them, then those of level tt in
// sequence order (the rank of b among the sequences with tiles(b) > tt). Every section repeats the same
// entries, each section's items after the previous sections' (sum_b tiles(b) entries x its heads x slots).
//
// Work split: one CTA of kThreads threads per (tiling, level tt) (one for a tiling without levels); two passes over the sequences (sums,
// then a CTA-wide scan of the "b has level tt" flags that places and writes the entries). Positions past
// item_capacity are dropped (only inconsistent cu_seqlens reach them: attention_params.h item_capacity_of).
#include <cstdint>

#include "common/platform.h"
#include "attention/attention_params.h"
#include "attention/seqlen.h"
#include "attention/tile_scheduler.h"

namespace seer {
namespace {

constexpr int kThreads = 256;

struct OrderArgs {
  AttnParams p[2];                 // the tilings (p[1] unused with one)
  int levels0;                     // CTAs of tiling 0 (its levels); the others are tiling 1's
  int section_heads;               // kv heads per section (>= 1)
  unsigned long long* zero_counts; // optional: counters set to 0 by CTA 0
  int n_zero_counts;
};

// Token tiles of sequence b in tiling p (its clamped length: the rule of every attention kernel).
__device__ __forceinline__ int seq_tiles(const AttnParams& p, int b) {
  const int len = seq_bounds(p, b).seqlen_q;
  return (len + p.tile_tokens - 1) / p.tile_tokens;
}

// Sum of v over the CTA (every thread gets it). red: kThreads entries of shared memory.
__device__ __forceinline__ long long cta_sum(long long v, long long* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s >= 1; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const long long r = red[0];
  __syncthreads();
  return r;
}

// Exclusive prefix sum of f over the CTA's threads (Hillis-Steele in shared memory); total: the sum.
__device__ __forceinline__ int cta_exclusive_scan(int f, int* scan, int& total) {
  scan[threadIdx.x] = f;
  __syncthreads();
  for (int o = 1; o < kThreads; o <<= 1) {
    const int add = static_cast<int>(threadIdx.x) >= o ? scan[threadIdx.x - o] : 0;
    __syncthreads();
    scan[threadIdx.x] += add;
    __syncthreads();
  }
  total = scan[kThreads - 1];
  const int r = scan[threadIdx.x] - f;
  __syncthreads();
  return r;
}

__global__ void __launch_bounds__(kThreads) build_item_order_kernel(const OrderArgs a) {
  __shared__ long long red[kThreads];
  __shared__ int scan[kThreads];
  const int which = static_cast<int>(blockIdx.x) < a.levels0 ? 0 : 1;
  const AttnParams& p = a.p[which];
  const int tt = static_cast<int>(blockIdx.x) - (which == 0 ? 0 : a.levels0);
  if (blockIdx.x == 0 && static_cast<int>(threadIdx.x) < a.n_zero_counts) a.zero_counts[threadIdx.x] = 0;

  // Pass 1: entries of the levels above tt, and of all levels.
  long long above = 0, total = 0;
  for (int b = threadIdx.x; b < p.batch; b += kThreads) {
    const int nt = seq_tiles(p, b);
    above += max(0, nt - 1 - tt);
    total += nt;
  }
  above = cta_sum(above, red);
  total = cta_sum(total, red);

  const int slots = p.group / p.pack;
  const long long cap = p.item_capacity;
  if (tt == 0 && threadIdx.x == 0) {
    const long long n_items = total * p.h_kv * slots;
    p.item_queue[0] = static_cast<unsigned>(n_items < cap ? n_items : cap);
    p.item_queue[1] = 0;
    p.item_queue[2] = 0;
  }

  // Pass 2: this level's entries in sequence order, each written once per section (its heads x slots).
  const long long per_tt = static_cast<long long>(p.batch) * p.h_kv * slots;  // item numbers per token tile
  int* order = const_cast<int*>(p.item_order);
  long long base = above;
  for (int b0 = 0; b0 < p.batch; b0 += kThreads) {  // uniform
    const int b = b0 + static_cast<int>(threadIdx.x);
    const bool has = b < p.batch && seq_tiles(p, b) > tt;
    int n_here;
    const int rank = cta_exclusive_scan(has ? 1 : 0, scan, n_here);
    if (has) {
      const long long e = base + rank;
      const long long w_tt = static_cast<long long>(p.n_tok_tiles - 1 - tt) * per_tt;
      for (int h0 = 0; h0 < p.h_kv; h0 += a.section_heads) {
        const int sh = min(a.section_heads, p.h_kv - h0);  // heads of this section
        const long long pos0 = static_cast<long long>(h0) * slots * total + e * sh * slots;
        for (int j = 0; j < sh * slots; ++j) {
          const long long pos = pos0 + j;
          const int hk = h0 + j / slots, slot = j % slots;
          if (pos < cap) order[pos] = static_cast<int>(w_tt + (static_cast<long long>(b) * p.h_kv + hk) * slots + slot);
        }
      }
    }
    base += n_here;
  }
}

bool queue_ok(const AttnParams& p) {
  return p.item_order != nullptr && p.item_queue != nullptr && p.item_capacity >= 0 && p.pack >= 1 &&
         p.group % p.pack == 0 && p.tile_tokens >= 1 && p.n_tok_tiles >= 0 && num_items(p) <= 0x7fffffffll;
}

}  // namespace

int run_build_item_order(const AttnParams& p, const AttnParams* p2, int section_heads, unsigned long long* zero_counts,
                         int n_zero_counts, void* stream) {
  if (!queue_ok(p) || (p2 != nullptr && !queue_ok(*p2)) || section_heads < 1 || n_zero_counts < 0 ||
      n_zero_counts > kThreads || (n_zero_counts > 0 && zero_counts == nullptr))
    return static_cast<int>(cudaErrorInvalidValue);
  OrderArgs a{};
  a.p[0] = p;
  if (p2 != nullptr) a.p[1] = *p2;
  // One CTA per level; a tiling without token tiles gets one (level 0: it writes the empty queue).
  a.levels0 = p.n_tok_tiles > 0 ? p.n_tok_tiles : 1;
  a.section_heads = section_heads;
  a.zero_counts = zero_counts;
  a.n_zero_counts = n_zero_counts;
  const long long grid = static_cast<long long>(a.levels0) + (p2 != nullptr ? (p2->n_tok_tiles > 0 ? p2->n_tok_tiles : 1) : 0);
  if (grid > 0x7fffffffll) return static_cast<int>(cudaErrorInvalidValue);
  build_item_order_kernel<<<static_cast<unsigned>(grid), kThreads, 0, static_cast<seer_stream_t>(stream)>>>(a);
  return static_cast<int>(SEER_LAST_ERROR());
}

}  // namespace seer
