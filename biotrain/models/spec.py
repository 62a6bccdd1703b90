"""A model's spec: what rebuilds its architecture (registry name, input shape and rate, arguments).

Checkpoints, exported device programs and the device cost figures all carry one, so a model
rebuilt anywhere has the layers, and the sampling rate, of the one that was trained.
"""

from __future__ import annotations

from . import BRIEF_SFREQ, PIPELINE_ARGS, build_model
from .base import BiosignalModel


def model_spec(name: str, model: BiosignalModel, kwargs: dict | None = None) -> dict:
    """``model``'s shape and rate as it holds them, and the other arguments it was built with."""
    return {
        "name": name, "n_chans": model.n_chans, "n_times": model.n_times, "n_outputs": model.n_outputs,
        "norm": model.norm, "sfreq": model.sfreq,
        "kwargs": {k: v for k, v in (kwargs or {}).items() if k not in PIPELINE_ARGS},
    }


def model_from_spec(spec: dict) -> BiosignalModel:
    """A fresh model from a spec; a spec written before models carried a rate is at BRIEF's 500 Hz.

    Such older specs gave kernels in samples (or none: BRIEF's, 128 and 16 samples at 500 Hz), so
    the default rate rebuilds the same layers.
    """
    return build_model(spec["name"], spec["n_chans"], spec["n_times"], spec["n_outputs"], spec["norm"],
                       sfreq=spec.get("sfreq", BRIEF_SFREQ), **(spec.get("kwargs") or {}))
