"""The one small interface every biosignal model shares.

Strategies (``last_layer``, ``full``, ``edge``) and the device cost model only rely on this
contract: input ``(batch, 1, n_chans, n_times)``, a ``classifier`` attribute holding the last
layer, and a ``norm`` of ``"batch"`` or ``"group"`` chosen at construction.
"""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "group")


def make_norm(kind: str, n_features: int) -> nn.Module:
    """BatchNorm (needs the whole batch) or GroupNorm with one group (works per sample).

    GroupNorm with a single group normalises each sample on its own, which is what lets the
    ``edge`` strategy run micro-batches of 1 with gradient accumulation.
    """
    if kind == "batch":
        return nn.BatchNorm2d(n_features)
    if kind == "group":
        return nn.GroupNorm(1, n_features)
    raise ValueError(f"norm={kind!r} is not supported; use one of {NORMS}")


class BiosignalModel(nn.Module):
    """Base class: records the input shape, the class count and the normalization kind."""

    def __init__(self, n_chans: int, n_times: int, n_outputs: int, norm: str = "batch"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not supported; use one of {NORMS}")
        for name, value in (("n_chans", n_chans), ("n_times", n_times), ("n_outputs", n_outputs)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")
        self.n_chans = int(n_chans)
        self.n_times = int(n_times)
        self.n_outputs = int(n_outputs)
        self.norm = norm

    classifier: nn.Module  # the last layer: the only part ``last_layer`` trains

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
