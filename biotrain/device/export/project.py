"""Write a self-contained C99 project for one captured training step and its memory plan.

Files: ``kernels.c/.h`` and ``prof.h`` (the project's own kernels, copied from this package),
``step.c/.h`` (generated: the arena, the state table and one function per phase), ``main.c``
(the training loop), ``Makefile`` (host / rv32 / qemu / gap9), ``gap9/`` (PMSIS glue),
``init_state.bin``, ``samples.bin``, ``schedule.bin`` (the data) and ``meta.json`` (what the
runner needs to rebuild the PyTorch reference).
"""

from __future__ import annotations

import json
import shutil
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..capture import capture_step, with_strategy_layers
from ..constants import load_constants
from ..execute import persistent_state
from ..memory import MemoryPlan, StepGraph, build_graph, plan_memory
from ..sixteen import narrow
from .codegen import KINDS, StepCodegen

STATIC_FILES = ("kernels.c", "kernels.h", "prof.h", "rtl.h", "main.c", "cores.c", "start.S", "store16.c", "store16.h",
                "Makefile")
GAP9_FILES = ("Makefile.gap9", "gap9_main.c", "README.md")


def plan_step(model: nn.Module, strategy: str, batch_size: int = 8, micro_batch: int | None = None,
              accum: int | None = None, hparams: dict | None = None, solver: str = "auto", optimize: bool = True,
              layers: tuple[str, ...] | None = None, precision: str = "fp32"):
    """The same capture, graph and plan that ``estimate_step(program="exported")`` reports: this
    project's program, no L2 im2col scratch (``optimize``: the memory rewrites, on by default as in
    ``estimate_step``). One difference: the frozen prefix of a ``last_layer`` step is not streamed
    depth-first (the C export has no tile loops yet), so this is the plan ``estimate_step`` reports
    with ``constants={"frozen_stream": False}``. ``layers``: what ``sparse`` trains; a ``lora`` model
    must carry its adapters already (``capture.with_strategy_layers``). ``precision``: bf16/fp16
    storages take 2 bytes (``sixteen.narrow``), placed as the fp32 step's are."""
    c = load_constants(program="exported")
    program = capture_step(model, strategy, batch_size, micro_batch, accum, hparams=hparams, remat=optimize,
                           layers=layers)
    graph = narrow(build_graph(program, rewrites=optimize), precision)
    plan = plan_memory(graph, solver=solver, time_limit_s=float(c["cpsat_time_limit_s"]),
                       max_cpsat_items=int(c["cpsat_max_tensors"]))
    return program, graph, plan


def _l1_config(budget: int | None = None) -> dict:
    """The L1 the tiles must fit: gap9.yaml's budget (or ``budget``), resident-size rule and double
    buffering."""
    c = load_constants(program="exported")
    small = int(c["l1_fixed_small_bytes"]) if budget is None else min(int(c["l1_fixed_small_bytes"]), budget // 8)
    return {"budget": int(budget or c["l1_budget_bytes"]), "small": small,
            "double_buffer": bool(c["l1_double_buffer"])}


def _adapter_rank(model: nn.Module) -> int | None:
    """The rank ``lora`` adapters were made with (the largest layer's; None without adapters)."""
    from ...models.lora import LoRA

    ranks = [int(m.lora_A.shape[0]) for m in model.modules() if isinstance(m, LoRA)]
    return max(ranks) if ranks else None


def default_data(model: nn.Module, program, steps: int, seed: int = 0):
    """Initial state (model weights, a non-zero momentum so the optimizer state is exercised),
    random samples and a schedule of ``steps`` steps at the configured learning rate."""
    g = torch.Generator().manual_seed(seed)
    state = persistent_state(model, program, g)
    n = steps * program.batch_size
    x = torch.randn((n, model.n_chans, model.n_times), generator=g)
    y = torch.randint(0, int(model.n_outputs), (n,), generator=g)
    lr = float(program.hparams["lr"])
    schedule = [(lr, list(range(s * program.batch_size, (s + 1) * program.batch_size))) for s in range(steps)]
    return state, x.numpy(), y.numpy(), schedule


def write_samples(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
    with open(path, "wb") as f:
        f.write(struct.pack("<ii", x.shape[0], x.shape[1]))
        f.write(x.tobytes())
        f.write(np.ascontiguousarray(y, dtype=np.int64).tobytes())


def write_schedule(path: Path, schedule: list) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<i", len(schedule)))
        for lr, idx in schedule:
            f.write(struct.pack("<fi", float(lr), len(idx)))
            f.write(np.asarray(idx, dtype=np.int32).tobytes())


def read_schedule(path: Path) -> list:
    data = Path(path).read_bytes()
    (n,), pos, out = struct.unpack_from("<i", data, 0), 4, []
    for _ in range(n):
        lr, k = struct.unpack_from("<fi", data, pos)
        pos += 8
        out.append((lr, np.frombuffer(data, np.int32, k, pos).tolist()))
        pos += 4 * k
    return out


def read_samples(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = Path(path).read_bytes()
    n, f = struct.unpack_from("<ii", data, 0)
    x = np.frombuffer(data, np.float32, n * f, 8).reshape(n, f)
    y = np.frombuffer(data, np.int64, n, 8 + 4 * n * f)
    return x, y


def state_table(program, graph: StepGraph, plan: MemoryPlan) -> list[dict]:
    """Persistent state in file order: name, arena offset, bytes, shape, dtype."""
    out = []
    for name, spec in program.states.items():
        if spec.kind == "input":
            continue
        sid = graph.state_storage[name]
        dtype = graph.storages[sid].dtype  # bfloat16/float16 in a 16-bit program
        nb = torch.Size(spec.shape).numel() * torch.empty((), dtype=dtype).element_size()
        out.append({"name": name, "kind": spec.kind, "offset": int(plan.offsets[sid]), "nbytes": int(nb),
                    "shape": list(spec.shape), "dtype": str(dtype).replace("torch.", "")})
    return out


def write_state(path: Path, table: list[dict], state: dict) -> None:
    with open(path, "wb") as f:
        for e in table:
            t = state[e["name"]].detach().to(getattr(torch, e["dtype"])).contiguous()
            if list(t.shape) != e["shape"]:
                raise ValueError(f"initial state {e['name']}: shape {list(t.shape)} != {e['shape']}")
            if t.element_size() == 2:  # bf16/fp16, rounded to nearest even: numpy has no bf16, write the bits
                t = t.view(torch.int16)
            f.write(t.numpy().tobytes())


def read_state(path: Path, table: list[dict]) -> dict:
    data = Path(path).read_bytes()
    out, pos = {}, 0
    for e in table:
        n = int(np.prod(e["shape"])) if e["shape"] else 1
        if e["dtype"] in ("bfloat16", "float16"):  # a 16-bit program's state, read back as fp32
            bits = torch.from_numpy(np.frombuffer(data, np.int16, n, pos).copy())
            value = bits.view(getattr(torch, e["dtype"])).float()
        else:
            value = torch.from_numpy(np.frombuffer(data, np.float32 if e["dtype"] == "float32" else np.int64, n,
                                                   pos).copy())
        out[e["name"]] = value.reshape(e["shape"])
        pos += e["nbytes"]
    if pos != len(data):
        raise ValueError(f"{path}: {len(data)} bytes, the state table needs {pos}")
    return out


def _step_h(program, cg: StepCodegen, table: list[dict], sample_floats: int) -> str:
    store16 = {"fp32": 0, "bf16": 1, "fp16": 2}[cg.precision]
    lines = [
        "/* Generated by biotrain device export: constants and entry points of the step. */",
        "#ifndef BT_STEP_H", "#define BT_STEP_H", "", "#include <stdint.h>", "",
        f"#define BT_STORE16 {store16} /* arena values: 0 fp32, 1 bf16, 2 fp16 (store16.h) */",
        '#include "kernels.h"', '#include "prof.h"', '#include "store16.h"', "",
        f"#define BT_ARENA_BYTES {cg.arena_bytes}",
        f"#define BT_L1_BYTES {max(8, cg.l1_bytes)} /* the L1 region of the kernels' tiles (0 used: L1 off) */",
        f"#define BT_BATCH {program.batch_size}",
        f"#define BT_MICRO_BATCH {program.micro_batch}",
        f"#define BT_ACCUM {program.accum}",
        f"#define BT_SAMPLE_FLOATS {sample_floats}",
        f"#define BT_N_STATES {len(table)}", "",
        "typedef struct { const char *name; uint32_t off; uint32_t nbytes; } bt_state_t;",
        "typedef struct { float lr; float scale; const int32_t *idx; } run_t;", "",
        "extern uint8_t bt_arena[BT_ARENA_BYTES];",
        "extern const bt_state_t bt_states[BT_N_STATES];",
        "extern const char *const bt_kind_names[BT_N_KINDS];", "",
        "/* provided by main.c: copy the current micro-batch from the sample store into the arena */",
        "void load_x(const run_t *r, l2t_t dst);",
        "void load_y(const run_t *r, int64_t *dst, int n);", "",
        "/* one optimizer step over the samples idx[0..n); returns its loss (NaN if n does not fit) */",
        "float bt_train_step(run_t *r, const int32_t *idx, int n);", "",
        "/* main.c: the training loop in parts (the GAP9 entry point runs bt_run_steps on the cluster) */",
        "void bt_load_inputs(void);", "void bt_run_steps(void);", "int bt_check_losses(void);",
        "void bt_write_outputs(void);", "void bt_exit(int code);",
        "void bt_start_workers(void); /* cores.c: release the other cores once the inputs are loaded */", "void fail(const char *what, int code);", "",
        "#endif", "",
    ]
    return "\n".join(lines)


def _step_c(program, cg: StepCodegen, body: str, table: list[dict], plan: MemoryPlan, extra=()) -> str:
    states = ",\n".join(f'    {{"{e["name"]}", {e["offset"]}u, {e["nbytes"]}u}}' for e in table)
    kinds = ", ".join(f'"{k}"' for k in KINDS)
    head = [
        "/* Generated by biotrain device export from the captured training step and its static",
        f" * memory plan: strategy {program.strategy}, batch {program.batch_size} = {program.accum} x micro-batch "
        f"{program.micro_batch}.",
        f" * Arena: {cg.arena_bytes} bytes (plan peak {plan.peak}, lower bound {plan.lower_bound}, {plan.method}).",
        " * Every tensor is a strided view at its planned offset: TEN(byte offset, sizes..., strides...). */",
        "#include <math.h>", "#include <stddef.h>", "", '#include "step.h"', "",
        "#if defined(BT_GAP9)",
        "PI_L2 uint8_t bt_arena[BT_ARENA_BYTES] __attribute__((aligned(8)));",
        "#else",
        "uint8_t bt_arena[BT_ARENA_BYTES] __attribute__((aligned(8)));",
        "#endif",
        "#if defined(BT_GAP9)",
        "PI_CL_L1 uint8_t bt_l1[BT_L1_BYTES] __attribute__((aligned(8)));",
        "#else",
        "uint8_t bt_l1[BT_L1_BYTES] __attribute__((aligned(8)));",
        "#endif",
        "const uint32_t bt_l1_bytes = BT_L1_BYTES;", "",
        "#define TEN(off, d0, d1, d2, d3, s0, s1, s2, s3) \\",
        f"    ((l2t_t){{({'float' if cg.esz == 4 else 'uint16_t'} *)(bt_arena + (off)), {{d0, d1, d2, d3}}, "
        "{s0, s1, s2, s3}})", "",
        f"const bt_state_t bt_states[BT_N_STATES] = {{\n{states}\n}};",
        f"const char *const bt_kind_names[BT_N_KINDS] = {{{kinds}}};", "",
    ]
    names = [ph.name for ph in program.phases]
    if program.accum > 1:
        loop = [
            "float bt_train_step(run_t *r, const int32_t *idx, int n)", "{",
            "    if (n < BT_MICRO_BATCH || n % BT_MICRO_BATCH || n / BT_MICRO_BATCH > BT_ACCUM) return NAN;",
            "    const int micro_steps = n / BT_MICRO_BATCH;",
            "    float loss = 0.0f;",
            "    r->scale = 1.0f / (float)micro_steps; /* the loss of each micro-batch counts 1/micro_steps */",
            "    for (int m = 0; m < micro_steps; m++) {",
            "        r->idx = idx + m * BT_MICRO_BATCH;",
            f"        loss += phase_{names[0]}(r);",
            "    }",
            f"    phase_{names[1]}(r); /* weight decay, momentum, update; accumulators zeroed */",
            "    return loss;", "}", "",
        ]
    else:
        loop = ["float bt_train_step(run_t *r, const int32_t *idx, int n)", "{", "    r->idx = idx;",
                f"    if (n == BT_BATCH) return phase_{names[0]}(r);"]
        for bs, prefix in extra:  # the same step for another batch size (a partial last batch)
            loop.append(f"    if (n == {bs}) return phase_{prefix}{names[0]}(r);")
        loop += ["    return NAN;", "}", ""]
    return "\n".join(head) + "\n" + body + "\n" + "\n".join(loop)


def export_project(out_dir, model: nn.Module, strategy: str, *, batch_size: int = 8, micro_batch: int | None = None,
                   accum: int | None = None, hparams: dict | None = None, model_spec: dict | None = None,
                   steps: int = 3, seed: int = 0, state: dict | None = None, samples=None, schedule=None,
                   plan_hook=None, solver: str = "auto", extra_batch_sizes=None, optimize: bool = True,
                   layers: tuple[str, ...] | None = None, rank: int | None = None, l1_tiles: bool = True,
                   l1_budget: int | None = None, precision: str = "fp32") -> dict:
    """Write the C project into ``out_dir``; returns its ``meta.json`` content.

    ``state``/``samples`` (x [n, C, T], y [n])/``schedule`` ([(lr, indices)] per step) default to
    :func:`default_data`. ``plan_hook(graph, plan)`` may alter the plan before code generation (tests
    break a plan on purpose with it). ``extra_batch_sizes``: the same step also generated for these
    batch sizes (with their own plan, same persistent state), for a partial last batch.
    ``layers``: the layers ``sparse`` trains; ``rank``: ``lora``'s adapter rank for a model without
    adapters (they are added to a copy, seed 0; a model with adapters is exported as it is). The
    program trains only what the strategy trains; a ``lora`` program computes ``W + B @ A`` itself.
    ``l1_tiles``: every kernel computes on L1 copies of its operands, streamed in tiles that fit
    ``l1_budget_bytes`` (``export.l1``; ``l1_budget`` overrides it: small shapes tile under a small
    budget); False: the kernels read and write the L2 arena in place. ``precision``: bf16/fp16
    store every floating-point tensor of the arena in 2 bytes and compute in fp32 on the L1 copies
    (``store16.h``; the tiles must be on); fp16 scales the backward by the loss scale."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = with_strategy_layers(model, strategy, rank)
    program, graph, plan = plan_step(model, strategy, batch_size, micro_batch, accum, hparams, solver, optimize,
                                     layers, precision)
    if plan_hook is not None:
        plan_hook(graph, plan)
    l1 = _l1_config(l1_budget) if l1_tiles else None
    cg = StepCodegen(graph, plan, l1=l1, precision=precision)
    body = cg.generate()
    table = state_table(program, graph, plan)
    extra = []
    for bs in sorted(set(extra_batch_sizes or ()) - {program.batch_size}):
        if program.accum != 1:
            raise ValueError("extra batch sizes are for single-phase programs (accum 1); "
                             "accumulating programs take partial batches as fewer micro-batches")
        p2, g2, plan2 = plan_step(model, strategy, bs, bs, 1, hparams, solver, optimize, layers, precision)
        if state_table(p2, g2, plan2) != table:
            raise ValueError(f"the plan for batch {bs} places the persistent state differently")
        cg2 = StepCodegen(g2, plan2, prefix=f"b{bs}_", l1=l1, precision=precision)
        body += "\n" + cg2.generate()
        cg.arena_bytes = max(cg.arena_bytes, cg2.arena_bytes)
        cg.l1_bytes = max(cg.l1_bytes, cg2.l1_bytes)
        extra.append((bs, f"b{bs}_"))
    sample_floats = int(model.n_chans) * int(model.n_times)
    (out / "step.h").write_text(_step_h(program, cg, table, sample_floats))
    (out / "step.c").write_text(_step_c(program, cg, body, table, plan, extra))
    src = resources.files("biotrain.device.export") / "c"
    for name in STATIC_FILES:
        (out / name).write_text((src / name).read_text())
    (out / "gap9").mkdir(exist_ok=True)
    for name in GAP9_FILES:
        (out / "gap9" / name).write_text((src / "gap9" / name).read_text())
    d_state, d_x, d_y, d_sched = default_data(model, program, steps, seed)
    state = d_state if state is None else {**d_state, **state}
    x, y = (d_x, d_y) if samples is None else samples
    schedule = d_sched if schedule is None else schedule
    write_state(out / "init_state.bin", table, state)
    write_samples(out / "samples.bin", np.asarray(x), np.asarray(y))
    write_schedule(out / "schedule.bin", schedule)
    meta = {
        "model": model_spec or {},
        "strategy": strategy,
        "precision": precision,
        "batch_size": program.batch_size,
        "micro_batch": program.micro_batch,
        "accum": program.accum,
        "hparams": program.hparams,
        "trainable": program.trainable,
        "layers": None if program.layers is None else list(program.layers),
        "rank": _adapter_rank(model),
        "states": table,
        "arena_bytes": cg.arena_bytes,
        "plan": {"peak": plan.peak, "lower_bound": plan.lower_bound, "method": plan.method},
        "kinds": list(KINDS),
        "ops": cg.ops_emitted,
        "l1": None if l1 is None else {"budget_bytes": l1["budget"], "bytes": cg.l1_bytes,
                                       "tiled_calls": sum(1 for c in cg.l1_calls if max(c["tiles"], default=1) > 1),
                                       "calls": len(cg.l1_calls), "max_tiles": max((max(c["tiles"], default=1)
                                                                                    for c in cg.l1_calls), default=0),
                                       "dma_bytes_per_step_program": sum(c["dma_bytes"] for c in cg.l1_calls)},
        "sample_floats": sample_floats,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(out / "build", ignore_errors=True)
    return meta
