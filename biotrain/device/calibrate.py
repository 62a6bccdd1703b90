"""Calibration of the free constants of ``gap9.yaml`` against published figures, with leave-one-out.

Each reference point is a published figure and the step (or kernel) the device model builds to
predict it. ``fit`` chooses the free constants that minimise the squared log-ratio error over a
set of points; ``leave_one_out`` predicts every point with constants fitted on the others, which
is the error to expect on a point that was not fitted. Run ``python benchmarks/device_calibrate.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from .capture import capture_step
from .constants import load_constants
from .cost import step_cost, work_cycles
from .energy import power_mw
from .kernels import Work
from .memory import build_graph, plan_memory

# the free constants, their bounds, and the points each group is fitted on
LATENCY_FREE = {"micro_batch_overhead_cycles": (0.0, 2e7)}
POWER_FREE = {"power_activity_ref_mw": (0.0, 100.0)}
PROGRAM = "paper-toolchain"  # the program calibrated on the published figures (gap9.yaml)


@dataclass
class Point:
    name: str
    target: float
    unit: str
    source: str
    group: str  # latency | power | memory | check (memory and check points have no free constant)
    predict: callable = field(repr=False, default=None)


@lru_cache(maxsize=None)
def _graph(case: str, l2_scratch: bool = True):
    from ..models import build_model

    torch.manual_seed(0)
    if case == "eeg_edge":
        m, strat = build_model("mi_bminet", 8, 1900, 2, norm="group", padding="valid"), "edge"
    elif case == "eeg_full":
        m, strat = build_model("mi_bminet", 8, 1900, 2, norm="batch", padding="valid"), "full"
    elif case == "eeg_last_layer":
        m, strat = build_model("mi_bminet", 8, 1900, 2, norm="batch", padding="valid"), "last_layer"
    elif case == "eog_edge":
        m, strat = build_model("epidenet", 2, 1000, 11, norm="group"), "edge"
    else:
        raise ValueError(f"unknown calibration case {case!r}")
    return build_graph(capture_step(m, strat), l2_scratch=l2_scratch)


def _latency_ms(case: str, c: dict) -> float:
    return step_cost(_graph(case, bool(c["l2_im2col"])), c).cycles / (float(c["freq_mhz"]) * 1e3)


def _power(case: str, c: dict) -> float:
    cost = step_cost(_graph(case, bool(c["l2_im2col"])), c)
    lat_s = cost.cycles / (float(c["freq_mhz"]) * 1e6)
    return power_mw(cost.activity, lat_s, c)[0]


def _peak_mb(case: str, c: dict) -> float:
    return plan_memory(_graph(case, bool(c["l2_im2col"])), time_limit_s=20.0).peak / 1e6


def kernel_mac_per_cycle(kind: str, c: dict) -> float:
    """8-core MAC/cycle of one kernel at the assumed benchmark shape (a 3x3 convolution with 16
    input and 16 output channels on a 16x16 output; a 1024 -> 16 linear layer), run from L1."""
    if kind.startswith("conv"):
        macs, par, inner, cols = 16 * 144 * 256, 16, 144, 144 * 256
        key = "conv_fwd" if kind == "conv_fwd" else "conv_wg"
    else:
        macs, par, inner, cols = 16 * 1024, 16, 1024, 0
        key = kind
    cyc = work_cycles(Work(key, macs=macs, par=par, inner=inner), c)[0]
    cyc += cols * float(c["cycles_per_elem_im2col"]) / float(c["n_cores"])
    return macs / cyc


def points() -> list[Point]:
    return [
        Point("EEG edge latency", 469.6, "ms/step", "BRIEF §5 (BioTrain, MI-BMINet C=8 T=1900, 8 x 1)", "latency",
              lambda c: _latency_ms("eeg_edge", c)),
        Point("EOG edge throughput", 85.0, "samples/s", "BRIEF §1 (BioTrain, EpiDeNet C=2 T=1000, 8 x 1)", "latency",
              lambda c: 8e3 / _latency_ms("eog_edge", c)),
        Point("conv forward kernel", 1.50, "MAC/cycle", "BRIEF §5 (PULP-TrainLib, 8 cores, naive)", "latency",
              lambda c: kernel_mac_per_cycle("conv_fwd", c)),
        Point("conv backward kernel", 1.43, "MAC/cycle", "BRIEF §5 (PULP-TrainLib, 8 cores, naive)", "latency",
              lambda c: kernel_mac_per_cycle("conv_bwd", c)),
        Point("linear forward kernel", 1.56, "MAC/cycle", "BRIEF §5 (PULP-TrainLib, 8 cores, naive)", "latency",
              lambda c: kernel_mac_per_cycle("linear_fwd", c)),
        Point("linear backward kernel", 1.54, "MAC/cycle", "BRIEF §5 (PULP-TrainLib, 8 cores, naive)", "latency",
              lambda c: kernel_mac_per_cycle("linear_bwd", c)),
        Point("EEG edge power", 43.8, "mW", "BRIEF §5 (BioTrain)", "power", lambda c: _power("eeg_edge", c)),
        Point("EEG last-layer power", 1.0 / 21.6e-3, "mW", "BRIEF §5 (GAP9 last-layer update, 1 mJ / 21.6 ms; "
              "int8 backbone there, fp32 here: a check, not fitted)", "check", lambda c: _power("eeg_last_layer", c)),
        Point("EEG edge peak L2", 0.67, "MB", "BRIEF §5 (BioTrain)", "memory", lambda c: _peak_mb("eeg_edge", c)),
        Point("EEG full peak L2", 5.36, "MB", "BRIEF §5 (BioTrain)", "memory", lambda c: _peak_mb("eeg_full", c)),
    ]


def _residuals(pts: list[Point], c: dict) -> np.ndarray:
    return np.array([math.log(p.predict(c) / p.target) for p in pts])


def fit(pts: list[Point], base: dict | None = None) -> dict:
    """Free constants fitted on ``pts`` (least squares on log ratios); others keep their value."""
    from scipy.optimize import least_squares

    c = dict(base or load_constants(program=PROGRAM))
    for group, free in (("latency", LATENCY_FREE), ("power", POWER_FREE)):
        sub = [p for p in pts if p.group == group]
        if not sub:
            continue
        keys = list(free)
        lo = np.array([free[k][0] for k in keys])
        hi = np.array([free[k][1] for k in keys])
        x0 = np.clip(np.array([float(c[k]) for k in keys]), lo + 1e-9, hi - 1e-9)
        scale = np.maximum(hi / 10, 1.0)

        def f(x):
            return _residuals(sub, {**c, **dict(zip(keys, x * scale))})

        if len(keys) == 1:  # one free constant: a grid over the bounds, then a bounded search around its best
            from scipy.optimize import minimize_scalar

            def sq(x):
                return float(np.sum(f(np.array([x])) ** 2))

            # the bounded power model is flat outside its band: a grid finds the basin a local search would miss
            grid = np.linspace(lo[0] / scale[0], hi[0] / scale[0], 41)
            i = int(np.argmin([sq(x) for x in grid]))
            a, b = grid[max(0, i - 1)], grid[min(len(grid) - 1, i + 1)]
            r = minimize_scalar(sq, bounds=(a, b), method="bounded", options={"xatol": 1e-6})
            c[keys[0]] = float((r.x if r.fun <= sq(grid[i]) else grid[i]) * scale[0])
            continue

        # a coarse start over the bounds, then a local least-squares refinement
        starts = [x0 / scale] + [lo / scale + (hi - lo) / scale * q for q in (0.01, 0.1, 0.3)]
        best = min((least_squares(f, s, bounds=(lo / scale, hi / scale), diff_step=1e-3) for s in starts),
                   key=lambda r: r.cost)
        c.update({k: float(v) for k, v in zip(keys, best.x * scale)})
    return c


def leave_one_out(pts: list[Point] | None = None) -> list[dict]:
    """Each point predicted with the constants fitted on all the others (memory and check points: no
    fit; a fitted point that is the only one of its group has no leave-one-out prediction: None)."""
    pts = pts or points()
    full = fit(pts)
    rows = []
    for i, p in enumerate(pts):
        others = pts[:i] + pts[i + 1:]
        c = fit(others) if p.group not in ("memory", "check") else full
        alone = p.group in ("latency", "power") and not any(o.group == p.group for o in others)
        pred_in = p.predict(full)
        pred_out = None if alone else p.predict(c)
        rows.append({"point": p.name, "target": p.target, "unit": p.unit, "source": p.source, "group": p.group,
                     "fitted_all": pred_in, "residual_all": pred_in / p.target - 1,
                     "loo_prediction": pred_out, "loo_residual": None if alone else pred_out / p.target - 1,
                     "constants_without": {k: round(c[k], 3) for k in (*LATENCY_FREE, *POWER_FREE)}})
    return rows
