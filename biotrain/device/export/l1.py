"""L1 tiles of one kernel call: which views stay whole in L1, which stream through it tile by tile.

The C program computes every kernel on L1 copies of its operands. A kernel call is one or more
*stages* (a norm's passes; a convolution backward's weight-gradient and input-gradient loops),
each a loop over tiles of the time axis (the last dimension) of its *driver* view. Every view of a
stage maps the driver's tile [w0, w1) to its own window (``same``; ``conv``: the input columns a
convolution reads, halo included; ``convt``: the output-gradient columns an input-gradient tile
reads; ``pool``/``poolt``; ``pad``) or is ``whole``. A view is *resident* (copied into L1 once for
the call, written back at its end) when it is persistent state, at most ``l1_fixed_small_bytes``,
``whole`` in every stage, or overlaps another view of the call; the others *stream*: with more
than one tile, two L1 slots each (double buffering: tile t+1 is fetched into one while tile t is
computed in the other). The number of tiles of a stage is the smallest whose L1 bytes (resident +
slots) fit ``l1_budget_bytes``. The DMA stand-in (``bt_dma``, core 0) moves the windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

ALIGN = 8


@dataclass
class Stage:
    """One loop over tiles: ``call`` has view placeholders ``@i@`` and tile tokens ``$name$``."""

    call: str
    driver: int | None  # view id whose last dimension is tiled; None: one tile, every view whole
    maps: dict = field(default_factory=dict)  # view id -> time map (tuple); absent = whole
    toks: dict = field(default_factory=dict)  # token -> f(t, nt, w0, w1, lo) -> int; lo(view id)
    align: int = 1  # tile width a multiple of this


def window(m, w0: int, w1: int) -> tuple[int, int] | None:
    """The columns [lo, hi) a view reads for the driver's tile [w0, w1); None: the whole view."""
    kind = m[0]
    if kind == "same":
        return w0, w1
    if kind == "conv":  # input columns of output columns [w0, w1)
        _, sw, pw, dw, k, width = m
        return max(0, w0 * sw - pw), max(0, min(width, (w1 - 1) * sw - pw + (k - 1) * dw + 1))
    if kind == "convt":  # output-gradient columns that reach input columns [w0, w1)
        _, sw, pw, dw, k, width = m
        lo = max(0, math.ceil((w0 + pw - (k - 1) * dw) / sw))
        hi = min(width, (w1 - 1 + pw) // sw + 1)
        return min(lo, hi), hi
    if kind == "pool":  # input columns of pooled columns [w0, w1)
        _, sw, k, width = m
        return w0 * sw, min(width, (w1 - 1) * sw + k)
    if kind == "poolt":  # pooled-gradient columns of input columns [w0, w1), windows not overlapping
        _, sw, width = m
        return min(width, w0 // sw), min(width, -(-w1 // sw))
    if kind == "pad":  # source columns of padded columns [w0, w1)
        _, pad, width = m
        lo, hi = min(max(w0 - pad, 0), width), min(max(w1 - pad, 0), width)
        return lo, max(lo, hi)
    raise ValueError(f"unknown time map {m!r}")


def compact(shape, stride, width: int | None = None, samples: int | None = None) -> tuple[list[int], list[int], int]:
    """4-D sizes and strides of a compact L1 copy of a view (broadcast dimensions stay stride 0;
    ``width``/``samples``: room for that many columns / samples); and its element count."""
    d = [1] * (4 - len(shape)) + list(shape)
    s = [0] * (4 - len(stride)) + list(stride)
    if width is not None:
        d[3] = width
    if samples is not None:
        d[0] = samples
    out, n = [0] * 4, 1
    for k in (3, 2, 1, 0):
        if s[k] == 0 and d[k] > 1:
            out[k] = 0
        else:
            out[k] = n
            n *= d[k]
    return d, out, n


@dataclass
class Buf:
    vids: list  # view ids it holds (identical views share one buffer)
    lo: int  # arena element range of the block
    hi: int
    resident: bool
    copy_in: bool
    copy_out: bool
    block: bool = False  # overlapping views: the element range is staged as it is
    off: int = 0  # L1 byte offset (resident) or of slot 0 (streamed)
    cap: int = 0  # bytes of one slot


def _key(t: torch.Tensor):
    return (t.storage_offset(), tuple(t.shape), tuple(t.stride()))


def _range(t: torch.Tensor) -> tuple[int, int]:
    if t.numel() == 0:
        return t.storage_offset(), t.storage_offset()
    lo = t.storage_offset() + sum((n - 1) * s for n, s in zip(t.shape, t.stride()) if s < 0)
    hi = t.storage_offset() + sum((n - 1) * s for n, s in zip(t.shape, t.stride()) if s > 0) + 1
    return lo, hi


def _elems(t: torch.Tensor) -> set:
    return set(t.reshape(-1).tolist()) if t.numel() < 2_000_000 else set(range(*_range(t)))


def plan_buffers(views: list, outputs: set, read: set, stages: list, small_bytes: int,
                 state_elems) -> tuple[list[Buf], dict]:
    """Group the call's views into L1 buffers: identical views share one, overlapping ones form a
    block (resident, staged as their element range). ``outputs``: view ids the kernel writes;
    ``read``: outputs it also reads (an accumulation, a border-only write, running statistics).
    A buffer is copied in unless the kernel only writes it (a block always is: its range has bytes
    no view of it covers); it is written back when the kernel writes it."""
    groups: dict = {}
    for i, t in enumerate(views):
        groups.setdefault(_key(t), []).append(i)
    bufs = [[ids] for ids in groups.values()]
    # merge groups whose elements overlap (a broadcast of an output, an interior and its buffer)
    merged: list = []
    for ids_list in bufs:
        ids = ids_list[0]
        r = _range(views[ids[0]])
        hit = [m for m in merged if m["lo"] < r[1] and r[0] < m["hi"]
               and any(_elems(views[j]) & _elems(views[ids[0]]) for j in m["ids"])]
        if not hit:
            merged.append({"ids": list(ids), "lo": r[0], "hi": r[1], "block": False})
            continue
        m = hit[0]
        for o in hit[1:]:
            m["ids"] += o["ids"]
            m["lo"], m["hi"] = min(m["lo"], o["lo"]), max(m["hi"], o["hi"])
            merged.remove(o)
        m["ids"] += ids
        m["lo"], m["hi"] = min(m["lo"], r[0]), max(m["hi"], r[1])
        m["block"] = True
    out, where = [], {}
    for m in merged:
        ids = m["ids"]
        t = views[ids[0]]
        written = any(i in outputs for i in ids)
        pure_out = not m["block"] and all(i in outputs and i not in read for i in ids)
        maps = [("same",) if i == st.driver else st.maps[i] for st in stages for i in ids
                if st.driver is not None and (i in st.maps or i == st.driver)]
        nbytes = 4 * (m["hi"] - m["lo"]) if m["block"] else 4 * compact(t.shape, t.stride())[2]
        resident = (m["block"] or not maps or all(mp[0] == "whole" for mp in maps) or nbytes <= small_bytes
                    or state_elems(m["lo"], m["hi"]))
        b = Buf(ids, m["lo"], m["hi"], resident, not pure_out, written, m["block"])
        for i in ids:
            where[i] = len(out)
        out.append(b)
    return out, where


def _al(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _batched(stage: Stage, views: list, i: int) -> bool:
    """Whether view i takes the driver's sample block (an activation of the same batch)."""
    d = views[stage.driver]
    t = views[i]
    if i != stage.driver and stage.maps.get(i, ("whole",))[0] == "whole":
        return False
    return t.dim() == 4 and d.dim() == 4 and int(t.shape[0]) == int(d.shape[0]) and t.stride(0) != 0


def tile_stage(stage: Stage, views: list, bufs: list, where: dict, resident_bytes: int, budget: int,
               double_buffer: bool = True):
    """Pick the stage's tiles: the whole batch split along time into the fewest tiles whose
    resident bytes + streamed slots fit the budget; when none does (a wide halo over a batch),
    blocks of fewer samples. Returns (tiles, tile width, samples per tile, slot bytes per
    streamed buffer id, L1 bytes)."""
    if stage.driver is None:
        return 1, None, None, {}, resident_bytes
    d = views[stage.driver]
    W, B = int(d.shape[-1]), (int(d.shape[0]) if d.dim() == 4 else 1)
    streamed = sorted({where[i] for i in stage.maps if not bufs[where[i]].resident}
                      | ({where[stage.driver]} if not bufs[where[stage.driver]].resident else set()))
    best = None
    for spt in sorted({-(-B // nb) for nb in range(1, B + 1)}, reverse=True):
        nb = -(-B // spt)
        for nt in range(1, W + 1):
            tw = -(-W // nt)
            tw = -(-tw // stage.align) * stage.align
            nt_eff = -(-W // tw)
            if best is not None and (nt_eff * nb, spt) == (best[0], best[2]):
                continue
            caps = {}
            for b in streamed:
                i = next(j for j in bufs[b].vids if j == stage.driver or j in stage.maps)
                m = stage.maps[i] if i != stage.driver else ("same",)
                width = max(hi - lo for lo, hi in (window(m, w0, min(W, w0 + tw)) for w0 in range(0, W, tw)))
                t = views[i]
                caps[b] = _al(4 * compact(t.shape, t.stride(), width, spt if _batched(stage, views, i) else None)[2])
            slots = 2 if (nt_eff * nb > 1 and double_buffer) else 1
            total = resident_bytes + slots * sum(caps.values())
            best = (nt_eff * nb, tw, spt, caps, total)
            if total <= budget:
                return best
    return best


def tile_windows(stage: Stage, views: list, nt: int, tw: int, spt: int):
    """Per tile: (w0, w1, {view id: (n0, n1, lo, hi)}): sample blocks outside, time tiles inside."""
    d = views[stage.driver]
    W, B = int(d.shape[-1]), (int(d.shape[0]) if d.dim() == 4 else 1)
    out = []
    for s0 in range(0, B, spt):
        s1 = min(B, s0 + spt)
        for w0 in range(0, W, tw):
            w1 = min(W, w0 + tw)
            wins = {}
            for i in list(stage.maps) + [stage.driver]:
                t = views[i]
                n = (s0, s1) if _batched(stage, views, i) else (0, int(t.shape[0]) if t.dim() == 4 else 1)
                m = ("same",) if i == stage.driver else stage.maps[i]
                tm = (0, int(t.shape[-1]) if t.dim() else 1) if m[0] == "whole" else window(m, w0, w1)
                wins[i] = (*n, *tm)
            out.append((w0, w1, wins))
    return out[:nt] if len(out) >= nt else out
