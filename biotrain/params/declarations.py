"""Every parameter of ``params.yaml``, declared once: its kind (type and range), its default, what
it means, and which pipeline stages' outputs it changes.

From this list come the known keys and their "did you mean", the value checks, the defaults the
typed settings are built from, and ``dvc.yaml``'s per-stage ``params`` lists (``tools/sync_dvc.py``
writes them; a test keeps them in sync). Adding a parameter is one entry here and its value in
``params.yaml``.

A key that ``dvc.yaml`` lists by name is ``REQUIRED``: DVC reads it from the file and stops when
it is absent. Defaults are for keys DVC does not list by name (settings that change no output,
keys inside a section listed whole); where the library's typed settings already have a default,
the declaration takes it from there rather than writing the value twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Any

from ..adaptation.fast_loop import HOST_LOOPS
from ..data.spec import MODALITIES
from ..strategy_table import STRATEGY_SPECS
from ..study.config import RUNNERS, DeviceConfig, RunnerConfig, StudyConfig
from ..study.jobs import GRID_KEYS
from .kinds import Choice, IdList, Int, IntList, Kind, Mapping, Names, Number, Positive, Subset, Text


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # no default: params.yaml must give the value

STAGES = ("recordings", "data", "split", "pretrain", "adapt", "report")  # dvc.yaml's stages, in order
DATA_STAGES = ("recordings", "data")  # what selects and reads the recordings


@dataclass(frozen=True)
class Param:
    """One key of ``params.yaml``."""

    key: str
    kind: Kind
    default: Any = REQUIRED
    help: str = ""
    stages: tuple[str, ...] = ()  # the dvc.yaml stages whose outputs change with it
    nullable: bool = False  # null is allowed (``help`` says what it means)
    when: Callable[[dict], bool] | None = None  # checked only if this holds (a studied modality, a section)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def applies(self, params: dict) -> bool:
        return self.when is None or bool(self.when(params))

    @property
    def allowed(self) -> str:
        return f"null or {self.kind.allowed}" if self.nullable else self.kind.allowed


def _default(cls: type, name: str) -> Any:
    """A typed setting's own default, so the value is written once."""
    field_ = next(f for f in fields(cls) if f.name == name)
    return field_.default_factory() if field_.default is MISSING else field_.default


def _studied(modality: str) -> Callable[[dict], bool]:
    def studied(params: dict) -> bool:
        modalities = (params.get("data") or {}).get("modalities")
        return isinstance(modalities, list) and modality in modalities
    return studied


def _has_sweep(params: dict) -> bool:
    return "sweep" in params


def _model_names() -> list[str]:
    from ..models import MODELS

    return sorted(MODELS)


def _allocators() -> tuple[str, ...]:
    from ..study.allocator import ALLOCATORS

    return ALLOCATORS


def _backends() -> tuple[str, ...]:
    from ..device.estimate import BACKENDS

    return BACKENDS


def _programs() -> tuple[str, ...]:
    from ..device.constants import programs

    return programs()


def _execute_targets() -> tuple[str, ...]:
    from ..device.export.adapt import EXECUTE_TARGETS

    return EXECUTE_TARGETS


def _modality_params(m: str) -> list[Param]:
    """``data.<m>`` and ``models.<m>``: read only when ``m`` is in ``data.modalities``."""
    when, d = _studied(m), f"data.{m}"
    eog = m == "eog"
    return [
        Param(f"{d}.dataset_kwargs", Mapping("a mapping merged over data.dataset.kwargs"), {},
              "dataset arguments for this modality only, merged over data.dataset.kwargs", DATA_STAGES,
              nullable=True, when=when),
        Param(f"{d}.channels", Names(), None,
              "channel names in order; null: smart-glasses electrodes 'EEG 1'..'EEG 3'" if eog
              else "channel names in order; null: the dataset's EEG channels", DATA_STAGES, nullable=True, when=when),
        Param(f"{d}.events", Names(), None, "class names; null: all 11 eye movements" if eog else "class names",
              DATA_STAGES, nullable=True, when=when),
        Param(f"{d}.fmin", Number(0), REQUIRED, "band-pass low edge, Hz", DATA_STAGES, when=when),
        Param(f"{d}.fmax", Positive(), REQUIRED, "band-pass high edge, Hz (below Nyquist)", DATA_STAGES, when=when),
        Param(f"{d}.sfreq", Positive(), REQUIRED, "resample to this rate, Hz", DATA_STAGES, when=when),
        Param(f"{d}.tmin", Number(0), REQUIRED, "window start after the cue, s", DATA_STAGES, when=when),
        Param(f"{d}.n_times", Int(64), REQUIRED, "window length T in samples", DATA_STAGES, when=when),
        Param(f"models.{m}.name", Choice(_model_names), REQUIRED, "registered model this modality trains",
              ("pretrain", "adapt"), when=when),
        Param(f"models.{m}.kwargs", Mapping("a mapping of model arguments"), {},
              "model constructor arguments (checked against its signature)", ("pretrain", "adapt"),
              nullable=True, when=when),
    ]


PARAMS: tuple[Param, ...] = (
    Param("seed", Int(0), REQUIRED, "pretraining seed (adaptation seeds are adapt.seeds)", ("pretrain",)),
    # data: which recordings, cut into which windows
    Param("data.dataset.name", Text("'synthetic' or a moabb.datasets class name"), REQUIRED,
          "'synthetic' (embedded, no download) or a moabb.datasets class name", (*DATA_STAGES, "adapt")),
    Param("data.dataset.kwargs", Mapping("a mapping of constructor arguments"), {},
          "dataset constructor arguments", DATA_STAGES, nullable=True),
    Param("data.cache_dir", Text("a folder path (null: MOABB's default, ~/mne_data)"), None,
          "where MOABB downloads recordings; null: MNE_DATA or ~/mne_data", DATA_STAGES, nullable=True),
    Param("data.modalities", Subset(MODALITIES), REQUIRED,
          "eeg -> MI-BMINet; eog -> EpiDeNet (needs an eye-movement dataset)",
          (*DATA_STAGES, "split", "pretrain", "adapt")),
    *(p for m in MODALITIES for p in _modality_params(m)),
    Param("split.calib_fraction", Number(0, 0.99, exclusive_min=True), REQUIRED,
          "first share of a session (in time order) that adapts; the rest tests", ("split",)),
    # pretrain: the base models
    Param("pretrain.epochs", Int(1), REQUIRED, "pretraining epochs", ("pretrain",)),
    Param("pretrain.batch_size", Int(2), REQUIRED, "pretraining batch size", ("pretrain",)),
    Param("pretrain.lr", Positive(), REQUIRED, "AdamW learning rate", ("pretrain",)),
    Param("pretrain.weight_decay", Number(0), REQUIRED, "AdamW weight decay", ("pretrain",)),
    Param("pretrain.workers", Int(1), 2, "models trained side by side (one torch thread each: bit-exact)"),
    Param("pretrain.score_epochs", Int(1), REQUIRED,
          "sparse: fine-tuning epochs of each layer-scoring probe (a contribution analysis on the pretraining "
          "pool, run when adapt.strategies includes sparse)", ("pretrain",)),
    # adapt: strategies and fine-tuning
    Param("adapt.strategies", Subset(STRATEGY_SPECS), REQUIRED, "strategies of biotrain/strategy_table.py; "
          "<strategy>@bf16 or @fp16 trains it in 16 bits (docs/adaptation.md)",
          ("pretrain", "adapt")),  # pretrain: which normalizations need base models
    Param("adapt.seeds", IntList(0), REQUIRED, "one fine-tuning run per seed", ("adapt",)),
    Param("adapt.epochs", Int(1), REQUIRED, "fine-tuning epochs (cosine schedule)", ("adapt",)),
    Param("adapt.lr", Positive(), REQUIRED, "SGD learning rate", ("adapt",)),
    Param("adapt.momentum", Number(0, 0.999), REQUIRED, "SGD momentum", ("adapt",)),
    Param("adapt.weight_decay", Number(0), REQUIRED, "SGD weight decay", ("adapt",)),
    Param("adapt.batch_size", Int(2), REQUIRED, "samples per optimizer step", ("adapt",)),
    Param("adapt.micro_batch", Int(1), REQUIRED,
          "edge: samples per forward/backward (gradients accumulate over the batch)", ("adapt",)),
    Param("adapt.host_loop", Choice(HOST_LOOPS), REQUIRED,
          "fast: each strategy at its fastest equivalent form on the host; reference: the plain loop, "
          "edge as micro-batches of adapt.micro_batch", ("adapt",)),
    Param("adapt.sparse.budget_kb", Positive(), REQUIRED,
          "sparse: the training step's peak L2 in kB (1000 B) the chosen layers must fit; at least the "
          "classifier-only step's", ("adapt",)),
    Param("adapt.lora.rank", Int(1), REQUIRED,
          "lora: adapter rank (per layer at most min(rows, columns) of its weight)", ("adapt",)),
    Param("adapt.retries", Int(0), _default(RunnerConfig, "retries"), "Prefect task retries"),
    Param("adapt.runner.name", Choice(RUNNERS), "dask",
          "dask (local worker processes) | threads (one process) | ray (pip install -e '.[ray]')"),
    Param("adapt.runner.workers", Int(1), _default(RunnerConfig, "workers"), "concurrent tasks (one torch thread each)"),
    Param("adapt.runner.address", Text("an existing cluster's address (e.g. 'tcp://10.0.0.5:8786')"),
          _default(RunnerConfig, "address"),
          "dask/ray: an existing cluster's address instead of a local one", nullable=True),
    Param("adapt.runner.allocator", Choice(_allocators), _default(RunnerConfig, "allocator"),
          "local Dask workers' malloc: auto (TCMalloc if installed) | tcmalloc | system"),
    # sweep: python -m stages.sweep, outside dvc repro
    Param("sweep.name", Text("a non-empty name without '/'", no_slash=True), REQUIRED,
          "MLflow experiment sweep-<name>; results/sweeps/<name>.csv", when=_has_sweep),
    Param("sweep.grid", Mapping("a mapping of sweepable keys to lists of values"), REQUIRED,
          f"lists of values for any of {', '.join(GRID_KEYS)}",
          when=_has_sweep),
    # device: what a training step costs on the chip, and where fine-tuning runs
    Param("device.backend", Choice(_backends), _default(DeviceConfig, "backend"),
          "gap9-sim (simulator); gap9-board is not implemented yet", ("adapt",)),
    Param("device.program", Choice(_programs), _default(DeviceConfig, "program"),
          "which program's chip cost the results carry: paper-toolchain (reproduces BioTrain's published "
          "figures) | exported (this project's program; kernel costs measured on the CV32E40P RTL)", ("adapt",)),
    Param("device.constants", Mapping("a mapping of biotrain/device/gap9.yaml keys to values"), REQUIRED,
          "overrides of biotrain/device/gap9.yaml, e.g. {freq_mhz: 240}", ("adapt", "report"), nullable=True),
    Param("device.execute", Choice(_execute_targets), _default(DeviceConfig, "execute"),
          "where fine-tuning runs: host (PyTorch) | qemu (the exported C program) | gap9-board", ("adapt",)),
    Param("device.execute_subjects", IdList(), _default(DeviceConfig, "execute_subjects"),
          "with execute != host: only these subject ids (null: every subject)", ("adapt",), nullable=True),
    # tracking and report
    Param("tracking.uri", Text("a tracking URI string such as sqlite:////abs/path/mlflow.db"), None,
          "null: sqlite:///<project root>/mlflow.db", nullable=True),
    Param("tracking.experiment", Text(), REQUIRED, "MLflow experiment of the study's runs", ("adapt",)),
    Param("report.dpi", Int(30), _default(StudyConfig, "report_dpi"), "figure resolution", ("report",)),
)

BY_KEY: dict[str, Param] = {p.key: p for p in PARAMS}


def default_of(key: str) -> Any:
    """A parameter's declared default (a KeyError for an undeclared key)."""
    return BY_KEY[key].default


def section_keys() -> list[str]:
    """Every key path: the declared keys and the sections above them."""
    keys: dict[str, None] = {}
    for p in PARAMS:
        parts = p.key.split(".")
        for i in range(1, len(parts) + 1):
            keys[".".join(parts[:i])] = None
    return list(keys)


def stage_params(stage: str) -> list[str]:
    """The keys ``stage`` depends on, a whole section named where every key under it counts.

    A section is named whole only if all its declared keys change this stage's outputs. Keys
    named one by one are required (a test keeps it so): DVC stops when one is absent from the file.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {list(STAGES)}")
    mine = [p.key for p in PARAMS if stage in p.stages]
    out: list[str] = []
    for key in mine:
        parts = key.split(".")
        name = key
        for i in range(1, len(parts)):  # the widest section whose keys all count
            prefix = ".".join(parts[:i])
            under = [p.key for p in PARAMS if p.key.startswith(prefix + ".")]
            if all(k in mine for k in under):
                name = prefix
                break
        if name not in out:
            out.append(name)
    return out
