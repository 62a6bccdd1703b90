import pandas as pd
import pytest

from biotrain.data.split import make_splits


def _meta(subjects=(1, 2, 3), sessions=("0", "1", "2"), n=10):
    rows = [{"subject": s, "session": ses, "run": "0", "trial": t} for s in subjects for ses in sessions for t in range(n)]
    return pd.DataFrame(rows)


def test_leave_one_subject_out_and_time_ordered_80_20():
    meta = _meta()
    folds = make_splits(meta, 0.8)
    assert [f["subject"] for f in folds] == [1, 2, 3]
    for fold in folds:
        pool = meta.loc[fold["pretrain"]]
        assert fold["subject"] not in set(pool["subject"]) and len(pool) == 60
        day1 = fold["day1"]
        assert day1["session"] == "0"
        calib, test = meta.loc[day1["calib"]], meta.loc[day1["test"]]
        assert len(calib) == 8 and len(test) == 2
        assert calib["trial"].max() < test["trial"].min()  # calibration strictly before test
        assert set(calib["subject"]) == set(test["subject"]) == {fold["subject"]}
        assert [s["session"] for s in fold["longitudinal"]] == ["1", "2"]


def test_sessions_sorted_naturally():
    folds = make_splits(_meta(sessions=("10", "2", "1")), 0.5)
    assert folds[0]["day1"]["session"] == "1"
    assert [s["session"] for s in folds[0]["longitudinal"]] == ["2", "10"]


@pytest.mark.parametrize("fraction", [0, 1, -0.2, 1.5])
def test_bad_fraction_named(fraction):
    with pytest.raises(ValueError, match="calib_fraction"):
        make_splits(_meta(), fraction)


def test_needs_two_subjects():
    with pytest.raises(ValueError, match="at least 2 subjects"):
        make_splits(_meta(subjects=(1,)), 0.8)
