"""Resolve ``data.dataset.name`` + ``kwargs`` to a MOABB dataset instance for a modality."""

from __future__ import annotations

import difflib
import inspect

import moabb.datasets
from moabb.datasets.base import BaseDataset

from ..errors import UserError
from .glasses import SmartGlassesEOG
from .spec import EOG_DATASETS, MODALITIES
from .synthetic import SyntheticEOG, SyntheticMI

SYNTHETIC = {"eeg": SyntheticMI, "eog": SyntheticEOG}

# biotrain's own MOABB datasets, by class name (MOABB's own are found in moabb.datasets)
LOCAL_DATASETS: dict[str, type[BaseDataset]] = {
    "SyntheticMI": SyntheticMI, "SyntheticEOG": SyntheticEOG, "SmartGlassesEOG": SmartGlassesEOG,
}
__all__ = ["EOG_DATASETS", "LOCAL_DATASETS", "MODALITIES", "SYNTHETIC", "dataset_class", "moabb_dataset_names"]


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
        raise UserError(
            f"data.dataset.name={name!r} is not a dataset: use 'synthetic' or a moabb.datasets "
            f"class name such as 'BNCI2014_001' or 'FakeDataset'.{hint}"
        )
    return obj


def make_dataset(name: str, kwargs: dict | None, modality: str, key: str = "data.dataset.kwargs") -> BaseDataset:
    """Instantiate the dataset, turning a bad keyword into an error that lists the valid ones.

    ``key`` is where the arguments come from in params, for the message. A problem with the
    recordings themselves (a :class:`UserError` raised while finding them) is passed on as it is:
    it names the files, not the parameters.
    """
    cls = dataset_class(name, modality)
    kwargs = dict(kwargs or {})
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params]
    if unknown and not takes_any:
        valid = [k for k in params if k != "self"]
        raise UserError(f"{key} {unknown} are not arguments of {cls.__name__}; valid: {valid}")
    try:
        dataset = cls(**kwargs)
    except UserError:
        raise
    except (TypeError, ValueError) as err:
        raise UserError(f"{key}={kwargs!r} rejected by {cls.__name__}: {err}") from err
    return dataset


def check_study_shape(dataset: BaseDataset, key: str = "data.dataset.kwargs") -> None:
    """Fail before any work when the protocol cannot run: fewer than 2 subjects or sessions."""
    cls = type(dataset)
    if len(dataset.subject_list) < 2:
        raise UserError(f"{cls.__name__} (arguments in {key}) has {len(dataset.subject_list)} subject(s) "
                        f"{list(dataset.subject_list)}; leave-one-subject-out pretraining needs at least 2")
    if getattr(dataset, "n_sessions", 2) < 2:
        raise UserError(f"{cls.__name__} (arguments in {key}) has {dataset.n_sessions} session(s) per subject; "
                        f"the longitudinal scenario needs at least 2 (it adapts on the sessions after the first)")
