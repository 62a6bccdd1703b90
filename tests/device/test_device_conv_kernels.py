"""The convolution kernels against a direct reference in C, on the host (no PyTorch in the loop):
random shapes reach the border, padding, stride and dilation cases the models' shapes do not, and
every core's share of 1, 3 and 8 cores is run (conv_kernels_check.c says how)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from biotrain.device import export as export_pkg
from biotrain.device.export.runner import missing_tools

C_DIR = Path(export_pkg.__file__).parent / "c"
CHECK = Path(__file__).parent / "conv_kernels_check.c"


@pytest.mark.parametrize("cores", [1, 3, 8])
def test_conv_kernels_match_a_direct_reference(tmp_path, cores):
    if missing_tools("host"):
        pytest.skip(missing_tools("host"))  # names the Debian package
    cc = shutil.which(os.environ.get("CC", "cc"))
    exe, solo = tmp_path / "check", tmp_path / "solo.h"
    solo.write_text("extern int bt_solo; /* the core whose share runs (BT_SOLO_CORE) */\n")
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-include", str(solo), f"-DBT_NCORES={cores}",
                    "-DBT_SOLO_CORE=bt_solo", f"-I{C_DIR}", "-o", str(exe), str(CHECK), str(C_DIR / "kernels.c"),
                    "-lm"], check=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "0 failures" in run.stdout
