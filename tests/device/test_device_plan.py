"""Graph capture, memory plan and the plan-execution check of the gap9-sim backend."""

import pytest
import torch

from biotrain.device.capture import capture_step
from biotrain.device.execute import check_plan, execute_plan, initial_state
from biotrain.device.memory import build_graph, plan_memory, validate_plan
from biotrain.models import build_model

torch.set_num_threads(1)

SMALL = {"mi_bminet": (8, 128, 2), "epidenet": (2, 500, 11)}


def _model(name, strategy, **kw):
    c, t, k = SMALL[name]
    torch.manual_seed(0)
    return build_model(name, c, t, k, norm="group" if strategy == "edge" else "batch", **kw)


def _planned(name, strategy, solver="auto"):
    m = _model(name, strategy)
    g = build_graph(capture_step(m, strategy))
    return m, g, plan_memory(g, solver=solver)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("strategy", ["last_layer", "full", "edge"])
def test_planned_step_matches_eager(name, strategy):
    m, g, plan = _planned(name, strategy)
    assert validate_plan(g, plan) == []
    assert plan.peak >= plan.lower_bound
    assert plan.overhead <= 1.10
    res = check_plan(m, g, plan)
    assert res.ok, (res.worst_tensor, res.max_rel_error)
    assert res.max_rel_error <= 1e-5


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
    """An im2col buffer placed over a tensor that the same op still reads corrupts the step."""
    m, g, plan = _planned("mi_bminet", "full")
    rec = next(r for r in g.ops if r.scratch and r.name == "convolution_backward")
    sc = rec.scratch[0]
    victim = next(s for s in rec.inputs if g.storages[s].kind in ("activations", "activation_gradients"))
    broken = type(plan)(**{**plan.__dict__, "offsets": list(plan.offsets)})
    broken.offsets[sc] = broken.offsets[victim]
    assert not check_plan(m, g, broken, validate=False).ok


def test_cpsat_plan_is_valid_and_no_worse():
    m, g, plan = _planned("epidenet", "edge", solver="cpsat")
    assert validate_plan(g, plan) == []
    assert plan.peak <= plan.heuristic_peak
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
