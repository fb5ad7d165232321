// Wavefront-uniform iterator over the kept key blocks of one tile-mask row (HIP kernels).
//
// Every wavefront of a workgroup walks the same row with the same code, so the chunk tables they
// derive are identical without LDS or barriers. A window of 64 tile-mask bytes is read per step (one
// per lane, coalesced), the kept ones become a 64-bit ballot, and blocks are taken in increasing
// column order with find-first-set; the value of the block (1: per-row user-mask check, 2: every row
// keeps it) is read from the owning lane with readlane. Keys are handed out in 16-key chunks
// (block sizes are multiples of 16), so kBlockN / 16 chunks of the stream form one K/V tile whatever
// the block size, exactly as the CUDA kernels do (attention_params.h has the tile-mask contract).
#pragma once
#include <cstdint>
#include "common/platform.h"
#include "common/hip_mfma.h"

namespace seer {
namespace hipattn {

// Marks an empty chunk slot (end of the stream): compared against any key bound it is "past the end".
constexpr int kNoKey = 0x3fffffff;

struct BlockIter {
  const uint8_t* row;        // tile_mask[b][hk][rt][.] (or any byte row: nonzero = kept)
  int scan_end;              // columns [0, scan_end) may hold kept blocks
  int key_limit;             // keys >= key_limit are invisible to every row of the tile
  int block_k;               // B_k
  int win_base;              // first column of the current window
  seer_lane_mask_t pending;  // kept columns of the window not handed out yet
  int win_val;               // this lane's byte of the window
  int key, key_end;          // current block's next key and end (clipped to key_limit)
  int check;                 // current block index if its value is 1, else -1

  SEER_DEVICE void init(const uint8_t* r, int n_end, int limit, int bk) {
    row = r;
    scan_end = n_end;
    key_limit = limit;
    block_k = bk;
    win_base = -SEER_WARP_SIZE;
    pending = 0;
    win_val = 0;
    key = key_end = 0;
    check = -1;
  }

  // Moves to the next kept block with at least one key below key_limit; false when exhausted.
  SEER_DEVICE bool next_block() {
    const int lane = static_cast<int>(__builtin_amdgcn_mbcnt_hi(~0u, __builtin_amdgcn_mbcnt_lo(~0u, 0u)));
    while (true) {
      if (pending == 0) {
        win_base += SEER_WARP_SIZE;
        if (win_base >= scan_end) return false;
        const int n = win_base + lane;
        win_val = n < scan_end ? row[n] : 0;
        pending = SEER_BALLOT(win_val != 0);
        continue;
      }
      const int bit = static_cast<int>(__builtin_ctzll(pending));
      pending &= pending - 1;
      const int n = win_base + bit;
      const int v = __builtin_amdgcn_readlane(win_val, bit);
      key = n * block_k;
      key_end = hip::imin(key + block_k, key_limit);
      check = v == 1 ? n : -1;
      if (key < key_end) return true;
    }
  }

  // Fills the chunk table of the next tile: ck[c] = first key of chunk c (kNoKey past the end of the
  // stream), cm[c] = block whose user-mask byte rows must check (-1: none). Returns whether the tile
  // holds any chunk.
  template <int kChunks>
  SEER_DEVICE bool next_tile(int (&ck)[kChunks], int (&cm)[kChunks]) {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      ck[c] = kNoKey;
      cm[c] = -1;
      if (key >= key_end && !next_block()) continue;
      ck[c] = key;
      cm[c] = check;
      key += 16;
    }
    return ck[0] != kNoKey;
  }
};

}  // namespace hipattn
}  // namespace seer
