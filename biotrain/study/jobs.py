"""The adaptation tasks of a study or a sweep: one :class:`Job` per (modality, subject,
strategy, seed, grid point), planned by one function for both."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from functools import lru_cache
from pathlib import Path

from ..adaptation.finetune import FinetuneConfig
from ..strategy_table import NORM_OF, parse_strategy, strategy_label
from .config import FINETUNE_KEYS, StudyConfig
from .paths import StudyPaths

# what a sweep may vary: the job's strategy and seed, a fine-tuning setting, or the calibration size
GRID_KEYS = ("strategy", "seed", "lr", "epochs", "momentum", "weight_decay", "batch_size", "micro_batch", "calib_size",
             "host_loop", "sparse_budget_kb", "lora_rank")
TAG_KEYS = ("dataset", "modality", "model", "subject", "strategy", "precision", "seed")


@dataclass(frozen=True)
class Job:
    """One day-1 adaptation, and the longitudinal chain after it when the subject has later sessions.

    ``data_digest`` (windows + splits) and ``inputs_digest`` (+ the base model) fingerprint the
    input files: a cached result is reused only for the same inputs, and a worker keeps one copy
    of a modality's data per data digest.
    """

    modality: str
    dataset: str
    model: str
    subject: int
    strategy: str
    seed: int
    windows: str
    splits: str
    pretrained: str
    longitudinal: bool
    grid: dict = field(default_factory=dict)
    data_digest: str = ""
    inputs_digest: str = ""
    layers: tuple[str, ...] | None = None  # sparse: the layers picked for this job (study.layer_pick)
    precision: str = "fp32"  # the number format it trains in (strategy_table.PRECISIONS)

    @property
    def label(self) -> str:
        """The strategy as results name it: ``edge``, or ``edge@bf16`` for a 16-bit run."""
        return strategy_label(self.strategy, self.precision)

    def finetune(self, study: FinetuneConfig) -> FinetuneConfig:
        """The study's fine-tuning settings, overridden by this job's grid point (its layers, its precision)."""
        cfg = replace(study, **{k: v for k, v in self.grid.items() if k in FINETUNE_KEYS}, precision=self.precision)
        return replace(cfg, sparse_layers=self.layers) if self.layers is not None else cfg

    @property
    def calib_size(self) -> int | None:
        """A sweep's ``calib_size``: only the first N calibration windows (in time order) adapt."""
        size = self.grid.get("calib_size")
        return int(size) if size else None

    def context(self) -> dict:
        """What names this job in result rows and MLflow tags (grid keys included)."""
        context = {k: getattr(self, k) for k in TAG_KEYS}
        context["strategy"] = self.label
        if self.layers is not None:
            context["layers"] = "+".join(self.layers + ("classifier",))
        return {**context, **{k: v for k, v in self.grid.items() if k not in context}}

    def run_name(self, scenario: str) -> str:
        return f"{self.modality}-s{self.subject}-{scenario}-{self.label}-seed{self.seed}"


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


def plan_study(config: StudyConfig, paths: StudyPaths, folds: dict[str, list[dict]],
               grid: dict | None = None) -> list[Job]:
    """The study's jobs (``grid=None``), or a sweep's: one per grid point, modality, subject,
    strategy and seed, where a grid point's strategy or seed replaces the study's."""
    jobs = []
    for point in expand_grid(grid) if grid else [{}]:
        strategies = [point["strategy"]] if "strategy" in point else config.strategies
        seeds = [point["seed"]] if "seed" in point else config.seeds
        for modality, spec in config.data.modalities.items():
            windows, splits = str(paths.windows_of(modality)), str(paths.splits_of(modality))
            data_digest = f"{_digest(windows)}-{_digest(splits)}"
            for fold in folds[modality]:
                subject = int(fold["subject"])
                for label in strategies:
                    strategy, precision = parse_strategy(label)
                    pretrained = str(paths.pretrained(modality, NORM_OF[strategy], subject))
                    for seed in seeds:
                        jobs.append(Job(
                            modality=modality, dataset=config.data.dataset, model=spec.model.name, subject=subject,
                            strategy=strategy, seed=int(seed), windows=windows, splits=splits, pretrained=pretrained,
                            longitudinal=bool(fold["longitudinal"]), grid=dict(point), data_digest=data_digest,
                            inputs_digest=f"{data_digest}-{_digest(pretrained)}", precision=precision))
    from .layer_pick import pick_layers  # reads base models and costs steps: only when sparse is studied

    return pick_layers(jobs, config.finetune, config.device)


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


def resume_key(jobs: list[Job], settings) -> str:
    """Identity of a flow run's work: the same key means the same tasks (so it can be resumed)."""
    settings = asdict(settings) if is_dataclass(settings) else settings
    blob = json.dumps({"jobs": [asdict(j) for j in jobs], "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
