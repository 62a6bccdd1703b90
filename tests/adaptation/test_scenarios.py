"""Day-1 and longitudinal adaptation of one subject on tiny in-memory data (no flow, no files)."""

from __future__ import annotations

import numpy as np
import torch

from biotrain.adaptation.scenarios import run_day1, run_longitudinal
from biotrain.adaptation.finetune import AdaptInfo, FinetuneConfig
from biotrain.models import build_model

C, T, K = 3, 64, 2
CONTEXT = {"dataset": "synthetic", "modality": "eeg", "subject": 1, "strategy": "full", "seed": 5}


def _data(n_per_session=10, sessions=3):
    """Windows of three sessions in time order, and the fold the splitter would make (8 calib, 2 test)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_per_session * sessions, C, T)).astype(np.float32)
    y = np.tile(np.arange(n_per_session) % K, sessions)
    parts = [{"session": str(k), "calib": list(range(k * n_per_session, k * n_per_session + 8)),
              "test": list(range(k * n_per_session + 8, (k + 1) * n_per_session))} for k in range(sessions)]
    return X, y, {"subject": 1, "day1": parts[0], "longitudinal": parts[1:]}


def _model():
    torch.manual_seed(0)
    return build_model("mi_bminet", C, T, K, "batch", F1=4, F2=4, Nf=8, Nf2=4)


class Recorder:
    """An ``adapt_fn`` that notes what it was given and shifts the classifier bias by 1 each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, X, y, strategy, cfg, seed):
        self.calls.append({"X": X.copy(), "seed": seed, "bias": model.classifier.bias.detach().clone()})
        with torch.no_grad():
            model.classifier.bias += 1.0
        return AdaptInfo(n_calib=len(y), optimizer_steps=1, train_seconds=0.25)


def test_day1_adapts_a_copy_on_the_calibration_part_only():
    X, y, fold = _data()
    base, adapt_fn = _model(), Recorder()
    bias = base.classifier.bias.detach().clone()
    row, adapted = run_day1(base, X, y, fold, "full", FinetuneConfig(epochs=1), 5, CONTEXT, adapt_fn)
    assert len(adapt_fn.calls) == 1 and adapt_fn.calls[0]["seed"] == 5
    np.testing.assert_array_equal(adapt_fn.calls[0]["X"], X[:8])
    assert torch.equal(base.classifier.bias, bias)  # the pretrained model is left as it was
    assert torch.equal(adapted.classifier.bias, bias + 1)
    assert row == {**CONTEXT, "session": "0", "scenario": "day1", "n_calib": 8, "n_test": 2,
                   "acc_before": row["acc_before"], "acc_after": row["acc_after"], "train_seconds": 0.25,
                   "trained_params": 110}
    assert {row["acc_before"], row["acc_after"]} <= {0.0, 0.5, 1.0}  # two test windows


def test_none_changes_nothing_and_full_training_changes_the_accuracy_it_reports():
    X, y, fold = _data()
    row, model = run_day1(_model(), X, y, fold, "none", FinetuneConfig(epochs=1), 0, CONTEXT)
    assert row["acc_before"] == row["acc_after"] and row["train_seconds"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), _model().state_dict().values()))
    row, model = run_day1(_model(), X, y, fold, "full", FinetuneConfig(epochs=3, batch_size=4), 0, CONTEXT)
    assert not torch.equal(model.classifier.weight, _model().classifier.weight)
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(X[8:10]).unsqueeze(1)).argmax(1).numpy()
    assert row["acc_after"] == (predicted == y[8:10]).mean()  # the reported accuracy is the adapted model's


def test_longitudinal_chains_each_session_from_the_previous_ones_model():
    X, y, fold = _data()
    day1_model, adapt_fn = _model(), Recorder()
    start = day1_model.classifier.bias.detach().clone()
    rows = run_longitudinal(day1_model, X, y, fold, "full", FinetuneConfig(epochs=1), 5, CONTEXT, adapt_fn)
    assert [r["session"] for r in rows] == ["1", "2"] and {r["scenario"] for r in rows} == {"longitudinal"}
    assert [c["seed"] for c in adapt_fn.calls] == [1005, 2005]  # a seed of its own per session
    np.testing.assert_array_equal(adapt_fn.calls[0]["X"], X[10:18])
    np.testing.assert_array_equal(adapt_fn.calls[1]["X"], X[20:28])
    assert torch.equal(adapt_fn.calls[0]["bias"], start) and torch.equal(adapt_fn.calls[1]["bias"], start + 1)
    assert torch.equal(day1_model.classifier.bias, start)  # the day-1 model is not changed by the chain
    assert all(r["n_calib"] == 8 and r["n_test"] == 2 for r in rows)


def test_no_later_session_means_no_longitudinal_rows():
    X, y, fold = _data(sessions=1)
    assert run_longitudinal(_model(), X, y, fold, "full", FinetuneConfig(epochs=1), 0, CONTEXT, Recorder()) == []
