"""Stage ``adapt``: every adaptation job of the study as the Prefect flow ``adapt_cohort``;
writes the results, the metrics, and the MLflow run they belong to."""

from __future__ import annotations

from biotrain.io import write_json
from biotrain.params import load_study
from biotrain.report.summary import write_results
from biotrain.study import AdaptSettings, plan_study
from flows.adapt_cohort import run_adapt_cohort
from stages.common import read_folds, run_main, stage_args, study_paths


def main() -> None:
    args = stage_args(__doc__, "windows", "splits", "models", "results", "metrics", "run-file")
    config, paths = load_study(args.params, datasets=False), study_paths(args)
    jobs = plan_study(config, paths, read_folds(config, paths))
    rows, run_id = run_adapt_cohort(jobs, AdaptSettings.of(config), config.tracking, config.runner)
    df = write_results(rows, args.results, args.metrics)
    # the MLflow run these results belong to: the report attaches itself to it (DVC restores this
    # file with the results from its cache, so the pair never disagrees)
    write_json(args.run_file, {"mlflow_run_id": run_id, "experiment": config.tracking.experiment})
    print(f"{len(df)} result rows from {len(jobs)} day-1 jobs; MLflow store: {config.tracking.uri}")


if __name__ == "__main__":
    run_main(main, "adapt")
