"""``biotrain`` command line: check parameters, run the pipeline, estimate device costs."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml


def _validate(args) -> int:
    from .config import ParamsError, validate_params

    try:
        validate_params(yaml.safe_load(Path(args.params).read_text()))
    except ParamsError as err:
        print(err, file=sys.stderr)
        return 2
    print(f"{args.params}: valid")
    return 0


def _run(args) -> int:
    """``dvc repro`` after a parameter check, so a bad value never starts a stage.

    With ``--profile NAME`` the pipeline runs on ``profiles/NAME.yaml`` in ``runs/NAME/``.
    """
    cwd = Path.cwd()
    if args.profile:
        from .profiles import prepare_profile_run

        if _validate(argparse.Namespace(params=f"profiles/{args.profile}.yaml")):
            return 2
        cwd = prepare_profile_run(Path.cwd(), args.profile)
        print(f"profile {args.profile}: running in {cwd.relative_to(Path.cwd().resolve())}/ "
              f"(report: {cwd.relative_to(Path.cwd().resolve())}/reports/study.md)", flush=True)
    elif _validate(argparse.Namespace(params="params.yaml")):
        return 2
    return subprocess.call([sys.executable, "-m", "dvc", "repro", *args.dvc_args], cwd=cwd)


def _results(args) -> int:
    """The accuracy table of the last run, a row per modality and scenario (``dvc metrics show``
    prints the same numbers as one wide row)."""
    import pandas as pd

    from .report.tables import accuracy_table

    path = Path(args.csv)
    if not path.is_file():
        print(f"no results at {path}: run the study first (`biotrain run`)", file=sys.stderr)
        return 2
    print(accuracy_table(pd.read_csv(path, dtype={"session": str})), end="")
    return 0


def _ui(args) -> int:
    """MLflow's UI on the study's store, opened on the study's runs with its metrics as columns."""
    from .tracking import default_tracking_uri
    from .tracking.ui import serve

    tracking = (yaml.safe_load(Path(args.params).read_text()) or {}).get("tracking") or {}
    uri = tracking.get("uri") or default_tracking_uri(Path(args.params).resolve().parent)
    try:
        return serve(uri, tracking.get("experiment", "biotrain"), port=args.port)
    except LookupError as err:
        print(err, file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biotrain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a parameters file and list every problem")
    v.add_argument("params", nargs="?", default="params.yaml")
    v.set_defaults(func=_validate)
    r = sub.add_parser("run", help="validate params.yaml, then run the DVC pipeline (dvc repro)")
    r.add_argument("--profile", help="run on profiles/PROFILE.yaml in runs/PROFILE/ (e.g. tiny: about 4 minutes)")
    r.add_argument("dvc_args", nargs=argparse.REMAINDER, help="extra arguments for dvc repro")
    r.set_defaults(func=_run)
    res = sub.add_parser("results", help="print the study's accuracy table (strategies as columns)")
    res.add_argument("--csv", default="results/adaptation.csv", help="results file (default: %(default)s)")
    res.set_defaults(func=_results)
    ui = sub.add_parser("ui", help="start MLflow's UI on the study's runs, metrics as columns")
    ui.add_argument("--params", default="params.yaml", help="where tracking.uri and tracking.experiment are read")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=_ui)
    try:
        from .device.cli import add_subparser
    except ImportError:  # the device backend is optional for the study pipeline
        pass
    else:
        add_subparser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
