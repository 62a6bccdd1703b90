"""MI-BMINet, the EEG motor-imagery model of BRIEF section 3.

The two temporal kernels are lengths of time (``temporal_kernel_s``, ``depthwise_kernel_s``),
turned into samples at the model's ``sfreq``, so the same parameters fit data resampled to any
rate. ``Nf`` and ``Nf2`` (BRIEF's names) give them as counts of samples instead.

``padding="same"`` (the study's variant, the default) pads the temporal convolutions with explicit
zero-padding layers, so the flattened feature size is ``F2 * (T // 64)``: BRIEF's parameter count
(about 7.9k) and FLOP count (about 17.4 MFLOP forward at C=8, T=1900) assume it.
``padding="valid"`` is BRIEF section 3's on-device variant (no padding): the time axis shrinks by
``Nf - 1`` and ``Nf2 - 1``; the device cost model uses it for the reference case. No dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import BRIEF_SFREQ, BiosignalModel, make_norm

# BRIEF's kernels, Nf=128 and Nf2=16 samples at 500 Hz, as lengths of time
BRIEF_TEMPORAL_KERNEL_S = 0.256
BRIEF_DEPTHWISE_KERNEL_S = 0.032


def _same_pad(kernel: int) -> nn.ZeroPad2d:
    """Explicit 'same' padding along time (PyTorch's own padding='same' is slower for even kernels)."""
    left = (kernel - 1) // 2
    return nn.ZeroPad2d((left, kernel - 1 - left, 0, 0))


PADDINGS = ("same", "valid")


def kernel_samples(seconds: float | None, samples: int | None, default_s: float, sfreq: float,
                   names: tuple[str, str]) -> int:
    """A kernel's length in samples: ``samples`` as given, or ``seconds`` (or the default) at ``sfreq``."""
    if seconds is not None and samples is not None:
        raise ValueError(f"give {names[0]} (seconds) or {names[1]} (samples), not both")
    if samples is not None:
        n = samples
    else:
        seconds = default_s if seconds is None else seconds
        n = round(seconds * sfreq) if isinstance(seconds, (int, float)) and seconds > 0 else 0
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        given = f"{names[1]}={samples!r}" if samples is not None else f"{names[0]}={seconds!r} at {sfreq:g} Hz"
        raise ValueError(f"{given} is not a kernel of at least one sample")
    return n


def _feature_len(n_times: int, nf: int, nf2: int, padding: str) -> int:
    """Time steps left after both temporal convolutions and pools."""
    if padding == "same":
        return (n_times // 8) // 8
    return ((n_times - nf + 1) // 8 - nf2 + 1) // 8


class MIBMINet(BiosignalModel):
    def __init__(
        self,
        n_chans: int = 8,
        n_times: int = 1900,
        n_outputs: int = 2,
        norm: str = "batch",
        sfreq: float = BRIEF_SFREQ,
        F1: int = 32,
        D: int = 1,
        F2: int = 32,
        temporal_kernel_s: float | None = None,
        depthwise_kernel_s: float | None = None,
        Nf: int | None = None,
        Nf2: int | None = None,
        padding: str = "same",
    ):
        super().__init__(n_chans, n_times, n_outputs, norm, sfreq)
        Nf = kernel_samples(temporal_kernel_s, Nf, BRIEF_TEMPORAL_KERNEL_S, self.sfreq, ("temporal_kernel_s", "Nf"))
        Nf2 = kernel_samples(depthwise_kernel_s, Nf2, BRIEF_DEPTHWISE_KERNEL_S, self.sfreq,
                             ("depthwise_kernel_s", "Nf2"))
        self.kernel_lengths = (Nf, Nf2)  # temporal and depthwise kernels, in samples
        if padding not in PADDINGS:
            raise ValueError(f"MI-BMINet padding={padding!r} is not supported; use one of {PADDINGS}")
        n_feat = _feature_len(n_times, Nf, Nf2, padding)
        if n_feat < 1:
            raise ValueError(f"MI-BMINet needs a longer input: n_times={n_times} leaves no time step after "
                             f"its convolutions and two pools of 8 (padding={padding!r})")
        self.padding = padding
        f1d = F1 * D
        self.spatial = nn.Conv2d(1, F1, (n_chans, 1), bias=False)
        self.norm1 = make_norm(norm, F1)
        self.pad_temporal = _same_pad(Nf) if padding == "same" else nn.Identity()
        self.temporal = nn.Conv2d(F1, f1d, (1, Nf), groups=F1, bias=False)
        self.norm2 = make_norm(norm, f1d)
        self.act2 = nn.ReLU()
        self.pool2 = nn.AvgPool2d((1, 8))
        self.pad_depthwise = _same_pad(Nf2) if padding == "same" else nn.Identity()
        self.depthwise = nn.Conv2d(f1d, f1d, (1, Nf2), groups=f1d, bias=False)
        self.pointwise = nn.Conv2d(f1d, F2, (1, 1), bias=False)
        self.norm3 = make_norm(norm, F2)
        self.act3 = nn.ReLU()
        self.pool3 = nn.AvgPool2d((1, 8))
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(F2 * n_feat, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(self.spatial(x))
        x = self.pool2(self.act2(self.norm2(self.temporal(self.pad_temporal(x)))))
        x = self.pool3(self.act3(self.norm3(self.pointwise(self.depthwise(self.pad_depthwise(x))))))
        return self.classifier(self.flatten(x))
