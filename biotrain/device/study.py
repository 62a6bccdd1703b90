"""Device figures for the study: what each strategy's training step costs on the chip.

The adapt flow calls :func:`step_costs` once per task; the figures depend only on the model
architecture, the strategy and the batching, so they are computed once per process and reused.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache

from ..models.spec import model_from_spec
from ..strategy_table import STRATEGY_TABLE
from .estimate import estimate_step

# the figures carried into results/adaptation.csv and MLflow, in this order
FIELDS = (
    "fits_on_chip", "peak_l2_bytes", "lower_bound_l2_bytes", "peak_l1_bytes", "latency_ms_per_step",
    "samples_per_s", "power_mw", "energy_mj_per_step", "energy_mj_per_sample",
    "program", "power_mw_low", "power_mw_high",
)  # a session's time and energy come from the study's calibration size and epochs: calibration_costs


_LOCK = threading.Lock()  # graph capture uses process-wide tracing state: one estimate at a time


@lru_cache(maxsize=64)
def _cached(spec_json: str, strategy: str, batch_size: int, micro_batch: int | None, backend: str, constants_json: str,
            program: str | None, layers: tuple[str, ...] | None, rank: int | None, precision: str) -> tuple:
    spec = json.loads(spec_json)
    model = model_from_spec(spec)
    est = estimate_step(model, strategy, batch_size=batch_size, micro_batch=micro_batch, backend=backend,
                        constants=json.loads(constants_json) or None, program=program, check=False,
                        layers=layers, rank=rank, precision=precision).to_dict()
    return tuple((k, est.get(k)) for k in FIELDS) + (("message", est.get("message")),)


def step_costs(spec: dict, strategy: str, batch_size: int = 8, micro_batch: int | None = None,
               backend: str = "gap9-sim", constants: dict | None = None, program: str | None = None,
               layers: tuple[str, ...] | None = None, rank: int | None = None, precision: str = "fp32") -> dict:
    """Chip cost of one training step of ``strategy`` (``{}`` for ``none``, which never trains).

    ``spec`` is a checkpoint's model spec (name, n_chans, n_times, n_outputs, norm, sfreq, kwargs).
    When the plan does not fit the L2 budget, ``fits_on_chip`` is False and latency,
    throughput and energy are None: the chip could never deliver them. ``program``: which costed
    program (``gap9.yaml``; None: its default). ``layers``: what ``sparse`` trains (this job's pick);
    ``rank``: ``lora``'s rank; both are part of the cache key (a job's figures are its own step's).
    ``precision``: the step's number format (``sixteen.py``).
    """
    if strategy == "none":
        return {}
    key = json.dumps(spec, sort_keys=True)
    with _LOCK:
        trains = STRATEGY_TABLE[strategy].trains
        layers = tuple(layers) if trains == "layers" and layers is not None else None
        rank = int(rank) if trains == "adapters" and rank is not None else None
        return dict(_cached(key, strategy, int(batch_size), micro_batch, backend,
                            json.dumps(constants or {}, sort_keys=True), program, layers, rank, precision))


def calibration_costs(costs: dict, n_calib: int, epochs: int) -> dict:
    """Time and energy of one whole calibration (``epochs`` passes over ``n_calib`` samples) on chip."""
    if not costs or not costs.get("fits_on_chip") or not costs.get("samples_per_s"):
        return {"calib_time_s": None, "calib_energy_mj": None}
    samples = n_calib * epochs
    return {"calib_time_s": samples / costs["samples_per_s"], "calib_energy_mj": samples * costs["energy_mj_per_sample"]}


def device_row_fields(costs: dict, n_calib: int, epochs: int) -> dict:
    """The ``device_*`` columns of a result row (empty for ``none``)."""
    keep = ("fits_on_chip", "peak_l2_bytes", "latency_ms_per_step", "samples_per_s", "energy_mj_per_sample")
    fields = {f"device_{k}": costs.get(k) for k in keep}
    fields.update({f"device_{k}": v for k, v in calibration_costs(costs, n_calib, epochs).items()})
    return fields
