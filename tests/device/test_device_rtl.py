"""The exported step on the CV32E40P RTL (Verilator model with the FPU): equal to PyTorch, with
measured cycles, and the testbench's cycle counts agree with the core's documentation.

Needs Verilator (Debian package `verilator`), the CV32E40P RTL (`pip install
pythondata-cpu-cv32e40p`) and the rv32 toolchain (gcc-riscv64-unknown-elf,
picolibc-riscv64-unknown-elf); without them the tests skip with a message naming what is missing.
The model is built once into the cache (about half a minute) and reused.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import biotrain.device.export as export_pkg
from biotrain.device.export.project import export_project
from biotrain.device.export.runner import DEBIAN_PACKAGES, RV_GCC, missing_tools, run_project
from biotrain.device.rtl import simulator
from biotrain.models import build_model

torch.set_num_threads(1)

# one step of one or two samples at reduced channels and time: a few million cycles each
RTL_SMALL = {
    "mi_bminet": dict(n_chans=4, n_times=64, n_outputs=2, kwargs=dict(F1=4, F2=4, Nf=8, Nf2=4)),
    "epidenet": dict(n_chans=2, n_times=480, n_outputs=3, kwargs=dict(filters=(2, 2, 2))),
}
PAIRS = [(m, s) for m in sorted(RTL_SMALL) for s in ("last_layer", "full", "edge")]
TOL = 1e-4
C_DIR = Path(export_pkg.__file__).parent / "c"


@pytest.fixture(scope="module")
def sim():
    why = missing_tools("rtl")
    if why:
        pytest.skip(why)
    return simulator()


def _export(tmp, name, strategy):
    s = RTL_SMALL[name]
    spec = {"name": name, "n_chans": s["n_chans"], "n_times": s["n_times"], "n_outputs": s["n_outputs"],
            "norm": "group" if strategy == "edge" else "batch", "kwargs": dict(s["kwargs"])}
    torch.manual_seed(0)
    model = build_model(name, spec["n_chans"], spec["n_times"], spec["n_outputs"], spec["norm"], **spec["kwargs"])
    out = tmp / f"{name}_{strategy}"
    # `full` trains BatchNorm on batch statistics: EpiDeNet's last block has one time step, so two samples
    export_project(out, model, strategy, model_spec=spec, batch_size=2 if strategy == "full" else 1, steps=1)
    return out


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{m}-{s}" for m, s in PAIRS])
def test_rtl_matches_pytorch_and_counts_cycles(sim, tmp_path, pair):
    res = run_project(_export(tmp_path, *pair), "rtl")
    assert res["max_rel_err"] <= TOL, (res["rel_err_by_kind"], res["worst_tensor"])
    (cycles,), (instr,) = res["cycles_per_step"], res["instructions_per_step"]
    assert cycles > instr > 0  # a pipelined in-order core: at most one instruction per cycle
    assert 0 < res["ipc"] <= 1
    by_kind = res["cycles_per_step_by_kind"]
    assert res["icount_cycles_per_step"] is None
    assert 0.9 * cycles <= sum(by_kind.values()) <= cycles  # the kernels are (nearly) the whole step
    for kind, stalls in res["stalls_per_step_by_kind"].items():  # stalls are cycles of that kind
        assert sum(stalls.values()) <= by_kind[kind]
    assert res["stalls_per_step_by_kind"]["conv_fwd"]["load_stalls"] > 0
    if pair[1] == "last_layer":  # the frozen backbone runs forward only
        assert by_kind["conv_bwd"] == by_kind["dw_bwd"] == by_kind["norm_bwd"] == 0


def test_rtl_wrong_kernel_fails(sim, tmp_path):
    out = _export(tmp_path, "epidenet", "last_layer")
    src = (out / "kernels.c").read_text()
    good = "r->nu = c->cig, r->K = w->d[3], r->A = x->d[3], r->off = -c->pw, r->init = init;"
    assert good in src  # the convolution forward's input column (its fast path)
    (out / "kernels.c").write_text(src.replace(good, good.replace("r->off = -c->pw", "r->off = 1 - c->pw")))
    res = run_project(out, "rtl")
    assert not res["ok"] and res["max_rel_err"] > TOL


PROBE = r"""
#include <stdint.h>
#include <stdio.h>
#include "rtl.h"
/* cycles of n iterations of a two-instruction loop (addi; taken bne), word-aligned, uncompressed */
static uint32_t loop(uint32_t n) {
    uint32_t c0, c1;
    __asm__ volatile(".option push\n.option norvc\n.balign 16\nmv t0, %2\ncsrr %0, cycle\n"
                     "1: addi t0, t0, -1\nbnez t0, 1b\ncsrr %1, cycle\n.option pop\n"
                     : "=&r"(c0), "=&r"(c1) : "r"(n) : "t0");
    return c1 - c0;
}
/* n iterations of: load; use of the load (one load-use stall); addi; taken bne */
static volatile uint32_t cell = 1;
static uint32_t load_use(uint32_t n, uint32_t *stalls) {
    uint32_t c0, c1, s0, s1, acc = 0;
    __asm__ volatile(".option push\n.option norvc\n.balign 16\nmv t0, %4\ncsrr %1, hpmcounter3\ncsrr %0, cycle\n"
                     "1: lw t1, 0(%5)\nadd %3, %3, t1\naddi t0, t0, -1\nbnez t0, 1b\n"
                     "csrr %2, cycle\n.option pop\n"
                     : "=&r"(c0), "=&r"(s0), "=&r"(c1), "+r"(acc) : "r"(n), "r"(&cell) : "t0", "t1");
    __asm__ volatile("csrr %0, hpmcounter3" : "=r"(s1));
    *stalls = s1 - s0;
    return c1 - c0;
}
int main(void) {
    bt_counters_init();
    uint32_t s100, s200;
    uint32_t l100 = loop(100), l200 = loop(200), u100 = load_use(100, &s100), u200 = load_use(200, &s200);
    printf("%u %u %u %u %u %u\n", l100, l200, u100, u200, s100, s200);
    bt_rtl_exit(0);
}
"""


def test_known_loops_take_the_documented_cycles(sim, tmp_path):
    """CV32E40P user manual (docs/source/pipeline.rst in the RTL package): an ALU instruction is 1
    cycle, a taken branch 3, a load 1 plus 1 stall when the next instruction uses its result. So
    100 more iterations of (addi; bne) cost 400 cycles and of (lw; add; addi; bne) 700, with 100
    more load-use stall events."""
    (tmp_path / "probe.c").write_text(PROBE)
    cc = ["riscv64-unknown-elf-gcc", "--specs=picolibc.specs", "-march=rv32imfc", "-mabi=ilp32f", "-DBT_RV32",
          "-DBT_RTL", "-O2", f"-I{C_DIR}", "-Wl,--defsym=__flash=0x80000000", "-Wl,--defsym=__flash_size=0x00400000",
          "-Wl,--defsym=__ram=0x80400000", "-Wl,--defsym=__ram_size=0x07c00000", "-Wl,--defsym=__stack_size=0x10000",
          "-o", "probe.elf", "probe.c"]
    subprocess.run(cc, cwd=tmp_path, check=True, capture_output=True)
    r = subprocess.run([str(sim), "probe.elf"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    l100, l200, u100, u200, s100, s200 = map(int, r.stdout.split())
    assert l200 - l100 == 100 * (1 + 3)
    assert u200 - u100 == 100 * (1 + 1 + 1 + 1 + 3)
    assert s200 - s100 == 100


def test_missing_verilator_is_one_line_and_exit_3(tmp_path, monkeypatch, capsys):
    import biotrain.device.rtl.build as build
    from biotrain.device.cli import main_device

    out = tmp_path / "p"
    assert main_device(["export", "--model", "mi_bminet", "--strategy", "edge", "--set", "C=4", "T=128", "F1=4", "F2=4",
                        "Nf=8", "Nf2=4", "--out", str(out)]) == 0
    capsys.readouterr()
    real = build.shutil.which
    monkeypatch.setattr(build.shutil, "which", lambda name: None if name == "verilator" else real(name))
    if not shutil.which(RV_GCC):  # without the compiler, that is what the target reports first
        pytest.skip(f"needs {RV_GCC} (apt-get install -y {DEBIAN_PACKAGES})")
    assert main_device(["run", str(out), "--target", "rtl"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "verilator" in err and "pythondata-cpu-cv32e40p" in err
