"""The cohort-difficulty evaluation: MOABB's evaluations on the embedded cohort, small."""

import numpy as np
import pytest

from biotrain.data.evaluate import EVALUATIONS, Decimate, evaluate_difficulty, paradigm_for, pipelines_for, summary
from biotrain.data.synthetic import SyntheticEOG, SyntheticMI


def test_decimate_averages_bins_and_drops_the_ragged_tail():
    X = np.arange(2 * 3 * 10, dtype=float).reshape(2, 3, 10)
    out = Decimate(4).fit_transform(X)
    assert out.shape == (2, 3 * 2)  # 10 samples -> two bins of 4, the last 2 samples dropped
    np.testing.assert_allclose(out[0, :2], [X[0, 0, :4].mean(), X[0, 0, 4:8].mean()])


def test_unknown_paradigms_and_evaluations_are_named():
    with pytest.raises(ValueError, match="'p300'.*'imagery' or 'eog'"):
        pipelines_for("p300")
    with pytest.raises(ValueError, match=r"\['leave-one-out'\] are not known"):
        evaluate_difficulty(SyntheticEOG(n_subjects=2, n_sessions=2, trials_per_class=2), ["leave-one-out"])


def test_each_synthetic_dataset_is_valid_for_its_paradigm():
    assert type(paradigm_for(SyntheticMI(n_subjects=2))).__name__ == "LeftRightImagery"
    assert type(paradigm_for(SyntheticEOG(n_subjects=2))).__name__ == "EyeMovement"


# Small cohorts with the default difficulty: a subject-specific decoder trained in the session is
# better than one trained on the subject's other session, which is better than one trained on other
# subjects (the real-data pattern; the full cohort's scores are in benchmarks/results/cohort_difficulty.md).
# (Generator seeds 0-2 all keep the order at these sizes; with 4 subjects, pooling three of them
# can beat one other session, as it may on a real cohort that small.)
SMALL = [(SyntheticMI, dict(n_subjects=6, n_sessions=2, trials_per_class=30)),
         (SyntheticEOG, dict(n_subjects=6, n_sessions=2, trials_per_class=12))]


@pytest.mark.parametrize("cls,kwargs", SMALL, ids=["SyntheticMI", "SyntheticEOG"])
def test_within_session_beats_cross_session_beats_cross_subject(cls, kwargs):
    scores = evaluate_difficulty(cls(**kwargs))
    means = summary(scores)["mean"].droplevel([0, 1])
    assert list(means.index) == list(EVALUATIONS)
    assert means["within-session"] > means["cross-session"] > means["cross-subject"], means.to_dict()
    chance = 0.5 if cls is SyntheticMI else 1 / 11
    assert means["cross-subject"] > chance - 0.05 and means["within-session"] < 0.99, means.to_dict()  # not trivial
