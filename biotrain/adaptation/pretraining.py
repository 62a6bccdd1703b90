"""Leave-one-subject-out base models: one per held-out subject and normalization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..models import build_model
from ..models.checkpoint import save_checkpoint
from .plan import pretrained_path
from .training import PretrainConfig, accuracy, pretrain


def pretrain_folds(X: np.ndarray, y: np.ndarray, n_classes: int, folds: list[dict], model_name: str, model_kwargs: dict,
                   norms: list[str], cfg: PretrainConfig, seed: int, models_dir: str | Path, modality: str) -> list[dict]:
    """Train and save every base model; returns one summary dict per model."""
    summaries = []
    total = len(folds) * len(norms) * cfg.epochs
    with tqdm(total=total, desc=f"pretrain {modality}", unit="epoch") as bar:
        for norm in norms:
            for fold in folds:
                idx = np.asarray(fold["pretrain"])
                model = build_model(model_name, X.shape[1], X.shape[2], n_classes, norm, **model_kwargs)
                history = pretrain(model, X[idx], y[idx], cfg, seed=seed, progress=bar)
                save_checkpoint(pretrained_path(models_dir, modality, norm, fold["subject"]), model, model_name, model_kwargs)
                summaries.append({
                    "modality": modality, "norm": norm, "held_out": fold["subject"],
                    "final_loss": round(history[-1], 6), "train_acc": round(accuracy(model, X[idx], y[idx]), 6),
                })
    return summaries
