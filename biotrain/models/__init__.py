"""Model registry: every model is a :class:`BiosignalModel` built from the data's shape."""

from __future__ import annotations

from .base import NORMS, BiosignalModel, make_norm
from .epidenet import EpiDeNet
from .mi_bminet import MIBMINet

MODELS: dict[str, type[BiosignalModel]] = {"mi_bminet": MIBMINet, "epidenet": EpiDeNet}


def build_model(name: str, n_chans: int, n_times: int, n_outputs: int, norm: str = "batch", **kwargs) -> BiosignalModel:
    """Build a registered model for an input of ``(n_chans, n_times)`` and ``n_outputs`` classes."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models are {sorted(MODELS)}")
    return MODELS[name](n_chans=n_chans, n_times=n_times, n_outputs=n_outputs, norm=norm, **kwargs)


__all__ = ["MODELS", "NORMS", "BiosignalModel", "EpiDeNet", "MIBMINet", "build_model", "make_norm"]
