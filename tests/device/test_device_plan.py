"""Graph capture, memory plan and the plan-execution check of the gap9-sim backend."""

import pytest
import torch

from biotrain.device.capture import capture_inference, capture_step
from biotrain.device.execute import check_plan, execute_plan, initial_state
from biotrain.device.memory import build_graph, plan_memory, validate_plan
from biotrain.device.spill import spill_frozen
from biotrain.models import build_model

torch.set_num_threads(1)

FULL = {"mi_bminet": (8, 1900, 2), "epidenet": (2, 1000, 11)}
SMALL = {"mi_bminet": (8, 400, 2), "epidenet": (2, 500, 11)}


def _model(name, strategy, shapes=SMALL, **kw):
    c, t, k = shapes[name]
    torch.manual_seed(0)
    if name == "mi_bminet":
        kw.setdefault("padding", "valid")
    return build_model(name, c, t, k, norm="group" if strategy == "edge" else "batch", **kw)


def _planned(name, strategy, solver="auto", shapes=SMALL, **kw):
    m = _model(name, strategy, shapes, **kw)
    g = build_graph(capture_step(m, strategy))
    return m, g, plan_memory(g, solver=solver, time_limit_s=20)


@pytest.mark.parametrize("name", sorted(FULL))
@pytest.mark.parametrize("strategy", ["last_layer", "full", "edge"])
def test_full_size_plan_executes_like_eager(name, strategy):
    """At the reference shapes, every saving of the plan is executed: no storage without arena
    bytes unless a fused kernel computes it, and the step reproduces eager PyTorch."""
    m, g, plan = _planned(name, strategy, shapes=FULL)
    assert validate_plan(g, plan) == []
    assert plan.peak >= plan.lower_bound and plan.overhead <= 1.10
    for s in g.storages:
        if s.nbytes == 0:
            assert s.fused_into is not None, s.name
    res = check_plan(m, g, plan)
    assert res.ok, (res.worst_tensor, res.max_rel_error)


def test_a_zero_byte_tensor_without_a_fused_kernel_fails_the_check():
    """Dropping the largest tensor at the peak from the plan by hand must not pass."""
    m, g, plan = _planned("mi_bminet", "edge")
    t = plan.lower_bound_t
    big = max((s for s in g.storages if s.start <= t <= s.end and not s.persistent), key=lambda s: s.size)
    big.nbytes = 0
    with pytest.raises(ValueError, match="no fused kernel"):
        check_plan(m, g, plan)


def test_a_fused_value_read_later_fails_the_check():
    """A fused value must be consumed by the very next kernel."""
    m, g, plan = _planned("epidenet", "edge")
    fused = next(s for s in g.storages if s.fused_into is not None)
    fused.fused_into += 1  # pretend another kernel runs in between
    with pytest.raises(ValueError, match="next kernel"):
        check_plan(m, g, plan)


def test_broken_plan_fails_the_check():
    m, g, plan = _planned("mi_bminet", "edge")
    # b is written while a is still to be read later: put b on top of a
    acts = sorted((s for s in g.storages if not s.persistent and s.kind != "input" and s.nbytes > 4096),
                  key=lambda s: -s.size)
    a, b = next((a, b) for a in acts for b in acts if a.start < b.start < a.end)
    broken = type(plan)(**{**plan.__dict__, "offsets": list(plan.offsets)})
    broken.offsets[b.sid] = broken.offsets[a.sid]
    assert validate_plan(g, broken)  # the static checker sees it
    with pytest.raises(ValueError, match="invalid plan"):
        execute_plan(g, broken, *initial_state(m, g.program))
    res = check_plan(m, g, broken, validate=False)  # and executing it corrupts the step
    assert not res.ok
    assert res.max_rel_error > 1e-5


def test_scratch_overlap_fails_the_check():
    """With the toolchain placement (im2col whole in L2), an im2col buffer placed over a tensor
    that the same op still reads corrupts the step."""
    m = _model("epidenet", "full")
    g = build_graph(capture_step(m, "full"), l2_scratch=True)
    plan = plan_memory(g)
    rec = next(r for r in g.ops if r.scratch and r.name == "convolution_backward")
    sc = rec.scratch[0]
    victim = next(s for s in rec.inputs if g.storages[s].kind in ("activations", "activation_gradients"))
    broken = type(plan)(**{**plan.__dict__, "offsets": list(plan.offsets)})
    broken.offsets[sc] = broken.offsets[victim]
    assert check_plan(m, g, plan).ok
    assert not check_plan(m, g, broken, validate=False).ok


def test_im2col_in_l1_tiles_takes_no_l2():
    m = _model("epidenet", "full")
    prog = capture_step(m, "full")
    in_l2 = plan_memory(build_graph(prog, l2_scratch=True)).peak
    per_tile = plan_memory(build_graph(capture_step(m, "full"))).peak
    assert per_tile < in_l2


def test_cpsat_plan_is_valid_and_no_worse():
    m, g, plan = _planned("epidenet", "edge", solver="cpsat")
    assert validate_plan(g, plan) == []
    assert plan.peak <= plan.heuristic_peak
    assert check_plan(m, g, plan).ok


@pytest.mark.parametrize("name", sorted(FULL))
def test_last_layer_peak_is_inference_plus_classifier_state(name):
    """Frozen layers run as inference: the last-layer step needs exactly the backbone's forward
    working set (which already holds the classifier weights) plus the classifier's momentum,
    accumulated gradient and the label; nothing is kept for a backward pass through the backbone."""
    m, g, plan = _planned(name, "last_layer", shapes=FULL)
    inf = plan_memory(build_graph(capture_inference(m, 1)), time_limit_s=20)
    train_state = sum(s.size for s in g.storages if s.kind in ("optimizer_state", "accumulated_gradients"))
    label = g.storages[g.state_storage["y"]].size
    assert plan.peak == inf.peak + train_state + label
    assert not any(s.kind == "activation_gradients" and s.size > 4096 for s in g.storages)


def test_frozen_backbone_streams_through_l3_and_still_executes():
    """A batch of 8 through the frozen MI-BMINet needs several MB; its activations go to L3."""
    m = _model("mi_bminet", "last_layer", FULL)
    g = build_graph(capture_step(m, "last_layer", micro_batch=8, accum=1))
    before = max(g.live_bytes())
    moved = spill_frozen(g, 1_400_000, 32768)
    plan = plan_memory(g)
    assert before > 3e6 and moved > 1e6
    assert plan.peak <= 1_400_000 < before
    assert any(s.level == "L3" for s in g.storages) and any(s.kind == "l3_staging" for s in g.storages)
    assert validate_plan(g, plan) == []
    assert check_plan(m, g, plan).ok


def test_last_layer_has_no_backbone_backward():
    m = _model("mi_bminet", "last_layer")
    prog = capture_step(m, "last_layer")
    assert set(prog.trainable) == {"classifier.weight", "classifier.bias"}
    names = [r.name for r in build_graph(prog).ops]
    assert "convolution_backward" not in names  # no input gradients before the classifier
    assert not any("batch_norm_backward" in n for n in names)


def test_edge_accumulates_micro_batches():
    m = _model("epidenet", "edge")
    prog = capture_step(m, "edge")
    assert (prog.micro_batch, prog.accum) == (1, 8)
    assert [(p.name, p.repeat) for p in prog.phases] == [("micro_step", 8), ("update", 1)]
    kinds = {s.kind for s in prog.states.values()}
    assert {"accumulated_gradients", "optimizer_state", "weights"} <= kinds


def test_batchnorm_cannot_be_micro_batched():
    m = _model("mi_bminet", "full")
    with pytest.raises(ValueError, match="GroupNorm"):
        capture_step(m, "edge")
    with pytest.raises(ValueError, match="micro_batch \\* accum"):
        capture_step(_model("mi_bminet", "edge"), "edge", batch_size=8, micro_batch=3)


def test_mi_bminet_padding_variants():
    same = build_model("mi_bminet", 8, 1900, 2, padding="same")
    valid = build_model("mi_bminet", 8, 1900, 2, padding="valid")
    assert same.classifier.in_features == 32 * (1900 // 64)
    assert valid.classifier.in_features == 32 * (((1900 - 127) // 8 - 15) // 8)
    x = torch.zeros(1, 1, 8, 1900)
    assert same(x).shape == valid(x).shape == (1, 2)
    assert not any(isinstance(mod, torch.nn.ZeroPad2d) for mod in valid.modules())
    with pytest.raises(ValueError, match="padding='bogus'"):
        build_model("mi_bminet", 8, 1900, 2, padding="bogus")
    with pytest.raises(ValueError, match="n_times=200"):
        build_model("mi_bminet", 8, 200, 2, padding="valid")


def _streamed(name, shapes=FULL, n_tiles=0):
    from biotrain.device.stream import stream_frozen

    m = _model(name, "last_layer", shapes)
    g = build_graph(capture_step(m, "last_layer"))
    classic = plan_memory(g, time_limit_s=20).peak
    st = stream_frozen(g, n_tiles)
    return m, g, st, classic, plan_memory(g, time_limit_s=20)


@pytest.mark.parametrize("name", sorted(FULL))
def test_streamed_frozen_prefix_executes_like_eager_and_lowers_the_peak(name):
    """The frozen prefix of last_layer runs depth-first in time tiles: tile buffers reused per tile
    (garbage-filled before each use), halos carried, the micro-batch streamed from L3; the executed
    step still matches eager PyTorch and needs far less L2."""
    m, g, st, classic, plan = _streamed(name)
    assert st is not None and st.n_tiles > 1 and g.stream is st
    assert validate_plan(g, plan) == []
    assert plan.peak == st.lower_bound_streamed < classic == st.lower_bound_classic
    assert plan.peak < 0.6 * classic
    assert any(b.carry for b in st.buffers.values())  # a convolution's halo crosses tiles
    assert g.storages[g.state_storage["x"]].level == "L3" and st.x_tile is not None
    assert st.recompute_macs == 0
    res = check_plan(m, g, plan)
    assert res.ok, (res.worst_tensor, res.max_rel_error)


def test_streamed_tile_buffer_over_the_assembled_output_fails_the_check():
    m, g, st, _, plan = _streamed("epidenet")
    out = next(b.sid for b in st.buffers.values() if b.role == "output")
    tile = next(b.sid for b in st.buffers.values() if b.carry and b.sid != st.x_tile)
    broken = type(plan)(**{**plan.__dict__, "offsets": list(plan.offsets)})
    broken.offsets[tile] = broken.offsets[out]
    assert validate_plan(g, broken)  # the static checker sees it
    res = check_plan(m, g, broken, validate=False)  # and executing it corrupts the step
    assert not res.ok and res.max_rel_error > 1e-5


@pytest.mark.parametrize("name", sorted(FULL))
def test_streamed_prefix_with_a_wrong_halo_fails_the_check(name):
    """A tile buffer that keeps one column too few of the previous tile (a halo off by one) makes
    the convolution read garbage: the step no longer matches eager PyTorch."""
    m, g, st, _, plan = _streamed(name, SMALL)
    buf = next(b for b in st.buffers.values() if b.carry and any(b.carry_cols))
    assert check_plan(m, g, plan).ok
    i = next(i for i, k in enumerate(buf.carry_cols) if k)
    buf.carry_cols[i] -= 1
    assert not check_plan(m, g, plan).ok


@pytest.mark.parametrize("program, classic", [("exported", 58_720), ("paper-toolchain", 92_544)])
def test_streaming_off_and_fixed_tiles(program, classic):
    """Both programs stream: exported (per-tile im2col) and paper-toolchain (the toolchain's L2
    im2col, whose classic plan is 92,544 B; 58,720 B with per-tile im2col)."""
    from biotrain.device.estimate import estimate_step

    m = _model("epidenet", "last_layer", FULL)
    off = estimate_step(m, "last_layer", constants={"frozen_stream": False}, check=False, program=program).to_dict()
    on = estimate_step(m, "last_layer", check=False, program=program).to_dict()
    two = estimate_step(m, "last_layer", constants={"frozen_stream_tiles": 2}, check=True, program=program).to_dict()
    assert off["frozen_stream"] is None and off["peak_l2_bytes"] == classic
    assert on["frozen_stream"]["n_tiles"] > 1 and on["peak_l2_bytes"] < off["peak_l2_bytes"]
    assert two["frozen_stream"]["n_tiles"] == 2 and two["plan_check"]["ok"]
    assert on["peak_l2_bytes"] <= two["peak_l2_bytes"] < off["peak_l2_bytes"]
    if program == "paper-toolchain":
        # the per-tile im2col figure beside it is the same step streamed too: the exported plan
        exported = estimate_step(m, "last_layer", check=False, program="exported").to_dict()
        assert off["peak_l2_bytes_per_tile_im2col"] == 58_720
        assert on["peak_l2_bytes_per_tile_im2col"] == exported["peak_l2_bytes"] < on["peak_l2_bytes"]
    # edge and full train the first layer: nothing is frozen, nothing streams
    assert estimate_step(_model("epidenet", "edge"), "edge", check=False, program=program).frozen_stream is None


def test_streamed_prefix_with_the_toolchain_im2col_sizes_it_per_stream_tile():
    """With the toolchain's L2 im2col (paper-toolchain) a streamed convolution runs once per tile on
    the columns it computes: its im2col buffer holds those columns, not the whole layer's, and the
    step still executes like eager PyTorch."""
    from biotrain.device.stream import stream_frozen

    m = _model("epidenet", "last_layer", FULL)
    whole = build_graph(capture_step(m, "last_layer"), l2_scratch=True)
    g = build_graph(capture_step(m, "last_layer"), l2_scratch=True)
    st = stream_frozen(g, 0)
    assert st is not None and st.n_tiles > 1
    im2col = {s.name: s.nbytes for s in whole.storages if s.kind == "scratch" and s.name.endswith(":im2col")}
    streamed = [r for r in g.ops if st.t0 <= r.t <= st.t1 and r.scratch]
    assert streamed
    for rec in streamed:
        for sid in rec.scratch:
            s = g.storages[sid]
            assert 0 < s.nbytes < im2col[s.name]
    plan = plan_memory(g, time_limit_s=20)
    assert validate_plan(g, plan) == [] and plan.peak < plan_memory(whole, time_limit_s=20).peak
    res = check_plan(m, g, plan)
    assert res.ok, (res.worst_tensor, res.max_rel_error)
