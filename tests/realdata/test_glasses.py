"""SmartGlassesEOG on small CSV folders written in the exact layout it reads (no network, no mocks).

* A cohort exported from ``SyntheticEOG`` (3 subjects x 2 sessions x 33 trials, real eye-movement signals)
  must give the very same windows through the CSV loader as the synthetic dataset itself.
* Hand-made recordings pin the windowing rule (whole 2 s windows inside one trigger segment).
* Downloads come from an ``http.server`` on 127.0.0.1 started and stopped by the test.
* Corrupt files stop with the file or subject named, and the ``data`` stage leaves no output.
* The whole pipeline runs through ``dvc repro`` on the CSV folder.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import tarfile
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pooch
import pytest

from biotrain.params import validate_params
from biotrain.data.datasets import EOG_DATASETS, make_dataset
from biotrain.data.glasses import GlassesDataError, SmartGlassesEOG, segment_windows
from biotrain.data.signals import EOG_EVENTS, EOG_TRIGGERS
from biotrain.data.synthetic import SyntheticEOG
from biotrain.data.windows import WindowSpec, extract_windows
from tests.helpers import make_project, run_dvc, tiny_params

SFREQ = 500
SPEC = WindowSpec(modality="eog", sfreq=250.0, n_times=500, fmin=0.5, fmax=40.0)
COHORT = {"n_subjects": 3, "n_sessions": 2, "trials_per_class": 3, "seed": 0}
PER_SESSION = 11 * COHORT["trials_per_class"]  # one 2 s window per 2.5 s trial
SPLIT_RUNS = (3, "1")  # subject 3, session "1" is written as two CSV files (two runs)


# ---- writing recordings in the on-disk layout ---------------------------------------------------

def write_csv(path: Path, electrodes_uv: np.ndarray, trigger: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"EEG 1": electrodes_uv[0], "EEG 2": electrodes_uv[1], "EEG 3": electrodes_uv[2],
                          "Trigger": trigger.astype(int)})
    frame.to_csv(path, index=False, float_format="%.5f")
    return path


def export_synthetic(root: Path) -> Path:
    """SyntheticEOG sessions as CSV: ``sub-0S/ses-(N+1)/run*.csv``, trigger held for each 2.5 s trial."""
    synthetic = SyntheticEOG(**COHORT)
    trial = int(synthetic.trial_s * SFREQ)
    for subject in synthetic.subject_list:
        for session, runs in synthetic._get_single_subject_data(subject).items():
            data = runs["0"].get_data()
            trigger = np.zeros(data.shape[1], dtype=int)
            onsets = np.flatnonzero(data[3])
            for i in onsets:
                trigger[i:i + trial] = int(data[3, i])
            folder = root / f"sub-{subject:02d}" / f"ses-{int(session) + 1}"
            uv = data[:3] * 1e6
            if (subject, str(int(session) + 1)) == SPLIT_RUNS:  # cut in the rest gap after the 20th trial
                cut = onsets[19] + trial + 100
                write_csv(folder / "run2.csv", uv[:, :cut], trigger[:cut])  # natural order: run2 < run10
                write_csv(folder / "run10.csv", uv[:, cut:], trigger[cut:])
            else:
                write_csv(folder / "recording.csv", uv, trigger)
    return root


def recording(segments, seed=0, rest_s=1.0):
    """Electrodes (uV) and trigger for ``segments`` = [(code, seconds), ...] separated by rest.

    Inside a segment the electrodes carry a class-dependent slow oscillation over noise.
    """
    rng = np.random.default_rng(seed)
    parts_x, parts_t = [], []
    for code, seconds in [(0, rest_s)] + [s for seg in segments for s in (seg, (0, rest_s))]:
        n = int(round(seconds * SFREQ))
        x = 5 * rng.standard_normal((3, n))
        if code:
            k = EOG_TRIGGERS.index(code) if code in EOG_TRIGGERS else 11
            t = np.arange(n) / SFREQ
            x += 80 * np.outer([np.cos(k), 1.0, np.sin(k)], np.sin(2 * np.pi * (1 + k / 4) * t))
        parts_x.append(x)
        parts_t.append(np.full(n, code))
    return np.hstack(parts_x), np.concatenate(parts_t)


ALL_CLASSES = [(code, 2.5) for code in EOG_TRIGGERS]


def small_folder(root: Path, n_subjects=2, n_sessions=1) -> Path:
    for s in range(1, n_subjects + 1):
        for ses in range(1, n_sessions + 1):
            x, t = recording(ALL_CLASSES, seed=100 * s + ses)
            write_csv(root / f"sub-{s:02d}" / f"ses-{ses:02d}" / "run1.csv", x, t)
    return root


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return export_synthetic(tmp_path_factory.mktemp("glasses") / "recordings")


# ---- (a) the dataset through extract_windows ------------------------------------------------------

def test_registered_and_accepted_by_params(cohort):
    assert "SmartGlassesEOG" in EOG_DATASETS
    dataset = make_dataset("SmartGlassesEOG", {"path": str(cohort)}, "eog")
    assert isinstance(dataset, SmartGlassesEOG) and dataset.paradigm == "eog"
    assert dataset.subject_list == [1, 2, 3] and dataset.n_sessions == 2
    assert dataset.event_id == EOG_EVENTS and list(dataset.interval) == [0, 2.0]
    params = tiny_params()
    params["data"]["dataset"] = {"name": "SmartGlassesEOG", "kwargs": {"path": str(cohort)}}
    params["data"]["modalities"] = ["eog"]
    params["data"]["eog"]["dataset_kwargs"] = {}  # the synthetic cohort's trials_per_class is not an argument here
    validate_params(params)


def test_same_windows_as_the_synthetic_dataset_it_was_exported_from(cohort):
    """CSV (uV) -> volts -> MOABB paradigm gives back the SyntheticEOG windows, labels and order."""
    glasses = extract_windows(SmartGlassesEOG(path=str(cohort)), SPEC)
    synthetic = extract_windows(SyntheticEOG(**COHORT), SPEC)
    assert glasses.X.shape == synthetic.X.shape == (3 * 2 * PER_SESSION, 2, 500)
    assert glasses.ch_names == ["vertical", "horizontal"] and glasses.class_names == list(EOG_EVENTS)
    np.testing.assert_array_equal(glasses.y, synthetic.y)
    for col in ("subject", "trial"):
        np.testing.assert_array_equal(glasses.meta[col], synthetic.meta[col])
    # sessions are named after their folders (ses-1 -> "1"); synthetic ones count from "0"
    np.testing.assert_array_equal(glasses.meta["session"], (synthetic.meta["session"].astype(int) + 1).astype(str))
    one_run = ~((glasses.meta["subject"] == SPLIT_RUNS[0]) & (glasses.meta["session"] == SPLIT_RUNS[1])).to_numpy()
    # identical where the recording is one file (CSV rounding only); filter edges differ at a run cut
    np.testing.assert_allclose(glasses.X[one_run], synthetic.X[one_run], atol=1e-3)
    assert np.abs(glasses.X).max() > 20  # microvolts again after MOABB's unit factor


def test_metadata_per_subject_session_and_run(cohort):
    w = extract_windows(SmartGlassesEOG(path=str(cohort)), SPEC, subjects=[3])
    assert sorted(w.meta["subject"].unique()) == [3] and sorted(w.meta["session"].unique()) == ["1", "2"]
    split = w.meta[w.meta["session"] == "1"]
    # run2.csv then run10.csv: natural order; 20 trials in the first file
    assert split["run"].tolist() == ["0"] * 20 + ["1"] * (PER_SESSION - 20)
    assert split["trial"].tolist() == list(range(PER_SESSION))
    for session, rows in w.meta.groupby("session"):
        assert np.bincount(w.y[rows.index], minlength=11).tolist() == [COHORT["trials_per_class"]] * 11, session


def test_subject_and_session_selection(cohort):
    dataset = SmartGlassesEOG(path=str(cohort), subjects=[2], sessions=["2"])
    w = extract_windows(dataset, SPEC)
    assert set(w.meta["subject"]) == {2} and set(w.meta["session"]) == {"2"} and len(w.y) == PER_SESSION
    with pytest.raises(ValueError, match="Invalid subjects"):
        SmartGlassesEOG(path=str(cohort), subjects=[7])


def test_windows_lie_wholly_inside_one_trigger_segment(tmp_path):
    # 2.5 s -> 1 window, 4.2 s -> 2, 1.5 s -> 0, 6.0 s -> 3, then the same code twice (2 segments)
    segments = [(50, 2.5), (51, 4.2), (52, 1.5), (53, 6.0), (61, 2.0), (61, 3.9)]
    x, trigger = recording(segments)
    write_csv(tmp_path / "sub-1" / "ses-1" / "a.csv", x, trigger)
    x2, trigger2 = recording([(62, 2.2), (63, 2.2)], seed=1)
    write_csv(tmp_path / "sub-2" / "ses-1" / "a.csv", x2, trigger2)
    dataset = SmartGlassesEOG(path=str(tmp_path))
    raw = dataset.get_data([1])[1]["1"]["0"]
    stim = raw.get_data(picks=["STI 014"])[0]
    onsets = np.flatnonzero(stim)
    assert stim[onsets].astype(int).tolist() == [50, 51, 51, 53, 53, 53, 61, 61]
    for onset in onsets:  # every window of 1000 samples has one constant non-zero trigger
        assert len(set(trigger[onset:onset + 2 * SFREQ])) == 1 and trigger[onset] == stim[onset]
        assert trigger[onset - 1] != trigger[onset] or stim[onset - 2 * SFREQ] != 0
    w = extract_windows(dataset, SPEC, subjects=[1])
    names = [w.class_names[k] for k in w.y]
    assert names == ["eye_50", "eye_51", "eye_51", "eye_53", "eye_53", "eye_53", "eye_61", "eye_61"]
    assert w.X.shape == (8, 2, 500)
    np.testing.assert_allclose(raw.get_data(picks=["EEG 1", "EEG 2", "EEG 3"]) * 1e6, x, atol=1e-5)


def test_segment_windows_rule():
    trigger = np.r_[np.zeros(3), np.full(10, 50), np.full(9, 51), np.full(4, 52), np.zeros(2), np.full(4, 52)]
    onsets, codes = segment_windows(trigger, 4)
    assert onsets.tolist() == [3, 7, 13, 17, 22, 28] and codes.tolist() == [50, 50, 51, 51, 52, 52]
    assert segment_windows(np.zeros(5), 4)[0].size == 0


def test_unknown_trigger_codes_warn_by_default_and_can_be_errors(tmp_path):
    x, trigger = recording([(50, 2.5), (99, 3.0), (51, 2.5)])
    path = write_csv(tmp_path / "sub-01" / "ses-01" / "rec.csv", x, trigger)
    small_folder(tmp_path, n_subjects=2)  # adds sub-02 (sub-01 keeps rec.csv and run1.csv)
    with pytest.warns(UserWarning, match=r"rec\.csv.*\[99\]"):
        SmartGlassesEOG(path=str(tmp_path)).get_data([1])
    with pytest.raises(GlassesDataError, match=r"rec\.csv.*\[99\]"):
        SmartGlassesEOG(path=str(tmp_path), unknown_triggers="error").get_data([1])
    assert path.exists()


# ---- (b) downloading an archive -------------------------------------------------------------------

@contextmanager
def serve(folder: Path):
    """An HTTP server on 127.0.0.1 serving ``folder``, stopped on exit."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def make_archive(src: Path, dest: Path, kind: str) -> Path:
    """``src`` wrapped in a top-level ``glasses/`` folder, as .zip or .tar.gz."""
    dest.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if kind == "zip":
        out = dest / "glasses.zip"
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for p in files:
                z.write(p, Path("glasses") / p.relative_to(src))
    else:
        out = dest / "glasses.tar.gz"
        with tarfile.open(out, "w:gz") as t:
            t.add(src, arcname="glasses")
    return out


@pytest.fixture(autouse=True)
def _no_proxy_for_localhost(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_download_extract_and_load(tmp_path, kind):
    src = small_folder(tmp_path / "src", n_subjects=2, n_sessions=2)
    archive = make_archive(src, tmp_path / "www", kind)
    cache = tmp_path / "cache"
    with serve(archive.parent) as base:
        url = f"{base}/{archive.name}"
        dataset = make_dataset("SmartGlassesEOG", {"url": url, "cache_dir": str(cache)}, "eog")
        assert dataset.root.is_relative_to(cache) and dataset.root.name == "glasses"
        assert dataset.subject_list == [1, 2] and dataset.n_sessions == 2
        w = extract_windows(dataset, SPEC)
        assert w.X.shape == (2 * 2 * 11, 2, 500) and sorted(set(w.y.tolist())) == list(range(11))
        digest = pooch.file_hash(str(archive))
    # the server is gone: the cached archive (checked against its hash) is used, nothing downloads
    again = SmartGlassesEOG(url=url, cache_dir=str(cache), known_hash=f"sha256:{digest}")
    assert again.root == dataset.root and again.subject_list == [1, 2]
    # both path and url: an existing local copy wins, no download
    local = SmartGlassesEOG(path=str(src), url=url, cache_dir=str(tmp_path / "unused"))
    assert local.root == src and not (tmp_path / "unused").exists()


def test_download_errors_name_the_url(tmp_path):
    src = small_folder(tmp_path / "src")
    archive = make_archive(src, tmp_path / "www", "zip")
    with serve(archive.parent) as base:
        with pytest.raises(GlassesDataError, match=r"glasses\.zip"):
            SmartGlassesEOG(url=f"{base}/glasses.zip", cache_dir=str(tmp_path / "c1"), known_hash="sha256:" + "0" * 64)
        with pytest.raises(GlassesDataError, match=r"missing\.zip"):
            SmartGlassesEOG(url=f"{base}/missing.zip", cache_dir=str(tmp_path / "c2"))
    with pytest.raises(GlassesDataError, match=r"\.zip or \.tar\.gz"):
        SmartGlassesEOG(url=f"{base}/glasses.rar", cache_dir=str(tmp_path / "c3"))
    with pytest.raises(GlassesDataError, match="'path'.*'url'"):
        SmartGlassesEOG()


# ---- (c) corrupt input --------------------------------------------------------------------------

def corrupt(root: Path, how: str) -> Path:
    """A 3-subject folder with one bad thing in subject 3; returns the bad file (or folder)."""
    small_folder(root, n_subjects=3, n_sessions=2)  # 2 sessions: a one-session study is refused up front
    bad = root / "sub-03" / "ses-01" / "run1.csv"
    text = bad.read_text()
    if how == "truncated":
        bad.write_text(text[: len(text) // 2].rsplit(",", 1)[0])  # cut in the middle of a row
    elif how == "nan":
        lines = text.splitlines()
        lines[500] = "nan," + lines[500].split(",", 1)[1]
        bad.write_text("\n".join(lines) + "\n")
    elif how == "unparseable":
        lines = text.splitlines()
        lines[42] = ",".join(["1.2.3", *lines[42].split(",")[1:]])
        bad.write_text("\n".join(lines) + "\n")
    elif how == "one_class":
        x, t = recording([(50, 2.5), (50, 4.0), (52, 1.0)])  # one class with a whole window
        write_csv(bad, x, t)
    elif how == "missing_column":
        bad.write_text(text.replace("Trigger", "Marker", 1))
    elif how == "empty_session":
        bad.unlink()
        return bad.parent
    return bad


CORRUPT = {
    "truncated": r"run1\.csv: line \d+ has \d field\(s\), the header has 4 \(the last line: the file looks truncated\)",
    "nan": r"run1\.csv: column 'EEG 1' has 1 NaN/Inf/empty value\(s\), first on data row 500",
    "unparseable": r"run1\.csv: column 'EEG 1' has 1 unparseable value\(s\), first '.*1\.2\.3'",
    "one_class": r"subject 3 session 1 \(.*sub-03.ses-01\): 1 class\(es\) \[50\].*need at least 2",
    "missing_column": r"run1\.csv: missing column\(s\) \['Trigger'\]",
    "empty_session": r"subject 3 session 1: no \.csv files in .*ses-01",
}


@pytest.mark.parametrize("how", sorted(CORRUPT))
def test_corrupt_input_names_the_file_or_subject(tmp_path, how):
    bad = corrupt(tmp_path, how)
    with pytest.raises(GlassesDataError, match=CORRUPT[how]) as info:
        extract_windows(SmartGlassesEOG(path=str(tmp_path)), SPEC)
    assert str(bad) in str(info.value) or how == "one_class"


def test_no_subjects_found(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "README.txt").write_text("hello")
    with pytest.raises(GlassesDataError, match=r"no subject folders .* found under .*sub-XX/ses-YY/\*\.csv"):
        SmartGlassesEOG(path=str(tmp_path))
    (tmp_path / "sub-1" / "ses-1").mkdir(parents=True)
    (tmp_path / "sub-01" / "ses-1").mkdir(parents=True)
    with pytest.raises(GlassesDataError, match=r"subject folders .*sub-0?1 and .*sub-0?1 both have number 1"):
        SmartGlassesEOG(path=str(tmp_path))
    with pytest.raises(GlassesDataError, match="is not a folder"):
        SmartGlassesEOG(path=str(tmp_path / "absent"))


def _glasses_params(folder: Path, **data) -> dict:
    params = tiny_params()
    params["data"]["dataset"] = {"name": "SmartGlassesEOG", "kwargs": {"path": str(folder)}}
    params["data"]["modalities"] = ["eog"]
    params["data"]["eog"].update({"dataset_kwargs": {}, "sfreq": 250.0, "n_times": 500}, **data)
    return params


def test_data_stage_stops_on_a_corrupt_file_and_writes_nothing(tmp_path):
    bad = corrupt(tmp_path / "recordings", "nan")
    project = make_project(tmp_path / "project", _glasses_params(tmp_path / "recordings"))
    proc = run_dvc(project, "repro", "data", check=False)
    assert proc.returncode != 0
    assert str(bad) in proc.stdout + proc.stderr and "NaN" in proc.stdout + proc.stderr
    windows = project / "data" / "windows"
    assert not windows.exists() or not any(p for p in windows.rglob("*") if p.is_file())


# ---- (d) the whole pipeline on the CSV folder ---------------------------------------------------

@pytest.mark.slow
def test_pipeline_on_the_glasses_folder(cohort, tmp_path, prefect_api_url):
    params = _glasses_params(cohort)
    params["pretrain"]["epochs"] = 2  # plumbing, not accuracy: keep it short
    params["adapt"]["epochs"] = 2
    params["adapt"]["strategies"] = ["none", "edge"]  # one untrained, one trained (both norms pretrained)
    project = make_project(tmp_path / "project", params)
    run_dvc(project, "repro")
    results = pd.read_csv(project / "results" / "adaptation.csv", dtype={"session": str})
    strategies = params["adapt"]["strategies"]
    assert len(results) == 3 * 2 * len(strategies) * len(params["adapt"]["seeds"])
    assert set(results["dataset"]) == {"SmartGlassesEOG"} and set(results["modality"]) == {"eog"}
    assert sorted(results["subject"].unique()) == [1, 2, 3] and set(results["session"]) == {"1", "2"}
    assert set(results["scenario"]) == {"day1", "longitudinal"} and set(results["strategy"]) == set(strategies)
    assert results["acc_after"].between(0, 1).all()
    assert ((results["n_calib"] + results["n_test"]) == PER_SESSION).all()
    assert (project / "reports" / "study.md").is_file()
    shutil.rmtree(project / "mlartifacts", ignore_errors=True)
