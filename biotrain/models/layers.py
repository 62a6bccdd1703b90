"""The trainable layers of a model, as the sparse and low-rank strategies see them.

A *layer* is a weight layer (convolution or linear) together with the normalization right after
it: training a convolution's filters without the scale and shift that renormalise them would
leave the two out of step. Layers are named by their first top-level module (``spatial``,
``block2``, ``classifier``), in forward order.

An *adapter target* is a weight that mixes channels (electrodes or feature maps): a linear layer,
or a convolution with one group whose weight, seen as a matrix of output rows against
``in_channels x kernel`` columns, reaches across more than one input channel or electrode.
Depthwise and grouped convolutions have no channel matrix, and a one-input-channel temporal filter
bank (EpiDeNet's first convolution) only mixes time taps, so neither gets a low-rank adapter.
"""

from __future__ import annotations

from torch import nn

NORM_LAYERS = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def weight_layers(model: nn.Module) -> dict[str, list[str]]:
    """Layer name -> the top-level modules it spans (a weight layer and the norm after it), in order."""
    layers: dict[str, list[str]] = {}
    last = None
    for name, module in model.chain():
        if not _has_params(module):
            continue
        if isinstance(module, NORM_LAYERS) and last is not None:
            layers[last].append(name)
            continue
        layers[name] = [name]
        last = name
    return layers


def layer_parameters(model: nn.Module, layer: str) -> list[str]:
    """The parameter names of one layer of :func:`weight_layers`."""
    layers = weight_layers(model)
    if layer not in layers:
        raise ValueError(f"{type(model).__name__} has no layer {layer!r}; its layers are {list(layers)}")
    prefixes = tuple(f"{m}." for m in layers[layer])
    return [n for n, _ in model.named_parameters() if n.startswith(prefixes)]


def matrix_shape(module: nn.Module) -> tuple[int, int]:
    """A weight as a matrix: output rows against (input channels x kernel) columns."""
    w = module.weight
    return int(w.shape[0]), int(w[0].numel())


def is_adapter_target(module: nn.Module) -> bool:
    """A weight that mixes channels: see the module docstring."""
    if type(module) is nn.Linear:
        return True
    if type(module) is nn.Conv2d and module.groups == 1:
        return module.in_channels > 1 or module.kernel_size[0] > 1
    return False


def adapter_targets(model: nn.Module) -> list[str]:
    """Names of the modules that get low-rank adapters, in forward order."""
    return [n for n, m in model.named_modules() if is_adapter_target(m)]


def max_rank(model: nn.Module) -> int:
    """The largest useful adapter rank: min(rows, columns) of the widest adapted weight."""
    return max((min(matrix_shape(model.get_submodule(n))) for n in adapter_targets(model)), default=0)
