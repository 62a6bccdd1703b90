"""Faster host computation of a fine-tuning step: last_layer bit-exact, edge up to float rounding.

``adapt`` spends most of a task in its loop; two strategies waste most of it:

- ``last_layer``: the backbone is frozen and in eval mode, so the classifier's input of a window
  never changes during an ``adapt`` call. :class:`CachedFeatures` computes it once (no_grad) and
  each step runs only the classifier: bit-exact with the reference loop. One catch, measured: a
  convolution's float result can depend on the *batch size* it runs at (EpiDeNet on this CPU:
  batch 8 and batch 1 differ in the last bits), though not on which samples share the batch. So
  the features are computed in chunks of exactly the size of the step that uses them (8, plus
  the epoch's last partial batch size), which reproduces the reference loop's numbers.
- ``edge``: micro-batches of 1 with accumulated gradients are bound by per-op dispatch on the
  host. When every layer works per sample (GroupNorm, no BatchNorm, no dropout: see
  :func:`per_sample_model`), one forward/backward over the whole batch gives the sum of the
  micro-batch gradients up to float summation order, so it runs as one pass. Measured: <= ~1e-6
  relative per parameter tensor for one step, up to 5.8e-6 on the input convolution's weight
  (oneDNN's batch weight-gradient reduction); after 10 epochs up to ~1e-3 on small GroupNorm
  biases of some tasks (float drift; test predictions unchanged).
  The chip-cost model still models micro-batch 1 (``biotrain.device`` is untouched).

``full`` keeps the reference step (one pass of batch 8 already). For every strategy the fast loop
also runs long depthwise convolutions with forward-convolution gradients (:mod:`.fast_conv`:
MI-BMINet's temporal layer; gradients up to float summation order).
``FinetuneConfig.host_loop = "reference"`` runs the plain loop instead (``edge`` as micro-batches of
``micro_batch``, PyTorch's own backward and SGD), for comparisons; timings of both are in
``benchmarks/README.md``, "The fine-tuning loop".
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..strategy_table import STRATEGY_TABLE

HOST_LOOPS = ("fast", "reference")

# Leaf modules whose output for a sample depends on that sample only (and on no random draw).
PER_SAMPLE_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.GroupNorm, nn.LayerNorm, nn.ReLU, nn.ELU,
                     nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.ZeroPad2d, nn.Identity, nn.Flatten)


def per_sample_model(model: nn.Module) -> bool:
    """True when every leaf layer is per-sample (allow-list: no BatchNorm, no dropout, nothing unknown)."""
    leaves = [m for m in model.modules() if not list(m.children())]
    return all(isinstance(m, PER_SAMPLE_LAYERS) for m in leaves)


class CachedFeatures:
    """The input of ``module`` (the classifier by default) for every calibration window, computed
    once per batch size.

    A forward pre-hook on the module captures exactly the tensor the model feeds it, so any model
    of the ``BiosignalModel`` contract works without a ``features`` method.
    """

    def __init__(self, model: nn.Module, xs: torch.Tensor, module: nn.Module | None = None):
        self.model, self.xs, self._by_size = model, xs, {}
        self.module = model.classifier if module is None else module

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        size = len(idx)
        if size not in self._by_size:
            self._by_size[size] = self._compute(size)
        return self._by_size[size][idx]

    @torch.no_grad()
    def _compute(self, size: int) -> torch.Tensor:
        n, captured = len(self.xs), []
        hook = self.module.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
        was_training = self.model.training
        self.model.eval()
        try:
            starts = list(range(0, n, size))
            out = None
            for start in starts:
                start = min(start, n - size)  # the last chunk overlaps the previous one: every chunk has `size` rows
                captured.clear()
                self.model(self.xs[start:start + size])
                if out is None:
                    out = captured[0].new_empty((n, *captured[0].shape[1:]))
                out[start:start + size] = captured[0]
        finally:
            hook.remove()
            self.model.train(was_training)
        return out


def frozen_prefix(model: nn.Module, trainable: set[str]) -> int:
    """How many of ``model.chain()``'s first layers hold no trainable parameter (0 without a chain)."""
    chain = getattr(model, "chain", None)
    if chain is None:
        return 0
    layers = chain()
    for k, (name, module) in enumerate(layers):
        if any(f"{name}.{n}" in trainable for n, _ in module.named_parameters()):
            return k
    return len(layers)


def fast_gradients(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, strategy: str, loss_fn: nn.Module,
                   trainable: set[str] | None = None) -> Callable[[torch.Tensor], None] | None:
    """A function accumulating one optimizer step's gradients for a batch of indices, or None
    when the fast loop has nothing better than the reference step (``full``, or ``edge`` on a
    model that is not per-sample).

    A strategy with a frozen backbone in eval mode (``last_layer``, ``bias``, ``sparse``, ``lora``)
    computes the frozen prefix of the model's chain once (:class:`CachedFeatures`, bit-exact) and
    runs only the layers after it; ``trainable`` names the parameters that train."""
    s = STRATEGY_TABLE[strategy]
    if not s.train_mode and s.trains != "nothing":  # a frozen, eval-mode backbone before the trained layers
        names = set(trainable or ())
        if s.trains == "classifier":
            names = {f"classifier.{n}" for n, _ in model.classifier.named_parameters()}
        k = frozen_prefix(model, names)
        if k == 0 or k >= len(model.chain()):  # nothing frozen before the trained layers, or nothing trains
            return None
        rest = [m for _, m in model.chain()[k:]]
        features = CachedFeatures(model, xs, rest[0])

        def cached_prefix_step(batch: torch.Tensor) -> None:
            out = features(batch)
            for m in rest:
                out = m(out)
            loss = loss_fn(out, ys[batch]) / len(batch)
            loss.backward()
        return cached_prefix_step
    if s.host_micro_batch and per_sample_model(model):  # edge
        def edge_step(batch: torch.Tensor) -> None:
            loss = loss_fn(model(xs[batch]), ys[batch]) / len(batch)  # = the micro-batch losses summed
            loss.backward()
        return edge_step
    return None
