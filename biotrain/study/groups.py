"""Which jobs train together: a pure planner over a study's jobs.

Same-shaped jobs can train faster as one computation, so a group of them is one Prefect task.
Jobs batch only where :func:`~biotrain.adaptation.batched.adapt_many` trains them as one
computation and that measured faster (``benchmarks/README.md``): same modality, model, strategy
and fine-tuning settings (grid point included, seed aside; ``sparse``: the same picked layers), the fast host loop, fine-tuning on
the host (a ``device.execute`` target runs its program per job), the same longitudinal flag, and
``batching_pays`` for the model and strategy. Everything else is a group of one. Subjects with
different numbers of later sessions may share a group: the chain batches the sessions they share.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from ..adaptation.batched import batching_pays, min_batched_tasks
from ..models import MODELS
from .config import AdaptSettings
from .jobs import Job


def batch_key(job: Job, settings: AdaptSettings) -> str | None:
    """What a job must share with others to train with them; ``None``: it runs alone."""
    finetune = job.finetune(settings.finetune)
    model = MODELS.get(job.model)
    on_host = settings.device is None or settings.device.target_for(job.subject, job.strategy) == "host"
    if finetune.host_loop != "fast" or not on_host or model is None or not batching_pays(model.__name__, job.strategy):
        return None
    point = {k: v for k, v in job.grid.items() if k != "seed"}
    return json.dumps([job.modality, job.dataset, job.model, job.label, job.longitudinal, point, job.layers],
                      sort_keys=True, default=str)


def group_jobs(jobs: Sequence[Job], settings: AdaptSettings, max_size: int = 16, force: bool = False) -> list[list[Job]]:
    """The jobs as groups of at most ``max_size`` (balanced), in the order of their first job.

    A batchable set too small to pay (under :func:`min_batched_tasks` per group) stays one job per
    group; ``force`` groups from two jobs (tests and measurements; pair it with ``run_group(force=True)``).
    """
    buckets: dict[str, list[int]] = {}
    groups: list[list[int]] = []
    for i, job in enumerate(jobs):
        key = batch_key(job, settings)
        if key is None:
            groups.append([i])
        else:
            buckets.setdefault(key, []).append(i)
    for members in buckets.values():
        n_groups = math.ceil(len(members) / max_size)
        size = math.ceil(len(members) / n_groups)
        chunks = [members[j:j + size] for j in range(0, len(members), size)]
        if min(len(c) for c in chunks) < (2 if force else min_batched_tasks(jobs[members[0]].strategy)):
            chunks = [[i] for i in members]
        groups += chunks
    return [[jobs[i] for i in group] for group in sorted(groups)]


def rows_in_job_order(jobs: Sequence[Job], groups: list[list[Job]], results: list[list[list[dict]]]) -> list[dict]:
    """Every group's rows (per job) flattened in the jobs' order: the rows of a per-job run."""
    by_job = {id(job): rows for group, out in zip(groups, results) for job, rows in zip(group, out, strict=True)}
    if len(by_job) != len(jobs):
        raise ValueError(f"{len(jobs)} jobs but rows for {len(by_job)} (each job once, in exactly one group)")
    return [row for job in jobs for row in by_job[id(job)]]
