"""Stage ``data``: recordings through MOABB -> windows of T samples with metadata."""

from __future__ import annotations

from tqdm import tqdm

from biotrain.data.datasets import make_dataset
from biotrain.data.store import save_windows
from biotrain.data.windows import WindowSpec, check_window_fits, concat_windows, extract_windows
from stages.common import load_params, modality_paths, stage_args


def main() -> None:
    params = load_params(stage_args(__doc__).params)
    data = params["data"]
    jobs = []
    for modality in data["modalities"]:  # check every modality before loading anything
        cfg = data[modality]
        spec = WindowSpec(modality=modality, sfreq=float(cfg["sfreq"]), n_times=int(cfg["n_times"]),
                          fmin=float(cfg["fmin"]), fmax=float(cfg["fmax"]), tmin=float(cfg["tmin"]),
                          channels=cfg.get("channels"), events=cfg.get("events"))
        kwargs = {**(data["dataset"].get("kwargs") or {}), **(cfg.get("dataset_kwargs") or {})}
        dataset = make_dataset(data["dataset"]["name"], kwargs, modality)
        check_window_fits(dataset, spec)
        jobs.append((modality, dataset, spec))
    for modality, dataset, spec in jobs:
        parts = [extract_windows(dataset, spec, [s]) for s in tqdm(dataset.subject_list, desc=f"data {modality}", unit="subject")]
        windows = concat_windows(parts)
        save_windows(modality_paths(modality)["windows"], windows)
        print(f"{modality}: {windows.X.shape[0]} windows of {windows.X.shape[1]} x {windows.X.shape[2]} "
              f"from {len(parts)} subjects, classes {windows.class_names}")


if __name__ == "__main__":
    main()
