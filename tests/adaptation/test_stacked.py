"""K models stacked into one wide model compute exactly the K models."""

import copy

import pytest
import torch
from torch import nn

from biotrain.adaptation.stacked import stack_models, stackable, unstack_into
from biotrain.adaptation.training import as_tensor
from biotrain.models import MODELS
from tests.adaptation.cases import SHAPES, data as _data, model as _model

pytestmark = pytest.mark.usefixtures("one_thread")


def _three(name, norm):
    return [_model(name, norm, seed=s) for s in range(3)]  # different weights per model


def test_every_registered_model_is_stackable():
    assert set(SHAPES) == set(MODELS)  # a new model gets a shape here, and with it this check
    for name in SHAPES:
        for norm in ("batch", "group"):
            assert stackable(_model(name, norm))


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_the_wide_model_computes_each_model_on_its_own_windows(name, norm, train):
    models = [m.train(train) for m in _three(name, norm)]
    xs = [as_tensor(_data(name, 6, seed=k)[0]) for k in range(3)]  # each model its own batch
    wide = stack_models(models)
    out = wide(torch.cat(xs, dim=1))  # (6, 3, classes): sample b of model k in channel k
    for k, (m, x) in enumerate(zip(models, xs)):
        alone = m(x)  # in train mode BatchNorm normalises over this model's batch only
        assert torch.allclose(out[:, k], alone, rtol=1e-4, atol=1e-5), k
    if train:  # BatchNorm's running statistics too: each model's channels, from its own batch
        copies = [copy.deepcopy(m) for m in models]
        unstack_into(wide, copies)
        for m, c in zip(models, copies):
            for key, value in m.state_dict().items():
                assert torch.allclose(value.double(), c.state_dict()[key].double(), rtol=1e-4, atol=1e-6), key

@pytest.mark.parametrize("name", sorted(SHAPES))
def test_unstacking_returns_every_parameter_and_buffer(name):
    models = _three(name, "batch")
    targets = [_model(name, "batch", seed=9) for _ in models]
    unstack_into(stack_models(models), targets)
    for m, t in zip(models, targets):
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), t.state_dict().values()))


def test_an_unknown_layer_is_refused():
    class WithDropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop, self.classifier = nn.Dropout(0.5), nn.Linear(4, 2)

        def forward(self, x):
            return self.classifier(self.drop(x))

    assert not stackable(WithDropout())
    with pytest.raises(ValueError, match="cannot be stacked"):
        stack_models([WithDropout(), WithDropout()])
