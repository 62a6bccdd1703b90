"""Model registry: every model is a :class:`BiosignalModel` built from the data's shape and rate."""

from __future__ import annotations

from .base import BRIEF_SFREQ, NORMS, PIPELINE_ARGS, BiosignalModel, make_norm
from .epidenet import EpiDeNet
from .mi_bminet import MIBMINet

MODELS: dict[str, type[BiosignalModel]] = {"mi_bminet": MIBMINet, "epidenet": EpiDeNet}


def build_model(name: str, n_chans: int, n_times: int, n_outputs: int, norm: str = "batch",
                sfreq: float = BRIEF_SFREQ, **kwargs) -> BiosignalModel:
    """Build a registered model for ``(n_chans, n_times)`` windows at ``sfreq`` Hz and ``n_outputs`` classes."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models are {sorted(MODELS)}")
    return MODELS[name](n_chans=n_chans, n_times=n_times, n_outputs=n_outputs, norm=norm, sfreq=sfreq, **kwargs)


__all__ = ["BRIEF_SFREQ", "MODELS", "NORMS", "PIPELINE_ARGS", "BiosignalModel", "EpiDeNet", "MIBMINet",
           "build_model", "make_norm"]
