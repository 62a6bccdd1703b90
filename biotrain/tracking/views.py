"""How the study opens in MLflow's UI: on its runs, grouped, with the study's metrics as columns.

MLflow 3 opens an experiment on its GenAI overview (traces) unless told it holds model training,
and shows runs collapsed under their parent with no metric columns. Both are set from data the
UI reads: the experiment tag ``mlflow.experimentKind`` and a shared view, the experiment tag
``mlflow.sharedViewState.<key>`` that ``?viewStateShareKey=<key>`` in the page address loads.
"""

from __future__ import annotations

import json

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
VIEW_KEY = "biotrain-study"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"

# what a researcher compares: which run it is, then accuracy, then what it costs on the chip
VIEW_TAGS = ("modality", "scenario", "strategy", "subject", "session", "seed")
VIEW_METRICS = ("acc_before", "acc_after", "gain", "device_peak_l2_bytes", "device_samples_per_s",
                "device_energy_mj_per_sample", "device_fits_on_chip")
GROUP_BY = ("modality", "scenario", "strategy")


def _column(kind: str, key: str) -> str:
    """The UI's own column id: ``tags.`key```, ``metrics.`key```."""
    return f"{kind}.`{key}`"


def study_view_state() -> dict:
    """The shared view: child runs grouped by modality, scenario and strategy (group rows show the
    mean), the study's tags and metrics as columns, newest first."""
    return {
        "searchFilter": "",
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "lifecycleFilter": "Active",
        "selectedColumns": [_column("attributes", "Run Name")]
        + [_column("metrics", m) for m in VIEW_METRICS] + [_column("tags", t) for t in VIEW_TAGS],
        "groupBy": {"aggregateFunction": "average",
                    "groupByKeys": [{"mode": "tag", "groupByData": key} for key in GROUP_BY]},
        "groupsExpanded": {},
    }


def ensure_study_view(client, experiment_id: str, tags: dict | None = None) -> None:
    """Mark the experiment as model training and store the study view (idempotent).

    ``tags`` are the experiment's current tags, when the caller already has them.
    """
    tags = tags if tags is not None else client.get_experiment(experiment_id).tags
    if tags.get(EXPERIMENT_KIND_TAG) != TRAINING_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    state = json.dumps(study_view_state(), sort_keys=True)
    if tags.get(VIEW_TAG) != state:
        client.set_experiment_tag(experiment_id, VIEW_TAG, state)


def runs_page_url(base_url: str, experiment_id: str) -> str:
    """The address that opens the experiment on its runs, in the study view."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}")
