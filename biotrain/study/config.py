"""The study's settings as typed sections, built once from validated params at the entry point.

Entry points load them with ``biotrain.params.load_study``; everything below takes these objects,
never the raw dict. Defaults live in the parameter declarations (``biotrain/params``), which fill
them in before these are built. Each section is a frozen
dataclass, so a setting cannot change on its way down, and the fine-tuning settings are the
training code's own :class:`FinetuneConfig`: one definition of the keys a sweep may override.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..adaptation.finetune import FinetuneConfig
from ..adaptation.training import PretrainConfig
from ..data.spec import WindowSpec
from ..strategy_table import STRATEGY_TABLE, parse_strategy

# the fine-tuning settings params.yaml sets (and a sweep may vary); sparse_layers is picked per job
FINETUNE_KEYS = tuple(f.name for f in fields(FinetuneConfig) if f.name not in ("sparse_layers", "precision"))  # per job, not params
# where the nested ones live under adapt in params.yaml
FINETUNE_PARAMS = {"sparse_budget_kb": ("sparse", "budget_kb"), "lora_rank": ("lora", "rank")}


@dataclass(frozen=True)
class ModelConfig:
    """Which registered model a modality trains, and its constructor arguments."""

    name: str
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModalityConfig:
    """One modality's data, window and model: what the data, split and pretrain stages need."""

    name: str
    dataset_kwargs: dict  # data.dataset.kwargs with data.<modality>.dataset_kwargs merged over them
    kwargs_key: str  # where those arguments came from, for messages
    window: WindowSpec
    model: ModelConfig


@dataclass(frozen=True)
class DataConfig:
    dataset: str
    cache_dir: str | None
    modalities: dict[str, ModalityConfig]
    calib_fraction: float


@dataclass(frozen=True)
class DeviceConfig:
    """How chip costs are estimated, and where fine-tuning executes (host or the exported program)."""

    backend: str = "gap9-sim"
    program: str = "exported"  # gap9.yaml's programs; the study costs the program it can run (docs/device.md)
    constants: dict = field(default_factory=dict)
    execute: str = "host"
    execute_subjects: tuple[int, ...] | None = None

    def target_for(self, subject: int, strategy: str) -> str:
        """``host`` (PyTorch) or the device target this subject's fine-tuning runs on."""
        if self.execute == "host" or not STRATEGY_TABLE[strategy].costed:
            return "host"
        if self.execute_subjects is not None and subject not in self.execute_subjects:
            return "host"
        return self.execute


RUNNERS = ("threads", "dask", "ray")  # where adaptation tasks can run (flows/runners.py builds each)


@dataclass(frozen=True)
class RunnerConfig:
    """Where the adaptation tasks run; none of this changes a result."""

    name: str  # one of RUNNERS
    workers: int = 2
    address: str | None = None
    retries: int = 1
    torch_threads: int = 1  # tasks run side by side; one torch thread each keeps results bit-exact
    allocator: str = "auto"  # malloc of the worker processes a local Dask cluster starts (allocator.py)


@dataclass(frozen=True)
class TrackingConfig:
    uri: str
    experiment: str


@dataclass(frozen=True)
class SweepConfig:
    name: str
    grid: dict


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study run is decided by, typed; built by :meth:`from_params`."""

    seed: int
    data: DataConfig
    pretrain: PretrainConfig
    pretrain_workers: int
    pretrain_score_epochs: int
    strategies: tuple[str, ...]
    seeds: tuple[int, ...]
    finetune: FinetuneConfig
    device: DeviceConfig
    runner: RunnerConfig
    tracking: TrackingConfig
    sweep: SweepConfig | None = None
    report_dpi: int = 120

    @property
    def strategy_names(self) -> set[str]:
        """The table's strategies studied, whatever their precision (``edge@bf16`` -> ``edge``)."""
        return {parse_strategy(spec)[0] for spec in self.strategies}

    @property
    def norms(self) -> list[str]:
        """The normalizations the base models need: one per norm the strategies use."""
        return sorted({STRATEGY_TABLE[s].norm for s in self.strategy_names})

    def for_sweep(self) -> StudyConfig:
        """The same study tracked in the sweep's own MLflow experiment (``sweep-<name>``)."""
        if self.sweep is None:
            raise ValueError("params have no sweep section")
        return replace(self, tracking=replace(self.tracking, experiment=f"sweep-{self.sweep.name}"))

    @classmethod
    def from_params(cls, params: dict[str, Any], root: str | Path) -> StudyConfig:
        """Typed sections from validated params; ``root`` resolves a default tracking store."""
        from ..tracking import default_tracking_uri

        data, a = params["data"], params["adapt"]
        p, device, runner = params["pretrain"], params["device"], a["runner"]
        sweep = params.get("sweep")
        subjects = device["execute_subjects"]
        return cls(
            seed=int(params["seed"]),
            data=DataConfig(
                dataset=data["dataset"]["name"], cache_dir=data["cache_dir"],
                modalities={m: _modality(data, params["models"], m) for m in data["modalities"]},
                calib_fraction=float(params["split"]["calib_fraction"])),
            pretrain=PretrainConfig(epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                                    weight_decay=p["weight_decay"]),
            pretrain_workers=int(p["workers"]), pretrain_score_epochs=int(p["score_epochs"]),
            strategies=tuple(a["strategies"]), seeds=tuple(int(s) for s in a["seeds"]),
            finetune=FinetuneConfig(**{k: _finetune_value(a, k) for k in FINETUNE_KEYS}),
            device=DeviceConfig(backend=device["backend"], program=device["program"], constants=dict(device["constants"]),
                                execute=device["execute"],
                                execute_subjects=None if subjects is None else tuple(subjects)),
            runner=RunnerConfig(name=runner["name"], workers=int(runner["workers"]), address=runner["address"],
                                retries=int(a["retries"]), allocator=runner["allocator"]),
            tracking=TrackingConfig(uri=params["tracking"]["uri"] or default_tracking_uri(Path(root).resolve()),
                                    experiment=params["tracking"]["experiment"]),
            sweep=SweepConfig(name=sweep["name"], grid=dict(sweep["grid"])) if sweep else None,
            report_dpi=int(params["report"]["dpi"]),
        )


@dataclass(frozen=True)
class AdaptSettings:
    """What an adaptation task's results depend on, beside its job: the study's fine-tuning
    settings (a sweep's grid point overrides them per job), chip costs, torch threads."""

    finetune: FinetuneConfig
    device: DeviceConfig | None = None  # None: no chip costs, fine-tuning on the host
    torch_threads: int = 1

    @classmethod
    def of(cls, config: StudyConfig) -> AdaptSettings:
        return cls(finetune=config.finetune, device=config.device, torch_threads=config.runner.torch_threads)


def _finetune_value(adapt: dict, key: str) -> Any:
    section, name = FINETUNE_PARAMS.get(key, (None, key))
    return adapt[section][name] if section else adapt[name]


def _modality(data: dict, models: dict, modality: str) -> ModalityConfig:
    cfg = data[modality]
    kwargs = {**data["dataset"]["kwargs"], **cfg["dataset_kwargs"]}
    key = f"data.dataset.kwargs + data.{modality}.dataset_kwargs" if cfg["dataset_kwargs"] else "data.dataset.kwargs"
    window = WindowSpec(modality=modality, sfreq=float(cfg["sfreq"]), n_times=int(cfg["n_times"]),
                        fmin=float(cfg["fmin"]), fmax=float(cfg["fmax"]), tmin=float(cfg["tmin"]),
                        channels=cfg["channels"], events=cfg["events"])
    model = ModelConfig(name=models[modality]["name"], kwargs=dict(models[modality]["kwargs"]))
    return ModalityConfig(name=modality, dataset_kwargs=kwargs, kwargs_key=key, window=window, model=model)
