"""Stage ``report``: ``reports/study.md`` with tables and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from biotrain.device import load_constants
from biotrain.report.device import device_section
from biotrain.report.study import write_report
from biotrain.tracking import attach_report, default_tracking_uri
from biotrain.errors import TrackingError
from stages.common import RUN_FILE, run_main, load_params, stage_args


def main() -> None:
    params = load_params(stage_args(__doc__).params)
    df = pd.read_csv("results/adaptation.csv", dtype={"session": str})
    with open("metrics/adaptation.json") as fh:
        metrics = json.load(fh)
    l2_budget = load_constants(params["device"]["constants"])["l2_budget_bytes"]
    device = device_section(df, "reports", l2_budget, params["report"]["dpi"])
    path = write_report(df, metrics, "reports", dpi=params["report"]["dpi"], extra_sections=[device])
    uri = params["tracking"]["uri"] or default_tracking_uri(Path.cwd())
    with open(RUN_FILE) as fh:
        run_id = json.load(fh)["mlflow_run_id"]  # the run the adapt stage recorded these results in
    try:
        attach_report(uri, run_id, [path, *sorted(Path("reports/figures").glob("*.png"))])
    except TrackingError as err:  # the report stands on its own; say why the dashboard lacks it
        print(f"wrote {path}; not attached to MLflow: {err}")
        return
    print(f"wrote {path}; attached to MLflow run {run_id}")


if __name__ == "__main__":
    run_main(main, "report")
