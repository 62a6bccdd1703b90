"""``biotrain ui``: MLflow's UI on the study's store, opened on the study view."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from mlflow import MlflowClient

from .views import ensure_study_view, runs_page_url


def study_url(uri: str, experiment: str, base_url: str) -> str:
    """The study view's address, after making sure the experiment carries the view."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise LookupError(f"no MLflow experiment {experiment!r} in {uri} yet: run the study first (`biotrain run`)")
    ensure_study_view(client, exp.experiment_id, exp.tags)
    return runs_page_url(base_url, exp.experiment_id)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def serve(uri: str, experiment: str, host: str = "127.0.0.1", port: int = 5000) -> int:
    """Start ``mlflow ui`` on ``uri``, print the study view's address, stop on Ctrl-C.

    No start-up time limit: on a loaded machine the server may take a minute to answer.
    """
    base = f"http://{host}:{port}"
    url = study_url(uri, experiment, base)
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--host", host, "--port", str(port), "--workers", "1"])
    try:
        print(f"starting MLflow on {base} ...", flush=True)
        while not _answers(base):
            if server.poll() is not None:
                print(f"mlflow ui exited with code {server.returncode} (is port {port} in use? try --port)", file=sys.stderr)
                return 1
            time.sleep(1)
        print(f"the study's runs: {url}\n(Ctrl-C stops the server)", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()
