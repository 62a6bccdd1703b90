"""Stage ``data``: recordings through MOABB -> windows of T samples with metadata, per subject."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from biotrain.data.datasets import check_study_shape, make_dataset
from biotrain.data.recordings import read_error
from biotrain.data.sources import DigestCache, subject_sources
from biotrain.data.store import StagedFolder, code_digest, fingerprint, reusable_subjects
from biotrain.data.validate import check_windows
from biotrain.data.windows import check_window_fits, extract_windows
from biotrain.errors import UserError
from biotrain.params import load_study
from biotrain.study import DataConfig
from stages.common import run_main, stage_args, study_paths

SELECTION_KEYS = ("subjects", "n_subjects")  # choose subjects; do not change any subject's data
DIGESTS = Path("data/.source-digests.json")  # SHA-256 of recording files, by (path, size, mtime)


def prepare(data: DataConfig, cache: DigestCache) -> list[tuple]:
    """Every modality's dataset, window spec and per-subject fingerprints, checked before any work."""
    jobs = []
    for modality, cfg in data.modalities.items():
        spec, kwargs = cfg.window, cfg.dataset_kwargs
        dataset = make_dataset(data.dataset, kwargs, modality, cfg.kwargs_key)
        check_study_shape(dataset, cfg.kwargs_key)
        check_window_fits(dataset, spec)
        params_fp = {"dataset": data.dataset, "spec": asdict(spec), "format": 2, "code": code_digest(),
                     "kwargs": {k: v for k, v in kwargs.items() if k not in SELECTION_KEYS}}
        subjects = list(dataset.subject_list)
        sources = subject_sources(dataset, subjects, cache)
        fps = {s: fingerprint({**params_fp, "sources": sources[s]}) for s in subjects}
        jobs.append((modality, dataset, spec, fps, sources))
    return jobs


def main() -> None:
    args = stage_args(__doc__, "windows")
    data, paths = load_study(args.params).data, study_paths(args)
    if data.cache_dir:  # where MOABB downloads and caches recordings
        os.environ["MNE_DATA"] = str(Path(data.cache_dir).expanduser().resolve())
    cache = DigestCache(DIGESTS)
    jobs = prepare(data, cache)
    cache.save()
    for modality, dataset, spec, fps, sources in jobs:
        folder = paths.windows_of(modality)
        reuse, notes = reusable_subjects(folder, fps)
        for note in notes:
            print(f"{modality}: {note}")
        subjects = list(fps)
        staged = StagedFolder(folder)
        try:
            for subject in tqdm(subjects, desc=f"data {modality}", unit="subject"):
                if subject in reuse:
                    staged.add(subject, fps[subject], reuse=reuse[subject])
                    continue
                try:
                    windows = extract_windows(dataset, spec, [subject])
                except UserError:
                    raise
                except Exception as err:  # a recording the reader chokes on: name it, not the params
                    raise read_error(dataset, subject, err) from err
                check_windows(windows, f"{dataset.code} subject {subject}")
                staged.add(subject, fps[subject], windows)
            staged.commit({"dataset": dataset.code, "modality": modality})
        except BaseException:
            staged.discard()
            raise
        n_reused = sum(s in reuse for s in subjects)
        print(f"{modality}: {len(subjects)} subjects ({n_reused} reused, {len(subjects) - n_reused} computed)")


if __name__ == "__main__":
    run_main(main, "data")
