"""Adaptation: pretraining of base models and the four fine-tuning strategies."""

from .strategies import NORM_OF, STRATEGIES, FinetuneConfig, adapt
from .training import PretrainConfig, accuracy, pretrain, seeded_generator

__all__ = ["NORM_OF", "STRATEGIES", "FinetuneConfig", "PretrainConfig", "accuracy", "adapt", "pretrain", "seeded_generator"]
