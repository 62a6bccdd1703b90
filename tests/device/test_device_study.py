"""The chip costs the adapt flow carries into each result row and MLflow run (``biotrain.device.study``)."""

from __future__ import annotations

import pytest

from biotrain.device.study import FIELDS, calibration_costs, device_row_fields, step_costs

SMALL = {"name": "mi_bminet", "n_chans": 3, "n_times": 64, "n_outputs": 2, "norm": "group",
         "kwargs": {"F1": 4, "F2": 4, "Nf": 8, "Nf2": 4}}
HUGE = {"name": "mi_bminet", "n_chans": 64, "n_times": 4000, "n_outputs": 4, "norm": "batch", "kwargs": {}}
ROW_KEYS = {"device_fits_on_chip", "device_peak_l2_bytes", "device_latency_ms_per_step", "device_samples_per_s",
            "device_energy_mj_per_sample", "device_calib_time_s", "device_calib_energy_mj"}


def test_none_never_trains_so_it_costs_nothing():
    assert step_costs(SMALL, "none") == {}
    assert device_row_fields({}, n_calib=48, epochs=12) == dict.fromkeys(ROW_KEYS)


def test_a_small_step_fits_and_each_caller_gets_its_own_copy():
    costs = step_costs(SMALL, "edge", batch_size=8, micro_batch=1)
    assert list(costs) == [*FIELDS, "message"]
    assert costs["fits_on_chip"] is True and costs["peak_l2_bytes"] > 0 and costs["samples_per_s"] > 0
    assert costs["energy_mj_per_step"] == pytest.approx(8 * costs["energy_mj_per_sample"])
    costs["samples_per_s"] = -1.0  # a caller changing its figures does not change the next caller's
    again = step_costs(SMALL, "edge", batch_size=8, micro_batch=1)
    assert again["samples_per_s"] > 0 and again == {**costs, "samples_per_s": again["samples_per_s"]}


def test_a_step_that_does_not_fit_reports_no_throughput():
    costs = step_costs(HUGE, "full", batch_size=64)
    assert costs["fits_on_chip"] is False and costs["peak_l2_bytes"] > 1_400_000
    assert costs["latency_ms_per_step"] is None and costs["samples_per_s"] is None
    assert costs["message"].startswith("does not fit on chip")
    fields = device_row_fields(costs, n_calib=48, epochs=12)
    assert fields["device_fits_on_chip"] is False and fields["device_peak_l2_bytes"] == costs["peak_l2_bytes"]
    assert fields["device_calib_time_s"] is None and fields["device_calib_energy_mj"] is None


def test_a_calibration_costs_its_samples_times_epochs():
    costs = {"fits_on_chip": True, "peak_l2_bytes": 1000, "latency_ms_per_step": 80.0, "samples_per_s": 100.0,
             "energy_mj_per_sample": 0.5, "power_mw": 30.0}
    assert calibration_costs(costs, n_calib=48, epochs=10) == {"calib_time_s": 4.8, "calib_energy_mj": 240.0}
    fields = device_row_fields(costs, n_calib=48, epochs=10)
    assert set(fields) == ROW_KEYS
    assert fields == {"device_fits_on_chip": True, "device_peak_l2_bytes": 1000, "device_latency_ms_per_step": 80.0,
                      "device_samples_per_s": 100.0, "device_energy_mj_per_sample": 0.5,
                      "device_calib_time_s": 4.8, "device_calib_energy_mj": 240.0}
