"""Stage ``split``: day-1 (leave-one-subject-out) and longitudinal splits, 80/20 in time order."""

from __future__ import annotations

from biotrain.data.split import make_splits
from biotrain.data.store import load_windows
from biotrain.data.validate import check_folds, check_windows
from biotrain.io import write_json
from biotrain.params import load_study
from stages.common import run_main, stage_args, study_paths


def main() -> None:
    args = stage_args(__doc__, "windows", "splits")
    data, paths = load_study(args.params, datasets=False).data, study_paths(args)
    for modality in data.modalities:
        w = load_windows(paths.windows_of(modality))
        check_windows(w, modality)
        folds = make_splits(w.meta, data.calib_fraction)
        check_folds(folds, w.y, modality)
        write_json(paths.splits_of(modality), {"modality": modality, "calib_fraction": data.calib_fraction, "folds": folds})
        print(f"{modality}: {len(folds)} folds, {1 + len(folds[0]['longitudinal'])} sessions per subject")


if __name__ == "__main__":
    run_main(main, "split")
