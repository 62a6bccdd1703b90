"""Plain PyTorch loops shared by pretraining and fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def seeded_generator(seed: int) -> torch.Generator:
    """Every random draw in training comes from an explicit generator: bit-for-bit reruns."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def as_tensor(X: np.ndarray) -> torch.Tensor:
    """(n, C, T) windows -> (n, 1, C, T) float32, the input every model takes."""
    return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).unsqueeze(1)


@torch.no_grad()
def accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Accuracy in eval mode (BatchNorm uses its running statistics)."""
    model.eval()
    xs, ys = as_tensor(X), torch.from_numpy(np.asarray(y, dtype=np.int64))
    correct = 0
    for i in range(0, len(ys), batch_size):
        correct += (model(xs[i:i + batch_size]).argmax(1) == ys[i:i + batch_size]).sum().item()
    return correct / max(len(ys), 1)


@dataclass(frozen=True)
class PretrainConfig:
    """BRIEF: AdamW, lr 1e-3, batch 64, 40 epochs."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2


def pretrain(model: nn.Module, X: np.ndarray, y: np.ndarray, cfg: PretrainConfig, seed: int, progress=None) -> list[float]:
    """Train every parameter on the pooled subjects; returns the mean loss of each epoch."""
    gen = seeded_generator(seed)  # batch order; the weight init was drawn when the model was built
    xs, ys = as_tensor(X), torch.from_numpy(np.asarray(y, dtype=np.int64))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(ys), generator=gen)
        total = 0.0
        for i in range(0, len(ys), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            if len(idx) < 2 and any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
                continue  # BatchNorm cannot train on a batch of one
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(total / len(ys))
        if progress is not None:
            progress.update(1)
    return history
