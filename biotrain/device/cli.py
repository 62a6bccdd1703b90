"""``biotrain device estimate``: cost one training step on the simulated GAP9.

Wire it into the top-level CLI with ``add_subparser(subparsers)``; ``main_device(argv)`` runs
it standalone (``python -m biotrain.device.cli estimate ...``).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..adaptation.finetune import FinetuneConfig
from ..strategy_table import COSTED_STRATEGIES, PRECISIONS
from .constants import default_program, load_constants, programs
from .strategy_options import add_strategy_options, strategy_choice

MODEL_DEFAULTS = {
    # BRIEF section 3's on-device variant (no padding); --set padding=same costs the study's variant
    "mi_bminet": {"n_chans": 8, "n_times": 1900, "n_outputs": 2, "padding": "valid"},
    "epidenet": {"n_chans": 2, "n_times": 1000, "n_outputs": 11},
}
SHAPE_KEYS = {"C": "n_chans", "T": "n_times", "classes": "n_outputs", "n_chans": "n_chans",
              "n_times": "n_times", "n_outputs": "n_outputs"}


def _parse_value(text: str):
    if "," in text:
        return tuple(_parse_value(t) for t in text.split(",") if t)
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def split_sets(pairs: list[str], model_name: str) -> tuple[dict, dict]:
    """``KEY=VALUE`` pairs -> (model kwargs, device constant overrides)."""
    consts = load_constants()
    model_kw = dict(MODEL_DEFAULTS[model_name])
    overrides = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        key = key.strip()
        if key in SHAPE_KEYS:
            try:
                model_kw[SHAPE_KEYS[key]] = int(value)
            except ValueError:
                raise ValueError(f"--set {key}={value!r}: {key} expects a positive integer") from None
            if model_kw[SHAPE_KEYS[key]] < 1:
                raise ValueError(f"--set {key}={value!r}: {key} expects a positive integer")
        elif key in consts:
            overrides[key] = value
        else:
            model_kw[key] = _parse_value(value)
    load_constants(overrides)  # a bad constant fails here, named, before the step is captured (same keys in every program)
    return model_kw, overrides


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, choices=sorted(MODEL_DEFAULTS))
    p.add_argument("--strategy", required=True, choices=list(COSTED_STRATEGIES))
    add_strategy_options(p)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--micro-batch", type=int, default=None)
    p.add_argument("--accum", type=int, default=None)
    p.add_argument("--backend", default="gap9-sim", choices=["gap9-sim", "gap9-board"])
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                   help="the step's number format: bf16/fp16 stores its tensors in 2 bytes and runs kernels at "
                        "gap9.yaml's simd16_speedup_* (docs/adaptation.md says what is 16-bit)")
    p.add_argument("--program", default=None, metavar="|".join(programs()),
                   help="which program is costed: paper-toolchain (reproduces the published figures, the "
                        "toolchain's L2 im2col placement) or exported (this project's program); default: "
                        f"{default_program()} (gap9.yaml)")
    p.add_argument("--session-samples", type=int, default=None, metavar="N",
                   help="calibration windows of one session: adds energy per session and sessions per charge")
    p.add_argument("--epochs", type=int, default=FinetuneConfig().epochs,
                   help="fine-tuning epochs of a session (default: %(default)s)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", nargs="+",
                   help="model shape/arguments (C, T, classes, F1, F2, Nf, ...) or device constants (gap9.yaml keys)")
    chk = p.add_mutually_exclusive_group()
    chk.add_argument("--check", dest="check", action="store_const", const=True, default=None,
                     help="execute the plan on one flat buffer vs eager PyTorch (default: on when the step has at "
                          "most check_max_macs MACs, about a second)")
    chk.add_argument("--no-check", dest="check", action="store_const", const=False, help="skip the execution check")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Register ``device estimate`` on an argparse subparsers object."""
    device = subparsers.add_parser("device", help="on-device cost of a training step (gap9-sim backend)")
    dsub = device.add_subparsers(dest="device_command", required=True)
    est = dsub.add_parser("estimate", help="memory plan, latency and energy of one training step")
    _add_arguments(est)
    est.set_defaults(func=run_estimate)
    from .export.cli import add_commands  # device export / device run

    add_commands(dsub, split_sets)
    return device


def run_estimate(args: argparse.Namespace) -> int:
    """Run ``device estimate``; bad arguments print one error line and return 2."""
    try:
        return _run_estimate(args)
    except (ValueError, NotImplementedError) as exc:
        print(f"biotrain device: error: {exc}", file=sys.stderr)
        return 2


def _run_estimate(args: argparse.Namespace) -> int:
    import torch

    from ..models import build_model
    from .estimate import estimate_step

    torch.set_num_threads(1)
    sets = [s for group in args.sets for s in (group if isinstance(group, list) else [group])]
    model_kw, overrides = split_sets(sets, args.model)
    model_kw.setdefault("norm", "group" if args.strategy == "edge" else "batch")
    name = args.model
    try:
        model = build_model(name, **model_kw)
    except TypeError as exc:  # an unknown model argument given with --set
        raise ValueError(f"--set: {exc} (device constants are the keys of gap9.yaml)") from None
    kw = dict(batch_size=args.batch_size, micro_batch=args.micro_batch, accum=args.accum, backend=args.backend,
              constants=overrides, program=args.program, precision=args.precision)

    def peak_of(layers):  # the sparse step's peak L2 with these layers, as this estimate plans it
        return estimate_step(model, "sparse", **kw, check=False, layers=layers).peak_l2_bytes

    layers, rank, picked = strategy_choice(args, model, peak_of)
    est = estimate_step(model, args.strategy, **kw, session_samples=args.session_samples, epochs=args.epochs,
                        check=args.check, layers=layers, rank=rank)
    d = est.to_dict()
    if picked is not None:
        d["layer_selection"] = picked
    d["model_name"] = name
    d["model_args"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model_kw.items()}
    if args.json:
        print(json.dumps(d, default=str))
    else:
        print(format_table(d))
    return 1 if d.get("plan_check") and not d["plan_check"]["ok"] else 0


def _fmt(v, unit="", nd=2):
    if v is None:
        return "n/a (does not fit)"
    return f"{v:.{nd}f}{unit}"


def _band(d: dict, key: str, nd: int) -> str:
    if d.get(f"{key}_low") is None:
        return ""
    return f" ({d[f'{key}_low']:.{nd}f}-{d[f'{key}_high']:.{nd}f})"


def _session_fmt(d: dict, key: str, unit: str, band: str = "") -> str:
    if d["session"]["samples"] is None:
        return "n/a (give --session-samples)"
    return _fmt(d[key], unit, 0) + band + f" ({d['session']['samples']} samples x {d['session']['epochs']} epochs)"


def format_table(d: dict) -> str:
    rows = [
        ("model / strategy", f"{d['model_name']} / {d['strategy']} (batch {d['batch_size']} = "
                             f"{d['accum']} x micro-batch {d['micro_batch']})"),
        ("program", d["program"] + ("" if d.get("precision", "fp32") == "fp32" else
                                    f", {d['precision']} (16-bit tensors, SIMD kernel rates; no plan check)")),
        *([("trains", f"classifier + {', '.join(d['layers']) or 'no other layer'}"
            + (f" (picked under {d['layer_selection']['budget_kb']:g} kB)" if d.get("layer_selection") else ""))]
          if d.get("layers") is not None else []),
        *([("adapters", f"rank {d['rank']} beside {', '.join(d['adapted'])}")] if d.get("adapted") else []),
        ("trained params", f"{d['n_trainable']} of {d['n_parameters']}"),
        ("fits on chip", str(d["fits_on_chip"])),
        ("peak L2", f"{d['peak_l2_bytes'] / 1e6:.3f} MB (budget {d['l2_budget_bytes'] / 1e6:.3f} MB)"
                    + ("" if d.get("peak_l2_bytes_per_tile_im2col") is None else
                       f"; per-tile im2col {d['peak_l2_bytes_per_tile_im2col'] / 1e6:.3f} MB")),
        ("L2 lower bound", f"{d['lower_bound_l2_bytes'] / 1e6:.3f} MB (planner overhead {d['planner_overhead']:.3f})"),
        ("peak L1 tile", f"{d['peak_l1_bytes'] / 1e3:.1f} kB (budget {d['l1_budget_bytes'] / 1e3:.1f} kB)"),
        ("latency / step", _fmt(d["latency_ms_per_step"], " ms", 1)),
        ("throughput", _fmt(d["samples_per_s"], " samples/s", 1)),
        ("power", f"{d['power_mw']:.1f} mW ({d['power_mw_low']:.1f}-{d['power_mw_high']:.1f}, the published spread)"),
        ("energy / step", _fmt(d["energy_mj_per_step"], " mJ", 2) + _band(d, "energy_mj_per_step", 2)),
        ("energy / session", _session_fmt(d, "energy_mj_per_session", " mJ", _band(d, "energy_mj_per_session", 0))),
        ("sessions / charge", _session_fmt(d, "sessions_per_charge", "")),
        ("MAC / step", f"{d['macs_per_step'] / 1e6:.1f} M"),
        ("plan check", "not run" if not d.get("plan_check") else
         f"{'ok' if d['plan_check']['ok'] else 'FAILED'} (max rel error {d['plan_check']['max_rel_error']:.1e})"),
    ]
    w = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(w)}  {v}" for k, v in rows]
    if d.get("energy_breakdown_mj"):
        lines.append("energy / step: " + ", ".join(f"{k} {v:.3f} mJ" for k, v in d["energy_breakdown_mj"].items()))
    if d.get("l1_tiles"):
        lines.append("largest kernels: " + "; ".join(
            f"{t['op']} ({t['kernel']}) {t['n_tiles']} x {t['tile_shape']}, {t['l2_l1_bytes'] / 1e3:.0f} kB moved"
            for t in d["l1_tiles"][:3]))
    lines.append("memory at peak: " + ", ".join(f"{k} {v / 1e3:.0f} kB" for k, v in d["breakdown"].items()))
    if not d["fits_on_chip"]:
        lines.append(d["message"])
        lines.append("dominant tensors: " + ", ".join(f"{t['name']} ({t['kind']}, {t['bytes'] / 1e3:.0f} kB)"
                                                    for t in d["dominant_tensors"][:5]))
    return "\n".join(lines)


def main_device(argv: list[str] | None = None) -> int:
    """``biotrain device ...`` without the top-level CLI (argv excludes the word ``device``)."""
    parser = argparse.ArgumentParser(prog="biotrain")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subparser(sub)
    args = parser.parse_args(["device", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main_device())
