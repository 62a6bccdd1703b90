"""Jobs of one group (:func:`.groups.group_jobs`) trained together, recorded per job.

Same rows, child runs and failure records as :func:`.run_job.run_job` for each job; only the
fine-tuning of a session runs as one :func:`~biotrain.adaptation.batched.adapt_many` call for
every job of the group, so the group's time is shared evenly by its jobs' rows.
"""

from __future__ import annotations

import time
from functools import partial

import torch

from ..adaptation.batched import adapt_many
from ..adaptation.scenarios import run_day1_many, run_longitudinal_many
from .config import AdaptSettings
from .jobs import Job
from .records import ChildRuns, now_ms
from .run_job import load_inputs, record_failure, run_job, with_task_fields


def run_group(jobs: list[Job], settings: AdaptSettings, runs: ChildRuns, force: bool = False) -> list[list[dict]]:
    """Day-1 of every job in one ``adapt_many`` call, then their longitudinal chains session by
    session; rows per job. ``force``: batch even where ``adapt_many`` would not (tests, measurements).

    A failure is recorded as a FAILED child run, for the scenario it happened in, of every job of
    the group not yet recorded in it, then raised.
    """
    if len(jobs) == 1:
        return [run_job(jobs[0], settings, runs)]
    start = time.perf_counter()
    torch.set_num_threads(settings.torch_threads)
    finetune, strategy, executed_on = jobs[0].finetune(settings.finetune), jobs[0].strategy, "host"
    adapt_all = partial(adapt_many, force=force)
    seeds = [j.seed for j in jobs]
    scenario, begun, pending, inputs = "day1", now_ms(), list(range(len(jobs))), []

    def sessions_of(k: int) -> list[str]:
        if len(inputs) <= k:
            return []
        fold = inputs[k].fold
        return [fold["day1"]["session"]] if scenario == "day1" else [s["session"] for s in fold["longitudinal"]]

    def record_pending(rows_of) -> None:
        while pending:  # a job leaves ``pending`` once its child run is recorded
            k = pending[0]
            runs.record(jobs[k], scenario, sessions_of(k), rows_of(k), inputs[k].costs, begun, executed_on)
            pending.pop(0)

    try:
        inputs = [load_inputs(j, settings, executed_on) for j in jobs]
        X, y, folds, contexts = ([getattr(i, a) for i in inputs] for a in ("X", "y", "fold", "context"))
        work = time.perf_counter()
        day1, models = run_day1_many([i.base for i in inputs], X, y, folds, strategy, finetune, seeds, contexts,
                                     adapt_all)
        each = (time.perf_counter() - work) / len(jobs)
        for r in day1:
            r["work_seconds"] = each
        rows = [[r] for r in day1]
        record_pending(lambda k: rows[k])

        chained = [k for k, j in enumerate(jobs) if j.longitudinal]
        if chained:
            scenario, begun, pending = "longitudinal", now_ms(), list(chained)
            work = time.perf_counter()
            pick = lambda values: [values[k] for k in chained]  # noqa: E731
            chains = run_longitudinal_many(pick(models), pick(X), pick(y), pick(folds), strategy, finetune, pick(seeds),
                                           pick(contexts), adapt_all)
            each = (time.perf_counter() - work) / max(1, sum(map(len, chains)))  # shared by every chain's sessions
            for k, chain in zip(chained, chains):
                for r in chain:
                    r["work_seconds"] = each
                rows[k] += chain
            record_pending(lambda k: rows[k][1:])
    except Exception as err:
        for k in pending:
            record_failure(runs, jobs[k], scenario, sessions_of(k), inputs[k].costs if k < len(inputs) else {},
                           begun, executed_on, err)
        raise
    each = (time.perf_counter() - start) / sum(map(len, rows))
    return [with_task_fields(r, each, i.costs, finetune, settings) for r, i in zip(rows, inputs)]
