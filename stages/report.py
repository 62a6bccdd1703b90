"""Stage ``report``: ``reports/study.md`` with tables and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from biotrain.device import load_constants
from biotrain.report.device import device_section
from biotrain.report.study import write_report
from biotrain.tracking import attach_report, default_tracking_uri
from stages.common import load_params, stage_args


def main() -> None:
    params = load_params(stage_args(__doc__).params)
    df = pd.read_csv("results/adaptation.csv", dtype={"session": str})
    with open("metrics/adaptation.json") as fh:
        metrics = json.load(fh)
    l2_budget = load_constants(params["device"]["constants"])["l2_budget_bytes"]
    device = device_section(df, "reports", l2_budget, params["report"]["dpi"])
    path = write_report(df, metrics, "reports", dpi=params["report"]["dpi"], extra_sections=[device])
    uri = params["tracking"]["uri"] or default_tracking_uri(Path.cwd())
    run_id = attach_report(uri, params["tracking"]["experiment"], [path, *sorted(Path("reports/figures").glob("*.png"))])
    print(f"wrote {path}" + (f"; attached to MLflow run {run_id}" if run_id else ""))


if __name__ == "__main__":
    main()
