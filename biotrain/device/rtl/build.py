"""Build (once) the Verilator model of CV32E40P with its FPU and this project's testbench.

The model is cached outside the work tree (``$BIOTRAIN_CACHE`` or ``~/.cache/biotrain``/rtl), in a
folder keyed on the RTL package's version, the testbench source, the core parameters and
Verilator's version, so every run and test after the first reuses it. Builds are serialised by a
file lock and land atomically (a half-built model is never used).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PACKAGE = "pythondata-cpu-cv32e40p"
TESTBENCH = Path(__file__).with_name("tb.cpp")
TOP = "cv32e40p_top"
# flist entries that are simulation helpers of the package's own testbench, not the core
_SKIP = ("cv32e40p_tb_wrapper.sv", "cv32e40p_tracer_pkg.sv")


class RtlMissing(RuntimeError):
    """Verilator or the RTL package is not installed (the message names both and how to get them)."""


@dataclass(frozen=True)
class CoreConfig:
    """Core parameters the model is built with. FPU latencies are the pipeline registers of
    fpnew's add/multiply lanes and of its other lanes (0 = result in the EX stage)."""

    fpu_addmul_lat: int = 0
    fpu_others_lat: int = 0
    perf_counters: int = 4  # mhpmcounter3..6: load stalls, jump stalls, FPU stalls, fetch waits

    def verilator_params(self) -> list[str]:
        return ["-GFPU=1", "-GCOREV_PULP=0", f"-GFPU_ADDMUL_LAT={self.fpu_addmul_lat}",
                f"-GFPU_OTHERS_LAT={self.fpu_others_lat}", f"-GNUM_MHPMCOUNTERS={self.perf_counters}"]


def missing() -> str | None:
    """One line naming both things the RTL target needs and which of them is absent, or None."""
    lack = []
    if not shutil.which("verilator"):
        lack.append("verilator")
    try:
        rtl_dir()
    except RtlMissing:
        lack.append(PACKAGE)
    if lack:
        return (f"target rtl needs Verilator (apt-get install -y verilator) and the CV32E40P RTL "
                f"(pip install {PACKAGE}); missing: {', '.join(lack)}")
    return None


def rtl_dir() -> Path:
    try:
        import pythondata_cpu_cv32e40p as pkg
    except ImportError as exc:
        raise RtlMissing(f"pip install {PACKAGE}") from exc
    return Path(pkg.__file__).parent / "system_verilog" / "rtl"


def _verilator_version() -> str:
    r = subprocess.run(["verilator", "--version"], capture_output=True, text=True)
    return r.stdout.strip()


def cache_root() -> Path:
    base = os.environ.get("BIOTRAIN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "biotrain")
    return Path(base) / "rtl"


def model_key(cfg: CoreConfig) -> str:
    h = hashlib.sha256()
    h.update(metadata.version(PACKAGE).encode())
    h.update(TESTBENCH.read_bytes())
    h.update(" ".join(cfg.verilator_params()).encode())
    h.update(_verilator_version().encode())
    return h.hexdigest()[:16]


def _flist(rtl: Path, dest: Path) -> Path:
    """The package's FPU manifest with its root filled in and the simulation helpers dropped."""
    src = (rtl.parent / "cv32e40p_fpu_manifest.flist").read_text().splitlines()
    out = []
    for line in src:
        line = line.strip()
        if not line or line.startswith("//") or any(s in line for s in _SKIP):
            continue
        out.append(line.replace("${DESIGN_RTL_DIR}", str(rtl)))
    dest.write_text("\n".join(out) + "\n")
    return dest


def simulator(cfg: CoreConfig = CoreConfig(), jobs: int = 2, log=None) -> Path:
    """Path of the built simulator executable, building it first if the cache lacks it."""
    why = missing()
    if why:
        raise RtlMissing(why)
    final = cache_root() / model_key(cfg)
    exe = final / f"V{TOP}"
    if exe.exists():
        return exe
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if exe.exists():  # built by another process while we waited
            return exe
        if log:
            log(f"building the CV32E40P model with Verilator (once; cached in {final})")
        work = Path(tempfile.mkdtemp(prefix="build-", dir=final.parent))
        try:
            flist = _flist(rtl_dir(), work / "core.flist")
            shutil.copy(TESTBENCH, work / "tb.cpp")
            cmd = ["verilator", "--cc", "--exe", "--build", "-j", str(jobs), "-O3", "--x-assign", "fast",
                   "--x-initial", "unique", "--noassert", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                   "-Wno-BLKANDNBLK", "-Wno-UNOPTFLAT", "-Wno-MULTIDRIVEN", "--top-module", TOP,
                   *cfg.verilator_params(), "-CFLAGS", "-O2", "--Mdir", "obj", "-f", str(flist), "tb.cpp"]
            r = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
            if r.returncode != 0 or not (work / "obj" / f"V{TOP}").exists():
                raise RuntimeError(f"Verilator build failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
            staged = work / "model"
            staged.mkdir()
            shutil.move(str(work / "obj" / f"V{TOP}"), staged / f"V{TOP}")
            os.replace(staged, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return exe
