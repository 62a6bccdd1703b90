"""``torch.optim.SGD``'s update with less Python per step, bit for bit.

On the CPU ``torch.optim.SGD`` defaults to its single-tensor path: a Python loop over the
parameters issuing three to four tensor operations each. At the fine-tuning step's size (a dozen
tensors of a few thousand weights) that loop is a noticeable share of a whole step.
:class:`LeanSGD` issues the same operations, with the same scalars and in the same order per
tensor, as four ``torch._foreach_*`` calls, which on the CPU run that per-tensor loop in C++
(timings: ``benchmarks/README.md``, "The fine-tuning loop"). Every element sees the same
arithmetic, so the weights are identical to ``torch.optim.SGD``'s
(``tests/adaptation/test_lean_sgd.py`` checks ``torch.equal`` after whole fine-tuning runs). The
learning-rate scheduler works on it as on any optimizer.

Covers what fine-tuning uses: momentum and weight decay, no dampening, Nesterov or maximize.
"""

from __future__ import annotations

import torch


class LeanSGD(torch.optim.SGD):
    """SGD with momentum and weight decay whose step is four foreach calls per parameter group."""

    def __init__(self, params, lr: float, momentum: float, weight_decay: float):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("LeanSGD.step takes no closure")
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]  # as SGD: no gradient, no update
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"] != 0:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            bufs = [self.state[p].get("momentum_buffer") for p in params]
            if group["momentum"] != 0:
                if any(b is None for b in bufs):  # first step (per parameter): the buffer is the gradient
                    for k, p in enumerate(params):
                        if bufs[k] is None:
                            bufs[k] = self.state[p]["momentum_buffer"] = grads[k].detach().clone()
                        else:
                            bufs[k].mul_(group["momentum"]).add_(grads[k], alpha=1)
                else:
                    torch._foreach_mul_(bufs, group["momentum"])
                    torch._foreach_add_(bufs, grads, alpha=1)
                grads = bufs
            torch._foreach_add_(params, grads, alpha=-group["lr"])
        return None
