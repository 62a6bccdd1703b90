"""adapt_many: K tasks trained as one computation match each task trained alone."""

import copy

import numpy as np
import pytest
import torch

from biotrain.adaptation import FinetuneConfig, adapt
from biotrain.adaptation.batched import adapt_many, batching_pays
from biotrain.adaptation.training import as_tensor
from biotrain.models import build_model
from tests.adaptation.cases import SHAPES

# last_layer: vmap over the classifier; full, edge, bias, sparse and lora: the models stacked into one
# wide model (stacked.py), sparse and lora on their cached frozen prefix
CASES = [("epidenet", "edge", "group"), ("epidenet", "full", "batch"), ("epidenet", "last_layer", "batch"),
         ("mi_bminet", "edge", "group"), ("mi_bminet", "full", "batch"), ("mi_bminet", "last_layer", "batch"),
         ("epidenet", "bias", "batch"), ("epidenet", "lora", "batch"), ("mi_bminet", "bias", "batch"),
         ("mi_bminet", "lora", "batch"), ("epidenet", "sparse", "batch"), ("mi_bminet", "sparse", "batch")]
# sparse: layers after a frozen prefix, as the study's picks are (the cached-prefix path)
SPARSE_LAYERS = {"epidenet": ("block3", "mix"), "mi_bminet": ("spatial", "pointwise")}


def _config(name, strategy, epochs=3):
    return FinetuneConfig(epochs=epochs, sparse_layers=SPARSE_LAYERS[name] if strategy == "sparse" else None)


pytestmark = pytest.mark.usefixtures("one_thread")  # as every adaptation task runs


def _models(name, norm, k):
    C, T, K, kw = SHAPES[name]
    out = []
    for seed in range(k):  # each task its own initial weights, as different subjects' base models
        torch.manual_seed(seed)
        out.append(build_model(name, C, T, K, norm, **kw))
    return out


def _data(name, sizes, seed=0):
    C, T, K, _ = SHAPES[name]
    rng = np.random.default_rng(seed)
    return ([rng.standard_normal((n, C, T)).astype(np.float32) for n in sizes], [rng.integers(0, K, n) for n in sizes])


def _predict(model, X):
    model.eval()
    with torch.no_grad():
        return model(as_tensor(X)).argmax(1)


@pytest.mark.parametrize("name,strategy,norm", CASES)
def test_each_task_matches_its_own_sequential_run(name, strategy, norm):
    sizes = [16, 13, 16, 16]  # ragged: the 13-window task runs alone, the three 16s as one group
    Xs, ys = _data(name, sizes)
    Xtest = _data(name, [24], seed=9)[0][0]
    cfg, seeds = _config(name, strategy), [3, 4, 5, 6]
    alone, batched = _models(name, norm, 4), _models(name, norm, 4)
    infos_alone = [adapt(m, X, y, strategy, cfg, s) for m, X, y, s in zip(alone, Xs, ys, seeds)]
    infos = adapt_many(batched, Xs, ys, strategy, cfg, seeds, force=True)
    assert [i.optimizer_steps for i in infos] == [i.optimizer_steps for i in infos_alone] == [6, 6, 6, 6]
    for a, b in zip(alone, batched):
        for (key, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
            if wa.is_floating_point():
                assert ((wb - wa).norm() / wa.norm().clamp_min(1e-30)).item() <= 1e-5, key
            else:
                assert torch.equal(wa, wb), key  # BatchNorm's count of batches
        assert torch.equal(_predict(a, Xtest), _predict(b, Xtest))
    start = _models(name, norm, 1)[0].state_dict()
    assert not torch.equal(batched[0].state_dict()["classifier.weight"], start["classifier.weight"])


@pytest.mark.parametrize("name,strategy,norm", CASES)
def test_batched_runs_are_bit_exact_run_to_run(name, strategy, norm):
    Xs, ys = _data(name, [16, 16, 16])
    runs = []
    for _ in range(2):
        models = _models(name, norm, 3)
        adapt_many(models, Xs, ys, strategy, _config(name, strategy, epochs=2), [0, 1, 2], force=True)
        runs.append([m.state_dict() for m in models])
    for a, b in zip(*runs):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_tasks_keep_their_own_seed():
    Xs, ys = _data("epidenet", [16, 16])
    Xs, ys = [Xs[0], Xs[0]], [ys[0], ys[0]]  # same data and start, different seeds: different batch orders
    start = _models("epidenet", "group", 1)[0]
    models = [copy.deepcopy(start), copy.deepcopy(start)]
    adapt_many(models, Xs, ys, "edge", FinetuneConfig(epochs=2), [0, 1], force=True)
    assert not torch.equal(models[0].classifier.weight, models[1].classifier.weight)


def test_mi_bminet_full_and_the_reference_loop_run_sequentially_bit_exact():
    assert not batching_pays("MIBMINet", "full") and not batching_pays("EpiDeNet", "none")
    assert batching_pays("EpiDeNet", "full")  # stacked: EpiDeNet's steps are overhead-bound (stacked.py)
    assert not batching_pays("MIBMINet", "edge")  # fast_conv made one model at a time the quicker way
    assert batching_pays("EpiDeNet", "edge") and batching_pays(_models("mi_bminet", "batch", 1)[0], "last_layer")
    for name, strategy, norm, loop in (("mi_bminet", "full", "batch", "fast"), ("epidenet", "edge", "group", "reference")):
        Xs, ys = _data(name, [16, 16])
        cfg = FinetuneConfig(epochs=1, host_loop=loop)
        alone, batched = _models(name, norm, 2), _models(name, norm, 2)
        for m, X, y, s in zip(alone, Xs, ys, [0, 1]):
            adapt(m, X, y, strategy, cfg, s)
        adapt_many(batched, Xs, ys, strategy, cfg, [0, 1])
        for a, b in zip(alone, batched):
            assert all(torch.equal(va, vb) for va, vb in zip(a.state_dict().values(), b.state_dict().values()))


def test_different_architectures_are_refused():
    C, T, K, _ = SHAPES["epidenet"]
    models = [build_model("epidenet", C, T, K, "group"), build_model("epidenet", C, T, K, "group", filters=(4, 8, 8))]
    Xs, ys = _data("epidenet", [8, 8])
    with pytest.raises(ValueError, match="one architecture"):
        adapt_many(models, Xs, ys, "edge", FinetuneConfig(epochs=1), [0, 1])
