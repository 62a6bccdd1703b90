"""Leave-one-subject-out base models: one per held-out subject and normalization."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..models import build_model
from ..io import write_json
from ..models.checkpoint import save_checkpoint
from .fast_conv import fast_temporal_convs
from .finetune import FinetuneConfig
from .scoring import probe_layers, scoring_groups, scoring_pool, validation_subject
from .sparse import scores_path
from .training import PretrainConfig, accuracy, pretrain


def pretrained_path(models_dir: str | Path, modality: str, norm: str, subject: int) -> Path:
    """Where the base model that never saw ``subject`` lives."""
    return Path(models_dir) / modality / norm / f"subject-{subject}.pt"


def pretrain_folds(X: np.ndarray, y: np.ndarray, n_classes: int, folds: list[dict], model_name: str, model_kwargs: dict,
                   norms: list[str], cfg: PretrainConfig, seed: int, models_dir: str | Path, modality: str,
                   workers: int = 2, *, sfreq: float, score_epochs: int | None = None) -> list[dict]:
    """Train and save every base model; returns one summary dict per model.

    ``score_epochs``: also score the layers of every BatchNorm base model for the ``sparse``
    strategy (:mod:`.scoring`: one scoring model per group of two or three subjects, pretrained
    without them, probes of that many fine-tuning epochs), written beside each base model; None:
    no scores.

    ``sfreq`` is the windows' rate: a model sets its lengths in seconds in samples at that rate.

    Models train side by side in ``workers`` threads with one torch thread each: multi-threaded
    kernels are not bit-for-bit reproducible on CPU, single-threaded ones are. Long depthwise
    temporal convolutions take their gradients as forward convolutions (:mod:`.fast_conv`; the
    same bits from run to run, ~1e-6 from PyTorch's own backward).
    """
    if score_epochs is not None and len(folds) < 3:
        raise ValueError(f"adapt.strategies includes 'sparse', whose layer scores need at least 3 subjects (the held-out "
                         f"one, a validation subject and a pool to pretrain on); {modality} has {len(folds)}: "
                         "drop 'sparse' from adapt.strategies or add subjects")
    torch.set_num_threads(1)
    jobs = []

    def build(norm):  # built here, in order: weight init draws from torch's global RNG
        torch.manual_seed(seed)
        return build_model(model_name, X.shape[1], X.shape[2], n_classes, norm, sfreq=sfreq, **model_kwargs)

    if score_epochs is not None and "batch" in norms:  # the longest jobs first: no lone job at the end
        for group in scoring_groups(folds):
            jobs.append(("scores", "batch", group, build("batch")))
    for norm in norms:
        for fold in folds:
            jobs.append(("base", norm, fold, build(norm)))

    def train(model, idx, bar):
        with fast_temporal_convs(model):  # MI-BMINet's long depthwise kernel, with cheaper gradients (fast_conv.py)
            return pretrain(model, X[idx], y[idx], cfg, seed=seed, progress=bar)

    def score_group(model, group, norm, bar):  # one scoring model, the layer scores of every subject of the group
        history = train(model, np.asarray(scoring_pool(group)), bar)
        held_out = [int(f["subject"]) for f in group]
        for h in held_out:
            scores = probe_layers(model, X, y, validation_subject(group, h), FinetuneConfig(epochs=score_epochs), seed)
            write_json(scores_path(pretrained_path(models_dir, modality, norm, h)), {"held_out": h, **scores})
        return {"modality": modality, "norm": norm, "held_out": held_out, "kind": "layer_scores",
                "final_loss": round(history[-1], 6)}

    def train_one(job, bar):
        kind, norm, fold, model = job
        if kind == "scores":
            return score_group(model, fold, norm, bar)
        path = pretrained_path(models_dir, modality, norm, fold["subject"])
        idx = np.asarray(fold["pretrain"])
        history = train(model, idx, bar)
        save_checkpoint(path, model, model_name, model_kwargs)
        return {
            "modality": modality, "norm": norm, "held_out": fold["subject"],
            "final_loss": round(history[-1], 6), "train_acc": round(accuracy(model, X[idx], y[idx]), 6),
        }

    with tqdm(total=len(jobs) * cfg.epochs, desc=f"pretrain {modality}", unit="epoch") as bar:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda job: train_one(job, bar), jobs))
