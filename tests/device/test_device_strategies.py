"""The device step of ``bias``, ``sparse`` and ``lora``: what the backward keeps, the plan executed
against eager PyTorch, the options of ``device estimate`` and the study's per-job costs."""

import json

import pytest
import torch

from biotrain.device.capture import capture_step
from biotrain.device.cli import main_device
from biotrain.device.estimate import estimate_step
from biotrain.device.memory import build_graph, plan_memory
from biotrain.device.study import step_costs
from biotrain.models import build_model
from biotrain.models.layers import layer_parameters

torch.set_num_threads(1)

# the study's default shapes (docs/device.md) and small ones for the executed checks
STUDY = {"mi_bminet": dict(n_chans=8, n_times=400, n_outputs=2, temporal_kernel_s=0.32, depthwise_kernel_s=0.04,
                           sfreq=200),
         "epidenet": dict(n_chans=3, n_times=1000, n_outputs=11, sfreq=500)}
SMALL = {"mi_bminet": dict(n_chans=4, n_times=64, n_outputs=2, F1=4, F2=4, Nf=8, Nf2=4),
         "epidenet": dict(n_chans=2, n_times=480, n_outputs=3, filters=(2, 4, 4))}


def _model(name, strategy="bias", shapes=STUDY):
    kw = dict(shapes[name])
    torch.manual_seed(0)
    return build_model(name, kw.pop("n_chans"), kw.pop("n_times"), kw.pop("n_outputs"),
                       norm="group" if strategy == "edge" else "batch", **kw)


def _peak(name, strategy, **kw):
    return estimate_step(_model(name, strategy), strategy, program="exported", check=False, **kw).peak_l2_bytes


@pytest.mark.parametrize("name", sorted(STUDY))
def test_bias_keeps_nothing_for_frozen_weights(name):
    """``bias`` trains no convolution weight: no weight-gradient convolution runs, and no
    convolution's input is kept until its backward (which reads it for its shape alone), so the
    step's peak is below ``full``'s and ``edge``'s."""
    g = build_graph(capture_step(_model(name), "bias"))
    conv_bwd = [r for r in g.ops if r.name == "convolution_backward"]
    assert conv_bwd and all(not r.node.args[10][1] for r in conv_bwd)
    assert not any(r.kernel.kind.endswith(("_wg", "_bwd")) and r.name == "convolution_backward" for r in conv_bwd)
    for r in conv_bwd:
        x = r.node.args[1]
        sid = g.value_storage.get((r.phase, x.name, 0))
        if sid is not None and not g.storages[sid].persistent:
            assert sid not in r.inputs and g.storages[sid].end < r.t, (x.name, g.storages[sid].end, r.t)
    bias = _peak(name, "bias")
    assert bias < _peak(name, "edge") and bias < _peak(name, "full")


def test_frozen_batchnorm_is_rematerialized_with_its_running_statistics():
    """The reported segfault: MI-BMINet's ``bias`` step recomputed an eval-mode BatchNorm without its
    running statistics. The planned step now equals eager PyTorch."""
    m = build_model("mi_bminet", 8, 400, 2)
    est = estimate_step(m, "bias", program="exported", check=True)
    assert est.plan_check["ok"], est.plan_check
    assert any(r.startswith("rematerialize:") for r in est.planner["rewrites"])


CASES = [("mi_bminet", "bias", None), ("epidenet", "bias", None), ("mi_bminet", "lora", None),
         ("epidenet", "lora", None), ("mi_bminet", "sparse", ("spatial",)),
         ("epidenet", "sparse", ("block1", "block2", "block3", "spatial", "mix", "classifier"))]


@pytest.mark.parametrize("name,strategy,layers", CASES, ids=lambda v: ",".join(v) if isinstance(v, tuple) else str(v))
def test_planned_step_equals_pytorch(name, strategy, layers):
    """The plan executed on one flat buffer (inputs read for their shape alone are fed NaN) equals
    eager PyTorch. Training the first layer (sparse) or adapting it (MI-BMINet's lora: its first op is
    B @ A) leaves no frozen prefix to stream: the lora bug."""
    m = _model(name, strategy, SMALL)
    est = estimate_step(m, strategy, program="exported", check=True, layers=layers, rank=2 if strategy == "lora" else None)
    assert est.plan_check["ok"], est.plan_check
    if strategy == "lora":
        assert est.rank == 2 and "classifier" in est.adapted
        assert "temporal" not in est.adapted and "block1.0" not in est.adapted  # depthwise; 1-channel filter bank
        assert est.n_trainable < sum(p.numel() for p in m.parameters())
    if strategy == "sparse":
        assert est.layers == list(layers)
        names = {n for layer in set(layers) | {"classifier"} for n in layer_parameters(m, layer)}
        assert est.n_trainable == sum(p.numel() for n, p in m.named_parameters() if n in names)


MI_SMALL = ["--set", "C=4", "T=64", "F1=4", "F2=4", "Nf=8", "Nf2=4", "padding=same"]


def _cli(capsys, *args):
    code = main_device(["estimate", "--model", "mi_bminet", *MI_SMALL, "--no-check", *args])
    return code, capsys.readouterr()


@pytest.mark.parametrize("args,needle", [
    (["--strategy", "lora", "--rank", "0"], "--rank=0: an adapter needs a whole rank of at least 1; allowed: 1..4"),
    (["--strategy", "lora", "--rank", "5"], "--rank=5 is above min(rows, columns) of every adapted weight"),
    (["--strategy", "sparse", "--layers", "pointwise,spatail"],
     "--layers: 'spatail' is not a layer of MIBMINet; allowed: spatial, temporal, depthwise, pointwise, classifier"),
    (["--strategy", "sparse", "--budget-kb", "1"], "--budget-kb=1 is below the step that trains the classifier alone"),
    (["--strategy", "bias", "--rank", "2"], "--rank is for strategy 'lora'"),
])
def test_bad_strategy_options_are_one_clear_error(capsys, args, needle):
    code, out = _cli(capsys, *args)
    assert code == 2 and needle in out.err and out.err.count("\n") == 1, out.err


def test_budget_picks_layers_and_says_which(capsys):
    """``--budget-kb`` picks the deepest layers that fit; the JSON names them, and the chosen step
    fits the budget."""
    code, out = _cli(capsys, "--strategy", "sparse", "--layers", "pointwise", "--json")
    one = json.loads(out.out)["peak_l2_bytes"]
    code, out = _cli(capsys, "--strategy", "sparse", "--budget-kb", f"{one / 1000:.3f}", "--json")
    d = json.loads(out.out)
    assert code == 0 and d["layer_selection"]["order"] == ["pointwise", "depthwise", "temporal", "spatial"]
    assert d["layers"] == d["layer_selection"]["chosen"] and d["layers"][0] == "pointwise"
    assert d["peak_l2_bytes"] <= one
    code, out = _cli(capsys, "--strategy", "lora", "--json")
    d = json.loads(out.out)
    assert code == 0 and d["rank"] == 4 and d["adapted"] == ["spatial", "pointwise", "classifier"]


def test_step_costs_are_per_layers_and_rank():
    spec = {"name": "epidenet", "n_chans": 2, "n_times": 480, "n_outputs": 3, "norm": "batch", "sfreq": 256,
            "kwargs": {"filters": [2, 4, 4]}}
    deep = step_costs(spec, "sparse", layers=("mix",), program="exported")
    first = step_costs(spec, "sparse", layers=("block1",), program="exported")
    assert deep["peak_l2_bytes"] < first["peak_l2_bytes"]  # training the first layer keeps the most
    r1 = step_costs(spec, "lora", rank=1, program="exported")
    r4 = step_costs(spec, "lora", rank=4, program="exported")
    assert r1["energy_mj_per_sample"] < r4["energy_mj_per_sample"]
