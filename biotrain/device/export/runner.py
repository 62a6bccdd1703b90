"""Build and run an exported project, read its results back, compare them with PyTorch.

Targets: ``host`` (system C compiler), ``qemu`` (rv32 build on ``qemu-system-riscv32``, ends through
the virt machine's test device; counts instructions, not cycles), ``rtl`` (rv32imfc build on the
Verilator model of CV32E40P with its FPU: measured cycles and stall events, ``biotrain.device.rtl``),
``gap9-board`` / ``gap9-gvsoc`` (the GAP SDK's own runner, where that SDK is installed). The reference is the same steps in eager PyTorch with ``torch.optim.SGD``
from the same initial state, samples and schedule.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...adaptation.precision import after_step, emulated, loss_scale, round_tensors, store_gradients
from ..capture import with_strategy_layers
from ..execute import model_at_state
from .project import read_samples, read_schedule, read_state, write_schedule

TARGETS = ("host", "qemu", "rtl", "gap9-board", "gap9-gvsoc")
DEBIAN_PACKAGES = "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc"
RV_GCC = "riscv64-unknown-elf-gcc"
QEMU = "qemu-system-riscv32"
TOL = 1e-4
UNIT_ROUNDOFF = {"bf16": 2.0 ** -9, "fp16": 2.0 ** -12}  # half an ulp, relative: 8 / 11 significant bits
# roundings a stored value may differ by between a 16-bit program and the host emulation (tolerance)
ROUNDINGS_APART = 16


def tolerance(precision: str) -> float:
    """The relative error a program may show against its reference: fp32 ``TOL`` (summation order
    alone). A 16-bit program and the host's 16-bit emulation round the same stored values to the
    same type, but not at exactly the same points: the program also rounds every intermediate it
    stores (a norm's statistics, a padded copy, the gradient after its weight decay, the loss, a
    gradient accumulated micro-batch by micro-batch) where the emulation keeps fp32, and each
    differing rounding moves a value by up to one unit roundoff u, carried through the layers and
    the steps. ``ROUNDINGS_APART`` * u bounds that (bf16 3.1 %, fp16 0.39 %), except where the
    16-bit type moves a value by more than that from fp32 itself (:func:`allowed_errors`)."""
    return TOL if precision == "fp32" else ROUNDINGS_APART * UNIT_ROUNDOFF[precision]
MAX_CORES = 8  # a GAP9 cluster's compute cores; qemu's virt machine runs that many harts


def check_cores(target: str, cores: int | None) -> int:
    """The core count to run (None: the target's own: 8 on GAP9, else 1); it must be one the
    target can run: 1..8 on qemu (harts of ``-smp``), 1 on the host (one thread) and the RTL
    testbench (one CV32E40P core), 8 on GAP9."""
    if cores is None:
        return MAX_CORES if target in ("gap9-board", "gap9-gvsoc") else 1
    if target == "qemu":
        if not 1 <= cores <= MAX_CORES:
            raise ValueError(f"--cores {cores}: qemu runs 1 to {MAX_CORES} cores (harts of -smp N)")
    elif target in ("gap9-board", "gap9-gvsoc"):
        if cores != MAX_CORES:
            raise ValueError(f"--cores {cores}: the GAP9 build always runs on the cluster's {MAX_CORES} cores")
    elif target == "rtl":
        if not 1 <= cores <= MAX_CORES:
            raise ValueError(f"--cores {cores}: rtl times each core's share of a 1 to {MAX_CORES}-core program alone")
    elif cores != 1:
        raise ValueError(f"--cores {cores}: target {target} runs one core; multi-core runs are --target qemu "
                         f"(1 to {MAX_CORES} cores)")
    return cores


class ToolMissing(RuntimeError):
    """A compiler, emulator or SDK the target needs is not installed (the message says which)."""


def missing_tools(target: str) -> str | None:
    """One line naming what ``target`` lacks and how to get it, or None when all is there."""
    if target == "host":
        return None if shutil.which(os.environ.get("CC", "cc")) else "no C compiler (cc) on PATH: apt-get install -y gcc"
    if target in ("qemu", "rtl"):
        lack = [t for t in ((RV_GCC, QEMU) if target == "qemu" else (RV_GCC,)) if not shutil.which(t)]
        if not lack:
            probe = subprocess.run([RV_GCC, "--specs=picolibc.specs", "-march=rv32imafc", "-mabi=ilp32f",
                                    "-print-file-name=picolibc.ld"], capture_output=True, text=True)
            if probe.returncode != 0:
                lack.append("picolibc")
        if lack:
            return (f"target {target} needs {', '.join(lack)}: apt-get install -y {DEBIAN_PACKAGES} "
                    "(Debian/Ubuntu packages)")
        if target == "rtl":
            from ..rtl import missing

            return missing()
        return None
    if target in ("gap9-board", "gap9-gvsoc"):
        if not os.environ.get("GAP_SDK_HOME") or not shutil.which("gapy"):
            return (f"target {target} needs the GreenWaves GAP SDK (GAP_SDK_HOME set and gapy on PATH): it is not "
                    "public on a package index; get it from GreenWaves (github.com/GreenWaves-Technologies/gap_sdk "
                    "or your GAP9 kit), then `source <gap_sdk>/configs/gap9_evk_audio.sh` and rerun")
        return None
    raise ValueError(f"unknown target {target!r}; use one of {list(TARGETS)}")


def build(project: Path, target: str, cores: int = 1, solo: int | None = None) -> None:
    """``make`` the target's build; rv32 builds are per core count (``build/rv32-c<N>``), and per
    core for a ``solo`` build (core ``solo``'s share alone, ``build/rv32-c<N>-solo<k>``)."""
    why = missing_tools(target)
    if why:
        raise ToolMissing(why)
    make_target = {"host": "host", "qemu": "rv32", "rtl": "rtl"}.get(target, "gap9")
    extra = [] if solo is None else [f"SOLO={solo}"]
    r = subprocess.run(["make", "-s", "-C", str(project), make_target, f"NCORES={cores}", *extra],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"build of {project} for {target} failed:\n{r.stdout[-2000:]}{r.stderr[-4000:]}")


def execute(project: Path, target: str, timeout_s: float = 7200.0, latency: tuple[int, int] = (1, 1),
            cores: int = 1, solo: int | None = None) -> subprocess.CompletedProcess:
    """Run the built program in ``project`` (its data files are read and written there). The
    timeout is a guard only: programs end through exit / the test device. ``latency`` is the RTL
    testbench's (instruction, data) memory latency in cycles."""
    for f in ("final_state.bin", "losses.bin", "profile.bin"):
        (project / f).unlink(missing_ok=True)
    if target == "host":
        cmd = [str(project / "build" / "host" / "prog")]
    elif target == "qemu":
        elf = f"build/rv32-c{cores}" + ("" if solo is None else f"-solo{solo}") + "/prog.elf"
        cmd = [QEMU, "-machine", "virt", "-smp", str(cores if solo is None else 1), "-nographic", "-bios", "none",
               "-icount", "shift=0", "-semihosting-config", "enable=on,target=native", "-kernel", elf]
    elif target == "rtl":
        from ..rtl import simulator

        sim = simulator(log=lambda msg: print(f"biotrain device: {msg}", file=sys.stderr, flush=True))
        elf = "build/rtl" + ("" if solo is None else f"-c{cores}-solo{solo}") + "/prog.elf"
        cmd = [str(sim), elf, "--ilat", str(latency[0]), "--dlat", str(latency[1])]
    else:
        platform = "board" if target == "gap9-board" else "gvsoc"
        cmd = ["make", "-f", "gap9/Makefile.gap9", "run", f"platform={platform}"]
    r = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=timeout_s,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"{target} run of {project} failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r


COUNTERS = ("instructions", "cycles", "load_stalls", "jump_stalls", "fpu_stalls", "fetch_waits")


def read_profile(path: Path, kinds: list[str]) -> dict:
    """``profile.bin``: instructions and cycles of every step, and every kernel kind's counters
    (``COUNTERS``, in the order of ``prof.h``)."""
    data = path.read_bytes()
    n, k, c, cores = struct.unpack_from("<IIII", data, 0)
    if c != len(COUNTERS) or k != len(kinds):
        raise ValueError(f"{path}: {k} kinds x {c} counters, expected {len(kinds)} x {len(COUNTERS)}")
    per = np.frombuffer(data, np.uint64, 2 * n, 16).reshape(n, 2)
    pos = 16 + 16 * n
    by_kind = np.frombuffer(data, np.uint64, k * c, pos).reshape(k, c)
    pos += 8 * k * c
    per_core = np.frombuffer(data, np.uint64, cores * (k + 1), pos).reshape(cores, k + 1)
    pos += 8 * cores * (k + 1)
    l1 = np.frombuffer(data, np.uint64, 4, pos).tolist() if len(data) >= pos + 32 else [0, 0, 0, 0]
    return {"instret": per[:, 0].tolist(), "cycles": per[:, 1].tolist(),
            "by_kind": {kinds[i]: dict(zip(COUNTERS, map(int, by_kind[i]))) for i in range(k)},
            "per_core": [{**{kinds[i]: int(row[i]) for i in range(k)}, "barrier_wait": int(row[k])}
                         for row in per_core],
            "l1": {"bytes": int(l1[0]), "touched_bytes": int(l1[1]), "dma_bytes": int(l1[2]),
                   "dma_copies": int(l1[3])}}


def read_trace(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A solo build's trace.bin: per kernel call in order, its kind index and its count
    (instructions; on the RTL, clock cycles)."""
    data = Path(path).read_bytes()
    n = struct.unpack_from("<I", data, 0)[0]
    pairs = np.frombuffer(data, np.uint32, 2 * n, 4).reshape(n, 2).astype(np.int64)
    return pairs[:, 0], pairs[:, 1]


def solo_counts(project: Path, cores: int, kinds: list[str]) -> list[dict]:
    """Every core's instructions per kernel kind, and its barrier waits, for the whole run: core k's
    share run alone on one hart (``SOLO=k``). qemu's instruction counter under ``-icount`` is one
    clock for all harts (it counts every hart's instructions), so an N-hart run cannot count per
    core; the kernels' control flow does not depend on the data, so core k's share alone retires
    what it retires among N. A core's wait at a kernel's barrier is the busiest core's
    instructions in that call minus its own (from every core's per-call trace)."""
    rows, traces = [], []
    for k in range(cores):
        build(project, "qemu", cores, solo=k)
        execute(project, "qemu", cores=cores, solo=k)
        rows.append(read_profile(project / "profile.bin", kinds)["per_core"][k])
        traces.append(read_trace(project / "trace.bin")[1])
    if len({len(t) for t in traces}) != 1:
        raise RuntimeError(f"{project}: the cores' solo runs made different numbers of kernel calls")
    busiest = np.max(np.stack(traces), axis=0)
    for row, tr in zip(rows, traces):
        row["barrier_wait"] = int((busiest - tr).sum())
    return rows


def rtl_core_cycles(project: Path, cores: int, kinds: list[str], latency: tuple[int, int],
                    traces: list | None = None) -> list[dict]:
    """Every core's cycles per kernel kind on the CV32E40P RTL, for the whole run: core k's share
    of the N-core program alone (``SOLO=k``: the core id compiled in, the barriers compiled out).
    Its state is not the step's (the one-core run is the proof); its cycles are core k's.
    ``traces``: a list that receives each core's (kinds, cycles) per call (``read_trace``)."""
    rows = []
    for k in range(cores):
        build(project, "rtl", cores, solo=k)
        execute(project, "rtl", latency=latency, cores=cores, solo=k)
        rows.append({kk: v["cycles"] for kk, v in read_profile(project / "profile.bin", kinds)["by_kind"].items()})
        if traces is not None:
            traces.append(read_trace(project / "trace.bin"))
    return rows


def core_balance(per_core: list[dict]) -> tuple[dict, dict]:
    """Per kernel kind: the busiest core's instructions over the mean of the cores (1.0 = even),
    and the kind's share of all the cores' kernel instructions (``barrier_wait`` is apart)."""
    kinds = [k for k in per_core[0] if k not in ("barrier_wait", "dma")]  # dma: core 0 plays the DMA engine
    total = sum(row[k] for row in per_core for k in kinds)
    balance, share = {}, {}
    for k in kinds:
        vals = [row[k] for row in per_core]
        mean = sum(vals) / len(vals)
        if mean > 0:
            balance[k] = max(vals) / mean
            share[k] = sum(vals) / total if total else 0.0
    return balance, share


def _model_from_meta(meta: dict):
    from ...models.spec import model_from_spec

    spec = meta["model"]
    if not spec:
        raise ValueError("meta.json has no model spec: export with model_spec to let `run` rebuild the reference")
    return model_from_spec(spec)


def _layers(meta: dict) -> tuple[str, ...] | None:
    return None if meta.get("layers") is None else tuple(meta["layers"])


def reference_run(meta: dict, state: dict, x: np.ndarray, y: np.ndarray, schedule: list, model=None):
    """The same steps in eager PyTorch: ``torch.optim.SGD`` from the exported state; a 16-bit
    program's steps under the host's 16-bit emulation (``adaptation.precision``: stored values
    rounded, fp16's loss scale). Returns (final state dict, loss per step)."""
    base = model if model is not None else _model_from_meta(meta)
    base = with_strategy_layers(base, meta["strategy"], meta.get("rank"))  # lora: adapters (their values: ``state``)
    m, trainable = model_at_state(base, meta["strategy"], state, _layers(meta))
    names = [n for n, _ in m.named_parameters() if n in trainable]
    params = dict(m.named_parameters())
    tp = [params[n] for n in names]
    hp = meta["hparams"]
    opt = torch.optim.SGD(tp, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    for n, p in zip(names, tp):
        opt.state[p]["momentum_buffer"] = state[f"momentum:{n}"].clone()
    xs = torch.from_numpy(np.array(x, np.float32)).reshape(len(x), 1, m.n_chans, m.n_times)
    ys = torch.from_numpy(np.array(y, np.int64))
    micro = meta["micro_batch"]
    precision = meta.get("precision", "fp32")
    scale = loss_scale(precision)
    losses = []
    with emulated(m, precision):
        for lr, idx in schedule:
            for gr in opt.param_groups:
                gr["lr"] = float(lr)
            opt.zero_grad()
            total = 0.0
            for j in range(0, len(idx), micro):
                sel = torch.as_tensor(idx[j:j + micro])
                loss = F.cross_entropy(m(xs[sel]), ys[sel], reduction="sum") / len(idx)
                (loss * scale if scale != 1.0 else loss).backward()
                round_tensors([p.grad for p in tp], precision)  # the accumulator, stored after each micro-batch
                total += float(loss.detach())
            store_gradients(tp, precision, scale)
            opt.step()
            after_step(m, opt, precision)
            losses.append(total)
    out = {f"param:{n}": p.detach().clone() for n, p in m.named_parameters()}
    out.update({f"buffer:{n}": b.detach().clone() for n, b in m.named_buffers()})
    out.update({f"momentum:{n}": opt.state[p]["momentum_buffer"].clone() for n, p in zip(names, tp)})
    return out, losses


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    den = float(b.norm())
    err = float((a - b).norm())
    r = err / den if den else err
    return r if r == r else float("inf")


def _loss_err(losses, ref_losses) -> float:
    return max((abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, ref_losses)), default=0.0)


def allowed_errors(meta: dict, init: dict, x, y, schedule, model, ref: dict, ref_losses: list, tol: float) -> dict:
    """The error each kind of state (and the loss) may show against the reference: ``tol``; for a
    16-bit program, at least twice what the 16-bit type itself moves that kind away from fp32 (the
    emulation against fp32 training, same steps). A gradient sum that cancels (a training-mode
    BatchNorm's bias over a batch) is only as exact as the 16-bit type leaves it: where rounding
    moves it by 10 %, two programs that round at slightly different points differ by as much."""
    if meta.get("precision", "fp32") == "fp32":
        return {}
    ref32, losses32 = reference_run({**meta, "precision": "fp32"}, init, x, y, schedule, model=model)
    own = {**compare_states(ref, ref32)["by_kind"], "loss": _loss_err(ref_losses, losses32)}
    return {k: max(tol, 2.0 * v) for k, v in own.items()}


def compare_states(got: dict, ref: dict) -> dict:
    """Relative L2 error per kind (weights, momentum, buffers) and per tensor."""
    groups: dict = {}
    per = {}
    for k, r in ref.items():
        if k not in got:
            continue
        if not r.dtype.is_floating_point:
            per[k] = 0.0 if torch.equal(got[k].to(r.dtype), r) else float("inf")
            continue
        per[k] = _rel(got[k], r)
        groups.setdefault(k.partition(":")[0], []).append((got[k].flatten(), r.flatten()))
    by_kind = {kind: _rel(torch.cat([a for a, _ in v]), torch.cat([b for _, b in v])) for kind, v in groups.items()}
    ints = [v for k, v in per.items() if not ref[k].dtype.is_floating_point]
    if ints:
        by_kind["integer_buffers"] = max(ints)
    return {"by_kind": by_kind, "per_tensor": per}


def run_project(project, target: str = "host", steps: int | None = None, tol: float | None = None, model=None,
                latency: tuple[int, int] = (1, 1), cores: int | None = None, per_core: bool = True) -> dict:
    """Build, run, read back and compare; the JSON result of ``biotrain device run``.

    Counters, one meaning per key: ``instructions_per_step`` (retired instructions, every target
    but the host); ``cycles_per_step`` (clock cycles, measured: ``rtl`` and the GAP9 targets);
    ``icount_cycles_per_step`` (qemu only: its cycle counter under ``-icount shift=0``, which is
    the instruction count again); per kernel kind, per step: ``instructions_per_step_by_kind``,
    ``cycles_per_step_by_kind`` and, on ``rtl``, ``stalls_per_step_by_kind`` (load-use, jump,
    FPU stalls and instruction-fetch waits, from the core's event counters). These are core 0's.
    ``cores`` (qemu: 1..8 harts; rtl: ``per_core_cycles``, each core's share of an N-core program
    timed alone, the proof being the one-core run): ``per_core_instructions`` is per core, per step, every kind's
    instructions with the barrier's apart (``barrier_wait``); ``core_balance`` per kind is the
    busiest core over the mean, ``kind_share`` each kind's part of all the cores' instructions. On
    qemu with several cores they come from one solo run per core (``solo_counts``; ``per_core=False``
    skips them, and the per-core keys are None)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; use one of {list(TARGETS)}")
    cores = check_cores(target, cores)
    project = Path(project)
    meta = json.loads((project / "meta.json").read_text())
    tol = tolerance(meta.get("precision", "fp32")) if tol is None else tol
    schedule = read_schedule(project / "schedule.bin")
    x, y = read_samples(project / "samples.bin")
    if steps is not None:
        if steps < 1:
            raise ValueError(f"--steps must be >= 1, got {steps}")
        base = schedule or [(meta["hparams"]["lr"], list(range(meta["batch_size"])))]
        schedule = [base[s % len(base)] for s in range(steps)]
        write_schedule(project / "schedule.bin", schedule)
    t0 = time.perf_counter()
    solo = solo_counts(project, cores, meta["kinds"]) if target == "qemu" and cores > 1 and per_core else None
    rtl_rows = rtl_core_cycles(project, cores, meta["kinds"], latency) if target == "rtl" and cores > 1 else None
    run_cores = 1 if target == "rtl" else cores  # the RTL proof is the one-core program
    build(project, target, run_cores)
    execute(project, target, latency=latency, cores=run_cores)
    seconds = time.perf_counter() - t0
    table = meta["states"]
    init = read_state(project / "init_state.bin", table)
    final = read_state(project / "final_state.bin", table)
    losses = np.fromfile(project / "losses.bin", dtype=np.float32).astype(float).tolist()
    ref, ref_losses = reference_run(meta, init, x, y, schedule, model=model)
    cmp = compare_states(final, ref)
    errs = {**cmp["by_kind"], "loss": _loss_err(losses, ref_losses)}
    allowed = allowed_errors(meta, init, x, y, schedule, model, ref, ref_losses, tol)
    max_rel = max(errs.values())
    if not np.all(np.isfinite(losses)):
        max_rel = float("inf")
    ok = max_rel < float("inf") and all(v <= allowed.get(k, tol) for k, v in errs.items())
    prof = read_profile(project / "profile.bin", meta["kinds"])
    counted = target != "host"  # qemu: guest instret/cycle CSRs; gap9: PMSIS counters of core 0
    timed = target in ("rtl", "gap9-board", "gap9-gvsoc")  # cycles are clock cycles
    n = max(len(schedule), 1)
    per_kind = {k: {c: v / n for c, v in cs.items()} for k, cs in prof["by_kind"].items()}
    stall_keys = ("load_stalls", "jump_stalls", "fpu_stalls", "fetch_waits")
    rows = solo if solo is not None else (prof["per_core"] if counted and (cores == 1 or target.startswith("gap9")) else None)
    per_core = [{k: v / n for k, v in row.items()} for row in rows] if rows else None
    balance, share = core_balance(per_core) if per_core else (None, None)
    return {
        "target": target,
        "steps": len(schedule),
        "max_rel_err": max_rel,
        "ok": bool(ok),
        "tol": tol,
        "allowed_by_kind": allowed,
        "loss": losses,
        "loss_reference": ref_losses,
        "rel_err_by_kind": cmp["by_kind"],
        "worst_tensor": max(cmp["per_tensor"], key=cmp["per_tensor"].get) if cmp["per_tensor"] else "",
        "instructions_per_step": prof["instret"] if counted else None,
        "cycles_per_step": prof["cycles"] if timed else None,
        "icount_cycles_per_step": prof["cycles"] if target == "qemu" else None,
        "ipc": (sum(prof["instret"]) / max(sum(prof["cycles"]), 1)) if timed else None,
        "instructions_per_step_by_kind": ({k: v["instructions"] for k, v in per_kind.items()} if counted else None),
        "cycles_per_step_by_kind": ({k: v["cycles"] for k, v in per_kind.items()} if timed else None),
        "stalls_per_step_by_kind": ({k: {s: v[s] for s in stall_keys} for k, v in per_kind.items()}
                                    if target == "rtl" else None),
        "memory_latency_cycles": {"instruction": latency[0], "data": latency[1]} if target == "rtl" else None,
        "cores": cores,
        "l1_bytes": prof["l1"]["bytes"] if meta.get("l1") else 0,
        "l1_touched_bytes": prof["l1"]["touched_bytes"],
        "l1_budget_bytes": (meta.get("l1") or {}).get("budget_bytes"),
        "dma_bytes_per_step": prof["l1"]["dma_bytes"] / n,
        "dma_copies_per_step": prof["l1"]["dma_copies"] / n,
        "per_core_instructions": per_core,
        "per_core_cycles": [{k: v / n for k, v in row.items()} for row in rtl_rows] if rtl_rows else None,
        "core_balance": balance,
        "kind_share": share,
        "seconds": round(seconds, 3),
        "strategy": meta["strategy"],
        "model": meta["model"].get("name"),
        "final_state": final,
    }
