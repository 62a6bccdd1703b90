"""Stage ``recordings``: the content fingerprint of every subject's recording files, for DVC.

DVC only sees files listed in ``dvc.yaml``, and recordings live outside the project (a folder
named in params, MOABB's download cache). This stage runs on every ``dvc repro``
(``always_changed``) and writes ``data/recordings.json``, the SHA-256 of each subject's files
(kept by size and mtime, so unchanged files are not re-read). The ``data`` stage depends on it: a
changed, added or removed recording changes this file, DVC reruns ``data``, and ``data`` recomputes
exactly the subjects whose files changed. Nothing changed: the file is identical and DVC skips
everything downstream.
"""

from __future__ import annotations

import os
from pathlib import Path

from biotrain.data.datasets import make_dataset
from biotrain.data.sources import DigestCache, subject_sources
from biotrain.io import write_json
from biotrain.params import load_study
from stages.common import run_main, stage_args
from stages.data import DIGESTS


def main() -> None:
    args = stage_args(__doc__, "recordings")
    data = load_study(args.params).data
    if data.cache_dir:
        os.environ["MNE_DATA"] = str(Path(data.cache_dir).expanduser().resolve())
    cache = DigestCache(DIGESTS)
    index = {}
    for modality, cfg in data.modalities.items():
        dataset = make_dataset(data.dataset, cfg.dataset_kwargs, modality)
        sources = subject_sources(dataset, list(dataset.subject_list), cache)
        index[modality] = {str(s): files for s, files in sources.items()}
    cache.save()
    write_json(args.recordings, index)
    n_files = sum(len(f) for m in index.values() for f in m.values())
    print(f"recordings: {n_files} file(s) fingerprinted for {sum(len(m) for m in index.values())} subject-modalities")


if __name__ == "__main__":
    run_main(main, "recordings")
