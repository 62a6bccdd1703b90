"""`biotrain device estimate` and the documented constants file."""

import argparse
import json
import re

import pytest

from biotrain.device import CONSTANTS_FILE, load_constants
from biotrain.device.cli import add_subparser, main_device


def test_estimate_json(capsys):
    assert main_device(["estimate", "--model", "mi_bminet", "--strategy", "edge", "--set", "T=400",
                        "F1=8", "F2=8", "freq_mhz=240", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model_args"]["n_times"] == 400 and d["model_args"]["F1"] == 8
    assert d["model_args"]["padding"] == "valid"  # BRIEF's on-device variant by default
    assert d["plan_check"]["ok"]  # on by default for a step this small
    assert d["freq_mhz"] == 240 and d["micro_batch"] == 1 and d["accum"] == 8
    assert d["fits_on_chip"] is True and d["samples_per_s"] > 0


def test_estimate_table_and_check(capsys):
    assert main_device(["estimate", "--model", "epidenet", "--strategy", "last_layer", "--set", "T=500",
                        "--check"]) == 0
    out = capsys.readouterr().out
    assert "peak L2" in out and "latency / step" in out and "plan check         ok" in out
    assert "energy / step:" in out and "largest kernels:" in out


def test_padded_variant_and_no_check(capsys):
    args = ["estimate", "--model", "mi_bminet", "--strategy", "edge", "--set", "T=400", "padding=same", "--json"]
    assert main_device(args + ["--no-check"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model_args"]["padding"] == "same" and d["plan_check"] is None


def test_bad_constant_value_is_an_error(capsys):
    rc = main_device(["estimate", "--model", "epidenet", "--strategy", "edge", "--set", "mac_per_cycle_conv_fwd=0"])
    assert rc == 2
    assert "mac_per_cycle_conv_fwd" in capsys.readouterr().err


def test_unknown_set_key_is_an_error(capsys):
    rc = main_device(["estimate", "--model", "epidenet", "--strategy", "full", "--set", "T=500", "bogus=1", "--json"])
    assert rc == 2
    assert "bogus" in capsys.readouterr().err
    assert main_device(["estimate", "--model", "epidenet", "--strategy", "edge", "--backend", "gap9-board"]) == 2
    assert "not implemented" in capsys.readouterr().err


def test_add_subparser_registers_device_estimate():
    parser = argparse.ArgumentParser()
    add_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["device", "estimate", "--model", "epidenet", "--strategy", "edge", "--json"])
    assert args.func and args.strategy == "edge" and args.json


def test_every_constant_names_its_source():
    """Shared keys and every program's keys carry a source; both programs set the same keys."""
    from biotrain.device.constants import programs

    shared, blocks, current = {}, {}, None
    for line in CONSTANTS_FILE.read_text().splitlines():
        m = re.match(r"^( *)([a-z0-9_-]+):", line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        if indent == 2:
            current = blocks.setdefault(key, {})
        elif indent == 4:
            current[key] = line
        elif key != "programs":
            shared[key] = line
    assert set(blocks) == set(programs()) == {"paper-toolchain", "exported"}
    # the same keys in every program, but for the exported program's per-kind kernel costs measured
    # on the RTL (cost.py reads them only where present: the paper-toolchain keeps its meaning)
    extra = set(blocks["exported"]) - set(blocks["paper-toolchain"])
    assert set(blocks["paper-toolchain"]) <= set(blocks["exported"])
    for key in extra:
        assert "measured: RTL fit, benchmarks/device_rtl.py" in blocks["exported"][key], key
    for name, block in blocks.items():
        consts = load_constants(program=name)
        assert set(shared) - {"program"} | set(block) | {"program"} == set(consts)
        assert consts["program"] == name
    for key, line in [*shared.items(), *(kv for b in blocks.values() for kv in b.items())]:
        assert "#" in line, key
        comment = line.split("#", 1)[1]
        assert re.search(r"BRIEF|calibrated|assumed|measured", comment), key
    # the exported program's kernel constants are measured on the RTL (benchmarks/device_rtl.py)
    for key, line in blocks["exported"].items():
        if key.startswith(("mac_per_cycle_", "cycles_per_elem_", "loop_overhead_cycles_", "call_cycles_")):
            assert "measured: " in line and "benchmarks/device_rtl.py" in line, key


def test_programs_differ_where_the_issue_says(capsys):
    paper, exported = load_constants(program="paper-toolchain"), load_constants(program="exported")
    assert paper["l2_im2col"] is True and exported["l2_im2col"] is False
    assert paper["micro_batch_overhead_cycles"] > 0 and exported["micro_batch_overhead_cycles"] == 0
    assert load_constants()["program"] == "paper-toolchain"
    assert load_constants({"l2_im2col": "false"}, program="paper-toolchain")["l2_im2col"] is False  # --set still wins
    with pytest.raises(ValueError, match="unknown device program 'rtl'.*paper-toolchain.*exported"):
        load_constants(program="rtl")
    with pytest.raises(ValueError, match="'program' is not a device constant"):
        load_constants({"program": "exported"})
    rc = main_device(["estimate", "--model", "epidenet", "--strategy", "edge", "--program", "nope"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown device program 'nope'" in err and "exported" in err and "\n" not in err.strip()


def test_estimate_reports_program_and_power_band(capsys):
    assert main_device(["estimate", "--model", "epidenet", "--strategy", "edge", "--set", "T=500",
                        "--program", "exported", "--session-samples", "40", "--no-check", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["program"] == "exported" and d["peak_l2_bytes_per_tile_im2col"] is None
    assert d["power_mw_low"] <= d["power_mw"] <= d["power_mw_high"]
    for key in ("energy_mj_per_step", "energy_mj_per_session"):
        assert d[f"{key}_low"] <= d[key] <= d[f"{key}_high"]
    assert main_device(["estimate", "--model", "epidenet", "--strategy", "edge", "--set", "T=500", "--no-check"]) == 0
    out = capsys.readouterr().out
    assert "paper-toolchain" in out and "per-tile im2col" in out and "the published spread" in out


def test_override_validation():
    assert load_constants({"freq_mhz": "240"})["freq_mhz"] == 240
    with pytest.raises(ValueError, match="unknown device constant 'nope'.*freq_mhz"):
        load_constants({"nope": 1})
    with pytest.raises(ValueError, match="expects a number"):
        load_constants({"freq_mhz": "fast"})
