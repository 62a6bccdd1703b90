"""The exported C program reproduces PyTorch's training steps (host build, and rv32 under qemu).

The rv32 tests need Debian's gcc-riscv64-unknown-elf, picolibc-riscv64-unknown-elf and
qemu-system-misc; without them they skip with a message naming those packages.
"""

import json
import shutil

import pytest
import torch

from biotrain.device.export.codegen import UnsupportedOp
from biotrain.device.export.project import export_project, read_state
from biotrain.device.export.runner import missing_tools, run_project
from biotrain.models import build_model

torch.set_num_threads(1)

# small shapes: a few seconds per build and run
SMALL = {
    "mi_bminet": dict(n_chans=4, n_times=64, n_outputs=2, kwargs=dict(F1=4, F2=4, Nf=8, Nf2=4)),
    "epidenet": dict(n_chans=2, n_times=480, n_outputs=3, kwargs=dict(filters=(2, 4, 4))),
}
PAIRS = [(m, s) for m in sorted(SMALL) for s in ("last_layer", "full", "edge", "bias", "sparse", "lora")]
# what sparse trains here (the first layer and the last before the classifier) and lora's rank
OPTIONS = {"sparse": {"mi_bminet": dict(layers=("spatial", "pointwise")), "epidenet": dict(layers=("block1", "mix"))},
           "lora": {"mi_bminet": dict(rank=2), "epidenet": dict(rank=2)}}
TOL = 1e-4


def _spec(name, strategy):
    s = SMALL[name]
    return {"name": name, "n_chans": s["n_chans"], "n_times": s["n_times"], "n_outputs": s["n_outputs"],
            "norm": "group" if strategy == "edge" else "batch", "kwargs": dict(s["kwargs"])}


def _model(spec):
    torch.manual_seed(0)
    return build_model(spec["name"], spec["n_chans"], spec["n_times"], spec["n_outputs"], spec["norm"], **spec["kwargs"])


def _export(tmp, name, strategy, **kw):
    spec = _spec(name, strategy)
    out = tmp / f"{name}_{strategy}"
    kw = {**OPTIONS.get(strategy, {}).get(name, {}), **kw}
    export_project(out, _model(spec), strategy, model_spec=spec, steps=3, **kw)
    return out


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """One exported project per model x strategy, shared by the host and the qemu test."""
    if missing_tools("host"):
        pytest.skip(missing_tools("host"))
    tmp = tmp_path_factory.mktemp("export")
    return {pair: _export(tmp, *pair) for pair in PAIRS}


def _check(res, target):
    assert res["target"] == target and res["steps"] == 3
    assert len(res["loss"]) == 3 and all(v == v for v in res["loss"])
    assert res["max_rel_err"] <= TOL, (res["rel_err_by_kind"], res["worst_tensor"])
    assert set(res["rel_err_by_kind"]) >= {"param", "momentum"}


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{m}-{s}" for m, s in PAIRS])
def test_host_build_matches_pytorch(projects, pair):
    res = run_project(projects[pair], "host")
    _check(res, "host")
    assert res["instructions_per_step"] is None  # no counters on the host
    meta = json.loads((projects[pair] / "meta.json").read_text())
    trained = {e["name"].partition(":")[2] for e in meta["states"] if e["kind"] == "optimizer_state"}
    assert trained == set(meta["trainable"])  # optimizer state for what trains, nothing else
    if pair[1] in ("bias", "sparse", "lora"):  # the program leaves the frozen weights as they were
        init = read_state(projects[pair] / "init_state.bin", meta["states"])
        frozen = [e["name"] for e in meta["states"] if e["kind"] == "frozen_weights"]
        assert frozen and all(torch.equal(res["final_state"][k], init[k]) for k in frozen)
    if pair[1] == "lora":  # adapters only; W + B @ A is computed by the program
        assert trained and all(n.rsplit(".", 1)[-1] in ("lora_A", "lora_B") for n in trained)
        assert meta["rank"] == 2 and "k_mm(" in (projects[pair] / "step.c").read_text()


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{m}-{s}" for m, s in PAIRS])
def test_rv32_under_qemu_matches_pytorch(projects, pair):
    why = missing_tools("qemu")
    if why:
        pytest.skip(why)
    res = run_project(projects[pair], "qemu")
    _check(res, "qemu")
    per_step = res["instructions_per_step"]
    assert len(per_step) == 3 and min(per_step) > 0
    kinds = res["instructions_per_step_by_kind"]
    assert kinds["conv_fwd"] > 0 and kinds["linear_bwd"] > 0
    if pair[1] == "last_layer":  # no backbone backward is emitted
        assert kinds["conv_bwd"] == kinds["dw_bwd"] == kinds["norm_bwd"] == 0
    else:
        assert kinds["conv_bwd"] > 0 and kinds["norm_bwd"] > 0
    # the kernels account for (nearly) all of a step: the rest is the profiler's own bookkeeping and
    # the step's glue, some 10% at these tiny shapes now that the convolutions are register-blocked
    assert sum(kinds.values()) <= per_step[0] * 1.01
    assert sum(kinds.values()) >= 0.85 * sum(per_step) / len(per_step)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_plan_without_rewrites_also_matches(tmp_path, name):
    """The ablation plan (no rematerialisation, padding elision or fused accumulation): the
    accumulation is then a separate add, which the program must run."""
    out = _export(tmp_path, name, "edge", optimize=False)
    assert (out / "step.c").read_text().count("k_binary(EW_ADD") > 0
    res = run_project(out, "host")
    assert res["max_rel_err"] <= TOL, (res["rel_err_by_kind"], res["worst_tensor"])


def test_wrong_plan_offset_fails_the_comparison(tmp_path):
    """A tensor placed on top of one that is still to be read corrupts the step in C too."""

    def clobber(graph, plan):
        acts = sorted((s for s in graph.storages if not s.persistent and s.kind != "input" and s.nbytes >= 64),
                      key=lambda s: -s.size)
        a, b = next((a, b) for a in acts for b in acts if a.start < b.start < a.end)
        plan.offsets[b.sid] = plan.offsets[a.sid]

    res = run_project(_export(tmp_path, "mi_bminet", "edge", plan_hook=clobber), "host")
    assert not res["ok"]
    assert res["max_rel_err"] > TOL


def test_wrong_kernel_fails_the_comparison(tmp_path):
    """An indexing bug in the weight gradient of the convolution kernel is caught."""
    out = _export(tmp_path, "epidenet", "full")
    src = (out / "kernels.c").read_text()
    good = "r->nu = dy->d[0], r->O = dy->d[3], r->A = x->d[3], r->off = -c->pw;"  # the fast path's x column
    assert good in src
    (out / "kernels.c").write_text(src.replace(good, good.replace("r->off = -c->pw", "r->off = 1 - c->pw")))
    res = run_project(out, "host")
    assert not res["ok"]
    assert res["max_rel_err"] > TOL


def test_unknown_aten_op_is_refused_by_name(tmp_path):
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.n_chans, self.n_times, self.n_outputs = 2, 8, 2
            self.classifier = torch.nn.Linear(16, 2)

        def forward(self, x):
            return self.classifier(torch.sigmoid(x).flatten(1))

    with pytest.raises(UnsupportedOp, match="sigmoid"):
        export_project(tmp_path / "odd", Odd(), "full")


def test_cli_export_and_run(tmp_path, capsys):
    from biotrain.device.cli import main_device

    out = tmp_path / "cli"
    assert main_device(["export", "--model", "mi_bminet", "--strategy", "edge", "--set", "C=4", "T=128", "F1=4", "F2=4",
                        "Nf=8", "Nf2=4", "--out", str(out)]) == 0
    assert {"step.c", "kernels.c", "main.c", "Makefile", "init_state.bin", "samples.bin"} <= {p.name for p in out.iterdir()}
    capsys.readouterr()
    assert main_device(["run", str(out), "--target", "host", "--steps", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"target", "steps", "max_rel_err", "loss", "instructions_per_step", "seconds"} <= set(res)
    assert res["steps"] == 2 and res["max_rel_err"] <= TOL
    if not shutil.which("gapy"):
        assert main_device(["run", str(out), "--target", "gap9-board"]) == 3
        err = capsys.readouterr().err.strip()
        assert "GAP SDK" in err and len(err.splitlines()) == 1
