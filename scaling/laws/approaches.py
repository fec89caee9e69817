"""Chinchilla Approaches 1 and 2, Kaplan's compute-efficient frontier and the B_crit(L) law.

Approach 3 (the parametric fit) is the `chinchilla` law in registry.py.
"""

from __future__ import annotations

import math

import numpy as np

from scaling.errors import UserError
from scaling.laws import fit
from scaling.laws.optimum import isoflop_vertex
from scaling.laws.uncertainty import bootstrap, intervals


def envelope(curves: list[dict], n_grid: int = 40, span: str = "common") -> dict[str, np.ndarray]:
  """Lower envelope of learning curves (Hoffmann 2022 §3.1; Kaplan 2020 §6.1 frontier).

  curves: one dict per run with 'N' and arrays 'C' (cumulative FLOP) and 'loss' (smoothed).
  At each of n_grid log-spaced compute values, the run with the lowest loss (interpolated in
  log C) among those whose curve covers that C wins; returns C, loss, N and D = C/(6N) of the
  winners. The grid starts where every curve has begun (span "common", learning curves from the
  first step) or where at least two curves overlap (span "covered", end-point curves that start
  at different budgets), and ends at the last C of any curve (common) or of the second-longest
  (covered).
  """
  if len(curves) < 2:
    raise UserError(f"an envelope needs learning curves of at least 2 runs, got {len(curves)}")
  starts = sorted(np.min(c["C"][c["C"] > 0]) for c in curves)
  ends = sorted(np.max(c["C"]) for c in curves)
  lo, hi = (starts[-1], ends[-1]) if span == "common" else (starts[1], ends[-2])
  if hi <= lo:
    raise UserError("the curves do not overlap in compute; an envelope needs overlapping runs")
  grid = np.logspace(math.log10(lo), math.log10(hi), n_grid)
  best_loss = np.full(n_grid, np.inf)
  best_n = np.full(n_grid, np.nan)
  for c in curves:
    log_c = np.log(np.asarray(c["C"], float))
    inside = (grid >= np.min(c["C"])) & (grid <= np.max(c["C"]))
    loss = np.interp(np.log(grid), log_c, np.asarray(c["loss"], float))
    better = inside & (loss < best_loss)
    best_loss[better], best_n[better] = loss[better], c["N"]
  ok = np.isfinite(best_loss)
  return {"C": grid[ok], "loss": best_loss[ok], "N": best_n[ok], "D": grid[ok] / (6 * best_n[ok])}


def fit_envelope(curves: list[dict], n_boot: int = 200, seed: int = 0) -> dict:
  """Approach 1: N_opt ∝ C^a and D_opt ∝ C^b from the envelope; plus L(C) on the frontier."""
  env = envelope(curves)
  if len(np.unique(env["N"])) < 2:
    raise UserError("one run forms the whole envelope; train models spanning more sizes")

  def once(curve_idx):
    e = envelope([curves[i] for i in curve_idx]) if curve_idx is not None else env
    a, n_coef = fit.fit_loglinear(e["C"], e["N"])
    b, d_coef = fit.fit_loglinear(e["C"], e["D"])
    alpha_c, c_c = fit.fit_power_law(e["C"], e["loss"])
    return {"a": a, "N_coef": n_coef, "b": b, "D_coef": d_coef, "alpha_C": alpha_c, "C_c": c_c}

  central = once(None)
  samples = bootstrap(once, len(curves), n_boot, seed, min_unique=2)
  return {"params": central, "intervals": intervals(samples), "n_boot": len(samples),
          "envelope": {k: v.tolist() for k, v in env.items()}}


def bin_budgets(compute, tolerance: float) -> np.ndarray:
  """Each point's budget: its own C when tolerance is 0; else points are grouped, in increasing
  C, into bins spanning a factor (1 + tolerance)² (C within ±tolerance of the bin's geometric
  centre), and each takes its bin's geometric-mean C. Published points (e.g. read off a figure)
  never share one exact C; a parabola per bin then treats its C as one budget."""
  compute = np.asarray(compute, float)
  if tolerance < 0 or not math.isfinite(tolerance):
    raise UserError(f"--budget-tolerance must be a non-negative number, got {tolerance}")
  if tolerance == 0:
    return compute
  order = np.argsort(compute)
  budget = np.empty_like(compute)
  start = 0
  for i in range(1, len(order) + 1):
    if i == len(order) or compute[order[i]] > compute[order[start]] * (1 + tolerance) ** 2:
      members = order[start:i]
      budget[members] = math.exp(np.mean(np.log(compute[members])))
      start = i
  return budget


def fit_isoflop(compute, n, loss, n_boot: int = 200, seed: int = 0,
                tolerance: float = 0.0, resample: str = "cases", flop_per_token=None) -> dict:
  """Approach 2 (Hoffmann 2022 §3.2): a parabola in log N per budget, its vertex N_opt(C), then
  N_opt ∝ C^a and D_opt = C/F(N_opt) ∝ C^b, F(N) = 6N unless flop_per_token is given (a FLOP
  count with attention and unembedding). Budgets are the points' C, binned within
  ±tolerance when it is above 0 (bin_budgets). The bootstrap resamples within each budget either
  the points ("cases": points gathered from elsewhere) or the parabolas' residuals, pooled over
  budgets, added back at the same sizes ("residuals": a designed sweep, whose sizes are fixed by
  the design; case resampling of 5–7 designed sizes leaves many resamples with 3–4 distinct
  sizes, whose parabola says more about the resampling than about the data)."""
  compute, n, loss = (np.asarray(v, float) for v in (compute, n, loss))
  fit.check_inputs({"C": compute, "N": n}, loss, 0, ())
  flop_per_token = flop_per_token or (lambda n_params: 6.0 * n_params)
  raw_compute = compute
  compute = bin_budgets(compute, tolerance)
  groups = [{"C": float(c), "points": int((compute == c).sum()),
             "C_range": [float(raw_compute[compute == c].min()),
                         float(raw_compute[compute == c].max())]} for c in np.unique(compute)]
  left_out = _unusable_budgets(compute, n, loss)
  if left_out:   # a thin or minimum-less budget is left out, named; the others are fitted
    keep = ~np.isin(compute, [b["C"] for b in left_out])
    compute, n, loss = compute[keep], n[keep], loss[keep]
  budgets = np.unique(compute)
  if len(budgets) < 2:
    why = "; ".join(f"C={b['C']:.3g}: {b['reason']}" for b in left_out)
    raise UserError("IsoFLOP needs at least 2 compute budgets with a minimum"
                    + (f" ({len(budgets)} left after leaving out {why})" if left_out else "")
                    + ("; points of unequal C can be binned with --budget-tolerance, e.g. 0.25"
                       if not tolerance and sum(b["points"] == 1 for b in left_out) > len(left_out) / 2
                       else ""))

  def once(idx, y=loss):
    cs, n_opts, inside = [], [], []
    for c in budgets:
      sel = idx[compute[idx] == c]
      if len(np.unique(n[sel])) < 3:
        raise ValueError("too few sizes in a resampled budget")
      v, ok = isoflop_vertex(np.log(n[sel]), y[sel])
      if not math.isfinite(v) or abs(v) > 700:     # no minimum, or one beyond float range
        raise ValueError("profile without a minimum")
      cs.append(c)
      n_opts.append(math.exp(v))
      inside.append(ok)
    a, n_coef = fit.fit_loglinear(cs, n_opts)
    d_opts = np.asarray(cs) / flop_per_token(np.asarray(n_opts))
    b, d_coef = fit.fit_loglinear(cs, d_opts)
    return {"a": a, "N_coef": n_coef, "b": b, "D_coef": d_coef}, n_opts, inside

  central, n_opts, inside = once(np.arange(len(loss)))
  if resample == "residuals":
    samples = residual_bootstrap(compute, np.log(n), loss, budgets, n_boot, seed,
                                  lambda y: once(np.arange(len(y)), y)[0])
  else:
    samples = bootstrap(lambda idx: once(idx)[0], len(loss), n_boot, seed, groups=compute)
  return {"params": central, "intervals": intervals(samples), "n_boot": len(samples),
          "n_boot_requested": n_boot,
          "budgets": budgets.tolist(), "N_opt": n_opts, "vertex_inside_range": inside,
          "budget_tolerance": tolerance, "left_out": left_out, "budget_groups": groups,
          "flags": interval_flags(central, intervals(samples), len(samples), n_boot),
          "bootstrap_samples": samples[:1000],
          "points_per_budget": [int((compute == c).sum()) for c in budgets]}


def interval_flags(central: dict, ci: dict, kept: int, requested: int) -> list[str]:
  """The intervals wider than the points can support, said in words: an exponent's interval
  wider than 0.5 or reaching 0 or below, a coefficient's spanning more than a factor 1e3, or
  most bootstrap resamples without an answer."""
  flags = []
  for k in ("a", "b"):
    lo, hi = ci.get(k, (math.nan, math.nan))
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo > 0.5 or lo <= 0:
      flags.append(f"{k}'s interval [{lo:.3g}, {hi:.3g}] is wider than these points can "
                   "support: treat it as undetermined")
  for k in ("N_coef", "D_coef"):
    lo, hi = ci.get(k, (math.nan, math.nan))
    if not (math.isfinite(lo) and math.isfinite(hi) and lo > 0) or hi / lo > 1e3:
      flags.append(f"{k}'s interval [{lo:.3g}, {hi:.3g}] spans more than a factor 1000")
  if requested and kept < requested / 2:
    flags.append(f"only {kept} of {requested} bootstrap resamples gave an answer")
  return flags


def _unusable_budgets(compute, n, loss) -> list[dict]:
  """The budgets a parabola cannot use: fewer than 3 sizes, or a profile without a minimum."""
  out = []
  for c in np.unique(compute):
    sel = compute == c
    sizes = len(np.unique(n[sel]))
    if sizes < 3:
      out.append({"C": float(c), "points": int(sel.sum()),
                  "reason": f"{sizes} model size{'s' if sizes != 1 else ''}, a parabola needs 3"})
      continue
    v, _ = isoflop_vertex(np.log(n[sel]), loss[sel])
    if not math.isfinite(v) or abs(v) > 700:
      out.append({"C": float(c), "points": int(sel.sum()),
                  "reason": "its profile has no minimum (the loss does not turn up on either "
                            "side)"})
  return out


def residual_bootstrap(compute, log_n, loss, budgets, n_boot: int, seed: int, fit_y) -> list:
  """Residual bootstrap of the parabolas: each budget's fitted profile plus residuals drawn with
  replacement from those of every budget, pooled (rescaled by √(n/(n − 3·budgets)) for the
  three constants fitted per budget), refitted by fit_y. Pooled, not per budget: with five sizes
  a budget's own residuals have 2 degrees of freedom, so its noise level is a guess that the
  √(5/2) rescaling then inflates; the pooled set has 2 per budget."""
  rng = np.random.default_rng(seed)
  fitted, resid = np.empty_like(loss), np.empty_like(loss)
  for c in budgets:
    sel = compute == c
    coef = np.polyfit(log_n[sel], loss[sel], 2)
    fitted[sel] = np.polyval(coef, log_n[sel])
    resid[sel] = loss[sel] - fitted[sel]
  resid *= math.sqrt(resid.size / max(resid.size - 3 * len(budgets), 1))
  samples = []
  for _ in range(n_boot):
    y = fitted + rng.choice(resid, resid.size)
    try:
      samples.append(fit_y(y))
    except (UserError, ValueError, FloatingPointError, np.linalg.LinAlgError):
      continue
  return samples


def fit_bcrit(loss, b_crit_tokens, n_boot: int = 1000, seed: int = 0,
              keep_samples: bool = False) -> dict:
  """Kaplan 2020 eq. 1.4 in log space: log B_crit = log B* − (1/α_B)·log L (with the bootstrap
  samples when keep_samples, for intervals of derived values)."""
  loss, b = np.asarray(loss, float), np.asarray(b_crit_tokens, float)
  fit.check_inputs({"B_crit": b}, loss, 2, ("B_crit",))

  def once(idx):
    slope, coef = fit.fit_loglinear(loss[idx], b[idx])
    if slope >= 0:
      raise ValueError("B_crit does not fall with loss")
    return {"alpha_B": -1.0 / slope, "B_star": coef}

  central = once(np.arange(len(loss)))
  # With 3 points every resample with 3 distinct points is the original set: no interval.
  samples = bootstrap(once, len(loss), n_boot, seed, min_unique=3) if len(loss) >= 4 else []
  ci = intervals(samples) if samples else {k: (math.nan, math.nan) for k in central}
  out = {"params": central, "intervals": ci, "n_boot": len(samples)}
  return {**out, "samples": samples} if keep_samples else out
