"""What every stage shares: reading and validating ``params.yaml`` (the library never does)."""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from pathlib import Path

import yaml

from biotrain.config import validate_params

# no telemetry from the ephemeral Prefect server (the machine may have no internet)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def load_params(path: str | os.PathLike | None = None) -> dict:
    path = Path(path or os.environ.get("BIOTRAIN_PARAMS", "params.yaml"))
    with open(path) as fh:
        return validate_params(yaml.safe_load(fh))


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
