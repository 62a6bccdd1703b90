"""What every stage shares: reading and validating ``params.yaml`` (the library never does)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

from biotrain.cli import check_params_file
from biotrain.errors import UserError, debug_enabled

# no telemetry from the ephemeral Prefect server (the machine may have no internet)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# a tracking server that stops answering mid-run fails in seconds, not after minutes of retries
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")

# the adapt stage's MLflow parent run id, beside its results: the report attaches to that run
RUN_FILE = "results/run.json"


def load_params(path: str | os.PathLike | None = None) -> dict:
    """Parse and validate params.yaml and check the tracking store answers (a UserError if not)."""
    return check_params_file(Path(path or os.environ.get("BIOTRAIN_PARAMS", "params.yaml")))


def _stop(signum, _frame):
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def run_main(main, name: str | None = None) -> None:
    """Run a stage's ``main``: a user error is one message (exit 2), a stop signal is recorded.

    SIGTERM is turned into KeyboardInterrupt, like Ctrl-C, so the stage's cleanup runs (staging
    folders removed, the MLflow parent run and its running children marked KILLED).
    """
    name = name or Path(sys.argv[0]).stem
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


def stage_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default=None, help="parameters file (default: params.yaml)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("mne", "moabb"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="mne")
    warnings.filterwarnings("ignore", category=FutureWarning)
    return args


def modality_paths(modality: str) -> dict[str, Path]:
    """The files one modality flows through, stage to stage."""
    return {
        "windows": Path("data/windows") / modality,
        "splits": Path("data/splits") / f"{modality}.json",
        "models_dir": Path("models/pretrained"),
    }
