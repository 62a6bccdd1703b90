"""The 16-bit step on the chip model: 2-byte tensors in the same planner, SIMD kernel rates."""

import json

import pytest
import torch

from biotrain.device.cli import main_device
from biotrain.device.estimate import estimate_step
from biotrain.device.sixteen import narrow
from biotrain.models import build_model

torch.set_num_threads(1)

SMALL = {"mi_bminet": dict(n_chans=4, n_times=64, n_outputs=2, F1=4, F2=4, Nf=8, Nf2=4),
         "epidenet": dict(n_chans=2, n_times=480, n_outputs=3, filters=(2, 4, 4))}


def _model(name, norm):
    kw = dict(SMALL[name])
    torch.manual_seed(0)
    return build_model(name, kw.pop("n_chans"), kw.pop("n_times"), kw.pop("n_outputs"), norm, **kw)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("strategy", ["full", "edge"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_16_bit_step_needs_at_most_055_of_the_fp32_peak_and_runs_faster(name, strategy, precision):
    m = _model(name, "group" if strategy == "edge" else "batch")
    fp32 = estimate_step(m, strategy, check=False, program="exported")
    half = estimate_step(m, strategy, check=False, program="exported", precision=precision)
    assert half.precision == precision and fp32.precision == "fp32"
    assert half.peak_l2_bytes <= 0.55 * fp32.peak_l2_bytes
    assert half.cycles_per_step < fp32.cycles_per_step and half.macs_per_step == fp32.macs_per_step
    assert half.plan_check is None  # the executed check runs fp32 tensors


def test_narrowing_halves_float_storages_and_keeps_the_labels():
    from biotrain.device.capture import capture_step
    from biotrain.device.memory import build_graph

    graph = build_graph(capture_step(_model("epidenet", "group"), "edge", 8, 1, 8))
    before = {s.sid: (s.nbytes, s.dtype) for s in graph.storages}
    narrow(graph, "bf16")
    for s in graph.storages:
        nbytes, dtype = before[s.sid]
        assert s.nbytes == (nbytes // 2 if dtype == torch.float32 else nbytes)
    assert any(dtype == torch.int64 for _, dtype in before.values())  # the labels stay 64-bit


def test_cli_precision(capsys):
    assert main_device(["estimate", "--model", "epidenet", "--strategy", "edge", "--precision", "bf16",
                        "--set", "T=480", "--no-check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "bf16"
    with pytest.raises(SystemExit):
        main_device(["estimate", "--model", "epidenet", "--strategy", "edge", "--precision", "fp8"])
    assert "fp8" in capsys.readouterr().err


def test_the_study_costs_each_precision_apart():
    from biotrain.device.study import step_costs

    spec = {"name": "epidenet", "n_chans": 2, "n_times": 480, "n_outputs": 3, "norm": "group", "sfreq": 256,
            "kwargs": {"filters": [2, 4, 4]}}
    fp32, bf16 = step_costs(spec, "edge"), step_costs(spec, "edge", precision="bf16")
    assert bf16["peak_l2_bytes"] <= 0.55 * fp32["peak_l2_bytes"]
