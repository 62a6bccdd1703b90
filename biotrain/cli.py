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
    """``dvc repro`` after a parameter check, so a bad value never starts a stage."""
    if _validate(argparse.Namespace(params="params.yaml")):
        return 2
    return subprocess.call(["dvc", "repro", *args.dvc_args])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biotrain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a parameters file and list every problem")
    v.add_argument("params", nargs="?", default="params.yaml")
    v.set_defaults(func=_validate)
    r = sub.add_parser("run", help="validate params.yaml, then run the DVC pipeline (dvc repro)")
    r.add_argument("dvc_args", nargs=argparse.REMAINDER, help="extra arguments for dvc repro")
    r.set_defaults(func=_run)
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
