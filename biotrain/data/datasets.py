"""Resolve ``data.dataset.name`` + ``kwargs`` to a MOABB dataset instance for a modality."""

from __future__ import annotations

import difflib
import inspect

import moabb.datasets
from moabb.datasets.base import BaseDataset

from .glasses import SmartGlassesEOG
from .synthetic import SyntheticEOG, SyntheticMI

SYNTHETIC = {"eeg": SyntheticMI, "eog": SyntheticEOG}
MODALITIES = ("eeg", "eog")

# biotrain's own MOABB datasets, by class name (MOABB's own are found in moabb.datasets)
LOCAL_DATASETS: dict[str, type[BaseDataset]] = {
    "SyntheticMI": SyntheticMI, "SyntheticEOG": SyntheticEOG, "SmartGlassesEOG": SmartGlassesEOG,
}
# the datasets that can feed the EOG (eye-movement) task
EOG_DATASETS = {"synthetic", "SyntheticEOG", "SmartGlassesEOG"}


def moabb_dataset_names() -> list[str]:
    """Every dataset class MOABB exports (BNCI2014_001, Lee2019_MI, FakeDataset, ...)."""
    return sorted(
        name for name, obj in vars(moabb.datasets).items()
        if inspect.isclass(obj) and issubclass(obj, BaseDataset) and not inspect.isabstract(obj)
    )


def dataset_class(name: str, modality: str) -> type[BaseDataset]:
    """The class behind a dataset name; ``synthetic`` has one flavour per modality."""
    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r} is not supported; use one of {list(MODALITIES)}")
    if name == "synthetic":
        return SYNTHETIC[modality]
    if name in LOCAL_DATASETS:
        return LOCAL_DATASETS[name]
    obj = getattr(moabb.datasets, name, None)
    if not (inspect.isclass(obj) and issubclass(obj, BaseDataset)):
        close = difflib.get_close_matches(name, moabb_dataset_names(), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"data.dataset.name={name!r} is not a dataset: use 'synthetic' or a moabb.datasets "
            f"class name such as 'BNCI2014_001' or 'FakeDataset'.{hint}"
        )
    return obj


def make_dataset(name: str, kwargs: dict | None, modality: str) -> BaseDataset:
    """Instantiate the dataset, turning a bad keyword into an error that lists the valid ones."""
    cls = dataset_class(name, modality)
    kwargs = dict(kwargs or {})
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params]
    if unknown and not takes_any:
        valid = [k for k in params if k != "self"]
        raise ValueError(f"data.dataset.kwargs {unknown} are not arguments of {cls.__name__}; valid: {valid}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"data.dataset.kwargs={kwargs!r} rejected by {cls.__name__}: {err}") from err
