"""Context parallelism for the block-sparse varlen attention ops over ``torch.distributed``.

``import seer_attn.distributed`` (not imported by ``import seer_attn``). Every rank of a process
group holds a load-balanced shard of the packed sequence dimension; the block mask and
``cu_seqlens`` are global and replicated.

Split (``shard`` / ``unshard``; W = group size): each sequence is cut into 2W chunks, rank r holds
chunks r and 2W-1-r of every sequence (in sequence order, chunk r first). Chunk boundaries fall on
multiples of ``unit`` tokens (default 256, a multiple of every power-of-two block size): with
``n = ceil(L / unit)`` units in a sequence of L tokens, chunk c gets ``n // 2W`` units, plus one
if ``c < n % 2W``; only the last non-empty chunk can be partial (it ends at L). A sequence shorter
than ``2W * unit`` tokens therefore leaves its last chunks empty (a sequence of at most ``unit``
tokens lives on rank 0 only). Every world size works; block sizes must divide ``unit``
(``unit = lcm(B_q, B_k)`` or a multiple of it for block sizes that are not powers of two; pass
the same ``unit`` to every function). Rows beyond ``cu_seqlens[-1]`` belong to no rank (``shard``
drops them, ``unshard`` returns zeros there, as the ops do for such rows).

Attention (``block_sparse_attn_{2d,1d}_cp``): at ring step t (t = 0 .. W-1) rank r computes its
local queries against the K/V shard of rank ``(r - t) mod W``: it receives that shard at step t
from its owner and sends its own shard to rank ``(r + t) mod W`` (``batch_isend_irecv``, posted one
step ahead so that the transfer overlaps the attention on the shard in hand; on NCCL the P2P runs
on NCCL's own stream, so no side stream is needed). Each step is one call of the single-device
op over a *virtual* varlen batch: per sequence one virtual sequence (the local query chunks x the
shard's key chunks, causal only at step 0 where the chunk pairs are the diagonal ones, plus the
pair (2W-1-r, r) which is fully below the diagonal) with a mask assembled from slices of the
global mask (chunk pairs above the diagonal or without any kept block get zeros), and empty
sequences absorbing the rows in between. Partial outputs merge through their LSE in float32
(rows with LSE = -inf on both sides stay 0 / -inf). A shard is sent to a rank only if some local
query chunk there keeps a block of it (decided from the replicated mask on each rank: one
device-to-host copy of a [B, 2W, 2W] flag tensor per call, no communication), and no call is made
for it otherwise. Backward: the K/V shards travel again; each rank computes dQ for its queries and
the partial dK/dV of the shard in hand (with the global out and LSE, so partials add up exactly),
and sends the partial dK/dV straight back to the shard's owner, who sums them in float32.

Host syncs: ``cu_seqlens`` is read on the host (the shard sizes depend on it), the flag tensor
above once per forward. Causal attention needs ``seqlen_q == seqlen_k`` for every sequence
(self-attention, the case context parallelism is for); non-causal attention takes any lengths.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist

import seer_attn  # noqa: F401  (registers the ops)

__all__ = ["shard", "unshard", "block_sparse_attn_2d_cp", "block_sparse_attn_1d_cp", "DEFAULT_UNIT"]

DEFAULT_UNIT = 256
_NEG_INF = float("-inf")


def _cdiv(a, b):
    return -(-a // b)


# ---------------------------------------------------------------------------------------------------
# Chunking plan (host-side, a pure function of cu_seqlens, W and unit: identical on every rank)
# ---------------------------------------------------------------------------------------------------
def _chunk_bounds(length: int, world: int, unit: int) -> List[Tuple[int, int]]:
    """(start, end) of the 2W chunks of a sequence of `length` tokens (see the module docstring)."""
    n_chunks = 2 * world
    n_units = _cdiv(length, unit)
    base, extra = divmod(n_units, n_chunks)
    bounds, u = [], 0
    for c in range(n_chunks):
        u1 = u + base + (1 if c < extra else 0)
        bounds.append((min(u * unit, length), min(u1 * unit, length)))
        u = u1
    return bounds


class _Layout:
    """Where every chunk of every sequence lives. seg[s] = list of (b, chunk, global_start, length,
    local_start) of rank s in local order; total[s] = local rows of rank s."""

    def __init__(self, cu: List[int], world: int, unit: int):
        self.cu, self.world, self.unit = cu, world, unit
        self.n_seq = len(cu) - 1
        self.bounds = [_chunk_bounds(cu[b + 1] - cu[b], world, unit) for b in range(self.n_seq)]
        self.seg, self.total = [], []
        for s in range(world):
            segs, off = [], 0
            for b in range(self.n_seq):
                for c in (s, 2 * world - 1 - s):
                    c0, c1 = self.bounds[b][c]
                    segs.append((b, c, cu[b] + c0, c1 - c0, off))
                    off += c1 - c0
            self.seg.append(segs)
            self.total.append(off)

    def local_index(self, rank: int, device=None) -> torch.Tensor:
        """int64 global rows of rank `rank`'s shard, in local order."""
        parts = [torch.arange(g0, g0 + n, device=device) for _, _, g0, n, _ in self.seg[rank] if n]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=device)

    def gather_index(self, stride: int, device=None) -> torch.Tensor:
        """int64: for each global row in [0, cu[-1]), its row in the stacked [W * stride] all-gather buffer."""
        idx = torch.zeros(self.cu[-1], dtype=torch.long, device=device)
        for s in range(self.world):
            for _, _, g0, n, l0 in self.seg[s]:
                if n:
                    idx[g0:g0 + n] = torch.arange(s * stride + l0, s * stride + l0 + n, device=device)
        return idx


def _host_cu(cu_seqlens, op, name) -> List[int]:
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise ValueError(f"seer_attn.distributed.{op}: {name} must be a 1-D int32 tensor [B+1], got "
                         f"{type(cu_seqlens).__name__ if not isinstance(cu_seqlens, torch.Tensor) else tuple(cu_seqlens.shape)}")
    cu = [int(c) for c in cu_seqlens.tolist()]
    if cu[0] != 0 or any(b < a for a, b in zip(cu[:-1], cu[1:])):
        raise ValueError(f"seer_attn.distributed.{op}: {name} must start at 0 and be non-decreasing, got {cu}")
    return cu


def _group_info(group):
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("seer_attn.distributed: torch.distributed is not initialized "
                           "(call torch.distributed.init_process_group first)")
    return dist.get_rank(group), dist.get_world_size(group)


def _check_unit(op, unit):
    if not isinstance(unit, int) or unit < 16 or unit % 16:
        raise ValueError(f"seer_attn.distributed.{op}: unit must be a positive multiple of 16, got {unit!r}")


def _agree(op, err: Optional[str], group, device):
    """Collective error check: if any rank found bad input, every rank raises (no rank is left
    waiting in a P2P call). One tiny all_reduce per call."""
    flag = torch.tensor([1 if err else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    if int(flag.item()):
        # the messages travel as fixed-size byte tensors (all_gather_object needs numpy)
        n = 1024
        raw = (err or "").encode()[:n]
        mine = torch.zeros(n, dtype=torch.uint8)
        if raw:
            mine[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
        mine = mine.to(device)
        bufs = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
        dist.all_gather(bufs, mine, group=group)
        if err:
            raise ValueError(err)
        for i, b in enumerate(bufs):
            msg = bytes(b.cpu().tolist()).rstrip(b"\0").decode(errors="replace")
            if msg:
                raise ValueError(f"seer_attn.distributed.{op}: rank {i} of the group reported bad input: {msg}")
        raise ValueError(f"seer_attn.distributed.{op}: another rank of the group reported bad input")


def _device_for(group, fallback):
    backend = dist.get_backend(group)
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device()) if fallback.type != "cuda" else fallback
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------------
# shard / unshard
# ---------------------------------------------------------------------------------------------------
def _all_gather_rows(x_local, layout: _Layout, rank, group):
    world = layout.world
    stride = max(layout.total)
    pad = torch.zeros((stride,) + tuple(x_local.shape[1:]), dtype=x_local.dtype, device=x_local.device)
    pad[: x_local.shape[0]] = x_local
    bufs = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(bufs, pad, group=group)
    stacked = torch.cat(bufs, 0)
    idx = layout.gather_index(stride, x_local.device)
    full = stacked.index_select(0, idx)
    return full


class _ShardFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, layout, rank, group, t_total):
        ctx.layout, ctx.rank, ctx.group, ctx.t_total = layout, rank, group, t_total
        idx = layout.local_index(rank, x.device)
        return x.index_select(0, idx)

    @staticmethod
    def backward(ctx, g):
        full = _all_gather_rows(g.contiguous(), ctx.layout, ctx.rank, ctx.group)
        if ctx.t_total > full.shape[0]:
            full = torch.cat([full, full.new_zeros((ctx.t_total - full.shape[0],) + tuple(full.shape[1:]))])
        return full, None, None, None, None


class _UnshardFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_local, layout, rank, group, t_total):
        ctx.layout, ctx.rank = layout, rank
        full = _all_gather_rows(x_local.contiguous(), layout, rank, group)
        if t_total > full.shape[0]:
            full = torch.cat([full, full.new_zeros((t_total - full.shape[0],) + tuple(full.shape[1:]))])
        return full

    @staticmethod
    def backward(ctx, g):
        idx = ctx.layout.local_index(ctx.rank, g.device)
        return g.index_select(0, idx), None, None, None, None


def shard(x: torch.Tensor, cu_seqlens: torch.Tensor, group=None, *, unit: int = DEFAULT_UNIT) -> torch.Tensor:
    """This rank's part of a packed ``[T, ...]`` tensor: chunks r and 2W-1-r of every sequence
    (module docstring). Differentiable; the backward all-gathers, so a tensor replicated on every
    rank gets its full gradient on every rank. Reads ``cu_seqlens`` on the host."""
    _check_unit("shard", unit)
    rank, world = _group_info(group)
    cu = _host_cu(cu_seqlens, "shard", "cu_seqlens")
    if x.dim() < 1 or x.shape[0] < cu[-1]:
        raise ValueError(f"seer_attn.distributed.shard: x must have at least cu_seqlens[-1] ({cu[-1]}) rows, "
                         f"got shape {tuple(x.shape)}")
    return _ShardFn.apply(x, _Layout(cu, world, unit), rank, group, x.shape[0])


def unshard(x_local: torch.Tensor, cu_seqlens: torch.Tensor, group=None, *, unit: int = DEFAULT_UNIT,
            total: Optional[int] = None) -> torch.Tensor:
    """The full packed tensor ``[T, ...]`` (``T = total`` or ``cu_seqlens[-1]``) on every rank from the
    ranks' shards (an all-gather). Differentiable; the backward takes this rank's slice of the
    gradient (a loss computed from the replicated result counts once, as if every rank computed it)."""
    _check_unit("unshard", unit)
    rank, world = _group_info(group)
    cu = _host_cu(cu_seqlens, "unshard", "cu_seqlens")
    layout = _Layout(cu, world, unit)
    err = None
    if x_local.dim() < 1 or x_local.shape[0] != layout.total[rank]:
        err = (f"seer_attn.distributed.unshard: x_local must have this rank's shard length "
               f"({layout.total[rank]} rows on rank {rank}), got shape {tuple(x_local.shape)}")
    _agree("unshard", err, group, _device_for(group, x_local.device))
    return _UnshardFn.apply(x_local, layout, rank, group, cu[-1] if total is None else int(total))


# ---------------------------------------------------------------------------------------------------
# Ring attention
# ---------------------------------------------------------------------------------------------------
def _chunk_flags(mask, kind, lay_q: _Layout, lay_k: _Layout, bq, bk):
    """bool [B, 2W, 2W] on the host: flags[b, a, c] = the mask keeps some block of (query chunk a,
    key chunk c) of sequence b (causality not considered). One device-to-host copy."""
    n2 = 2 * lay_q.world
    dev = mask.device
    rows = []
    for b in range(lay_q.n_seq):
        sq = lay_q.cu[b + 1] - lay_q.cu[b]
        sk = lay_k.cu[b + 1] - lay_k.cu[b]
        if sq == 0 or sk == 0:
            rows.append(torch.zeros(n2 * n2, dtype=torch.int64, device=dev))
            continue
        nr = _cdiv(sq, bq) if kind == "2d" else sq
        nc = _cdiv(sk, bk)
        m = (mask[b, :, :nr, :nc] != 0).any(0)  # [nr, nc]
        qstarts = torch.tensor([c0 for c0, _ in lay_q.bounds[b]], device=dev)
        kstarts = torch.tensor([c0 for c0, _ in lay_k.bounds[b]], device=dev)
        row_tok = torch.arange(nr, device=dev) * (bq if kind == "2d" else 1)
        col_tok = torch.arange(nc, device=dev) * bk
        cq = torch.bucketize(row_tok, qstarts, right=True) - 1
        ck = torch.bucketize(col_tok, kstarts, right=True) - 1
        flat = (cq[:, None] * n2 + ck[None, :]).reshape(-1)
        acc = torch.zeros(n2 * n2, dtype=torch.int64, device=dev)
        acc.index_add_(0, flat, m.reshape(-1).to(torch.int64))
        rows.append(acc)
    if not rows:
        return torch.zeros((0, n2, n2), dtype=torch.bool)
    return (torch.stack(rows).cpu() > 0).view(-1, n2, n2)


class _Step:
    """One ring step of one rank: the virtual varlen batch handed to the single-device op."""

    def __init__(self, src, causal, cu_q, cu_k, max_q, max_k, mask):
        self.src, self.causal = src, causal
        self.cu_q, self.cu_k, self.max_q, self.max_k, self.mask = cu_q, cu_k, max_q, max_k, mask


class _Sel:
    """The part of rank s's K/V shard that rank r receives: segs (b, chunk, global_start, length,
    offset in the received buffer), n rows, rows = their rows in s's local shard (None: all of it)."""

    def __init__(self, segs, n, rows):
        self.segs, self.n, self.rows = segs, n, rows


def _chunks_needed(flags, world, causal):
    """[s][r] -> set of key chunks of rank s (of s and 2W-1-s) that some query chunk of rank r keeps a
    block of (flags [B, 2W, 2W] from _chunk_flags; with causal, only chunks c <= the query chunk)."""
    n2 = 2 * world
    any_b = flags.any(0) if flags.shape[0] else torch.zeros((n2, n2), dtype=torch.bool)
    return [[{c for c in (s, n2 - 1 - s) for a in (r, n2 - 1 - r) if (not causal or c <= a) and bool(any_b[a, c])}
             for r in range(world)] for s in range(world)]


def _select(lay_k: _Layout, s, chunks, device):
    segs, rows, off = [], [], 0
    for b, c, g0, n, l0 in lay_k.seg[s]:
        if c in chunks and n:
            segs.append((b, c, g0, n, off))
            rows.append(torch.arange(l0, l0 + n, device=device))
            off += n
    if off == 0:
        return None
    full = off == lay_k.total[s]
    return _Sel(segs, off, None if full else torch.cat(rows))


def _plan_step(r, s, kind, causal, lay_q, lay_k, flags, mask, bq, bk, device, ksel):
    """Virtual batch for queries of rank r against the received part `ksel` of rank s's K/V shard,
    or None if nothing is kept."""
    n2 = 2 * lay_q.world
    entries = []  # (q0, q1, k0, k1, [(qseg, kseg)])
    for b in range(lay_q.n_seq):
        qsegs = [sg for sg in lay_q.seg[r] if sg[0] == b]
        ksegs = [sg for sg in ksel.segs if sg[0] == b]
        subs = []
        for qs in qsegs:
            for ks in ksegs:
                a, c = qs[1], ks[1]
                if qs[3] == 0 or ks[3] == 0 or (causal and c > a) or not bool(flags[b, a, c]):
                    continue
                subs.append((qs, ks))
        if not subs:
            continue
        q0 = min(qs[4] for qs, _ in subs)
        q1 = max(qs[4] + qs[3] for qs, _ in subs)
        k0 = min(ks[4] for _, ks in subs)
        k1 = max(ks[4] + ks[3] for _, ks in subs)
        if causal and s == r:  # causal over the union: query and key ranges must coincide (same layout)
            q0 = k0 = min(q0, k0)
            q1 = k1 = max(q1, k1)
        entries.append((q0, q1, k0, k1, subs))
    if not entries:
        return None
    # Virtual sequences: real entries, with empty-query / empty-key sequences absorbing the gaps.
    cu_q, cu_k, real = [0], [0], []
    for q0, q1, k0, k1, subs in entries:
        if q0 > cu_q[-1]:
            cu_q.append(q0), cu_k.append(cu_k[-1]), real.append(None)
        if k0 > cu_k[-1]:
            cu_q.append(cu_q[-1]), cu_k.append(k0), real.append(None)
        cu_q.append(q1), cu_k.append(k1), real.append((q0, k0, subs))
    tq, tk = lay_q.total[r], ksel.n
    if tq > cu_q[-1] or tk > cu_k[-1]:
        cu_q.append(tq), cu_k.append(tk), real.append(None)
    max_q = max(max(b - a for a, b in zip(cu_q[:-1], cu_q[1:])), 1)
    max_k = max(max(b - a for a, b in zip(cu_k[:-1], cu_k[1:])), 1)
    rows = _cdiv(max_q, bq) if kind == "2d" else max_q
    vmask = torch.zeros((len(real), mask.shape[1], rows, _cdiv(max_k, bk)), dtype=torch.bool, device=mask.device)
    for v, ent in enumerate(real):
        if ent is None:
            continue
        q0, k0, subs = ent
        for (b, _, gq, lq, lq0), (_, _, gk, lk, lk0) in subs:
            gq -= lay_q.cu[b]
            gk -= lay_k.cu[b]
            kc0, kc1 = (lk0 - k0) // bk, (lk0 - k0) // bk + _cdiv(lk, bk)
            if kind == "2d":
                rq0, nrq, g0 = (lq0 - q0) // bq, _cdiv(lq, bq), gq // bq
            else:
                rq0, nrq, g0 = lq0 - q0, lq, gq
            vmask[v, :, rq0:rq0 + nrq, kc0:kc1] = mask[b, :, g0:g0 + nrq, gk // bk:gk // bk + kc1 - kc0] != 0
    cu_q_t = torch.tensor(cu_q, dtype=torch.int32, device=device)
    cu_k_t = torch.tensor(cu_k, dtype=torch.int32, device=device)
    return _Step(s, causal and s == r, cu_q_t, cu_k_t, max_q, max_k, vmask)


def _merge(out_acc, lse_acc, o, lse):
    """In place: (out_acc, lse_acc) <- softmax-merge with (o, lse); -inf rows stay 0 / -inf."""
    new = torch.logaddexp(lse_acc, lse)
    safe = torch.where(new == _NEG_INF, torch.zeros_like(new), new)
    w_old = torch.exp(lse_acc - safe).t().unsqueeze(-1)  # [T, H, 1]
    w_new = torch.exp(lse - safe).t().unsqueeze(-1)
    out_acc.mul_(w_old).add_(o.float() * w_new)
    lse_acc.copy_(new)


class _Comm:
    """P2P helper on global ranks of `group`."""

    def __init__(self, group, rank, world):
        self.group, self.rank, self.world = group, rank, world

    def peer(self, r):
        return dist.get_global_rank(self.group, r) if self.group is not None else r

    def post(self, ops):
        """ops: list of ('send'|'recv', tensor, group_rank, tag) -> list of works."""
        if not ops:
            return []
        p2p = [dist.P2POp(dist.isend if kind == "send" else dist.irecv, t, self.peer(p), self.group, tag)
               for kind, t, p, tag in ops]
        return dist.batch_isend_irecv(p2p)


def _wait(works):
    for w in works:
        w.wait()


def _post_kv(comm, sel, kv_local, t):
    """Posts step t's K/V exchange of this rank: send the rows of kv_local that rank r + t keeps,
    receive those of rank r - t that this rank keeps. Returns (receive buffer or None, works)."""
    r, world = comm.rank, comm.world
    if t >= world:
        return None, []
    dst, src = (r + t) % world, (r - t) % world
    ops, buf = [], None
    out_sel, in_sel = sel[r][dst], sel[src][r]
    if out_sel is not None:
        ops.append(("send", kv_local if out_sel.rows is None else kv_local.index_select(0, out_sel.rows), dst, t))
    if in_sel is not None:
        buf = torch.empty((in_sel.n,) + tuple(kv_local.shape[1:]), dtype=kv_local.dtype, device=kv_local.device)
        ops.append(("recv", buf, src, t))
    return buf, comm.post(ops)


def _ring_steps(comm, sel, kv_local):
    """Yields (t, K/V of rank r - t kept by this rank) for t = 0 .. W-1; step t + 1's exchange is
    posted before step t's K/V is handed out, so it overlaps the attention on it."""
    pending = _post_kv(comm, sel, kv_local, 1)
    for t in range(comm.world):
        if t == 0:
            yield 0, kv_local
            continue
        kv, works = pending
        _wait(works)
        pending = _post_kv(comm, sel, kv_local, t + 1)
        yield t, kv


class _RingAttn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, mask, kind, causal, bq, bk, sm_scale, lay_q, lay_k, comm, steps, sel):
        ctx.set_materialize_grads(False)
        r, world = comm.rank, comm.world
        t_l, h_q, d = q.shape
        kv_local = torch.stack([k, v], 1)  # [T_k_local, 2, H_kv, D] contiguous: one message per shard
        out_acc = torch.zeros((t_l, h_q, d), dtype=torch.float32, device=q.device)
        lse_acc = torch.full((h_q, t_l), _NEG_INF, dtype=torch.float32, device=q.device)

        for t, kv in _ring_steps(comm, sel, kv_local):
            st = steps[t]
            if st is None:
                continue
            o, lse = _fwd_op(kind, q, kv[:, 0], kv[:, 1], st, bq, bk, sm_scale)
            _merge(out_acc, lse_acc, o, lse)
        out = out_acc.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse_acc)
        ctx.args = (kind, bq, bk, sm_scale, lay_k, comm, steps, sel)
        return out, lse_acc

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        kind, bq, bk, sm_scale, lay_k, comm, steps, sel = ctx.args
        r, world = comm.rank, comm.world
        if dout is None:
            dout = torch.zeros_like(out)
        dout = dout.contiguous()
        dlse = None if dlse is None else dlse.contiguous()
        kv_local = torch.stack([k, v], 1)
        dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
        dkv = torch.zeros(kv_local.shape, dtype=torch.float32, device=k.device)

        returns = []  # (buffer, works) of partial dK/dV coming back to this rank
        for t, kv in _ring_steps(comm, sel, kv_local):
            st = steps[t]
            part = None
            if st is not None:
                gq, gk, gv = _bwd_op(kind, dout, q, kv[:, 0], kv[:, 1], out, lse, dlse, st, bq, bk, sm_scale)
                dq += gq.float()
                part = torch.stack([gk, gv], 1)
            if t == 0:
                if part is not None:
                    dkv += part.float()
                continue
            # Partial dK/dV of the shard in hand go straight back to its owner (r - t).
            dst, src = (r - t) % world, (r + t) % world
            ops, buf = [], None
            back_sel = sel[r][src]
            if sel[dst][r] is not None:
                if part is None:  # cannot happen (sel and steps come from the same flags); stay matched
                    part = torch.zeros_like(kv)
                ops.append(("send", part, dst, world + t))
            if back_sel is not None:
                buf = torch.empty((back_sel.n,) + tuple(kv_local.shape[1:]), dtype=k.dtype, device=k.device)
                ops.append(("recv", buf, src, world + t))
            works = comm.post(ops)
            # the sent tensor stays referenced until its work completes
            returns.append((buf, back_sel, works, part))
            while len(returns) > 1:
                _add_back(dkv, *returns.pop(0)[:3])
        for b_, s_, w_, _ in returns:
            _add_back(dkv, b_, s_, w_)
        return (dq.to(q.dtype), dkv[:, 0].to(k.dtype), dkv[:, 1].to(v.dtype)) + (None,) * 11


def _add_back(dkv, buf, sel, works):
    """Wait for a partial dK/dV coming back and add it to this rank's rows."""
    _wait(works)
    if buf is None:
        return
    if sel.rows is None:
        dkv += buf.float()
    else:
        dkv.index_add_(0, sel.rows, buf.float())


def _fwd_op(kind, q, k, v, st, bq, bk, sm_scale):
    ops = torch.ops.seer_attn
    if kind == "2d":
        return ops.block_sparse_2d_fwd(q, k, v, st.cu_q, st.cu_k, st.max_q, st.max_k, st.mask, bq, bk,
                                       sm_scale, st.causal, False)
    return ops.block_sparse_1d_fwd(q, k, v, st.cu_q, st.cu_k, st.max_q, st.max_k, st.mask, bk, sm_scale,
                                   st.causal, False)


def _bwd_op(kind, dout, q, k, v, out, lse, dlse, st, bq, bk, sm_scale):
    ops = torch.ops.seer_attn
    if kind == "2d":
        return ops.block_sparse_2d_bwd(dout, q, k, v, out, lse, dlse, st.cu_q, st.cu_k, st.max_q, st.max_k,
                                       st.mask, bq, bk, sm_scale, st.causal, False)
    return ops.block_sparse_1d_bwd(dout, q, k, v, out, lse, dlse, st.cu_q, st.cu_k, st.max_q, st.max_k,
                                   st.mask, bk, sm_scale, st.causal, False)


def _validate(op, kind, q, k, v, mask, cu_q, cu_k, max_q, max_k, bq, bk, causal, unit, lay_q, lay_k, rank):
    """Replicated checks (same verdict on every rank) first, then the local shard shapes."""
    name = f"seer_attn.distributed.{op}"
    if unit % bk or (kind == "2d" and unit % bq):
        bad = f"block_size_q ({bq}) and block_size_k ({bk})" if kind == "2d" else f"block_size_k ({bk})"
        lcm = bk * bq // math.gcd(bq, bk) if kind == "2d" else bk
        return (f"{name}: {bad} must divide the chunk unit, got unit={unit}: pass unit={lcm} (or a multiple) "
                f"to shard, unshard and this function")
    if len(cu_q) != len(cu_k):
        return f"{name}: cu_seqlens_k must have as many entries as cu_seqlens_q ({len(cu_q)}), got {len(cu_k)}"
    n_seq = len(cu_q) - 1
    lq = [cu_q[b + 1] - cu_q[b] for b in range(n_seq)]
    lk = [cu_k[b + 1] - cu_k[b] for b in range(n_seq)]
    if causal and lq != lk:
        return (f"{name}: causal attention needs seqlen_q == seqlen_k for every sequence, got seqlens_q "
                f"{lq[:8]} and seqlens_k {lk[:8]}")
    if lq and (max(lq) > max_q or max(lk) > max_k):
        return (f"{name}: max_seqlen_q / max_seqlen_k must bound the sequence lengths ({max(lq)}, {max(lk)}), "
                f"got {max_q}, {max_k}")
    if mask.dim() != 4:
        return f"{name}: block_mask must be 4-D [B, H_mask, rows, key_blocks], got shape {tuple(mask.shape)}"
    need_rows = _cdiv(max_q, bq) if kind == "2d" else max_q
    want = (n_seq, None, need_rows, _cdiv(max_k, bk))
    if (mask.shape[0] != n_seq or mask.shape[2] < need_rows or mask.shape[3] < want[3]
            or mask.shape[1] not in (q.shape[1] if q.dim() == 3 else -1, k.shape[1] if k.dim() == 3 else -1, 1)):
        rows = "ceil(max_seqlen_q/block_size_q)" if kind == "2d" else "max_seqlen_q"
        return (f"{name}: block_mask must be the global mask [B={n_seq}, H_q|H_kv|1, >= {rows} ({need_rows}), "
                f">= ceil(max_seqlen_k/block_size_k) ({want[3]})], got shape {tuple(mask.shape)}")
    if q.dim() != 3 or k.dim() != 3 or v.shape != k.shape:
        return f"{name}: q must be [T_q_local, H_q, D] and k, v [T_k_local, H_kv, D], got {tuple(q.shape)}, " \
               f"{tuple(k.shape)}, {tuple(v.shape)}"
    if q.shape[0] != lay_q.total[rank] or k.shape[0] != lay_k.total[rank]:
        return (f"{name}: q and k/v must be this rank's shard (shard(x, cu_seqlens, unit={unit})): rank {rank} "
                f"expects {lay_q.total[rank]} query and {lay_k.total[rank]} key rows, got {q.shape[0]} and {k.shape[0]}")
    return None


def _attn_cp(op, kind, q, k, v, block_mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, bq, bk,
             sm_scale, causal, group, return_lse, unit):
    _check_unit(op, unit)
    rank, world = _group_info(group)
    cu_q = _host_cu(cu_seqlens_q, op, "cu_seqlens_q")
    cu_k = _host_cu(cu_seqlens_k, op, "cu_seqlens_k")
    lay_q, lay_k = _Layout(cu_q, world, unit), _Layout(cu_k, world, unit)
    err = _validate(op, kind, q, k, v, block_mask, cu_q, cu_k, int(max_seqlen_q), int(max_seqlen_k), bq, bk,
                    causal, unit, lay_q, lay_k, rank)
    _agree(op, err, group, _device_for(group, q.device))
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(q.shape[-1])
    flags = _chunk_flags(block_mask, kind, lay_q, lay_k, bq, bk)

    # sel[s][rr]: what rank rr receives of rank s's shard (only the chunks it keeps; None: nothing)
    chunks = _chunks_needed(flags, world, causal)
    sel = [[_select(lay_k, s, chunks[s][rr], q.device) for rr in range(world)] for s in range(world)]
    local = _Sel(lay_k.seg[rank], lay_k.total[rank], None)
    steps = []
    for t in range(world):
        s = (rank - t) % world
        ksel = local if t == 0 else sel[s][rank]
        steps.append(None if ksel is None else
                     _plan_step(rank, s, kind, causal, lay_q, lay_k, flags, block_mask, bq, bk, q.device, ksel))
    comm = _Comm(group, rank, world)
    out, lse = _RingAttn.apply(q, k, v, block_mask, kind, causal, bq, bk, float(sm_scale), lay_q, lay_k, comm,
                               steps, sel)
    return (out, lse) if return_lse else out


def block_sparse_attn_2d_cp(q, k, v, block_mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *,
                            block_size_q=64, block_size_k=64, sm_scale=None, causal=True, group=None,
                            return_lse=False, unit: int = DEFAULT_UNIT):
    """Context-parallel ``seer_attn.block_sparse_attn_2d``. q, k, v: this rank's ``shard(...)`` of the
    packed tensors; block_mask, cu_seqlens_*, max_seqlen_*: the global (replicated) ones. Returns this
    rank's shard of ``out`` (and of ``lse`` ``[H_q, T_local]``); ``unshard`` gives the single-device
    result. Differentiable in q, k, v (and through lse). A collective: every rank of `group` must call it."""
    return _attn_cp("block_sparse_attn_2d_cp", "2d", q, k, v, block_mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                    max_seqlen_k, int(block_size_q), int(block_size_k), sm_scale, causal, group, return_lse, unit)


def block_sparse_attn_1d_cp(q, k, v, block_mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *,
                            block_size_k=64, sm_scale=None, causal=True, group=None, return_lse=False,
                            unit: int = DEFAULT_UNIT):
    """Context-parallel ``seer_attn.block_sparse_attn_1d`` (1D per-token mask
    ``[B, H_mask, >= max_seqlen_q, >= ceil(max_seqlen_k/B_k)]``, global). See ``block_sparse_attn_2d_cp``."""
    return _attn_cp("block_sparse_attn_1d_cp", "1d", q, k, v, block_mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                    max_seqlen_k, 1, int(block_size_k), sm_scale, causal, group, return_lse, unit)


# ---------------------------------------------------------------------------------------------------
# Two-process example (CPU, gloo): python -m seer_attn.distributed --demo
# ---------------------------------------------------------------------------------------------------
def _demo_body(rank, world):
    """The README example: every rank builds the same global inputs, runs the context-parallel 2D
    attention forward and backward, and compares with the single-process op. Returns the relative
    errors {out, dq, dk, dv}."""
    torch.manual_seed(0)  # every rank builds the same global inputs
    cu = torch.tensor([0, 1000, 1300], dtype=torch.int32)  # two sequences: 1000 and 300 tokens
    q = torch.randn(1300, 8, 64, dtype=torch.bfloat16, requires_grad=True)  # GQA: 8 q heads, 2 kv heads
    k = torch.randn(1300, 2, 64, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1300, 2, 64, dtype=torch.bfloat16, requires_grad=True)
    mask = seer_attn.random_block_mask_2d(cu, 2, 1000, 1000, 64, 64, density=0.3)

    # this rank's shards -> context-parallel attention -> the full output on every rank
    out_local = block_sparse_attn_2d_cp(shard(q, cu), shard(k, cu), shard(v, cu), mask, cu, cu, 1000, 1000)
    out = unshard(out_local, cu)
    out.float().square().sum().backward()  # gradients reach the full q, k, v on every rank

    ref_q, ref_k, ref_v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    ref = seer_attn.block_sparse_attn_2d(ref_q, ref_k, ref_v, mask, cu, cu, 1000, 1000)
    ref.float().square().sum().backward()
    errs = {n: (a.float() - b.float()).abs().max().item() / b.float().abs().max().item()
            for n, a, b in (("out", out, ref), ("dq", q.grad, ref_q.grad), ("dk", k.grad, ref_k.grad),
                            ("dv", v.grad, ref_v.grad))}
    if rank == 0:
        print(f"world size {world}: max |context-parallel - single process| / max |single process|: "
              + ", ".join(f"{n} {e:.2e}" for n, e in errs.items()))
    return errs


def _demo_worker(rank, world, port):
    import datetime
    import os

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    torch.set_num_threads(1)
    _demo_body(rank, world)
    dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo(world_size: int = 2):
    """Spawn `world_size` CPU processes (gloo) running a small context-parallel 2D attention forward
    and backward, and print its difference from the single-process op."""
    import torch.multiprocessing as mp

    mp.spawn(_demo_worker, args=(world_size, free_port()), nprocs=world_size, join=True)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", action="store_true", help="run the two-process CPU (gloo) example")
    ap.add_argument("--world-size", type=int, default=2)
    a = ap.parse_args()
    if not a.demo:
        ap.error("nothing to do: pass --demo")
    demo(a.world_size)
