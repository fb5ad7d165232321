// Torch-facing layer of seer_attn::block_sparse_decode (SPEC §4): checks every input (messages name
// the op, the argument and the bad value, mirroring check_decode in seer_attn/checks.py), fills
// DecodeParams, allocates out / lse and the split-KV workspace with torch, and launches the kernels on
// the current stream. Never synchronises the device (unless SEER_ATTN_CHECK_INPUTS=1 asks for the
// value checks of cache_seqlens / block_indices / block_table), so the op can be captured in a CUDA
// graph: otherwise the kernel clamps cache_seqlens values to [0, S_max], ignores out-of-range indices
// and clamps out-of-range block-table entries.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/all.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/torch_utils.h"
#include "decode/decode_params.h"

namespace seer {
namespace {

constexpr const char* kOp = "block_sparse_decode";
// Largest accepted explicit num_splits (the workspace is num_splits * B * H_q * (D + 1) floats).
constexpr int64_t kMaxSplits = 1024;
// Most new query tokens per sequence (q [B, L, H_q, D]); mirrors checks.MAX_DECODE_TOKENS.
constexpr int64_t kMaxTokens = 16;

#define SEER_DECODE_CHECK(cond, ...) SEER_TORCH_CHECK((cond), "seer_attn::block_sparse_decode: ", __VA_ARGS__)


std::string shape_str(const at::Tensor& t) { return seer::message(t.sizes()); }

std::string device_str(const at::Tensor& t) { return seer::message(t.device()); }

void check_rank(const char* name, const at::Tensor& t, int64_t ndim, const char* layout) {
  SEER_DECODE_CHECK(t.dim() == ndim, name, " must be a ", ndim, "-D tensor ", layout, ", got shape ",
                    shape_str(t));
}

void check_same_device(const char* name, const at::Tensor& t, const at::Tensor& q) {
  SEER_DECODE_CHECK(t.device() == q.device(), name, " must be on the same device as q (", device_str(q),
                    "), got ", device_str(t));
}

void check_last_dim_contiguous(const char* name, const at::Tensor& t) {
  SEER_DECODE_CHECK(t.size(-1) == 1 || t.stride(-1) == 1, name,
                    " must have a contiguous last dim (stride(-1) == 1), got stride(-1) = ", t.stride(-1));
}

// Byte view of a mask: bool/uint8/int8 are read in place (strides kept, stride 0 allowed); other
// integer dtypes are converted with `!= 0` (one pass, same shape, a bool tensor).
at::Tensor byte_mask(const at::Tensor& mask) {
  const auto st = mask.scalar_type();
  SEER_DECODE_CHECK(st == at::kBool || at::isIntegralType(st, /*includeBool=*/false),
                    "block_mask must be bool or an integer dtype, got ", dtype_name(st));
  if (st == at::kBool || st == at::kByte || st == at::kChar) return mask;
  return mask.ne(0);
}

// SEER_ATTN_CHECK_INPUTS=1 only (copies to the host: a device sync): every cache_seqlens entry is in
// [0, S_max]; every block_indices entry is -1 or in [0, nb); every block_table entry of a page holding a
// valid slot is in [0, num_pages).
// Mirrors checks.check_data_decode (strict).
void check_values(const at::Tensor& cache_seqlens, int64_t s_max, const at::Tensor& idx, int64_t nb,
                  const at::Tensor& table, int64_t page_size, int64_t num_pages) {
  // as seer_attn/checks.py check_data_decode (the CPU reference's), first; the table check below reuses it
  const at::Tensor lens = cache_seqlens.to(at::kCPU).contiguous();
  const int* l = lens.data_ptr<int>();
  for (int64_t b = 0; b < lens.numel(); ++b)
    SEER_DECODE_CHECK(l[b] >= 0 && l[b] <= s_max, "cache_seqlens entries must be in [0, S_max] ([0, ", s_max,
                      "]), got ", l[b]);
  if (idx.defined() && idx.numel() > 0) {
    const at::Tensor h = idx.to(at::kCPU).contiguous();
    const int* v = h.data_ptr<int>();
    for (int64_t i = 0; i < h.numel(); ++i) {
      SEER_DECODE_CHECK(v[i] >= -1 && v[i] < nb, "block_indices entries must be -1 or in [0, ", nb,
                        ") (ceil(S_max / block_size)), got ", v[i]);
    }
  }
  if (table.defined()) {
    const at::Tensor t = table.to(at::kCPU).contiguous();
    const int* e = t.data_ptr<int>();
    const int64_t max_pages = t.size(1);
    for (int64_t b = 0; b < t.size(0); ++b) {
      // l[b] in [0, S_max] (checked above), S_max = max_pages * page_size with a table
      for (int64_t pg = 0; pg < (l[b] + page_size - 1) / page_size; ++pg) {
        const int x = e[b * max_pages + pg];
        SEER_DECODE_CHECK(x >= 0 && x < num_pages, "block_table entries of used pages must be in [0, num_pages) ([0, ",
                          num_pages, ")), got block_table[", b, ", ", pg, "] = ", x);
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor> block_sparse_decode(const at::Tensor& q_in, const at::Tensor& k_in,
                                                       const at::Tensor& v_in, const at::Tensor& cache_seqlens,
                                                       const std::optional<at::Tensor>& block_mask,
                                                       const std::optional<at::Tensor>& block_indices,
                                                       int64_t block_size, double sm_scale, bool left_pad,
                                                       bool first_block_unmasked, int64_t num_splits,
                                                       const std::optional<at::Tensor>& block_table) {
  // ---- metadata checks (same order and wording as checks.check_decode) -------------------
  SEER_DECODE_CHECK(q_in.dim() == 3 || q_in.dim() == 4,
                    "q must be a 3-D tensor [B, H_q, D] or a 4-D tensor [B, L, H_q, D], got shape ", shape_str(q_in));
  const bool paged = block_table.has_value() && block_table->defined();
  const char* layout = paged ? "[num_pages, page_size, H_kv, D]" : "[B, S_max, H_kv, D]";
  check_rank("k_cache", k_in, 4, layout);
  check_rank("v_cache", v_in, 4, layout);
  const auto qt = q_in.scalar_type();
  SEER_DECODE_CHECK(qt == at::kHalf || qt == at::kBFloat16, "q must be float16 or bfloat16, got ",
                    dtype_name(qt));
  SEER_DECODE_CHECK(k_in.scalar_type() == qt, "k_cache must have the same dtype as q (", dtype_name(qt),
                    "), got ", dtype_name(k_in.scalar_type()));
  SEER_DECODE_CHECK(v_in.scalar_type() == qt, "v_cache must have the same dtype as q (", dtype_name(qt),
                    "), got ", dtype_name(v_in.scalar_type()));
  SEER_DECODE_CHECK(q_in.is_cuda(), "q must be a CUDA tensor, got device ", device_str(q_in));
  check_same_device("k_cache", k_in, q_in);
  check_same_device("v_cache", v_in, q_in);
  check_last_dim_contiguous("q", q_in);
  check_last_dim_contiguous("k_cache", k_in);
  check_last_dim_contiguous("v_cache", v_in);
  const int64_t d = q_in.size(-1);
  SEER_DECODE_CHECK(d == 64 || d == 128 || d == 256, "q head dim must be one of 64, 128, 256, got ", d);
  SEER_DECODE_CHECK(k_in.size(3) == d, "k_cache head dim must equal q's (", d, "), got ", k_in.size(3));
  SEER_DECODE_CHECK(v_in.size(3) == d, "v_cache head dim must equal q's (", d, "), got ", v_in.size(3));
  const int64_t h_q = q_in.size(-2), h_kv = k_in.size(2);
  SEER_DECODE_CHECK(h_kv >= 1, "k_cache must have at least one head, got ", h_kv);
  SEER_DECODE_CHECK(h_q % h_kv == 0, "k_cache number of heads must divide q's (", h_q, "), got ", h_kv);
  SEER_DECODE_CHECK(v_in.sizes() == k_in.sizes(), "v_cache must have the same shape as k_cache (",
                    shape_str(k_in), "), got ", shape_str(v_in));
  const int64_t batch = q_in.size(0);
  const int64_t n_tok = q_in.dim() == 4 ? q_in.size(1) : 1;
  SEER_DECODE_CHECK(n_tok >= 1 && n_tok <= kMaxTokens, "q size(1) (new tokens per sequence, L) must be in [1, ",
                    kMaxTokens, "], got ", n_tok);
  at::Tensor table;
  int64_t s_max = k_in.size(1);
  if (paged) {
    table = *block_table;
    check_rank("block_table", table, 2, "[B, max_pages]");
    SEER_DECODE_CHECK(table.scalar_type() == at::kInt, "block_table must be int32, got ",
                      dtype_name(table.scalar_type()));
    check_same_device("block_table", table, q_in);
    SEER_DECODE_CHECK(table.size(0) == batch, "block_table size(0) must equal the batch size (", batch, "), got ",
                      table.size(0));
    const int64_t page = k_in.size(1);
    SEER_DECODE_CHECK(page >= 16 && page % 16 == 0,
                      "k_cache page size (size(1) with a block_table) must be a positive multiple of 16, got ", page);
    SEER_DECODE_CHECK(!left_pad, "left_pad must be False with a block_table (a paged cache is right-padded), got True");
    s_max = table.size(1) * page;
  } else {
    SEER_DECODE_CHECK(k_in.size(0) == batch, "k_cache size(0) must equal the batch size (", batch, "), got ",
                      k_in.size(0));
  }

  SEER_DECODE_CHECK(cache_seqlens.scalar_type() == at::kInt, "cache_seqlens must be int32, got ",
                    dtype_name(cache_seqlens.scalar_type()));
  SEER_DECODE_CHECK(cache_seqlens.dim() == 1, "cache_seqlens must be a 1-D tensor [B], got shape ",
                    shape_str(cache_seqlens));
  SEER_DECODE_CHECK(cache_seqlens.size(0) == batch, "cache_seqlens size(0) must equal the batch size (", batch,
                    "), got ", cache_seqlens.size(0));
  check_same_device("cache_seqlens", cache_seqlens, q_in);

  SEER_DECODE_CHECK(block_size >= 16 && block_size <= 256 && block_size % 16 == 0,
                    "block_size must be a multiple of 16 in [16, 256], got ", block_size);
  SEER_DECODE_CHECK(std::isfinite(sm_scale) && sm_scale > 0, "sm_scale must be finite and > 0, got ", sm_scale);
  SEER_DECODE_CHECK(num_splits >= 0, "num_splits must be >= 0, got ", num_splits);
  SEER_DECODE_CHECK(num_splits <= kMaxSplits, "num_splits must be <= ", kMaxSplits, ", got ", num_splits);

  const bool has_mask = block_mask.has_value() && block_mask->defined();
  const bool has_idx = block_indices.has_value() && block_indices->defined();
  SEER_DECODE_CHECK(has_mask != has_idx, "block_mask/block_indices exactly one must be given, got ",
                    has_mask ? "both" : "neither");
  const int64_t nb = (s_max + block_size - 1) / block_size;
  at::Tensor mask, idx;
  if (has_mask) {
    const at::Tensor& m = *block_mask;
    check_rank("block_mask", m, 3, "[B, H_kv, key_blocks]");
    mask = byte_mask(m);
    check_same_device("block_mask", m, q_in);
    SEER_DECODE_CHECK(m.size(0) == batch, "block_mask size(0) must equal the batch size (", batch, "), got ",
                      m.size(0));
    SEER_DECODE_CHECK(m.size(1) == h_kv, "block_mask size(1) must equal the number of kv heads (", h_kv,
                      "), got ", m.size(1));
    SEER_DECODE_CHECK(m.size(2) >= nb, "block_mask size(2) must be >= ceil(S_max / block_size) (", nb,
                      "), got ", m.size(2));
  } else {
    idx = *block_indices;
    check_rank("block_indices", idx, 3, "[B, H_kv, K]");
    SEER_DECODE_CHECK(idx.scalar_type() == at::kInt, "block_indices must be int32, got ",
                      dtype_name(idx.scalar_type()));
    check_same_device("block_indices", idx, q_in);
    SEER_DECODE_CHECK(idx.size(0) == batch, "block_indices size(0) must equal the batch size (", batch,
                      "), got ", idx.size(0));
    SEER_DECODE_CHECK(idx.size(1) == h_kv, "block_indices size(1) must equal the number of kv heads (", h_kv,
                      "), got ", idx.size(1));
    SEER_DECODE_CHECK(idx.size(2) <= std::numeric_limits<int>::max() / 16,
                      "block_indices size(2) must be < 2^27, got ", idx.size(2));
  }
  // Launch-shape limits (grid y / z) and int32 slot arithmetic in the kernel.
  SEER_DECODE_CHECK(batch <= 65535, "q size(0) (batch) must be <= 65535, got ", batch);
  SEER_DECODE_CHECK(h_kv <= 65535, "k_cache size(2) (H_kv) must be <= 65535, got ", h_kv);
  SEER_DECODE_CHECK(s_max <= std::numeric_limits<int>::max() - 256, "S_max (k_cache size(1), or max_pages * ",
                    "page_size when paged) must be < 2^31 - 256, got ", s_max);
  if (paged) {
    SEER_DECODE_CHECK(k_in.size(0) <= std::numeric_limits<int>::max(), "k_cache size(0) (num_pages) must be < 2^31, got ",
                      k_in.size(0));
  }

  c10::cuda::CUDAGuard guard(q_in.device());
  at::Tensor out = at::empty(q_in.sizes(), q_in.options().memory_format(at::MemoryFormat::Contiguous));
  std::vector<int64_t> lse_shape(q_in.sizes().begin(), q_in.sizes().end() - 1);
  at::Tensor lse = at::empty(lse_shape, q_in.options().dtype(at::kFloat));
  if (batch == 0 || h_q == 0) return {out, lse};
  if (seer::check_inputs_enabled()) {
    check_values(cache_seqlens, s_max, idx, nb, table, k_in.size(1), k_in.size(0));
  }
  if (s_max == 0 || (paged && k_in.size(0) == 0)) {  // no cache slot at all: every row attends nothing
    out.zero_();
    lse.fill_(-std::numeric_limits<float>::infinity());
    return {out, lse};
  }

  const at::Tensor seqlens = cache_seqlens.contiguous();  // read as a plain int32 array
  const at::Tensor q = aligned_for_16b_rows(q_in);
  const at::Tensor k = aligned_for_16b_rows(k_in);
  const at::Tensor v = aligned_for_16b_rows(v_in);

  DecodeParams p{};
  p.batch = static_cast<int>(batch);
  p.n_tok = static_cast<int>(n_tok);
  p.h_q = static_cast<int>(h_q);
  p.h_kv = static_cast<int>(h_kv);
  p.group = static_cast<int>(h_q / h_kv);
  p.head_dim = static_cast<int>(d);
  p.seqlen_max = static_cast<int>(s_max);
  p.block_size = static_cast<int>(block_size);
  p.num_blocks = static_cast<int>(nb);
  p.scale = static_cast<float>(sm_scale);
  p.scale_log2 = static_cast<float>(sm_scale * 1.4426950408889634);
  p.is_bf16 = qt == at::kBFloat16;
  p.left_pad = left_pad;
  p.first_block_unmasked = first_block_unmasked;

  // q / out as [B, L, H_q, D] (L = 1: the token stride is never used).
  const bool q4 = q.dim() == 4;
  p.q = q.data_ptr();
  p.q_batch_stride = q.stride(0);
  p.q_tok_stride = q4 ? q.stride(1) : 0;
  p.q_head_stride = q.stride(-2);
  at::Tensor bt;
  if (paged) bt = table.contiguous();
  auto fill_addr = [&](KvAddr& a, const at::Tensor& t) {
    a.seq_stride = t.stride(0);
    a.row_stride = t.stride(1);
    a.block_table = paged ? bt.data_ptr<int>() : nullptr;
    a.table_stride = paged ? bt.stride(0) : 0;
    a.page_size = paged ? static_cast<int>(t.size(1)) : 0;
    a.num_pages = paged ? static_cast<int>(t.size(0)) : 0;
  };
  p.k = k.data_ptr();
  fill_addr(p.k_addr, k);
  p.k_head_stride = k.stride(2);
  p.v = v.data_ptr();
  fill_addr(p.v_addr, v);
  p.v_head_stride = v.stride(2);
  p.out = out.data_ptr();
  p.o_batch_stride = out.stride(0);
  p.o_tok_stride = q4 ? out.stride(1) : 0;
  p.o_head_stride = out.stride(-2);
  p.lse = lse.data_ptr<float>();
  p.cache_seqlens = seqlens.data_ptr<int>();

  if (has_mask) {
    p.block_mask = static_cast<const uint8_t*>(mask.data_ptr());
    p.mask_stride_b = mask.stride(0);
    p.mask_stride_h = mask.stride(1);
    p.mask_stride_n = mask.stride(2);
  } else {
    p.block_indices = idx.data_ptr<int>();
    p.idx_stride_b = idx.stride(0);
    p.idx_stride_h = idx.stride(1);
    p.idx_stride_k = idx.stride(2);
    p.num_indices = static_cast<int>(idx.size(2));
  }

  // Compacted selection workspace: [B * H_kv] counts, then [B * H_kv, sel_cap] block ids.
  const int64_t cap = has_mask ? nb : std::min<int64_t>(nb, idx.size(2) + 1);
  p.sel_cap = static_cast<int>(std::max<int64_t>(cap, 1));
  at::Tensor sel = at::empty({batch * h_kv * (1 + p.sel_cap)}, q.options().dtype(at::kInt));
  p.sel_count = sel.data_ptr<int>();
  p.sel_list = p.sel_count + batch * h_kv;

  p.min_split_keys = kDecodeMinSplitKeys;
  p.num_splits = decode_num_splits(p, static_cast<int>(num_splits));
  at::Tensor o_partial, lse_partial;
  if (p.num_splits > 1) {
    const auto f32 = q.options().dtype(at::kFloat);
    o_partial = at::empty({p.num_splits, batch * n_tok * h_q, d}, f32);
    lse_partial = at::empty({p.num_splits, batch * n_tok * h_q}, f32);
    p.o_partial = o_partial.data_ptr<float>();
    p.lse_partial = lse_partial.data_ptr<float>();
  }

  const int err = run_block_sparse_decode(p, c10::cuda::getCurrentCUDAStream().stream());
  SEER_DECODE_CHECK(err == 0, "kernel launch failed with CUDA error ", err, " (", decode_error_string(err), ")");
  return {out, lse};
}

}  // namespace
}  // namespace seer

TORCH_LIBRARY_IMPL(seer_attn, CUDA, m) { m.impl("block_sparse_decode", &seer::block_sparse_decode); }
