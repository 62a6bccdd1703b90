"""One adaptation task of the study: a scenario for one subject, strategy and seed, or for K
such tasks of one architecture trained together (:func:`.batched.adapt_many`).

Pure functions over arrays and models (no Prefect, no MLflow), so they can be tested on
in-memory data and wrapped by any orchestrator. The single-task scenarios are the K=1 case of
the ``*_many`` ones, so both evaluate and build rows the same way.
"""

from __future__ import annotations

import copy

import numpy as np

from ..strategy_table import n_trained
from .batched import adapt_many
from .finetune import FinetuneConfig, adapt
from .training import accuracy


def _row(context: dict, session: str, scenario: str, n_calib: int, n_test: int, before: float, after: float, seconds: float,
         trained: int) -> dict:
    return {
        **context, "session": session, "scenario": scenario, "n_calib": n_calib, "n_test": n_test,
        "acc_before": round(float(before), 6), "acc_after": round(float(after), 6),
        "train_seconds": round(float(seconds), 3), "trained_params": int(trained),
    }


def one_at_a_time(adapt_fn=adapt):
    """``adapt_fn`` (one model) in ``adapt_many``'s form (a list of models)."""
    def adapt_all(models, Xs, ys, strategy, cfg, seeds):
        return [adapt_fn(m, X, y, strategy, cfg, s) for m, X, y, s in zip(models, Xs, ys, seeds)]
    return adapt_all


def _session(models, Xs, ys, splits, strategy, cfg, seeds, contexts, scenario, adapt_all) -> list[dict]:
    """One session of every task: accuracy before, adapt all models in one call, accuracy after."""
    calibs = [np.asarray(s["calib"]) for s in splits]
    tests = [np.asarray(s["test"]) for s in splits]
    before = [accuracy(m, X[t], y[t]) for m, X, y, t in zip(models, Xs, ys, tests)]
    trained = [n_trained(m, strategy, cfg.sparse_layers, cfg.lora_rank) for m in models]
    infos = adapt_all(models, [X[c] for X, c in zip(Xs, calibs)], [y[c] for y, c in zip(ys, calibs)],
                      strategy, cfg, seeds)
    after = [accuracy(m, X[t], y[t]) for m, X, y, t in zip(models, Xs, ys, tests)]
    return [_row(ctx, s["session"], scenario, info.n_calib, len(t), b, a, info.train_seconds, n)
            for ctx, s, info, t, b, a, n in zip(contexts, splits, infos, tests, before, after, trained)]


def run_day1_many(models, Xs, ys, folds, strategy: str, cfg: FinetuneConfig, seeds: list[int], contexts: list[dict],
                  adapt_all=adapt_many):
    """Adapt a copy of each pretrained ``models[k]`` on its first session's calibration part, all
    in one ``adapt_all`` call. Returns one row per task and the adapted models."""
    models = [copy.deepcopy(m) for m in models]
    rows = _session(models, Xs, ys, [f["day1"] for f in folds], strategy, cfg, seeds, contexts, "day1", adapt_all)
    return rows, models


def run_longitudinal_many(models, Xs, ys, folds, strategy: str, cfg: FinetuneConfig, seeds: list[int],
                          contexts: list[dict], adapt_all=adapt_many) -> list[list[dict]]:
    """Chain every task through its later sessions: session k of all tasks that have one adapts in
    one call (seed ``seed + 1000 * k``), each from its own previous model. Rows per task."""
    models = [copy.deepcopy(m) for m in models]
    rows: list[list[dict]] = [[] for _ in models]
    for k in range(1, 1 + max((len(f["longitudinal"]) for f in folds), default=0)):
        live = [i for i, f in enumerate(folds) if len(f["longitudinal"]) >= k]
        out = _session([models[i] for i in live], [Xs[i] for i in live], [ys[i] for i in live],
                       [folds[i]["longitudinal"][k - 1] for i in live], strategy, cfg,
                       [seeds[i] + 1000 * k for i in live], [contexts[i] for i in live], "longitudinal", adapt_all)
        for i, row in zip(live, out):
            rows[i].append(row)
    return rows


def run_day1(model, X: np.ndarray, y: np.ndarray, fold: dict, strategy: str, cfg: FinetuneConfig, seed: int, context: dict,
             adapt_fn=adapt):
    """Adapt a copy of the pretrained ``model`` on the first session's calibration part.

    Returns the result row and the adapted model (the start of the longitudinal chain).
    ``adapt_fn`` runs the fine-tuning (PyTorch by default; the device program with ``device.execute``).
    """
    rows, models = run_day1_many([model], [X], [y], [fold], strategy, cfg, [seed], [context], one_at_a_time(adapt_fn))
    return rows[0], models[0]


def run_longitudinal(model, X: np.ndarray, y: np.ndarray, fold: dict, strategy: str, cfg: FinetuneConfig, seed: int, context: dict,
                     adapt_fn=adapt) -> list[dict]:
    """Chain through the later sessions: each adapts the previous session's model."""
    return run_longitudinal_many([model], [X], [y], [fold], strategy, cfg, [seed], [context], one_at_a_time(adapt_fn))[0]
