"""Stage ``split``: day-1 (leave-one-subject-out) and longitudinal splits, 80/20 in time order."""

from __future__ import annotations

from biotrain.data.split import make_splits
from biotrain.data.store import load_windows
from biotrain.data.validate import check_folds, check_windows
from biotrain.io import write_json
from stages.common import run_main, load_params, modality_paths, stage_args


def main() -> None:
    params = load_params(stage_args(__doc__).params)
    for modality in params["data"]["modalities"]:
        paths = modality_paths(modality)
        w = load_windows(paths["windows"])
        check_windows(w, modality)
        folds = make_splits(w.meta, params["split"]["calib_fraction"])
        check_folds(folds, w.y, modality)
        write_json(paths["splits"], {"modality": modality, "calib_fraction": params["split"]["calib_fraction"], "folds": folds})
        print(f"{modality}: {len(folds)} folds, {1 + len(folds[0]['longitudinal'])} sessions per subject")


if __name__ == "__main__":
    run_main(main, "split")
