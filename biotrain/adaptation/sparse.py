"""Which layers the ``sparse`` strategy trains: a contribution analysis's scores, picked under a
budget on the training step's peak L2.

The scores come from the pretraining pool only (:mod:`.scoring`, run by the ``pretrain`` stage, one
file beside each base model); the pick happens per adaptation job, so a sweep over the budget
reruns adaptation only. The classifier always trains (every strategy that adapts does); the
other layers are taken greedily, most accuracy gained first, each one only if the step with it
still fits the budget. The step's peak is the chip model's own memory plan, passed in as a
function so this module needs no device.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

SCORES_SUFFIX = ".layers.json"


def scores_path(pretrained: str | Path) -> Path:
    """Where the layer scores of a base model live: beside it."""
    p = Path(pretrained)
    return p.with_name(p.stem + SCORES_SUFFIX)


def read_scores(pretrained: str | Path) -> dict:
    path = scores_path(pretrained)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no layer scores beside the base model; the pretrain stage writes them "
                                "when adapt.strategies includes 'sparse' (dvc repro pretrain)")
    return json.loads(path.read_text())


def pick_order(layers: list[str], scores: dict | None) -> list[str]:
    """Candidate layers, best first: by scored accuracy gain (positive gains only), else the
    deepest first (the backward pass then stops earliest)."""
    candidates = [name for name in layers if name != "classifier"]
    if scores is None:
        return candidates[::-1]
    gains = {name: s["gain"] for name, s in scores["layers"].items()}
    unknown = [name for name in candidates if name not in gains]
    if unknown:
        raise ValueError(f"layer scores lack layers {unknown}: they were computed for another architecture")
    ranked = sorted(candidates, key=lambda n: (-gains[n], -candidates.index(n)))
    return [n for n in ranked if gains[n] > 0]


def select_layers(order: list[str], peak_of: Callable[[tuple[str, ...]], int], budget_bytes: int,
                  key: str = "adapt.sparse.budget_kb") -> tuple[str, ...]:
    """The layers of ``order`` taken greedily while the step's peak (``peak_of(layers)``, bytes)
    stays within ``budget_bytes``; returned in ``order``'s ranking. The classifier alone must fit."""
    floor = peak_of(())
    if floor > budget_bytes:
        raise ValueError(f"{key}={budget_bytes / 1000:g} is below the step that trains the classifier alone "
                         f"({floor / 1000:.1f} kB peak L2); allowed: at least {floor / 1000:.1f}")
    chosen: tuple[str, ...] = ()
    for name in order:
        if peak_of(chosen + (name,)) <= budget_bytes:
            chosen += (name,)
    return chosen
