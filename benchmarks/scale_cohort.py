"""Scale benchmark of the ``adapt_cohort`` flow on a Lee2019_MI-shaped synthetic cohort (run by hand).

    python benchmarks/scale_cohort.py                       # 54 subjects, threads:1, threads:2, dask:2
    python benchmarks/scale_cohort.py --subjects 4          # quick check
    python benchmarks/scale_cohort.py --runners threads:1,dask:2 --epochs 30 --out /tmp/biotrain-scale

What it does:

1. builds the cohort on disk with the real library: ``SyntheticMI`` (54 subjects x 2 sessions x
   2 classes x 50 trials, the shape of Lee2019_MI) through MOABB's paradigm (``extract_windows``,
   8 channels, 2 s windows at 200 Hz: MI-BMINet with kernels of 0.32 s and 0.04 s as in ``params.yaml``),
   ``save_windows``, ``make_splits`` and a ``{"folds": ...}`` splits file;
2. trains ONE base model per normalization (batch, group) briefly on a few subjects and saves it
   as every held-out subject's checkpoint: the benchmark measures adaptation at scale, not
   leave-one-subject-out pretraining (a simplification: accuracies are not the study's);
3. plans the study (4 strategies x 1 seed: one task per subject and strategy, day 1 then the
   longitudinal step from the day-1 model) and runs ``run_adapt_cohort`` once per runner configuration, each in a
   fresh Python process with its own Prefect home and its own SQLite MLflow store;
4. reports wall time, tasks per minute, speed-up over ``threads:1`` and three overheads from the
   rows' ``work_seconds`` (the pure adaptation functions) and ``task_seconds`` (the task body):

   a. in-task tracking and loading: sum(task - work) / sum(task)
   b. orchestration outside the task body: (wall * workers - sum(task)) / (wall * workers)
   c. total (Prefect + MLflow + loading): (wall * workers - sum(work)) / (wall * workers)

   and checks that every runner gives the same rows (the ``*_seconds`` keys aside).

Writes ``benchmarks/results/scale.md`` (``--results``) and prints the same table. The work dir
(``--out``) keeps the cohort between runs (reused when its configuration is unchanged).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `flows` is a folder of the project, not installed

from biotrain.strategy_table import STRATEGY_NAMES  # noqa: E402

STRATEGIES = list(STRATEGY_NAMES)
SEEDS = [0]
MODEL = "mi_bminet"
MODEL_KWARGS = {"temporal_kernel_s": 0.32, "depthwise_kernel_s": 0.04}  # params.yaml: 64 and 8 samples at 200 Hz
WINDOW = {"sfreq": 200.0, "n_times": 400, "fmin": 4.0, "fmax": 40.0, "tmin": 0.5}  # params.yaml data.eeg
DATASET_KWARGS = {"n_sessions": 2, "trials_per_class": 50, "seed": 0, "erd": 0.45, "distractor": 1.0}


def _quiet() -> None:
    import logging
    import warnings

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for noisy in ("mne", "moabb"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="mne")
    warnings.filterwarnings("ignore", category=FutureWarning)


# --------------------------------------------------------------------------- cohort


def build_cohort(out: Path, n_subjects: int, pretrain_subjects: int, pretrain_epochs: int) -> dict:
    """Windows, splits and checkpoints on disk; returns the paths (reused if already built)."""
    cohort = out / "cohort"
    config = {"n_subjects": n_subjects, "dataset": DATASET_KWARGS, "window": WINDOW, "model": MODEL,
              "kwargs": MODEL_KWARGS, "pretrain_subjects": pretrain_subjects, "pretrain_epochs": pretrain_epochs}
    paths = {"windows": cohort / "windows", "splits": cohort / "splits", "models": cohort / "models"}
    stamp = cohort / "config.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == config:
        print(f"cohort: reusing {cohort}")
        return {k: str(v) for k, v in paths.items()}
    shutil.rmtree(cohort, ignore_errors=True)

    import numpy as np
    import torch

    from biotrain.adaptation import PretrainConfig
    from biotrain.adaptation.training import pretrain
    from biotrain.data.split import make_splits
    from biotrain.data.store import save_windows
    from biotrain.data.synthetic import SyntheticMI
    from biotrain.data.windows import WindowSpec, extract_windows
    from biotrain.io import write_json
    from biotrain.models import build_model
    from biotrain.models.checkpoint import save_checkpoint
    from biotrain.study import StudyPaths

    study = StudyPaths(**paths)
    t0 = time.perf_counter()
    dataset = SyntheticMI(n_subjects=n_subjects, **DATASET_KWARGS)
    spec = WindowSpec("eeg", events=["left_hand", "right_hand"], **WINDOW)
    w = extract_windows(dataset, spec)
    study.windows.mkdir(parents=True, exist_ok=True)
    save_windows(study.windows_of("eeg"), w)
    folds = make_splits(w.meta, 0.8)
    write_json(study.splits_of("eeg"), {"folds": folds})
    t_data = time.perf_counter() - t0
    print(f"cohort: {w.X.shape} windows of {n_subjects} subjects in {t_data:.1f} s")

    # one base model per norm, briefly trained on the first subjects, shared by every fold
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    idx = np.flatnonzero(w.meta["subject"].to_numpy() <= pretrain_subjects)
    cfg = PretrainConfig(epochs=pretrain_epochs)
    for norm in ("batch", "group"):
        torch.manual_seed(0)
        model = build_model(MODEL, w.X.shape[1], w.X.shape[2], len(w.class_names), norm, sfreq=w.sfreq, **MODEL_KWARGS)
        pretrain(model, w.X[idx], w.y[idx], cfg, seed=0)
        for fold in folds:
            save_checkpoint(study.pretrained("eeg", norm, fold["subject"]), model, MODEL, MODEL_KWARGS)
    print(f"cohort: 2 base models ({pretrain_epochs} epochs on {len(idx)} windows) in {time.perf_counter() - t0:.1f} s")
    stamp.write_text(json.dumps(config))
    return {k: str(v) for k, v in paths.items()}


# --------------------------------------------------------------------------- one runner (child process)


def run_child(args) -> None:
    """One runner configuration in this (fresh) process; writes rows and timings to ``args.child_out``."""
    run_dir = Path(args.child_out).parent
    os.environ["PREFECT_HOME"] = str(run_dir / "prefect")  # before prefect is imported: own server DB
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    _quiet()
    import psutil
    from prefect import flow, task
    from prefect.task_runners import ThreadPoolTaskRunner

    from biotrain.adaptation.finetune import FinetuneConfig
    from biotrain.study import AdaptSettings, DeviceConfig, RunnerConfig, StudyConfig, StudyPaths, TrackingConfig, plan_study
    from flows.adapt_cohort import run_adapt_cohort
    from biotrain.params import load_params

    paths = StudyPaths(**{k: Path(v) for k, v in json.loads(args.paths).items()})
    params = load_params(ROOT / "params.yaml")
    params["data"]["modalities"] = ["eeg"]
    params["models"]["eeg"] = {"name": MODEL, "kwargs": MODEL_KWARGS}
    params["adapt"].update(strategies=STRATEGIES, seeds=SEEDS)
    study = StudyConfig.from_params(params, run_dir)
    jobs = plan_study(study, paths, {"eeg": json.loads(paths.splits_of("eeg").read_text())["folds"]})
    runner, workers, *loop = args.child.split(":")  # e.g. threads:2, or threads:2:reference (the host loop)
    finetune = FinetuneConfig(epochs=args.epochs, lr=5e-3, momentum=0.9, weight_decay=1e-3, batch_size=8, micro_batch=1,
                              host_loop=loop[0] if loop else "fast")
    settings = AdaptSettings(finetune, DeviceConfig() if args.device else None)
    tracking = TrackingConfig(f"sqlite:///{run_dir / 'mlflow.db'}", "scale")

    # start the ephemeral Prefect server (and its DB migrations) before the clock starts
    @task
    def _noop():
        return 1

    @flow(name="warm-up", task_runner=ThreadPoolTaskRunner(max_workers=1))
    def _warm():
        return _noop.submit().result()

    t0 = time.perf_counter()
    _warm()
    warm = time.perf_counter() - t0

    flow_cpu0, server_cpu0 = _cpu_seconds(psutil.Process()), _cpu_seconds(*_prefect_servers())
    t0 = time.perf_counter()
    rows, _ = run_adapt_cohort(jobs, settings, tracking, RunnerConfig(runner, int(workers), retries=0))
    wall = time.perf_counter() - t0
    flow_cpu, server_cpu = _cpu_seconds(psutil.Process()) - flow_cpu0, _cpu_seconds(*_prefect_servers()) - server_cpu0
    n_tasks = len(jobs)  # one task per job: day 1, then the longitudinal chain
    Path(args.child_out).write_text(json.dumps({"wall": wall, "warm_up": warm, "n_jobs": len(jobs),
                                                "n_tasks": n_tasks, "rows": rows, "flow_cpu": flow_cpu,
                                                "server_cpu": server_cpu}))


def _prefect_servers() -> list:
    """The Prefect server processes started by this process (the temporary one, if any)."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "prefect.server.api.server" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def _cpu_seconds(*procs) -> float:
    """CPU time (user + system) of these processes' own threads (not their children)."""
    total = 0.0
    for proc in procs:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


# --------------------------------------------------------------------------- parent


class LoadSampler:
    """The 1-minute load average, sampled every few seconds while a runner works."""

    def __init__(self, every: float = 5.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(every,), daemon=True)

    def _loop(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def run_runner(spec: str, args, paths: dict) -> dict:
    run_dir = Path(args.out) / "runs" / spec.replace(":", "-")
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    out_json = run_dir / "result.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", spec, "--child-out", str(out_json),
           "--paths", json.dumps(paths), "--epochs", str(args.epochs)] + ([] if args.device else ["--no-device"])
    flow_file = ROOT / "flows" / "adapt_cohort.py"
    flow_sha = hashlib.sha256(flow_file.read_bytes()).hexdigest()[:12]  # the flow version the child imports
    before, load_before = uptime(), os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with LoadSampler() as sampler, open(run_dir / "log.txt", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    process_wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = uptime()
    if proc.returncode:
        raise SystemExit(f"{spec}: failed (exit {proc.returncode}); see {run_dir / 'log.txt'}")
    res = json.loads(out_json.read_text())
    res.update(spec=spec, runner=spec.split(":")[0], workers=int(spec.split(":")[1]), uptime_before=before,
               uptime_after=after, load_before=load_before, load_after=os.getloadavg()[0],
               load_during=(sum(sampler.samples) / len(sampler.samples)) if sampler.samples else None,
               process_wall=process_wall,
               cpu_seconds=(ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), flow_sha=flow_sha)
    (run_dir / "run.json").write_text(json.dumps({k: v for k, v in res.items() if k != "rows"}))
    return res


def load_runner(spec: str, args) -> dict:
    """A finished runner's saved figures (``--report-only``)."""
    run_dir = Path(args.out) / "runs" / spec.replace(":", "-")
    res = json.loads((run_dir / "result.json").read_text())
    res.update(json.loads((run_dir / "run.json").read_text()))
    return res


def _strip(rows: list[dict]) -> list[dict]:
    key = lambda r: (r["subject"], r["scenario"], r["strategy"], r["seed"], r["session"])  # noqa: E731
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in sorted(rows, key=key)]


def figures(res: dict, base: dict | None) -> dict:
    rows, wall, workers = res["rows"], res["wall"], res["workers"]
    work = sum(r["work_seconds"] for r in rows)
    task = sum(r["task_seconds"] for r in rows)
    capacity = wall * workers
    return {
        "spec": res["spec"], "runner": res["runner"], "workers": workers, "tasks": res["n_tasks"], "rows": len(rows),
        "wall": wall, "tasks_per_min": 60 * res["n_tasks"] / wall,
        "speedup": (base["wall"] / wall) if base else None,
        "work": work, "task": task,
        "ovh_a": (task - work) / task, "ovh_b": (capacity - task) / capacity, "ovh_c": (capacity - work) / capacity,
        "in_task_ms": 1000 * (task - work) / res["n_tasks"], "outside_ms": 1000 * (capacity - task) / res["n_tasks"],
        "mean_work": work / res["n_tasks"],
        "identical": (_strip(rows) == _strip(base["rows"])) if base else True,
        "acc_diff": max((abs(a["acc_after"] - b["acc_after"]) for a, b in zip(_strip(rows), _strip(base["rows"]))),
                        default=0.0) if base else 0.0,
        "cpu_util": res["cpu_seconds"] / (res["process_wall"] * workers),
        "load_before": res["load_before"], "load_during": res["load_during"], "load_after": res["load_after"],
        "uptime_before": res["uptime_before"], "uptime_after": res["uptime_after"], "warm_up": res["warm_up"],
        "process_wall": res["process_wall"], "flow_sha": res.get("flow_sha", "-"),
        "flow_cpu_ms": 1000 * res["flow_cpu"] / res["n_tasks"] if "flow_cpu" in res else None,
        "server_cpu_ms": 1000 * res["server_cpu"] / res["n_tasks"] if "server_cpu" in res else None,
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def table(figs: list[dict]) -> str:
    lines = ["| runner | workers | tasks | wall s | tasks/min | speed-up | ovh a: in-task tracking+loading | "
             "ovh b: orchestration | ovh c: total | identical results |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f in figs:
        sp = "1.00x (baseline)" if f["speedup"] is None else f"{f['speedup']:.2f}x"
        loop = f["spec"].split(":")[2] if f["spec"].count(":") == 2 else "fast"
        lines.append(f"| {f['runner']} ({loop} loop) | {f['workers']} | {f['tasks']} | {f['wall']:.1f} | {f['tasks_per_min']:.1f} | "
                     f"{sp} | {_pct(f['ovh_a'])} | {_pct(f['ovh_b'])} | {_pct(f['ovh_c'])} | "
                     f"{'yes' if f['identical'] else 'no (largest acc_after difference %.1f points)' % (100 * f['acc_diff'])} |")
    return "\n".join(lines)


def detail(figs: list[dict]) -> str:
    lines = ["| runner | mean work s/task | in-task overhead ms/task | outside-task ms/task (per worker slot) | "
             "CPU s of the run / (process wall x workers) | flow process CPU ms/task | Prefect server CPU ms/task | "
             "load before / mean during / after |",
             "|---|---|---|---|---|---|---|---|"]
    for f in figs:
        during = "-" if f["load_during"] is None else f"{f['load_during']:.2f}"
        flow_ms = "-" if f["flow_cpu_ms"] is None else f"{f['flow_cpu_ms']:.0f}"
        server_ms = "-" if f["server_cpu_ms"] is None else f"{f['server_cpu_ms']:.0f}"
        lines.append(f"| {f['spec']} | {f['mean_work']:.3f} | {f['in_task_ms']:.0f} | {f['outside_ms']:.0f} | "
                     f"{_pct(f['cpu_util'])} | {flow_ms} | {server_ms} | "
                     f"{f['load_before']:.2f} / {during} / {f['load_after']:.2f} |")
    return "\n".join(lines)


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version()}


def versions() -> dict:
    from importlib.metadata import version

    out = {}
    for pkg in ("torch", "prefect", "prefect-dask", "dask", "distributed", "mlflow", "moabb"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            out[pkg] = "-"
    return out


def git_head() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "flows", "biotrain"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        return head + (" (flows/ or biotrain/ modified in the work tree)" if dirty else "")
    except OSError:
        return "-"


def report(figs: list[dict], args, cohort_s: float) -> str:
    m, v = machine(), versions()
    n_sub = args.subjects
    lines = [
        "# Scale benchmark: `adapt_cohort` on a Lee2019_MI-shaped cohort",
        "",
        f"Produced by `python benchmarks/scale_cohort.py --subjects {n_sub} --runners {args.runners} "
        f"--epochs {args.epochs}{'' if args.device else ' --no-device'}` on {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} "
        f"(repo at {git_head()}).",
        "",
        table(figs),
        "",
        "Overheads: **a** = in the task body but outside the pure adaptation functions (MLflow calls, "
        "data and checkpoint loading, device costing): sum(task_seconds - work_seconds) / "
        "sum(task_seconds). **b** = outside the task body (Prefect scheduling and state calls, futures, "
        "serialisation, Dask cluster start-up, the flow's parent run, idle worker slots): "
        "(wall x workers - sum(task_seconds)) / (wall x workers). **c** = the total, Prefect + MLflow + loading over "
        "the whole worker capacity: (wall x workers - sum(work_seconds)) / (wall x workers). Speed-up is over "
        f"`{figs[0]['spec']}` (the first runner). \"Identical\" compares every result row with its rows, the "
        "`*_seconds` keys aside.",
        "",
        detail(figs),
        "",
        "CPU of the flow process and of the Prefect server is measured (psutil) from just before to just after "
        "`run_adapt_cohort`, per task: with `threads` the tasks run inside the flow process, so its figure includes "
        "them; with `dask` it is the orchestration alone (flow engine, futures, Dask scheduler, MLflow parent run).",
        "",
        "## Configuration",
        "",
        f"- Cohort: `SyntheticMI(n_subjects={n_sub}, n_sessions=2, trials_per_class=50, seed=0, erd=0.45, "
        "distractor=1.0)` (Lee2019_MI's shape: 2 sessions x 100 trials, 2 classes), through MOABB's MotorImagery "
        f"paradigm with `extract_windows`: 8 channels, 4-40 Hz, resampled to {WINDOW['sfreq']:.0f} Hz, windows of "
        f"{WINDOW['n_times']} samples (2 s from 0.5 s after the cue), the project's default EEG windows; saved with "
        "`save_windows` (one .npz), splits from `make_splits(meta, 0.8)`: 80 calibration / 20 test windows per session.",
        "- Model: MI-BMINet with kernels of 0.32 s and 0.04 s (params.yaml's: 64 and 8 samples at 200 Hz; "
        "BRIEF's T=1900 at 500 Hz "
        "with Nf=128 would make each task about 5x slower and the benchmark infeasible on 2 shared cores).",
        f"- Pretrained models (simplification): one base model per normalization (batch, group), AdamW "
        f"{args.pretrain_epochs} epochs on the first {args.pretrain_subjects} subjects, saved as every held-out "
        "subject's checkpoint. The benchmark measures adaptation at scale, not leave-one-subject-out pretraining; "
        "accuracies are therefore not the study's.",
        f"- Study: strategies {STRATEGIES}, seeds {SEEDS}: {figs[0]['tasks']} tasks, one per subject and strategy "
        "(day-1 adaptation on session 1, then the longitudinal step on session 2 from the day-1 model; two MLflow "
        "child runs each). Fine-tuning SGD momentum 0.9, lr 5e-3, weight decay 1e-3, cosine, batch 8 (edge: "
        f"micro-batch 1), **{args.epochs} epochs** (the study's value is 30), one torch thread per task, retries 0. "
        "Device costing "
        + ("on (`gap9-sim`, computed once per process per strategy and cached)." if args.device else "off."),
        "- Runners: `threads:1` (one task at a time: the baseline), `threads:2` (the project's default: "
        "`ThreadPoolTaskRunner(max_workers=2)`), `dask:2` (`DaskTaskRunner`, local cluster of 2 worker processes, "
        "1 thread each; the cluster start-up is inside the wall time). Each configuration runs in a fresh Python "
        "process with its own Prefect home (ephemeral Prefect server, started by a warm-up flow before the clock) "
        "and its own SQLite MLflow store. Wall time is measured around `run_adapt_cohort`.",
        f"- Cohort build (windows + 2 base models): {cohort_s:.0f} s (not part of any runner's time).",
        "- Flow version (sha256 of `flows/adapt_cohort.py` when each runner started): "
        + ", ".join(f"`{f['spec']}` {f.get('flow_sha', '-')}" for f in figs) + ".",
        f"- Machine: {m['nproc']} cores, {m['cpu']}; Python {m['python']}; "
        + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        "## Load on the machine (uptime before and after each run)",
        "",
    ]
    for f in figs:
        lines += [f"- `{f['spec']}` before: `{f['uptime_before']}`", f"  after: `{f['uptime_after']}`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", type=int, default=54)
    ap.add_argument("--runners", default="threads:1,threads:2,dask:2",
                    help="runner:workers[:host_loop], e.g. threads:2:reference,threads:2:fast (loop default: fast)")
    ap.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs per adaptation (the study: 30)")
    ap.add_argument("--pretrain-subjects", type=int, default=6)
    ap.add_argument("--pretrain-epochs", type=int, default=5)
    ap.add_argument("--no-device", dest="device", action="store_false", help="no chip costing in the tasks")
    ap.add_argument("--out", default="/tmp/biotrain-scale", help="work dir (cohort, MLflow stores, Prefect homes)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "scale.md"))
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from the runs saved in --out")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--paths", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return

    _quiet()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.report_only:
        paths, cohort_s = {}, json.loads((out / "cohort_seconds.json").read_text())
    else:
        paths = build_cohort(out, args.subjects, args.pretrain_subjects, args.pretrain_epochs)
        cohort_s = time.perf_counter() - t0
        (out / "cohort_seconds.json").write_text(json.dumps(cohort_s))
    specs = [s.strip() for s in args.runners.split(",") if s.strip()]
    results, figs = [], []
    for spec in specs:
        if args.report_only:
            res = load_runner(spec, args)
        else:
            print(f"{spec}: running ...", flush=True)
            res = run_runner(spec, args, paths)
        results.append(res)
        base = results[0] if results[0]["spec"] != spec else None
        figs.append(figures(res, base))
        f = figs[-1]
        print(f"{spec}: {f['tasks']} tasks in {f['wall']:.1f} s ({f['tasks_per_min']:.1f}/min), "
              f"overhead a {_pct(f['ovh_a'])} b {_pct(f['ovh_b'])} c {_pct(f['ovh_c'])}; {f['uptime_after']}", flush=True)
    text = report(figs, args, cohort_s)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(text)
    print()
    print(table(figs))
    print()
    print(detail(figs))
    print(f"\nwritten: {args.results}")


if __name__ == "__main__":
    main()
