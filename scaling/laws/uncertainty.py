"""Bootstrap intervals over runs (Efron 1979, percentile intervals) and the held-out
extrapolation check (fit without the largest sizes, predict them)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from scaling.errors import UserError
from scaling.laws.fit import check_inputs
from scaling.laws.registry import Law, fit_law, predict


def percentile_interval(samples, level: float = 0.95) -> tuple[float, float]:
  samples = np.asarray([s for s in samples if np.isfinite(s)], float)
  if samples.size == 0:
    return (math.nan, math.nan)
  lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
  return (float(lo), float(hi))


def bootstrap(fit_once: Callable[[np.ndarray], dict], n_points: int, n_boot: int, seed: int = 0,
              groups: np.ndarray | None = None, min_unique: int = 2) -> list[dict]:
  """Refits on resamples of the points (runs) with replacement; `groups` resamples within each
  group (IsoFLOP budgets). Resamples whose fit fails are dropped, and counted in the result."""
  if groups is None and n_points <= min_unique:
    return []   # every usable resample is the data itself: no interval can be had
  rng = np.random.default_rng(seed)
  results = []
  for _ in range(n_boot):
    if groups is None:
      idx = rng.integers(0, n_points, n_points)
    else:
      idx = np.concatenate([rng.choice(np.flatnonzero(groups == g), (groups == g).sum())
                            for g in np.unique(groups)])
    if len(np.unique(idx)) < min_unique:
      continue
    try:
      results.append(fit_once(idx))
    except (UserError, ValueError, FloatingPointError, OverflowError, np.linalg.LinAlgError):
      continue
  return results


def intervals(samples: list[dict], level: float = 0.95) -> dict[str, tuple[float, float]]:
  keys = samples[0].keys() if samples else []
  return {k: percentile_interval([s[k] for s in samples], level) for k in keys}


def bootstrap_law(law: Law, columns: dict, y: np.ndarray, n_boot: int, seed: int = 0,
                  derived: Callable[[dict], dict] | None = None,
                  start: dict | None = None) -> list[dict]:
  """Bootstrap samples of a law's parameters (and of derived quantities, if given). A law with a
  `refit` starts each resample from `start` (the central fit) instead of searching again."""
  y = np.asarray(y, float)

  def once(idx):
    sub = {c: np.asarray(columns[c])[idx] for c in law.columns}
    if law.refit is not None and start is not None:
      check_inputs(sub, y[idx], law.n_params, law.varying)
      params, _, _ = law.refit(start, *(np.asarray(sub[c], float) for c in law.columns), y[idx])
    else:
      params, _, _ = fit_law(law, sub, y[idx])
    return {**params, **(derived(params) if derived else {})}

  return bootstrap(once, len(y), n_boot, seed, min_unique=law.n_params + 1)


def extrapolation_check(law: Law, columns: dict, y: np.ndarray, key: str, holdout: int = 1,
                        n_boot: int = 200, seed: int = 0) -> list[dict]:
  """Fits on all points but those with the `holdout` largest values of `key`, predicts those;
  returns per held-out point its measured and predicted loss, relative error and whether the
  measured loss lies inside the 95% prediction interval: the bootstrap predictions (parameter
  uncertainty) each times a residual of the fit drawn at random (the points' own scatter about
  the law, in log space); with no bootstrap, the residual scatter alone."""
  y = np.asarray(y, float)
  keys = np.asarray(columns[key], float)
  levels = np.unique(keys)
  if len(levels) <= holdout + 1:
    raise UserError(f"an extrapolation check holding out {holdout} largest {key} needs at least "
                    f"{holdout + 2} distinct {key} values, got {len(levels)}")
  held = keys >= levels[-holdout]
  train_cols = {c: np.asarray(columns[c])[~held] for c in law.columns}
  test_cols = {c: np.asarray(columns[c])[held] for c in law.columns}
  params, _, _ = fit_law(law, train_cols, y[~held])
  pred = predict(law, params, test_cols)
  resid = np.log(y[~held]) - np.log(predict(law, params, train_cols))
  samples = bootstrap_law(law, train_cols, y[~held], n_boot, seed, start=params)
  if samples:
    preds = np.array([predict(law, s, test_cols) for s in samples])
    draws = preds * np.exp(np.random.default_rng(seed).choice(resid, size=preds.shape))
    kind = "prediction interval: parameters (bootstrap) and residual scatter"
  else:
    draws = pred[None, :] * np.exp(resid[:, None])
    kind = "prediction interval: residual scatter only (no bootstrap)"
  out = []
  for i in range(int(held.sum())):
    lo, hi = percentile_interval(draws[:, i])
    out.append({**{c: float(test_cols[c][i]) for c in law.columns}, "measured": float(y[held][i]),
                "predicted": float(pred[i]), "rel_error": float(pred[i] / y[held][i] - 1),
                "interval": [lo, hi], "interval_kind": kind,
                "inside_interval": bool(lo <= y[held][i] <= hi)})
  return out
