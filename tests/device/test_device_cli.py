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
    consts = load_constants()
    lines = {}
    for line in CONSTANTS_FILE.read_text().splitlines():
        m = re.match(r"^([a-z0-9_]+):", line)
        if m:
            lines[m.group(1)] = line
    assert set(lines) == set(consts)
    for key, line in lines.items():
        assert "#" in line, key
        comment = line.split("#", 1)[1]
        assert re.search(r"BRIEF|calibrated|assumed", comment), key


def test_override_validation():
    assert load_constants({"freq_mhz": "240"})["freq_mhz"] == 240
    with pytest.raises(ValueError, match="unknown device constant 'nope'.*freq_mhz"):
        load_constants({"nope": 1})
    with pytest.raises(ValueError, match="expects a number"):
        load_constants({"freq_mhz": "fast"})
