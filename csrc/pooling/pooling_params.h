// Parameters of the attention-pooling kernels (SPEC section 3: max-pooled attention maps used as
// distillation targets for the gate). ATen-free: filled by csrc/pooling/pooling_api.cpp, read by the
// kernels in csrc/pooling/*.cuh.
//
// With P the softmax attention probabilities of one q head of one sequence (causal: key j visible to
// query i iff j <= i, both sequence-local; otherwise every key of the sequence):
//   pooled_1d[h, cu[b] + i, j] = max over keys of block j of P[i, :]      (q dtype, not normalised)
//   pooled_2d[b, h, I, j]      = max over queries of block I, keys of block j of P,
//                                then each row divided by (row sum + 1e-6)  (float32)
// gqa_reduce: h runs over kv heads; both maps take the max over the group's q heads first, and every
// row of both maps is then normalised.
//
// Work split (see pooling_kernel.cuh): one CTA per (128-row query tile, q head, sequence) sweeps the
// visible keys once, computing each row's LSE and staging the raw per-(row, key block) maxima of the
// logits in shared memory; rows with more visible blocks than the staging holds re-sweep only the
// keys past it. No T x T buffer and no LSE workspace exist. Small follow-up kernels (pooling_run.cu)
// normalise the 2D rows and either zero the 1D rows that belong to no sequence or (gqa_reduce)
// convert the fp32 1D staging to the output with row normalisation.
#pragma once
#include <cstdint>

namespace seer {

struct PoolingParams {
  // ---- problem ---------------------------------------------------------------------------
  int batch;        // number of sequences B (cu_seqlens has batch + 1 entries)
  int h_q;          // query heads
  int h_kv;         // key heads; h_q % h_kv == 0
  int group;        // h_q / h_kv
  int h_out;        // heads of the outputs: h_kv if gqa_reduce else h_q
  int head_dim;     // D (64, 128 or 256)
  int max_seqlen;   // host-side bound on every sequence length (longer sequences are clamped to it)
  int total;        // T: rows of q and k, and token rows of pooled_1d
  int block_size;   // pooling block B: multiple of 16 in [16, 256], same for queries and keys
  int nb;           // ceil(max_seqlen / block_size): blocks per sequence in both output maps
  float scale_log2; // sm_scale * log2(e): logits in base-2 units
  bool causal;      // causal masking (key j <= query i), else every key of the sequence is visible
  bool gqa_reduce;  // reduce over each GQA group's q heads (h_out = h_kv) and row-normalise both maps
  bool is_bf16;     // element type of q / k / pooled_1d (else fp16)
  bool wgmma;       // S tiles by wgmma (pooling_mainloop_sm90.cuh: D 64 / 128, sm_90a device code and a
                    // compute capability 9.0 device, common/device_facts.h use_sm90_kernels), else mma.sync

  // ---- inputs (element strides; the last dim is contiguous, rows 16-byte aligned) ----------
  const void* q;  int64_t q_row_stride, q_head_stride;  // [T, H_q, D]
  const void* k;  int64_t k_row_stride, k_head_stride;  // [T, H_kv, D]
  const int* cu_seqlens;  // [B + 1] int32, device; values are clamped to [0, T], never trusted

  // ---- outputs / workspace (contiguous) ----------------------------------------------------
  float* pooled_2d;        // [B, h_out, nb, nb] float32; MUST be zero-filled before the launch
                           // (the kernel max-reduces into it with atomics on the float bits)
  void* pooled_1d;         // [h_out, T, nb] q dtype; fully written by the kernels (no pre-fill needed)
  float* pooled_1d_accum;  // gqa_reduce only: [h_kv, T, nb] float32 staging, zero-filled before the
                           // launch (atomic max over the group's heads); nullptr otherwise

  // ---- set by the sm_90a launcher (pooling_launch.cuh), not by the API layer ---------------
  alignas(128) unsigned char k_tma_map[128];  // TMA map of k (common/sm90_tma.h TmaMap): the wgmma kernel's
                                              // K tiles; read from the kernel's __grid_constant__ params
};

// Launches the whole op (main kernel + normalisation / tail passes) on `stream` (a cudaStream_t).
// Returns 0 on success, else the CUDA error code of the failed launch (or cudaErrorInvalidValue for
// parameters the kernels do not support).
int run_attn_pooling(const PoolingParams& params, void* stream);

// Query rows per CTA of the main kernel (informational; the API layer does not depend on it).
int attn_pooling_tile_rows();

}  // namespace seer
