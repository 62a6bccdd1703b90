"""``biotrain device export`` and ``biotrain device run``."""

from __future__ import annotations

import json
import sys

from ...strategy_table import COSTED_STRATEGIES, PRECISIONS
from .runner import TARGETS, ToolMissing


def add_commands(dsub, parse_sets) -> None:
    """Register ``export`` and ``run`` on the ``device`` subparsers; ``parse_sets`` is the
    ``--set`` parser of ``device estimate`` (same keys)."""
    ex = dsub.add_parser("export", help="write the training step as a self-contained C99 project")
    ex.add_argument("--model", required=True, choices=["mi_bminet", "epidenet"])
    ex.add_argument("--strategy", required=True, choices=list(COSTED_STRATEGIES))
    from ..strategy_options import add_strategy_options

    add_strategy_options(ex)
    ex.add_argument("--batch-size", type=int, default=8)
    ex.add_argument("--micro-batch", type=int, default=None)
    ex.add_argument("--accum", type=int, default=None)
    ex.add_argument("--steps", type=int, default=3, help="steps of the generated schedule (random samples)")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                    help="bf16/fp16: the arena stores 16-bit values, the kernels compute in fp32 on their L1 copies "
                         "(docs/device.md)")
    ex.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", nargs="+",
                    help="model shape/arguments (C, T, classes, F1, ...), as for `device estimate`")
    ex.add_argument("--out", required=True, help="project directory to write")
    ex.set_defaults(func=lambda a: _guard(_export, a, parse_sets))
    run = dsub.add_parser("run", help="build and run an exported project, compare with PyTorch")
    run.add_argument("dir")
    run.add_argument("--target", default="host", choices=list(TARGETS))
    run.add_argument("--steps", type=int, default=None, help="steps to run (default: the exported schedule)")
    run.add_argument("--instr-latency", type=int, default=1, metavar="CYCLES",
                     help="rtl: cycles from an instruction fetch to its data (1 = single-cycle L1-like memory)")
    run.add_argument("--data-latency", type=int, default=1, metavar="CYCLES",
                     help="rtl: cycles from a load to its data (1 = L1-like; more for an L2-like memory)")
    run.add_argument("--cores", type=int, default=None,
                     help="qemu: run on N cores (harts of -smp N, 1..8; one build per N; default 1); host, rtl: 1; "
                          "gap9: 8")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=lambda a: _guard(_run, a))


def _guard(fn, *args) -> int:
    try:
        return fn(*args)
    except ToolMissing as exc:
        print(f"biotrain device: {exc}", file=sys.stderr)
        return 3
    except (ValueError, NotImplementedError, FileNotFoundError) as exc:
        print(f"biotrain device: error: {exc}", file=sys.stderr)
        return 2


def _export(args, parse_sets) -> int:
    import torch

    from ...models import build_model
    from ...models.spec import model_spec
    from ..strategy_options import strategy_choice
    from ..estimate import estimate_step
    from .project import export_project

    sets = [s for group in args.sets for s in (group if isinstance(group, list) else [group])]
    model_kw, overrides = parse_sets(sets, args.model)
    if overrides:
        raise ValueError(f"--set: device constants {sorted(overrides)} do not change the exported program")
    model_kw.setdefault("norm", "group" if args.strategy == "edge" else "batch")
    torch.manual_seed(args.seed)
    try:
        model = build_model(args.model, **model_kw)
    except TypeError as exc:
        raise ValueError(f"--set: {exc}") from None
    spec = model_spec(args.model, model, model_kw)

    def peak_of(layers):  # the exported program's peak L2 of the sparse step with these layers
        return estimate_step(model, "sparse", batch_size=args.batch_size, micro_batch=args.micro_batch,
                             accum=args.accum, program="exported", check=False, layers=layers).peak_l2_bytes

    layers, rank, picked = strategy_choice(args, model, peak_of)
    meta = export_project(args.out, model, args.strategy, batch_size=args.batch_size, micro_batch=args.micro_batch,
                          accum=args.accum, model_spec=spec, steps=args.steps, seed=args.seed, layers=layers,
                          rank=rank, precision=args.precision)
    if layers is not None:
        print(f"sparse trains the classifier and {', '.join(layers) or 'no other layer'}"
              + (f" (picked under {picked['budget_kb']:g} kB)" if picked else ""))
    if meta.get("rank"):
        print(f"lora: adapters of rank {meta['rank']}; the program computes W + B @ A and trains only A and B")
    print(f"wrote {args.out}: {args.precision} arena {meta['arena_bytes']} B (plan peak {meta['plan']['peak']} B), "
          f"{sum(meta['ops'].values())} kernel calls per step program; build with `make -C {args.out} host|rv32`, "
          f"run with `biotrain device run {args.out} --target host|qemu|rtl`")
    return 0


def _run(args) -> int:
    from .runner import run_project

    for flag, v in (("--instr-latency", args.instr_latency), ("--data-latency", args.data_latency)):
        if v < 1:
            raise ValueError(f"{flag} must be a whole number of cycles >= 1, got {v}")
    if args.target != "rtl" and (args.instr_latency, args.data_latency) != (1, 1):
        raise ValueError(f"--instr-latency/--data-latency set the RTL testbench's memory; target {args.target} has none")
    res = run_project(args.dir, args.target, steps=args.steps, latency=(args.instr_latency, args.data_latency),
                      cores=args.cores, tol=None)
    res.pop("final_state", None)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['target']}: {res['steps']} steps, max_rel_err {res['max_rel_err']:.2e} "
              f"({'ok' if res['ok'] else 'MISMATCH'} at tol {res['tol']:g}), loss {res['loss']}, {res['seconds']} s")
        if res["instructions_per_step"]:
            print(f"instructions per step: {res['instructions_per_step']}")
            print("by kernel kind: " + ", ".join(f"{k} {v:.0f}" for k, v in res["instructions_per_step_by_kind"].items() if v))
        if res["l1_budget_bytes"]:
            print(f"L1: the kernels' tiles ran in {res['l1_bytes']} B (highest byte reached {res['l1_touched_bytes']}) "
                  f"of a {res['l1_budget_bytes']} B budget; DMA {res['dma_bytes_per_step']:.0f} B per step")
        if res["core_balance"] and res["cores"] > 1:
            print(f"{res['cores']} cores, busiest / mean by kernel kind (share of the step): " + ", ".join(
                f"{k} {b:.2f} ({res['kind_share'][k]:.0%})" for k, b in res["core_balance"].items()))
        if res["cycles_per_step"]:
            print(f"cycles per step: {res['cycles_per_step']} (IPC {res['ipc']:.2f})")
            print("cycles by kernel kind: " + ", ".join(f"{k} {v:.0f}" for k, v in res["cycles_per_step_by_kind"].items() if v))
    return 0 if res["ok"] else 1
