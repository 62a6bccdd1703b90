"""The exported step on 8 emulated cores with its L1 tiles, at the reference shapes: balance and L1.

    python benchmarks/device_cores.py                               # both models, edge/full/last_layer
    python benchmarks/device_cores.py --models mi_bminet --strategies edge --cores 8 --name device_cores

Exports one step of each model and strategy at the reference shapes (BRIEF section 3; edge is
micro-batch 1 x 8 accumulated, full batch 8), runs it on ``qemu-system-riscv32 -smp N`` with L1
tiling on, checks it against PyTorch, and reports the L1 region the program ran in (and the highest
byte its DMA stand-in reached) against ``l1_budget_bytes``, and, for ``--balance`` strategies (edge
by default), every core's instructions per kernel kind from one solo run per core and the balance
(busiest core / mean) of each kind carrying more than 5% of the step. Writes
``benchmarks/results/<name>.md``. Run by hand: minutes (not in CI).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from biotrain.device.export.project import export_project
from biotrain.device.export.runner import run_project
from biotrain.models import build_model

SHAPES = {"mi_bminet": (8, 1900, 2), "epidenet": (2, 1000, 11)}
SHARE = 0.05  # kinds carrying more than this part of the step are held to the balance target
TARGET = 1.25


def run_one(name: str, strategy: str, cores: int, balance: bool, out: Path) -> dict:
    """Export and run one model/strategy; the figures of its row."""
    c, t, k = SHAPES[name]
    norm = "group" if strategy == "edge" else "batch"
    torch.manual_seed(0)
    model = build_model(name, c, t, k, norm=norm)
    spec = {"name": name, "n_chans": c, "n_times": t, "n_outputs": k, "norm": norm, "kwargs": {}}
    t0 = time.perf_counter()
    meta = export_project(out / f"{name}_{strategy}", model, strategy, model_spec=spec, steps=1)
    res = run_project(out / f"{name}_{strategy}", "qemu", cores=cores, per_core=balance)
    heavy = {kk: b for kk, b in (res["core_balance"] or {}).items() if res["kind_share"][kk] > SHARE}
    return {"model": name, "strategy": strategy, "ok": res["ok"], "max_rel_err": res["max_rel_err"],
            "l1_bytes": res["l1_bytes"], "l1_touched": res["l1_touched_bytes"], "budget": res["l1_budget_bytes"],
            "tiled_calls": meta["l1"]["tiled_calls"], "calls": meta["l1"]["calls"],
            "max_tiles": meta["l1"]["max_tiles"], "dma_bytes": res["dma_bytes_per_step"],
            "instructions": res["instructions_per_step"][0], "balance": res["core_balance"],
            "share": res["kind_share"], "heavy": heavy, "per_core": res["per_core_instructions"],
            "seconds": round(time.perf_counter() - t0, 1)}


def markdown(rows: list, cores: int, load: tuple, wall: float) -> str:
    lines = [f"# The exported step on {cores} emulated cores with L1 tiles (reference shapes)", "",
             "`python benchmarks/device_cores.py` (qemu-system-riscv32 -smp N, -icount shift=0, one step; "
             "L1 tiling on; per-core counts from one solo run per core).", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average before "
             f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; total {wall:.0f} s.", "",
             "## L1: the region the program ran in, against the budget", "",
             "| model | strategy | equal to PyTorch | max rel err | L1 bytes | highest byte reached | budget | "
             "tiled calls | most tiles | DMA bytes / step | s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['strategy']} | {'yes' if r['ok'] else 'NO'} | {r['max_rel_err']:.1e} | "
                     f"{r['l1_bytes']} | {r['l1_touched']} | {r['budget']} | {r['tiled_calls']} / {r['calls']} | "
                     f"{r['max_tiles']} | {r['dma_bytes']:.0f} | {r['seconds']} |")
    for r in rows:
        if not r["balance"]:
            continue
        lines += ["", f"## Balance, {r['model']} {r['strategy']}: busiest core / mean, per kernel kind", "",
                  "| kind | share of the step | busiest / mean | held to <= 1.25 |", "|---|---|---|---|"]
        for kk, b in sorted(r["balance"].items(), key=lambda kv: -r["share"][kv[0]]):
            held = r["share"][kk] > SHARE
            lines.append(f"| {kk} | {r['share'][kk]:.1%} | {b:.3f} | "
                         f"{('yes: ' + ('met' if b <= TARGET else 'MISSED')) if held else 'no'} |")
        waits = [int(row["barrier_wait"]) for row in r["per_core"]]
        dma = [int(row.get("dma", 0)) for row in r["per_core"]]
        lines += ["", f"Barrier waits per core (instructions the core idles while the busiest finishes, per step): "
                      f"{waits}; DMA stand-in (core 0 only): {dma[0]} instructions."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=sorted(SHAPES))
    ap.add_argument("--strategies", nargs="+", default=["edge", "full", "last_layer"])
    ap.add_argument("--balance", nargs="+", default=["edge"], help="strategies whose per-core counts are measured")
    ap.add_argument("--cores", type=int, default=8)
    ap.add_argument("--out", default="/tmp/biotrain-cores")
    ap.add_argument("--name", default="device_cores")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load, t0, rows = os.getloadavg(), time.perf_counter(), []
    for name in args.models:
        for strategy in args.strategies:
            rows.append(run_one(name, strategy, args.cores, strategy in args.balance, Path(args.out)))
            print(rows[-1]["model"], rows[-1]["strategy"], rows[-1]["ok"], rows[-1]["l1_bytes"], rows[-1]["heavy"],
                  rows[-1]["seconds"], flush=True)
    text = markdown(rows, args.cores, load, time.perf_counter() - t0)
    path = Path(__file__).parent / "results" / f"{args.name}.md"
    path.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
