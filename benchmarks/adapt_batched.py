"""K tasks as one computation (``adapt_many``) against K sequential fast-loop ``adapt`` calls.

    python benchmarks/adapt_batched.py --epochs 10 --repeats 2 --markdown benchmarks/results/adapt_batched.md

Per model x strategy x K: K models of one architecture with their own initial weights (different
subjects), their own random windows of the default cohort's shapes (see ``adapt_loop.py``) and
seeds 0..K-1. Sequential and batched run interleaved (alternating which goes first), one torch
thread; the ratio is taken per repeat. Equivalence: the largest per-tensor relative weight
difference over the K tasks, and whether every task's predictions on 32 test windows agree.
``adapt_many(force=True)`` is timed, so combinations that ``batching_pays`` excludes are measured too.
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

from benchmarks.adapt_loop import cohort_shapes  # noqa: E402
from biotrain.adaptation import FinetuneConfig, adapt  # noqa: E402
from biotrain.strategy_table import NORM_OF  # noqa: E402
from biotrain.adaptation.batched import adapt_many, batching_pays  # noqa: E402
from biotrain.adaptation.training import as_tensor  # noqa: E402
from biotrain.models import build_model  # noqa: E402


def _predictions(model, X):
    model.eval()
    with torch.no_grad():
        return model(as_tensor(X)).argmax(1)


# sparse: the pick most of the default study's subjects share (results/adaptation.csv, column `layers`)
SPARSE_PICKS = {"eeg": ("spatial", "depthwise", "pointwise"), "eog": ("block2", "block3", "spatial", "mix")}


def measure(shapes: dict, strategies: list[str], ks: list[int], epochs: int, repeats: int) -> list[dict]:
    rows = []
    for modality, (name, kwargs, C, T, n_classes, n) in shapes.items():
        for strategy in strategies:
            cfg = FinetuneConfig(epochs=epochs, sparse_layers=SPARSE_PICKS[modality] if strategy == "sparse" else None)
            for K in ks:
                rng = np.random.default_rng(K)
                Xs = [rng.standard_normal((n, C, T)).astype(np.float32) for _ in range(K)]
                ys = [rng.integers(0, n_classes, n) for _ in range(K)]
                Xtest = rng.standard_normal((32, C, T)).astype(np.float32)
                bases = []
                for k in range(K):
                    torch.manual_seed(k)
                    bases.append(build_model(name, C, T, n_classes, NORM_OF[strategy], **kwargs))
                adapt_many([copy.deepcopy(b) for b in bases[:2]], [X[:16] for X in Xs[:2]], [y[:16] for y in ys[:2]],
                           strategy, FinetuneConfig(epochs=1, sparse_layers=cfg.sparse_layers), [0, 1], force=True)  # warm-up
                times, models = {"sequential": [], "batched": []}, {}
                for r in range(repeats):
                    for side in (("sequential", "batched") if r % 2 == 0 else ("batched", "sequential")):
                        ms = [copy.deepcopy(b) for b in bases]
                        t0 = time.perf_counter()
                        if side == "sequential":
                            for m, X, y, s in zip(ms, Xs, ys, range(K)):
                                adapt(m, X, y, strategy, cfg, s)
                        else:
                            adapt_many(ms, Xs, ys, strategy, cfg, list(range(K)), force=True)
                        times[side].append(time.perf_counter() - t0)
                        models[side] = ms
                ratios = [a / b for a, b in zip(times["sequential"], times["batched"])]
                worst = max(((a - b).norm() / b.norm().clamp_min(1e-30)).item()
                            for mb, ms in zip(models["batched"], models["sequential"])
                            for a, b in zip(mb.state_dict().values(), ms.state_dict().values()) if b.is_floating_point())
                same_pred = all(torch.equal(_predictions(mb, Xtest), _predictions(ms, Xtest))
                                for mb, ms in zip(models["batched"], models["sequential"]))
                rows.append({"modality": modality, "model": name, "strategy": strategy, "K": K, "n_calib": n,
                             "seq_med": statistics.median(times["sequential"]), "bat_med": statistics.median(times["batched"]),
                             "ratio": statistics.median(ratios), "range": (min(ratios), max(ratios)),
                             "min_over_min": min(times["sequential"]) / min(times["batched"]),
                             "max_rel": worst, "same_pred": same_pred,
                             "pays": batching_pays(bases[0], strategy)})
                print(f"{modality} {strategy} K={K}: sequential {rows[-1]['seq_med']:.2f} s, batched {rows[-1]['bat_med']:.2f} s, "
                      f"{rows[-1]['ratio']:.2f}x, max rel {worst:.1e}, same predictions {same_pred}", flush=True)
    return rows


def markdown(rows, args, load_before, load_after, seconds) -> str:
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [
        "# Batched fine-tuning of K tasks (`adapt_many`) against K sequential fast-loop calls", "",
        f"Produced by `python benchmarks/adapt_batched.py --epochs {args.epochs} --repeats {args.repeats} --ks {args.ks} "
        f"--strategies {args.strategies}` on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC (repo at {sha}), {seconds:.0f} s.", "",
        f"**Machine load** (1/5/15-min load average, {os.cpu_count()} cores shared with other jobs): before "
        f"{' / '.join(f'{v:.2f}' for v in load_before)}, after {' / '.join(f'{v:.2f}' for v in load_after)}. "
        "Ratios are per repeat, the two sides run back to back (alternating which goes first).", "",
        "| modality | model | strategy | K | n_calib | K sequential s (median) | batched s (median) | speed-up (median) "
        "| range | min/min | max rel weight diff | same test predictions | `batching_pays` |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["range"]
        lines.append(f"| {r['modality']} | {r['model']} | {r['strategy']} | {r['K']} | {r['n_calib']} | {r['seq_med']:.2f} "
                     f"| {r['bat_med']:.2f} | **{r['ratio']:.2f}x** | {lo:.2f}-{hi:.2f}x | {r['min_over_min']:.2f}x "
                     f"| {r['max_rel']:.1e} | {'yes' if r['same_pred'] else 'NO'} | {'yes' if r['pays'] else 'no'} |")
    lines += [
        "",
        f"Configuration: {args.epochs} epochs (the study runs 30; both sides scale alike with epochs), SGD momentum 0.9, "
        "lr 5e-3, weight decay 1e-3, cosine, batch 8, one torch thread, the fast loop on the sequential side. "
        "Random windows of the default cohort's shapes (params.yaml); each task its own initial weights and data. "
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--ks", default="8,16")
    ap.add_argument("--strategies", default="edge,last_layer")
    ap.add_argument("--modalities", default="eog,eeg")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    shapes = {m: s for m, s in cohort_shapes(args.params).items() if m in args.modalities.split(",")}
    shapes = {m: shapes[m] for m in args.modalities.split(",") if m in shapes}
    load_before, t0 = os.getloadavg(), time.perf_counter()
    rows = measure(shapes, args.strategies.split(","), [int(k) for k in args.ks.split(",")], args.epochs, args.repeats)
    text = markdown(rows, args, load_before, os.getloadavg(), time.perf_counter() - t0)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
