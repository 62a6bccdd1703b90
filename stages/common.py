"""What every stage shares: the files a stage is told about on its command line, and how a stage
ends on an error or a signal. Parameters are read by ``biotrain.params.load_study``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

from biotrain.errors import UserError, debug_enabled
from biotrain.study import StudyConfig, StudyPaths

# what a stage's process sets for the services it starts, unless the user set it
SERVICE_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry from the ephemeral Prefect server (no internet)
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",  # a tracking server that stops answering fails in seconds
}

# Every file a stage reads or writes, by option name. dvc.yaml passes each on the command line
# (tests/pipeline check they agree); these defaults let a stage run by hand.
PATHS = {
    "windows": "data/windows", "splits": "data/splits", "models": "models/pretrained",
    "recordings": "data/recordings.json", "results": "results/adaptation.csv",
    "metrics": "metrics/adaptation.json", "run-file": "results/run.json", "reports": "reports",
    "sweeps": "results/sweeps", "sweep-reports": "reports/sweeps",
}


def _stop(signum, _frame):
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def run_main(main, name: str | None = None) -> None:
    """Run a stage's ``main``: a user error is one message (exit 2), a stop signal is recorded.

    SIGTERM is turned into KeyboardInterrupt, like Ctrl-C, so the stage's cleanup runs (staging
    folders removed, the MLflow parent run and its running children marked KILLED).
    """
    name = name or Path(sys.argv[0]).stem
    for key, value in SERVICE_ENV.items():
        os.environ.setdefault(key, value)
    signal.signal(signal.SIGTERM, _stop)
    try:
        main()
    except UserError as err:
        if debug_enabled():
            raise
        print(f"biotrain stage {name}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as err:  # an input an earlier stage makes: say which, and how to get it
        if debug_enabled():
            raise
        print(f"biotrain stage {name}: error: input {err.filename} is missing; run the stages before this one "
              f"(dvc repro, or biotrain run)", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as err:
        if debug_enabled():
            raise
        print(f"biotrain stage {name}: interrupted ({err or 'Ctrl-C'}); nothing partial was written",
              file=sys.stderr)
        sys.exit(130)


def stage_args(description: str, *paths: str, argv: list[str] | None = None) -> argparse.Namespace:
    """``--params`` and the stage's files (``paths``: names from :data:`PATHS`), quiet MNE/MOABB."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--params", default=None, help="parameters file (default: params.yaml)")
    for name in paths:
        parser.add_argument(f"--{name}", type=Path, default=Path(PATHS[name]), help="default: %(default)s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("mne", "moabb"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="mne")
    warnings.filterwarnings("ignore", category=FutureWarning)
    return args


def study_paths(args: argparse.Namespace) -> StudyPaths:
    """The folders the stage was told about (the others keep their defaults)."""
    return StudyPaths(**{k: getattr(args, k) for k in ("windows", "splits", "models") if hasattr(args, k)})


def read_folds(config: StudyConfig, paths: StudyPaths) -> dict[str, list[dict]]:
    """Every modality's folds, as the split stage wrote them."""
    return {m: json.loads(paths.splits_of(m).read_text())["folds"] for m in config.data.modalities}
