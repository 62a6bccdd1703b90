"""Adaptation: pretraining of base models and the four fine-tuning strategies."""

from .finetune import NORM_OF, STRATEGY_NAMES, FinetuneConfig, adapt
from .training import PretrainConfig, accuracy, pretrain, seeded_generator

__all__ = ["NORM_OF", "STRATEGY_NAMES", "FinetuneConfig", "PretrainConfig", "accuracy", "adapt", "pretrain", "seeded_generator"]
