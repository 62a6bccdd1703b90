"""Stage ``pretrain``: a base model per held-out subject, modality and normalization."""

from __future__ import annotations

import json

from biotrain.adaptation import NORM_OF, PretrainConfig
from biotrain.adaptation.pretraining import pretrain_folds
from biotrain.data.store import load_windows
from biotrain.io import write_json
from stages.common import run_main, load_params, modality_paths, stage_args


def main() -> None:
    params = load_params(stage_args(__doc__).params)
    p = params["pretrain"]
    cfg = PretrainConfig(epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], weight_decay=p["weight_decay"])
    norms = sorted({NORM_OF[s] for s in params["adapt"]["strategies"]})
    summary = []
    for modality in params["data"]["modalities"]:
        paths = modality_paths(modality)
        w = load_windows(paths["windows"])
        with open(paths["splits"]) as fh:
            folds = json.load(fh)["folds"]
        model = params["models"][modality]
        # the windows' rate goes to the model with its arguments: the model turns its lengths in
        # seconds into samples with it, and its checkpoint records it
        model_kwargs = {**(model.get("kwargs") or {}), "sfreq": w.sfreq}
        summary += pretrain_folds(w.X, w.y, len(w.class_names), folds, model["name"], model_kwargs,
                                  norms, cfg, params["seed"], paths["models_dir"], modality, p["workers"])
    write_json("models/pretrained/summary.json", summary)


if __name__ == "__main__":
    run_main(main, "pretrain")
