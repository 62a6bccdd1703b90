"""Stage ``report``: ``reports/study.md`` with tables and plots."""

from __future__ import annotations

import json

import pandas as pd

from biotrain.report.study import write_report
from stages.common import load_params, stage_args


def main() -> None:
    params = load_params(stage_args(__doc__).params)
    df = pd.read_csv("results/adaptation.csv", dtype={"session": str})
    with open("metrics/adaptation.json") as fh:
        metrics = json.load(fh)
    path = write_report(df, metrics, "reports", dpi=params["report"]["dpi"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
