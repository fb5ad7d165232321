// seer_attn: operator schemas. This is the single place where the op contract lives.
// CUDA implementations register themselves with TORCH_LIBRARY_IMPL(seer_attn, CUDA, m) in their
// own *_api.cpp files; the CPU implementation (a pure-PyTorch reference), the fake (meta) kernels
// and autograd are attached from Python (seer_attn/ops.py).
//
// Conventions (see SPEC.md): packed varlen layout q [T_q, H_q, D], k/v [T_k, H_kv, D];
// cu_seqlens int32 [B+1]; max_seqlen_* are host ints (never tensor data), declared SymInt so that
// torch.compile keeps them symbolic: a new sequence length does not recompile a graph (block sizes,
// flags and sm_scale stay plain: they select a kernel);
// lse is float32 [H_q, T_q] (natural log); a query row with no visible key gets out = 0, lse = -inf.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing seer_attn._C runs the static TORCH_LIBRARY initialisers below; no Python API is needed.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(seer_attn, m) {
  // ---- 1. 2D block-sparse varlen attention -------------------------------------------------
  // block_mask [B, H_mask, >= ceil(max_seqlen_q/B_q), >= ceil(max_seqlen_k/B_k)], H_mask in {H_q, H_kv, 1},
  // bool or integer (nonzero = keep), any strides.
  m.def(
      "block_sparse_2d_fwd(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens_q, Tensor cu_seqlens_k, "
      "SymInt max_seqlen_q, SymInt max_seqlen_k, Tensor block_mask, int block_size_q, int block_size_k, "
      "float sm_scale, bool causal, bool deterministic=False) -> (Tensor out, Tensor lse)");
  // `deterministic` is unused by the forward computation; it is recorded for the registered autograd
  // so that the backward op is called with it.
  // dlse (optional, [H_q, T_q] float32) is the gradient flowing into lse; it folds into the
  // softmax row term (D_i - dlse_i), so lse is differentiable too.
  m.def(
      "block_sparse_2d_bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor? dlse, "
      "Tensor cu_seqlens_q, Tensor cu_seqlens_k, SymInt max_seqlen_q, SymInt max_seqlen_k, Tensor block_mask, "
      "int block_size_q, int block_size_k, float sm_scale, bool causal, bool deterministic) "
      "-> (Tensor dq, Tensor dk, Tensor dv)");

  // ---- 2. 1D (per-token) block-sparse varlen attention -------------------------------------
  // block_mask [B, H_mask, >= max_seqlen_q, >= ceil(max_seqlen_k/B_k)]: row t = key blocks of query token t.
  m.def(
      "block_sparse_1d_fwd(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens_q, Tensor cu_seqlens_k, "
      "SymInt max_seqlen_q, SymInt max_seqlen_k, Tensor block_mask, int block_size_k, float sm_scale, bool causal, "
      "bool deterministic=False) -> (Tensor out, Tensor lse)");
  m.def(
      "block_sparse_1d_bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor? dlse, "
      "Tensor cu_seqlens_q, Tensor cu_seqlens_k, SymInt max_seqlen_q, SymInt max_seqlen_k, Tensor block_mask, "
      "int block_size_k, float sm_scale, bool causal, bool deterministic) -> (Tensor dq, Tensor dk, Tensor dv)");

  // ---- 3. Attention pooling (distillation targets; no gradient) ------------------------------
  // pooled_2d: float32 [B, H_out, nb, nb], nb = ceil(max_seqlen/block_size), rows normalised.
  // pooled_1d: q.dtype [H_out, T, nb] packed by token (sequence b's map is
  //            pooled_1d[:, cu[b]:cu[b+1], :ceil(t_b/block_size)]), not normalised unless gqa_reduce.
  // H_out = H_q, or H_kv when gqa_reduce (max over each group's heads, then row-normalise).
  m.def(
      "attn_pooling(Tensor q, Tensor k, Tensor cu_seqlens, SymInt max_seqlen, float sm_scale, int block_size, "
      "bool causal, bool gqa_reduce) -> (Tensor pooled_2d, Tensor pooled_1d)");

  // ---- 4. Block-sparse flash-decoding over a varlen KV cache -------------------------------
  // q [B, H_q, D] or [B, L, H_q, D] (L in 1..16 new tokens per sequence: the last L valid slots, causal
  // among themselves, sharing the kv head's selection); cache_seqlens int32 [B].
  // Dense cache: k_cache/v_cache [B, S_max, H_kv, D]. Paged (block_table int32 [B, max_pages]):
  // [num_pages, page_size, H_kv, D], page_size a multiple of 16, logical slot s at page
  // block_table[b, s // page_size], row s % page_size; S_max = max_pages * page_size.
  // Exactly one of block_mask [B, H_kv, >= ceil(S_max/block_size)] or block_indices [B, H_kv, K]
  // (int32, -1 padded, any order; duplicates count once; out-of-range entries ignored, or an error with
  // SEER_ATTN_CHECK_INPUTS=1). left_pad (dense only): valid slots [S_max - len, S_max).
  // num_splits = 0 chooses split-KV from the device's SM count. Returns out (q's shape), lse (float32,
  // q's shape without D).
  m.def(
      "block_sparse_decode(Tensor q, Tensor k_cache, Tensor v_cache, Tensor cache_seqlens, Tensor? block_mask, "
      "Tensor? block_indices, int block_size, float sm_scale, bool left_pad, bool first_block_unmasked, "
      "int num_splits, Tensor? block_table=None) -> (Tensor out, Tensor lse)");
}
