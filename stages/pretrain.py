"""Stage ``pretrain``: a base model per held-out subject, modality and normalization."""

from __future__ import annotations

from biotrain.adaptation.pretraining import pretrain_folds
from biotrain.data.store import load_windows
from biotrain.io import write_json
from biotrain.params import load_study
from stages.common import read_folds, run_main, stage_args, study_paths


def main() -> None:
    args = stage_args(__doc__, "windows", "splits", "models")
    config, paths = load_study(args.params, datasets=False), study_paths(args)
    summary = []
    for modality, folds in read_folds(config, paths).items():
        w = load_windows(paths.windows_of(modality))
        model = config.data.modalities[modality].model
        # the model is built at the windows' own rate: it turns its lengths in seconds into
        # samples with it, and its checkpoint records it
        summary += pretrain_folds(w.X, w.y, len(w.class_names), folds, model.name, model.kwargs, config.norms,
                                  config.pretrain, config.seed, paths.models, modality, config.pretrain_workers,
                                  sfreq=w.sfreq,
                                  score_epochs=config.pretrain_score_epochs if "sparse" in config.strategy_names else None)
    write_json(paths.models / "summary.json", summary)


if __name__ == "__main__":
    run_main(main, "pretrain")
