"""The strategy table is the one definition: host training and device capture both agree with it."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biotrain import adaptation, strategy_table
from biotrain.adaptation import FinetuneConfig, adapt
from biotrain.adaptation.finetune import _trainable
from biotrain.device import capture
from biotrain.models import build_model
from biotrain.models.lora import add_adapters
from biotrain.strategy_table import (COSTED_STRATEGIES, NORM_OF, STRATEGY_NAMES, STRATEGY_TABLE, n_trained,
                                     trainable_parameters)

C, T, K = 4, 128, 2


def _model(norm, seed=0):
    torch.manual_seed(seed)
    return build_model("mi_bminet", C, T, K, norm, F1=8, F2=8, Nf=16, Nf2=4)


LAYERS = ("pointwise",)  # what sparse trains here (beside the classifier)
CFG = FinetuneConfig(epochs=1, sparse_layers=LAYERS, lora_rank=2)


def _prepared(name, seed=0):
    """The model as ``name`` trains it (lora: with adapters)."""
    model = _model(STRATEGY_TABLE[name].norm, seed)
    if STRATEGY_TABLE[name].trains == "adapters":
        add_adapters(model, CFG.lora_rank, seed)
    return model


def test_table_is_complete_and_in_brief_order():
    """The paper's four, then the lighter schemes it argues against (bias, sparse, low-rank)."""
    assert list(STRATEGY_TABLE) == ["none", "last_layer", "full", "edge", "bias", "sparse", "lora"]
    for name, s in STRATEGY_TABLE.items():
        assert s.name == name
        assert s.trains in ("nothing", "classifier", "all", "affine", "layers", "adapters")
        assert s.norm in ("batch", "group")
        assert s.device_micro_batch is None or s.device_micro_batch >= 1
        assert s.costed == (s.trains != "nothing")
        if s.device_micro_batch is not None or s.host_micro_batch:
            assert s.micro_batches_exact, f"{name} splits its batch, so accumulation must be exact"
    with pytest.raises(dataclasses.FrozenInstanceError):
        STRATEGY_TABLE["full"].trains = "nothing"


def test_derived_names_come_from_the_table():
    assert STRATEGY_NAMES == tuple(STRATEGY_TABLE)
    assert adaptation.STRATEGY_NAMES is STRATEGY_NAMES
    assert NORM_OF == {n: s.norm for n, s in STRATEGY_TABLE.items()}
    assert COSTED_STRATEGIES == tuple(n for n, s in STRATEGY_TABLE.items() if s.costed)
    assert capture.SGD_DEFAULTS == {k: getattr(FinetuneConfig(), k) for k in ("lr", "momentum", "weight_decay")}


@pytest.mark.parametrize("name", list(STRATEGY_TABLE))
def test_host_and_device_train_the_same_parameters_in_the_same_mode(name):
    s = STRATEGY_TABLE[name]
    model = _prepared(name)
    host = {id(p) for p in _trainable(model, name, CFG).values()}
    names = {n for n, p in model.named_parameters() if id(p) in host}
    assert names == set(trainable_parameters(model, name, LAYERS))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == names
    if s.costed:
        device_names, training = capture.strategy_setup(model, name, LAYERS)
        assert set(device_names) == names and training == s.train_mode
        assert capture.resolve_batching(model, name, 8, None, None)[0] == (s.device_micro_batch or 8)
    else:
        with pytest.raises(ValueError, match="costs one of"):
            capture.strategy_setup(model, name)


@pytest.mark.parametrize("name", [n for n, s in STRATEGY_TABLE.items() if s.costed])
def test_host_training_mode_is_the_tables(name):
    s = STRATEGY_TABLE[name]
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, C, T)).astype(np.float32), rng.integers(0, K, 8)
    model = _model(s.norm)
    adapt(model, X, y, name, CFG, seed=0)
    assert model.training == s.train_mode


def test_last_layer_per_sample_gradients_sum_to_the_batch_gradient():
    """Why the device may run last_layer per sample: frozen eval-mode BatchNorm makes samples independent."""
    model = _model("batch").eval()
    params = list(trainable_parameters(model, "last_layer").values())
    x, y = torch.randn(8, 1, C, T), torch.randint(0, K, (8,))
    whole = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    summed = [torch.zeros_like(p) for p in params]
    for i in range(8):
        for acc, g in zip(summed, torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]) / 8, params)):
            acc += g
    for a, b in zip(whole, summed):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_last_layer_needs_a_classifier():
    with pytest.raises(ValueError, match="classifier"):
        trainable_parameters(torch.nn.Linear(2, 2), "last_layer")
    assert strategy_table.has_batchnorm(_model("batch")) and not strategy_table.has_batchnorm(_model("group"))


def test_what_the_lighter_strategies_train():
    """bias: norms' scale and shift, biases and the classifier; sparse: the chosen layers (a weight
    layer with its norm) and the classifier; lora: only the adapters, counted exactly by n_trained."""
    model = _model("batch")
    classifier = {"classifier.weight", "classifier.bias"}
    assert set(trainable_parameters(model, "bias")) == classifier | {
        f"norm{i}.{k}" for i in (1, 2, 3) for k in ("weight", "bias")}
    assert set(trainable_parameters(model, "sparse", LAYERS)) == classifier | {
        "pointwise.weight", "norm3.weight", "norm3.bias"}
    with pytest.raises(ValueError, match="'depth'.*pointwise"):
        trainable_parameters(model, "sparse", ("depth",))
    adapted = _prepared("lora")
    lora = trainable_parameters(adapted, "lora")
    assert lora and all(".lora_" in n for n in lora)
    assert {n.rsplit(".", 1)[0] for n in lora} == {"spatial", "pointwise", "classifier"}  # depthwise ones: none
    assert sum(p.numel() for p in lora.values()) == n_trained(model, "lora", rank=CFG.lora_rank)
    for name in ("bias", "sparse"):
        assert n_trained(model, name, LAYERS) == sum(p.numel() for p in trainable_parameters(model, name, LAYERS).values())
    assert n_trained(model, "bias") < n_trained(model, "sparse", LAYERS) < n_trained(model, "full")


def test_every_loop_follows_the_strategys_learning_rate():
    """sparse trains at a fifth of adapt.lr (frozen statistics: see the table's docstring); the
    schedule all loops (host, grouped, device program) share carries it."""
    from biotrain.adaptation.finetune import schedule_of

    cfg = FinetuneConfig(lr=5e-3, epochs=2)
    assert STRATEGY_TABLE["sparse"].lr_scale == 0.2
    for name, s in STRATEGY_TABLE.items():
        first = schedule_of(16, name, cfg, seed=0).steps()[0][0]
        assert first == pytest.approx(5e-3 * s.lr_scale)
