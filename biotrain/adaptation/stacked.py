"""K same-architecture models as one wide model, for fine-tuning every layer together.

Every layer of the study's models works channel by channel or sample by sample, so K copies fit
side by side along the channel axis: a convolution becomes a grouped one with K times the groups
(model k's filters see only model k's channels), a BatchNorm or GroupNorm over K times the channels
normalises each model's channels over that model's own batch (BatchNorm's batch statistics and
running averages are per channel; GroupNorm gets K times the groups), pools and activations are
unchanged, and the classifier becomes :class:`StackedLinear` (one matrix per model, one batched
product). The wide model's input is ``(batch, K, C, T)``: sample b of every task, task k's in
channel k (each task draws its own batch), and its output ``(batch, K, classes)``.

So the wide model computes exactly the K models' functions and the summed loss's gradient for
model k's slice is model k's gradient; SGD's update is elementwise, so each slice follows its own
model's path. Only float summation order differs (a grouped convolution reduces in another order):
``tests/adaptation/test_stacked.py`` bounds that. Unlike ``torch.func.vmap`` this keeps PyTorch's
own kernels (and :mod:`.fast_conv`), and BatchNorm needs no special rule.

It pays most where a step is bound by per-operation overhead rather than arithmetic (EpiDeNet's),
less where one large convolution dominates (MI-BMINet's temporal layer); which pairs use it is
``batched.BATCHED``, and the measurements behind it are in ``benchmarks/README.md``, "Batched and
stacked groups".
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..models.lora import LoRA

# parameter-free layers that act per channel or per sample: copied as they are
PASS_THROUGH = (nn.ReLU, nn.ELU, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.ZeroPad2d, nn.Identity, nn.Flatten)


class StackedLinear(nn.Module):
    """K linear classifiers on the flattened wide features ``(batch, K * features)`` -> ``(batch, K, out)``.

    The features flatten channel-major and the channels are stacked model by model, so model k's
    features are the k-th contiguous slice.
    """

    def __init__(self, linears: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]))  # (K, out, features)
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in linears]))  # (K, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[0]
        x = x.reshape(x.shape[0], k, -1).transpose(0, 1)  # (K, batch, features)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2)).transpose(0, 1)


class StackedLoRA(nn.Module):
    """K adapted layers: the K frozen bases stacked as usual, each task's rank-r update ``B_k @ A_k``
    added to its own slice of the wide weight (one batched product for all K)."""

    def __init__(self, adapters: list[LoRA]):
        super().__init__()
        self.base = _stack_layer([a.base for a in adapters])
        self.lora_A = nn.Parameter(torch.stack([a.lora_A.detach() for a in adapters]))  # (K, r, columns)
        self.lora_B = nn.Parameter(torch.stack([a.lora_B.detach() for a in adapters]))  # (K, rows, r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.base
        delta = torch.bmm(self.lora_B, self.lora_A)  # (K, rows, columns)
        if isinstance(b, StackedLinear):
            k = delta.shape[0]
            x = x.reshape(x.shape[0], k, -1).transpose(0, 1)
            return torch.baddbmm(b.bias.unsqueeze(1), x, (b.weight + delta).transpose(1, 2)).transpose(0, 1)
        w = b.weight + delta.reshape(b.weight.shape)
        return F.conv2d(x, w, b.bias, b.stride, b.padding, b.dilation, b.groups)


def _cat(mods, name):
    return torch.cat([getattr(m, name).detach() for m in mods])


def _stack_layer(mods: list[nn.Module]) -> nn.Module:
    first, k = mods[0], len(mods)
    if type(first) is nn.Conv2d:
        conv = nn.Conv2d(k * first.in_channels, k * first.out_channels, first.kernel_size, first.stride,
                         first.padding, first.dilation, k * first.groups, first.bias is not None, first.padding_mode)
        with torch.no_grad():
            conv.weight.copy_(_cat(mods, "weight"))
            if first.bias is not None:
                conv.bias.copy_(_cat(mods, "bias"))
        return conv
    if type(first) is nn.BatchNorm2d and first.affine and first.track_running_stats:
        norm = nn.BatchNorm2d(k * first.num_features, first.eps, first.momentum)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(norm, name).copy_(_cat(mods, name))
            norm.num_batches_tracked.copy_(first.num_batches_tracked)
        return norm
    if type(first) is nn.GroupNorm and first.affine:
        norm = nn.GroupNorm(k * first.num_groups, k * first.num_channels, first.eps)
        with torch.no_grad():
            norm.weight.copy_(_cat(mods, "weight"))
            norm.bias.copy_(_cat(mods, "bias"))
        return norm
    if type(first) is nn.Linear and first.bias is not None:
        return StackedLinear(mods)
    if isinstance(first, PASS_THROUGH):
        return copy.deepcopy(first)
    if type(first) is LoRA:
        return StackedLoRA(mods)
    raise ValueError(f"cannot stack a {type(first).__name__} layer")


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    """The units stacked one by one: leaf modules, and adapted layers whole (base and adapter)."""
    units, inside = {}, ()
    for name, m in model.named_modules():
        if inside and name.startswith(inside):
            continue
        if isinstance(m, (LoRA, StackedLoRA)):
            units[name], inside = m, name + "."
        elif not list(m.children()):
            units[name] = m
    return units


def _is_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, LoRA) and isinstance(m.base, nn.Linear))


def stackable(model: nn.Module) -> bool:
    """Whether :func:`stack_models` can widen this architecture: known layers only, the linear one last."""
    leaves = list(_leaves(model).values())
    try:
        for m in leaves:
            _stack_layer([m])
    except ValueError:
        return False
    linear = [i for i, m in enumerate(leaves) if _is_linear(m)]
    return linear == [len(leaves) - 1] and getattr(model, "classifier", None) is leaves[-1]


def stack_models(models: list[nn.Module]) -> nn.Module:
    """One wide model computing every model of ``models`` (same architecture, same training mode)."""
    if not stackable(models[0]):
        raise ValueError(f"{type(models[0]).__name__} cannot be stacked (an unknown layer, or a linear layer before the last)")
    wide = copy.deepcopy(models[0])
    layers = [_leaves(m) for m in models]
    for name in layers[0]:
        *path, last = name.split(".")
        parent = wide.get_submodule(".".join(path))
        setattr(parent, last, _stack_layer([ls[name] for ls in layers]))
    return wide.train(models[0].training)


@torch.no_grad()
def unstack_into(wide: nn.Module, models: list[nn.Module]) -> None:
    """Copy each model's slice of the wide model's parameters and buffers back into it."""
    k = len(models)
    wide_leaves = _leaves(wide)
    for model in models:
        model.train(wide.training)
    for name, layer in wide_leaves.items():
        for i, model in enumerate(models):
            target = model.get_submodule(name)
            for key, value in list(layer.named_parameters(recurse=False)) + list(layer.named_buffers(recurse=False)):
                own = getattr(target, key)
                if key == "num_batches_tracked":
                    own.copy_(value)
                elif isinstance(layer, (StackedLinear, StackedLoRA)):  # a leading task axis
                    own.copy_(value[i])
                else:
                    own.copy_(value.view(k, -1, *value.shape[1:])[i].view_as(own))
