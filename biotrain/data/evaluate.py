"""How hard a cohort is, measured the way MOABB measures real datasets.

A standard decoder per paradigm, run by MOABB's own evaluations: within-session (5-fold CV
inside a session), cross-session (train on the other sessions, test on one) and cross-subject
(train on the other subjects). Their scores are comparable with MOABB's published benchmark for
real datasets, so they tell whether the embedded cohort is as hard as real recordings:

- motor imagery (``LeftRightImagery``, 8-32 Hz): CSP + LDA, scored by ROC-AUC as MOABB does;
- eye movements (:class:`~biotrain.data.paradigms.EyeMovement`, 11 classes): the epoch at
  100 Hz averaged in 0.2 s bins and flattened, shrinkage LDA, scored by accuracy (MOABB has no
  eye-movement benchmark; this decoder is fast, where an xDAWN-covariance tangent-space pipeline
  took minutes on the cohort).

Cross-subject trains on every other subject's sessions, cross-session on the subject's other
sessions: with few subjects or sessions the amount of training data, not only the drift, decides
their order (``tests/data/test_evaluate.py`` says which sizes keep it).

The scores of the default study's cohort, beside MOABB's published ones for real datasets, are in
``docs/synthetic.md`` ("How hard the embedded cohort is").
"""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis as LDA
from sklearn.pipeline import make_pipeline

EVALUATIONS = ("within-session", "cross-session", "cross-subject")


class Decimate(BaseEstimator, TransformerMixin):
    """(n, C, T) epochs -> (n, C * (T // step)): the mean of each run of ``step`` samples (a ragged tail is dropped)."""

    def __init__(self, step: int = 20):
        self.step = step

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = np.asarray(X)
        n, c, t = X.shape
        t = t - t % self.step
        return X[:, :, :t].reshape(n, c, t // self.step, self.step).mean(axis=3).reshape(n, -1)


def pipelines_for(paradigm_name: str) -> dict:
    """The standard decoder of a paradigm, by the name MOABB's results will carry."""
    if paradigm_name == "imagery":
        from pyriemann.estimation import Covariances
        from pyriemann.spatialfilters import CSP

        # as MOABB's benchmark pipeline (pipelines/CSP.yml): OAS covariances, 6 CSP filters, LDA
        return {"CSP+LDA": make_pipeline(Covariances(estimator="oas"), CSP(nfilter=6), LDA(solver="svd"))}
    if paradigm_name == "eog":
        # the epoch at 100 Hz averaged in 0.2 s bins (36 features), shrinkage LDA
        return {"Bins+sLDA": make_pipeline(Decimate(20), LDA(solver="lsqr", shrinkage="auto"))}
    raise ValueError(f"no standard decoder for paradigm {paradigm_name!r}; use 'imagery' or 'eog'")


def paradigm_for(dataset):
    """MOABB's left/right-hand imagery paradigm (8-32 Hz, resampled to 128 Hz) or biotrain's eye movements."""
    if dataset.paradigm == "imagery":
        from moabb.paradigms import LeftRightImagery

        paradigm = LeftRightImagery(fmin=8, fmax=32, resample=128)
    elif dataset.paradigm == "eog":
        from .paradigms import EyeMovement

        paradigm = EyeMovement(fmin=0.5, fmax=40.0, resample=100)
    else:
        raise ValueError(f"dataset {dataset.code} has paradigm {dataset.paradigm!r}; use an 'imagery' or 'eog' one")
    if not paradigm.is_valid(dataset):
        raise ValueError(f"dataset {dataset.code} is not valid for {type(paradigm).__name__}")
    return paradigm


def evaluate_difficulty(dataset, evaluations=EVALUATIONS, random_state: int = 0) -> pd.DataFrame:
    """One row per (evaluation, subject, session) with MOABB's ``score`` (and the pipeline's name)."""
    from moabb.evaluations import CrossSessionEvaluation, CrossSubjectEvaluation, WithinSessionEvaluation

    by_name = {"within-session": WithinSessionEvaluation, "cross-session": CrossSessionEvaluation,
               "cross-subject": CrossSubjectEvaluation}
    unknown = [e for e in evaluations if e not in by_name]
    if unknown:
        raise ValueError(f"evaluations {unknown} are not known; use some of {list(EVALUATIONS)}")
    paradigm, pipelines = paradigm_for(dataset), pipelines_for(dataset.paradigm)
    frames = []
    with tempfile.TemporaryDirectory(prefix="biotrain-moabb-") as results:
        for name in evaluations:
            evaluation = by_name[name](paradigm=paradigm, datasets=[dataset], overwrite=True, hdf5_path=results,
                                       random_state=random_state, verbose="ERROR")
            frame = evaluation.process(pipelines)
            frames.append(frame.assign(evaluation=name))
    return pd.concat(frames, ignore_index=True)


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of the score per evaluation (over subjects and sessions)."""
    table = scores.groupby(["dataset", "pipeline", "evaluation"])["score"].agg(["mean", "std", "count"])
    return table.reindex(EVALUATIONS, level="evaluation")
