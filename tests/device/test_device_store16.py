"""The 16-bit exported step: a bf16/fp16 arena, fp32 kernels on L1 copies, equal to the host's
16-bit emulation (``adaptation.precision``) on the host and under qemu with 1 and 8 cores.

The rv32 tests need Debian's gcc-riscv64-unknown-elf, picolibc-riscv64-unknown-elf and
qemu-system-misc; without them they skip with a message naming those packages.
"""

import json
import subprocess
from importlib import resources

import numpy as np
import pytest
import torch

from biotrain.device.export.runner import missing_tools, run_project, tolerance

from test_device_export import SMALL, _export

torch.set_num_threads(1)

BUDGET = 2048  # bytes of L1: the small shapes stream in several tiles
PAIRS = [(m, s) for m in sorted(SMALL) for s in ("full", "edge")]


def _need(target):
    why = missing_tools(target)
    if why:
        pytest.skip(why)


def _probe_values() -> np.ndarray:
    """fp32 values across both 16-bit types' ranges: exact ties, subnormals, overflow, specials."""
    g = np.random.default_rng(0)
    mags = 2.0 ** g.uniform(-30, 18, 4000)
    vals = list(mags * g.choice([-1, 1], mags.size))
    for e in range(-26, 17):  # values halfway between two 16-bit neighbours, and one ulp either side
        for m in (1.0, 1.5, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -9, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -12):
            vals += [m * 2.0 ** e, np.nextafter(np.float32(m * 2.0 ** e), np.float32(0))]
    vals += [0.0, -0.0, 65504.0, 65519.0, 65520.0, 1e30, -1e30, float("inf"), -float("inf"),
             2.0 ** -24, 2.0 ** -25, 1.5 * 2.0 ** -25, 2.0 ** -14, 2.0 ** -14 - 2.0 ** -25, 3.4e38]
    return np.array(vals, dtype=np.float32)


def test_software_conversions_round_as_torch(tmp_path):
    """store16.h's conversions (the rv32 program's, integer only) give torch's bits, both ways."""
    _need("host")
    src = resources.files("biotrain.device.export") / "c"
    for name in ("store16.h", "kernels.h"):
        (tmp_path / name).write_text((src / name).read_text())
    (tmp_path / "probe.c").write_text("""
#include <stdio.h>
#include "store16.h"
int main(void) {
    float f;
    while (fread(&f, 4, 1, stdin) == 1) {
        uint16_t b = bt_f32_to_bf16(f), h = bt_f32_to_fp16(f);
        float bb = bt_bf16_to_f32(b), hh = bt_fp16_to_f32(h);
        fwrite(&b, 2, 1, stdout); fwrite(&h, 2, 1, stdout); fwrite(&bb, 4, 1, stdout); fwrite(&hh, 4, 1, stdout);
    }
    return 0;
}
""")
    subprocess.run(["cc", "-std=c99", "-O2", "-o", str(tmp_path / "probe"), str(tmp_path / "probe.c")], check=True)
    x = _probe_values()
    out = subprocess.run([str(tmp_path / "probe")], input=x.tobytes(), capture_output=True, check=True).stdout
    rec = np.frombuffer(out, dtype=[("b", "<u2"), ("h", "<u2"), ("bb", "<f4"), ("hh", "<f4")])
    t = torch.from_numpy(x)
    want_b = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    want_h = t.to(torch.float16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(rec["b"], want_b), x[rec["b"] != want_b][:5]
    assert np.array_equal(rec["h"], want_h), x[rec["h"] != want_h][:5]
    back_b = torch.from_numpy(want_b.view(np.int16)).view(torch.bfloat16).float().numpy()
    back_h = torch.from_numpy(want_h.view(np.int16)).view(torch.float16).float().numpy()
    assert np.array_equal(rec["bb"].view(np.uint32), back_b.view(np.uint32))
    assert np.array_equal(rec["hh"].view(np.uint32), back_h.view(np.uint32))


@pytest.fixture(scope="module")
def sixteen(tmp_path_factory):
    """bf16 and fp16 projects per model x strategy, tiled under BUDGET; and the fp32 one of each."""
    _need("host")
    tmp = tmp_path_factory.mktemp("store16")
    out = {}
    for pair in PAIRS:
        for p in ("fp32", "bf16", "fp16"):
            d = tmp / p
            d.mkdir(exist_ok=True)
            out[(*pair, p)] = _export(d, *pair, l1_budget=BUDGET, precision=p)
    return out


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("pair", PAIRS, ids=[f"{m}-{s}" for m, s in PAIRS])
def test_host_program_equals_the_16bit_emulation(sixteen, pair, precision):
    project = sixteen[(*pair, precision)]
    meta = json.loads((project / "meta.json").read_text())
    fp32 = json.loads((sixteen[(*pair, "fp32")] / "meta.json").read_text())
    res = run_project(project, "host")
    assert res["tol"] == tolerance(precision) and res["ok"], (res["rel_err_by_kind"], res["worst_tensor"])
    # half the arena: the plan sizes every floating-point storage at 2 bytes
    assert meta["plan"]["peak"] <= 0.55 * fp32["plan"]["peak"]
    assert {e["dtype"] for e in meta["states"] if e["kind"] != "input"} <= {"bfloat16" if precision == "bf16" else
                                                                          "float16", "int64"}
    # a state kind may exceed the type's tolerance only where 16 bits move it as far from fp32
    over = {k: v for k, v in res["rel_err_by_kind"].items() if v > res["tol"]}
    assert all(res["allowed_by_kind"][k] >= v for k, v in over.items())


@pytest.mark.parametrize("cores", [1, 8])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_qemu_program_equals_the_16bit_emulation(sixteen, precision, cores):
    _need("qemu")
    res = run_project(sixteen[("mi_bminet", "edge", precision)], "qemu", cores=cores, per_core=False)
    assert res["ok"], (res["rel_err_by_kind"], res["worst_tensor"])
    assert res["l1_touched_bytes"] <= BUDGET


def test_16bit_without_l1_tiles_is_refused(tmp_path):
    with pytest.raises(ValueError, match="L1 tiles on"):
        _export(tmp_path, "epidenet", "full", precision="bf16", l1_tiles=False)


def test_a_program_that_truncates_fails_the_comparison(tmp_path):
    """Rounding toward zero instead of to nearest even (one line of store16.h) is caught."""
    _need("host")
    out = _export(tmp_path, "mi_bminet", "edge", l1_budget=BUDGET, precision="bf16")
    src = (out / "store16.h").read_text()
    good = "    u += 0x7fffu + ((u >> 16) & 1u);\n"
    assert good in src
    (out / "store16.h").write_text(src.replace(good, ""))
    res = run_project(out, "host")
    assert not res["ok"], res["rel_err_by_kind"]
