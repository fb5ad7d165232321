"""Context-parallel attention (seer_attn.distributed) against the single-GPU op, on a WORKLOADS.md-style
long sequence (bf16, D 128, 32 q / 8 kv heads, 64x64 blocks, causal, per-head 2D mask).

    torchrun --nproc_per_node=N benchmarks/cp_bench.py [--seqlen 65536] [--densities 1 0.1] [--iters 5]

Every rank builds the same global inputs; rank 0 also times the single-GPU op on the whole
sequence (on its own GPU, while the others wait). Prints forward and forward+backward medians (ms)
and the single / CP ratio (the issue's goal on 2 GPUs: >= 1.8 at 131072 tokens). With N = 1 it
measures the overhead of the CP machinery (mask assembly, LSE merge) over the plain op.
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import workloads as wl  # noqa: E402
import seer_attn  # noqa: E402
import seer_attn.distributed as sd  # noqa: E402


def timed(fn, iters, barrier=True):
    """Median ms over iters calls after 2 warm-up calls (CUDA events; wall clock on CPU)."""
    cuda = torch.cuda.is_available() and dist.get_backend() == "nccl"
    for _ in range(2):
        fn()
    ts = []
    for _ in range(iters):
        if barrier:
            dist.barrier()
        if cuda:
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            ts.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seqlen", type=int, default=65536)
    ap.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.1])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--cpu", action="store_true", help="gloo on CPU (a smoke test of this script)")
    a = ap.parse_args()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if a.cpu:
        dist.init_process_group("gloo")
        dev = torch.device("cpu")
    else:
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        dev = torch.device("cuda", local_rank)
    rank, world = dist.get_rank(), dist.get_world_size()
    L = a.seqlen
    cu = torch.tensor([0, L], dtype=torch.int32, device=dev)
    torch.manual_seed(0)
    q = torch.randn(L, wl.H_Q, wl.HEAD_DIM, device=dev, dtype=torch.bfloat16)
    k = torch.randn(L, wl.H_KV, wl.HEAD_DIM, device=dev, dtype=torch.bfloat16)
    v = torch.randn(L, wl.H_KV, wl.HEAD_DIM, device=dev, dtype=torch.bfloat16)
    dout = torch.randn_like(q)
    ql, kl, vl = (sd.shard(t, cu).detach().requires_grad_() for t in (q, k, v))
    doutl = sd.shard(dout, cu)
    if rank == 0:
        print(f"{torch.cuda.get_device_name() if dev.type == 'cuda' else 'CPU'}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"W={world}, seqlen {L}")
        print("| d | single fwd | CP fwd | ratio | single fwd+bwd | CP fwd+bwd | ratio |")
        print("|---|---|---|---|---|---|---|")
    for d in a.densities:
        mask = wl.mask_2d([L], wl.H_Q, d, dev)

        def cp_fwd():
            with torch.no_grad():
                sd.block_sparse_attn_2d_cp(ql, kl, vl, mask, cu, cu, L, L)

        def cp_fwd_bwd():
            out = sd.block_sparse_attn_2d_cp(ql, kl, vl, mask, cu, cu, L, L)
            out.backward(doutl)

        t_cp = timed(cp_fwd, a.iters)
        t_cp_fb = timed(cp_fwd_bwd, a.iters)
        t_1 = t_1_fb = float("nan")
        if rank == 0:
            qs, ks, vs = (t.detach().requires_grad_() for t in (q, k, v))

            def one_fwd():
                with torch.no_grad():
                    seer_attn.block_sparse_attn_2d(qs, ks, vs, mask, cu, cu, L, L)

            def one_fwd_bwd():
                seer_attn.block_sparse_attn_2d(qs, ks, vs, mask, cu, cu, L, L).backward(dout)

            t_1, t_1_fb = (_timed_local(f, a.iters) for f in (one_fwd, one_fwd_bwd))
        dist.barrier()
        if rank == 0:
            print(f"| {d} | {t_1:.2f} | {t_cp:.2f} | {t_1 / t_cp:.2f} | {t_1_fb:.2f} | {t_cp_fb:.2f} | "
                  f"{t_1_fb / t_cp_fb:.2f} |")
    dist.destroy_process_group()


def _timed_local(fn, iters):
    return timed(fn, iters, barrier=False)


if __name__ == "__main__":
    main()
