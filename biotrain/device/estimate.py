"""``estimate_step``: memory, latency and energy of one training step on the simulated GAP9."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

from torch import nn

from ..strategy_table import COSTED_STRATEGIES
from ..models.lora import LoRA
from .capture import capture_step, check_strategy_args, with_strategy_layers
from .constants import load_constants
from .cost import step_cost
from .energy import energy_breakdown_mj, power_model
from .memory import breakdown_at, build_graph, dominant_at, plan_memory
from .sixteen import check_precision, narrow
from .spill import spill_frozen
from .stream import stream_frozen

BACKENDS = ("gap9-sim", "gap9-board")


@dataclass
class DeviceEstimate:
    backend: str
    model: str
    strategy: str
    batch_size: int
    micro_batch: int
    accum: int
    n_parameters: int
    n_trainable: int
    # memory
    peak_l2_bytes: int
    lower_bound_l2_bytes: int
    planner_overhead: float
    l2_budget_bytes: int
    peak_l1_bytes: int
    peak_l1_op: str
    l1_budget_bytes: int
    fits_l2: bool
    fits_l1: bool
    fits_on_chip: bool
    breakdown: dict
    dominant_tensors: list
    planner: dict
    # time and energy (None when the step does not fit on the chip)
    latency_ms_per_step: float | None
    samples_per_s: float | None
    power_mw: float
    energy_mj_per_step: float | None
    energy_mj_per_sample: float | None
    energy_mj_per_session: float | None
    sessions_per_charge: float | None
    session: dict
    # work
    macs_per_step: int
    cycles_per_step: float
    cycles_by_kernel: dict
    cycles_by_part: dict
    cycles_by_phase: dict
    freq_mhz: float
    voltage_v: float
    estimate_s: float
    plan_check: dict | None = None
    frozen_stream: dict | None = None  # the depth-first streaming of the frozen prefix, when used
    l1_tiles: list = field(default_factory=list)
    energy_breakdown_mj: dict = field(default_factory=dict)
    activity: dict = field(default_factory=dict)
    message: str = ""
    constants: dict = field(default_factory=dict)
    # which program is costed (gap9.yaml ``programs``), and the band power lies in (docs/device.md)
    program: str = ""
    peak_l2_bytes_per_tile_im2col: int | None = None  # paper-toolchain: the same step with per-tile im2col
    power_mw_low: float | None = None
    power_mw_high: float | None = None
    power_detail: dict = field(default_factory=dict)
    energy_mj_per_step_low: float | None = None
    energy_mj_per_step_high: float | None = None
    energy_mj_per_session_low: float | None = None
    energy_mj_per_session_high: float | None = None
    layers: list | None = None  # sparse: the layers trained besides the classifier (models.layers names)
    rank: int | None = None  # lora: the adapters' rank (per layer at most min(rows, columns) of its weight)
    adapted: list | None = None  # lora: the modules with an adapter
    precision: str = "fp32"  # bf16/fp16: the tensors docs/adaptation.md lists take 2 bytes, kernels the SIMD rates

    def to_dict(self) -> dict:
        d = asdict(self)
        d["peak_l2_mb"] = round(self.peak_l2_bytes / 1e6, 4)
        d["lower_bound_l2_mb"] = round(self.lower_bound_l2_bytes / 1e6, 4)
        return d


TIMED = ("latency_ms_per_step", "samples_per_s", "energy_mj_per_step", "energy_mj_per_sample",
         "energy_mj_per_session", "sessions_per_charge", "energy_mj_per_step_low", "energy_mj_per_step_high",
         "energy_mj_per_session_low", "energy_mj_per_session_high")


def battery_mj(c: dict) -> float:
    """The energy a full battery delivers to the chip's rails."""
    return float(c["battery_mah"]) * 3.6 * float(c["battery_v"]) * 1e3 * float(c["regulator_efficiency"])


def _session(c: dict, batch_size: int, samples: int | None, epochs: int | None) -> dict:
    """One calibration session, ``samples`` x ``epochs`` (the study's, given by the caller: the chip's
    constants know nothing of a study), and the battery. Without ``samples``, no session."""
    if samples is None:
        return {"samples": None, "epochs": None, "steps": None, "battery_mj": battery_mj(c)}
    if not (isinstance(samples, int) and samples >= 1 and isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"a calibration session needs samples >= 1 and epochs >= 1, got {samples!r} x {epochs!r}")
    steps = math.ceil(samples / batch_size) * epochs
    return {"samples": samples, "epochs": epochs, "steps": steps, "battery_mj": battery_mj(c)}


def _time_and_energy(latency_ms: float, pm: dict, batch_size: int, session: dict) -> dict:
    """Time and energy (= power x time) of the step and the session, the energies with the power band's bounds."""
    t = latency_ms / 1e3
    energy = {sfx: pm[f"power_mw{sfx}"] * t for sfx in ("", "_low", "_high")}
    steps = session["steps"]
    per_session = {sfx: None if steps is None else e * steps for sfx, e in energy.items()}
    return dict(latency_ms_per_step=latency_ms, samples_per_s=batch_size / t,
                energy_mj_per_step=energy[""], energy_mj_per_sample=energy[""] / batch_size,
                energy_mj_per_step_low=energy["_low"], energy_mj_per_step_high=energy["_high"],
                energy_mj_per_session=per_session[""], energy_mj_per_session_low=per_session["_low"],
                energy_mj_per_session_high=per_session["_high"],
                sessions_per_charge=session["battery_mj"] / per_session[""] if per_session[""] else None)


def _why_not(plan, cost, c: dict, fits_l2: bool, fits_l1: bool) -> str:
    """Why a step does not fit: bytes needed against bytes available (no throughput reported)."""
    why = []
    if not fits_l2:
        why.append(f"L2 plan needs {plan.peak} B but the budget is {int(c['l2_budget_bytes'])} B "
                   f"({plan.peak / int(c['l2_budget_bytes']):.2f}x)")
    if not fits_l1:
        why.append(f"a kernel's L1 working set ({cost.peak_l1_bytes} B at {cost.peak_l1_op}) exceeds "
                   f"the L1 budget {int(c['l1_budget_bytes'])} B")
    return "does not fit on chip: " + "; ".join(why) + " — no throughput reported"


def estimate_step(
    model: nn.Module,
    strategy: str,
    batch_size: int = 8,
    micro_batch: int | None = None,
    accum: int | None = None,
    backend: str = "gap9-sim",
    constants: dict | None = None,
    *,
    program: str | None = None,
    session_samples: int | None = None,
    epochs: int | None = None,
    check: bool | None = None,
    solver: str = "auto",
    optimize: bool = True,
    layers: tuple[str, ...] | None = None,
    rank: int | None = None,
    precision: str = "fp32",
) -> DeviceEstimate:
    """Capture, plan and cost one training step of ``batch_size`` samples of ``model``.

    ``strategy`` is one of ``strategy_table.COSTED_STRATEGIES``; its ``device_micro_batch`` sets the
    default batching (``full``: the whole batch at once; the others micro-batch 1 with the gradient
    accumulated over ``batch_size``). ``layers``: the layers ``sparse`` trains (``models.layers``
    names; the classifier always trains); ``rank``: ``lora``'s adapter rank (default
    ``FinetuneConfig.lora_rank``); the result names both (``layers``, ``rank``, ``adapted``).
    ``check=True`` also executes the planned step on one flat buffer and compares it with eager
    PyTorch (adds ``plan_check``); ``None`` runs it when the step has at most ``check_max_macs``
    MACs (about a second of CPU), ``False`` never. ``solver``: ``auto`` | ``cpsat`` | ``bestfit``.
    ``session_samples`` and ``epochs`` (the study's calibration size and fine-tuning epochs) give the
    energy per session and sessions per charge; without them those two are None.
    ``optimize=False`` plans the step as traced (element-wise in-place reuse only), without the
    exact memory-saving rewrites of ``passes.py`` and ``memory.build_graph`` (an ablation).
    ``program``: ``paper-toolchain`` (reproduces the published figures, the toolchain's placement)
    or ``exported`` (this project's program); default: ``gap9.yaml``'s ``program``. Its keys are
    taken from that program's block of ``gap9.yaml``; ``constants`` overrides any key.
    """
    t0 = time.perf_counter()
    _check_request(backend, strategy)
    check_strategy_args(model, strategy, layers, rank)
    c = load_constants(constants, program)  # an unknown program is one error naming the choices
    c["precision"] = check_precision(precision)
    session = _session(c, batch_size, session_samples, epochs)
    model = with_strategy_layers(model, strategy, rank)
    step = capture_step(model, strategy, batch_size, micro_batch, accum, remat=optimize, layers=layers)
    graph = narrow(build_graph(step, rewrites=optimize, l2_scratch=bool(c["l2_im2col"])), precision)
    streams = bool(step.frozen and optimize and c["frozen_stream"])
    stream = stream_frozen(graph, int(c["frozen_stream_tiles"])) if streams else None
    spilled = spill_frozen(graph, int(c["l2_budget_bytes"]), int(c["l3_staging_bytes"])) if step.frozen else 0
    plan = plan_memory(graph, solver=solver, time_limit_s=float(c["cpsat_time_limit_s"]),
                       max_cpsat_items=int(c["cpsat_max_tensors"]))
    cost = step_cost(graph, c)
    fits_l2 = plan.peak <= int(c["l2_budget_bytes"])
    fits_l1 = cost.l1_fits and cost.peak_l1_bytes <= int(c["l1_budget_bytes"])
    n_train = sum(p.numel() for n, p in model.named_parameters() if n in set(step.trainable))
    plan_check = _plan_check(model, graph, plan, False if precision != "fp32" else check,
                             cost.macs <= int(c["check_max_macs"]))
    per_tile = _per_tile_peak(step, graph, plan, optimize, solver, c, streams) if c["l2_im2col"] else None
    return DeviceEstimate(
        backend=backend, model=type(model).__name__, strategy=strategy, batch_size=batch_size,
        micro_batch=step.micro_batch, accum=step.accum,
        n_parameters=sum(p.numel() for p in model.parameters()), n_trainable=int(n_train),
        planner=_planner_summary(step, graph, plan, spilled, optimize), plan_check=plan_check,
        frozen_stream=stream.summary(graph) if stream is not None else None,
        constants=dict(c), **_memory_fields(graph, plan, cost, c, fits_l2, fits_l1),
        **_time_and_energy_fields(plan, cost, c, batch_size, session, fits_l2, fits_l1), **_work_fields(cost, c),
        program=c["program"], peak_l2_bytes_per_tile_im2col=per_tile,
        estimate_s=round(time.perf_counter() - t0, 3), **_strategy_fields(model, step), precision=precision,
    )


def _strategy_fields(model: nn.Module, step) -> dict:
    """What ``sparse`` and ``lora`` train beyond the table's rule: the layers, the adapters and their rank."""
    adapters = {n: m for n, m in model.named_modules() if isinstance(m, LoRA)}
    return {"layers": None if step.layers is None else list(step.layers),
            "rank": max((int(m.lora_A.shape[0]) for m in adapters.values()), default=None),
            "adapted": list(adapters) or None}


def _per_tile_peak(program, graph, plan, optimize: bool, solver: str, c: dict, streamed: bool = False) -> int:
    """The L2 peak of the same step with im2col built per L1 tile (no whole-layer scratch in L2),
    reported beside the toolchain's placement. A step with no scratch buffer has the same plan.
    ``streamed``: the frozen prefix is streamed depth-first here too (``stream.py``, when that
    lowers this placement's peak), as in the step itself."""
    if not any(s.kind == "scratch" for s in graph.storages):
        return int(plan.peak)
    tiled = narrow(build_graph(program, rewrites=optimize, l2_scratch=False), c["precision"])
    if streamed:
        stream_frozen(tiled, int(c["frozen_stream_tiles"]))
    if program.frozen:
        spill_frozen(tiled, int(c["l2_budget_bytes"]), int(c["l3_staging_bytes"]))
    return int(plan_memory(tiled, solver=solver, time_limit_s=float(c["cpsat_time_limit_s"]),
                           max_cpsat_items=int(c["cpsat_max_tensors"])).peak)


def _plan_check(model, graph, plan, check: bool | None, small: bool) -> dict | None:
    """Execute the planned step on one flat buffer against eager PyTorch (``check=None``: only a
    ``small`` step, one of at most ``check_max_macs`` MACs)."""
    if not (small if check is None else check):
        return None
    from .execute import check_plan

    return check_plan(model, graph, plan).to_dict()


def _check_request(backend: str, strategy: str) -> None:
    """Refuse a backend or strategy the simulator cannot cost, before any tracing."""
    if backend == "gap9-board":
        raise NotImplementedError(
            "backend 'gap9-board' (measuring on a real GAP9 board) is not implemented; use backend='gap9-sim'"
        )
    if backend not in BACKENDS:
        raise ValueError(f"unknown device backend {backend!r}; choose one of {list(BACKENDS)}")
    if strategy not in COSTED_STRATEGIES:
        raise ValueError(
            f"unknown strategy {strategy!r} for a device estimate; choose one of {list(COSTED_STRATEGIES)}"
            + (" ('none' trains nothing, so it has no training step to cost)" if strategy == "none" else "")
        )


def _memory_fields(graph, plan, cost, c: dict, fits_l2: bool, fits_l1: bool) -> dict:
    """L2 plan and L1 working set against their budgets, and what is live at the L2 peak."""
    t_peak = plan.lower_bound_t
    return dict(
        peak_l2_bytes=int(plan.peak),
        lower_bound_l2_bytes=int(plan.lower_bound),
        planner_overhead=round(plan.overhead, 4),
        l2_budget_bytes=int(c["l2_budget_bytes"]),
        peak_l1_bytes=int(cost.peak_l1_bytes),
        peak_l1_op=cost.peak_l1_op,
        l1_budget_bytes=int(c["l1_budget_bytes"]),
        fits_l2=fits_l2,
        fits_l1=fits_l1,
        fits_on_chip=fits_l2 and fits_l1,
        breakdown=breakdown_at(graph, t_peak),
        dominant_tensors=dominant_at(graph, t_peak, 8),
    )


def _planner_summary(program, graph, plan, spilled: int, optimize: bool) -> dict:
    """How the plan was reached: rewrites applied, solver and its status, sizes of the problem."""
    return {"rewrites": program.rematerialized if optimize else "off", "method": plan.method, "status": plan.status,
            "solve_s": round(plan.solve_s, 4), "best_fit_peak_bytes": int(plan.heuristic_peak),
            "n_tensors": len(graph.storages), "n_ops": len(graph.ops), "inplace_reuses": graph.inplace_merges,
            "l3_spilled_bytes": int(spilled),
            "peak_at_op": graph.ops[plan.lower_bound_t].node.name if graph.ops else ""}


def _time_and_energy_fields(plan, cost, c: dict, batch_size: int, session: dict, fits_l2: bool, fits_l1: bool) -> dict:
    """Latency, power and energy of the step and the session; the timed figures only when it fits."""
    fits = fits_l2 and fits_l1
    latency_ms = cost.cycles / (float(c["freq_mhz"]) * 1e3)
    pm = power_model(cost.activity, latency_ms / 1e3, c)
    parts = energy_breakdown_mj(cost.activity, latency_ms / 1e3, c)
    values = _time_and_energy(latency_ms, pm, batch_size, session) if fits else dict.fromkeys(TIMED)
    detail = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in pm.items()
              if k not in ("power_mw", "power_mw_low", "power_mw_high")}
    return dict(power_mw=pm["power_mw"], power_mw_low=pm["power_mw_low"], power_mw_high=pm["power_mw_high"],
                power_detail=detail, session=session, energy_breakdown_mj=parts if fits else {},
                message="fits on chip" if fits else _why_not(plan, cost, c, fits_l2, fits_l1), **values)


def _work_fields(cost, c: dict) -> dict:
    """MACs and cycles of the step, by kernel, part and phase, at the chip's operating point."""
    return dict(
        macs_per_step=int(cost.macs),
        cycles_per_step=float(cost.cycles),
        cycles_by_kernel={k: round(v) for k, v in sorted(cost.cycles_by_kernel.items(), key=lambda kv: -kv[1])},
        cycles_by_part={k: round(v) for k, v in cost.cycles_by_part.items()},
        cycles_by_phase={k: round(v) for k, v in cost.cycles_by_phase.items()},
        freq_mhz=float(c["freq_mhz"]),
        voltage_v=float(c["voltage_v"]),
        l1_tiles=cost.tiles,
        activity={k: round(v) for k, v in cost.activity.items()},
    )
