"""Stage ``data``: recordings through MOABB -> windows of T samples with metadata, per subject."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from biotrain.data.datasets import make_dataset
from biotrain.data.store import StagedFolder, fingerprint, reusable_subjects
from biotrain.data.validate import check_windows
from biotrain.data.windows import WindowSpec, check_window_fits, extract_windows
from stages.common import load_params, modality_paths, stage_args

SELECTION_KEYS = ("subjects", "n_subjects")  # choose subjects; do not change any subject's data


def main() -> None:
    params = load_params(stage_args(__doc__).params)
    data = params["data"]
    if data.get("cache_dir"):  # where MOABB downloads and caches recordings
        os.environ["MNE_DATA"] = str(Path(data["cache_dir"]).expanduser().resolve())
    jobs = []
    for modality in data["modalities"]:  # check every modality before loading anything
        cfg = data[modality]
        spec = WindowSpec(modality=modality, sfreq=float(cfg["sfreq"]), n_times=int(cfg["n_times"]),
                          fmin=float(cfg["fmin"]), fmax=float(cfg["fmax"]), tmin=float(cfg["tmin"]),
                          channels=cfg.get("channels"), events=cfg.get("events"))
        kwargs = {**(data["dataset"].get("kwargs") or {}), **(cfg.get("dataset_kwargs") or {})}
        dataset = make_dataset(data["dataset"]["name"], kwargs, modality)
        check_window_fits(dataset, spec)
        fp = fingerprint({"dataset": data["dataset"]["name"], "spec": asdict(spec), "format": 1,
                          "kwargs": {k: v for k, v in kwargs.items() if k not in SELECTION_KEYS}})
        jobs.append((modality, dataset, spec, fp))
    for modality, dataset, spec, fp in jobs:
        folder = modality_paths(modality)["windows"]
        reuse = reusable_subjects(folder, fp)
        subjects = list(dataset.subject_list)
        todo = [s for s in subjects if s not in reuse]
        staged = StagedFolder(folder)
        try:
            for subject in tqdm(subjects, desc=f"data {modality}", unit="subject"):
                if subject in reuse:
                    staged.add(subject, reuse=reuse[subject])
                    continue
                windows = extract_windows(dataset, spec, [subject])
                check_windows(windows, f"{dataset.code} subject {subject}")
                staged.add(subject, windows)
            staged.commit(fp, {"dataset": dataset.code, "modality": modality})
        except BaseException:
            staged.discard()
            raise
        print(f"{modality}: {len(subjects)} subjects ({len(subjects) - len(todo)} reused, {len(todo)} computed)")


if __name__ == "__main__":
    main()
