"""sparse: the contribution analysis (pool only) and the greedy pick under a peak-L2 budget."""

import numpy as np
import pytest

from biotrain.adaptation.finetune import FinetuneConfig
from biotrain.adaptation.scoring import probe_layers, scoring_groups, scoring_pool, validation_subject
from biotrain.adaptation.sparse import pick_order, select_layers
from biotrain.models.layers import weight_layers
from tests.adaptation.cases import data, model

LAYERS = ["spatial", "temporal", "depthwise", "pointwise", "classifier"]
BYTES = {"spatial": 30, "temporal": 50, "depthwise": 10, "pointwise": 20}


def _peak(chosen):  # a stand-in plan: 100 B for the classifier-only step, plus each layer's share
    return 100 + sum(BYTES[n] for n in chosen)


def test_greedy_pick_keeps_the_best_layers_that_fit():
    order = ["temporal", "pointwise", "spatial", "depthwise"]
    assert select_layers(order, _peak, 100) == ()
    assert select_layers(order, _peak, 175) == ("temporal", "pointwise")
    assert select_layers(order, _peak, 165) == ("temporal", "depthwise")  # pointwise no longer fits; depthwise does
    assert select_layers(order, _peak, 10_000) == tuple(order)


def test_a_budget_below_the_classifier_step_is_refused_with_the_minimum():
    with pytest.raises(ValueError, match=r"adapt.sparse.budget_kb=0.05 .*at least 0.1"):
        select_layers(["temporal"], _peak, 50)


def test_order_follows_the_scores_and_drops_layers_that_did_not_help():
    scores = {"layers": {"spatial": {"gain": 0.1}, "temporal": {"gain": -0.05}, "depthwise": {"gain": 0.0},
                         "pointwise": {"gain": 0.2}, "classifier": {"gain": 0.0}}}
    assert pick_order(LAYERS, scores) == ["pointwise", "spatial"]
    assert pick_order(LAYERS, None) == ["pointwise", "depthwise", "temporal", "spatial"]  # no scores: deepest first
    with pytest.raises(ValueError, match="another architecture"):
        pick_order(LAYERS + ["extra"], scores)


def _folds(n_subjects=4, per=12):
    folds, start = [], 0
    for s in range(1, n_subjects + 1):
        own = list(range(start, start + per))
        folds.append({"subject": s, "day1": {"calib": own[:4], "test": own[4:6]},
                      "longitudinal": [{"calib": own[6:10], "test": own[10:]}]})
        start += per
    everyone = range(start)
    for f in folds:
        f["pretrain"] = [i for i in everyone if i not in range((f["subject"] - 1) * per, f["subject"] * per)]
    return folds


@pytest.mark.parametrize("n_subjects", [4, 5])
def test_scoring_never_sees_the_held_out_subject(n_subjects):
    folds = _folds(n_subjects)
    groups = scoring_groups(folds)
    assert [len(g) for g in groups] == ([2, 2] if n_subjects == 4 else [2, 3])  # odd: the last group a triple
    assert sorted(f["subject"] for g in groups for f in g) == list(range(1, n_subjects + 1))
    everyone = set(range(12 * n_subjects))
    for group in groups:
        pool = set(scoring_pool(group))
        members = {i for f in group for i in range((f["subject"] - 1) * 12, f["subject"] * 12)}
        assert pool and not pool & members and pool | members == everyone
        for fold in group:
            v = validation_subject(group, fold["subject"])
            assert v["subject"] != fold["subject"] and v in group  # scored on a subject the model never saw
    with pytest.raises(ValueError, match="at least 3 subjects"):
        scoring_groups(_folds(2))


def test_probes_score_every_layer_against_the_classifier_alone():
    X, y = data("epidenet", 24)
    validation = {"subject": 7, "day1": {"calib": list(range(16)), "test": list(range(16, 24))}, "longitudinal": []}
    base = model("epidenet", "batch")
    scores = probe_layers(base, X, y, validation, FinetuneConfig(epochs=1), seed=0)
    assert list(scores["layers"]) == list(weight_layers(base)) and scores["validation_subject"] == 7
    for name, s in scores["layers"].items():
        assert s["gain"] == pytest.approx(s["accuracy"] - scores["accuracy_classifier"], abs=1e-6)
        assert s["update_bytes"] == 12 * s["params"] > 0
    assert scores["layers"]["classifier"]["gain"] == 0
    assert np.isclose(sum(s["params"] for s in scores["layers"].values()), sum(p.numel() for p in base.parameters()))


def test_scores_need_three_subjects_and_say_so_before_any_training(tmp_path):
    from biotrain.adaptation.pretraining import pretrain_folds
    from biotrain.adaptation.training import PretrainConfig

    X, y = data("epidenet", 24)
    with pytest.raises(ValueError, match=r"'sparse'.*at least 3 subjects.*eog has 2"):
        pretrain_folds(X, y, 11, _folds(2, per=12), "epidenet", {}, ["batch"], PretrainConfig(epochs=1), 0,
                       tmp_path, "eog", sfreq=500.0, score_epochs=1)
    assert not any(tmp_path.iterdir())
