"""The typed study settings: built once from params, read by every stage and the flow."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from biotrain.adaptation.finetune import FinetuneConfig
from biotrain.params import BY_KEY, load_study, validate_params
from biotrain.study import FINETUNE_KEYS, GRID_KEYS, StudyConfig
from biotrain.study.config import FINETUNE_PARAMS
from stages.common import PATHS
from tests.helpers import ROOT


def _under(adapt: dict, key: str):
    for part in FINETUNE_PARAMS.get(key, (key,)):
        adapt = adapt[part]
    return adapt


def test_params_yaml_becomes_typed_sections():
    config = load_study(ROOT / "params.yaml")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert config.finetune == FinetuneConfig(**{k: _under(p["adapt"], k) for k in FINETUNE_KEYS})
    assert list(config.data.modalities) == p["data"]["modalities"]
    eeg = config.data.modalities["eeg"]
    assert eeg.window.sfreq == p["data"]["eeg"]["sfreq"] and eeg.window.n_times == p["data"]["eeg"]["n_times"]
    assert eeg.model.name == p["models"]["eeg"]["name"]
    assert config.strategies == tuple(p["adapt"]["strategies"]) and config.norms == ["batch", "group"]
    assert config.runner.workers == p["adapt"]["runner"]["workers"] and config.runner.torch_threads == 1
    # a null tracking.uri is the SQLite store beside the params file, as an absolute path
    assert config.tracking.uri == f"sqlite:///{ROOT / 'mlflow.db'}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.finetune.lr = 1.0  # settings cannot change on their way down


def test_sweep_is_tracked_in_its_own_experiment():
    config = load_study(ROOT / "params.yaml")
    assert config.for_sweep().tracking.experiment == f"sweep-{config.sweep.name}"
    assert config.for_sweep().finetune == config.finetune


def test_fine_tuning_keys_are_written_once():
    """The declarations, the sweep grid and the settings all follow FinetuneConfig's fields (each a
    required key: the adapt stage's outputs depend on it by name)."""
    # per job, not params: the picked layers, and the precision a strategy label names (edge@bf16)
    assert set(FINETUNE_KEYS) == {f.name for f in dataclasses.fields(FinetuneConfig)} - {"sparse_layers", "precision"}
    assert set(FINETUNE_KEYS) <= set(GRID_KEYS)
    for key in FINETUNE_KEYS:
        assert BY_KEY["adapt." + ".".join(FINETUNE_PARAMS.get(key, (key,)))].required


def test_device_target_per_subject_and_strategy(tmp_path):
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["device"].update(execute="qemu", execute_subjects=[2])
    device = StudyConfig.from_params(validate_params(p, datasets=False), tmp_path).device
    assert device.target_for(2, "edge") == "qemu"
    assert device.target_for(3, "edge") == "host" and device.target_for(2, "none") == "host"


def _dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_dvc_yaml_names_every_file_a_stage_is_given():
    """Each stage's command passes its files, with the values the stage would default to."""
    for name, stage in _dvc_stages().items():
        words = stage["cmd"].split()
        given = {w[2:]: words[i + 1] for i, w in enumerate(words) if w.startswith("--")}
        assert given, name
        for option, value in given.items():
            assert PATHS[option] == value, (name, option)
        written = [next(iter(o)) if isinstance(o, dict) else o
                   for key in ("outs", "metrics", "plots") for o in stage.get(key, [])]
        for out in written:  # every file a stage writes is a path it was given, or under one
            assert any(out == v or out.startswith(v + "/") for v in given.values()), (name, out)


def test_stages_do_not_depend_on_settings_that_leave_results_unchanged():
    deps = {name: set(stage.get("params", [])) for name, stage in _dvc_stages().items()}
    for settings_only in ("adapt", "adapt.runner", "adapt.retries", "tracking", "tracking.uri", "pretrain.workers"):
        assert not any(settings_only in d for d in deps.values()), settings_only
    assert {"adapt.lr", "adapt.epochs", "device"} <= deps["adapt"]


def test_only_the_params_package_loads_params():
    """One loader: every entry point (stages, flows, the CLI, benchmarks) goes through it."""
    import re

    loaders = re.compile(r"read_params\(|validate_params\(|safe_load\(.*params")
    entry_points = [*ROOT.glob("stages/*.py"), *ROOT.glob("flows/*.py"), *ROOT.glob("benchmarks/*.py"),
                    ROOT / "biotrain" / "cli.py"]
    offenders = [p.relative_to(ROOT).as_posix() for p in entry_points if loaders.search(p.read_text())]
    assert offenders == []
    assert loaders.search((ROOT / "biotrain" / "params" / "files.py").read_text())


def test_flows_hold_no_study_logic():
    """flows/ wires Prefect to the library: no training, data, device or MLflow calls of its own."""
    import ast

    for path in ROOT.glob("flows/*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        library = {m for m in imported if m.startswith("biotrain")}
        assert library <= {"biotrain.study", "biotrain.errors"}, (path.name, library)
        assert not {"torch", "mlflow", "numpy"} & {m.split(".")[0] for m in imported}, path.name
