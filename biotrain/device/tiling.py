"""L1 tiling of one kernel: the tile shape, the number of tiles and the bytes each tile moves.

A kernel's operands are either *resident* in L1 for the whole kernel (weights, norm statistics,
parameter gradients and anything up to ``l1_fixed_small_bytes``) or *streamed*: split along the
time axis (then the batch) into tiles that the cluster DMA brings from L2 and writes back. With
``l1_double_buffer`` two tiles of every streamed operand are in L1 so the DMA of tile i+1 overlaps
the compute of tile i; a single-tile kernel has nothing to overlap. A convolution's input tile
carries a halo of ``kw - 1`` columns, fetched again for every tile. The im2col buffer is built per
tile in L1 (unless the toolchain placement keeps it whole in L2, ``l2_im2col``).

``l1_tiles: executed`` (the exported program's block) costs the tiles that program runs
(``export/l1.py``): split along time only, the whole batch in every tile; no im2col or transpose
scratch (its kernels are direct); and a kernel that needs statistics over the whole time axis
streams its operands once per pass (``PASSES``: a training norm reads x three times, its backward dy
and x twice; a convolution backward reads dy twice, once for the weight gradient and once for the
input gradient), the L1 working set being that of the heaviest pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

STATE_KINDS = ("weights", "frozen_weights", "buffers", "optimizer_state", "accumulated_gradients", "gradients")


# op -> (passes over the streamed inputs, part of the streamed bytes one pass holds in L1)
PASSES = {"native_group_norm": 3, "native_batch_norm": 3, "native_group_norm_backward": 2,
          "native_batch_norm_backward": 2, "convolution_backward": 2}


@dataclass
class TilePlan:
    shape: tuple  # shape of one tile of the kernel's main output
    n_tiles: int
    l1_bytes: int  # L1 working set: resident + (double-buffered) streamed tiles + per-tile scratch
    resident_bytes: int
    l2_l1_bytes: int  # bytes the cluster DMA moves between L2 and L1 over the whole kernel
    l3_bytes: int  # bytes moved between L3 and L2 for operands that live in L3
    transfers: int  # DMA transfers (each pays the setup cost)
    im2col_elems: int  # im2col elements built in L1 over the whole kernel
    double_buffered: bool
    fits: bool


def _operands(graph, rec):
    seen, out = set(), []
    for sid in list(rec.inputs) + list(rec.outputs):
        if sid is None or sid in seen:
            continue
        seen.add(sid)
        s = graph.storages[sid]
        if s.nbytes:
            out.append(s)
    return out


def plan_tile(graph, rec, c: dict) -> TilePlan:
    """Smallest number of tiles whose working set fits the L1 budget."""
    k = rec.kernel
    small = int(c["l1_fixed_small_bytes"])
    budget = int(c["l1_budget_bytes"])
    dbl = 2 if c["l1_double_buffer"] else 1
    l2_scratch = bool(c.get("l2_im2col", False))
    resident, streamed, halo, l3 = 0, [], 0, 0
    for s in _operands(graph, rec):
        if s.level == "L3":
            l3 += s.nbytes
        if s.kind in STATE_KINDS or s.nbytes <= small:
            resident += s.size
        else:
            streamed.append(s)
            if k.kw > 1 and s.sid in rec.inputs and s.shape:  # conv input: a halo of kw-1 columns per tile
                halo = max(halo, s.nbytes // max(1, int(s.shape[-1])) * (k.kw - 1))
    stream = sum(s.size for s in streamed)
    executed = c.get("l1_tiles") == "executed"
    scratch_tile = 0 if (l2_scratch or executed) else 4 * k.im2col_elems  # whole-layer im2col, split with the tiles
    fixed = resident + (0 if (l2_scratch or executed) else 4 * k.transpose_elems)
    # the tiles follow the largest streamed output (else the largest streamed input): a weight
    # gradient's tiles run over its activations, not over the resident gradient
    outs = [s for s in streamed if s.sid in rec.outputs and s.shape]
    ref = max(outs or [s for s in streamed if s.shape], key=lambda s: s.size, default=None)
    shape = tuple(ref.shape) if ref is not None else ()
    b = int(shape[0]) if len(shape) > 1 else 1
    width = int(shape[-1]) if shape else 1
    n_res = len(_operands(graph, rec)) - len(streamed)
    if fixed + stream + scratch_tile <= budget or not streamed:
        return TilePlan(shape, 1, int(fixed + stream + scratch_tile), int(fixed), int(stream + resident), int(l3),
                        n_res + len(streamed), int(k.im2col_elems), False, fixed <= budget)
    if executed:
        return _plan_executed(rec, streamed, shape, width, fixed, stream, halo, resident, l3, n_res, budget, dbl, k)
    s1, h1, c1 = stream / b, halo / b, scratch_tile / b  # per sample
    per_tile = dbl * s1 + c1
    if fixed + per_tile <= budget:  # whole samples per tile: no halo
        spt = max(1, int((budget - fixed) // per_tile))
        n, k_time = math.ceil(b / spt), 1
        l1 = fixed + spt * per_tile
        tshape = (min(spt, b), *shape[1:])
    else:  # split each sample along time, each tile re-fetching the halo
        room = budget - fixed - dbl * h1
        k_time = math.ceil(per_tile / room) if room > 0 else width + 1
        n = b * k_time
        l1 = fixed + dbl * (s1 / k_time + h1) + c1 / k_time
        tshape = (1, *shape[1:-1], math.ceil(width / k_time)) if len(shape) > 1 else (math.ceil(width / k_time),)
    fits = fixed <= budget and k_time <= width
    moved = stream + b * (k_time - 1) * h1 + resident
    return TilePlan(tuple(tshape), int(n), int(math.ceil(l1)), int(fixed), int(moved), int(l3),
                    n_res + len(streamed) * int(n), int(k.im2col_elems), dbl == 2, fits)


def _plan_executed(rec, streamed, shape, width, fixed, stream, halo, resident, l3, n_res, budget, dbl, k) -> TilePlan:
    """The exported program's tiles: time tiles over the whole batch, or, when a wide halo over the
    batch leaves no room, over blocks of fewer samples; a multi-pass kernel streams its inputs once
    per pass (``PASSES``)."""
    passes = PASSES.get(rec.name, 1)
    ins = sum(s.size for s in streamed if s.sid in rec.inputs and s.sid not in rec.outputs)
    b = int(shape[0]) if len(shape) == 4 else 1
    for spt in sorted({math.ceil(b / nb) for nb in range(1, b + 1)}, reverse=True):
        nb = math.ceil(b / spt)
        st, hl = stream * spt / b, halo * spt / b
        room = budget - fixed - dbl * hl
        k_time = max(1, math.ceil(dbl * st / room)) if room > 0 else width + 1
        if k_time <= width:
            break
    fits = fixed <= budget and k_time <= width
    n = nb * k_time
    l1 = fixed + (dbl * (st / k_time + hl) if n > 1 else stream)
    moved = stream + (passes - 1) * ins + nb * (k_time - 1) * hl * passes + resident
    tshape = (spt, *shape[1:-1], math.ceil(width / k_time)) if len(shape) == 4 else tuple(shape)
    return TilePlan(tuple(tshape), int(n), int(math.ceil(l1)), int(fixed), int(moved), int(l3),
                    n_res + len(streamed) * int(n) * passes, int(k.im2col_elems), n > 1 and dbl == 2, fits)
