"""Contribution analysis for the ``sparse`` strategy: how much accuracy each layer adds when it
trains beside the classifier, measured on the pretraining pool only.

For the base model that never saw subject h, a *validation subject* v is taken from h's pool (the
next subject in fold order) and a scoring model is pretrained, exactly like the base model, on the
pool without v (so it has seen neither h nor v). Probes then fine-tune copies of it on v's first
session: the classifier alone, and the classifier with each other layer of
:func:`~biotrain.models.layers.weight_layers`. A layer's ``gain`` is the probe's test accuracy on
v's first session minus the classifier-alone probe's. Its ``update_bytes`` is what training it
adds to the step's state: its parameters' gradient, momentum and accumulated gradient (float32).
The held-out subject's data never enter, so picking layers from these scores cannot leak it.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
from torch import nn

from ..models.layers import layer_parameters, weight_layers
from .finetune import FinetuneConfig, adapt
from .training import accuracy

# bytes per trained float32 parameter beside the weight itself: gradient, momentum, accumulator
UPDATE_BYTES_PER_PARAM = 3 * 4


def validation_subject(folds: list[dict], held_out: int) -> dict:
    """The fold of the pool subject that scores the layers of ``held_out``'s base model."""
    subjects = [int(f["subject"]) for f in folds]
    if len(subjects) < 3:
        raise ValueError(f"scoring layers needs at least 3 subjects (held out, validation, pool); got {subjects}")
    return folds[(subjects.index(int(held_out)) + 1) % len(folds)]


def scoring_pool(fold: dict, validation: dict) -> list[int]:
    """The held-out subject's pool without the validation subject's windows."""
    drop = set(validation["day1"]["calib"]) | set(validation["day1"]["test"])
    drop |= {i for part in validation["longitudinal"] for i in part["calib"] + part["test"]}
    return [i for i in fold["pretrain"] if i not in drop]


def probe_layers(model: nn.Module, X: np.ndarray, y: np.ndarray, validation: dict, cfg: FinetuneConfig,
                 seed: int) -> dict:
    """Fine-tune copies of ``model`` on the validation subject's first session: classifier alone,
    then with each layer; the scores of every layer."""
    calib, test = np.asarray(validation["day1"]["calib"]), np.asarray(validation["day1"]["test"])

    def probe(strategy: str, layers: tuple[str, ...] | None) -> float:
        m = copy.deepcopy(model)
        adapt(m, X[calib], y[calib], strategy, replace(cfg, sparse_layers=layers), seed)
        return accuracy(m, X[test], y[test])

    before = accuracy(model, X[test], y[test])
    classifier = probe("sparse", ())  # the classifier alone, trained as the other probes are
    named = dict(model.named_parameters())
    scores = {}
    for name in weight_layers(model):
        params = sum(named[n].numel() for n in layer_parameters(model, name))
        acc = classifier if name == "classifier" else probe("sparse", (name,))
        scores[name] = {"gain": round(acc - classifier, 6), "accuracy": round(acc, 6), "params": int(params),
                        "update_bytes": int(params * UPDATE_BYTES_PER_PARAM)}
    return {"validation_subject": int(validation["subject"]), "n_test": int(len(test)), "epochs": cfg.epochs,
            "accuracy_before": round(before, 6), "accuracy_classifier": round(classifier, 6), "layers": scores}
