"""The ``gap9-sim`` device backend: what one training step costs on a GAP9 MCU.

``estimate_step`` captures the real training step of a PyTorch model (forward, loss, backward,
SGD-with-momentum update) as aten graphs, plans every tensor into one L2 arena, checks each
kernel's L1 tile, and costs cycles, latency and energy with the constants of ``gap9.yaml``.
See docs/device.md.
"""

from .capture import capture_step
from .constants import CONSTANTS_FILE, load_constants
from .estimate import BACKENDS, DeviceEstimate, estimate_step

__all__ = ["BACKENDS", "CONSTANTS_FILE", "DeviceEstimate", "capture_step", "estimate_step",
           "load_constants"]
