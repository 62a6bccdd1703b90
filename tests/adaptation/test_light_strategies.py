"""bias, sparse and lora on the host: what changes, what stays frozen, the fast loop against the
plain one, and run-to-run determinism."""

import copy

import numpy as np
import pytest
import torch

from biotrain.adaptation import FinetuneConfig, adapt
from biotrain.adaptation.fast_loop import frozen_prefix
from biotrain.models.layers import adapter_targets, layer_parameters, weight_layers
from biotrain.models.lora import LoRA, add_adapters, has_adapters, merge_adapters
from biotrain.strategy_table import trainable_parameters
from tests.adaptation.cases import data, model, rel

pytestmark = pytest.mark.usefixtures("one_thread")

SPARSE = {"mi_bminet": ("pointwise",), "epidenet": ("block3", "mix")}
CFG = FinetuneConfig(epochs=2, lora_rank=2)


def _cfg(name):
    return FinetuneConfig(epochs=CFG.epochs, lora_rank=CFG.lora_rank, sparse_layers=SPARSE[name])


def _changed(before, after):
    return {k for k, v in before.state_dict().items() if v.is_floating_point() and not torch.equal(v, after.state_dict()[k])}


@pytest.mark.parametrize("name", ["mi_bminet", "epidenet"])
@pytest.mark.parametrize("strategy", ["bias", "sparse", "lora"])
def test_only_what_the_strategy_trains_changes(name, strategy):
    base = model(name, "batch")
    adapted = copy.deepcopy(base)
    X, y = data(name, 16)
    adapt(adapted, X, y, strategy, _cfg(name), seed=0)
    assert not has_adapters(adapted) and adapted.state_dict().keys() == base.state_dict().keys()  # lora merged
    changed = _changed(base, adapted)
    if strategy == "lora":  # the merged update lands in the adapted weights only
        expected = {f"{n}.weight" for n in adapter_targets(base)}
    else:
        expected = set(trainable_parameters(base, strategy, SPARSE[name]))
    assert changed == expected
    assert not any(k.endswith(("running_mean", "running_var")) for k in changed)  # frozen statistics (eval mode)


@pytest.mark.parametrize("name", ["mi_bminet", "epidenet"])
@pytest.mark.parametrize("strategy", ["bias", "sparse", "lora"])
def test_fast_loop_matches_the_plain_loop_and_reruns_bit_for_bit(name, strategy):
    X, y = data(name, 16)
    runs = {}
    for loop in ("fast", "reference", "fast"):
        m = model(name, "batch")
        cfg = FinetuneConfig(epochs=2, lora_rank=2, sparse_layers=SPARSE[name], host_loop=loop)
        adapt(m, X, y, strategy, cfg, seed=3)
        if loop in runs:  # the second fast run: the same bits
            for a, b in zip(runs[loop].state_dict().values(), m.state_dict().values()):
                assert torch.equal(a, b)
        runs[loop] = m
    for (key, a), b in zip(runs["fast"].state_dict().items(), runs["reference"].state_dict().values()):
        if a.is_floating_point():
            assert rel(a, b) <= 1e-5, key  # fast temporal convolutions: float summation order only


def test_the_frozen_prefix_is_what_precedes_the_first_trained_layer():
    eeg, eog = model("mi_bminet", "batch"), model("epidenet", "batch")
    names = [n for n, _ in eeg.chain()]
    assert frozen_prefix(eeg, set(trainable_parameters(eeg, "bias"))) == names.index("norm1")
    assert frozen_prefix(eeg, set(trainable_parameters(eeg, "sparse", ("pointwise",)))) == names.index("pointwise")
    assert frozen_prefix(eog, set(trainable_parameters(eog, "sparse", ("mix",)))) == [n for n, _ in eog.chain()].index("mix")
    add_adapters(eog, 2, 0)  # EpiDeNet's first convolution mixes no channels: no adapter, a frozen prefix
    assert frozen_prefix(eog, set(trainable_parameters(eog, "lora"))) == 1


def test_adapters_start_as_the_base_model_and_merge_exactly():
    base = model("mi_bminet", "batch").eval()
    x = torch.from_numpy(data("mi_bminet", 4)[0]).unsqueeze(1)
    adapted = copy.deepcopy(base)
    add_adapters(adapted, 4, seed=1)
    assert torch.equal(adapted(x), base(x))  # B starts at zero
    with torch.no_grad():
        for m in adapted.modules():
            if isinstance(m, LoRA):
                m.lora_B.normal_()
    out = adapted(x)
    assert merge_adapters(adapted) == 3 and not has_adapters(adapted)
    torch.testing.assert_close(adapted(x), out, rtol=1e-5, atol=1e-5)
    wrapped = copy.deepcopy(base)
    add_adapters(wrapped, 4, seed=1)
    ranks = {n: m.lora_A.shape[0] for n, m in wrapped.named_modules() if isinstance(m, LoRA)}
    assert ranks == {"spatial": 4, "pointwise": 4, "classifier": 2}  # at most min(rows, columns): 2 classes


def test_layers_pair_a_weight_with_its_norm():
    eeg = model("mi_bminet", "batch")
    assert list(weight_layers(eeg)) == ["spatial", "temporal", "depthwise", "pointwise", "classifier"]
    assert layer_parameters(eeg, "temporal") == ["temporal.weight", "norm2.weight", "norm2.bias"]
    with pytest.raises(ValueError, match="'norm2'.*'spatial'"):
        layer_parameters(eeg, "norm2")


def test_sparse_needs_its_layers():
    X, y = data("epidenet", 8)
    with pytest.raises(ValueError, match="sparse_layers"):
        adapt(model("epidenet", "batch"), X, y, "sparse", FinetuneConfig(epochs=1), seed=0)
