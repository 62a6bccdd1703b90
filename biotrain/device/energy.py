"""Energy of a step from its activity, and power = energy / time (so power depends on the workload).

    E = t * (P_leak + e_cycle * f)                      static and clock: the cluster is on
      + MACs * e_mac + element ops * e_elem             compute, operands from L1 included
      + L2<->L1 bytes * e_dma_byte + L3<->L2 bytes * e_l3_byte     data movement

Dynamic energies (all but leakage) scale with (V / 0.8 V)^2 from their 0.8 V values, leakage
with V / 0.8 V. A MAC-dense kernel draws more than a step waiting on DMA or L3.
"""

from __future__ import annotations

V_REF = 0.8


def energy_breakdown_mj(activity: dict, latency_s: float, c: dict) -> dict:
    """Energy per step by component, in mJ."""
    v = float(c["voltage_v"]) / V_REF
    dyn = v * v
    pj = 1e-9  # pJ -> mJ
    out = {
        "leakage": float(c["power_leak_mw"]) * v * latency_s,
        "clock": float(c["energy_cycle_pj"]) * dyn * float(c["freq_mhz"]) * 1e6 * latency_s * pj,
        "compute_mac": float(activity["macs"]) * float(c["energy_mac_pj"]) * dyn * pj,
        "compute_elem": float(activity["elem_ops"]) * float(c["energy_elem_pj"]) * dyn * pj,
        "dma_l2_l1": float(activity["l2_l1_bytes"]) * float(c["energy_dma_byte_pj"]) * dyn * pj,
        "l3": float(activity["l3_bytes"]) * float(c["energy_l3_byte_pj"]) * dyn * pj,
    }
    return {k: round(val, 6) for k, val in out.items()}


def power_mw(activity: dict, latency_s: float, c: dict) -> tuple[float, float, dict]:
    """(power in mW, energy per step in mJ, energy breakdown) of a step taking ``latency_s``."""
    parts = energy_breakdown_mj(activity, latency_s, c)
    e = sum(parts.values())
    return (e / latency_s if latency_s > 0 else 0.0), e, parts
