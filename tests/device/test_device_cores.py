"""The exported step on several emulated cores, with its L1 tiles (qemu-system-riscv32 -smp N).

Small shapes under a small L1 budget, so the kernels really stream in tiles. Needs Debian's
gcc-riscv64-unknown-elf, picolibc-riscv64-unknown-elf and qemu-system-misc; without them the tests
skip with a message naming those packages.
"""

import json

import pytest
import torch

from biotrain.device.export.runner import missing_tools, run_project

from test_device_export import SMALL, _export

torch.set_num_threads(1)

TOL = 1e-4
BUDGET = 2048  # bytes of L1: small enough that the small shapes' kernels take several tiles
PAIRS = [(m, s) for m in sorted(SMALL) for s in ("last_layer", "full", "edge")]


def _need(target="qemu"):
    why = missing_tools(target)
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    """One project per model x strategy, tiled under BUDGET."""
    _need()
    tmp = tmp_path_factory.mktemp("cores")
    return {pair: _export(tmp, *pair, l1_budget=BUDGET) for pair in PAIRS}


@pytest.mark.parametrize("cores", [1, 8])
@pytest.mark.parametrize("pair", PAIRS, ids=[f"{m}-{s}" for m, s in PAIRS])
def test_cores_with_l1_tiles_match_pytorch(tiled, pair, cores):
    meta = json.loads((tiled[pair] / "meta.json").read_text())
    assert meta["l1"]["tiled_calls"] > 0 and meta["l1"]["max_tiles"] > 1  # tiles, not one copy per kernel
    res = run_project(tiled[pair], "qemu", cores=cores, per_core=False)
    assert res["max_rel_err"] <= TOL, (res["rel_err_by_kind"], res["worst_tensor"])
    assert res["cores"] == cores
    # the DMA stand-in stayed inside the L1 region the codegen laid out, and used all of it
    assert res["l1_touched_bytes"] == res["l1_bytes"] == meta["l1"]["bytes"]
    assert res["instructions_per_step_by_kind"]["dma"] > 0


def test_per_core_counts_and_balance(tmp_path):
    """Two cores: every core's counts come from its own share (solo runs); they split the
    one-core work of each kernel kind evenly, each kind's balance near 1."""
    _need()
    out = _export(tmp_path, "mi_bminet", "edge")
    one = run_project(out, "qemu", cores=1)
    two = run_project(out, "qemu", cores=2)
    assert two["ok"] and len(two["per_core_instructions"]) == 2
    assert len(one["per_core_instructions"]) == 1 and one["per_core_instructions"][0]["barrier_wait"] == 0
    for kind in ("conv_fwd", "conv_bwd", "dw_fwd", "dw_bwd", "norm_fwd", "norm_bwd"):
        per = [row[kind] for row in two["per_core_instructions"]]
        assert min(per) > 0.3 * one["per_core_instructions"][0][kind]  # both cores work
        assert two["core_balance"][kind] <= 1.25
        if kind in ("conv_fwd", "dw_fwd", "dw_bwd"):  # MAC work dominates: a split, not a copy (2.0);
            # every core repeats each call's set-up (the step's argument views, some 2k instructions a
            # call), near the register-blocked MAC work at this tiny shape (norms: mostly per-call work)
            assert 0.9 < sum(per) / one["per_core_instructions"][0][kind] < 1.6
    dma = [row["dma"] for row in two["per_core_instructions"]]
    assert dma[1] < 0.02 * dma[0]  # core 0 plays the DMA engine (core 1 only steps over the copies)
    assert sum(two["kind_share"].values()) == pytest.approx(1.0)


def test_overlapping_tile_slots_fail_the_comparison(tiled):
    """Double-buffer slot 1 moved onto slot 0: the prefetch of the next tile overwrites the tile
    being computed, and the step differs from PyTorch."""
    _need("host")
    src = tiled[("mi_bminet", "edge")]
    out = src.parent / "overlap"
    out.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (out / f.name).write_bytes(f.read_bytes())
    (out / "gap9").mkdir()
    head = (out / "step.h").read_text()
    (out / "step.h").write_text("#define BT_L1_FAULT_OVERLAP 1\n" + head)
    res = run_project(out, "host")
    assert not res["ok"] and res["max_rel_err"] > TOL


def test_missing_barrier_fails_the_comparison(tmp_path):
    """Without the barrier after each kernel, a core reads another core's share of the previous
    kernel's output before it is written: 8 cores differ from PyTorch."""
    _need()
    out = _export(tmp_path, "mi_bminet", "edge", l1_budget=BUDGET)
    src = (out / "cores.c").read_text()
    barrier = "    const int me = BT_CORE();\n    BT_BARRIER();\n    bt_counters(c1);"
    assert barrier in src
    (out / "cores.c").write_text(src.replace(barrier, "    const int me = BT_CORE();\n    bt_counters(c1);"))
    try:
        res = run_project(out, "qemu", cores=8, per_core=False)
    except RuntimeError as exc:  # the race made the loss NaN: the program stops itself
        assert "NaN" in str(exc)
        return
    assert not res["ok"] and res["max_rel_err"] > TOL


@pytest.mark.parametrize("target,cores,allowed", [("qemu", 9, "1 to 8"), ("qemu", 0, "1 to 8"),
                                                   ("host", 2, "runs one core")])
def test_unsupported_core_counts_are_refused_by_name(tiled, target, cores, allowed):
    with pytest.raises(ValueError, match=f"--cores {cores}.*{allowed}"):
        run_project(tiled[("epidenet", "edge")], target, cores=cores)
