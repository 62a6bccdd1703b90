"""Power of a training step, no more confident than its evidence, and energy = power x time.

Cycle counts give no milliwatts. What sets GAP9's power while it trains is the published figures
(BRIEF §5): 43.8 mW (MI-BMINet edge, fp32), 46.3 mW (MI-BMINet last layer, int8 backbone: 1 mJ
in 21.6 ms) and 41.5 mW (EEGNet last layer: 0.83 uJ in 20 us). Across two models, two strategies
and two precisions they lie within +-5.5 % of their mean. So:

    baseline  P0 = P_leak * (V/0.8) + (P_train - P_leak) * (V/0.8)^2 * (f/370)     the cluster training
    activity  A  = (MACs*e_mac + elem ops*e_elem + L2<->L1 bytes*e_dma + L3 bytes*e_l3) / t * (V/0.8)^2
    power     P  = P0 + clip(A - A_ref * (V/0.8)^2 * (f/370), -s*P0, +s*P0)
    band      [P0 * (1 - s), P0 * (1 + s)]  = power_mw_low, power_mw_high

``P_train`` (``power_train_mw``) and the spread ``s`` (``power_spread``) are the published figures;
the activity model (assumed per-operation energies, one reference ``A_ref`` fitted on the two power
points with a model) only says where inside the band a step sits. Energy per step = P x t, its
bounds the band x t.
"""

from __future__ import annotations

V_REF = 0.8
F_REF_MHZ = 370.0


def _scales(c: dict) -> tuple[float, float, float]:
    """(V / 0.8 V, (V / 0.8 V)^2, f / 370 MHz): the published powers' operating point is the reference."""
    v = float(c["voltage_v"]) / V_REF
    return v, v * v, float(c["freq_mhz"]) / F_REF_MHZ


def activity_mw(activity: dict, latency_s: float, c: dict) -> float:
    """The activity model's dynamic power (MACs, element ops, DMA and L3 bytes per second), in mW."""
    if latency_s <= 0:
        return 0.0
    _, dyn, _ = _scales(c)
    pj = (float(activity["macs"]) * float(c["energy_mac_pj"]) + float(activity["elem_ops"]) * float(c["energy_elem_pj"])
          + float(activity["l2_l1_bytes"]) * float(c["energy_dma_byte_pj"])
          + float(activity["l3_bytes"]) * float(c["energy_l3_byte_pj"]))
    return pj * dyn * 1e-9 / latency_s  # pJ -> mJ, per second -> mW


def power_model(activity: dict, latency_s: float, c: dict) -> dict:
    """Power of a step with its band: baseline, activity, the bounded shift, point, low and high (mW)."""
    v, dyn, fr = _scales(c)
    leak = float(c["power_leak_mw"]) * v
    base = leak + (float(c["power_train_mw"]) - float(c["power_leak_mw"])) * dyn * fr
    spread = float(c["power_spread"]) * base
    act = activity_mw(activity, latency_s, c)
    ref = float(c["power_activity_ref_mw"]) * dyn * fr
    shift = min(max(act - ref, -spread), spread)
    return {"baseline_mw": base, "leakage_mw": leak, "activity_mw": act, "activity_ref_mw": ref,
            "shift_mw": shift, "bounded": abs(act - ref) > spread,
            "power_mw": base + shift, "power_mw_low": base - spread, "power_mw_high": base + spread}


def energy_breakdown_mj(activity: dict, latency_s: float, c: dict) -> dict:
    """Energy per step by part, in mJ: leakage, the rest of the published baseline, the bounded activity shift."""
    pm = power_model(activity, latency_s, c)
    out = {"leakage": pm["leakage_mw"] * latency_s,
           "cluster_active": (pm["baseline_mw"] - pm["leakage_mw"]) * latency_s,
           "activity_shift": pm["shift_mw"] * latency_s}
    return {k: round(val, 6) for k, val in out.items()}


def power_mw(activity: dict, latency_s: float, c: dict) -> tuple[float, float, dict]:
    """(power in mW, energy per step in mJ, energy breakdown) of a step taking ``latency_s``."""
    pm = power_model(activity, latency_s, c)
    return pm["power_mw"], pm["power_mw"] * latency_s, energy_breakdown_mj(activity, latency_s, c)
