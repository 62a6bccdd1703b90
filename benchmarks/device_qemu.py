"""Measured instructions of the exported step on an emulated RV32 core, beside the cost model.

    python benchmarks/device_qemu.py                     # both models, edge and last_layer, 1 step
    python benchmarks/device_qemu.py --strategies edge full --steps 1 --out /tmp/bt-qemu

Exports the step at the reference shapes (BRIEF section 3), runs it under qemu (retired
instructions per kernel kind, from the guest's instret CSR with -icount), checks it against
PyTorch, and prints the gap9-sim model's cycles per kernel kind for the same step (8 cores) next
to it. Run by hand (minutes per model and strategy); the figures are quoted in docs/device.md.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from biotrain.device import estimate_step
from biotrain.device.export.codegen import report_kind
from biotrain.device.export.project import export_project
from biotrain.device.export.runner import run_project
from biotrain.models import build_model

SHAPES = {"mi_bminet": (8, 1900, 2), "epidenet": (2, 1000, 11)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=sorted(SHAPES))
    ap.add_argument("--strategies", nargs="+", default=["edge", "last_layer"])
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--out", default="/tmp/biotrain-qemu")
    ap.add_argument("--markdown", help="also write the tables to this markdown file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.models:
        for strategy in args.strategies:
            c, t, k = SHAPES[name]
            norm = "group" if strategy == "edge" else "batch"
            torch.manual_seed(0)
            model = build_model(name, c, t, k, norm=norm)
            spec = {"name": name, "n_chans": c, "n_times": t, "n_outputs": k, "norm": norm, "kwargs": {}}
            out = f"{args.out}/{name}_{strategy}"
            t0 = time.perf_counter()
            meta = export_project(out, model, strategy, model_spec=spec, steps=args.steps)
            res = run_project(out, "qemu")
            est = estimate_step(model, strategy, micro_batch=meta["micro_batch"], accum=meta["accum"]).to_dict()
            per_kind = res["instructions_per_step_by_kind"]
            model_kind: dict = {}  # the model's kernel kinds folded as the program counts them
            for kk, cycles in est["cycles_by_kernel"].items():
                model_kind[report_kind(kk)] = model_kind.get(report_kind(kk), 0.0) + cycles
            row = {"model": name, "strategy": strategy, "max_rel_err": res["max_rel_err"],
                   "instructions_per_step": sum(res["instructions_per_step"]) / len(res["instructions_per_step"]),
                   "macs_per_step": est["macs_per_step"], "model_cycles_per_step": est["cycles_per_step"],
                   "by_kind": {kk: {"instructions": per_kind.get(kk, 0.0), "model_cycles": model_kind.get(kk, 0.0)}
                               for kk in sorted(set(per_kind) | set(model_kind))},
                   "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(f"\n{name} / {strategy}: max_rel_err {row['max_rel_err']:.1e}, "
                  f"{row['instructions_per_step'] / 1e6:.1f} M instructions/step on 1 RV32 core "
                  f"({row['instructions_per_step'] / row['macs_per_step']:.1f} per MAC), model "
                  f"{row['model_cycles_per_step'] / 1e6:.1f} M cycles on 8 cores; {row['seconds']} s")
            for kk, v in row["by_kind"].items():
                if v["instructions"] or v["model_cycles"]:
                    ratio = v["instructions"] / v["model_cycles"] if v["model_cycles"] else float("nan")
                    print(f"  {kk:12s} {v['instructions'] / 1e6:10.1f} M instr   {v['model_cycles'] / 1e6:8.2f} M cycles"
                          f"   instr/cycle-of-model {ratio:6.1f}")
    print("\n" + json.dumps(rows))
    if args.markdown:
        write_markdown(rows, args.markdown)


def write_markdown(rows: list[dict], path: str) -> None:
    """The table docs/device.md quotes: instructions on one RV32 core against the model's cycles."""
    import os
    import platform

    lines = [f"# Exported step on qemu (RV32, 1 core) against the gap9-sim model (8 cores)", "",
             f"`python benchmarks/device_qemu.py --markdown {path}`; load average {os.getloadavg()[0]:.1f} "
             f"({platform.machine()}). Instructions are exact counts (qemu -icount), not time.", "",
             "| model | strategy | max rel err | instructions/step | per MAC | model cycles/step (8 cores) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['strategy']} | {r['max_rel_err']:.1e} | {r['instructions_per_step'] / 1e6:.1f} M | "
                     f"{r['instructions_per_step'] / r['macs_per_step']:.1f} | {r['model_cycles_per_step'] / 1e6:.1f} M |")
    lines += ["", "By kernel kind (M instructions / M model cycles):", "",
              "| model | strategy | kind | instructions | model cycles | ratio |", "|---|---|---|---|---|---|"]
    for r in rows:
        for kk, v in r["by_kind"].items():
            if v["instructions"] or v["model_cycles"]:
                ratio = f"{v['instructions'] / v['model_cycles']:.1f}" if v["model_cycles"] else "—"
                lines.append(f"| {r['model']} | {r['strategy']} | {kk} | {v['instructions'] / 1e6:.1f} | "
                             f"{v['model_cycles'] / 1e6:.2f} | {ratio} |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
