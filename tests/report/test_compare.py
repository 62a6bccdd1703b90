"""The strategy comparison table (``report.compare``): Pareto marks and numbers on hand-made rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biotrain.report.compare import (
    comparison_markdown, comparison_section, dominated_by, edge_sentences, pareto_marks, strategy_summary,
)

# (gain in points, peak L2 in kB, energy per session in mJ)
BEST_GAIN = (30.0, 200.0, 900.0)
BEST_L2 = (10.0, 40.0, 500.0)
BEST_ENERGY = (12.0, 300.0, 80.0)
WORST = (5.0, 400.0, 1000.0)  # beaten on all three by each of the above


def test_a_strategy_beaten_on_all_three_is_dominated_and_one_best_on_any_is_not():
    beaten = dominated_by({"a": BEST_GAIN, "b": BEST_L2, "c": BEST_ENERGY, "w": WORST})
    assert beaten == {"a": [], "b": [], "c": [], "w": ["a", "b", "c"]}


def test_ties():
    # equal on all three: neither dominates, both are optimal
    assert dominated_by({"a": BEST_GAIN, "b": BEST_GAIN}) == {"a": [], "b": []}
    # equal gain and energy, more memory: dominated (a strict improvement on one is enough)
    assert dominated_by({"a": BEST_GAIN, "b": (30.0, 250.0, 900.0)})["b"] == ["a"]
    # a gain higher only in the last digits of a mean of stored accuracies is a tie, not a win:
    # so b, with less memory, dominates a
    assert dominated_by({"a": (30.00001, 200.0, 900.0), "b": (30.0, 199.0, 900.0)}) == {"a": ["b"], "b": []}
    assert dominated_by({"a": (30.00001, 200.0, 900.0), "b": (30.0, 200.0, 900.0)}) == {"a": [], "b": []}


def _rows() -> pd.DataFrame:
    """One modality, two subjects, two seeds, a day-1 and a longitudinal session per subject.

    Day-1 gains (points): edge 31 (20, 22, 40, 42), bias 11, sparse 10, full 40; longitudinal: edge 5,
    bias 2, sparse 0, full 0. Costs: edge 200 kB and 1000 / 500 mJ (day 1 / longitudinal, so 750 a
    session); bias 50 kB, 100 mJ; sparse 80 and 120 kB by subject, 300 mJ; full does not fit."""
    rows = []
    for subject in (1, 2):
        for seed in (0, 1):
            for session, scenario, before in (("0", "day1", 0.5), ("1", "longitudinal", 0.8)):
                day1 = scenario == "day1"
                after = {
                    "none": before,
                    "edge": 0.7 + 0.2 * (subject - 1) + 0.02 * seed if day1 else 0.85,
                    "bias": 0.6 + 0.02 * seed if day1 else 0.82,
                    "sparse": 0.6 if day1 else 0.8,
                    "full": 0.9 if day1 else 0.8,
                }
                cost = {  # fits, peak L2 bytes, session energy, trained parameters, layers
                    "none": (np.nan, np.nan, np.nan, 0, np.nan),
                    "edge": (True, 200_000, 1000.0 if day1 else 500.0, 6000, np.nan),
                    "bias": (True, 50_000, 100.0, 700, np.nan),
                    "sparse": (True, 40_000 * (subject + 1), 300.0, 1000 * (subject + 1),
                               "conv+classifier" if (subject, seed) == (2, 1) else "pointwise+classifier"),
                    "full": (False, 2_000_000, np.nan, 6000, np.nan),
                }
                for strategy in ("none", "full", "edge", "bias", "sparse"):
                    fits, peak, energy, trained, layers = cost[strategy]
                    rows.append({"dataset": "synthetic", "modality": "eeg", "model": "mi_bminet", "subject": subject,
                                 "session": session, "scenario": scenario, "strategy": strategy, "seed": seed,
                                 "n_calib": 8, "n_test": 50, "acc_before": before, "acc_after": after[strategy],
                                 "trained_params": trained, "layers": layers, "device_fits_on_chip": fits,
                                 "device_peak_l2_bytes": peak, "device_calib_energy_mj": energy})
    return pd.DataFrame(rows)


def test_the_summary_numbers_come_from_the_rows():
    s = strategy_summary(_rows()).set_index("strategy")
    assert list(s.index) == ["none", "full", "edge", "bias", "sparse"]  # STRATEGY_NAMES order
    assert s.loc["edge", ["day1_gain", "long_gain", "peak_l2_kb", "energy_mj", "trained_params"]].tolist() == \
        pytest.approx([31.0, 5.0, 200.0, 750.0, 6000])
    assert s.loc["bias", ["day1_gain", "long_gain", "peak_l2_kb", "energy_mj"]].tolist() == pytest.approx([11.0, 2.0, 50.0, 100.0])
    assert s.loc["sparse", ["day1_gain", "peak_l2_kb", "trained_params"]].tolist() == pytest.approx([10.0, 100.0, 2500])
    assert s.loc["sparse", "layers"] == ("pointwise+classifier", 3, 4)
    assert s.loc["none", "day1_gain"] == 0 and np.isnan(s.loc["none", "peak_l2_kb"])
    assert s.loc["full", "fits"] is False and s.loc["edge", "fits"] is True


def test_marks_exclude_none_and_what_does_not_fit():
    marks = pareto_marks(strategy_summary(_rows()))
    # full has the highest gain but no session on the chip; sparse is beaten by bias on all three
    assert marks == {"none": "reference", "full": "— (not on chip)", "edge": "**yes**", "bias": "**yes**",
                     "sparse": "no (bias)"}


def test_the_table_and_the_sentences_read_the_numbers():
    summary = strategy_summary(_rows())
    table = comparison_markdown(summary).splitlines()
    assert table[4] == "| edge | 6,000 | 200.0 | 750.0 | +31.0 | +5.0 | **yes** |"
    assert table[2] == "| none | 0 | — | — | +0.0 | +0.0 | reference |"
    assert table[3] == "| full | 6,000 | 2,000.0 | — | +40.0 | +0.0 | — (not on chip) |"
    bias, sparse = edge_sentences(summary)  # lora is not in these rows: no sentence for it
    assert bias == ("- `bias` gets 35% of `edge`'s day-1 gain (+11.0 vs +31.0 points) with 25% of its peak L2 "
                    "(50.0 vs 200.0 kB) and 13% of its energy per calibration session (100.0 vs 750.0 mJ).")
    assert sparse.startswith("- `sparse` gets 32% of `edge`'s day-1 gain") and "50% of its peak L2" in sparse
    assert "40% of its energy" in sparse
    assert sparse.endswith("It trains pointwise+classifier (in 3 of 4 day-1 runs; the most common pick).")


def test_no_share_of_a_gain_edge_does_not_make():
    df = _rows()
    df.loc[df["strategy"] == "edge", "acc_after"] = df.loc[df["strategy"] == "edge", "acc_before"]
    bias = edge_sentences(strategy_summary(df))[0]
    assert "no share: `edge` does not gain on day 1" in bias and "%" in bias  # the cost fractions remain


def test_without_device_columns_nothing_is_marked_and_nothing_breaks():
    df = _rows().drop(columns=["device_fits_on_chip", "device_peak_l2_bytes", "device_calib_energy_mj"])
    summary = strategy_summary(df)
    assert set(pareto_marks(summary).values()) == {"reference", "— (not costed)"}
    assert "no chip cost to compare" in edge_sentences(summary)[0]


def test_the_section_has_a_table_per_modality():
    df = _rows()
    eog = df.assign(modality="eog")
    text = comparison_section(pd.concat([df, eog]))
    assert text.count("| strategy | trained parameters |") == 2 and "### EEG" in text and "### EOG" in text
    assert "`none` is excluded" in text
