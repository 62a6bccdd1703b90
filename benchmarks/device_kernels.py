"""Instructions per MAC of the convolution kernels, call by call, on one emulated RV32 core.

    python benchmarks/device_kernels.py                          # this checkout's kernels
    python benchmarks/device_kernels.py --before /path/to/other/biotrain/device/export/c

Builds benchmarks/device_kernels_calls.c (every convolution of MI-BMINet and EpiDeNet at the
reference shapes, one sample: forward, weight gradient, input gradient) against a kernels.c with
Debian's riscv64-unknown-elf GCC (the exported program's flags) and runs it under
qemu-system-riscv32 -icount shift=0: exact instruction counts, not time. With --before, the same
calls against another kernels directory, side by side. The whole-step figures per kernel kind are
benchmarks/device_qemu.py's; benchmarks/results/device_kernels.md has both.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from biotrain.device import export as export_pkg

HERE = Path(__file__).parent
C_DIR = Path(export_pkg.__file__).parent / "c"
CALLS = HERE / "device_kernels_calls.c"
PICOLIBC = Path("/usr/lib/picolibc/riscv64-unknown-elf/lib")
FLAGS = ["--specs=picolibc.specs", "-march=rv32imafc", "-mabi=ilp32f", "--oslib=semihost", "-DBT_RV32",
         "-DBT_NCORES=1", "-std=c99", "-O2"]
LDFLAGS = ["-Wl,--defsym=__flash=0x80000000", "-Wl,--defsym=__flash_size=0x00400000",
           "-Wl,--defsym=__ram=0x80400000", "-Wl,--defsym=__ram_size=0x07c00000",
           "-Wl,--defsym=__stack_size=0x10000", "-nostartfiles"]


def run_calls(c_dir: Path) -> dict:
    """{layer: (MACs, forward, weight-gradient, input-gradient instructions)} for kernels.c in c_dir."""
    with tempfile.TemporaryDirectory() as tmp:
        elf = Path(tmp) / "calls.elf"
        multi = subprocess.run(["riscv64-unknown-elf-gcc", *FLAGS[:3], "-print-multi-directory"], check=True,
                               capture_output=True, text=True).stdout.strip()
        subprocess.run(["riscv64-unknown-elf-gcc", *FLAGS, f"-I{c_dir}", *LDFLAGS, "-o", str(elf),
                        str(C_DIR / "start.S"), str(PICOLIBC / multi / "crt0.o"), str(CALLS), str(c_dir / "kernels.c"),
                        "-lm"], check=True)
        subprocess.run(["qemu-system-riscv32", "-machine", "virt", "-smp", "1", "-nographic", "-bios", "none",
                        "-icount", "shift=0", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
                       cwd=tmp, capture_output=True, timeout=600, check=True)
        out = (Path(tmp) / "calls.txt").read_text()
    rows = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5:
            rows[parts[0]] = tuple(float(p) for p in parts[1:])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default=str(C_DIR), help="directory of the kernels.c to measure")
    ap.add_argument("--before", help="another kernels directory, measured side by side")
    args = ap.parse_args()
    after = run_calls(Path(args.kernels))
    before = run_calls(Path(args.before)) if args.before else None
    head = "| call | MACs | forward | weight gradient | input gradient |"
    print(head + "\n|---|---|---|---|---|")
    for name, (macs, *inst) in after.items():
        cells = []
        for i, n in enumerate(inst):
            cell = f"{n / macs:.2f}"
            if before and name in before:
                cell = f"{before[name][i + 1] / macs:.2f} -> {cell}"
            cells.append(cell)
        print(f"| {name} | {macs:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
