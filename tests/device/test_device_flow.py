"""The adapt flow with ``device.execute: qemu``: one subject's fine-tuning runs in the exported
C program on an emulated RV32 core, with the tiny profile's model and fine-tuning settings.

Needs Debian's gcc-riscv64-unknown-elf, picolibc-riscv64-unknown-elf and qemu-system-misc
(skips with a message naming them otherwise)."""

from __future__ import annotations

import copy
import dataclasses

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from biotrain.adaptation.scenarios import run_day1
from biotrain.data.split import make_splits
from biotrain.data.store import save_windows
from biotrain.data.windows import Windows
from biotrain.device.export.runner import missing_tools
from biotrain.io import write_json
from biotrain.models import build_model
from biotrain.models.checkpoint import save_checkpoint
from biotrain.params import validate_params
from biotrain.study import AdaptSettings, RunnerConfig, StudyConfig, StudyPaths, TrackingConfig, plan_study
from flows.adapt_cohort import run_adapt_cohort
from tests.helpers import tiny_params

C = 3


def _cohort(tmp_path, model_kw, n_times, n_per_session=20):
    """Two subjects, two sessions, a weak class signal (so accuracy means something)."""
    paths = StudyPaths(windows=tmp_path / "windows", splits=tmp_path / "splits", models=tmp_path / "models")
    rng = np.random.default_rng(0)
    meta = pd.DataFrame([{"subject": s, "session": str(k), "run": "0", "trial": t}
                         for s in (1, 2) for k in range(2) for t in range(n_per_session)])
    y = rng.integers(0, 2, len(meta))
    X = rng.standard_normal((len(meta), C, n_times)).astype(np.float32)
    X[:, 0, :] += 0.8 * (2 * y[:, None] - 1) * np.sin(np.arange(n_times) / 4.0)[None, :]
    w = Windows(X=X, y=y, meta=meta, ch_names=["a", "b", "c"], class_names=["l", "r"], sfreq=100.0)
    paths.windows.mkdir()
    save_windows(paths.windows_of("eeg"), w)
    folds = make_splits(meta, 0.8)
    write_json(paths.splits_of("eeg"), {"folds": folds})
    for fold in folds:
        torch.manual_seed(fold["subject"])
        save_checkpoint(paths.pretrained("eeg", "group", fold["subject"]),
                        build_model("mi_bminet", C, n_times, 2, "group", **model_kw), "mi_bminet", model_kw)
    return paths, {"eeg": folds}, w


def test_one_subject_adapts_on_qemu(tmp_path, prefect_harness):
    why = missing_tools("qemu")
    if why:
        pytest.skip(why)
    p = tiny_params()
    model_kw = p["models"]["eeg"]["kwargs"]
    n_times = p["data"]["eeg"]["n_times"]
    paths, folds, w = _cohort(tmp_path, model_kw, n_times)
    p["data"]["modalities"] = ["eeg"]
    p["adapt"]["strategies"], p["adapt"]["seeds"] = ["edge"], [0]
    config = StudyConfig.from_params(validate_params(p, datasets=False), tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    device = dataclasses.replace(config.device, execute="qemu", execute_subjects=(1,))
    jobs = plan_study(config, paths, folds)
    rows, _ = run_adapt_cohort(jobs, AdaptSettings(config.finetune, device), TrackingConfig(uri, "device-exec"),
                               RunnerConfig("threads", 2, retries=0))

    by = {(r["subject"], r["scenario"]): r for r in rows}
    assert by[(1, "day1")]["executed_on"] == "device-qemu"
    assert by[(1, "longitudinal")]["executed_on"] == "device-qemu"
    assert by[(2, "day1")]["executed_on"] == "host"

    # the same day-1 adaptation in PyTorch: accuracy within one test window
    from biotrain.models.checkpoint import load_checkpoint

    base, _ = load_checkpoint(paths.pretrained("eeg", "group", 1))
    fold = next(f for f in folds["eeg"] if f["subject"] == 1)
    host_row, _ = run_day1(copy.deepcopy(base), w.X, w.y, fold, "edge", config.finetune, 0, {})
    dev = by[(1, "day1")]
    assert dev["n_test"] == host_row["n_test"]
    assert abs(dev["acc_after"] - host_row["acc_after"]) <= 1.0 / dev["n_test"] + 1e-9
    assert dev["acc_before"] == host_row["acc_before"]

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["device-exec"])
    children = runs[runs["tags.kind"] != "flow"]
    tags = set(zip(children["tags.subject"], children["tags.executed_on"]))
    assert ("1", "device-qemu") in tags and ("2", "host") in tags


def test_device_execute_is_validated():
    import yaml

    from biotrain.params import ParamsError, validate_params
    from tests.helpers import ROOT

    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert p["device"]["execute"] == "host"  # PyTorch stays the default
    p["device"].update(execute="qemuu", execute_subjects=["one"])
    with pytest.raises(ParamsError) as err:
        validate_params(p)
    text = str(err.value)
    assert "device.execute: got 'qemuu'" in text and "device.execute_subjects: got ['one']" in text


@pytest.mark.parametrize("strategy", ["full", "last_layer", "sparse", "lora"])
def test_adapt_on_device_follows_pytorch_adapt(tmp_path, strategy):
    """Same batches, cosine schedule and partial last batch (full: a second planned step) as
    ``adaptation.adapt``, on the host build of the program (sparse: the layers of the config; lora:
    adapters seeded alike, trained by the program, merged afterwards)."""
    from biotrain.adaptation.finetune import FinetuneConfig, adapt
    from biotrain.device.export.adapt import adapt_on_device

    if missing_tools("host"):
        pytest.skip(missing_tools("host"))
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((21, 4, 64)).astype(np.float32), rng.integers(0, 2, 21)  # 8 + 8 + 5
    cfg = FinetuneConfig(epochs=2, sparse_layers=("pointwise",) if strategy == "sparse" else None)
    torch.manual_seed(0)
    start = build_model("mi_bminet", 4, 64, 2, "batch", F1=4, F2=4, Nf=8, Nf2=4)
    host, dev = copy.deepcopy(start), copy.deepcopy(start)
    adapt(host, X, y, strategy, cfg, 0)
    info = adapt_on_device(dev, X, y, strategy, cfg, 0, target="host", workdir=tmp_path)
    assert info.optimizer_steps == 6
    for (k, a), b, s0 in zip(host.state_dict().items(), dev.state_dict().values(), start.state_dict().values()):
        if a.dtype.is_floating_point:
            assert float((a - b).norm()) <= 1e-4 * float(a.norm()) + 1e-7, k
        else:
            assert torch.equal(a, b), k
    moved = float((dev.classifier.weight - start.classifier.weight).detach().norm())
    assert moved > 1e-6  # it did train
    assert type(dev.classifier) is torch.nn.Linear  # lora: merged, the plain layer is back
    frozen = {"sparse": "spatial.weight", "lora": "temporal.weight"}.get(strategy)
    if frozen:  # what the strategy does not train is left as it was
        assert torch.equal(dev.state_dict()[frozen], start.state_dict()[frozen])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_adapt_on_device_in_16_bits_follows_the_emulation(tmp_path, precision):
    """A 16-bit job on the device program lands where the host's 16-bit emulation lands, within
    the type's tolerance (``runner.tolerance``), and its weights are 16-bit values."""
    from biotrain.adaptation.finetune import FinetuneConfig, adapt
    from biotrain.adaptation.precision import rounded
    from biotrain.device.export.adapt import adapt_on_device
    from biotrain.device.export.runner import tolerance

    if missing_tools("host"):
        pytest.skip(missing_tools("host"))
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 4, 64)).astype(np.float32), rng.integers(0, 2, 16)
    cfg = FinetuneConfig(epochs=2, precision=precision)
    torch.manual_seed(0)
    start = build_model("mi_bminet", 4, 64, 2, "group", F1=4, F2=4, Nf=8, Nf2=4)
    host, dev = copy.deepcopy(start), copy.deepcopy(start)
    adapt(host, X, y, "edge", cfg, 0)
    adapt_on_device(dev, X, y, "edge", cfg, 0, target="host", workdir=tmp_path)
    a = torch.cat([p.detach().flatten() for p in host.parameters()])
    b = torch.cat([p.detach().flatten() for p in dev.parameters()])
    assert float((a - b).norm()) <= tolerance(precision) * float(a.norm())
    assert torch.equal(b, rounded(b, precision)) and not torch.equal(b, torch.cat(
        [p.detach().flatten() for p in start.parameters()]))
