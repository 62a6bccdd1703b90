"""Cost rules shared by many entries: no device work, and one element-wise pass.

Most ops cost as one row-parallel pass over their largest tensor, of a kind with its own fitted
cycles per element (``cost.py``). In the ``update`` phase every such op is the optimizer's; a
backward ``add`` into an accumulator (a placeholder) is the gradient accumulation, also costed as
the optimizer's.
"""

from __future__ import annotations

import torch

from ..kernels import Kernel, elementwise, numel, tensor_inputs, tensor_outputs


def free(node, a, backward, phase) -> Kernel:
    """Views, getitem, allocation: nothing runs on the device."""
    return Kernel("free")


def largest(node: torch.fx.Node):
    """The op's largest tensor, output or input: what an element-wise pass walks."""
    vals = [t for _, t in tensor_outputs(node)]
    vals += [x.meta.get("val") for x in tensor_inputs(node) if isinstance(x.meta.get("val"), torch.Tensor)]
    return max(vals + [torch.empty(0)], key=numel)


def first_input(node: torch.fx.Node):
    """The traced value of the op's first argument (the tensor a norm walks)."""
    x = node.args[0] if node.args else None
    return x.meta.get("val") if isinstance(x, torch.fx.Node) else None


def pointwise(fwd: str, bwd: str | None = None, over=largest):
    """Cost rule: one element-wise pass of kind ``fwd`` (``bwd`` in the backward) over ``over(node)``."""
    def rule(node, a, backward, phase) -> Kernel:
        if phase == "update":
            return elementwise("optimizer", first_input(node))
        return elementwise(bwd if backward and bwd else fwd, over(node))
    return rule


ELEMENTWISE = pointwise("elementwise")  # also the rule of an op the table does not name


def accumulating(node, a, backward, phase) -> Kernel:
    """``add``: in the backward, an add into a step input (the accumulated gradient) is the optimizer's."""
    if phase != "update" and backward and node.args and _into_placeholder(node):
        return elementwise("optimizer", largest(node))
    return ELEMENTWISE(node, a, backward, phase)


def _into_placeholder(node: torch.fx.Node) -> bool:
    x = node.args[0]
    return isinstance(x, torch.fx.Node) and x.op == "placeholder"
