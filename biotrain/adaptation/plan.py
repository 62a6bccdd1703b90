"""The list of adaptation tasks of a study: one per (modality, subject, scenario, strategy, seed)."""

from __future__ import annotations

import hashlib
import itertools
import json
from functools import lru_cache
from pathlib import Path

from .strategies import NORM_OF


def pretrained_path(models_dir: str | Path, modality: str, norm: str, subject: int) -> Path:
    """Where the base model that never saw ``subject`` lives."""
    return Path(models_dir) / modality / norm / f"subject-{subject}.pt"


def plan_jobs(inputs: dict[str, dict], folds: dict[str, list[dict]], strategies: list[str], seeds: list[int]) -> list[dict]:
    """Day-1 jobs; each carries whether a longitudinal job should chain after it.

    ``inputs[modality]`` holds ``windows``, ``splits``, ``models_dir``, ``dataset``, ``model``.
    """
    jobs = []
    for modality, spec in inputs.items():
        for fold in folds[modality]:
            for strategy in strategies:
                for seed in seeds:
                    jobs.append({
                        "grid": {},
                        "modality": modality,
                        "dataset": spec["dataset"],
                        "model": spec["model"],
                        "subject": int(fold["subject"]),
                        "strategy": strategy,
                        "seed": int(seed),
                        "windows": str(spec["windows"]),
                        "splits": str(spec["splits"]),
                        "pretrained": str(pretrained_path(spec["models_dir"], modality, NORM_OF[strategy], fold["subject"])),
                        "longitudinal": bool(fold["longitudinal"]),
                    })
    return with_digests(jobs)


@lru_cache(maxsize=4096)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """Content hash of one input (for a windows folder: its manifest, which fingerprints it)."""
    p = Path(path)
    target = p / "manifest.json" if p.is_dir() else p
    return hashlib.sha256(target.read_bytes()).hexdigest()[:16]


def _digest(path: str) -> str:
    p = Path(path)
    stat = (p / "manifest.json" if p.is_dir() else p).stat()
    return _file_digest(str(p.resolve()), stat.st_mtime_ns, stat.st_size)


def with_digests(jobs: list[dict]) -> list[dict]:
    """Add ``inputs_digest`` to each job: a cached task result is reused only for the same inputs.

    ``data_digest`` covers the windows and splits alone, shared by every job of a modality: a
    worker keeps one copy of the data per data digest, whichever checkpoint a job starts from.
    """
    for job in jobs:
        job["data_digest"] = "-".join(_digest(job[k]) for k in ("windows", "splits"))
        job["inputs_digest"] = f"{job['data_digest']}-{_digest(job['pretrained'])}"
    return jobs


def resume_key(jobs: list[dict], settings: dict) -> str:
    """Identity of a flow run's work: the same key means the same tasks (so it can be resumed)."""
    blob = json.dumps({"jobs": jobs, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


GRID_KEYS = ("strategy", "seed", "lr", "epochs", "momentum", "weight_decay", "batch_size", "micro_batch", "calib_size")


def expand_grid(grid: dict) -> list[dict]:
    """Every combination of a sweep grid (``{key: [values]}``), in a stable order."""
    unknown = [k for k in grid if k not in GRID_KEYS]
    if unknown:
        raise ValueError(f"sweep.grid keys {unknown} are not sweepable; allowed: {list(GRID_KEYS)}")
    keys = [k for k in GRID_KEYS if k in grid]
    for k in keys:
        if not isinstance(grid[k], list) or not grid[k]:
            raise ValueError(f"sweep.grid.{k}={grid[k]!r}: allowed: a non-empty list of values")
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def plan_sweep(inputs: dict[str, dict], folds: dict[str, list[dict]], grid: dict, strategies: list[str], seeds: list[int]) -> list[dict]:
    """One job per (grid point, modality, subject): strategy and seed come from the grid or the study."""
    jobs = []
    for point in expand_grid(grid):
        point_strategies = [point["strategy"]] if "strategy" in point else strategies
        point_seeds = [point["seed"]] if "seed" in point else seeds
        for job in plan_jobs(inputs, folds, point_strategies, point_seeds):
            job["grid"] = dict(point)
            jobs.append(job)
    return jobs
