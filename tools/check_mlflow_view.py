"""Check in a real browser that the study's MLflow experiment opens on its runs, metrics as columns.

Usage (in a project that has run the study, with Debian's ``chromium`` installed):

    python tools/check_mlflow_view.py [--params params.yaml] [--port 5077] [--screenshot docs/figures/mlflow_runs_view.png]

Starts ``biotrain ui``'s server, loads the study view in headless Chromium, and fails unless
the rendered page is MLflow's runs table (not the GenAI overview) grouped by modality, scenario
and strategy with the study's metric columns. The screenshot shows what a researcher sees.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from biotrain.tracking import default_tracking_uri
from biotrain.tracking.ui import _answers, study_url
from biotrain.tracking.views import VIEW_METRICS

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1600,1000", "--virtual-time-budget=20000"]


def _chromium(url: str, *action: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, url],
                              capture_output=True, text=True, timeout=300)
    return proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--port", type=int, default=5077)
    parser.add_argument("--screenshot", default="docs/figures/mlflow_runs_view.png")
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        print("chromium is not installed: apt-get install -y chromium", file=sys.stderr)
        return 2
    tracking = (yaml.safe_load(Path(args.params).read_text()) or {}).get("tracking") or {}
    uri = tracking.get("uri") or default_tracking_uri(Path(args.params).resolve().parent)
    base = f"http://127.0.0.1:{args.port}"
    url = study_url(uri, tracking.get("experiment", "biotrain"), base)
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--port", str(args.port), "--workers", "1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        while not _answers(base):
            if server.poll() is not None:
                print(f"mlflow ui exited with code {server.returncode}", file=sys.stderr)
                return 1
            time.sleep(1)
        dom = _chromium(url, "--dump-dom")
        problems = [f"no column {m!r}" for m in VIEW_METRICS if f">{m}<" not in dom and m not in dom]
        if "Group: modality:" not in dom:
            problems.append("runs are not grouped by modality, scenario and strategy")
        if "No data available for the selected time range" in dom:
            problems.append("the page is the GenAI overview, not the runs table")
        Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
        _chromium(url, f"--screenshot={Path(args.screenshot).resolve()}")
    finally:
        server.terminate()
        server.wait()
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    print(f"{'FAIL' if problems else 'OK'}: {url} (screenshot: {args.screenshot})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
