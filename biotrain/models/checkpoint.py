"""Model files: the weights together with the spec that rebuilds the architecture."""

from __future__ import annotations

from pathlib import Path

import torch

from ..io import atomic_path
from .base import BiosignalModel
from .spec import model_from_spec, model_spec


def save_checkpoint(path: str | Path, model: BiosignalModel, name: str, kwargs: dict | None = None) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"spec": model_spec(name, model, kwargs), "state": model.state_dict()}, tmp)


def model_from_state(spec: dict, state: dict) -> BiosignalModel:
    model = model_from_spec(spec)
    model.load_state_dict(state)
    return model


def load_checkpoint(path: str | Path) -> tuple[BiosignalModel, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return model_from_state(ckpt["spec"], ckpt["state"]), ckpt["spec"]
