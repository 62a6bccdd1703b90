"""The strategy options ``device estimate`` and ``device export`` share: ``--rank`` (lora),
``--layers`` and ``--budget-kb`` (sparse), and the one function that turns them into a step's
layers and rank."""

from __future__ import annotations

import argparse

from ..adaptation.finetune import FinetuneConfig


def add_strategy_options(p: argparse.ArgumentParser) -> None:
    """``--rank`` (lora), ``--layers`` and ``--budget-kb`` (sparse): shared by estimate and export."""
    p.add_argument("--rank", type=int, default=None,
                   help=f"lora: the adapters' rank (default: {FinetuneConfig.lora_rank}, adapt.lora.rank)")
    p.add_argument("--layers", default=None, metavar="A,B",
                   help="sparse: the layers to train besides the classifier (models.layers names)")
    p.add_argument("--budget-kb", type=float, default=None, metavar="N",
                   help="sparse: pick the layers, deepest first, while the step's peak L2 stays within N kB "
                        f"(1 kB = 1000 B; default when --layers is not given: {FinetuneConfig.sparse_budget_kb:g}, "
                        "adapt.sparse.budget_kb)")


def strategy_choice(args: argparse.Namespace, model, peak_of=None) -> tuple[tuple | None, int | None, dict | None]:
    """(layers, rank, how the layers were picked) from ``--layers``/``--budget-kb``/``--rank``.

    ``sparse`` without ``--layers`` picks them under ``--budget-kb`` (``adaptation.sparse``: no layer
    scores here, so the deepest layer first, the order whose backward stops earliest); ``peak_of(layers)``
    is the step's peak L2 in bytes. Bad values are one error naming the option and what is allowed."""
    from ..adaptation.sparse import pick_order, select_layers
    from ..models.layers import weight_layers
    from .capture import check_strategy_args

    layers = None
    if args.layers is not None:
        layers = tuple(n.strip() for n in args.layers.split(",") if n.strip())
        if not layers:
            raise ValueError(f"--layers={args.layers!r} names no layer; allowed: {', '.join(weight_layers(model))}")
    if args.budget_kb is not None and args.strategy != "sparse":
        raise ValueError(f"--budget-kb is for strategy 'sparse' (its peak-L2 budget), not {args.strategy!r}")
    if args.budget_kb is not None and layers is not None:
        raise ValueError("give --layers or --budget-kb, not both: --budget-kb picks the layers")
    rank = args.rank if args.rank is not None or args.strategy != "lora" else FinetuneConfig.lora_rank
    check_strategy_args(model, args.strategy, layers, rank, layers_key="--layers", rank_key="--rank")
    picked = None
    if args.strategy == "sparse" and layers is None:
        budget = FinetuneConfig.sparse_budget_kb if args.budget_kb is None else args.budget_kb
        if not budget > 0:
            raise ValueError(f"--budget-kb={budget!r}: a peak-L2 budget must be a positive number of kB")
        order = pick_order(list(weight_layers(model)), None)
        layers = select_layers(order, peak_of, int(budget * 1000), key="--budget-kb")
        picked = {"budget_kb": budget, "order": order, "chosen": list(layers)}
    return layers, rank, picked
