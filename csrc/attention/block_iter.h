// Kept-block iterator of the block-sparse attention kernels: the stream of K/V tiles a row tile must
// visit, read from its tile-mask row (attention_params.h: 0 skip, 1 check the user mask per row, 2
// kept by every row).
//
// The kept key blocks of the tile-mask row are compacted, kThreads columns at a time, into a list
// in shared memory (ballot + per-warp prefix, increasing column order), and cut into 16-key chunks
// (B_k is a multiple of 16); kChunks consecutive chunks of that stream form one K/V tile. So a tile
// gathers several small blocks (B_k < tile) or covers part of a large one (B_k > tile), and a block
// of any size never leaves a partly filled tile except at the end of the stream. Chunks past the key
// limit (sequence end, causal diagonal of the last row) are dropped.
// The participant (a group of kThreads threads with its own scratch) calls uniformly: the calls contain
// its barrier.
// The compaction step itself (block_list_slot: one candidate per thread, the kept ones in thread
// order) is also the backward's: its candidates are the row tiles of a transposed tile-mask
// row (dK/dV) or the key windows of a row (dQ), each with its 16-key chunk flags.
#pragma once
#include <cstdint>

#include "common/platform.h"

namespace seer {

// Key index marking an empty chunk slot (end of the stream). An index, not a score: any key compared
// with it is "past the end" (keys < 2^30 by the int32 cu_seqlens).
constexpr int kNoKey = 0x3fffffff;

struct BlockStreamSrc {
  const uint8_t* row;    // tile_mask[b][hk][rt][.]
  int scan_end;          // columns [0, scan_end) can hold kept blocks
  int key_limit;         // keys >= key_limit are invisible to every row of the row tile(s)
  int block_k;           // B_k
};

// Per-participant shared scratch: kThreads list entries and one counter per warp.
struct BlockStreamSmem {
  int* blk;       // kept block indices
  uint8_t* val;   // their tile-mask values (1 or 2)
  int* warp_cnt;  // per-warp counts (scan scratch)
};

// Uniform cursor (same value in every thread of the participant).
struct BlockCursor {
  int li = 0;       // next list entry
  int len = 0;      // entries in the list
  int key = 0;      // next key (sequence-local) of the current block
  int key_end = 0;  // end of the current block, clipped to the key limit
  int val = 0;      // tile-mask value of the current block
  int blk = 0;      // index of the current block (its user-mask column)
  int scan = 0;     // next tile-mask column to scan
};

// One compaction step: every thread of the participant offers one candidate (`keep`); the kept ones
// get the list slots 0, 1, ... in thread order. Returns the thread's slot (pos(), meaningful only where
// keep) and the number kept (same in every thread). It writes the thread's count to warp_cnt (one int per
// warp) and synchronises once: the caller's barrier must separate it from the previous step's reads of
// warp_cnt, and the caller writes its entry at `pos` and synchronises again before the list is read.
struct ListSlot {
  unsigned ballot;  // the warp's kept lanes
  int lane;         // this thread's lane
  int offset;       // kept candidates of the warps before this thread's
  int total;        // candidates kept by the participant
  // This thread's list slot (if it keeps its candidate).
  SEER_DEVICE int pos() const { return offset + __popc(ballot & ((1u << lane) - 1u)); }
};
// Index: the type of tid, int or unsigned (threadIdx.x itself); the lane / warp arithmetic is done in it.
template <int kThreads, typename Index, typename Sync>
SEER_DEVICE ListSlot block_list_slot(bool keep, Index tid, int* warp_cnt, Sync sync) {
  constexpr int kWarps = kThreads / 32;
  const int lane = tid & 31, warp = tid >> 5;
  const unsigned ballot = SEER_BALLOT(keep);
  if (lane == 0) warp_cnt[warp] = __popc(ballot);
  sync();
  int offset = 0, total = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int c = warp_cnt[w];
    offset += w < warp ? c : 0;
    total += c;
  }
  return ListSlot{ballot, lane, offset, total};
}

// Refills the list from the next columns; returns its length (0 only when the row is exhausted).
// `tid` is the thread's index inside the participant; `sync()` synchronises the participant.
template <int kThreads, typename Sync>
SEER_DEVICE int block_list_refill(const BlockStreamSrc& src, const BlockStreamSmem& sm, int& scan, int tid,
                                  Sync sync) {
  sync();  // every thread is done reading the previous list
  int len = 0;
  while (len == 0 && scan < src.scan_end) {
    const int n = scan + tid;
    const int v = n < src.scan_end ? src.row[n] & 3 : 0;
    const ListSlot ls = block_list_slot<kThreads>(v != 0, tid, sm.warp_cnt, sync);
    if (v != 0) {
      const int pos = ls.pos();
      sm.blk[pos] = n;
      sm.val[pos] = static_cast<uint8_t>(v);
    }
    scan += kThreads;
    len = ls.total;
    sync();  // list visible; warp_cnt free for the next pass
  }
  return len;
}

// Next kept block with at least one visible key.
template <int kThreads, typename Sync>
SEER_DEVICE void block_advance(BlockCursor& cur, const BlockStreamSrc& src, const BlockStreamSmem& sm, int tid,
                               Sync sync) {
  while (true) {
    if (cur.li < cur.len) {
      const int n = sm.blk[cur.li];
      cur.val = sm.val[cur.li];
      cur.blk = n;
      ++cur.li;
      cur.key = n * src.block_k;
      cur.key_end = min(cur.key + src.block_k, src.key_limit);
      if (cur.key < cur.key_end) return;
    } else if (cur.scan < src.scan_end) {
      cur.len = block_list_refill<kThreads>(src, sm, cur.scan, tid, sync);
      cur.li = 0;
    } else {
      cur.key = cur.key_end = 0;  // exhausted (stays so)
      return;
    }
  }
}

// The next K/V tile: ck[c] = first key of chunk c (kNoKey past the end of the stream), cb[c] = its key
// block (0 for empty chunks), and in `vbits` the tile-mask value of chunk c at bits 4c..4c+1 (0 for
// empty chunks).
// The chunks are shifted in from the top so that the loop is not unrolled while the arrays are only
// indexed with compile-time indices (they stay in registers).
template <int kThreads, int kChunks, typename Sync>
SEER_DEVICE void block_next_tile(BlockCursor& cur, const BlockStreamSrc& src, const BlockStreamSmem& sm, int tid,
                                 Sync sync, int (&ck)[kChunks], int (&cb)[kChunks], uint32_t& vbits) {
  static_assert(kChunks <= 8, "4 value bits per chunk in 32 bits");
  // Fast path (uniform): the current block - after the advance the chunk loop's first step would make -
  // still holds the whole tile (every tile when B_k is a multiple of the tile): the same chunks as the
  // loop, without its per-chunk steps.
  if (cur.key >= cur.key_end) block_advance<kThreads>(cur, src, sm, tid, sync);
  if (cur.key + 16 * kChunks <= cur.key_end) {
    vbits = 0;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      ck[c] = cur.key + 16 * c;
      cb[c] = cur.blk;
      vbits |= static_cast<uint32_t>(cur.val) << (4 * c);
    }
    cur.key += 16 * kChunks;
    return;
  }
  vbits = 0;
#pragma unroll 1
  for (int c = 0; c < kChunks; ++c) {
    if (cur.key >= cur.key_end) block_advance<kThreads>(cur, src, sm, tid, sync);
    int key = kNoKey, blk = 0;
    uint32_t v = 0;
    if (cur.key < cur.key_end) {
      key = cur.key;
      blk = cur.blk;
      v = static_cast<uint32_t>(cur.val);
      cur.key += 16;
    }
#pragma unroll
    for (int i = 0; i + 1 < kChunks; ++i) {
      ck[i] = ck[i + 1];
      cb[i] = cb[i + 1];
    }
    ck[kChunks - 1] = key;
    cb[kChunks - 1] = blk;
    vbits = (vbits >> 4) | (v << (4 * (kChunks - 1)));
  }
}

}  // namespace seer
