"""One entry of the op table (``OpSpec``) and what its two halves share.

An entry holds, for the aten ops it names, the *cost rule* (the device kernel ``kernels.classify``
returns: its loop nests, MACs or elements, scratch) and the *C emitter* (the kernel call, or the
L1 stages, ``export.codegen`` writes into ``step.c``), with the names of the C kernels that emitter
calls. ``Args`` reads an op's arguments by their aten schema names, so neither half indexes
``node.args`` by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

# emitters that write no C call: resolved while the step is generated
VIEW = "view"  # the op applied to the arena of element indices (``view``, ``t``, ``expand``...)
NO_CODE = "no code"  # allocation only (``empty``): the program computes nothing


class UnsupportedOp(NotImplementedError):
    """The C export has no kernel (or no variant of its kernel) for an op of the step."""


@dataclass(frozen=True)
class OpSpec:
    """The aten ops ``names`` (by ``kernels.op_name``): their cost rule, C emitter and C kernels.

    ``cost(node, a, backward, phase) -> kernels.Kernel``; ``emit(cg, node, a, out) -> str | list[Stage]``
    (``cg``: the ``StepCodegen``, ``a``: ``Args`` resolving to arena views, ``out``: the output
    view(s)), ``VIEW``, ``NO_CODE``, or None: a cost-only entry, which the export refuses by name.
    ``kernel``: every C function (``c/kernels.h``) the emitter may call."""

    names: tuple[str, ...]
    cost: Callable
    emit: Callable | str | None = None
    kernel: tuple[str, ...] = ()

    @property
    def exported(self) -> bool:
        return self.emit is not None


_NAMES: dict = {}


def _schema_names(target) -> dict:
    """{argument name: (position, schema Argument)} of an aten overload, cached per overload."""
    names = _NAMES.get(target)
    if names is None:
        names = _NAMES[target] = {arg.name: (i, arg) for i, arg in enumerate(target._schema.arguments)}
    return names


class Args:
    """An aten node's arguments by schema name: ``a.stride`` is ``convolution``'s ``node.args[3]``.

    ``at(i)`` resolves positional argument ``i`` (the cost rules get the traced tensor of a node,
    the emitters its arena view); keyword-only arguments (``alpha``, ``beta``: scalars) come from
    ``node.kwargs`` as traced; an argument the node leaves out takes its schema default."""

    def __init__(self, node: torch.fx.Node, at: Callable[[int], Any] | None = None):
        self._node = node
        self._at = at or node.args.__getitem__

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        hit = _schema_names(self._node.target).get(name)
        if hit is None:
            raise AttributeError(f"{self._node.target} has no argument {name!r}")
        i, arg = hit
        if i < len(self._node.args):
            return self._at(i)
        if name in self._node.kwargs:
            return self._node.kwargs[name]
        if arg.has_default_value():
            return arg.default_value  # as the op sees it: ``int[2] padding=0`` is [0, 0]
        raise AttributeError(f"{self._node.name}: argument {name!r} not given")

    def is_node(self, name: str) -> bool:
        """Argument ``name`` is a value of the graph (a tensor of the step), not a constant."""
        i, _ = _schema_names(self._node.target)[name]
        raw = self._node.args[i] if i < len(self._node.args) else self._node.kwargs.get(name)
        return isinstance(raw, torch.fx.Node)

    def get(self, name: str, default: Any = None) -> Any:
        """Argument ``name``, or ``default`` where the overload has no such argument."""
        return getattr(self, name) if name in _schema_names(self._node.target) else default


def meta_args(node: torch.fx.Node) -> Args:
    """The cost rules' view of the arguments: a node argument is its traced tensor (``meta['val']``)."""
    def at(i):
        x = node.args[i]
        return x.meta.get("val") if isinstance(x, torch.fx.Node) else x
    return Args(node, at)


def fmt(x: float) -> str:
    """A C float literal; a non-finite constant has none."""
    r = repr(float(x))
    if "inf" in r or "nan" in r:
        raise UnsupportedOp(f"non-finite constant {x!r} in the step")
    return (r if ("e" in r or "." in r) else r + ".0") + "f"


def vid(placeholder: str) -> int:
    """The view id of a placeholder ``@i@`` (or ``&@i@``)."""
    return int(placeholder.strip("&@"))
