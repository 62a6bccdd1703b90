"""The ``sparse`` jobs' layers, picked when the study is planned: from the layer scores beside each
job's base model, under the job's ``sparse_budget_kb``, with the chip model's peak L2 of the step.

Picking at planning time fails a budget that cannot fit before any training starts, puts the pick
into the job (so it is part of the job's identity, its result rows and its MLflow tags), and
leaves the picking to one process: the estimates behind it are cached there.
"""

from __future__ import annotations

from dataclasses import replace

from ..adaptation.finetune import FinetuneConfig
from ..adaptation.sparse import pick_order, read_scores, select_layers
from ..device.study import step_costs
from ..models.checkpoint import load_checkpoint
from ..models.layers import weight_layers
from ..strategy_table import STRATEGY_TABLE
from .config import DeviceConfig


def pick_layers(jobs: list, finetune: FinetuneConfig, device: DeviceConfig | None) -> list:
    """``jobs`` with ``layers`` set on every job of a strategy that trains chosen layers."""
    device = device or DeviceConfig()
    out, specs = [], {}
    for job in jobs:
        if STRATEGY_TABLE[job.strategy].trains != "layers":
            out.append(job)
            continue
        if job.pretrained not in specs:
            model, spec = load_checkpoint(job.pretrained)
            specs[job.pretrained] = (list(weight_layers(model)), spec, read_scores(job.pretrained))
        layers, spec, scores = specs[job.pretrained]
        cfg = job.finetune(finetune)

        def peak_of(chosen: tuple[str, ...]) -> int:
            costs = step_costs(spec, job.strategy, cfg.batch_size, None, device.backend, device.constants,
                               device.program, layers=tuple(sorted(chosen)), precision=job.precision)
            return int(costs["peak_l2_bytes"])

        key = "sweep.grid.sparse_budget_kb" if "sparse_budget_kb" in job.grid else "adapt.sparse.budget_kb"
        chosen = select_layers(pick_order(layers, scores), peak_of, int(cfg.sparse_budget_kb * 1000), key)
        out.append(replace(job, layers=tuple(n for n in layers if n in chosen)))  # in forward order
    return out
