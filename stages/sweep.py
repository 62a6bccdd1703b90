"""Stage-level entry ``sweep`` (``python -m stages.sweep``, after ``dvc repro pretrain``): a grid of
adaptation settings over the cohort, as one Prefect flow; not part of ``dvc repro``.

The grid (``sweep.grid``: any of strategy, seed, lr, epochs, momentum, weight_decay,
batch_size, micro_batch, calib_size) multiplies the study's jobs. Each sweep is one MLflow
experiment (``sweep-<name>``) with one parent run and one child run per scenario of a job, the
grid point in each child's params. Interrupted? Run the same command again: finished tasks come
back from the cache, the MLflow parent run is resumed, and results are written only at the end.
"""

from __future__ import annotations

from biotrain.errors import UserError
from biotrain.params import load_study
from biotrain.report.sweep import write_sweep
from biotrain.study import AdaptSettings, plan_study
from flows.adapt_cohort import run_adapt_cohort
from stages.common import read_folds, run_main, stage_args, study_paths


def main() -> None:
    args = stage_args(__doc__, "windows", "splits", "models", "sweeps", "sweep-reports")
    config, paths = load_study(args.params, datasets=False), study_paths(args)
    if config.sweep is None:
        raise UserError("params have no `sweep` section (name and grid): nothing to sweep")
    missing = [str(paths.splits_of(m)) for m in config.data.modalities if not paths.splits_of(m).exists()]
    if missing:
        raise UserError(f"{', '.join(missing)} missing: run `dvc repro pretrain` before a sweep")
    config = config.for_sweep()
    jobs = plan_study(config, paths, read_folds(config, paths), grid=config.sweep.grid)
    rows, _ = run_adapt_cohort(jobs, AdaptSettings.of(config), config.tracking, config.runner,
                               run_name=f"sweep-{config.sweep.name}")
    out = write_sweep(rows, config.sweep.grid, args.sweeps / f"{config.sweep.name}.csv",
                      args.sweep_reports / f"{config.sweep.name}.md")
    print(f"sweep {config.sweep.name}: {len(jobs)} jobs, {len(rows)} rows -> {out}; "
          f"MLflow experiment {config.tracking.experiment}")


if __name__ == "__main__":
    run_main(main, "sweep")
