"""``python -m flows.sweep``: a grid of adaptation settings over the cohort, as one Prefect flow.

The grid (``sweep.grid`` in params.yaml: any of strategy, seed, lr, epochs, momentum,
weight_decay, batch_size, micro_batch, calib_size) multiplies the per-subject tasks of the
``adapt`` stage. Each sweep is one MLflow experiment (``sweep-<name>``) with one parent run and
one child run per task, the grid point in each child's params. Needs the ``pretrain`` stage's
outputs (``dvc repro pretrain``). Interrupted? Run the same command again: finished tasks come
back from the cache, the MLflow parent run is resumed, and results are written only at the end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from biotrain.adaptation.plan import plan_sweep
from biotrain.report.sweep import write_sweep
from biotrain.tracking import default_tracking_uri
from flows.adapt_cohort import run_adapt_cohort
from biotrain.errors import UserError
from stages.common import load_params, modality_paths, run_main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="parameters file (default: params.yaml)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    sweep, a = params["sweep"], params["adapt"]
    inputs, folds = {}, {}
    for modality in params["data"]["modalities"]:
        paths = modality_paths(modality)
        if not paths["splits"].exists():
            raise UserError(f"{paths['splits']} is missing: run `dvc repro pretrain` before a sweep")
        inputs[modality] = {**paths, "dataset": params["data"]["dataset"]["name"], "model": params["models"][modality]["name"]}
        folds[modality] = json.loads(paths["splits"].read_text())["folds"]
    jobs = plan_sweep(inputs, folds, sweep["grid"], a["strategies"], a["seeds"])
    settings = {
        "finetune": {k: a[k] for k in ("epochs", "lr", "momentum", "weight_decay", "batch_size", "micro_batch")},
        "tracking_uri": params["tracking"]["uri"] or default_tracking_uri(Path.cwd()),
        "experiment": f"sweep-{sweep['name']}",
        "retries": a["retries"],
        "device": params["device"],
        "torch_threads": 1,
    }
    runner = a["runner"]
    rows = run_adapt_cohort(jobs, settings, runner["name"], runner["workers"], run_name=f"sweep-{sweep['name']}",
                            address=runner.get("address"))
    out = write_sweep(rows, sweep["grid"], Path("results/sweeps") / f"{sweep['name']}.csv",
                      Path("reports/sweeps") / f"{sweep['name']}.md")
    print(f"sweep {sweep['name']}: {len(jobs)} jobs, {len(rows)} rows -> {out}; MLflow experiment {settings['experiment']}")


if __name__ == "__main__":
    run_main(main, "sweep")
