"""dvc.yaml's dependencies are true: each stage depends on every project file it loads and on the
parameters declared to change it, so an edit reruns the stages it affects and no others."""

from __future__ import annotations

import pytest
import yaml

from biotrain.params import BY_KEY, STAGES, stage_params
from tests.helpers import ROOT
from tools import sync_dvc

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in deps)


def test_dvc_yaml_is_what_the_code_and_declarations_say():
    text = (ROOT / "dvc.yaml").read_text()
    assert sync_dvc.render(text) == text, "dvc.yaml is out of date: run `python tools/sync_dvc.py`"


def test_the_stages_are_the_declared_stages():
    assert tuple(DVC) == STAGES


@pytest.mark.parametrize("stage", STAGES)
def test_every_file_a_stage_loads_is_a_dependency(stage):
    script = sync_dvc.stage_scripts({"stages": DVC})[stage]
    loaded = sorted(p.relative_to(ROOT).as_posix() for p in sync_dvc.code_files(script))
    assert script in loaded and "biotrain/params/declarations.py" in loaded
    missing = [f for f in loaded if not _covered(f, DVC[stage]["deps"])]
    assert missing == [], f"{stage} loads files dvc.yaml does not list: {missing}"


@pytest.mark.parametrize("stage,path", [
    ("pretrain", "biotrain/adaptation/fast_conv.py"),
    ("pretrain", "biotrain/data/store.py"),
    ("adapt", "biotrain/strategy_table.py"),
    ("adapt", "flows/runners.py"),
    ("adapt", "stages/common.py"),
    ("split", "biotrain/data/order.py"),
])
def test_an_edit_to_code_a_stage_runs_reruns_it(stage, path):
    assert (ROOT / path).is_file()
    assert _covered(path, DVC[stage]["deps"])


def test_a_function_level_import_is_followed(tmp_path, monkeypatch):
    """Imports inside functions count: the stage loads them when that code runs."""
    (tmp_path / "stages").mkdir()
    (tmp_path / "biotrain").mkdir()
    (tmp_path / "stages" / "s.py").write_text("def main():\n    from biotrain import lazy\n")
    (tmp_path / "biotrain" / "__init__.py").write_text("")
    (tmp_path / "biotrain" / "lazy.py").write_text("from .deeper import x\n")
    (tmp_path / "biotrain" / "deeper.py").write_text("x = 1\n")
    (tmp_path / "biotrain" / "table.yaml").write_text("a: 1\n")
    monkeypatch.setattr(sync_dvc, "ROOT", tmp_path)
    found = {p.relative_to(tmp_path).as_posix() for p in sync_dvc.code_files("stages/s.py")}
    assert found == {"stages/s.py", "biotrain/__init__.py", "biotrain/lazy.py", "biotrain/deeper.py",
                     "biotrain/table.yaml"}


@pytest.mark.parametrize("stage", STAGES)
def test_params_lists_are_the_declared_ones(stage):
    assert DVC[stage].get("params", []) == stage_params(stage)


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/tiny.yaml"])
def test_every_listed_parameter_is_in_each_shipped_params_file(profile):
    """DVC reads the listed keys from the file; a key it cannot find fails ``dvc repro``."""
    params = yaml.safe_load((ROOT / profile).read_text())
    for stage in STAGES:
        for key in stage_params(stage):
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, (profile, stage, key)
                node = node[part]


def test_settings_that_leave_results_unchanged_rerun_nothing():
    for key in ("pretrain.workers", "adapt.retries", "adapt.runner.name", "adapt.runner.workers", "tracking.uri"):
        assert BY_KEY[key].stages == ()
        assert not any(key in stage_params(s) or key.startswith(tuple(f"{p}." for p in stage_params(s)))
                       for s in STAGES), key
