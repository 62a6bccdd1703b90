"""The 16-bit section: fp32 and 16-bit runs side by side, and a verdict that names what 16 bits cost."""

import pandas as pd

from biotrain.report.precision import precision_section, precision_table, verdict


def _rows(strategy, accs, scenario="day1", n_test=20, modality="eeg"):
    return [{"modality": modality, "strategy": strategy, "scenario": scenario, "seed": seed, "subject": subject,
             "acc_after": acc, "n_test": n_test} for seed, (subject, acc) in enumerate(accs)]


def test_a_tie_within_one_test_window_and_a_loss_beyond_it():
    df = pd.DataFrame(_rows("edge", [(1, 0.80), (1, 0.90)]) + _rows("edge@bf16", [(1, 0.78), (1, 0.88)])  # -2 points
                      + _rows("full", [(1, 0.80), (1, 0.80)]) + _rows("full@fp16", [(1, 0.60), (1, 0.60)])  # -20 points
                      + _rows("lora", [(1, 0.7), (1, 0.7)]))  # no 16-bit run: not in the section
    table = precision_table(df)
    assert list(zip(table["strategy"], table["precision"])) == [("full", "fp32"), ("full", "fp16"),
                                                                ("edge", "fp32"), ("edge", "bf16")]
    assert verdict(table, "eeg", "edge", "bf16").startswith("`edge@bf16` (eeg) costs nothing")  # 2 < 5 points
    lost = verdict(table, "eeg", "full", "fp16")
    assert "costs accuracy" in lost and "20.0 points (4.0 test windows) below fp32" in lost
    text = precision_section(df)
    assert "| eeg | edge | bf16 | 83.0 ± 5.0 | — |" in text and "lora" not in text


def test_no_section_without_a_16_bit_run():
    assert precision_section(pd.DataFrame(_rows("edge", [(1, 0.8)]))) == ""
