"""Model files: the weights together with what is needed to rebuild the architecture."""

from __future__ import annotations

from pathlib import Path

import torch

from ..io import atomic_path
from . import build_model
from .base import BiosignalModel


def save_checkpoint(path: str | Path, model: BiosignalModel, name: str, kwargs: dict | None = None) -> None:
    spec = {
        "name": name, "n_chans": model.n_chans, "n_times": model.n_times,
        "n_outputs": model.n_outputs, "norm": model.norm, "kwargs": dict(kwargs or {}),
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"spec": spec, "state": model.state_dict()}, tmp)


def model_from_state(spec: dict, state: dict) -> BiosignalModel:
    model = build_model(spec["name"], spec["n_chans"], spec["n_times"], spec["n_outputs"], spec["norm"], **spec["kwargs"])
    model.load_state_dict(state)
    return model


def load_checkpoint(path: str | Path) -> tuple[BiosignalModel, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return model_from_state(ckpt["spec"], ckpt["state"]), ckpt["spec"]
