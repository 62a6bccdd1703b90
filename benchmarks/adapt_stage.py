"""The adapt stage's flow, the reference loop against the fast loop with groups: jobs per minute and accuracy.

    python benchmarks/adapt_stage.py --project runs/tiny --seeds 0 1 2 3 --markdown benchmarks/results/adapt_stage.md

``--project``: a study whose ``pretrain`` stage has run (``biotrain run --profile tiny pretrain``
makes ``runs/tiny``); its params plan the jobs (``--seeds`` replaces the study's seeds, so that
enough same-shaped jobs exist to batch). Each variant runs the whole flow (``run_adapt_cohort``,
``--workers`` workers, no retries) on the same jobs under its own MLflow store:

- ``reference``: ``adapt.host_loop: reference``, one Prefect task per job, threads runner (the stage
  without any of the speed levers);
- ``fast+groups``: ``host_loop: fast``, one task per group of same-shaped jobs (``group_jobs``), threads;
- ``fast``: ``host_loop: fast``, one task per job, threads (``--no-fast-per-job`` skips it): what
  the groups add;
- ``fast+groups on dask, <allocator>`` (``--fast-runners dask``): the groups on a local Dask cluster
  of worker processes, once per ``--allocators`` value (``adapt.runner.allocator``).

The default study's figures in ``benchmarks/README.md`` come from::

    python benchmarks/adapt_stage.py --project <default study> --seeds 0 1 2 --repeats 2 --no-fast-per-job \
        --fast-runners dask --allocators auto system

Variants alternate their order per repeat, so load drift hits them alike; ratios are per repeat.
Windows and base models are read (and the Prefect server started) before the clocks start.
The accuracy tables (mean ``acc_after`` per modality, strategy and scenario) of every variant are
compared with the reference's: the largest difference, in points.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def accuracy_table(rows: list[dict]) -> dict:
    """Mean ``acc_after`` per (modality, strategy, scenario)."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["modality"], r["strategy"], r["scenario"]), []).append(r["acc_after"])
    return {k: statistics.fmean(v) for k, v in sorted(groups.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", default="runs/tiny", help="a study folder whose pretrain stage has run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--strategies", nargs="+", default=None, help="default: the study's")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-group", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-fast-per-job", action="store_true")
    ap.add_argument("--fast-runners", nargs="+", choices=["threads", "dask"], default=["threads"],
                    help="run fast+groups on these runners (dask: a local cluster of worker processes)")
    ap.add_argument("--allocators", nargs="+", choices=["auto", "tcmalloc", "system"], default=["auto"],
                    help="fast+groups on dask: once per worker allocator (adapt.runner.allocator)")
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="adapt_stage-"))
    os.environ["PREFECT_HOME"] = str(work / "prefect")  # before prefect is imported: a server DB of its own
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from biotrain.study import AdaptSettings, RunnerConfig, StudyConfig, StudyPaths, group_jobs, plan_study, worker_preload
    from biotrain.study.run_job import load_inputs
    from flows.adapt_cohort import run_adapt_cohort
    from flows.runners import shared_prefect_api
    from biotrain.params import load_params
    from stages.common import read_folds

    project = Path(args.project).resolve()
    params = load_params(project / "params.yaml")
    params["adapt"]["seeds"] = args.seeds
    if args.strategies:
        params["adapt"]["strategies"] = args.strategies
    config = StudyConfig.from_params(params, project)
    paths = StudyPaths(project / "data" / "windows", project / "data" / "splits", project / "models" / "pretrained")
    jobs = plan_study(config, paths, read_folds(config, paths))
    base = AdaptSettings.of(config)
    loop = lambda name: dataclasses.replace(base, finetune=dataclasses.replace(base.finetune, host_loop=name))  # noqa: E731
    threads = RunnerConfig("threads", args.workers, retries=0)
    variants = {"reference": (loop("reference"), 1, threads)}  # the reference stage: threads, the C library's malloc
    if "threads" in args.fast_runners:
        variants["fast+groups"] = (loop("fast"), args.max_group, threads)
    if not args.no_fast_per_job:
        variants["fast"] = (loop("fast"), 1, threads)
    if "dask" in args.fast_runners:
        for allocator in args.allocators:
            used = "TCMalloc" if worker_preload(allocator) else "glibc"
            variants[f"fast+groups on dask, {used}"] = (
                loop("fast"), args.max_group, RunnerConfig("dask", args.workers, retries=0, allocator=allocator))
    n_groups = {name: len(group_jobs(jobs, s, size)) for name, (s, size, _) in variants.items()}

    for job in jobs:  # windows and base models read once per process, as a worker does
        load_inputs(job, base, "host")

    results: dict[str, list[dict]] = {name: [] for name in variants}
    names = list(variants)
    with shared_prefect_api("threads"):  # one Prefect server for every run, started before the clocks
        for r in range(args.repeats):
            run_variants(r, names, variants, jobs, work, results, run_adapt_cohort)

    text = report(args, jobs, variants, n_groups, results)
    print(text)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text)


def run_variants(r, names, variants, jobs, work, results, run_adapt_cohort) -> None:
    """Repeat ``r`` of every variant, in alternating order."""
    from biotrain.study import TrackingConfig

    order = names if r % 2 == 0 else names[::-1]
    for name in order:
        settings, size, runner = variants[name]
        tracking = TrackingConfig(f"sqlite:///{work / f'mlflow-{name}-{r}.db'}", "bench")
        before = uptime()
        t0 = time.perf_counter()
        rows, _ = run_adapt_cohort(jobs, settings, tracking, runner, f"{name}-{r}".replace("+", "-"), size)
        wall = time.perf_counter() - t0
        res = {"repeat": r, "wall": wall, "jobs_per_min": 60 * len(jobs) / wall, "rows": rows,
               "uptime_before": before, "uptime_after": uptime()}
        results[name].append(res)
        print(f"repeat {r} {name}: {len(jobs)} jobs in {wall:.1f} s = {res['jobs_per_min']:.1f} jobs/min; "
              f"{res['uptime_after']}", flush=True)


def report(args, jobs, variants, n_groups, results) -> str:
    ref = results["reference"]
    lines = [
        "# Adapt stage: per-job reference loop vs fast loop in batched groups",
        "",
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, `python benchmarks/adapt_stage.py "
        f"--project {args.project} --seeds {' '.join(map(str, args.seeds))} --workers {args.workers} "
        f"--max-group {args.max_group} --repeats {args.repeats}"
        f" --fast-runners {' '.join(args.fast_runners)} --allocators {' '.join(args.allocators)}"
        f"{' --no-fast-per-job' if args.no_fast_per_job else ''}`; {os.cpu_count()} cores shared with other work.",
        f"{len(jobs)} jobs ({', '.join(sorted({j.modality for j in jobs}))}; strategies "
        f"{', '.join(dict.fromkeys(j.strategy for j in jobs))}; {len(args.seeds)} seeds; "
        f"{variants['reference'][0].finetune.epochs} epochs), {args.workers} workers (threads runner unless named), "
        "no retries. Threads run in this process, on the C library's malloc (glibc).",
        "",
        "| variant | Prefect tasks | repeat | wall (s) | jobs/min | ratio to reference (same repeat) |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        for res, base in zip(runs, ref):
            lines.append(f"| {name} | {n_groups[name]} | {res['repeat']} | {res['wall']:.1f} | {res['jobs_per_min']:.1f} "
                         f"| {base['wall'] / res['wall']:.2f}x |")
    lines += ["", "## Accuracy tables against the reference's (mean acc_after per modality, strategy, scenario)", ""]
    ref_table = accuracy_table(ref[0]["rows"])
    lines += ["| variant | repeat | max difference (points) | where | largest per-row difference (points) |",
              "|---|---|---|---|---|"]
    for name, runs in results.items():
        for res in runs:
            table = accuracy_table(res["rows"])
            worst = max(ref_table, key=lambda k: abs(table[k] - ref_table[k]))
            per_row = max(abs(a["acc_after"] - b["acc_after"]) for a, b in zip(res["rows"], ref[0]["rows"]))
            lines.append(f"| {name} | {res['repeat']} | {100 * abs(table[worst] - ref_table[worst]):.2f} "
                         f"| {'/'.join(worst)} | {100 * per_row:.1f} |")
    lines += ["", "Reference table (repeat 0):", "", "| modality | strategy | scenario | mean acc_after |", "|---|---|---|---|"]
    lines += [f"| {m} | {s} | {sc} | {v:.4f} |" for (m, s, sc), v in ref_table.items()]
    lines += ["", "## Load on the machine (uptime before and after each run)", ""]
    for name, runs in results.items():
        for res in runs:
            lines += [f"- {name} repeat {res['repeat']} before: `{res['uptime_before']}`",
                      f"  after: `{res['uptime_after']}`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
