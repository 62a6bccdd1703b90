"""The fast host loop: last_layer bit-exact, edge one pass = summed micro-batches."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from biotrain.adaptation import FinetuneConfig, accuracy, adapt
from biotrain.adaptation.fast_loop import CachedFeatures, per_sample_model
from biotrain.adaptation.training import as_tensor
from tests.adaptation.cases import SHAPES, data as _data, model as _model, rel as _rel

pytestmark = pytest.mark.usefixtures("one_thread")  # as every adaptation task runs


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_last_layer_fast_is_bit_exact_with_the_reference_loop(name):
    X, y = _data(name, 21)  # 21 = 2 x 8 + 5: the partial batch runs at its own size too
    Xt, yt = _data(name, 12, seed=1)
    runs = {}
    for loop in ("reference", "fast"):
        model = _model(name, "batch")
        info = adapt(model, X, y, "last_layer", FinetuneConfig(epochs=3, host_loop=loop), seed=5)
        runs[loop] = (model.state_dict(), accuracy(model, Xt, yt), info.optimizer_steps)
    (ref, acc_ref, steps_ref), (fast, acc_fast, steps_fast) = runs["reference"], runs["fast"]
    assert [k for k in ref if not torch.equal(ref[k], fast[k])] == []
    assert not torch.equal(ref["classifier.weight"], _model(name, "batch").state_dict()["classifier.weight"])
    assert (acc_ref, steps_ref) == (acc_fast, steps_fast)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_cached_features_are_what_the_classifier_sees_in_a_batch_of_that_size(name):
    model = _model(name, "batch").eval()
    xs = as_tensor(_data(name, 13)[0])
    seen = []
    model.classifier.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    cache = CachedFeatures(model, xs)
    for idx in (torch.tensor([12, 0, 5, 7, 1, 9, 3, 11]), torch.tensor([4, 2, 10, 6, 8])):
        seen.clear()
        with torch.no_grad():
            model(xs[idx])
        expected = seen[0].clone()
        assert torch.equal(cache(idx), expected)


def _edge_gradients(model, xs, ys, micro):
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    model.zero_grad()
    for i in range(0, len(ys), micro):
        (loss_fn(model(xs[i:i + micro]), ys[i:i + micro]) / len(ys)).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_edge_one_pass_gradient_equals_eight_micro_batch_gradients(name):
    """Equal up to float32 summation order. Measured (6 seeds): <= 1.1e-6 relative per tensor,
    except the input convolution's weight (MI-BMINet 1.6e-6, EpiDeNet up to 5.8e-6): oneDNN sums its
    weight gradient over batch x time in one reduction, less accurate than 8 per-sample sums (float64
    says so), hence 1e-5 per tensor here, and 1e-6 for the median tensor."""
    model = _model(name, "group")
    assert per_sample_model(model)
    X, y = _data(name, 8)
    xs, ys = as_tensor(X), torch.from_numpy(y)
    micro = _edge_gradients(model, xs, ys, 1)
    one_pass = _edge_gradients(model, xs, ys, 8)
    exact = _edge_gradients(copy.deepcopy(model).double(), xs.double(), ys, 8)
    rel = {n: _rel(one_pass[n], micro[n]) for n in micro}
    assert all(micro[n].norm() > 0 for n in micro)
    assert max(rel.values()) <= 1e-5, rel
    assert float(np.median(list(rel.values()))) <= 1e-6, rel
    assert max(_rel(one_pass[n].double(), exact[n]) for n in micro) <= 1e-5  # rounding, not a different gradient


def test_per_sample_model_refuses_batchnorm_and_dropout():
    assert not per_sample_model(_model("epidenet", "batch"))
    assert not per_sample_model(_model("mi_bminet", "batch"))
    assert not per_sample_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.GroupNorm(1, 2), nn.Dropout(0.5)))
    assert per_sample_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.GroupNorm(1, 2), nn.ReLU()))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_edge_fast_loop_stays_close_to_the_reference_loop(name):
    X, y = _data(name, 16)
    runs = {}
    for loop in ("reference", "fast"):
        model = _model(name, "group")
        adapt(model, X, y, "edge", FinetuneConfig(epochs=2, host_loop=loop), seed=0)
        runs[loop] = model.state_dict()
    for k, ref in runs["reference"].items():
        assert _rel(runs["fast"][k], ref) <= 1e-5, k


@pytest.mark.parametrize("name,strategy,norm", [(n, s, m) for n in sorted(SHAPES)
                                                for s, m in (("last_layer", "batch"), ("edge", "group"), ("full", "batch"))])
def test_fast_loop_is_bit_exact_run_to_run(name, strategy, norm):
    X, y = _data(name, 16)
    runs = []
    for _ in range(2):
        model = _model(name, norm)
        adapt(model, X, y, strategy, FinetuneConfig(epochs=2), seed=3)
        runs.append(model.state_dict())
    assert [k for k in runs[0] if not torch.equal(runs[0][k], runs[1][k])] == []
    assert not torch.equal(runs[0]["classifier.weight"], _model(name, norm).state_dict()["classifier.weight"])


def test_unknown_host_loop_is_named():
    with pytest.raises(ValueError, match="'turbo'.*'fast', 'reference'"):
        adapt(_model("epidenet", "group"), *_data("epidenet", 8), "edge", FinetuneConfig(host_loop="turbo"), seed=0)
