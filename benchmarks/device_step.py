"""One training step on 8 cores at 370 MHz, in cycles measured on the CV32E40P RTL, beside BioTrain's.

    python benchmarks/device_step.py                 # the table, and benchmarks/results/device_step.md
    python benchmarks/device_step.py --json          # a list of rows (model, strategy, cycles_per_step, samples_per_s, ...)
    python benchmarks/device_step.py --models epidenet --strategies edge --jobs 2

Each model and strategy is exported at the reference shape (BRIEF section 3; ``edge``: micro-batch 1 x
8 accumulated, ``full``: batch 8), with the L1 tiles on and 8 cores. Every core's share of the step is
run alone on the RTL (a ``SOLO`` build: the core id compiled in, the barriers out), which records the
cycles of every kernel call. The 8-core step is then, call by call, the slowest core's cycles (the
barrier releases all the cores together) plus ``barrier_cycles``; the calls in which core 0 plays the
DMA engine are replaced by the cluster DMA: ``dma_setup_cycles`` per copy plus the bytes at
``dma_bytes_per_cycle`` (gap9.yaml), not overlapped with compute (the program's copies are
synchronous): an upper bound on what the DMA adds. Nothing comes from instruction counts.

A step of MI-BMINet at T = 1900 is about a billion simulated cycles, so it is measured at two shorter
inputs and every term (each kernel kind's cycles, the barriers, the DMA bytes and copies) is
extrapolated linearly in T: at fixed channels every kernel's work is linear in T (the update's is
constant, which the intercept carries); the DMA copies and bytes are the program's own counts at
the reference shape (qemu). A check fits the two shortest inputs and predicts the longest. EpiDeNet
is measured at its reference shape directly. Run by hand: about 15 minutes on 2 cores (not in CI).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from biotrain.device.constants import load_constants
from biotrain.device.estimate import estimate_step
from biotrain.device.export.codegen import KINDS
from biotrain.device.export.project import export_project
from biotrain.device.export.runner import build, execute, missing_tools, read_profile, read_trace, run_project
from biotrain.models import build_model

CORES = 8
RESULTS = Path(__file__).parent / "results"
# model: (channels, reference T, classes), the BioTrain figure (samples/s) per strategy, and the
# shorter inputs simulated (None: the reference T itself), shortest first: the step is extrapolated
# from the first and the last; the last is also predicted from the first two (the check)
MODELS = {
    "mi_bminet": {"shape": (8, 1900, 2), "paper": {"edge": 17.0}, "sim_t": (128, 192, 256)},
    "epidenet": {"shape": (2, 1000, 11), "paper": {"edge": 85.0}, "sim_t": None},
}


def _model(name: str, t: int, strategy: str):
    c, _, k = MODELS[name]["shape"]
    norm = "group" if strategy == "edge" else "batch"
    torch.manual_seed(0)
    return build_model(name, c, t, k, norm=norm), {"name": name, "n_chans": c, "n_times": t, "n_outputs": k,
                                                    "norm": norm, "kwargs": {}}


def _solo(project: Path, core: int) -> tuple[dict, tuple]:
    """Core ``core``'s share of the 8-core program alone on the RTL, in a copy of the project (the
    runs write their outputs into the project directory): its profile and its call trace."""
    with tempfile.TemporaryDirectory(prefix=f"solo{core}-") as tmp:
        p = Path(tmp) / "p"
        shutil.copytree(project, p, ignore=shutil.ignore_patterns("build"))
        build(p, "rtl", CORES, solo=core)
        execute(p, "rtl", cores=CORES, solo=core)
        return read_profile(p / "profile.bin", list(KINDS)), read_trace(p / "trace.bin")


def measure(name: str, strategy: str, t: int, jobs: int) -> dict:
    """The 8-core step at input length ``t``, term by term (cycles per step, one step)."""
    model, spec = _model(name, t, strategy)
    with tempfile.TemporaryDirectory(prefix="device-step-") as tmp:
        project = Path(tmp) / f"{name}_{strategy}_t{t}"
        export_project(project, model, strategy, model_spec=spec, steps=1)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            runs = list(ex.map(lambda k: _solo(project, k), range(CORES)))
        wall = time.perf_counter() - t0
    kinds = [np.asarray(tr[0]) for _, tr in runs]
    if any(not np.array_equal(kinds[0], k) for k in kinds[1:]):
        raise RuntimeError(f"{name} {strategy} T={t}: the cores' solo runs made different kernel calls")
    slowest = np.max(np.stack([tr[1] for _, tr in runs]), axis=0)  # per call: the core the barrier waits for
    dma = KINDS.index("dma")
    by_kind = {k: int(slowest[kinds[0] == i].sum()) for i, k in enumerate(KINDS) if k != "dma"}
    l1 = runs[0][0]["l1"]  # core 0 is the one that copies
    return {"t": t, "kernel_cycles": by_kind, "calls": int(len(slowest)), "dma_calls": int((kinds[0] == dma).sum()),
            "dma_bytes": int(l1["dma_bytes"]), "dma_copies": int(l1["dma_copies"]),
            "core0_dma_cycles": int(slowest[kinds[0] == dma].sum()), "sim_wall_s": round(wall, 1)}


def terms(m: dict, c: dict) -> dict:
    """Cycles of the step by part: the kernels (slowest core per call), the barriers, the DMA."""
    kernels = sum(m["kernel_cycles"].values())
    barriers = m["calls"] * float(c["barrier_cycles"])
    dma = m["dma_copies"] * float(c["dma_setup_cycles"]) + m["dma_bytes"] / float(c["dma_bytes_per_cycle"])
    return {"kernels": kernels, "barriers": barriers, "dma": dma, "total": kernels + barriers + dma}


def _flat(m: dict) -> dict:
    return {**{f"k:{k}": v for k, v in m["kernel_cycles"].items()},
            **{k: m[k] for k in ("calls", "dma_bytes", "dma_copies")}}


def extrapolate(a: dict, b: dict, t: int) -> dict:
    """Every term of a measurement, linear in T through measurements ``a`` and ``b``, at ``t``."""
    fa, fb = _flat(a), _flat(b)
    out = {k: fa[k] + (fb[k] - fa[k]) * (t - a["t"]) / (b["t"] - a["t"]) for k in fa}
    return {"t": t, "kernel_cycles": {k[2:]: v for k, v in out.items() if k.startswith("k:")},
            **{k: out[k] for k in ("calls", "dma_bytes", "dma_copies")}}


def dma_at(name: str, strategy: str, t: int) -> dict:
    """The DMA copies and bytes of the step at input length ``t``, counted by the program itself
    on qemu (one core; counts, not time): the L1 plan's tiles at the real shape, not extrapolated."""
    model, spec = _model(name, t, strategy)
    with tempfile.TemporaryDirectory(prefix="device-step-dma-") as tmp:
        export_project(Path(tmp) / "p", model, strategy, model_spec=spec, steps=1)
        res = run_project(Path(tmp) / "p", "qemu", per_core=False)
    if not res["ok"]:
        raise RuntimeError(f"{name} {strategy} T={t}: the program does not match PyTorch on qemu")
    return {"dma_bytes": int(res["dma_bytes_per_step"]), "dma_copies": int(res["dma_copies_per_step"])}


def row(name: str, strategy: str, jobs: int, cache: dict) -> dict:
    """``cache``: earlier measurements by (model, strategy, T), reused instead of simulating again."""
    cfg = MODELS[name]
    c = load_constants(program="exported")
    f = float(c["freq_mhz"]) * 1e6
    _, t_ref, _ = cfg["shape"]
    model, _ = _model(name, t_ref, strategy)
    est = estimate_step(model, strategy, batch_size=8, program="exported", check=False)

    def get(t):
        return cache.get((name, strategy, t)) or measure(name, strategy, t, jobs)

    if cfg["sim_t"]:
        measured = [get(t) for t in cfg["sim_t"]]
        first, mid, last = measured[0], measured[-2], measured[-1]
        pred = terms(extrapolate(first, mid, last["t"]), c)["total"]
        check = {"fit_t": [first["t"], mid["t"]], "t": last["t"], "measured": terms(last, c)["total"],
                 "extrapolated": pred}
        check["error"] = pred / check["measured"] - 1
        at_ref = {**extrapolate(first, last, t_ref), **dma_at(name, strategy, t_ref)}
    else:
        at_ref = get(t_ref)
        check, measured = None, [at_ref]
    parts = terms(at_ref, c)
    seconds = parts["total"] / f
    samples = 8 / seconds
    gflops = 2 * est.macs_per_step / seconds / 1e9
    ceiling = CORES * 2 * f / 1e9  # 8 cores x one fp32 FMA (2 FLOP) per cycle
    return {"model": name, "strategy": strategy, "t": t_ref, "cores": CORES, "freq_mhz": f / 1e6,
            "cycles_per_step": int(round(parts["total"])), "samples_per_s": samples, "gflops": gflops,
            "ceiling_share": gflops / ceiling, "paper_samples_per_s": cfg["paper"].get(strategy),
            "parts": {k: int(round(v)) for k, v in parts.items()},
            "kernel_cycles": {k: int(round(v)) for k, v in at_ref["kernel_cycles"].items() if v},
            "macs_per_step": int(est.macs_per_step), "extrapolation_check": check, "measured": measured}


def markdown(rows: list, load: tuple, wall: float) -> str:
    lines = ["# One training step on 8 cores at 370 MHz, from cycles measured on the CV32E40P RTL", "",
             "`python benchmarks/device_step.py` (each core's share alone on the RTL, call by call the slowest "
             "core + `barrier_cycles`; the cluster DMA for the copies, not overlapped: gap9.yaml's "
             "`dma_setup_cycles`, `dma_bytes_per_cycle`).", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average before {load[0]:.2f} / {load[1]:.2f} / "
             f"{load[2]:.2f}; total {wall:.0f} s, of which RTL simulation "
             f"{sum(m['sim_wall_s'] for r in rows for m in r['measured']):.0f} s (8 solo runs per input, 2 side by side; "
             "with --reuse, the simulations of the earlier run).", "",
             "| model | strategy | T | cycles per step | samples/s | BioTrain (paper) | GFLOP/s | share of the 5.92 GFLOP/s "
             "ceiling | kernels / barriers / DMA (M cycles) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["parts"]
        lines.append(f"| {r['model']} | `{r['strategy']}` | {r['t']} | {r['cycles_per_step']:,} | {r['samples_per_s']:.1f} | "
                     f"{r['paper_samples_per_s'] or '-'} | {r['gflops']:.2f} | {r['ceiling_share']:.0%} | "
                     f"{p['kernels'] / 1e6:.1f} / {p['barriers'] / 1e6:.2f} / {p['dma'] / 1e6:.1f} |")
    lines += ["", "DMA bytes and copies are the program's own counts at the reference shape (qemu, one core); "
              "at a shorter simulated input the kernel cycles and barriers are extrapolated in T.",
              "", "## Kernel cycles per kind (slowest core per call, summed over the step)", ""]
    for r in rows:
        top = sorted(r["kernel_cycles"].items(), key=lambda kv: -kv[1])
        lines.append(f"- {r['model']} `{r['strategy']}`: " + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in top))
    checks = [r for r in rows if r["extrapolation_check"]]
    if checks:
        lines += ["", "## Extrapolation in T, checked beyond the inputs it is fitted on", "",
                  "The step is extrapolated from the shortest and the longest simulated input; the check fits the "
                  "two shortest and predicts the longest (the whole step, every term).", "",
                  "| model | strategy | simulated at T | check: fitted on T | predicted T | extrapolated | measured | "
                  "error |", "|---|---|---|---|---|---|---|---|"]
        for r in checks:
            ch = r["extrapolation_check"]
            lines.append(f"| {r['model']} | `{r['strategy']}` | {', '.join(str(m['t']) for m in r['measured'])} | "
                         f"{', '.join(map(str, ch['fit_t']))} | {ch['t']} | {ch['extrapolated']:,.0f} | "
                         f"{ch['measured']:,.0f} | {ch['error']:+.1%} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--strategies", nargs="+", default=["edge"])
    ap.add_argument("--jobs", type=int, default=2, help="RTL simulations side by side")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--name", default="device_step", help="results file name (benchmarks/results/NAME.md/.json)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the simulations of benchmarks/results/NAME.json (same model, strategy and T)")
    args = ap.parse_args(argv)
    if missing_tools("rtl"):
        print(missing_tools("rtl"), file=sys.stderr)
        return 3
    load, t0 = os.getloadavg(), time.perf_counter()
    cache = {}
    if args.reuse and (RESULTS / f"{args.name}.json").exists():
        for r in json.loads((RESULTS / f"{args.name}.json").read_text()):
            for m in r["measured"]:
                cache[(r["model"], r["strategy"], m["t"])] = m
    rows = [row(m, s, args.jobs, cache) for m in args.models for s in args.strategies]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / f"{args.name}.md").write_text(markdown(rows, load, time.perf_counter() - t0))
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "measured"} for r in rows]))
    else:
        print(markdown(rows, load, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
