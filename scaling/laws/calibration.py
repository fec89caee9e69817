"""Prediction intervals that cover the truth, measured: how wrong the law was when it predicted
one budget ahead.

A bootstrap over the runs gives the uncertainty of the law's constants, not its misfit beyond
them; at a budget it never saw, a law is also wrong by how much its form bends away from the
data, which no resampling of the same points shows. Here the
misfit is measured the way the prediction is used: the points are grouped into levels of the
law's budget (C, binned; for a one-variable law, that variable), and for every level past the
first `min_levels` the law fitted on the lower levels predicts it. The log errors of those
predictions (measured/predicted) are the calibration: the 95% interval at a new budget is the
prediction times exp(their mean ± t·sd·√(1 + 1/n)), the interval of one more such error.

`coverage` checks this out of sample: each level is predicted from the levels below it, with an
interval calibrated on those lower levels only, and counted in or out.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from scaling.errors import UserError
from scaling.laws.approaches import bin_budgets
from scaling.laws.registry import Law, fit_law, predict

MIN_ERRORS = 8        # fewer one-ahead errors than this: no calibrated interval


def budget_key(law: Law, columns: dict) -> tuple[str, np.ndarray]:
  """The quantity whose levels a law extrapolates along: C (the CSV's compute, else 6·N·D;
  Kaplan 2020 §2.1) for a law of N and D, else the law's first column."""
  if set(law.columns) >= {"N", "D"}:
    if "C" in columns:
      return "C", np.asarray(columns["C"], float)
    return "C", 6.0 * np.asarray(columns["N"], float) * np.asarray(columns["D"], float)
  return law.columns[0], np.asarray(columns[law.columns[0]], float)


MAX_LEVELS = 12      # points of (nearly) all different budgets are grouped into this many


def levels(values: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
  """Each point's level: its value, binned within ±tolerance (approaches.bin_budgets); where
  that leaves more than MAX_LEVELS levels (budgets that are all different), equal widths in
  log value, each level at its points' geometric mean."""
  values = np.asarray(values, float)
  binned = bin_budgets(values, tolerance)
  if len(np.unique(binned)) <= MAX_LEVELS:
    return binned
  logs = np.log(values)
  edges = np.linspace(logs.min(), logs.max(), MAX_LEVELS + 1)
  index = np.clip(np.searchsorted(edges, logs, side="right") - 1, 0, MAX_LEVELS - 1)
  out = np.empty_like(values)
  for i in np.unique(index):
    out[index == i] = math.exp(float(np.mean(logs[index == i])))
  return out


def _subset(columns: dict, keep: np.ndarray, names) -> dict:
  return {c: np.asarray(columns[c])[keep] for c in names}


def _fits(law: Law, columns: dict, y: np.ndarray) -> bool:
  return len(y) > law.n_params and all(len(np.unique(columns[c])) > 1 for c in law.varying)


def ahead_errors(law: Law, columns: dict, y: np.ndarray, level: np.ndarray,
                 min_levels: int = 3) -> list[float]:
  """log(measured/predicted) of every point at each level past the first min_levels, predicted
  by the law fitted on the levels below it."""
  y = np.asarray(y, float)
  steps = np.unique(level)
  errors: list[float] = []
  for j in range(min_levels, len(steps)):
    below, at = level < steps[j], level == steps[j]
    train = _subset(columns, below, law.columns)
    if not _fits(law, train, y[below]):
      continue
    try:
      params, _, _ = fit_law(law, train, y[below])
    except (UserError, ValueError, FloatingPointError, np.linalg.LinAlgError):
      continue
    pred = predict(law, params, _subset(columns, at, law.columns))
    errors += [float(e) for e in np.log(y[at] / pred) if math.isfinite(e)]
  return errors


def interval(pred: float, errors) -> tuple[float, float] | None:
  """The calibrated 95% interval of a prediction: the mean log error ± Student's t quantile ×
  their standard deviation × √(1 + 1/n), the interval for one more draw of the same errors
  (a percentile of a few errors would be their range, too narrow); None with too few errors."""
  lo, hi = log_bounds(errors) or (None, None)
  if lo is None:
    return None
  return float(pred * math.exp(lo)), float(pred * math.exp(hi))


def log_bounds(errors) -> tuple[float, float] | None:
  errors = np.asarray(errors, float)
  if errors.size < MIN_ERRORS:
    return None
  half = stats.t.ppf(0.975, errors.size - 1) * errors.std(ddof=1) * math.sqrt(1 + 1 / errors.size)
  return float(errors.mean() - half), float(errors.mean() + half)


def summary(errors) -> dict:
  errors = np.asarray(errors, float)
  if errors.size == 0:
    return {"n_errors": 0}
  bounds = log_bounds(errors)
  return {"n_errors": int(errors.size), "log_error_95": list(bounds) if bounds else None,
          "mean_abs_rel_error": float(np.mean(np.abs(np.expm1(errors))))}


def coverage(law: Law, columns: dict, y: np.ndarray, level: np.ndarray,
             min_levels: int = 3) -> dict:
  """Out of sample: each level j predicted from the levels below it, its interval calibrated by
  ahead_errors on those levels only. Counts the points inside, and the mean absolute error."""
  y = np.asarray(y, float)
  steps = np.unique(level)
  inside = total = inside_scatter = 0
  abs_errors, uncalibrated = [], 0
  for j in range(min_levels + 2, len(steps)):
    below, at = level < steps[j], level == steps[j]
    train = _subset(columns, below, law.columns)
    try:
      params, _, _ = fit_law(law, train, y[below])
    except (UserError, ValueError, FloatingPointError, np.linalg.LinAlgError):
      continue
    errs = ahead_errors(law, train, y[below], level[below], min_levels)
    scatter = np.log(y[below] / predict(law, params, train))   # the fit's own residuals
    pred = predict(law, params, _subset(columns, at, law.columns))
    for p, measured in zip(pred, y[at]):
      abs_errors.append(abs(p / measured - 1))
      iv = interval(float(p), errs)
      if iv is None:
        uncalibrated += 1
        continue
      total += 1
      inside += int(iv[0] <= measured <= iv[1])
      lo, hi = np.percentile(scatter, [2.5, 97.5])
      inside_scatter += int(p * math.exp(lo) <= measured <= p * math.exp(hi))
  return {"inside": inside, "total": total, "uncalibrated": uncalibrated,
          "inside_residual_scatter_only": inside_scatter,
          "mean_abs_rel_error": float(np.mean(abs_errors)) if abs_errors else math.nan}


def holdout_check(law: Law, columns: dict, y: np.ndarray, level: np.ndarray, k: int,
                  min_levels: int = 3) -> list[dict]:
  """The law fitted without the k largest levels, predicting their points: measured against
  predicted, and whether each lies inside its calibrated 95% interval."""
  y = np.asarray(y, float)
  steps = np.unique(level)
  if len(steps) < min_levels + k:
    raise UserError(f"--holdout-budgets {k} needs at least {min_levels + k} budget levels, "
                    f"got {len(steps)}")
  held = level >= steps[-k]
  train = _subset(columns, ~held, law.columns)
  params, _, _ = fit_law(law, train, y[~held])
  errs = ahead_errors(law, train, y[~held], level[~held], min_levels)
  test = _subset(columns, held, law.columns)
  pred = predict(law, params, test)
  out = []
  for i in range(int(held.sum())):
    iv = interval(float(pred[i]), errs)
    out.append({**{c: float(test[c][i]) for c in law.columns}, "level": float(level[held][i]),
                "measured": float(y[held][i]), "predicted": float(pred[i]),
                "rel_error": float(pred[i] / y[held][i] - 1),
                "interval": list(iv) if iv else None,
                "interval_kind": ("calibrated: the errors of predicting one budget ahead "
                                  f"({len(errs)} points)" if iv else
                                  "none: too few budgets below to calibrate"),
                "inside_interval": bool(iv and iv[0] <= y[held][i] <= iv[1])})
  return out
