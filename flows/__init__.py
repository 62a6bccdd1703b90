"""Prefect flows: orchestration wiring only; the work is done by the ``biotrain`` library."""
