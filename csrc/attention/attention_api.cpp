// Torch-facing layer of the block-sparse attention ops (2D and 1D masks, forward and backward):
// checks every input (messages name the op, the argument and the bad value, mirroring
// seer_attn/checks.py), fills AttnParams, allocates outputs and workspaces, builds the tile mask and
// calls the kernels on the current stream. Never synchronises the device (set
// SEER_ATTN_CHECK_INPUTS=1 to also validate cu_seqlens values, which copies them to the host).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>
#include <torch/all.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "attention_params.h"
#include "common/device_facts.h"
#include "common/tail_fill.h"
#include "common/torch_utils.h"

namespace seer {
namespace {

#define SEER_CHECK(cond, op, ...) SEER_TORCH_CHECK((cond), "seer_attn::", op, ": ", __VA_ARGS__)

enum class MaskKind { k2D, k1D };

int cdiv(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

void check_launch(const char* op, int err, const char* what) {
  SEER_CHECK(err == 0, op, what, " launch failed with CUDA error ", err, " (",
             cudaGetErrorString(static_cast<cudaError_t>(err)), ")");
}

void check_qkv_tensor(const char* op, const char* name, const at::Tensor& t, int64_t rank) {
  SEER_CHECK(t.dim() == rank, op, name, " must have ", rank, " dims, got shape ", t.sizes());
  SEER_CHECK(t.is_cuda(), op, name, " must be a CUDA tensor, got device ", t.device());
  SEER_CHECK(t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16, op, name,
             " must be float16 or bfloat16, got ", dtype_name(t.scalar_type()));
  SEER_CHECK(t.stride(-1) == 1, op, name, " must be contiguous in the last dim, got stride ", t.stride(-1));
}

void check_cu_seqlens(const char* op, const char* name, const at::Tensor& cu, const at::Tensor& q) {
  SEER_CHECK(cu.scalar_type() == at::kInt, op, name, " must be int32, got ", dtype_name(cu.scalar_type()));
  SEER_CHECK(cu.dim() == 1 && cu.size(0) >= 1, op, name, " must be 1-D with batch+1 entries, got shape ",
             cu.sizes());
  SEER_CHECK(cu.device() == q.device(), op, name, " must be on ", q.device(), ", got ", cu.device());
}

void check_block_size(const char* op, const char* name, int64_t bs) {
  SEER_CHECK(bs >= 16 && bs <= 256 && bs % 16 == 0, op, name, " must be a multiple of 16 in [16, 256], got ",
             bs);
}

// Byte view of a mask: bool/uint8/int8 are read in place (strides kept, stride 0 allowed); other integer
// dtypes are converted with `!= 0` (one pass, same shape).
at::Tensor byte_mask(const char* op, const at::Tensor& mask) {
  const auto st = mask.scalar_type();
  SEER_CHECK(st == at::kBool || at::isIntegralType(st, /*includeBool=*/false), op,
             "block_mask must be bool or an integer dtype, got ", dtype_name(st));
  if (st == at::kBool || st == at::kByte || st == at::kChar) return mask;
  return mask.ne(0);
}

struct AttnInputs {
  MaskKind kind;
  const char* op;
  at::Tensor q, k, v, cu_q, cu_k, mask;  // mask already a byte view
  int64_t max_q, max_k, bq, bk;
  double scale;
  bool causal;
};

// Checks shared by forward and backward; fills the problem/tensor/mask part of params (replacing
// q/k/v by aligned copies in the rare case they need it).
void fill_common(AttnParams& p, AttnInputs& in) {
  const char* op = in.op;
  const auto& q = in.q;
  const auto& k = in.k;
  const auto& v = in.v;
  check_qkv_tensor(op, "q", q, 3);
  check_qkv_tensor(op, "k", k, 3);
  check_qkv_tensor(op, "v", v, 3);
  SEER_CHECK(k.scalar_type() == q.scalar_type(), op, "k must have the dtype of q (", dtype_name(q.scalar_type()), "), got ",
             dtype_name(k.scalar_type()));
  SEER_CHECK(v.scalar_type() == q.scalar_type(), op, "v must have the dtype of q (", dtype_name(q.scalar_type()), "), got ",
             dtype_name(v.scalar_type()));
  SEER_CHECK(k.device() == q.device(), op, "k must be on ", q.device(), ", got ", k.device());
  SEER_CHECK(v.device() == q.device(), op, "v must be on ", q.device(), ", got ", v.device());
  const int64_t d = q.size(2);
  SEER_CHECK(d == 64 || d == 128 || d == 256, op, "q head dim must be 64, 128 or 256, got ", d);
  SEER_CHECK(k.size(2) == d, op, "k head dim must equal q's (", d, "), got ", k.size(2));
  SEER_CHECK(v.sizes() == k.sizes(), op, "v must have the shape of k (", k.sizes(), "), got ", v.sizes());
  const int64_t hq = q.size(1), hkv = k.size(1);
  SEER_CHECK(hkv >= 1 && hq % hkv == 0, op, "k number of heads must divide q's (", hq, "), got ", hkv);
  check_cu_seqlens(op, "cu_seqlens_q", in.cu_q, q);
  check_cu_seqlens(op, "cu_seqlens_k", in.cu_k, q);
  const int64_t batch = in.cu_q.size(0) - 1;
  SEER_CHECK(in.cu_k.size(0) == batch + 1, op, "cu_seqlens_k must have ", batch + 1,
             " entries like cu_seqlens_q, got ", in.cu_k.size(0));
  SEER_CHECK(in.max_q >= 0, op, "max_seqlen_q must be >= 0, got ", in.max_q);
  SEER_CHECK(in.max_k >= 0, op, "max_seqlen_k must be >= 0, got ", in.max_k);
  SEER_CHECK(std::isfinite(in.scale) && in.scale > 0, op, "sm_scale must be finite and > 0, got ", in.scale);
  if (in.kind == MaskKind::k2D) check_block_size(op, "block_size_q", in.bq);
  check_block_size(op, "block_size_k", in.bk);

  const auto& m = in.mask;
  SEER_CHECK(m.dim() == 4, op, "block_mask must have 4 dims, got shape ", m.sizes());
  SEER_CHECK(m.device() == q.device(), op, "block_mask must be on ", q.device(), ", got ", m.device());
  SEER_CHECK(m.size(0) == batch, op, "block_mask dim 0 must be the batch size ", batch, ", got shape ",
             m.sizes());
  const int64_t hm = m.size(1);
  SEER_CHECK(hm == hq || hm == hkv || hm == 1, op, "block_mask dim 1 must be H_q=", hq, ", H_kv=", hkv,
             " or 1, got ", hm);
  const int64_t rows_needed = in.kind == MaskKind::k2D ? cdiv(in.max_q, in.bq) : in.max_q;
  const int64_t cols_needed = cdiv(in.max_k, in.bk);
  SEER_CHECK(m.size(2) >= rows_needed, op, "block_mask dim 2 must be >= ", rows_needed, ", got shape ",
             m.sizes());
  SEER_CHECK(m.size(3) >= cols_needed, op, "block_mask dim 3 must be >= ", cols_needed, ", got shape ",
             m.sizes());
  in.q = aligned_for_16b_rows(q);
  in.k = aligned_for_16b_rows(k);
  in.v = aligned_for_16b_rows(v);
  if (seer::check_inputs_enabled()) {  // data checks (copies cu_seqlens to the host), as the CPU reference's
    seer::check_cu_seqlens_data(op, "cu_seqlens_q", in.cu_q, q.size(0), "q", "max_seqlen_q", in.max_q);
    seer::check_cu_seqlens_data(op, "cu_seqlens_k", in.cu_k, k.size(0), "k", "max_seqlen_k", in.max_k);
  }

  p.batch = static_cast<int>(batch);
  p.h_q = static_cast<int>(hq);
  p.h_kv = static_cast<int>(hkv);
  p.group = static_cast<int>(hq / hkv);
  p.head_dim = static_cast<int>(d);
  p.max_seqlen_q = static_cast<int>(in.max_q);
  p.max_seqlen_k = static_cast<int>(in.max_k);
  p.total_q = static_cast<int>(q.size(0));
  p.total_k = static_cast<int>(k.size(0));
  p.scale = static_cast<float>(in.scale);
  p.scale_log2 = static_cast<float>(in.scale * M_LOG2E);
  p.causal = in.causal;
  p.is_bf16 = q.scalar_type() == at::kBFloat16;
  seer::bind_rows(q, p.q, p.q_row_stride, p.q_head_stride);
  seer::bind_rows(k, p.k, p.k_row_stride, p.k_head_stride);
  seer::bind_rows(v, p.v, p.v_row_stride, p.v_head_stride);
  p.cu_seqlens_q = in.cu_q.data_ptr<int>();
  p.cu_seqlens_k = in.cu_k.data_ptr<int>();
  p.mask = static_cast<const uint8_t*>(m.data_ptr());
  p.mask_stride_b = m.stride(0);
  p.mask_stride_h = m.stride(1);
  p.mask_stride_row = m.stride(2);
  p.mask_stride_col = m.stride(3);
  p.mask_heads = static_cast<int>(hm);
  p.mask_row_div = in.kind == MaskKind::k2D ? static_cast<int>(in.bq) : 1;
  p.block_size_q = p.mask_row_div;
  p.block_size_k = static_cast<int>(in.bk);
  p.nb_k = cdiv(in.max_k, in.bk);
}

// The two sides of the tail fill (common/tail_fill.h): side 0 the queries, side 1 the keys.
TailFillParams tail_fill_sides(const AttnParams& p) {
  TailFillParams f{};
  f.batch = p.batch;
  f.side[0] = TailFillSide{p.cu_seqlens_q, p.max_seqlen_q, p.total_q};
  f.side[1] = TailFillSide{p.cu_seqlens_k, p.max_seqlen_k, p.total_k};
  return f;
}

// Row tiling (pack, tile_tokens, n_tok_tiles, n_row_tiles) for a kernel that processes `tile_rows` rows per
// tile; returns the tile mask's size. Packing the heads of a GQA group into one tile only pays when they
// share the mask rows (1D masks given per kv head or broadcast); a 2D mask already shares rows across a
// query block.
int64_t set_tiling(AttnParams& p, MaskKind kind, int tile_rows) {
  int pack = 1;
  if (kind == MaskKind::k1D && p.mask_heads != p.h_q && p.group > 1) {
    for (int c = 1; c <= 16 && c <= p.group && c <= tile_rows; ++c)
      if (p.group % c == 0) pack = c;
  }
  p.pack = pack;
  p.tile_tokens = tile_rows / pack;
  p.n_tok_tiles = cdiv(p.max_seqlen_q, p.tile_tokens);
  p.n_row_tiles = (p.group / pack) * p.n_tok_tiles;
  return static_cast<int64_t>(p.batch) * p.h_kv * p.n_row_tiles * p.nb_k;
}

// Allocates and builds the tile mask of p's tiling (n entries; set_tiling), and its transpose when
// `transposed` (the backward reads it; the forward does not).
std::pair<at::Tensor, at::Tensor> build_tiles(AttnParams& p, int64_t n, bool transposed, const at::Tensor& like,
                                              cudaStream_t stream, const char* op) {
  auto opts = like.options().dtype(at::kByte);
  at::Tensor tm = at::empty({n}, opts);
  at::Tensor tmT = transposed ? at::empty({n}, opts) : at::Tensor();
  p.tile_mask = tm.data_ptr<uint8_t>();
  p.tile_maskT = transposed ? tmT.data_ptr<uint8_t>() : nullptr;
  if (n > 0) check_launch(op, run_build_tile_mask(p, stream), " tile mask");
  return {tm, tmT};
}

// The persistent sm90 kernels' work queues (csrc/attention/tile_scheduler.h "Work queue") in one allocation, built by one
// launch on the stream: p's queue, and p2's (the forward's pair tiling) when given, behind n_counts tile
// counters (AttnParams::tile_count; the same launch zeroes them, the tile-mask builder adds into them after
// it; *counts points at them). Returns the allocation: the caching allocator orders its reuse on the stream.
at::Tensor build_work_queues(AttnParams& p, AttnParams* p2, int n_counts, unsigned long long** counts, const at::Tensor& like,
                             cudaStream_t stream, const char* op) {
  for (const AttnParams* t : {static_cast<const AttnParams*>(&p), static_cast<const AttnParams*>(p2)})
    if (t != nullptr)
      SEER_CHECK(static_cast<long long>(t->n_row_tiles) * t->h_kv * t->batch <= INT32_MAX, op,
                 "too many row tiles for the sm90 kernels' work queue: ", static_cast<long long>(t->n_row_tiles) * t->h_kv * t->batch,
                 " (batch x kv heads x row tiles of max_seqlen_q; at most 2^31 - 1)");
  const long long cap = item_capacity_of(p), cap2 = p2 != nullptr ? item_capacity_of(*p2) : 0;
  // int64 words: the counters, two queues' uint32 [4] (3 used), then both item orders (int32).
  at::Tensor ws = at::empty({n_counts + 4 + (cap + cap2 + 1) / 2}, like.options().dtype(at::kLong));
  int64_t* base = ws.data_ptr<int64_t>();
  *counts = n_counts > 0 ? reinterpret_cast<unsigned long long*>(base) : nullptr;
  unsigned* queues = reinterpret_cast<unsigned*>(base + n_counts);
  int* orders = reinterpret_cast<int*>(base + n_counts + 4);
  p.item_queue = queues;
  p.item_order = orders;
  p.item_capacity = static_cast<int>(cap);
  if (p2 != nullptr) {
    p2->item_queue = queues + 4;
    p2->item_order = orders + cap;
    p2->item_capacity = static_cast<int>(cap2);
  }
  const int section = item_section_heads(p, sm90_l2_bytes(like.device().index()));
  check_launch(op, run_build_item_order(p, p2, section, *counts, n_counts, stream), " work queue");
  return ws;
}

std::tuple<at::Tensor, at::Tensor> attention_fwd(AttnInputs in) {
  AttnParams p{};
  fill_common(p, in);
  c10::cuda::CUDAGuard guard(in.q.device());
  p.fwd_wgmma = use_sm90_kernels(p.head_dim, in.q.device().index());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t tq = in.q.size(0), hq = in.q.size(1), d = in.q.size(2);
  at::Tensor out = at::empty({tq, hq, d}, in.q.options());
  at::Tensor lse = at::empty({hq, tq}, in.q.options().dtype(at::kFloat));
  if (tq == 0) return {out, lse};
  seer::bind_rows(out, p.out, p.o_row_stride, p.o_head_stride);
  p.lse = lse.data_ptr<float>();
  // Hopper, D 64 / 128: the single kernel (64-row tiles) and the pair kernel (row tiles of twice the
  // tokens: 128 rows, fewer where 64 / pack is not whole) are both launched, with one pass building both
  // tile masks and counting their tiles; the counts pick on the device which kernel runs
  // (tile_scheduler.h fwd_pick_pair), the other exits at once (AttnParams::fwd_pick). A problem of one
  // 64-row token tile per head slot has no pair tile to gain from: the single kernel alone.
  const bool sm90_tiles = p.fwd_wgmma && (p.head_dim == 64 || p.head_dim == 128);
  const int64_t n = set_tiling(p, in.kind, attention_fwd_tile_rows(p));
  const bool pick = sm90_tiles && p.n_tok_tiles > 1;
  at::Tensor queues, tm;
  std::pair<at::Tensor, at::Tensor> tiles;
  AttnParams p_pair{};
  if (pick) {
    p_pair = pair_tiling_of(p);
    const int64_t n_pair = static_cast<int64_t>(p.batch) * p.h_kv * p_pair.n_row_tiles * p.nb_k;
    tm = at::empty({n + n_pair}, in.q.options().dtype(at::kByte));  // both masks, one allocation
    unsigned long long* c = nullptr;  // the tile counts fwd_pick reads, zeroed by the queues' launch
    queues = build_work_queues(p, &p_pair, 4, &c, in.q, stream, in.op);
    p.tile_mask = tm.data_ptr<uint8_t>();
    p_pair.tile_mask = p.tile_mask + n;
    p.tile_maskT = p_pair.tile_maskT = nullptr;
    p.tile_count = c;
    p.fwd_pick = p_pair.fwd_pick = c;
    if (n > 0) check_launch(in.op, run_build_tile_masks_pair(p, p_pair, stream), " tile masks");
    if (p_pair.batch > 0 && p_pair.n_row_tiles > 0) check_launch(in.op, run_attention_fwd(p_pair, stream), " forward kernel (pair)");
  } else {
    if (sm90_tiles) {
      unsigned long long* no_counts = nullptr;
      queues = build_work_queues(p, nullptr, 0, &no_counts, in.q, stream, in.op);
    }
    tiles = build_tiles(p, n, /*transposed=*/false, in.q, stream, in.op);
  }
  if (p.batch > 0 && p.n_row_tiles > 0) check_launch(in.op, run_attention_fwd(p, stream), " forward kernel");
  // Rows no sequence owns (past the last sequence, or past a length clamped to max_seqlen_q): out 0,
  // lse -inf, in one launch (common/tail_fill.h).
  seer::TailFillParams fill = tail_fill_sides(p);
  fill.target[0] = seer::tail_fill_rows(p.out, p.o_row_stride, p.o_head_stride, p.h_q, p.head_dim, 2, 0);
  fill.target[1] = seer::tail_fill_lse(p.lse, p.h_q, -INFINITY, 0);
  fill.n_targets = 2;
  check_launch(in.op, seer::run_tail_fill(fill, stream), " tail fill");
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_bwd(AttnInputs in, const at::Tensor& dout_in,
                                                             const at::Tensor& out_in, const at::Tensor& lse,
                                                             const c10::optional<at::Tensor>& dlse,
                                                             bool deterministic) {
  AttnBwdParams p{};
  fill_common(p, in);
  const char* op = in.op;
  const at::Tensor& dout = dout_in;
  const at::Tensor& out = out_in;
  check_qkv_tensor(op, "dout", dout, 3);
  check_qkv_tensor(op, "out", out, 3);
  SEER_CHECK(dout.sizes() == in.q.sizes(), op, "dout must have the shape of q (", in.q.sizes(), "), got ",
             dout.sizes());
  SEER_CHECK(out.sizes() == in.q.sizes(), op, "out must have the shape of q (", in.q.sizes(), "), got ",
             out.sizes());
  SEER_CHECK(dout.scalar_type() == in.q.scalar_type(), op, "dout must have the dtype of q (",
             dtype_name(in.q.scalar_type()), "), got ", dtype_name(dout.scalar_type()));
  SEER_CHECK(out.scalar_type() == in.q.scalar_type(), op, "out must have the dtype of q (",
             dtype_name(in.q.scalar_type()), "), got ", dtype_name(out.scalar_type()));
  const int64_t tq = in.q.size(0), hq = in.q.size(1);
  SEER_CHECK(lse.scalar_type() == at::kFloat, op, "lse must be float32, got ", dtype_name(lse.scalar_type()));
  SEER_CHECK(lse.dim() == 2 && lse.size(0) == hq && lse.size(1) == tq, op, "lse must have shape [", hq, ", ", tq,
             "], got ", lse.sizes());
  SEER_CHECK(lse.device() == in.q.device(), op, "lse must be on ", in.q.device(), ", got ", lse.device());
  at::Tensor lse_c = lse.contiguous();
  const at::Tensor dout_a = aligned_for_16b_rows(dout), out_a = aligned_for_16b_rows(out);
  at::Tensor dlse_c;
  if (dlse.has_value()) {
    SEER_CHECK(dlse->scalar_type() == at::kFloat, op, "dlse must be float32, got ", dtype_name(dlse->scalar_type()));
    SEER_CHECK(dlse->dim() == 2 && dlse->size(0) == hq && dlse->size(1) == tq, op, "dlse must have shape [", hq,
               ", ", tq, "], got ", dlse->sizes());
    SEER_CHECK(dlse->device() == in.q.device(), op, "dlse must be on ", in.q.device(), ", got ", dlse->device());
    dlse_c = dlse->contiguous();
  }
  c10::cuda::CUDAGuard guard(in.q.device());
  p.bwd_wgmma = use_sm90_kernels(p.head_dim, in.q.device().index());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  at::Tensor dq = at::empty(in.q.sizes(), in.q.options());
  at::Tensor dk = at::empty(in.k.sizes(), in.k.options());
  at::Tensor dv = at::empty(in.v.sizes(), in.v.options());
  at::Tensor softmax_d = at::empty({hq, tq}, in.q.options().dtype(at::kFloat));
  seer::bind_rows(out_a, p.out, p.o_row_stride, p.o_head_stride);
  p.lse = lse_c.data_ptr<float>();
  seer::bind_rows(dout_a, p.dout, p.do_row_stride, p.do_head_stride);
  p.dlse = dlse_c.defined() ? dlse_c.data_ptr<float>() : nullptr;
  p.softmax_d = softmax_d.data_ptr<float>();
  seer::bind_rows(dq, p.dq, p.dq_row_stride, p.dq_head_stride);
  seer::bind_rows(dk, p.dk, p.dk_row_stride, p.dk_head_stride);
  seer::bind_rows(dv, p.dv, p.dv_row_stride, p.dv_head_stride);
  // Non-deterministic (default) path: the dK/dV kernel may accumulate dQ with fp32 atomics into this
  // workspace (contiguous [T_q, H_q, D]); a convert kernel writes dq from it. Uninitialised here: the
  // backward's preprocess kernel zeroes it when (and only when) the dK/dV kernel adds into it.
  at::Tensor dq_accum;
  if (!deterministic && p.batch > 0 && tq > 0)
    dq_accum = at::empty({tq, hq, static_cast<int64_t>(p.head_dim)}, in.q.options().dtype(at::kFloat));
  p.dq_accum = dq_accum.defined() ? dq_accum.data_ptr<float>() : nullptr;
  p.deterministic = deterministic;
  // sm90: the tile-mask builder counts kept / visible tiles, from which the kernels pick the dK/dV CTA size
  // (both paths, bwd_common.h dkdv_split) and, on the atomic path, where dQ is computed (dq_fused);
  // run_attention_bwd drops the counts on other paths.
  // The dQ kernel (sm90) takes its row tiles from a work queue built with the counts' zeroing.
  at::Tensor queues, tm, tmT;
  if (p.batch > 0) {
    const int64_t n = set_tiling(p, in.kind, attention_bwd_tile_rows(p.head_dim));
    if (p.bwd_wgmma) queues = build_work_queues(p, nullptr, 2, &p.tile_count, in.q, stream, op);
    auto tiles = build_tiles(p, n, /*transposed=*/true, in.q, stream, op);
    tm = tiles.first;
    tmT = tiles.second;
    if (tq > 0 || in.k.size(0) > 0) check_launch(op, run_attention_bwd(p, stream), " backward kernel");
  }
  // Rows no sequence owns (past the last sequence, or past a length clamped to max_seqlen_*): zero
  // gradients, in one launch (common/tail_fill.h).
  seer::TailFillParams fill = tail_fill_sides(p);
  fill.target[0] = seer::tail_fill_rows(p.dq, p.dq_row_stride, p.dq_head_stride, p.h_q, p.head_dim, 2, 0);
  fill.target[1] = seer::tail_fill_rows(p.dk, p.dk_row_stride, p.dk_head_stride, p.h_kv, p.head_dim, 2, 1);
  fill.target[2] = seer::tail_fill_rows(p.dv, p.dv_row_stride, p.dv_head_stride, p.h_kv, p.head_dim, 2, 1);
  fill.n_targets = 3;
  check_launch(op, seer::run_tail_fill(fill, stream), " tail fill");
  return {dq, dk, dv};
}

// ---- op entry points (argument order = schemas in csrc/ops.cpp) -------------------------------------

std::tuple<at::Tensor, at::Tensor> block_sparse_2d_fwd(const at::Tensor& q, const at::Tensor& k,
                                                       const at::Tensor& v, const at::Tensor& cu_q,
                                                       const at::Tensor& cu_k, int64_t max_q, int64_t max_k,
                                                       const at::Tensor& mask, int64_t bq, int64_t bk,
                                                       double scale, bool causal, bool /*deterministic*/) {
  const char* op = "block_sparse_2d_fwd";
  return attention_fwd({MaskKind::k2D, op, q, k, v, cu_q, cu_k, byte_mask(op, mask), max_q, max_k, bq, bk, scale,
                        causal});
}

std::tuple<at::Tensor, at::Tensor> block_sparse_1d_fwd(const at::Tensor& q, const at::Tensor& k,
                                                       const at::Tensor& v, const at::Tensor& cu_q,
                                                       const at::Tensor& cu_k, int64_t max_q, int64_t max_k,
                                                       const at::Tensor& mask, int64_t bk, double scale,
                                                       bool causal, bool /*deterministic*/) {
  const char* op = "block_sparse_1d_fwd";
  return attention_fwd({MaskKind::k1D, op, q, k, v, cu_q, cu_k, byte_mask(op, mask), max_q, max_k, 1, bk, scale,
                        causal});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> block_sparse_2d_bwd(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
    const at::Tensor& lse, const c10::optional<at::Tensor>& dlse, const at::Tensor& cu_q, const at::Tensor& cu_k,
    int64_t max_q, int64_t max_k, const at::Tensor& mask, int64_t bq, int64_t bk, double scale, bool causal,
    bool deterministic) {
  const char* op = "block_sparse_2d_bwd";
  return attention_bwd({MaskKind::k2D, op, q, k, v, cu_q, cu_k, byte_mask(op, mask), max_q, max_k, bq, bk, scale,
                        causal},
                       dout, out, lse, dlse, deterministic);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> block_sparse_1d_bwd(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
    const at::Tensor& lse, const c10::optional<at::Tensor>& dlse, const at::Tensor& cu_q, const at::Tensor& cu_k,
    int64_t max_q, int64_t max_k, const at::Tensor& mask, int64_t bk, double scale, bool causal,
    bool deterministic) {
  const char* op = "block_sparse_1d_bwd";
  return attention_bwd({MaskKind::k1D, op, q, k, v, cu_q, cu_k, byte_mask(op, mask), max_q, max_k, 1, bk, scale,
                        causal},
                       dout, out, lse, dlse, deterministic);
}

}  // namespace
}  // namespace seer

TORCH_LIBRARY_IMPL(seer_attn, CUDA, m) {
  m.impl("block_sparse_2d_fwd", &seer::block_sparse_2d_fwd);
  m.impl("block_sparse_1d_fwd", &seer::block_sparse_1d_fwd);
  m.impl("block_sparse_2d_bwd", &seer::block_sparse_2d_bwd);
  m.impl("block_sparse_1d_bwd", &seer::block_sparse_1d_bwd);
}
