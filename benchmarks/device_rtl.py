"""Fit the `exported` program's kernel costs on cycles measured on the CV32E40P RTL.

    python benchmarks/device_rtl.py            # measure missing shapes, fit, rewrite gap9.yaml + the table
    python benchmarks/device_rtl.py --refit    # only refit from benchmarks/results/device_rtl.json
    python benchmarks/device_rtl.py --no-write # fit and report, leave gap9.yaml alone

Each shape is one step of strategy ``full`` (every forward and backward kind), exported with
``export_project`` and run with ``run_project(..., "rtl")``: measured cycles per C kind. Per shape
and C kind, ``biotrain.device.rtl.fit.step_features`` gives the cost model's features (MACs,
elements, inner loops, calls) of the very calls the program makes. Per C kind a non-negative
linear model is fitted on the FIT shapes; HELD shapes (and the reference shapes) are predictions.
Measurements are cached per shape in benchmarks/results/device_rtl.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import tempfile
import time
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from biotrain.device.constants import CONSTANTS_FILE, load_constants  # noqa: E402
from biotrain.device.export.codegen import KINDS  # noqa: E402
from biotrain.device.export.project import export_project, plan_step  # noqa: E402
from biotrain.device.export.runner import missing_tools, run_project  # noqa: E402
from biotrain.device.rtl import fit  # noqa: E402
from biotrain.models import build_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "device_rtl.json"
TABLE = RESULTS / "device_rtl.md"


def mi(C, T, F1, F2, Nf, Nf2, batch=2, padding="same"):
    return {"name": "mi_bminet", "n_chans": C, "n_times": T, "n_outputs": 2, "norm": "batch",
            "kwargs": dict(F1=F1, F2=F2, Nf=Nf, Nf2=Nf2, padding=padding), "batch": batch}


def epi(C, T, filters, batch=2):
    return {"name": "epidenet", "n_chans": C, "n_times": T, "n_outputs": 3, "norm": "batch",
            "kwargs": dict(filters=list(filters)), "batch": batch}


# the fit set: channels, filters, kernel lengths and time varied; *_t2 doubles the time of its pair
FIT = {
    "mi_c4_t64": mi(4, 64, 4, 4, 8, 4),
    "mi_c4_t128": mi(4, 128, 4, 4, 8, 4),
    "mi_c8_f4x8": mi(8, 64, 4, 8, 8, 4),
    "mi_c2_f8x4_k16": mi(2, 96, 8, 4, 16, 8),
    "mi_c4_f2x8_k4": mi(4, 64, 2, 8, 4, 8),
    "epi_c2_f222": epi(2, 480, (2, 2, 2)),
    "epi_c2_f222_t960": epi(2, 960, (2, 2, 2)),
    "epi_c4_f242": epi(4, 480, (2, 4, 2)),
    "epi_c2_f424": epi(2, 480, (4, 2, 4)),
}
# held out of the fit (the test's shape is tests/device/test_device_rtl_fit.py's, also here)
HELD = {
    "mi_c6_f4x6_k8": mi(6, 96, 4, 6, 8, 8),
    "epi_c3_f324": epi(3, 520, (3, 2, 4)),
}
# reference shapes, one sample: EpiDeNet as the device CLI's (C=2, T=1000, filters 4,16,16);
# MI-BMINet with its reference channels, filters and kernels (C=8, F1=F2=32, Nf=128, Nf2=16, valid)
# but time scaled from 1900 to 320 (one sample at T=1900 is ~2000 s of simulation here)
REFERENCE = {
    "ref_epidenet": epi(2, 1000, (4, 16, 16), batch=1),
    "ref_mi_bminet_t320": mi(8, 320, 32, 32, 128, 16, batch=1, padding="valid"),
}
SHAPES = {**FIT, **HELD, **REFERENCE}


def build(spec):
    torch.manual_seed(0)
    return build_model(spec["name"], spec["n_chans"], spec["n_times"], spec["n_outputs"], spec["norm"],
                       **{k: tuple(v) if isinstance(v, list) else v for k, v in spec["kwargs"].items()})


def features(spec) -> dict:
    _, graph, plan = plan_step(build(spec), "full", spec["batch"])
    return fit.step_features(graph, plan)


EXPORT_LOCK = threading.Lock()  # tracing (make_fx) is not thread-safe: export one at a time, simulate in parallel


def measure(name, spec) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / name
        mspec = {k: spec[k] for k in ("name", "n_chans", "n_times", "n_outputs", "norm", "kwargs")}
        with EXPORT_LOCK:
            export_project(out, build(spec), "full", model_spec=mspec, batch_size=spec["batch"], steps=1)
        t0 = time.time()
        res = run_project(out, "rtl", steps=1)
        wall = time.time() - t0
    return {"spec": spec, "ok": bool(res["ok"]), "max_rel_err": res["max_rel_err"],
            "cycles_per_step": res["cycles_per_step"][0], "cycles_by_kind": res["cycles_per_step_by_kind"],
            "instructions_by_kind": res["instructions_per_step_by_kind"], "wall_s": round(wall, 1),
            "load": os.getloadavg()}


def load_cache() -> dict:
    return json.loads(CACHE.read_text()) if CACHE.exists() else {}


def run_measurements(names, jobs: int) -> dict:
    cache = load_cache()
    todo = [n for n in names if n not in cache or cache[n]["spec"] != SHAPES[n]]
    if todo and missing_tools("rtl"):
        raise SystemExit(missing_tools("rtl"))

    def one(n):
        try:
            r = measure(n, SHAPES[n])
        except Exception:
            traceback.print_exc()
            return n, None
        print(f"{n}: {r['cycles_per_step']:,} cycles, {r['wall_s']} s, ok={r['ok']}", flush=True)
        return n, r

    with ThreadPoolExecutor(max_workers=jobs) as ex:
        for n, r in ex.map(one, todo):
            if r is None:
                continue
            cache = load_cache()
            cache[n] = r
            RESULTS.mkdir(parents=True, exist_ok=True)
            CACHE.write_text(json.dumps(cache, indent=1))
    return load_cache()


def fit_all(cache: dict, feats: dict, fit_names) -> dict:
    coefs = {}
    for k in KINDS:
        rows = [feats[n][k] for n in fit_names]
        cyc = [cache[n]["cycles_by_kind"][k] for n in fit_names]
        coefs[k] = fit.fit_kind(k, rows, cyc)
    return coefs


def constants_from(coefs: dict) -> dict:
    out = {}
    for k, cf in coefs.items():
        out.update(fit.coefficients_to_constants(k, cf))
    return out


def rewrite_yaml(values: dict) -> None:
    """Rewrite the exported block's values in gap9.yaml, keeping comments; new keys are appended."""
    text = CONSTANTS_FILE.read_text().splitlines()
    start = next(i for i, ln in enumerate(text) if ln.strip().startswith("exported:"))
    end = start + 1
    while end < len(text) and (text[end].startswith("    ") or not text[end].strip()):
        end += 1
    while not text[end - 1].strip():
        end -= 1
    src = "# measured: RTL fit, benchmarks/device_rtl.py"
    seen = set()
    for i in range(start + 1, end):
        m = re.match(r"^(\s+)(\w+):(\s*)(\S+)(\s*)(#.*)?$", text[i])
        if m and m.group(2) in values:
            key = m.group(2)
            seen.add(key)
            head = f"{m.group(1)}{key}: {fmt(values[key])}"
            text[i] = f"{head:<41} {src}"
    new = [f"{'    ' + k + ': ' + fmt(v):<41} {src}" for k, v in values.items() if k not in seen]
    text[end:end] = new
    CONSTANTS_FILE.write_text("\n".join(text) + "\n")


def fmt(v: float) -> str:
    """A YAML-safe number (PyYAML reads 1e-05 as a string): 4 significant digits, no exponent."""
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:.0f}"
    return f"{v:.{max(0, 3 - int(np.floor(np.log10(abs(v)))))}f}"


def pct(a, b):
    return 100.0 * (a - b) / b if b else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--refit", action="store_true", help="no simulation: refit the cached measurements")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite gap9.yaml")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="measure only these shapes")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = args.only or list(SHAPES)
    cache = load_cache() if args.refit else run_measurements(names, args.jobs)
    have = [n for n in SHAPES if n in cache]
    feats = {n: features(SHAPES[n]) for n in have}
    fit_names = [n for n in FIT if n in cache]
    coefs = fit_all(cache, feats, fit_names)
    values = constants_from(coefs)
    c = {**load_constants(program="exported"), **values}
    if not args.no_write:
        rewrite_yaml(values)
    estimates = {n: estimate(SHAPES[n], c) for n in have} if not args.no_write else None
    lines = report(cache, feats, fit_names, coefs, c, have, estimates)
    TABLE.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def compact_table(cache, feats, c, names) -> list[str]:
    """Held-out and reference shapes: per kind (at least 1 % of the step) RTL / model / error."""
    L = ["## Held-out and reference shapes (not in the fit)", "",
         "| shape | " + " | ".join(KINDS) + " | step |", "|---" * (len(KINDS) + 2) + "|"]
    for n in names:
        r, pred = cache[n], fit.predict_by_kind(feats[n], c)
        tot = r["cycles_per_step"]
        cells = []
        for k in KINDS:
            m = r["cycles_by_kind"][k]
            cells.append(f"{m / 1e3:,.0f}k / {pred[k] / 1e3:,.0f}k / {pct(pred[k], m):+.1f} %" if m >= 0.01 * tot else "")
        sp = r["spec"]
        label = (f"`{n}` {sp['name']} C={sp['n_chans']} T={sp['n_times']} "
                 + ",".join(f"{k}={v}" for k, v in sp["kwargs"].items() if k != "padding") + f" batch {sp['batch']}")
        L.append(f"| {label} | " + " | ".join(cells) + f" | {tot / 1e6:.2f} M / {sum(pred.values()) / 1e6:.2f} M / "
                 f"{pct(sum(pred.values()), tot):+.1f} % |")
    return L + [""]


def estimate(spec, c) -> dict:
    from biotrain.device.estimate import estimate_step

    over = {k: v for k, v in c.items() if k in load_constants(program="exported") and k != "program"}
    est = estimate_step(build(spec), "full", spec["batch"], program="exported", constants={**over, "n_cores": 1},
                        check=False)
    cyc = est.latency_ms_per_step * float(c["freq_mhz"]) * 1000.0
    comp = est.cycles_by_part["compute"]
    return {"cycles": cyc, "compute": comp, "other": cyc - comp}


def report(cache, feats, fit_names, coefs, c, have, estimates=None) -> list[str]:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    la = os.getloadavg()
    L = ["# Kernel costs of the exported program, fitted on the CV32E40P RTL", "",
         f"Regenerate: `python benchmarks/device_rtl.py` (`--refit`: from the cached measurements). {date}; "
         f"machine load {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1/5/15 min). One core, single-cycle memory, "
         "strategy `full`, one step. Fitted on: " + ", ".join(f"`{n}`" for n in fit_names) + ".", "",
         "## Fitted constants (`programs: exported` in gap9.yaml)", "",
         "Per C kind, one core: cycles = MACs x (cycles per MAC) [+ input-gradient MACs x their own] or elements x "
         "(cycles per element) + inner loops x (loop overhead) + innermost tap loops x (row overhead, direct "
         "convolutions) + calls x (call cycles). MAC rates are written as 8-core cluster figures (8 / cycles per MAC).", "",
         "| C kind | cycles per MAC or element | input-gradient cycles per MAC | loop overhead | row overhead | cycles per call |",
         "|---|---|---|---|---|---|"]
    for k in KINDS:
        cf = coefs[k]
        rate = cf.get("macs", cf.get("elems", 0.0))
        ig = f"{cf['ig_macs']:.3f}" if "ig_macs" in cf else ""
        row = f"{cf['rows']:.2f}" if "rows" in cf else ""
        L.append(f"| {k} | {rate:.3f} | {ig} | {cf['loops']:.2f} | {row} | {cf['calls']:.1f} |")
    L += ["", "gap9.yaml (`programs: exported`): " + ", ".join(f"`{key}: {fmt(v)}`" for key, v in constants_from(coefs).items()), ""]
    # leave-one-shape-out
    loo = {k: [] for k in KINDS}
    for n in fit_names:
        rest = [m for m in fit_names if m != n]
        for k in KINDS:
            meas = cache[n]["cycles_by_kind"][k]
            if meas <= 0:
                continue
            cf = fit.fit_kind(k, [feats[m][k] for m in rest], [cache[m]["cycles_by_kind"][k] for m in rest])
            cc = {**c, **fit.coefficients_to_constants(k, cf)}
            loo[k].append(pct(fit.kind_cycles(k, feats[n][k], cc), meas))
    ins = {k: [] for k in KINDS}
    for n in fit_names:
        pred = fit.predict_by_kind(feats[n], c)
        for k in KINDS:
            if cache[n]["cycles_by_kind"][k] > 0:
                ins[k].append(pct(pred[k], cache[n]["cycles_by_kind"][k]))
    L += ["", "## Residuals per C kind (model vs RTL cycles, %)", "",
          "| C kind | in-sample max abs | in-sample RMS | leave-one-shape-out max abs | leave-one-shape-out RMS |",
          "|---|---|---|---|---|"]
    for k in KINDS:
        a, b = np.abs(ins[k]), np.abs(loo[k])
        if len(a):
            L.append(f"| {k} | {a.max():.1f} | {np.sqrt(np.mean(a**2)):.1f} | {b.max():.1f} | {np.sqrt(np.mean(b**2)):.1f} |")
    L += [""] + compact_table(cache, feats, c, [n for n in have if n not in fit_names])
    L += ["## Per shape and kind: RTL cycles, model cycles (one core), error", ""]
    for n in have:
        r = cache[n]
        role = "fit" if n in fit_names else "held out" if n in HELD else "reference (held out)"
        pred = fit.predict_by_kind(feats[n], c)
        tot_m, tot_r = sum(pred.values()), r["cycles_per_step"]
        L += [f"### `{n}` ({role}): {r['spec']['name']} C={r['spec']['n_chans']} T={r['spec']['n_times']} "
              f"{r['spec']['kwargs']} batch {r['spec']['batch']}; {r['wall_s']} s simulated, max_rel_err "
              f"{r['max_rel_err']:.1e}", "",
              "| C kind | RTL cycles | model cycles | error % | share of step |", "|---|---|---|---|---|"]
        for k in KINDS:
            m = r["cycles_by_kind"][k]
            if m > 0 or pred[k] > 0:
                L.append(f"| {k} | {m:,.0f} | {pred[k]:,.0f} | {pct(pred[k], m):+.1f} | {100 * m / tot_r:.1f} % |")
        L += [f"| **step** | **{tot_r:,.0f}** | **{tot_m:,.0f}** | **{pct(tot_m, tot_r):+.1f}** | (kernels: "
              f"{100 * sum(r['cycles_by_kind'].values()) / tot_r:.1f} %) |", ""]
        if estimates is not None:
            e = estimates[n]
            L += [f"`estimate_step(program=\"exported\", n_cores=1)`: {e['cycles']:,.0f} cycles ({pct(e['cycles'], tot_r):+.1f} % "
                  f"against the RTL), of which compute {e['compute']:,.0f} ({pct(e['compute'], tot_r):+.1f} %); the rest is the "
                  f"cluster's DMA set-up, fork/barrier and L3 input load ({e['other']:,.0f}), which the one-core RTL run has not.", ""]
    L += ["## Time scaling on the RTL", ""]
    for a, b in (("mi_c4_t64", "mi_c4_t128"), ("epi_c2_f222", "epi_c2_f222_t960")):
        if a in cache and b in cache:
            ta, tb = cache[a]["spec"]["n_times"], cache[b]["spec"]["n_times"]
            parts = []
            for k in KINDS:
                ma, mb = cache[a]["cycles_by_kind"][k], cache[b]["cycles_by_kind"][k]
                if ma > 0.02 * cache[a]["cycles_per_step"]:
                    parts.append(f"{k} {mb / ma:.3f}")
            L.append(f"- `{a}` -> `{b}` (T {ta} -> {tb}, x{tb / ta:g}): step x"
                     f"{cache[b]['cycles_per_step'] / cache[a]['cycles_per_step']:.3f}; per kind: " + ", ".join(parts))
    return L


if __name__ == "__main__":
    raise SystemExit(main())
