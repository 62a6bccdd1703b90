"""Models and windows of the default cohort's shapes, shared by the fine-tuning loop tests."""

import numpy as np
import torch
from torch import nn

from biotrain.models import build_model

# the default cohort's shapes (params.yaml): EEG 8 x 400 at 200 Hz, EOG 2 derived channels x 1000
SHAPES = {"mi_bminet": (8, 400, 2, {"Nf": 64, "Nf2": 8}), "epidenet": (2, 1000, 11, {})}


def model(name, norm, seed=0):
    """A model with pretrained-looking BatchNorm statistics (not the identity)."""
    C, T, K, kw = SHAPES[name]
    torch.manual_seed(seed)
    built = build_model(name, C, T, K, norm, **kw)
    for m in built.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
            m.running_var.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(2))
    return built


def data(name, n, seed=0):
    """``n`` random windows and labels of the model's shape."""
    C, T, K, _ = SHAPES[name]
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, C, T)).astype(np.float32), rng.integers(0, K, n)


def rel(a, b):
    """Relative difference of ``a`` from ``b`` (norms)."""
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()
