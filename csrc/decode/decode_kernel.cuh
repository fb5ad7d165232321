// Block-sparse flash-decoding kernels: the select kernel (compacts each (sequence, kv head) row's
// selection once), the split kernel (one CTA per sequence x kv head x row chunk x split) and the
// combine kernel (merges split partials). See decode_params.h for the work split.
//
// Split kernel, per CTA (kNWarps = 2 warps):
//   0. Row-adaptive splits (params.min_split_keys > 0, num_splits > 1): a split beyond what its row
//      needs (~min_split_keys keys per split) writes lse_partial = -inf and exits, first on the upper
//      bound of valid blocks (before any load), then on the row's listed-block count.
//   1. Read the row's listed-block count (select kernel) and take the share [r0, r1).
//   2. Issue the cp.async of the 16 q rows of the row chunk (rows past L * group are zero-filled), and
//      copy the share's block ids into a shared window of kListCap entries (refilled if a share is
//      longer).
//   3. Stream the keys of the listed blocks in 16-key tiles through a kStages-deep cp.async ring; a
//      stage holds kNWarps tiles of K and V and warp w computes tile w of every stage with mma.sync
//      (S = Q K^T: 16 rows x 16 keys; O += P V), keeping its own online-softmax state (common/softmax.h).
//      Keys outside the valid slots are zero-filled (never read) and masked to -inf; keys after a
//      row's own token slot (L > 1) are masked to -inf.
//   4. Merge the warps' (m, l, O) through shared memory; write out/lse or the split partials.
// Nothing here assumes finite sentinels: -inf maxima are replaced by 0 before exponentiation, so
// empty rows give l = 0, out = 0, lse = -inf.
#pragma once
#include <cstdint>

#include "common/platform.h"
#include "common/sm80_primitives.h"
#include "common/softmax.h"
#include "decode/decode_params.h"
#include "decode/decode_schedule.h"

namespace seer {
namespace decode {

constexpr float kNegInf = -__builtin_huge_valf();
constexpr float kLn2 = 0.6931471805599453f;

// Compile-time shape of the split kernel for one head dim.
template <int kHeadDim_, typename Elem_>
struct DecodeTraits {
  using Elem = Elem_;                                   // __half or __nv_bfloat16
  static constexpr int kHeadDim = kHeadDim_;            // D
  // Warps per CTA (each owns one 16-key tile per stage). Two (32-key stages, ~54 KiB of shared memory
  // at D = 128, 4 CTAs per SM) against four (64-key stages, 2 CTAs per SM), H200, D1 (benchmarks/NOTES.md
  // v5): 8.5-9.4% faster at d = 0.5, paged 17% faster at d = 0.5 and 2-3% at d = 0.1, contiguous 4-5%
  // slower at d = 0.1 (more CTAs pay the fixed cost).
  static constexpr int kNWarps = 2;
  static constexpr int kThreads = kNWarps * 32;
  static constexpr int kRows = 16;                      // q heads per CTA (one m16 tile)
  static constexpr int kTileKeys = 16;                  // keys per warp tile (block sizes are multiples)
  static constexpr int kStageKeys = kNWarps * kTileKeys;  // keys per pipeline stage
  // Pipeline depth: kStages - 1 stages in flight per CTA, several CTAs per SM.
  static constexpr int kStages = kHeadDim <= 64 ? 4 : 3;
  static constexpr int kChunksPerRow = kHeadDim / 8;    // 16-byte chunks in one key row
  static constexpr int kRowsPerIter = kThreads / kChunksPerRow;  // key rows covered by one load pass
  static constexpr int kChunksPerThread = kStageKeys * kChunksPerRow / kThreads;  // per K (and per V)
  static constexpr int kListCap = 512;                  // block ids in the shared selection window
  static_assert(kHeadDim % 64 == 0, "swizzle needs >= 8 chunks per row");
  static_assert(kThreads % kChunksPerRow == 0 && kTileKeys % kRowsPerIter == 0,
                "a load pass must cover whole rows, and a tile whole passes");
  static_assert(sizeof(Elem) == 2, "16-bit elements");

  // Shared memory layout (bytes). Elements of a [rows][D] tile are stored with the 16-byte chunk
  // index XOR-swizzled by (row & 7), so that ldmatrix of 8 rows hits 8 distinct bank groups.
  static constexpr int kTileElems = kStageKeys * kHeadDim;          // one stage of K (or of V)
  static constexpr int kStageBytes = 2 * kTileElems * 2;            // K then V
  static constexpr int kOffStages = 0;
  static constexpr int kOffQ = kOffStages + kStages * kStageBytes;  // [kRows][D] q tile
  static constexpr int kOffList = kOffQ + kRows * kHeadDim * 2;     // int [kListCap] block ids
  static constexpr int kOffSlot0 = kOffList + kListCap * 4;         // int [kStages][kNWarps] first slot
  static constexpr int kOffM = kOffSlot0 + kStages * kNWarps * 4;   // float [kNWarps][kRows] row max
  static constexpr int kOffL = kOffM + kNWarps * kRows * 4;         // float [kNWarps][kRows] row sum
  static constexpr int kSmemBytes = kOffL + kNWarps * kRows * 4;
  // The epilogue reuses the stage ring for the warps' fp32 partial outputs [kNWarps][kRows][D].
  static constexpr int kMergeBytes = kNWarps * kRows * kHeadDim * 4;
  static_assert(kMergeBytes <= kStages * kStageBytes, "merge buffer must fit in the stage ring");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory of one sm_90 CTA");
};

// ---------------------------------------------------------------------------------------------
// Select kernel: one CTA per (kv head, sequence) writes the row's list of attended blocks
// (sel_list / sel_count, see decode_params.h). Mask form: one coalesced pass over the valid block
// range. Index form: the valid entries are set in a shared bitmap over the valid block range
// (duplicates collapse), then listed in ascending order like a mask, so the list does not depend on
// the order of the entries or on thread timing (bitwise-reproducible outputs). Rows of more than
// kSelectBitmapWords * 32 valid blocks fall back to a quadratic first-occurrence test.
// ---------------------------------------------------------------------------------------------
constexpr int kSelectThreads = 128;
constexpr int kSelectBitmapWords = 2048;  // 8 KiB: index rows up to 65536 valid blocks use the bitmap

template <int kThreads>
__global__ void __launch_bounds__(kThreads) decode_select_kernel(const DecodeParams p) {
  constexpr int kWarps = kThreads / 32;
  __shared__ uint32_t s_bits[kSelectBitmapWords];
  __shared__ int s_warp[kWarps];
  SEER_GRID_DEP_LAUNCH();  // the split kernel may launch now: it waits for this grid before reading its output
  const SelectItem item = select_item();
  const int hk = item.hk, b = item.b;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int64_t row_id = (int64_t)b * p.h_kv + hk;
  int* list = p.sel_list + row_id * p.sel_cap;

  const int S = p.seqlen_max;
  const int Bk = p.block_size;
  const int len = min(max(p.cache_seqlens[b], 0), S);
  if (len == 0) {
    if (tid == 0) p.sel_count[row_id] = 0;
    return;
  }
  const int lo = p.left_pad ? S - len : 0;
  const int hi = p.left_pad ? S : len;
  const int blk_lo = lo / Bk;
  const int n_blk = (hi + Bk - 1) / Bk - blk_lo;   // blocks holding a valid slot: [blk_lo, blk_lo + n_blk)
  const bool extra = p.first_block_unmasked;       // block blk_lo listed first, excluded below
  int count = 0;
  if (extra) {
    if (tid == 0) list[0] = blk_lo;
    count = 1;
  }

  // Appends block `blk` of every thread with keep set, in thread order (collective, uniform count).
  auto append = [&](bool keep, int blk) {
    const unsigned bal = SEER_BALLOT(keep);
    if (lane == 0) s_warp[warp] = __popc(bal);
    __syncthreads();
    int off = count, total = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const int v = s_warp[w];
      off += w < warp ? v : 0;
      total += v;
    }
    if (keep) list[off + __popc(bal & ((1u << lane) - 1u))] = blk;
    count += total;
    __syncthreads();  // s_warp is rewritten by the next call
  };

  if (p.block_mask != nullptr) {
    const uint8_t* row = p.block_mask + (int64_t)b * p.mask_stride_b + (int64_t)hk * p.mask_stride_h;
    for (int e0 = 0; e0 < n_blk; e0 += kThreads) {
      const int e = e0 + tid;
      const int n = blk_lo + e;
      const bool keep = e < n_blk && row[(int64_t)n * p.mask_stride_n] != 0 && !(extra && e == 0);
      append(keep, n);
    }
  } else {
    const int* idx = p.block_indices + (int64_t)b * p.idx_stride_b + (int64_t)hk * p.idx_stride_h;
    const int K = p.num_indices;
    auto wanted = [&](int n) { return n >= blk_lo && n < blk_lo + n_blk && !(extra && n == blk_lo); };
    const int words = (n_blk + 31) / 32;
    if (words <= kSelectBitmapWords) {
      for (int i = tid; i < words; i += kThreads) s_bits[i] = 0u;
      __syncthreads();
      for (int e = tid; e < K; e += kThreads) {
        const int n = idx[(int64_t)e * p.idx_stride_k];
        if (wanted(n)) atomicOr(&s_bits[(n - blk_lo) / 32], 1u << ((n - blk_lo) % 32));
      }
      __syncthreads();
      for (int e0 = 0; e0 < n_blk; e0 += kThreads) {
        const int e = e0 + tid;
        const bool keep = e < n_blk && ((s_bits[e / 32] >> (e % 32)) & 1u);
        append(keep, blk_lo + e);
      }
    } else {
      for (int e0 = 0; e0 < K; e0 += kThreads) {
        const int e = e0 + tid;
        const int n = e < K ? idx[(int64_t)e * p.idx_stride_k] : -1;
        bool keep = e < K && wanted(n);
        for (int j = 0; keep && j < e; ++j) keep = idx[(int64_t)j * p.idx_stride_k] != n;
        append(keep, n);
      }
    }
  }
  if (tid == 0) p.sel_count[row_id] = count;
}

// ---------------------------------------------------------------------------------------------
// Split kernel
// ---------------------------------------------------------------------------------------------
template <typename Tr>
__global__ void __launch_bounds__(Tr::kThreads) block_sparse_decode_kernel(const DecodeParams p) {
  using Elem = typename Tr::Elem;
  constexpr int D = Tr::kHeadDim;
  constexpr int kNWarps = Tr::kNWarps;
  constexpr int kThreads = Tr::kThreads;
  constexpr int kStages = Tr::kStages;
  constexpr int kCPR = Tr::kChunksPerRow;
  constexpr int kListCap = Tr::kListCap;

  extern __shared__ __align__(16) unsigned char smem[];
  Elem* s_stages = reinterpret_cast<Elem*>(smem + Tr::kOffStages);
  Elem* s_q = reinterpret_cast<Elem*>(smem + Tr::kOffQ);
  int* s_list = reinterpret_cast<int*>(smem + Tr::kOffList);
  int* s_slot0 = reinterpret_cast<int*>(smem + Tr::kOffSlot0);
  float* s_m = reinterpret_cast<float*>(smem + Tr::kOffM);
  float* s_l = reinterpret_cast<float*>(smem + Tr::kOffL);

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;

  const int L = p.n_tok;
  const int n_rows_all = L * p.group;                          // rows of (b, hk): token * group + g
  const int n_chunks = row_chunks(p, Tr::kRows);
  const SplitItem item = split_item(n_chunks);
  const int split = item.split, chunk = item.chunk, hk = item.hk, b = item.b;
  const int row0 = chunk * Tr::kRows;                          // first row of this CTA
  const int rows = min(Tr::kRows, n_rows_all - row0);          // valid rows (1..16)
  // Row r of the CTA: token (row0 + r) / group, q head hk * group + (row0 + r) % group; its index in
  // the [B, L, H_q] rows of lse / o_partial.
  auto out_row = [&](int r) -> int64_t {
    const int rr = row0 + r;
    return ((int64_t)b * L + rr / p.group) * p.h_q + (int64_t)hk * p.group + rr % p.group;
  };
  const int64_t n_out_rows = (int64_t)p.batch * L * p.h_q;

  // ---- valid slots and block range --------------------------------------------------------
  const int S = p.seqlen_max;
  const int Bk = p.block_size;
  const int len = min(max(p.cache_seqlens[b], 0), S);
  const int lo = p.left_pad ? S - len : 0;   // valid slots [lo, hi)
  const int hi = p.left_pad ? S : len;
  const int n_valid_blk = len > 0 ? (hi + Bk - 1) / Bk - lo / Bk : 0;

  // Row-adaptive splits (see DecodeParams::min_split_keys): a row lists at most n_valid_blk blocks,
  // so a split at or past ceil(n_valid_blk * Bk / min_split_keys) has nothing to do whatever the
  // selection: leave before loading anything (the combine ignores lse = -inf splits).
  const bool adaptive = p.num_splits > 1 && p.min_split_keys > 0;
  auto empty_split_exit = [&]() {
    if (tid < rows) p.lse_partial[(int64_t)split * n_out_rows + out_row(tid)] = kNegInf;
  };
  int ub_splits = p.num_splits;
  if (adaptive) {
    ub_splits = decode_row_splits(n_valid_blk, Bk, p.min_split_keys, p.num_splits);
    if (split >= ub_splits) {
      empty_split_exit();
      return;
    }
  }

  // ---- 1. this CTA's share of the row's block list ---------------------------------------------
  // Everything above reads only the op's inputs (complete before the select kernel started); the
  // counts and lists below are the select kernel's output.
  SEER_GRID_DEP_WAIT();
  SEER_GRID_DEP_LAUNCH();  // the combine kernel may launch (it waits for this grid's partials)
  const int64_t sel_row = (int64_t)b * p.h_kv + hk;
  const int* list_row = p.sel_list + sel_row * p.sel_cap;
  const int total_sel = p.sel_count[sel_row];
  int ns_row = p.num_splits;  // splits of this row (uniform across the CTA)
  if (adaptive) {
    ns_row = decode_row_splits(total_sel, Bk, p.min_split_keys, ub_splits);
    if (split >= ns_row) {
      empty_split_exit();
      return;
    }
  }

  // ---- 2. q tile -> shared (own cp.async group, older than every K/V stage). Issued only now that the
  // CTA knows it has work: it lands while the list below is read (the first stage waits for it), and a
  // CTA that exits above neither loads q nor waits for it.
  {
    const Elem* q_base = reinterpret_cast<const Elem*>(p.q) + (int64_t)b * p.q_batch_stride;
#pragma unroll
    for (int c = tid; c < Tr::kRows * kCPR; c += kThreads) {
      const int r = c / kCPR, ch = c % kCPR;
      const bool ok = r < rows;
      const int rr = row0 + r;
      const Elem* src = ok ? q_base + (int64_t)(rr / p.group) * p.q_tok_stride +
                                 (int64_t)(hk * p.group + rr % p.group) * p.q_head_stride + ch * 8
                           : reinterpret_cast<const Elem*>(p.q);
      cp_async_16(s_q + r * D + ((ch ^ (r & 7)) * 8), src, ok);
    }
    cp_async_commit();
  }

  const int r0 = (int)((int64_t)total_sel * split / ns_row);
  const int r1 = (int)((int64_t)total_sel * (split + 1) / ns_row);
  const int n_sel = r1 - r0;  // blocks of this CTA

  // Fill s_list[i] = list_row[r0 + wb + i], i < min(kListCap, n_sel - wb). Collective.
  auto fill_list = [&](int wb) {
    __syncthreads();  // nobody still reads the previous window
    const int n = min(kListCap, n_sel - wb);
    for (int i = tid; i < n; i += kThreads) s_list[i] = list_row[r0 + wb + i];
    __syncthreads();
  };

  // ---- 3. K/V pipeline --------------------------------------------------------------------
  const int tpb = Bk / Tr::kTileKeys;        // tiles per block
  const int T = n_sel * tpb;                 // tiles of this CTA
  // t / tpb (0 <= t < T) as a multiply-high: M = ceil(2^31 / tpb) fits 32 bits for every tpb >= 1, and
  // floor(t * M / 2^31) is exact while t * (M * tpb - 2^31) < 2^31, true for t < 2^27 (T < 2^27: slots are
  // int, 16 per tile; M * tpb - 2^31 < tpb <= 16).
  const uint32_t tpb_magic = static_cast<uint32_t>(((1ull << 31) + tpb - 1) / tpb);
  auto tile_block = [&](int t) { return static_cast<int>(__umulhi(2u * static_cast<uint32_t>(t), tpb_magic)); };
  const int n_stage_total = (T + kNWarps - 1) / kNWarps;
  int wb = 0;                                // first list rank (relative to r0) in s_list
  fill_list(0);

  const Elem* k_head = reinterpret_cast<const Elem*>(p.k) + (int64_t)hk * p.k_head_stride;
  const Elem* v_head = reinterpret_cast<const Elem*>(p.v) + (int64_t)hk * p.v_head_stride;
  const int ld_row = tid / kCPR;             // first stage row this thread loads
  const int ld_ch = tid % kCPR;              // 16-byte chunk of the row this thread loads
  // This thread's element offset inside a tile (row ld_row, chunk ld_ch); the rows of a 16-key tile are
  // consecutive rows of one sequence or page, row_stride apart, so a load's address is the tile's base
  // plus this plus a compile-time number of rows (pass i covers rows ld_row + kRowsPerIter * i).
  const int64_t k_thr = (int64_t)ld_row * p.k_addr.row_stride + ld_ch * 8;
  const int64_t v_thr = (int64_t)ld_row * p.v_addr.row_stride + ld_ch * 8;

  // Issue the loads of stage g (no commit). Uniform across the CTA (may refill the list).
  auto load_stage = [&](int g) {
    const int t_base = g * kNWarps;
    if (t_base >= T) return;
    const int j_last = tile_block(min(T - 1, t_base + kNWarps - 1));
    if (j_last >= wb + kListCap) {
      wb = tile_block(t_base);
      fill_list(wb);
    }
    const int buf = g % kStages;
    int slot0[kNWarps];       // first slot of each tile of the stage, -1 if the tile does not exist
    const Elem* kt[kNWarps];  // this thread's K / V source in the tile's first pass (its 16 rows are
    const Elem* vt[kNWarps];  // consecutive rows of one sequence or page: a 16-aligned tile never
                              // straddles a page)
#pragma unroll
    for (int w = 0; w < kNWarps; ++w) {
      const int t = t_base + w;
      const int j = tile_block(t);
      slot0[w] = t < T ? s_list[j - wb] * Bk + (t - j * tpb) * Tr::kTileKeys : -1;
      if (tid == w) s_slot0[buf * kNWarps + w] = slot0[w];
      // Address only tiles holding a valid slot (slot0 < hi <= S_max keeps a paged lookup inside
      // the sequence's block-table row); the others are zero-filled below.
      const bool live = slot0[w] >= 0 && slot0[w] < hi && slot0[w] + Tr::kTileKeys > lo;
      const KvSlot at = live ? p.k_addr.locate(b, slot0[w]) : KvSlot{0, 0};
      kt[w] = k_head + p.k_addr.offset(at) + k_thr;
      vt[w] = v_head + p.v_addr.offset(at) + v_thr;
    }
    Elem* sk = s_stages + (int64_t)buf * (2 * Tr::kTileElems);
    Elem* sv = sk + Tr::kTileElems;
#pragma unroll
    for (int i = 0; i < Tr::kChunksPerThread; ++i) {
      constexpr int kPassesPerTile = Tr::kTileKeys / Tr::kRowsPerIter;
      const int w = i / kPassesPerTile;                      // compile-time tile of this pass
      const int dr = (i % kPassesPerTile) * Tr::kRowsPerIter;  // compile-time rows after ld_row
      if (slot0[w] < 0) continue;
      const int row = w * Tr::kTileKeys + ld_row + dr;       // stage row (0 .. kStageKeys-1)
      const int slot = slot0[w] + ld_row + dr;
      const bool ok = slot >= lo && slot < hi;
      const int soff = row * D + ((ld_ch ^ (row & 7)) * 8);
      const Elem* ksrc = ok ? kt[w] + dr * p.k_addr.row_stride : k_head;
      const Elem* vsrc = ok ? vt[w] + dr * p.v_addr.row_stride : v_head;
      cp_async_16(sk + soff, ksrc, ok);
      cp_async_16(sv + soff, vsrc, ok);
    }
  };

#pragma unroll
  for (int g = 0; g < kStages - 1; ++g) {
    load_stage(g);
    cp_async_commit();
  }

  const int g8 = lane >> 2;  // accumulator row (and row + 8)
  const int t4 = lane & 3;   // accumulator column pair
  const int lm_mat = lane >> 3, lm_row = lane & 7;  // ldmatrix: matrix index / row of this lane's address

  // Per-lane ldmatrix offsets (elements) into a swizzled [16 rows][D] tile. Lane l addresses row
  // lm_row of 8x8 matrix lm_mat. Chunk c of a row sits at chunk c ^ (row & 7); since the XOR only
  // touches the low 3 bits of c, chunks 8j + c' are at 8j + (c' ^ row): 4 phases per operand, the
  // rest is a compile-time offset of 64 elements per 8 chunks.
  //   q (A operand) and v (B operand, trans): matrices (rows 0-7 | 8-15) x (chunk 2ph | 2ph + 1),
  //     giving a0..a3 for q and (keys 0-7, keys 8-15) x (column tile dn, dn + 1) for v;
  //   k (B operand): matrices (keys 0-7 | 8-15) major, (chunk 2ph | 2ph + 1) minor, giving
  //     b0, b1 of keys 0-7 and b0, b1 of keys 8-15.
  int off_qv[4], off_k[4];
#pragma unroll
  for (int ph = 0; ph < 4; ++ph) {
    off_qv[ph] = ((lm_mat & 1) * 8 + lm_row) * D + (((2 * ph + (lm_mat >> 1)) ^ lm_row) * 8);
    off_k[ph] = ((lm_mat >> 1) * 8 + lm_row) * D + (((2 * ph + (lm_mat & 1)) ^ lm_row) * 8);
  }

  float acc_o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) acc_o[i][0] = acc_o[i][1] = acc_o[i][2] = acc_o[i][3] = 0.f;
  float row_m[2] = {kNegInf, kNegInf};  // running max (raw logits) of rows g8, g8 + 8
  // Causal limit of rows g8 and g8 + 8 (L > 1): token i sees slots < hi - (L - 1 - i). For L = 1
  // both are hi, the valid-slot bound the loads use.
  int row_hi[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) row_hi[r] = hi - (L - 1 - min(row0 + g8 + 8 * r, n_rows_all - 1) / p.group);
  float row_l[2] = {0.f, 0.f};          // this thread's share of the running sum

  for (int g = 0; g < n_stage_total; ++g) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage g (and q) landed for everybody; stage g-1 fully consumed
    load_stage(g + kStages - 1);
    cp_async_commit();

    const int t = g * kNWarps + warp;
    if (t < T) {
      const int buf = g % kStages;
      const int slot0 = s_slot0[buf * kNWarps + warp];
      const Elem* sk = s_stages + (int64_t)buf * (2 * Tr::kTileElems) + warp * Tr::kTileKeys * D;
      const Elem* sv = sk + Tr::kTileElems;

      // S = Q K^T (16 x 16), fp32.
      float s[2][4];
#pragma unroll
      for (int i = 0; i < 2; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t qa[4], kb[4];
        ldmatrix_x4(qa, s_q + off_qv[kk % 4] + (kk / 4) * 64);
        ldmatrix_x4(kb, sk + off_k[kk % 4] + (kk / 4) * 64);
        const uint32_t b0[2] = {kb[0], kb[1]};
        const uint32_t b1[2] = {kb[2], kb[3]};
        mma_16816<Elem>(s[0], qa, b0);
        mma_16816<Elem>(s[1], qa, b1);
      }

      // Mask invalid slots (-inf), online softmax of the two rows (common/softmax.h).
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int slot = slot0 + nt * 8 + t4 * 2 + e;
          const bool ok = slot >= lo;
          if (!(ok && slot < row_hi[0])) s[nt][e] = kNegInf;
          if (!(ok && slot < row_hi[1])) s[nt][2 + e] = kNegInf;
        }
      }
      float corr[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) corr[r] = online_softmax_row(s, r, row_m[r], row_l[r], p.scale_log2);
      rescale_rows(acc_o, corr);

      // O += P V. P (16 x 16 keys) as the A operand straight from the accumulators.
      const uint32_t pa[4] = {pack2<Elem>(s[0][0], s[0][1]), pack2<Elem>(s[0][2], s[0][3]),
                              pack2<Elem>(s[1][0], s[1][1]), pack2<Elem>(s[1][2], s[1][3])};
#pragma unroll
      for (int dn = 0; dn < D / 8; dn += 2) {
        // B fragments (trans): (keys 0-7, keys 8-15) of column tiles dn and dn + 1.
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, sv + off_qv[(dn / 2) % 4] + (dn / 8) * 64);
        const uint32_t b0[2] = {vb[0], vb[1]};
        const uint32_t b1[2] = {vb[2], vb[3]};
        mma_16816<Elem>(acc_o[dn], pa, b0);
        mma_16816<Elem>(acc_o[dn + 1], pa, b1);
      }
    }
  }

  // ---- 4. merge the warps and write --------------------------------------------------------
  // From here on maxima are in base-2 units (m * scale_log2; -inf: no key seen).
#pragma unroll
  for (int r = 0; r < 2; ++r) row_m[r] = row_m[r] == kNegInf ? kNegInf : row_m[r] * p.scale_log2;
  row_l[0] = quad_sum(row_l[0]);
  row_l[1] = quad_sum(row_l[1]);
  if (t4 == 0) {
    s_m[warp * Tr::kRows + g8] = row_m[0];
    s_m[warp * Tr::kRows + g8 + 8] = row_m[1];
    s_l[warp * Tr::kRows + g8] = row_l[0];
    s_l[warp * Tr::kRows + g8 + 8] = row_l[1];
  }
  cp_async_wait<0>();
  __syncthreads();  // ring free (all copies landed, all warps done), s_m / s_l visible

  // Max over the warps of a row's running max (base 2); -inf when no warp saw a key.
  auto row_max = [&](int row) {
    float m = kNegInf;
#pragma unroll
    for (int w = 0; w < kNWarps; ++w) m = fmaxf(m, s_m[w * Tr::kRows + row]);
    return m;
  };
  float* s_o = reinterpret_cast<float*>(smem + Tr::kOffStages);  // [kNWarps][kRows][D]
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = g8 + 8 * r;
    const float m_all = row_max(row);
    const float f = fast_exp2(row_m[r] - (m_all == kNegInf ? 0.f : m_all));
    float* dst = s_o + (warp * Tr::kRows + row) * D + t4 * 2;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      *reinterpret_cast<float2*>(dst + i * 8) = make_float2(acc_o[i][2 * r] * f, acc_o[i][2 * r + 1] * f);
    }
  }
  __syncthreads();

  const bool direct = p.num_splits == 1;
  for (int idx = tid; idx < Tr::kRows * (D / 4); idx += kThreads) {
    const int row = idx / (D / 4);
    const int c4 = idx % (D / 4);
    if (row >= rows) continue;
    const float m_all = row_max(row);
    const float mu = m_all == kNegInf ? 0.f : m_all;
    float l = 0.f;
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int w = 0; w < kNWarps; ++w) {
      l += s_l[w * Tr::kRows + row] * fast_exp2(s_m[w * Tr::kRows + row] - mu);
      const float4 x = *reinterpret_cast<const float4*>(s_o + (w * Tr::kRows + row) * D + c4 * 4);
      o.x += x.x; o.y += x.y; o.z += x.z; o.w += x.w;
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;  // l == 0 <=> no key: o is 0 as well
    o.x *= inv; o.y *= inv; o.z *= inv; o.w *= inv;
    if (direct) {
      const int rr = row0 + row;
      Elem* dst = reinterpret_cast<Elem*>(p.out) + (int64_t)b * p.o_batch_stride +
                  (int64_t)(rr / p.group) * p.o_tok_stride + (int64_t)(hk * p.group + rr % p.group) * p.o_head_stride +
                  c4 * 4;
      const uint2 packed = make_uint2(pack2<Elem>(o.x, o.y), pack2<Elem>(o.z, o.w));
      *reinterpret_cast<uint2*>(dst) = packed;
    } else {
      *reinterpret_cast<float4*>(p.o_partial + ((int64_t)split * n_out_rows + out_row(row)) * D + c4 * 4) = o;
    }
  }
  if (tid < rows) {
    const float m_all = row_max(tid);
    const float mu = m_all == kNegInf ? 0.f : m_all;
    float l = 0.f;
#pragma unroll
    for (int w = 0; w < kNWarps; ++w) l += s_l[w * Tr::kRows + tid] * fast_exp2(s_m[w * Tr::kRows + tid] - mu);
    const float lse = l > 0.f ? (m_all + __log2f(l)) * kLn2 : kNegInf;
    if (direct) p.lse[out_row(tid)] = lse;
    else p.lse_partial[(int64_t)split * n_out_rows + out_row(tid)] = lse;
  }
}

// ---------------------------------------------------------------------------------------------
// Combine kernel: one warp per (b, token, q head) row; merges the num_splits partials.
//   lse = log(sum_s exp(lse_s)), out = sum_s exp(lse_s - lse) * o_s.
// Splits with lse_s = -inf (no key) get weight 0; all splits empty -> out 0, lse -inf.
// ---------------------------------------------------------------------------------------------
constexpr int kCombineWarps = 4;

template <typename Elem, int kHeadDim>
__global__ void __launch_bounds__(kCombineWarps * 32) decode_combine_kernel(const DecodeParams p) {
  constexpr int kVec = kHeadDim / 4;                 // float4 per row
  constexpr int kPerLane = (kVec + 31) / 32;
  SEER_GRID_DEP_WAIT();  // the split kernel's partials are complete and visible
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n_rows = (int64_t)p.batch * p.n_tok * p.h_q;  // rows of [B, L, H_q]
  const int64_t row = (int64_t)blockIdx.x * kCombineWarps + warp;
  if (row >= n_rows) return;
  const int S = p.num_splits;
  const float* lp = p.lse_partial + row;             // split s at lp[s * n_rows]

  float mx = kNegInf;
  for (int s = lane; s < S; s += 32) mx = fmaxf(mx, lp[(int64_t)s * n_rows]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, SEER_SHFL_XOR(mx, o));

  float4 acc[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) acc[i] = make_float4(0.f, 0.f, 0.f, 0.f);
  float lse = kNegInf;
  if (mx != kNegInf) {
    float sum = 0.f;
    for (int s = lane; s < S; s += 32) sum += __expf(lp[(int64_t)s * n_rows] - mx);  // exp(-inf) = 0
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += SEER_SHFL_XOR(sum, o);
    lse = mx + __logf(sum);                          // sum >= 1 (the max split contributes 1)
#pragma unroll 2
    for (int s = 0; s < S; ++s) {
      const float ls = lp[(int64_t)s * n_rows];
      if (ls == kNegInf) continue;                   // empty split: contributes nothing
      const float wgt = __expf(ls - lse);
      const float4* op = reinterpret_cast<const float4*>(p.o_partial + ((int64_t)s * n_rows + row) * kHeadDim);
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int c = lane + 32 * i;
        if (c < kVec) {
          const float4 x = op[c];
          acc[i].x += wgt * x.x; acc[i].y += wgt * x.y; acc[i].z += wgt * x.z; acc[i].w += wgt * x.w;
        }
      }
    }
  }
  const int64_t bt = row / p.h_q, h = row % p.h_q;  // bt = b * L + token
  Elem* dst = reinterpret_cast<Elem*>(p.out) + (bt / p.n_tok) * p.o_batch_stride + (bt % p.n_tok) * p.o_tok_stride +
              h * p.o_head_stride;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int c = lane + 32 * i;
    if (c < kVec) {
      const uint2 packed = make_uint2(pack2<Elem>(acc[i].x, acc[i].y), pack2<Elem>(acc[i].z, acc[i].w));
      *reinterpret_cast<uint2*>(dst + c * 4) = packed;
    }
  }
  if (lane == 0) p.lse[row] = lse;
}

}  // namespace decode
}  // namespace seer
