"""The fine-tuning loop: the reference loop (``host_loop="reference"``) against the fast one, per strategy and modality.

    python benchmarks/adapt_loop.py                           # 30 epochs, 3 repeats
    python benchmarks/adapt_loop.py --repeats 2 --markdown benchmarks/results/adapt_loop.md

Shapes are the default cohort's (params.yaml): EEG windows (n, 8, 400) into MI-BMINet with
``Nf: 64, Nf2: 8``, 2 classes; EOG windows (n, 2, 1000) into EpiDeNet, 11 classes; ``n`` the
calibration part of one session (``calib_fraction`` x trials per class x classes). The data are
random windows of those shapes: timing does not depend on the values. One torch thread (as every
adaptation task runs). The two loops run interleaved (alternating which goes first), each from a
copy of the same model; the ratio is taken per repeat, so machine load hits both sides alike.
Also reports whether the two loops' final weights agree (bit-exact, or the largest relative
difference of a parameter tensor).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from biotrain.adaptation import FinetuneConfig, adapt  # noqa: E402
from biotrain.models import build_model  # noqa: E402

STRATEGY_NORM = {"last_layer": "batch", "full": "batch", "edge": "group"}
SHARE = {"edge": 0.58, "full": 0.32, "last_layer": 0.11}  # share of the adapt stage's compute (reference loop)


def cohort_shapes(params_path: Path) -> dict:
    """{modality: (model name, kwargs, n_chans, n_times, n_classes, n_calib)} from params.yaml."""
    from biotrain.params import load_study

    data = load_study(params_path).data
    n_chans = {"eeg": 8, "eog": 2}
    n_classes = {m: len(data.modalities[m].window.events or []) or 11 for m in data.modalities}  # eog: all 11
    out = {}
    for m, cfg in data.modalities.items():  # the model kwargs carry the window's rate (kernels in seconds)
        n_calib = int(data.calib_fraction * cfg.dataset_kwargs["trials_per_class"] * n_classes[m])
        out[m] = (cfg.model.name, {**cfg.model.kwargs, "sfreq": cfg.window.sfreq}, n_chans[m], cfg.window.n_times,
                  n_classes[m], n_calib)
    return out


def weight_difference(a: dict, b: dict) -> str:
    """'bit-exact', or the largest per-tensor relative difference (which tensor) and the whole model's."""
    if all(torch.equal(a[k], b[k]) for k in b):
        return "bit-exact"
    rel = {k: ((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)).item() for k in b if b[k].is_floating_point()}
    worst = max(rel, key=rel.get)
    flat = [torch.cat([t[k].flatten() for k in rel]) for t in (a, b)]
    return (f"max rel diff {rel[worst]:.1e} ({worst}, norm {b[worst].norm():.1e}); "
            f"whole model {((flat[0] - flat[1]).norm() / flat[1].norm()).item():.1e}")


def measure(shapes: dict, strategies: list[str], epochs: int, repeats: int) -> list[dict]:
    rows = []
    for modality, (name, kwargs, C, T, K, n) in shapes.items():
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((n, C, T)).astype(np.float32), rng.integers(0, K, n)
        for strategy in strategies:
            torch.manual_seed(0)
            base = build_model(name, C, T, K, STRATEGY_NORM[strategy], **kwargs)
            adapt(copy.deepcopy(base), X[:16], y[:16], strategy, FinetuneConfig(epochs=1), 0)  # warm-up
            times = {"reference": [], "fast": []}
            states = {}
            for r in range(repeats):
                for loop in (("reference", "fast") if r % 2 == 0 else ("fast", "reference")):
                    model = copy.deepcopy(base)
                    t0 = time.perf_counter()
                    adapt(model, X, y, strategy, FinetuneConfig(epochs=epochs, host_loop=loop), seed=0)
                    times[loop].append(time.perf_counter() - t0)
                    states[loop] = model.state_dict()
            ratios = [a / b for a, b in zip(times["reference"], times["fast"])]
            rows.append({
                "modality": modality, "model": name, "strategy": strategy, "n_calib": n,
                "ref_min": min(times["reference"]), "ref_med": statistics.median(times["reference"]),
                "fast_min": min(times["fast"]), "fast_med": statistics.median(times["fast"]),
                "ratio_min_over_min": min(times["reference"]) / min(times["fast"]),
                "ratio_median": statistics.median(ratios), "ratio_range": (min(ratios), max(ratios)),
                "weights": weight_difference(states["fast"], states["reference"]),
            })
            print(f"{modality} {strategy}: reference {rows[-1]['ref_med']:.2f} s, fast {rows[-1]['fast_med']:.2f} s, "
                  f"ratio {rows[-1]['ratio_median']:.2f}x ({rows[-1]['weights']})", flush=True)
    return rows


def overall(rows: list[dict], modality: str) -> float | None:
    """Speed-up of a modality's whole adapt compute, weighting strategies by the issue's shares."""
    ratio = {r["strategy"]: r["ratio_median"] for r in rows if r["modality"] == modality}
    if set(ratio) != set(SHARE):
        return None
    return sum(SHARE.values()) / sum(SHARE[s] / ratio[s] for s in SHARE)


def markdown(rows: list[dict], args, load_before, load_after, seconds) -> str:
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [
        "# Fine-tuning loop: reference against fast", "",
        f"Produced by `python benchmarks/adapt_loop.py --epochs {args.epochs} --repeats {args.repeats}` on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC (repo at {sha}), {seconds:.0f} s.", "",
        f"**Machine load** (1/5/15-min load average, {os.cpu_count()} cores shared with other jobs): before "
        f"{' / '.join(f'{v:.2f}' for v in load_before)}, after {' / '.join(f'{v:.2f}' for v in load_after)}. "
        "Absolute seconds are noisy under that load; the ratios are taken per repeat from the two loops run "
        "back to back (alternating which goes first).", "",
        "| modality | model | strategy | n_calib | reference s (min / median) | fast s (min / median) "
        "| tasks/min ratio (median of repeats) | range | min/min | final weights |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["ratio_range"]
        lines.append(f"| {r['modality']} | {r['model']} | {r['strategy']} | {r['n_calib']} | {r['ref_min']:.2f} / {r['ref_med']:.2f} "
                     f"| {r['fast_min']:.2f} / {r['fast_med']:.2f} | **{r['ratio_median']:.2f}x** | {lo:.2f}-{hi:.2f}x "
                     f"| {r['ratio_min_over_min']:.2f}x | {r['weights']} |")
    lines += [""]
    for modality in ("eeg", "eog"):
        o = overall(rows, modality)
        if o is not None:
            lines.append(f"- {modality}: whole adapt compute {o:.2f}x faster, weighting strategies by the issue's shares "
                         f"of the reference loop's compute (edge {SHARE['edge']:.0%}, full {SHARE['full']:.0%}, "
                         f"last_layer {SHARE['last_layer']:.0%}).")
    lines += [
        "",
        "What the fast loop does (`biotrain/adaptation/fast_loop.py`): `last_layer` computes the frozen backbone's "
        "classifier input once per `adapt` call (in chunks of the step's batch size: EpiDeNet's convolutions round "
        "differently at batch 1 and 8) and trains the classifier alone, bit-exact; `edge` on a per-sample model "
        "(GroupNorm, no BatchNorm) runs one forward/backward over the batch of 8 instead of 8 micro-batches of 1: "
        "the same gradient up to float summation order; `full` is unchanged, so its row runs the same code on "
        "both sides and its ratio shows the measurement noise under the load.", "",
        f"Configuration: {args.epochs} epochs, SGD momentum 0.9, lr 5e-3, weight decay 1e-3, cosine, batch 8 "
        "(edge: micro-batch 1 in the reference loop), one torch thread, random windows of the default cohort's "
        "shapes (params.yaml), seed 0. "
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strategies", default="last_layer,full,edge")
    ap.add_argument("--modalities", default="eeg,eog")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--markdown", type=Path, default=None, help="write the table here (e.g. benchmarks/results/adapt_loop.md)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    shapes = {m: s for m, s in cohort_shapes(args.params).items() if m in args.modalities.split(",")}
    load_before, t0 = os.getloadavg(), time.perf_counter()
    rows = measure(shapes, args.strategies.split(","), args.epochs, args.repeats)
    seconds, load_after = time.perf_counter() - t0, os.getloadavg()
    text = markdown(rows, args, load_before, load_after, seconds)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
