"""Stage ``adapt``: the Prefect flow ``adapt_cohort`` over every task; results and metrics."""

from __future__ import annotations

import json
from pathlib import Path

from biotrain.adaptation.plan import plan_jobs
from biotrain.io import write_json
from biotrain.report.summary import write_results
from biotrain.tracking import default_tracking_uri
from flows.adapt_cohort import run_adapt_cohort
from stages.common import RUN_FILE, run_main, load_params, modality_paths, stage_args


def main() -> None:
    params = load_params(stage_args(__doc__).params)
    a = params["adapt"]
    inputs, folds = {}, {}
    for modality in params["data"]["modalities"]:
        paths = modality_paths(modality)
        inputs[modality] = {**paths, "dataset": params["data"]["dataset"]["name"], "model": params["models"][modality]["name"]}
        with open(paths["splits"]) as fh:
            folds[modality] = json.load(fh)["folds"]
    jobs = plan_jobs(inputs, folds, a["strategies"], a["seeds"])
    settings = {
        "finetune": {k: a[k] for k in ("epochs", "lr", "momentum", "weight_decay", "batch_size", "micro_batch")},
        "tracking_uri": params["tracking"]["uri"] or default_tracking_uri(Path.cwd()),
        "experiment": params["tracking"]["experiment"],
        "retries": a["retries"],
        "device": params["device"],
        "torch_threads": 1,  # tasks run side by side; one torch thread each keeps results bit-exact
    }
    rows, run_id = run_adapt_cohort(jobs, settings, a["runner"]["name"], a["runner"]["workers"],
                                    address=a["runner"].get("address"), with_run_id=True)
    df = write_results(rows, "results/adaptation.csv", "metrics/adaptation.json")
    # the MLflow run these results belong to: the report attaches itself to it (DVC restores this
    # file with the results from its cache, so the pair never disagrees)
    write_json(RUN_FILE, {"mlflow_run_id": run_id, "experiment": settings["experiment"]})
    print(f"{len(df)} result rows from {len(jobs)} day-1 jobs; MLflow store: {settings['tracking_uri']}")


if __name__ == "__main__":
    run_main(main, "adapt")
