"""The `exported` costing, fitted on the RTL (benchmarks/device_rtl.py), predicts a shape it was
not fitted on: each C kernel kind carrying at least 5 % of the step within 15 % of the cycles the
CV32E40P RTL measures for it (one core), and the step within 15 %.

Needs the RTL tools (Verilator, pythondata-cpu-cv32e40p, the rv32 toolchain); skips otherwise.
One step of MI-BMINet (C=6, T=96, F1=4, F2=6, Nf=Nf2=8, batch 2, strategy full): a few seconds of
simulation once the model is built.
"""

import pytest
import torch

from biotrain.device.constants import load_constants
from biotrain.device.export.project import export_project, plan_step
from biotrain.device.export.runner import missing_tools, run_project
from biotrain.device.rtl import fit
from biotrain.models import build_model

torch.set_num_threads(1)

# held out: not among benchmarks/device_rtl.py's FIT shapes (its HELD "mi_c6_f4x6_k8")
HELD = {"name": "mi_bminet", "n_chans": 6, "n_times": 96, "n_outputs": 2, "norm": "batch",
        "kwargs": dict(F1=4, F2=6, Nf=8, Nf2=8, padding="same")}
TOL = 0.15
MIN_SHARE = 0.05


def _model():
    torch.manual_seed(0)
    s = HELD
    return build_model(s["name"], s["n_chans"], s["n_times"], s["n_outputs"], s["norm"], **s["kwargs"])


def test_held_out_shape_is_not_in_the_fit_set():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "device_rtl.py"
    spec = importlib.util.spec_from_file_location("device_rtl_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    fit_specs = [{k: v for k, v in s.items() if k != "batch"} for s in bench.FIT.values()]
    assert HELD not in fit_specs


@pytest.mark.xfail(strict=True, reason="issue 24 rewrote the kernels for the 8-core split and the L1 passes "
                   "(flattened shares, norms in passes with partial sums, pooling backward as a gather): on this "
                   "held-out shape norm_fwd measures ~1.9x and elementwise ~1.6x the cycles the constants fitted on "
                   "the old single-core kernels predict; refit with `python benchmarks/device_rtl.py`")
def test_exported_costing_predicts_held_out_rtl_cycles(tmp_path):
    why = missing_tools("rtl")
    if why:
        pytest.skip(why)
    # the kernels' own cycles: without the L1 stand-in's copies (on the chip the DMA engine moves them)
    export_project(tmp_path / "p", _model(), "full", model_spec=HELD, batch_size=2, steps=1, l1_tiles=False)
    res = run_project(tmp_path / "p", "rtl", steps=1)
    assert res["ok"]
    measured, total = res["cycles_per_step_by_kind"], res["cycles_per_step"][0]
    _, graph, plan = plan_step(_model(), "full", 2)
    c = load_constants({"n_cores": 1}, program="exported")
    pred = fit.predict_by_kind(fit.step_features(graph, plan), c)
    bad = {k: (round(pred[k]), m) for k, m in measured.items()
           if m >= MIN_SHARE * total and abs(pred[k] - m) > TOL * m}
    assert not bad, f"kinds off by more than {TOL:.0%} (predicted, measured): {bad}"
    assert abs(sum(pred.values()) - total) <= TOL * total, (sum(pred.values()), total)
