"""The loss frontier of an isoFLOP sweep: the lowest loss reached at each budget, as a law in C,
and what it predicts for the compute-optimal model at a budget past the sweep.

    L*(C) = E + k·(C/C_ref)^−γ      (Henighan et al. 2020, arXiv 2010.14701, §1: a power
                                     law in compute plus a constant, the irreducible loss)

L*(C) at a budget is the minimum of approach 2's parabola in log N there (Hoffmann 2022 §3.2);
C_ref is the geometric mean of the fitted budgets (it only conditions the fit). For the
Chinchilla form E + A/N^α + B/D^β with C ∝ N·D the frontier is exactly this law, with
γ = αβ/(α + β).

Only the upper budgets are fitted: all but the two lowest of the n budgets whose profile has a
minimum, and at least FRONTIER_MIN_BUDGETS. The law's slope in log-log, −γ(L* − E)/L*, can only
flatten as C grows; a designed sweep's lowest budgets sit just past the change of phase
(scaling/design/planner.py), where the frontier still steepens, which no E fits: over every budget
the fitted E goes to 0 and the law keeps the steepest slope it saw. On the generated corpus the
slope steepens over the first two budgets' steps and flattens from the third on; fitted from the
third, the held-out error at 3× the largest budget and the bootstrap interval were smaller than from
the upper half (docs/results/2026-12-06-designed-isoflop-default-corpus.md).

The interval comes from the same residual bootstrap as approach 2 (the parabolas' residuals,
pooled, added back at the design's sizes), each resample's minima refitted.

Legend: C budget (FLOP), L* the loss of a budget's parabola minimum (nats/token).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from scaling.errors import UserError
from scaling.laws.approaches import residual_bootstrap
from scaling.laws.uncertainty import percentile_interval

FRONTIER_MIN_BUDGETS = 4
LOWER_LEFT_OUT = 2                # the budgets nearest the change of phase


def profile_minima(compute, log_n, loss, budgets) -> np.ndarray:
  """L* of each budget: the minimum of the parabola in log N through its points (nan where it
  has fewer than 3 sizes or opens downward)."""
  out = np.full(len(budgets), math.nan)
  for i, c in enumerate(budgets):
    sel = compute == c
    if len(np.unique(log_n[sel])) < 3:
      continue
    p2, p1, p0 = np.polyfit(log_n[sel], loss[sel], 2)
    if p2 > 0:
      out[i] = p0 - p1 * p1 / (4 * p2)
  return out


def upper(n_budgets: int) -> int:
  """How many of the largest budgets the frontier is fitted to."""
  return max(FRONTIER_MIN_BUDGETS, n_budgets - LOWER_LEFT_OUT)


def fit_law(cs, minima, start: dict | None = None) -> dict:
  """E, k, γ, C_ref of L* = E + k·(C/C_ref)^−γ, least squares in log L*; 0 ≤ E < min L*.
  From three starting offsets, or from `start` alone (a bootstrap resample's refit)."""
  cs, minima = np.asarray(cs, float), np.asarray(minima, float)
  c_ref = float(np.exp(np.mean(np.log(cs))))
  x = np.log(cs / c_ref)
  top = 0.999 * float(minima.min())

  def resid(p):
    return np.log(p[0] + np.exp(p[1] - p[2] * x)) - np.log(minima)

  if start:
    starts = [[min(start["E"], 0.99 * top), math.log(start["k"]), start["gamma"]]]
  else:                                         # the offset is where a local optimum can hide
    starts = [[e0, math.log(max(float(np.exp(np.mean(np.log(minima)))) - e0, 1e-6)), 0.3]
              for e0 in (0.0, 0.5 * top, 0.9 * top)]
  best = None
  for x0 in starts:
    res = optimize.least_squares(resid, x0, bounds=([0.0, -50.0, 1e-4], [top, 50.0, 5.0]))
    if best is None or res.cost < best.cost:
      best = res
  e, lnk, gamma = (float(v) for v in best.x)
  return {"E": e, "k": math.exp(lnk), "gamma": gamma, "C_ref": c_ref}


def predict(p: dict, c: float) -> float:
  return p["E"] + p["k"] * (c / p["C_ref"]) ** -p["gamma"]


def fit_frontier(compute, n, loss, n_boot: int = 200, seed: int = 0) -> dict:
  """The frontier law fitted to the upper budgets' parabola minima, with bootstrap samples of
  its constants; UserError when fewer than FRONTIER_MIN_BUDGETS budgets have a minimum."""
  compute, log_n, loss = (np.asarray(compute, float), np.log(np.asarray(n, float)),
                          np.asarray(loss, float))
  budgets = np.unique(compute)
  minima = profile_minima(compute, log_n, loss, budgets)
  ok = np.flatnonzero(np.isfinite(minima))
  if ok.size < FRONTIER_MIN_BUDGETS:
    raise UserError(f"the loss frontier needs {FRONTIER_MIN_BUDGETS} budgets whose profile has a "
                    f"minimum, this sweep has {ok.size}")
  used = ok[-upper(ok.size):]
  central = fit_law(budgets[used], minima[used])
  keep = np.isin(compute, budgets[used])

  def refit(y):
    m = profile_minima(compute[keep], log_n[keep], y, budgets[used])
    if not np.all(np.isfinite(m)):
      raise ValueError("a resampled profile without a minimum")
    return fit_law(budgets[used], m, start=central)

  samples = residual_bootstrap(compute[keep], log_n[keep], loss[keep], budgets[used], n_boot,
                               seed, refit)
  slopes = np.diff(np.log(minima[ok])) / np.diff(np.log(budgets[ok]))
  return {"params": central, "budgets": budgets[used].tolist(), "minima": minima[used].tolist(),
          "all_budgets": budgets[ok].tolist(), "all_minima": minima[ok].tolist(),
          "local_slopes": slopes.tolist(), "n_boot": len(samples), "samples": samples,
          "intervals": {k: percentile_interval([q[k] for q in samples]) for k in ("E", "gamma")}}


def at(fr: dict, c: float) -> tuple[float, tuple[float, float]]:
  """The frontier's loss at budget c and its 95 % bootstrap interval."""
  return predict(fr["params"], c), percentile_interval([predict(q, c) for q in fr["samples"]])
