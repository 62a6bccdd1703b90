"""The op table (``biotrain/device/ops``): every entry has a cost rule that runs on a node of its op,
every exporting entry names C kernels that ``kernels.h`` declares and emits only those, and the
export refuses a cost-only op by name, listing what it supports.
"""

import operator
import re
from pathlib import Path

import pytest
import torch

from biotrain.device.capture import with_strategy_layers
from biotrain.device.export import codegen
from biotrain.device.export.codegen import StepCodegen
from biotrain.device.export.project import plan_step
from biotrain.device.kernels import Kernel, classify, op_name
from biotrain.device.ops import NO_CODE, OPS, VIEW, cost_only, exported, refusal
from biotrain.device.ops.spec import meta_args
from biotrain.models import build_model

from test_device_export import OPTIONS, SMALL

torch.set_num_threads(1)
aten = torch.ops.aten

HEADER = (Path(codegen.__file__).parent / "c" / "kernels.h").read_text()
DECLARED = set(re.findall(r"^\s*[\w\s*]+?\b(k_\w+)\s*\(", HEADER, re.M))
ENTRIES = sorted({id(s): s for s in OPS.values()}.values(), key=lambda s: s.names[0])
EMITTING = [s for s in ENTRIES if callable(s.emit)]
STRATEGIES = ("last_layer", "full", "edge", "bias", "sparse", "lora")


def _node(overload, *args, **kwargs) -> torch.fx.Node:
    """A one-op graph: tensor arguments become placeholders carrying their value, the op's node its result."""
    g = torch.fx.Graph()

    def lift(a):
        if not isinstance(a, torch.Tensor):
            return a
        p = g.placeholder(f"in{len(g.nodes)}")
        p.meta["val"] = a
        return p

    n = g.call_function(overload, tuple(lift(a) for a in args), kwargs)
    n.meta["val"] = overload(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args], **kwargs)
    return n


def _getitem() -> torch.fx.Node:
    src = _node(aten.max_pool2d_with_indices.default, torch.randn(2, 3, 4, 4), [2, 2])
    n = src.graph.call_function(operator.getitem, (src, 0))
    n.meta["val"] = src.meta["val"][0]
    return n


def _x(*shape):
    return torch.randn(*shape) if shape else torch.randn(2, 3, 4, 6)


_w, _b, _rm, _rv = torch.ones(3), torch.zeros(3), torch.zeros(3), torch.ones(3)
_ln = aten.native_layer_norm.default(_x(), [6], torch.ones(6), torch.zeros(6), 1e-5)
_mp = aten.max_pool2d_with_indices.default(_x(), [2, 2])
# one node per op of the table: a new entry needs its probe here (test_every_entry_has_a_probe)
PROBES = {
    "view": lambda: _node(aten.view.default, _x(), [6, 24]),
    "_unsafe_view": lambda: _node(aten._unsafe_view.default, _x(), [6, 24]),
    "reshape": lambda: _node(aten.reshape.default, _x(), [6, 24]),
    "t": lambda: _node(aten.t.default, _x(3, 4)),
    "detach": lambda: _node(aten.detach.default, _x()),
    "alias": lambda: _node(aten.alias.default, _x()),
    "expand": lambda: _node(aten.expand.default, _x(1, 6), [3, 6]),
    "permute": lambda: _node(aten.permute.default, _x(), [0, 1, 3, 2]),
    "transpose": lambda: _node(aten.transpose.int, _x(), 2, 3),
    "unsqueeze": lambda: _node(aten.unsqueeze.default, _x(), 0),
    "squeeze": lambda: _node(aten.squeeze.dim, _x(2, 1, 4), 1),
    "slice": lambda: _node(aten.slice.Tensor, _x(), 3, 0, 2),
    "select": lambda: _node(aten.select.int, _x(), 0, 1),
    "getitem": _getitem,
    "empty": lambda: _node(aten.empty.memory_format, [2, 3], dtype=torch.float32),
    "as_strided": lambda: _node(aten.as_strided.default, _x(), [2, 2], [1, 1]),
    "lift_fresh_copy": lambda: _node(aten.lift_fresh_copy.default, _x()),
    "sym_size": lambda: _node(aten.sym_size.int, _x(), 0),
    "convolution": lambda: _node(aten.convolution.default, _x(), _x(4, 3, 1, 3), None, [1, 1], [0, 0], [1, 1],
                                 False, [0, 0], 1),
    "convolution_backward": lambda: _node(aten.convolution_backward.default, _x(2, 4, 4, 4), _x(), _x(4, 3, 1, 3),
                                          [4], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, True]),
    "mm": lambda: _node(aten.mm.default, _x(3, 4), _x(4, 5)),
    "addmm": lambda: _node(aten.addmm.default, _x(5), _x(3, 4), _x(4, 5)),
    "bmm": lambda: _node(aten.bmm.default, _x(2, 3, 4), _x(2, 4, 5)),
    "native_group_norm": lambda: _node(aten.native_group_norm.default, _x(), _w, _b, 2, 3, 24, 1, 1e-5),
    "native_group_norm_backward": lambda: _node(aten.native_group_norm_backward.default, _x(), _x(), _x(2, 1),
                                                _x(2, 1), _w, 2, 3, 24, 1, [True, True, True]),
    "native_batch_norm": lambda: _node(aten.native_batch_norm.default, _x(), _w, _b, _rm, _rv, True, 0.1, 1e-5),
    "native_batch_norm_backward": lambda: _node(aten.native_batch_norm_backward.default, _x(), _x(), _w, _rm, _rv,
                                                _rm, _rv, True, 1e-5, [True, True, True]),
    "_native_batch_norm_legit": lambda: _node(aten._native_batch_norm_legit.default, _x(), _w, _b, _rm.clone(),
                                              _rv.clone(), True, 0.1, 1e-5),
    "_native_batch_norm_legit_no_training": lambda: _node(aten._native_batch_norm_legit_no_training.default, _x(),
                                                          _w, _b, _rm, _rv, 0.1, 1e-5),
    "_native_batch_norm_legit_functional": lambda: _node(aten._native_batch_norm_legit_functional.default, _x(),
                                                         _w, _b, _rm, _rv, True, 0.1, 1e-5),
    "native_layer_norm": lambda: _node(aten.native_layer_norm.default, _x(), [6], torch.ones(6), torch.zeros(6), 1e-5),
    "native_layer_norm_backward": lambda: _node(aten.native_layer_norm_backward.default, _x(), _x(), [6], _ln[1],
                                                _ln[2], torch.ones(6), torch.zeros(6), [True, True, True]),
    "avg_pool2d": lambda: _node(aten.avg_pool2d.default, _x(), [1, 2]),
    "avg_pool2d_backward": lambda: _node(aten.avg_pool2d_backward.default, _x(2, 3, 4, 3), _x(), [1, 2], [1, 2],
                                         [0, 0], False, True, None),
    "max_pool2d_with_indices": lambda: _node(aten.max_pool2d_with_indices.default, _x(), [2, 2]),
    "max_pool2d_with_indices_backward": lambda: _node(aten.max_pool2d_with_indices_backward.default, _x(2, 3, 2, 3),
                                                      _x(), [2, 2], [2, 2], [0, 0], [1, 1], False, _mp[1]),
    "adaptive_avg_pool2d": lambda: _node(aten.adaptive_avg_pool2d.default, _x(), [1, 1]),
    "_adaptive_avg_pool2d": lambda: _node(aten._adaptive_avg_pool2d.default, _x(), [1, 1]),
    "_adaptive_avg_pool2d_backward": lambda: _node(aten._adaptive_avg_pool2d_backward.default, _x(2, 3, 1, 1), _x()),
    "mean": lambda: _node(aten.mean.dim, _x(), [3]),
    "sum": lambda: _node(aten.sum.dim_IntList, _x(), [3]),
    "relu": lambda: _node(aten.relu.default, _x()),
    "threshold_backward": lambda: _node(aten.threshold_backward.default, _x(), _x(), 0.0),
    "hardtanh": lambda: _node(aten.hardtanh.default, _x()),
    "hardtanh_backward": lambda: _node(aten.hardtanh_backward.default, _x(), _x(), -1.0, 1.0),
    "gelu": lambda: _node(aten.gelu.default, _x()),
    "gelu_backward": lambda: _node(aten.gelu_backward.default, _x(), _x()),
    "sigmoid": lambda: _node(aten.sigmoid.default, _x()),
    "sigmoid_backward": lambda: _node(aten.sigmoid_backward.default, _x(), _x()),
    "tanh": lambda: _node(aten.tanh.default, _x()),
    "tanh_backward": lambda: _node(aten.tanh_backward.default, _x(), _x()),
    "add": lambda: _node(aten.add.Tensor, _x(), _x(), alpha=2),
    "add_": lambda: _node(aten.add_.Tensor, _x(), _x()),
    "sub": lambda: _node(aten.sub.Tensor, _x(), _x()),
    "sub_": lambda: _node(aten.sub_.Tensor, _x(), _x()),
    "mul": lambda: _node(aten.mul.Tensor, _x(), 0.5),
    "mul_": lambda: _node(aten.mul_.Tensor, _x(), _x()),
    "div": lambda: _node(aten.div.Tensor, _x(), 2.0),
    "div_": lambda: _node(aten.div_.Tensor, _x(), _x()),
    "copy_": lambda: _node(aten.copy_.default, _x(), _x()),
    "clone": lambda: _node(aten.clone.default, _x()),
    "zero_": lambda: _node(aten.zero_.default, _x()),
    "constant_pad_nd": lambda: _node(aten.constant_pad_nd.default, _x(), [1, 1]),
    "zeros_like": lambda: _node(aten.zeros_like.default, _x()),
    "fill_": lambda: _node(aten.fill_.Scalar, _x(), 1.0),
    "new_zeros": lambda: _node(aten.new_zeros.default, _x(), [2, 3]),
    "zeros": lambda: _node(aten.zeros.default, [2, 3]),
    "_log_softmax": lambda: _node(aten._log_softmax.default, _x(4, 3), 1, False),
    "_log_softmax_backward_data": lambda: _node(aten._log_softmax_backward_data.default, _x(4, 3), _x(4, 3), 1,
                                                torch.float32),
    "nll_loss_forward": lambda: _node(aten.nll_loss_forward.default, _x(4, 3), torch.tensor([0, 1, 2, 0]), None, 1,
                                      -100),
    "nll_loss_backward": lambda: _node(aten.nll_loss_backward.default, torch.tensor(1.0), _x(4, 3),
                                       torch.tensor([0, 1, 2, 0]), None, 1, -100, torch.tensor(4.0)),
    "ones_like": lambda: _node(aten.ones_like.default, _x()),
}


def _small(name, strategy, **kw):
    s = SMALL[name]
    torch.manual_seed(0)
    return build_model(name, s["n_chans"], s["n_times"], s["n_outputs"],
                       norm="group" if strategy == "edge" else "batch", **{**s["kwargs"], **kw})


@pytest.fixture(scope="module")
def steps():
    """The small steps of both models under every strategy (MI-BMINet also padded): per step, its
    ops (node, backward, phase) and the C functions ``step.c`` calls for each op (L2, no tiles)."""
    out = []
    cases = [(m, s, {}) for m in sorted(SMALL) for s in STRATEGIES] + [("mi_bminet", "edge", {"padding": "same"})]
    for name, strategy, kw in cases:
        opts = OPTIONS.get(strategy, {}).get(name, {})
        model = with_strategy_layers(_small(name, strategy, **kw), strategy, opts.get("rank"))
        program, graph, plan = plan_step(model, strategy, layers=opts.get("layers"))
        src = StepCodegen(graph, plan).generate()
        nodes = [(r.node, r.backward, program.phases[r.phase].name) for r in graph.ops]
        out.append({"case": (name, strategy, kw), "nodes": nodes, "calls": _calls(src)})
    return out


def _calls(src: str) -> dict[str, set[str]]:
    """{aten op: C functions its calls in ``step.c`` use}; an op's calls follow its ``/* node: op */`` line."""
    calls, op = {}, None
    for line in src.splitlines():
        m = re.match(r"\s*/\* (.*) \*/$", line)
        if m:
            head = re.fullmatch(r"[\w.]+: (\w+)", m.group(1))
            op = head.group(1) if head else None
            continue
        m = re.match(r"\s*PROF\(K_\w+, (\w+)\(", line)
        if m and op:
            calls.setdefault(op, set()).add(m.group(1))
    return calls


def test_every_entry_has_both_halves_or_says_so():
    for spec in ENTRIES:
        assert callable(spec.cost), spec.names
        assert spec.emit is None or callable(spec.emit) or spec.emit in (VIEW, NO_CODE), spec.names
        assert bool(spec.kernel) == callable(spec.emit), spec.names  # a C call names its kernels; nothing else does
    assert set(exported()) | set(cost_only()) == set(OPS) and not set(exported()) & set(cost_only())


@pytest.mark.parametrize("spec", EMITTING, ids=[s.names[0] for s in EMITTING])
def test_emitter_kernels_are_declared_in_kernels_h(spec):
    assert set(spec.kernel) <= DECLARED, set(spec.kernel) - DECLARED


def test_every_entry_has_a_probe():
    assert set(PROBES) == set(OPS), (set(OPS) - set(PROBES), set(PROBES) - set(OPS))


@pytest.mark.parametrize("name", sorted(OPS))
def test_cost_rule_runs_on_a_node_of_its_op(name):
    node = PROBES[name]()
    assert op_name(node) == name
    for backward, phase in ((False, "step"), (True, "step"), (False, "update")):
        k = classify(node, backward, phase)
        assert isinstance(k, Kernel) and k.kind
        if OPS[name].emit in (VIEW, NO_CODE):
            assert k.kind == "free"


def test_cost_rules_run_on_every_captured_node(steps):
    seen = set()
    for step in steps:
        for node, backward, phase in step["nodes"]:
            k = classify(node, backward, phase)
            assert isinstance(k, Kernel)
            seen.add(op_name(node))
    assert seen <= set(OPS), seen - set(OPS)  # the reference models use no op the table lacks


def test_emitters_call_only_their_kernels(steps):
    used: dict[str, set] = {}
    for step in steps:
        for op, fns in step["calls"].items():
            assert fns <= set(OPS[op].kernel), (step["case"], op, fns)
            used.setdefault(op, set()).update(fns)
    # every exporting entry the reference models reach is exercised (the rest by the probes' cost side)
    assert {"convolution", "convolution_backward", "mm", "addmm", "native_group_norm", "native_group_norm_backward",
            "native_batch_norm", "native_batch_norm_backward", "relu", "threshold_backward", "avg_pool2d",
            "avg_pool2d_backward", "_log_softmax", "_log_softmax_backward_data", "nll_loss_forward",
            "nll_loss_backward", "constant_pad_nd"} <= set(used)


def test_refusal_names_a_cost_only_op_and_lists_the_table():
    msg = refusal("sigmoid", "sigmoid_1")
    assert "'sigmoid' (sigmoid_1)" in msg and "cost-only" in msg
    assert all(name in msg for name in exported())
    assert "no entry in the op table" in refusal("erf", "erf_1")


def test_args_by_schema_name():
    conv = PROBES["convolution"]()
    a = meta_args(conv)
    assert a.stride == [1, 1] and a.groups == 1 and a.bias is None and not a.transposed
    assert a.weight.shape == (4, 3, 1, 3)
    pool = PROBES["avg_pool2d"]()
    p = meta_args(pool)  # left out: the schema defaults, as the op sees them
    assert p.stride == [] and p.padding == [0, 0] and p.ceil_mode is False and p.divisor_override is None
    add = PROBES["add"]()
    assert meta_args(add).alpha == 2 and meta_args(add).is_node("other")
    assert meta_args(PROBES["mul"]()).get("alpha", 1) == 1 and not meta_args(PROBES["mul"]()).is_node("other")
