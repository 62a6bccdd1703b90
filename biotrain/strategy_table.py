"""The adaptation strategies: one table, read by the host fine-tuning loop
(``adaptation.finetune.adapt``), the parameter checks and the device step capture (``device.capture``).

| name       | what trains                                  | normalization            | host batching          | device step (default)  |
|------------|----------------------------------------------|--------------------------|------------------------|------------------------|
| none       | nothing                                      | BatchNorm                | -                      | - (nothing to cost)    |
| last_layer | classifier only                              | BatchNorm (frozen, eval) | batch 8 in one pass    | micro-batch 1, sum x 8 |
| full       | every layer                                  | BatchNorm (batch stats)  | batch 8 in one pass    | batch 8 in one pass    |
| edge       | every layer                                  | GroupNorm, 1 group       | micro-batch 1, sum x 8 | micro-batch 1, sum x 8 |
| bias       | every bias, norm scale and shift; classifier | BatchNorm (frozen, eval) | batch 8 in one pass    | micro-batch 1, sum x 8 |
| sparse     | chosen layers (under a peak-L2 budget); classifier | BatchNorm (frozen, eval) | batch 8 in one pass | micro-batch 1, sum x 8 |
| lora       | low-rank adapters of channel-mixing weights  | BatchNorm (frozen, eval) | batch 8 in one pass    | micro-batch 1, sum x 8 |

("micro-batch 1, sum x 8": eight forward/backward passes of one sample, their gradients summed
before one optimizer step.)

``last_layer`` is batched differently on the host (one pass over the batch of 8) and on the
device (8 passes of one sample, gradients accumulated), and both compute the same step: the
backbone is frozen and its BatchNorm runs in eval mode, normalising with the *running*
statistics, so each sample's logits depend on that sample alone. The batch loss is the mean of
per-sample losses, hence its gradient is exactly the sum of the per-sample gradients scaled by
1/8 (the same maths; only the floating-point summation order differs). The device takes the
per-sample form because it holds one sample's activations instead of eight. ``full`` cannot be
split: BatchNorm in training mode normalises over the whole batch, which couples the samples.
``edge``'s GroupNorm normalises each sample on its own, so its micro-batches are exact too.

``bias``, ``sparse`` and ``lora`` follow ``last_layer``'s rule: they fine-tune the BatchNorm base
model with its statistics frozen (eval mode), so a norm layer is a per-channel affine map, each
sample is independent, and the chip runs them as exact micro-batches of one sample, holding one
sample's activations (the point of a lightweight strategy is a small step). Batch statistics of 8
samples would also be a noisy replacement for statistics learnt on the whole pretraining pool.
``bias`` trains the scale and shift of every norm layer, every bias and the classifier (TinyTL's
scheme); ``sparse`` trains whole layers (``models.layers``: a weight layer with its norm) chosen
by a contribution analysis on the pretraining pool under a peak-L2 budget, plus the classifier;
``lora`` trains rank-r adapters beside every channel-mixing weight (``models.lora``), merged into
the weights afterwards.

``sparse`` trains at a fifth of ``adapt.lr``. With the statistics frozen, nothing renormalises a
trained convolution's output, so an update of several early layers feeds larger activations
forward: at the paper's 5e-3 the gradient norm of EpiDeNet trained on five layers grew from 8 to
NaN within two epochs on two of the six default-cohort subjects (test accuracy at chance);
at 1e-3 it stayed bounded. (That value was checked on the default cohort's day-1 windows, so it
is not an out-of-sample choice; ``docs/adaptation.md`` gives the figures.) The other strategies
keep the paper's rate: ``bias`` trains no weight and ``lora`` a rank-limited update, and neither
diverged.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .models.layers import NORM_LAYERS, adapter_targets, layer_parameters, matrix_shape, weight_layers
from .models.lora import ADAPTER_PARAMS


@dataclass(frozen=True)
class Strategy:
    """One row of the table: what trains, under which normalization, in which batches."""

    name: str
    trains: str  # "nothing" | "classifier" | "all" | "affine" | "layers" | "adapters"
    norm: str  # "batch" | "group": the normalization of the base model it fine-tunes
    train_mode: bool  # norm layers in training mode (BatchNorm: batch statistics) while fine-tuning
    host_micro_batch: bool  # the host splits each batch into adapt.micro_batch passes
    device_micro_batch: int | None  # the device step's default micro-batch; None: the whole batch
    lr_scale: float = 1.0  # the learning rate is adapt.lr times this (sparse: see the module docstring)

    @property
    def costed(self) -> bool:
        """Has a training step, so the device backend costs it."""
        return self.trains != "nothing"

    @property
    def batch_statistics(self) -> bool:
        """Normalises over the batch: a batch of one sample is skipped, micro-batches are not exact."""
        return self.train_mode and self.norm == "batch"

    @property
    def micro_batches_exact(self) -> bool:
        """Gradients accumulated over micro-batches equal those of the whole batch."""
        return not self.batch_statistics


STRATEGY_TABLE: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("none", "nothing", "batch", train_mode=False, host_micro_batch=False, device_micro_batch=None),
        Strategy("last_layer", "classifier", "batch", train_mode=False, host_micro_batch=False, device_micro_batch=1),
        Strategy("full", "all", "batch", train_mode=True, host_micro_batch=False, device_micro_batch=None),
        Strategy("edge", "all", "group", train_mode=True, host_micro_batch=True, device_micro_batch=1),
        Strategy("bias", "affine", "batch", train_mode=False, host_micro_batch=False, device_micro_batch=1),
        Strategy("sparse", "layers", "batch", train_mode=False, host_micro_batch=False, device_micro_batch=1,
                 lr_scale=0.2),
        Strategy("lora", "adapters", "batch", train_mode=False, host_micro_batch=False, device_micro_batch=1),
    )
}

STRATEGY_NAMES = tuple(STRATEGY_TABLE)  # in the table's order: the order of every report

# The number format a strategy trains in: fp32, or a 16-bit type emulated as the device stores it
# (adaptation/precision.py). A study names a 16-bit run ``<strategy>@<precision>`` (``edge@bf16``).
PRECISIONS = ("fp32", "bf16", "fp16")
STRATEGY_SPECS = STRATEGY_NAMES + tuple(f"{name}@{p}" for name in STRATEGY_NAMES if STRATEGY_TABLE[name].costed
                                        for p in PRECISIONS[1:])


def parse_strategy(spec: str) -> tuple[str, str]:
    """``"edge@bf16"`` -> ``("edge", "bf16")``; a bare name trains in fp32."""
    if spec not in STRATEGY_SPECS:
        raise ValueError(f"strategy {spec!r} is not supported; use one of {list(STRATEGY_SPECS)}")
    name, _, precision = spec.partition("@")
    return name, precision or "fp32"


def strategy_label(name: str, precision: str) -> str:
    """The name results, metrics and reports use: the strategy, with ``@precision`` unless fp32."""
    return name if precision == "fp32" else f"{name}@{precision}"


def label_order(labels) -> list[str]:
    """Distinct known labels in report order: the table's order, each strategy's fp32 run before
    its 16-bit ones."""
    def key(label):
        name, _, precision = label.partition("@")
        return STRATEGY_NAMES.index(name), PRECISIONS.index(precision or "fp32")
    return sorted((label for label in set(labels) if label in STRATEGY_SPECS), key=key)


NORM_OF = {name: s.norm for name, s in STRATEGY_TABLE.items()}
# the strategies with a training step, which the device backend costs
COSTED_STRATEGIES = tuple(name for name, s in STRATEGY_TABLE.items() if s.costed)


def trainable_parameters(model: nn.Module, strategy: str, layers: tuple[str, ...] | None = None
                         ) -> dict[str, nn.Parameter]:
    """The parameters ``strategy`` trains, by name, in the model's parameter order.

    ``sparse`` trains the classifier and ``layers`` (names of ``models.layers.weight_layers``);
    ``lora`` trains the adapters ``models.lora.add_adapters`` put into the model."""
    trains = STRATEGY_TABLE[strategy].trains
    if trains == "nothing":
        return {}
    named = dict(model.named_parameters())
    if trains == "all":
        return named
    if trains == "adapters":
        adapters = {n: p for n, p in named.items() if n.rsplit(".", 1)[-1] in ADAPTER_PARAMS}
        if not adapters:
            raise ValueError(f"strategy {strategy!r} needs a model with adapters (models.lora.add_adapters)")
        return adapters
    if not hasattr(model, "classifier"):
        raise ValueError(f"strategy {strategy!r} needs a model with a `.classifier` last layer")
    ids = {id(p) for p in model.classifier.parameters()}
    if trains == "affine":
        norms = [m for m in model.modules() if isinstance(m, NORM_LAYERS)]
        ids |= {id(p) for m in norms for p in m.parameters(recurse=False)}
        ids |= {id(p) for n, p in named.items() if n.rsplit(".", 1)[-1] == "bias"}
    elif trains == "layers":
        if layers is None:
            raise ValueError(f"strategy {strategy!r} needs the layers to train (adapt.sparse picks them)")
        known = weight_layers(model)
        bad = [name for name in layers if name not in known]
        if bad:
            raise ValueError(f"layers {bad} are not layers of {type(model).__name__}; its layers are {list(known)}")
        ids |= {id(named[n]) for name in layers for n in layer_parameters(model, name)}
    return {n: p for n, p in named.items() if id(p) in ids}


def n_trained(model: nn.Module, strategy: str, layers: tuple[str, ...] | None = None, rank: int | None = None) -> int:
    """How many parameters ``strategy`` trains on ``model`` (``lora``: its adapters' at ``rank``)."""
    if STRATEGY_TABLE[strategy].trains != "adapters":
        return sum(p.numel() for p in trainable_parameters(model, strategy, layers).values())
    if rank is None:
        raise ValueError(f"strategy {strategy!r}: the adapters' rank is needed to count them")
    shapes = [matrix_shape(model.get_submodule(n)) for n in adapter_targets(model)]
    return sum(min(rank, rows, cols) * (rows + cols) for rows, cols in shapes)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` normalises with BatchNorm (whose training mode couples a batch's samples)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
