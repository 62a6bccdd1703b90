"""Stage ``report``: ``reports/study.md`` with tables and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from biotrain.device import load_constants
from biotrain.errors import TrackingError
from biotrain.params import load_study
from biotrain.report.compare import comparison_section
from biotrain.report.device import device_section
from biotrain.report.precision import precision_section
from biotrain.report.study import write_report
from biotrain.tracking import attach_report
from stages.common import run_main, stage_args


def main() -> None:
    args = stage_args(__doc__, "results", "metrics", "run-file", "reports")
    config = load_study(args.params, datasets=False)
    df = pd.read_csv(args.results, dtype={"session": str})
    metrics = json.loads(Path(args.metrics).read_text())
    l2_budget = load_constants(config.device.constants)["l2_budget_bytes"]
    device = device_section(df, args.reports, l2_budget, config.report_dpi)
    path = write_report(df, metrics, args.reports, dpi=config.report_dpi, extra_sections=[device, comparison_section(df), precision_section(df)])
    # the run the adapt stage recorded these results in
    run_id = json.loads(Path(args.run_file).read_text())["mlflow_run_id"]
    try:
        attach_report(config.tracking.uri, run_id, [path, *sorted((Path(args.reports) / "figures").glob("*.png"))])
    except TrackingError as err:  # the report stands on its own; say why the dashboard lacks it
        print(f"wrote {path}; not attached to MLflow: {err}")
        return
    print(f"wrote {path}; attached to MLflow run {run_id}")


if __name__ == "__main__":
    run_main(main, "report")
