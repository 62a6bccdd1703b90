"""Calibrate the free constants of gap9.yaml against BRIEF section 5 and print the residuals.

BRIEF gives no efficiency for depthwise direct kernels, which carry >90% of MI-BMINet's MACs, so
one shared factor (mac_per_cycle_dw_fwd = mac_per_cycle_dw_bwd) is fitted so that the MI-BMINet
edge step (C=8, T=1900, batch 8 as 8 x micro-batch 1) takes 469.6 ms at 370 MHz. The power
constant is fitted to 43.8 mW at 0.8 V / 370 MHz in closed form. Every other constant keeps its
published or assumed value. Run by hand:

    python benchmarks/device_calibrate.py
"""

from __future__ import annotations

import torch

from biotrain.device.capture import capture_step
from biotrain.device.constants import load_constants
from biotrain.device.cost import step_cost
from biotrain.device.memory import build_graph
from biotrain.models import build_model

REF_LATENCY_MS = 469.6
REF_POWER_MW = 43.8


def latency_ms(graph, consts: dict) -> float:
    return step_cost(graph, consts).cycles / (consts["freq_mhz"] * 1e3)


def main() -> None:
    torch.set_num_threads(1)
    c = load_constants()
    model = build_model("mi_bminet", 8, 1900, 2, norm="group")
    graph = build_graph(capture_step(model, "edge"))
    lo, hi = 0.05, 8.0  # MAC/cycle bracket
    for _ in range(60):
        mid = (lo + hi) / 2
        lat = latency_ms(graph, {**c, "mac_per_cycle_dw_fwd": mid, "mac_per_cycle_dw_bwd": mid})
        lo, hi = (mid, hi) if lat > REF_LATENCY_MS else (lo, mid)
    k = round((lo + hi) / 2, 3)  # the value written into gap9.yaml (3 decimals)
    fitted = {**c, "mac_per_cycle_dw_fwd": k, "mac_per_cycle_dw_bwd": k}
    lat = latency_ms(graph, fitted)
    p_dyn = (REF_POWER_MW - c["power_static_mw"]) / (c["freq_mhz"] * c["voltage_v"] ** 2)
    p = c["power_static_mw"] + round(p_dyn, 5) * c["freq_mhz"] * c["voltage_v"] ** 2
    print(f"mac_per_cycle_dw_fwd = mac_per_cycle_dw_bwd = {k}  (current gap9.yaml: {c['mac_per_cycle_dw_fwd']})")
    print(f"  edge latency with it: {lat:.2f} ms vs {REF_LATENCY_MS} ms -> residual {100 * (lat / REF_LATENCY_MS - 1):+.3f}%")
    print(f"power_dyn_mw_per_mhz_v2 = {p_dyn:.5f}  (current: {c['power_dyn_mw_per_mhz_v2']})")
    print(f"  power with it: {p:.3f} mW vs {REF_POWER_MW} mW -> residual {100 * (p / REF_POWER_MW - 1):+.3f}%")
    cur = latency_ms(graph, c)
    print(f"with the current gap9.yaml: {cur:.2f} ms ({100 * (cur / REF_LATENCY_MS - 1):+.3f}%)")
    cost = step_cost(graph, fitted)
    macs = cost.macs
    print(f"edge step: {macs / 1e6:.1f} MMAC = {2 * macs / 1e6:.0f} MFLOP (BRIEF: about 417 MFLOP), "
          f"{macs / cost.cycles:.3f} MAC/cycle overall, {2 * macs / (lat / 1e3) / 1e9:.3f} GFLOP/s (BRIEF: 0.89)")


if __name__ == "__main__":
    main()


def joint_fit() -> None:
    """Alternative: fit (depthwise MAC/cycle, per-op overhead) to BOTH throughput figures of BRIEF
    (MI-BMINet 469.6 ms/step, EpiDeNet 85 samples/s), to show what it would take."""
    c = load_constants()
    g_mi = build_graph(capture_step(build_model("mi_bminet", 8, 1900, 2, norm="group"), "edge"))
    g_ep = build_graph(capture_step(build_model("epidenet", 2, 1000, 11, norm="group"), "edge"))
    target_ep_ms = 8 / 85 * 1e3

    def lat(g, k, o):
        return latency_ms(g, {**c, "mac_per_cycle_dw_fwd": k, "mac_per_cycle_dw_bwd": k, "per_op_overhead_cycles": o})

    lo, hi = 0.0, 2e5  # EpiDeNet has no depthwise conv: its latency depends on the overhead only
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if lat(g_ep, 1.0, mid) < target_ep_ms else (lo, mid)
    o = round((lo + hi) / 2)
    lo, hi = 0.05, 50.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if lat(g_mi, mid, o) > REF_LATENCY_MS else (lo, mid)
    k = (lo + hi) / 2
    print(f"joint fit: per_op_overhead_cycles = {o}, mac_per_cycle_dw = {k:.3f} "
          f"(MI-BMINet {lat(g_mi, k, o):.1f} ms, EpiDeNet {8 / lat(g_ep, k, o) * 1e3:.1f} samples/s)")
    # hold-out: a last-layer (classifier-only) update, the op count that BRIEF's EEGNet figure (20 us) bounds
    lp = build_graph(capture_step(build_model("mi_bminet", 8, 1900, 2, norm="batch"), "last_layer"))
    n_cls = sum(1 for r in lp.ops if r.kernel.kind != "free" and r.t > next(
        q.t for q in lp.ops if q.name == "addmm") - 1)
    print(f"  hold-out: a classifier-only update here has {n_cls} kernels -> >= {n_cls * o / 370:.0f} us of overhead "
          f"alone at 370 MHz, vs 20 us for BRIEF's EEGNet last-layer update: the joint fit contradicts it")


if __name__ == "__main__" and "--joint" in __import__("sys").argv:
    joint_fit()
