// Dense or paged K/V cache addressing: one job, map (sequence b, logical slot s) -> the element offset
// of that slot's row (head 0; add head * head_stride). ATen-free; used by the decode kernels, meant
// for the attention kernels' paged loader too.
//
//   dense:  cache [B, S_max, H, D];  row(b, s) = b * seq_stride + s * row_stride
//   paged:  cache [num_pages, page_size, H, D], block_table int32 [B, max_pages];
//           row(b, s) = page * seq_stride + (s % page_size) * row_stride,
//           page = clamp(block_table[b * table_stride + s / page_size], 0, num_pages - 1)
//
// The clamp makes a corrupt table entry read a wrong page, never out of bounds (the op layer can
// validate the entries on request). With page_size a multiple of 16, the 16 slots of a 16-aligned
// tile [16t, 16t + 16) lie in one page, so they are row_stride apart: one table read per tile.
#pragma once
#include <cstdint>

#include "common/platform.h"

namespace seer {

// Where a logical slot lives: `unit` is the sequence (dense) or the page (paged), `row` the row in it.
struct KvSlot {
  int unit;
  int row;
};

struct KvAddr {
  int64_t seq_stride;      // elements between sequences (dense) or between pages (paged)
  int64_t row_stride;      // elements between consecutive slots of a sequence / rows of a page
  const int* block_table;  // nullptr: dense cache; else int32 [B, max_pages] (row stride table_stride)
  int64_t table_stride;    // elements between block-table rows
  int page_size;           // rows per page (paged; a multiple of 16)
  int num_pages;           // pages of the cache (paged; table entries are clamped into [0, num_pages))

  // Unit and row of logical slot `slot` (>= 0, < max_pages * page_size when paged) of sequence b.
  // K and V caches share one block table, so one lookup serves both (offset() with each's strides).
  SEER_HOST_DEVICE KvSlot locate(int b, int slot) const {
    if (block_table == nullptr) return KvSlot{b, slot};
    const int pg = slot / page_size;
    int page = block_table[static_cast<int64_t>(b) * table_stride + pg];
    page = page < 0 ? 0 : (page >= num_pages ? num_pages - 1 : page);
    return KvSlot{page, slot - pg * page_size};
  }
  // Element offset (head 0) of a located slot.
  SEER_HOST_DEVICE int64_t offset(KvSlot s) const {
    return static_cast<int64_t>(s.unit) * seq_stride + static_cast<int64_t>(s.row) * row_stride;
  }
  SEER_HOST_DEVICE int64_t row(int b, int slot) const { return offset(locate(b, slot)); }
};

}  // namespace seer
