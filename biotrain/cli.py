"""``biotrain`` command line: check parameters, run the pipeline, estimate device costs.

A mistake the user can fix (a parameter, a recording, an unreachable service) is one message
and exit status 2; ``--debug`` (or ``BIOTRAIN_DEBUG=1``) adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .errors import DEBUG_ENV, UserError, debug_enabled

GRACE_S = 30.0  # after a stop signal, how long the pipeline may take to record it before SIGKILL


def check_params_file(path: str | os.PathLike) -> dict:
    """The stages' own loader: the command line checks a params file exactly as a stage reads it."""
    from .params import load_params

    return load_params(path)


def _validate(args) -> int:
    check_params_file(args.params)
    print(f"{args.params}: valid")
    return 0


def _run(args) -> int:
    """``dvc repro`` after a parameter check, so a bad value never starts a stage.

    With ``--profile NAME`` (before any ``dvc repro`` argument) the pipeline runs on
    ``profiles/NAME.yaml`` in ``runs/NAME/``, leaving ``params.yaml`` and its outputs alone.
    """
    profile, dvc_args = _take_profile(args.dvc_args)
    if profile is None:
        check_params_file("params.yaml")
        return run_in_group([sys.executable, "-m", "dvc", "repro", *dvc_args])
    from .profiles import prepare_profile_run

    root = Path.cwd().resolve()
    source = root / "profiles" / f"{profile}.yaml"
    if source.is_file():
        check_params_file(source)
    where = prepare_profile_run(root, profile).relative_to(root)
    print(f"profile {profile}: running in {where}/ (report: {where}/reports/study.md)", flush=True)
    return run_in_group([sys.executable, "-m", "dvc", "repro", *dvc_args], cwd=root / where)


def _take_profile(words: list[str]) -> tuple[str | None, list[str]]:
    """``--profile NAME`` or ``--profile=NAME`` at the start of ``run``'s arguments."""
    if words and words[0] == "--profile":
        if len(words) < 2:
            raise UserError("--profile needs a name, e.g. `biotrain run --profile tiny`")
        return words[1], words[2:]
    if words and words[0].startswith("--profile="):
        return words[0].split("=", 1)[1], words[1:]
    return None, words


def _results(args) -> int:
    """The accuracy table of the last run, a row per modality and scenario (``dvc metrics show``
    prints the same numbers as one wide row)."""
    import pandas as pd

    from .report.tables import accuracy_table

    path = Path(args.csv)
    if not path.is_file():
        raise UserError(f"no results at {path}: run the study first (`biotrain run`)")
    print(accuracy_table(pd.read_csv(path, dtype={"session": str})), end="")
    return 0


def _ui(args) -> int:
    """MLflow's UI on the study's store, opened on the study's runs with its metrics as columns."""
    from .params import load_study
    from .tracking.ui import serve

    tracking = load_study(args.params).tracking
    try:
        return serve(tracking.uri, tracking.experiment, port=args.port)
    except LookupError as err:
        raise UserError(str(err)) from None


def run_in_group(cmd: list[str], cwd: str | os.PathLike | None = None) -> int:
    """Run ``cmd`` in a process group of its own; a stop signal here stops the whole group.

    SIGINT, SIGTERM and SIGHUP are passed on to the group (``dvc repro`` and the stage it runs,
    with its workers), which then gets ``GRACE_S`` to record the interruption before SIGKILL:
    killing ``biotrain run`` never leaves an orphaned stage behind.
    """
    proc = subprocess.Popen(cmd, start_new_session=True, cwd=cwd)
    stopped: list[int] = []

    def forward(signum, _frame):
        stopped.append(signum)
        _signal_group(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                status = proc.wait(timeout=0.5 if stopped else None)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped:
        _reap_group(proc.pid)
        print(f"biotrain run: stopped by signal {signal.Signals(stopped[0]).name}", file=sys.stderr)
        return 128 + stopped[0]
    return status


def _signal_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _reap_group(pgid: int) -> None:
    """Wait for what is left of the group to end (it is recording the stop), then SIGKILL it."""
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        if not _signal_group(pgid, 0):
            return
        time.sleep(0.2)
    _signal_group(pgid, signal.SIGKILL)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biotrain", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a parameters file and list every problem")
    v.add_argument("params", nargs="?", default="params.yaml")
    v.set_defaults(func=_validate)
    r = sub.add_parser("run", help="validate params.yaml, then run the DVC pipeline (dvc repro); "
                                   "every further argument goes to dvc repro (e.g. --dry, -s report); "
                                   "`run --profile tiny` runs profiles/tiny.yaml in runs/tiny/")
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


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; everything after ``run`` is passed to ``dvc repro`` untouched."""
    parser = build_parser()
    for i, word in enumerate(argv):
        if not word.startswith("-"):
            if word == "run":
                args = parser.parse_args(argv[: i + 1])
                args.dvc_args = argv[i + 1:]
                return args
            break
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # stages started by dvc repro inherit it
    try:
        return args.func(args)
    except UserError as err:
        if debug_enabled():
            raise
        print(f"biotrain {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
