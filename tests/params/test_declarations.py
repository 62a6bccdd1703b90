"""The parameter declarations: one entry per key, from which the checks, the defaults, the known
keys and dvc.yaml's params lists all come."""

from __future__ import annotations

import copy

import pytest
import yaml

from biotrain.params import BY_KEY, PARAMS, STAGES, Param, ParamsError, stage_params, validate_params
from biotrain.params import checks, declarations
from biotrain.params.kinds import Choice, IdList, IntList, Mapping, Names, Number, Subset, Text
from tests.helpers import ROOT
from tests.helpers import with_value as _set

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())

BAD = {Number: "not a number", Choice: "no-such-option", Subset: ["no-such-option"], IntList: [-1, -1],
       Names: [1, 2], IdList: ["one"], Text: "", Mapping: ["not", "a", "mapping"]}


def _get(params: dict, key: str):
    for part in key.split("."):
        params = params[part]
    return params


def _drop(params: dict, key: str) -> dict:
    params = copy.deepcopy(params)
    *sections, leaf = key.split(".")
    node = params
    for part in sections:
        node = node[part]
    del node[leaf]
    return params


def test_every_kind_has_a_bad_value():
    assert {type(p.kind) for p in PARAMS} <= set(BAD)


@pytest.mark.parametrize("param", PARAMS, ids=lambda p: p.key)
def test_declaration_is_complete(param: Param):
    assert param.help and set(param.stages) <= set(STAGES)
    _get(DEFAULT, param.key)  # params.yaml gives every declared key a value
    if not param.required and param.default is not None:
        assert param.kind.problem(param.default) is None, "the default must pass its own check"


@pytest.mark.parametrize("param", PARAMS, ids=lambda p: p.key)
def test_bad_value_is_named_with_what_is_allowed(param: Param):
    with pytest.raises(ParamsError) as err:
        validate_params(_set(DEFAULT, param.key, BAD[type(param.kind)]), datasets=False)
    assert any(key == param.key and "allowed" in msg for key, msg in err.value.problems), err.value.problems


@pytest.mark.parametrize("param", [p for p in PARAMS if not p.required], ids=lambda p: p.key)
def test_optional_key_takes_its_declared_default(param: Param):
    filled = validate_params(_drop(DEFAULT, param.key), datasets=False)
    assert _get(filled, param.key) == param.default


@pytest.mark.parametrize("param", [p for p in PARAMS if p.required], ids=lambda p: p.key)
def test_required_key_is_missing_by_name(param: Param):
    with pytest.raises(ParamsError) as err:
        validate_params(_drop(DEFAULT, param.key), datasets=False)
    assert (param.key, "is missing") in err.value.problems


def test_a_key_dvc_lists_by_name_is_required():
    """DVC reads the keys it lists from the file and stops when one is absent: the checks must
    refuse a file without them first, with a message that names the key."""
    named = {key for stage in STAGES for key in stage_params(stage)}
    for key in named & set(BY_KEY):
        assert BY_KEY[key].required, key


@pytest.mark.parametrize("section,value", [("device", None), ("device", "gap9"), ("report", None),
                                           ("adapt.runner", 5)])
def test_a_section_that_is_not_a_mapping_is_named(section, value):
    with pytest.raises(ParamsError) as err:
        validate_params(_set(DEFAULT, section, value), datasets=False)
    assert (section, f"got {value!r}; allowed: a mapping of its keys") in err.value.problems


def test_a_new_parameter_is_one_declaration(monkeypatch):
    """Declared once: the key becomes known, checked, defaulted and listed for its stage."""
    new = Param("report.width_in", Number(1, 20), 8, "figure width, inches", ("report",))
    monkeypatch.setattr(declarations, "PARAMS", (*PARAMS, new))
    monkeypatch.setattr(checks, "PARAMS", declarations.PARAMS)
    assert _get(validate_params(DEFAULT, datasets=False), "report.width_in") == 8
    with pytest.raises(ParamsError, match=r"report.width_in: got 50; allowed: a number >= 1 and <= 20"):
        validate_params(_set(DEFAULT, "report", {"dpi": 120, "width_in": 50}), datasets=False)
    assert "report" in stage_params("report")  # the report section, now with width_in
    with pytest.raises(ParamsError, match="did you mean report.width_in"):
        validate_params(_set(DEFAULT, "report", {"dpi": 120, "width_inn": 5}), datasets=False)


def test_a_modality_not_studied_needs_no_settings():
    params = _set(DEFAULT, "data.modalities", ["eeg"])
    del params["data"]["eog"], params["models"]["eog"]
    validate_params(params, datasets=False)


def test_defaults_are_not_shared_between_calls():
    params = _drop(DEFAULT, "data.dataset.kwargs")
    first = validate_params(params, datasets=False)
    first["data"]["dataset"]["kwargs"]["n_subjects"] = 1
    assert BY_KEY["data.dataset.kwargs"].default == {}
    assert validate_params(params, datasets=False)["data"]["dataset"]["kwargs"] == {}


@pytest.mark.parametrize("param", [p for p in PARAMS if isinstance(p.kind, Mapping) and p.nullable],
                         ids=lambda p: p.key)
def test_a_null_mapping_is_an_empty_one(param: Param):
    assert _get(validate_params(_set(DEFAULT, param.key, None), datasets=False), param.key) == {}
