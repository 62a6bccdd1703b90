"""adapt.runner.allocator: which malloc the worker processes get, and a clear error when it is missing."""

from pathlib import Path

import pytest
import yaml

from biotrain.params import ParamsError, validate_params
from biotrain.study import allocator

ROOT = Path(__file__).resolve().parents[2]


def test_system_keeps_the_c_librarys_malloc():
    assert allocator.worker_preload("system") is None


def test_auto_takes_tcmalloc_when_installed_and_falls_back_when_not(monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: "libtcmalloc_minimal.so.4")
    assert allocator.worker_preload("auto") == "libtcmalloc_minimal.so.4"
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    assert allocator.worker_preload("auto") is None


def test_tcmalloc_required_but_missing_names_the_package(monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    with pytest.raises(ValueError, match="apt install libtcmalloc-minimal4"):
        allocator.worker_preload("tcmalloc")
    monkeypatch.setattr("biotrain.study.allocator.find_tcmalloc", lambda: None)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["adapt"]["runner"]["allocator"] = "tcmalloc"
    with pytest.raises(ParamsError) as err:  # said by the params check, before any stage starts
        validate_params(params)
    assert "adapt.runner.allocator" in str(err.value) and "libtcmalloc-minimal4" in str(err.value)


def test_unknown_allocator_is_named():
    with pytest.raises(ValueError, match="adapt.runner.allocator='jemalloc'.*'auto', 'tcmalloc', 'system'"):
        allocator.worker_preload("jemalloc")

