"""LeanSGD updates the weights exactly as torch.optim.SGD does."""

import copy

import pytest
import torch
from torch import nn

from biotrain.adaptation.lean_sgd import LeanSGD
from biotrain.adaptation.training import as_tensor
from tests.adaptation.cases import SHAPES, data as _data, model as _model

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(model, optimizer_class, xs, ys, epochs=4, frozen=()):
    """Fine-tune every parameter but ``frozen`` (names) with cosine annealing; returns the optimizer."""
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    opt = optimizer_class([p for p in model.parameters()], lr=5e-3, momentum=0.9, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(3)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(ys), generator=gen)
        for i in range(0, len(ys), 8):
            batch = order[i:i + 8]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xs[batch]), ys[batch]).backward()
            opt.step()
        sched.step()
    return opt


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("frozen", [(), ("classifier.bias",)], ids=["all-train", "one-frozen"])
def test_lean_sgd_gives_the_same_weights_and_momentum_as_torch_sgd(name, frozen):
    X, y = _data(name, 21)
    xs, ys = as_tensor(X), torch.from_numpy(y)
    start = _model(name, "batch")
    models = {cls: copy.deepcopy(start) for cls in (torch.optim.SGD, LeanSGD)}
    opts = {cls: _train(m, cls, xs, ys, frozen=frozen) for cls, m in models.items()}
    ref, lean = (models[cls].state_dict() for cls in (torch.optim.SGD, LeanSGD))
    assert [k for k in ref if not torch.equal(ref[k], lean[k])] == []
    moved = [k for k, _ in start.named_parameters() if not torch.equal(start.state_dict()[k], lean[k])]
    assert sorted(moved) == sorted(k for k, _ in start.named_parameters() if k not in frozen)
    for p_ref, p_lean in zip(models[torch.optim.SGD].parameters(), models[LeanSGD].parameters()):
        buf_ref = opts[torch.optim.SGD].state[p_ref].get("momentum_buffer")
        buf_lean = opts[LeanSGD].state[p_lean].get("momentum_buffer")
        assert (buf_ref is None) == (buf_lean is None)
        assert buf_ref is None or torch.equal(buf_ref, buf_lean)


def test_lean_sgd_takes_no_closure():
    opt = LeanSGD([nn.Parameter(torch.ones(3))], lr=0.1, momentum=0.9, weight_decay=0.0)
    with pytest.raises(ValueError, match="closure"):
        opt.step(lambda: 0.0)
