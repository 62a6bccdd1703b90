"""The kernel-level latency and the activity-based energy of the gap9-sim backend."""

import pytest
import torch

from biotrain.device import estimate_step, load_constants
from biotrain.device.capture import capture_step
from biotrain.device.cost import step_cost, work_cycles
from biotrain.device.kernels import Work
from biotrain.device.memory import build_graph
from biotrain.models import build_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def c():
    # the per-tile placement (the graphs below are built without L2 scratch): the exported program
    return load_constants(program="exported")


@pytest.fixture(scope="module")
def eog_graph():
    torch.manual_seed(0)
    return build_graph(capture_step(build_model("epidenet", 2, 1000, 11, norm="group"), "edge"))


def test_small_parallel_dimension_leaves_cores_idle(c):
    """3 output channels on 8 cores take as long as on 3 cores; 16 channels split evenly."""
    w3 = Work("conv_fwd", macs=3 * 1000 * 36, par=3, inner=36)
    assert work_cycles(w3, {**c, "n_cores": 8})[0] == pytest.approx(work_cycles(w3, {**c, "n_cores": 3})[0])
    w16 = Work("conv_fwd", macs=16 * 1000 * 36, par=16, inner=36)
    one, eight = work_cycles(w16, {**c, "n_cores": 1})[0], work_cycles(w16, {**c, "n_cores": 8})[0]
    assert one / eight == pytest.approx(8)
    w9 = Work("conv_fwd", macs=9 * 1000 * 36, par=9, inner=36)  # 9 on 8 cores: one core does 2
    assert work_cycles(w9, {**c, "n_cores": 8})[0] == pytest.approx(work_cycles(w9, {**c, "n_cores": 5})[0])


def test_short_inner_loops_are_less_efficient(c):
    macs = 64 * 4096
    short = work_cycles(Work("conv_fwd", macs=macs, par=64, inner=4), c)[0]
    long = work_cycles(Work("conv_fwd", macs=macs, par=64, inner=4096), c)[0]
    assert short > 1.2 * long
    no_ovh = {**c, **{k: 0 for k in c if k.startswith("loop_overhead_cycles")}}
    assert work_cycles(Work("conv_fwd", macs=macs, par=64, inner=4), no_ovh)[0] == pytest.approx(
        work_cycles(Work("conv_fwd", macs=macs, par=64, inner=4096), no_ovh)[0])


def test_latency_scales_with_n_cores(eog_graph, c):
    cyc = {n: step_cost(eog_graph, {**c, "n_cores": n}).cycles for n in (1, 2, 4, 8)}
    assert cyc[1] > cyc[2] > cyc[4] > cyc[8]
    assert 1.5 < cyc[1] / cyc[8] < 8  # fixed per-kernel costs and idle cores keep it below 8x


def test_tiles_are_planned_within_l1(c):
    torch.manual_seed(0)
    m = build_model("mi_bminet", 8, 1900, 2, norm="group", padding="valid")
    g = build_graph(capture_step(m, "edge"))
    cost = step_cost(g, c)
    assert cost.l1_fits and cost.peak_l1_bytes <= c["l1_budget_bytes"]
    big = cost.tiles[0]
    assert big["n_tiles"] > 1 and big["tile_shape"][-1] < 1900
    # the largest kernel moves at least its operands once, plus the halo of every extra tile
    rec = next(r for r in g.ops if r.node.name == big["op"])
    operands = sum(g.storages[s].size for s in set(rec.inputs + rec.outputs))
    assert big["l2_l1_bytes"] > operands
    # a smaller L1 budget means more, smaller tiles and more bytes moved
    small = step_cost(g, {**c, "l1_budget_bytes": 60000}).tiles
    tiles = {t["op"]: t for t in small}
    assert tiles[big["op"]]["n_tiles"] > big["n_tiles"]
    assert tiles[big["op"]]["l2_l1_bytes"] > big["l2_l1_bytes"]


def test_dma_overlaps_only_with_double_buffered_tiles(eog_graph, c):
    c = {**c, "l1_budget_bytes": 30000}  # the exported program's EOG edge step fits 120 kB untiled: tile it
    on = step_cost(eog_graph, c)
    off = step_cost(eog_graph, {**c, "l1_double_buffer": False})
    assert off.cycles > on.cycles
    single = [o for o in on.ops if o.kernel != "free" and o.tiles == 1]
    assert single and all(o.cycles == pytest.approx(o.compute + o.dma + o.setup + o.sync) for o in single)


@pytest.mark.parametrize("program", ["paper-toolchain", "exported"])
def test_power_moves_with_the_workload_no_further_than_published_figures(c, program):
    """Published GAP9 training powers (BRIEF §5) lie within +-5.5% of their mean: a step's power stays
    in that band whatever the activity model says, and energy is power x time with the same bounds."""
    torch.manual_seed(0)
    eeg = estimate_step(build_model("mi_bminet", 8, 1900, 2, norm="group", padding="valid"), "edge", check=False,
                        program=program)
    eog = estimate_step(build_model("epidenet", 2, 1000, 11, norm="group"), "edge", check=False, program=program)
    # layer after layer (frozen_stream off): the batch of 8 through the frozen backbone spills to L3
    last = estimate_step(build_model("mi_bminet", 8, 1900, 2, norm="batch", padding="valid"), "last_layer",
                         micro_batch=8, accum=1, check=False, program=program, constants={"frozen_stream": False})
    band = (c["power_train_mw"] * (1 - c["power_spread"]), c["power_train_mw"] * (1 + c["power_spread"]))
    assert band == pytest.approx((41.5, 46.3), abs=0.1)  # 0.83 uJ / 20 us and 1 mJ / 21.6 ms
    for est in (eeg, eog, last):
        assert (est.power_mw_low, est.power_mw_high) == pytest.approx(band)
        assert est.power_mw_low <= est.power_mw <= est.power_mw_high
        assert sum(est.energy_breakdown_mj.values()) == pytest.approx(est.energy_mj_per_step, rel=1e-4)
        assert est.power_mw == pytest.approx(est.energy_mj_per_step / est.latency_ms_per_step * 1e3)
        for sfx in ("_low", "_high"):
            assert getattr(est, f"energy_mj_per_step{sfx}") == pytest.approx(
                getattr(est, f"power_mw{sfx}") * est.latency_ms_per_step / 1e3)
    # EpiDeNet no longer draws 30-40% less than MI-BMINet: at most the published spread
    assert eog.power_mw >= (1 - 2 * c["power_spread"]) * eeg.power_mw
    # the activity model still orders them (fewer MACs per second: lower in the band)
    assert eog.power_detail["activity_mw"] < eeg.power_detail["activity_mw"]
    assert eog.power_mw <= eeg.power_mw
    assert last.planner["l3_spilled_bytes"] > 0 and last.fits_on_chip
    # The same batch of 8 streamed depth-first (the default) needs no L3 spill. The 3.8 MB moved
    # through L3 layer after layer show in the activity model, but bounded power promises only an
    # order inside the band, not a size: the spilled step sits no lower, and costs more energy
    # (longer, at no lower power); neither leaves the band.
    streamed = estimate_step(build_model("mi_bminet", 8, 1900, 2, norm="batch", padding="valid"), "last_layer",
                             micro_batch=8, accum=1, check=False, program=program)
    assert streamed.frozen_stream is not None and streamed.planner["l3_spilled_bytes"] == 0
    assert last.activity["l3_bytes"] > streamed.activity["l3_bytes"]
    assert last.power_detail["activity_mw"] > streamed.power_detail["activity_mw"]
    assert streamed.power_mw <= last.power_mw <= last.power_mw_high
    assert last.energy_mj_per_step > streamed.energy_mj_per_step


def test_energy_scales_with_the_operating_point(eog_graph, c):
    from biotrain.device.energy import power_mw

    act = step_cost(eog_graph, c).activity
    p_hi = power_mw(act, 0.01, c)[0]
    p_lo = power_mw(act, 0.01, {**c, "voltage_v": 0.65, "freq_mhz": 240})[0]
    assert p_lo < p_hi
    # the band scales with the operating point too: leakage with V, the rest with f V^2
    from biotrain.device.energy import power_model

    low = power_model(act, 0.01, {**c, "voltage_v": 0.65, "freq_mhz": 240})
    leak = c["power_leak_mw"] * 0.65 / 0.8
    assert low["baseline_mw"] == pytest.approx(leak + (c["power_train_mw"] - c["power_leak_mw"]) * (0.65 / 0.8) ** 2 * 240 / 370)
    assert low["power_mw_low"] <= low["power_mw"] <= low["power_mw_high"]


@pytest.mark.parametrize("key,value,match", [
    ("mac_per_cycle_conv_fwd", "0", "mac_per_cycle_conv_fwd.*> 0"),
    ("power_leak_mw", "-1", "power_leak_mw.*>= 0"),
    ("energy_mac_pj", "-3", "energy_mac_pj.*>= 0"),
    ("n_cores", "2.5", "n_cores.*whole number"),
    ("n_cores", "0", "n_cores.*> 0"),
    ("n_cores", "9", "n_cores.*from 1 to 8"),
    ("power_spread", "1.5", "power_spread.*below 1"),
    ("power_train_mw", "0", "power_train_mw.*> 0"),
    ("l1_double_buffer", "maybe", "expects a boolean"),
])
def test_bad_constants_are_one_clear_error(key, value, match):
    with pytest.raises(ValueError, match=match):
        load_constants({key: value})
