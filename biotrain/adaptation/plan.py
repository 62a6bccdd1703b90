"""The list of adaptation tasks of a study: one per (modality, subject, scenario, strategy, seed)."""

from __future__ import annotations

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
    return jobs
