"""Stage ``report``: ``reports/study.md`` with tables and plots."""

from __future__ import annotations

import json

import pandas as pd

from biotrain.device import load_constants
from biotrain.report.device import device_section
from biotrain.report.study import write_report
from stages.common import load_params, stage_args


def main() -> None:
    params = load_params(stage_args(__doc__).params)
    df = pd.read_csv("results/adaptation.csv", dtype={"session": str})
    with open("metrics/adaptation.json") as fh:
        metrics = json.load(fh)
    l2_budget = load_constants(params["device"]["constants"])["l2_budget_bytes"]
    device = device_section(df, "reports", l2_budget, params["report"]["dpi"])
    path = write_report(df, metrics, "reports", dpi=params["report"]["dpi"], extra_sections=[device])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
