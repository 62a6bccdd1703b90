"""The CV32E40P core (GAP9's cluster core class) with its FPU as a Verilator model: a
cycle-accurate target for the exported training step (``biotrain device run --target rtl``)."""

from .build import CoreConfig, RtlMissing, missing, simulator

__all__ = ["CoreConfig", "RtlMissing", "missing", "simulator"]
