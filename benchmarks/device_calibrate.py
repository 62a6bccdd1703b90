"""Fit the free constants of gap9.yaml and print the leave-one-out table of docs/device.md (run by hand).

    python benchmarks/device_calibrate.py

Every reference point is predicted once with the constants fitted on all points and once with the
constants fitted without it (leave-one-out). Points outside the calibration set (published
figures whose settings the model cannot reproduce) are printed after it, with the reason.
"""

from __future__ import annotations

import torch

from biotrain.device import calibrate as cal
from biotrain.device import estimate_step
from biotrain.device.constants import load_constants
from biotrain.device.refnets import DSCNN, ResNet8


def main() -> None:
    torch.set_num_threads(1)
    pts = cal.points()
    full = cal.fit(pts)
    cur = load_constants()
    print("fitted on all points (gap9.yaml holds these, rounded):")
    for k in (*cal.LATENCY_FREE, *cal.POWER_FREE):
        print(f"  {k} = {full[k]:.4g}   (gap9.yaml: {cur[k]})")
    print(f"\n| point | published | source | fitted on all | residual | leave-one-out prediction | LOO residual |")
    print("|---|---|---|---|---|---|---|")
    for r in cal.leave_one_out(pts):
        loo = ("(only point of its group) | —" if r["loo_prediction"] is None else
               f"{r['loo_prediction']:.4g} | {100 * r['loo_residual']:+.1f}%")
        print(f"| {r['point']} | {r['target']:.4g} {r['unit']} | {r['source']} | {r['fitted_all']:.4g} | "
              f"{100 * r['residual_all']:+.1f}% | {loo} |")

    print("\nout of the calibration set (settings not reproducible here; see docs/device.md):")
    for net, pub in ((ResNet8(), 3.11), (DSCNN(), 0.81)):
        est = estimate_step(net, "full", batch_size=1, check=False)
        mpc = est.macs_per_step / est.cycles_per_step
        print(f"  {type(net).__name__}: full fp32 step of one sample, {est.macs_per_step / 1e6:.1f} MMAC, "
              f"{mpc:.2f} MAC/cycle (published {pub}, fp16 SIMD), {est.cycles_per_step / 370e3:.1f} ms at 370 MHz, "
              f"peak L2 {est.peak_l2_bytes / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
