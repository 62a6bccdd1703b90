"""How often fp16 loses gradients, per layer, with and without the loss scale.

    python benchmarks/precision_underflow.py --run DIR [--markdown benchmarks/results/precision_underflow.md]

``DIR`` is a finished ``biotrain run`` (its ``data/windows`` and ``models/pretrained``). For each
modality, ``full`` (BatchNorm base model) and ``edge`` (GroupNorm), and every subject's base model:
one batch of 8 of that subject's first-session calibration windows, one fp32 forward/backward; per
parameter tensor and per layer output (the activation gradient the backward stores), the share of
non-zero fp32 gradient elements that an fp16 store turns into zero, at loss scale 1 and at
``precision.FP16_LOSS_SCALE``; bf16 for comparison (its exponent range is fp32's). Median and
maximum over subjects.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from biotrain.adaptation.precision import FP16_LOSS_SCALE, underflow  # noqa: E402
from biotrain.adaptation.training import as_tensor  # noqa: E402
from biotrain.data.store import load_windows  # noqa: E402
from biotrain.models.checkpoint import load_checkpoint  # noqa: E402


def gradients(model: nn.Module, X: np.ndarray, y: np.ndarray, train_mode: bool) -> dict[str, torch.Tensor]:
    """Parameter gradients and every leaf layer's output gradient of one batch (fp32)."""
    model.train(train_mode)
    outs = {}
    hooks = [m.register_full_backward_hook(lambda mod, gin, gout, n=n: outs.__setitem__(f"d({n})", gout[0].detach()))
             for n, m in model.named_modules() if not list(m.children()) and list(m.parameters())]
    loss = nn.functional.cross_entropy(model(as_tensor(X)), torch.from_numpy(np.asarray(y, dtype=np.int64)))
    loss.backward()
    for h in hooks:
        h.remove()
    return {**{n: p.grad.detach() for n, p in model.named_parameters() if p.grad is not None}, **outs}


def measure(run: Path) -> list[dict]:
    rows = []
    for modality in ("eeg", "eog"):
        w = load_windows(run / "data" / "windows" / modality)
        splits = json.loads((run / "data" / "splits" / f"{modality}.json").read_text())
        for strategy, norm in (("full", "batch"), ("edge", "group")):
            per = {}
            for fold in splits["folds"]:
                model, _ = load_checkpoint(run / "models" / "pretrained" / modality / norm / f"subject-{fold['subject']}.pt")
                idx = np.asarray(fold["day1"]["calib"][:8])
                g = gradients(model, w.X[idx], w.y[idx], strategy == "full")
                for label, prec, scale in (("fp16", "fp16", 1.0), ("fp16 scaled", "fp16", FP16_LOSS_SCALE),
                                           ("bf16", "bf16", 1.0)):
                    for name, v in underflow(g, prec, scale).items():
                        per.setdefault((name, label), []).append(v)
            for (name, label), values in per.items():
                rows.append({"modality": modality, "strategy": strategy, "tensor": name, "format": label,
                             "median": float(np.median(values)), "max": float(np.max(values))})
    return rows


def markdown(rows: list[dict], run: Path, load: tuple) -> str:
    lines = ["# fp16 gradient underflow per tensor, with and without the loss scale", "",
             f"`python benchmarks/precision_underflow.py --run {run}`, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} "
             f"UTC, load {load[0]:.2f}. One batch of 8 first-session calibration windows per subject's base model, "
             "fp32 backward; the share of non-zero gradient elements a 16-bit store turns into 0 (median / max over "
             f"subjects). Loss scale: {FP16_LOSS_SCALE:g}. Tensors with nothing lost in any format are left out.", "",
             "| modality | strategy | tensor | fp16 | fp16 scaled | bf16 |", "|---|---|---|---|---|---|"]
    table: dict = {}
    for r in rows:
        table.setdefault((r["modality"], r["strategy"], r["tensor"]), {})[r["format"]] = r
    for (modality, strategy, tensor), by in table.items():
        if all(v["max"] == 0 for v in by.values()):
            continue
        cells = [f"{100 * by[f]['median']:.2f}% / {100 * by[f]['max']:.2f}%" if f in by else "—"
                 for f in ("fp16", "fp16 scaled", "bf16")]
        lines.append(f"| {modality} | {strategy} | `{tensor}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    text = markdown(measure(args.run), args.run, os.getloadavg())
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
