"""Pipeline stages: one thin script per ``dvc.yaml`` stage (``python -m stages.<name>``)."""
