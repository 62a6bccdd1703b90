"""The one small interface every biosignal model shares.

Strategies (``last_layer``, ``full``, ``edge``) and the device cost model only rely on this
contract: input ``(batch, 1, n_chans, n_times)``, a ``classifier`` attribute holding the last
layer, and a ``norm`` of ``"batch"`` or ``"group"`` chosen at construction. A model also knows
the rate its windows were sampled at (``sfreq``), so lengths it takes in seconds become samples
and a rebuilt model matches the data it was trained on.
"""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "group")
# the rate BRIEF's reference shapes are given at (8 x 1900 and 2 x 1000 samples): the default
# for callers that build those references and name no rate
BRIEF_SFREQ = 500.0
# constructor arguments the pipeline sets from the data and the strategy, never params.yaml
PIPELINE_ARGS = ("n_chans", "n_times", "n_outputs", "norm", "sfreq")


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
    """Base class: records the input shape and rate, the class count and the normalization kind."""

    def __init__(self, n_chans: int, n_times: int, n_outputs: int, norm: str = "batch", sfreq: float = BRIEF_SFREQ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not supported; use one of {NORMS}")
        for name, value in (("n_chans", n_chans), ("n_times", n_times), ("n_outputs", n_outputs)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")
        if not float(sfreq) > 0:
            raise ValueError(f"sfreq must be a rate in Hz > 0, got {sfreq!r}")
        self.n_chans = int(n_chans)
        self.n_times = int(n_times)
        self.n_outputs = int(n_outputs)
        self.norm = norm
        self.sfreq = float(sfreq)

    classifier: nn.Module  # the last layer: the only part ``last_layer`` trains

    @property
    def window_s(self) -> float:
        """The input window in seconds: ``n_times`` samples at ``sfreq`` Hz."""
        return self.n_times / self.sfreq

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def chain(self) -> list[tuple[str, nn.Module]]:
        """The top-level layers in forward order: ``forward(x)`` applies them one after another.

        A fine-tuning loop that freezes a prefix of the model computes the prefix once and runs
        only the rest; every registered model is such a chain (``tests/models`` checks it)."""
        return list(self.named_children())
