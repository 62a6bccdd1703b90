"""Where a study's files live, as the entry point was told (``dvc.yaml`` names them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..adaptation.pretraining import pretrained_path


@dataclass(frozen=True)
class StudyPaths:
    """The folders one modality's files flow through, stage to stage (one subfolder or file per modality)."""

    windows: Path = Path("data/windows")
    splits: Path = Path("data/splits")
    models: Path = Path("models/pretrained")

    def windows_of(self, modality: str) -> Path:
        return Path(self.windows) / modality

    def splits_of(self, modality: str) -> Path:
        return Path(self.splits) / f"{modality}.json"

    def pretrained(self, modality: str, norm: str, subject: int) -> Path:
        """The base model that never saw ``subject``."""
        return pretrained_path(self.models, modality, norm, subject)
