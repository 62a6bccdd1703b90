"""Contribution analysis for the ``sparse`` strategy: how much accuracy each layer adds when it
trains beside the classifier, measured on the pretraining pool only.

Subjects are taken in fold order in *scoring groups* of two (three for the last of an odd count).
One scoring model per group is pretrained exactly like a base model, on the pool without any of
the group's subjects, so it has seen none of them. For the base model that never saw subject h,
the validation subject v is the next subject of h's group (cyclically), and probes fine-tune
copies of the group's scoring model on v's first session: the classifier alone, and the
classifier with each other layer of :func:`~biotrain.models.layers.weight_layers`. A layer's
``gain`` is the probe's test accuracy on v's first session minus the classifier-alone probe's.
Its ``update_bytes`` is what training it adds to the step's state: its parameters' gradient,
momentum and accumulated gradient (float32). The held-out subject's data never enter, so picking
layers from these scores cannot leak it; sharing one scoring model within a group halves the
scoring models to pretrain.
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


def scoring_groups(folds: list[dict]) -> list[list[dict]]:
    """The folds in scoring groups: consecutive pairs, the last group a triple for an odd count."""
    if len(folds) < 3:
        subjects = [int(f["subject"]) for f in folds]
        raise ValueError(f"scoring layers needs at least 3 subjects (a pair and a pool to pretrain on); got {subjects}")
    groups = [folds[i:i + 2] for i in range(0, len(folds) - len(folds) % 2, 2)]
    if len(folds) % 2:
        groups[-1].append(folds[-1])
    return groups


def validation_subject(group: list[dict], held_out: int) -> dict:
    """The fold of the subject, in ``held_out``'s scoring group, that scores ``held_out``'s layers."""
    subjects = [int(f["subject"]) for f in group]
    return group[(subjects.index(int(held_out)) + 1) % len(group)]


def scoring_pool(group: list[dict]) -> list[int]:
    """The pretraining windows of no subject of the scoring group."""
    drop = set()
    for fold in group:
        drop |= set(fold["day1"]["calib"]) | set(fold["day1"]["test"])
        drop |= {i for part in fold["longitudinal"] for i in part["calib"] + part["test"]}
    return [i for i in group[0]["pretrain"] if i not in drop]


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
