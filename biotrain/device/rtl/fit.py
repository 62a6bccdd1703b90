"""The `exported` program's kernel costs, fitted on cycles measured on the CV32E40P RTL.

The exported C step counts cycles per *C kind* (``codegen.KINDS``: conv_fwd, conv_bwd, dw_fwd,
dw_bwd, linear_fwd, linear_bwd, norm_fwd, norm_bwd, elementwise, data). For one exported step,
:func:`step_features` walks the same generated calls the program makes (``StepCodegen`` with a
recorder) and sums, per C kind, the cost model's loop-nest features of the ops behind them
(``Kernel.works``): MACs, element operations, inner loops (``macs_or_elems / inner``) and calls.
Per C kind the RTL's cycles are then

    cycles = MACs * 8 / mac_per_cycle_<k>   (MAC kinds; the cluster figure is 8 x per core)
           + elems * cycles_per_elem_<k>    (element kinds)
           + loops * loop_overhead_cycles_<k>
           + rows * row_overhead_cycles_<k>         (direct convolutions: innermost tap loops)
           + calls * call_cycles_<k>

on one core, the model's compute term (``cost.work_cycles`` with ``n_cores=1``) plus a per-call
cost. :func:`fit_kind` fits the coefficients (non-negative least squares, relative errors) and
:func:`kind_keys` names the ``gap9.yaml`` keys (``programs: exported``) they land in.
:func:`predict_by_kind` is the prediction the RTL is held against (tests/device/test_device_rtl_fit.py).
"""

from __future__ import annotations

import numpy as np

from ..export.codegen import KINDS, StepCodegen

MAC_KINDS = ("conv_fwd", "conv_bwd", "dw_fwd", "dw_bwd", "linear_fwd", "linear_bwd")
ELEM_KINDS = ("norm_fwd", "norm_bwd", "elementwise", "data")
FEATURES = ("macs", "ig_macs", "elems", "loops", "rows", "calls")
# the input gradient's own rate where it differs from the weight gradient's: the convolution's
# (a gather with per-tap index arithmetic); a depthwise backward always has as many input- as
# weight-gradient MACs, so one rate covers both
IG_RATE_KEY = {"conv_bwd": "mac_per_cycle_conv_ig"}

# the exported block's key per C kind and feature; loop and call costs are per kind (measured: they
# differ by an order of magnitude between kinds), the MAC and element rates are the model's own keys
RATE_KEY = {
    "conv_fwd": "mac_per_cycle_conv_fwd", "conv_bwd": "mac_per_cycle_conv_bwd",
    "dw_fwd": "mac_per_cycle_dw_fwd", "dw_bwd": "mac_per_cycle_dw_bwd",
    "linear_fwd": "mac_per_cycle_linear_fwd", "linear_bwd": "mac_per_cycle_linear_bwd",
    "norm_fwd": "cycles_per_elem_norm_fwd", "norm_bwd": "cycles_per_elem_norm_bwd",
    "elementwise": "cycles_per_elem_elementwise", "data": "cycles_per_elem_data",
}


def kind_keys(kind: str) -> dict:
    """{feature: gap9.yaml key} of one C kind."""
    rate = "macs" if kind in MAC_KINDS else "elems"
    out = {rate: RATE_KEY[kind], "loops": f"loop_overhead_cycles_{kind}", "calls": f"call_cycles_{kind}"}
    if kind in ROW_KINDS:
        out["rows"] = f"row_overhead_cycles_{kind}"
    if kind in IG_RATE_KEY:
        out["ig_macs"] = IG_RATE_KEY[kind]
    return out


ROW_KINDS = ("conv_fwd", "conv_bwd")  # direct convolutions with short tap loops (kw = 1, 1x1): nested loops


def fit_features(kind: str) -> tuple[str, ...]:
    if kind in IG_RATE_KEY:
        return ("macs", "ig_macs", "loops", "rows", "calls")
    if kind in ROW_KINDS:
        return ("macs", "loops", "rows", "calls")
    return ("macs" if kind in MAC_KINDS else "elems", "loops", "calls")


class _Recorder(StepCodegen):
    """StepCodegen that records, for every emitted call, its C kind and the loop nests behind it."""

    def __init__(self, graph, plan):
        super().__init__(graph, plan)
        self.calls: list[tuple[str, float, list]] = []  # (C kind, repeat, [(work kind, macs, elems, loops, rows)])
        self._rec, self._outs, self._pi = None, None, 0

    def _phase(self, pi, phase):
        self._pi, self._rec = pi, None
        return super()._phase(pi, phase)

    def _outputs(self, pi, node, rec, env):
        self._outs = super()._outputs(pi, node, rec, env)
        return self._outs

    def _op(self, pi, node, rec, env):
        self._rec, self._outs = rec, None
        try:
            return super()._op(pi, node, rec, env)
        finally:
            self._rec = None

    def emit(self, kind, call, comment=""):
        super().emit(kind, call, comment)
        rep = float(self.program.phases[self._pi].repeat)
        if call.startswith("k_zero_border"):
            outs = self._outs if isinstance(self._outs, (list, tuple)) else [self._outs]
            full = [o.full for o in outs if o is not None and hasattr(o, "full")]
            n = sum(int(f.numel()) for f in full)
            rows = sum(int(f.numel()) // max(1, int(f.shape[-1])) for f in full)
            self.calls.append((kind, rep, [("copy", 0, n, rows, 0)]))
        elif kind == "data":
            spec = self.program.states["x"]
            n = int(np.prod(spec.shape)) if call.startswith("load_x") else int(self.program.micro_batch)
            rows = n // int(spec.shape[-1]) if call.startswith("load_x") else 1
            self.calls.append((kind, rep, [("data", 0, n, max(1, rows), 0)]))
        else:
            works = [(w.kind, int(w.macs), int(w.elems), (w.macs or w.elems) / max(1, int(w.inner)), int(w.rows))
                     for w in self._rec.kernel.works]
            self.calls.append((kind, rep, works))


def step_calls(graph, plan) -> list:
    """Every kernel call of the exported step: (C kind, phase repeat, [(work kind, macs, elems, loops)])."""
    rec = _Recorder(graph, plan)
    rec.generate()
    return rec.calls


def features_of(calls) -> dict:
    """{C kind: {macs, elems, loops, calls}} per step."""
    out = {k: dict.fromkeys(FEATURES, 0.0) for k in KINDS if k != "dma"}  # dma: the L1 stand-in's copies, no kernel
    for kind, rep, works in calls:
        f = out[kind]
        f["calls"] += rep
        for wk, macs, elems, loops, rows in works:
            f["ig_macs" if wk.endswith("_ig") and kind in IG_RATE_KEY else "macs"] += rep * macs
            f["elems"] += rep * elems
            f["loops"] += rep * loops
            f["rows"] += rep * rows
    return out


def step_features(graph, plan) -> dict:
    return features_of(step_calls(graph, plan))


def kind_cycles(kind: str, f: dict, c: dict) -> float:
    """One core's cycles of one C kind from its features and the constants ``c``."""
    keys = kind_keys(kind)
    if kind in MAC_KINDS:
        rate = f["macs"] * 8.0 / float(c[keys["macs"]]) if f["macs"] else 0.0
        if f["ig_macs"]:
            rate += f["ig_macs"] * 8.0 / float(c[keys.get("ig_macs", keys["macs"])])
    else:
        rate = f["elems"] * float(c[keys["elems"]])
    rows = f["rows"] * float(c[keys["rows"]]) if "rows" in keys else 0.0
    return rate + f["loops"] * float(c[keys["loops"]]) + rows + f["calls"] * float(c[keys["calls"]])


def predict_by_kind(features: dict, c: dict) -> dict:
    """{C kind: predicted cycles on one core} with the `exported` constants ``c``."""
    return {k: kind_cycles(k, f, c) for k, f in features.items()}


def predict_shape(graph, plan, c: dict | None = None) -> dict:
    from ..constants import load_constants

    c = c or load_constants(program="exported")
    return predict_by_kind(step_features(graph, plan), c)


def nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares (active set on the few columns here: try every support)."""
    from itertools import combinations

    n = A.shape[1]
    best, best_x = np.inf, np.zeros(n)
    for r in range(1, n + 1):
        for cols in combinations(range(n), r):
            sub = A[:, cols]
            x, *_ = np.linalg.lstsq(sub, b, rcond=None)
            if np.any(x < 0):
                continue
            res = float(np.sum((sub @ x - b) ** 2))
            if res < best:
                best, best_x = res, np.zeros(n)
                best_x[list(cols)] = x
    return best_x


def fit_kind(kind: str, rows: list[dict], cycles: list[float]) -> dict:
    """Coefficients {feature: cycles per unit} of one C kind, fitted on ``rows`` (features per
    shape) against measured ``cycles``; least squares on relative errors, coefficients >= 0."""
    feats = fit_features(kind)
    A = np.array([[r[f] for f in feats] for r in rows], float)
    b = np.array(cycles, float)
    keep = b > 0
    if not keep.any():
        return dict.fromkeys(feats, 0.0)
    w = 1.0 / b[keep]
    x = nnls(A[keep] * w[:, None], b[keep] * w)
    return dict(zip(feats, map(float, x)))


def coefficients_to_constants(kind: str, coef: dict) -> dict:
    """Fitted coefficients of one C kind as gap9.yaml keys (MAC rates as 8-core cluster figures)."""
    keys = kind_keys(kind)
    out = {}
    for feat, v in coef.items():
        if feat in ("macs", "ig_macs"):
            out[keys[feat]] = 8.0 / v if v > 0 else 1e9
        else:
            out[keys[feat]] = v
    return out
