"""The gap9-sim estimate against BRIEF's MI-BMINet reference figures (C=8, T=1900, batch 8)."""

import json

import pytest
import torch

from biotrain.device import DeviceEstimate, estimate_step
from biotrain.models import build_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ref():
    torch.manual_seed(0)
    # CP-SAT stops as soon as it meets the lower bound (~0.3 s here); the long limit only guards
    # against a starved CPU, so the figures never depend on machine load
    slack = {"cpsat_time_limit_s": 20}
    edge = estimate_step(build_model("mi_bminet", 8, 1900, 2, norm="group", padding="valid"), "edge",
                         constants=slack, check=True)
    full = estimate_step(build_model("mi_bminet", 8, 1900, 2, norm="batch", padding="valid"), "full",
                         constants=slack, check=False)
    return edge, full


def test_full_needs_several_mb_and_does_not_fit(ref):
    _, full = ref
    assert full.peak_l2_bytes > 3e6
    assert abs(full.peak_l2_bytes / 5.36e6 - 1) <= 0.20  # BRIEF's 5.36 MB (the same rewrites shrink it too)
    assert not full.fits_on_chip and not full.fits_l2
    # no throughput for a step the chip cannot run, but the reason and the culprits are given
    assert full.latency_ms_per_step is None and full.samples_per_s is None and full.energy_mj_per_step is None
    assert "does not fit" in full.message and str(full.peak_l2_bytes) in full.message
    assert full.dominant_tensors and full.dominant_tensors[0]["bytes"] >= full.dominant_tensors[-1]["bytes"]


def test_edge_fits_at_or_under_the_reference_peak(ref):
    edge, full = ref
    assert edge.fits_on_chip
    assert edge.peak_l2_bytes <= 0.67e6
    # every saving behind that figure is executed: the plan ran on one arena and matched eager PyTorch
    assert edge.plan_check is not None and edge.plan_check["ok"]
    assert full.peak_l2_bytes / edge.peak_l2_bytes > 4
    assert edge.peak_l1_bytes <= edge.l1_budget_bytes


def test_planner_overhead_is_small(ref):
    for est in ref:
        assert est.lower_bound_l2_bytes <= est.peak_l2_bytes
        assert est.planner_overhead <= 1.10


def test_latency_and_power_within_10_percent_of_brief(ref):
    edge, _ = ref
    assert abs(edge.latency_ms_per_step / 469.6 - 1) <= 0.10
    assert abs(edge.power_mw / 43.8 - 1) <= 0.10
    assert edge.power_mw_low <= 43.8 <= edge.power_mw_high  # the published figure lies in the reported band
    assert edge.program == "paper-toolchain" and edge.constants["l2_im2col"] is True
    assert edge.peak_l2_bytes_per_tile_im2col == edge.peak_l2_bytes  # its convolutions materialise no im2col
    assert edge.samples_per_s == pytest.approx(8 / (edge.latency_ms_per_step / 1e3))
    assert edge.energy_mj_per_step == pytest.approx(edge.power_mw * edge.latency_ms_per_step / 1e3)
    assert edge.energy_mj_per_sample == pytest.approx(edge.energy_mj_per_step / 8)
    assert edge.sessions_per_charge is None  # no session given (the constants know no study)
    session = estimate_step(build_model("epidenet", 2, 1000, 11, norm="group"), "edge",
                            session_samples=115, epochs=30, check=False)
    assert session.session["steps"] == 15 * 30
    assert session.energy_mj_per_session == pytest.approx(session.energy_mj_per_step * 15 * 30)
    assert session.sessions_per_charge == pytest.approx(session.session["battery_mj"] / session.energy_mj_per_session)


def test_to_dict_is_json_with_the_agreed_keys(ref):
    d = ref[0].to_dict()
    json.dumps(d)
    for key in ("peak_l2_bytes", "lower_bound_l2_bytes", "peak_l1_bytes", "l2_budget_bytes", "l1_budget_bytes",
                "planner_overhead", "latency_ms_per_step", "samples_per_s", "power_mw", "energy_mj_per_step",
                "energy_mj_per_sample", "fits_on_chip", "breakdown", "dominant_tensors", "cycles_by_kernel",
                "energy_mj_per_session", "sessions_per_charge", "l1_tiles", "energy_breakdown_mj"):
        assert key in d
    assert sum(d["breakdown"].values()) == d["lower_bound_l2_bytes"]


def test_bad_arguments_are_explained():
    m = build_model("epidenet", 2, 500, 11, norm="group")
    with pytest.raises(ValueError, match="'none'.*last_layer"):
        estimate_step(m, "none")
    with pytest.raises(NotImplementedError, match="gap9-board"):
        estimate_step(m, "edge", backend="gap9-board")
    with pytest.raises(ValueError, match="micro_batch \\* accum"):
        estimate_step(m, "edge", micro_batch=2, accum=2)
    with pytest.raises(ValueError, match="GroupNorm"):
        estimate_step(build_model("epidenet", 2, 500, 11, norm="batch"), "edge")
    with pytest.raises(ValueError, match="unknown device constant 'freq'"):
        estimate_step(m, "edge", constants={"freq": 1})


def test_constants_change_the_estimate():
    m = build_model("epidenet", 2, 500, 11, norm="group")
    base = estimate_step(m, "edge", check=False)
    slow = estimate_step(m, "edge", constants={"freq_mhz": 185}, check=False)
    assert isinstance(base, DeviceEstimate)
    assert slow.latency_ms_per_step == pytest.approx(2 * base.latency_ms_per_step)
    tiny = estimate_step(m, "edge", constants={"l2_budget_bytes": 1000}, check=False)
    assert not tiny.fits_on_chip and tiny.latency_ms_per_step is None


def test_check_runs_by_default_below_the_mac_limit():
    m = build_model("epidenet", 2, 500, 11, norm="group")
    assert estimate_step(m, "edge").plan_check["ok"]
    assert estimate_step(m, "edge", constants={"check_max_macs": 0}).plan_check is None
