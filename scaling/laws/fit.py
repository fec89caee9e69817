"""Fitting the laws: log-space least squares, variable projection, Chinchilla's Huber procedure.

Every fitter takes the input columns and the losses and returns (params, converged, message). The
pure power laws are linear in log space and solved exactly. Forms with several additive terms use
variable projection: for fixed exponents the coefficients enter linearly and are solved by
non-negative least squares on relative residuals, so only the exponents are searched (a grid, then
a bounded optimizer), and the result is polished by least squares on log residuals.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import optimize

from scaling.errors import UserError


def check_inputs(columns: dict[str, np.ndarray], y: np.ndarray, n_params: int,
                 varying: tuple[str, ...]) -> None:
  """Refuses inputs that would give a silent nonsense fit."""
  for name, values in {**columns, "loss": y}.items():
    values = np.asarray(values, float)
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
      i = int(np.flatnonzero(bad)[0])
      raise UserError(f"{name} must be positive and finite; point {i} has {name}={float(values[i])}")
  if len(y) <= n_params:
    raise UserError(f"{len(y)} points are too few to fit {n_params} parameters; "
                    f"give at least {n_params + 1}")
  for name in varying:
    if len(np.unique(columns[name])) < 2:
      raise UserError(f"all points have the same {name}; the law needs {name} to vary")


def check_no_duplicates(columns: dict[str, np.ndarray], y: np.ndarray) -> None:
  """Refuses identical input rows (a copied run counts twice). Only for the data as given:
  bootstrap resamples repeat rows by design."""
  rows = np.column_stack([np.asarray(v, float) for v in (*columns.values(), y)])
  _, first, counts = np.unique(rows, axis=0, return_index=True, return_counts=True)
  if (counts > 1).any():
    i = int(first[np.flatnonzero(counts > 1)[0]])
    j = [k for k in range(len(rows)) if k != i and (rows[k] == rows[i]).all()][0]
    raise UserError(f"points {i} and {j} are identical ({', '.join(f'{n}={rows[i][c]:.6g}' for c, n in enumerate([*columns, 'loss']))}); "
                    "a copied row would count twice: remove the duplicate")


# ---------------------------------------------------------------------------------------------
# Pure power law y = (X_c / x)^α, exact in log space.


def _line(u, v) -> tuple[float, float]:
  """(slope, intercept) of v on u by least squares; nan, nan when u has no spread (a bootstrap
  resample that drew one x only)."""
  u, v = np.asarray(u, float), np.asarray(v, float)
  du = u - u.mean()
  sxx = float(du @ du)
  if not sxx > 1e-12 * max(1.0, float(u @ u)):
    return math.nan, math.nan
  slope = float(du @ (v - v.mean())) / sxx
  return slope, float(v.mean() - slope * u.mean())


def fit_power_law(x, y) -> tuple[float, float]:
  """log y = α·log X_c − α·log x: returns (α, X_c) by least squares in log space."""
  slope, intercept = _line(np.log(x), np.log(y))
  alpha = -slope
  if alpha == 0:
    return 0.0, math.nan
  log_xc = intercept / alpha
  # A nearly flat curve puts X_c beyond float range: report it as infinite, not an error.
  return float(alpha), (math.exp(log_xc) if log_xc < 709 else math.inf)


def fit_loglinear(x, y) -> tuple[float, float]:
  """y = k·x^e: returns (e, k) by least squares in log space (allocation laws, B_crit)."""
  slope, intercept = _line(np.log(x), np.log(y))
  # A resample with a vertex far outside its sizes can put k beyond float range: infinite.
  return float(slope), (math.exp(intercept) if intercept < 709 else math.inf)


# ---------------------------------------------------------------------------------------------
# Variable projection for sums of power laws.


def _nnls_rel(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
  """Non-negative coefficients minimizing Σ((design·c − y)/y)²; returns (c, sse)."""
  w = 1.0 / y
  coef, rnorm = optimize.nnls(design * w[:, None], np.ones_like(y))
  return coef, float(rnorm ** 2)


def _varpro(exps_to_design, y, bounds, grid_sizes):
  """Grid search + bounded refinement over exponents of the VarPro objective."""
  grids = [np.linspace(lo, hi, k) for (lo, hi), k in zip(bounds, grid_sizes)]
  best = (math.inf, None)
  for exps in itertools.product(*grids):
    _, sse = _nnls_rel(exps_to_design(np.array(exps)), y)
    if sse < best[0]:
      best = (sse, np.array(exps))
  res = optimize.minimize(lambda e: _nnls_rel(exps_to_design(e), y)[1], best[1],
                          method="L-BFGS-B", bounds=bounds)
  exps = res.x if res.fun <= best[0] else best[1]
  coef, sse = _nnls_rel(exps_to_design(exps), y)
  return exps, coef, sse


def _polish_log(residual_fn, x0, lower, upper):
  """Least squares on log residuals from x0; returns (x, converged, message)."""
  x0 = np.clip(x0, np.asarray(lower) + 1e-12, np.asarray(upper) - 1e-12)
  res = optimize.least_squares(residual_fn, x0, bounds=(lower, upper), x_scale="jac",
                               xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
  grad_norm = float(np.linalg.norm(res.jac.T @ res.fun)) if res.jac.size else 0.0
  converged = bool(res.success) and grad_norm < 1e-5 * max(1.0, len(res.fun))
  msg = "" if converged else f"least squares stopped: {res.message} (|grad| {grad_norm:.2g})"
  return res.x, converged, msg


def fit_power_law_e(x, y) -> tuple[dict, bool, str]:
  """L = E + K·x^(−α), K = X_c^α: VarPro over α, then log-space polish. Returns (E, α, X_c)."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  design = lambda e: np.stack([np.ones_like(x), x ** -e[0]], axis=1)
  exps, coef, _ = _varpro(design, y, [(1e-3, 3.0)], [120])
  log_k0 = math.log(max(coef[1], 1e-300))

  def residual(p):
    e, log_k, alpha = p
    return np.log(e + np.exp(log_k - alpha * np.log(x))) - np.log(y)

  p, ok, msg = _polish_log(residual, [coef[0], log_k0, exps[0]],
                           [0.0, -700.0, 1e-4], [y.min(), 700.0, 5.0])
  e, log_k, alpha = p
  return {"E": float(e), "alpha": float(alpha), "X_c": float(math.exp(log_k / alpha))}, ok, msg


def fit_kaplan_nd(n, d, y, irreducible: bool = False) -> tuple[dict, bool, str]:
  """Kaplan 2020 eq. 1.5, in log space from starts at the single-variable fits."""
  n, d, y = (np.asarray(v, float) for v in (n, d, y))
  log_n, log_d, log_y = np.log(n), np.log(d), np.log(y)

  def residual(p):
    log_nc, log_dc, a_n, a_d = p[:4]
    e = p[4] if irreducible else 0.0
    with np.errstate(over="ignore"):  # far-off trial points overflow to inf: a large residual
      inner = np.exp((a_n / a_d) * (log_nc - log_n)) + np.exp(log_dc - log_d)
      return np.log(e + inner ** a_d) - log_y

  lower = [-50.0, -50.0, 1e-3, 1e-3] + ([0.0] if irreducible else [])
  upper = [150.0, 150.0, 3.0, 3.0] + ([float(y.min())] if irreducible else [])
  best = None
  for a_n, a_d, e0 in itertools.product((0.05, 0.2, 0.6), (0.05, 0.2, 0.6),
                                        (0.0, 0.5) if irreducible else (0.0,)):
    e_abs = e0 * y.min()
    scale = np.log(np.maximum(y - e_abs, 1e-9))
    log_nc0 = float(np.max(log_n + scale / a_n))
    log_dc0 = float(np.max(log_d + scale / a_d))
    x0 = [log_nc0, log_dc0, a_n, a_d] + ([e_abs] if irreducible else [])
    x, ok, msg = _polish_log(residual, x0, lower, upper)
    cost = float(np.sum(residual(x) ** 2))
    if best is None or cost < best[0]:
      best = (cost, x, ok, msg)
  _, x, ok, msg = best
  params = {"N_c": math.exp(x[0]), "D_c": math.exp(x[1]), "alpha_N": x[2], "alpha_D": x[3]}
  if irreducible:
    params["E"] = x[4]
  return {k: float(v) for k, v in params.items()}, ok, msg


def fit_ns(n, s_min, y, irreducible: bool = False) -> tuple[dict, bool, str]:
  """Kaplan 2020 eq. 1.6: VarPro over (α_N, α_S), then log-space polish."""
  n, s_min, y = (np.asarray(v, float) for v in (n, s_min, y))
  cols = (lambda e: [n ** -e[0], s_min ** -e[1]] + ([np.ones_like(y)] if irreducible else []))
  exps, coef, _ = _varpro(lambda e: np.stack(cols(e), axis=1), y, [(1e-3, 2.0), (1e-3, 2.0)],
                          [40, 40])

  def residual(p):
    pred = np.exp(p[0] - p[2] * np.log(n)) + np.exp(p[1] - p[3] * np.log(s_min))
    return np.log(pred + (p[4] if irreducible else 0.0)) - np.log(y)

  x0 = [math.log(max(coef[0], 1e-300)), math.log(max(coef[1], 1e-300)), exps[0], exps[1]]
  lower, upper = [-700.0, -700.0, 1e-4, 1e-4], [700.0, 700.0, 5.0, 5.0]
  if irreducible:
    x0, lower, upper = x0 + [coef[2]], lower + [0.0], upper + [float(y.min())]
  x, ok, msg = _polish_log(residual, x0, lower, upper)
  params = {"alpha_N": x[2], "N_c": math.exp(x[0] / x[2]), "alpha_S": x[3],
            "S_c": math.exp(x[1] / x[3])}
  if irreducible:
    params["E"] = x[4]
  return {k: float(v) for k, v in params.items()}, ok, msg


# ---------------------------------------------------------------------------------------------
# Chinchilla's parametric form (Hoffmann 2022, arXiv 2203.15556, §3.3, Approach 3).


def fit_chinchilla_varpro(n, d, y, grid: int = 24) -> tuple[dict, bool, str]:
  """E + A/N^α + B/D^β with (E, A, B) ≥ 0 solved exactly for each (α, β)."""
  n, d, y = (np.asarray(v, float) for v in (n, d, y))
  design = lambda e: np.stack([np.ones_like(y), n ** -e[0], d ** -e[1]], axis=1)
  exps, coef, _ = _varpro(design, y, [(0.01, 2.5), (0.01, 2.5)], [grid, grid])

  def residual(p):
    return np.log(p[0] + p[1] * n ** -p[3] + p[2] * d ** -p[4]) - np.log(y)

  # Polish A and B in log space so their huge dynamic range does not stall the optimizer.
  def residual_log(q):
    return residual([q[0], math.exp(q[1]), math.exp(q[2]), q[3], q[4]])

  q0 = [coef[0], math.log(max(coef[1], 1e-300)), math.log(max(coef[2], 1e-300)), *exps]
  q, ok, msg = _polish_log(residual_log, q0, [0.0, -700, -700, 1e-3, 1e-3],
                           [float(y.min()), 700, 700, 3.0, 3.0])
  if np.sum(residual_log(q) ** 2) > np.sum(residual_log(q0) ** 2):
    q = np.asarray(q0)
  params = {"E": q[0], "A": math.exp(q[1]), "B": math.exp(q[2]), "alpha": q[3], "beta": q[4]}
  return {k: float(v) for k, v in params.items()}, ok, msg


def huber(r, delta):
  a = np.abs(r)
  return np.where(a <= delta, 0.5 * r ** 2, delta * (a - 0.5 * delta))


def _lse(p, log_n, log_d):
  """(LSE(a − α·ln N, b − β·ln D, e) = ln(A/N^α + B/D^β + E) per point, and its Jacobian in
  p = (a, b, e, α, β), shape (points, 5))."""
  a, b, e, alpha, beta = p
  terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
  m = terms.max(axis=0)
  w = np.exp(terms - m)
  soft = w / w.sum(axis=0)                       # ∂LSE/∂term
  jac = np.stack([soft[0], soft[1], soft[2], -soft[0] * log_n, -soft[1] * log_d], axis=1)
  return m + np.log(w.sum(axis=0)), jac


def _huber_log_objective(n, d, y, delta: float):
  """Σ Huber_δ(LSE(a − α·ln N, b − β·ln D, e) − ln L) and its gradient in p = (a, b, e, α, β),
  A = e^a, B = e^b, E = e^e (Hoffmann 2022 app. D.2)."""
  log_n, log_d, log_y = np.log(n), np.log(d), np.log(y)

  def objective(p):
    lse, jac = _lse(p, log_n, log_d)
    r = lse - log_y
    return float(np.sum(huber(r, delta))), np.clip(r, -delta, delta) @ jac  # Huber derivative
  return objective


# Run to convergence, not to scipy's default tolerances: a Huber objective with δ = 1e-3 is
# ~1e-4 at its optimum, so the default relative ftol (2.2e-9) and gtol (1e-5) stop L-BFGS in the
# flat valley along (α, a), where the stopping point depends on the processor's rounding.
_LBFGS_TIGHT = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20_000, "maxcor": 20}


def _lbfgs(objective, starts):
  """L-BFGS from each start; the best result and whether it converged (its gradient norm)."""
  best = None
  for start in starts:
    res = optimize.minimize(objective, np.asarray(start, float), jac=True, method="L-BFGS-B",
                            options=_LBFGS_TIGHT)
    if best is None or res.fun < best.fun:
      best = res
  grad_norm = float(np.linalg.norm(best.jac))
  ok = bool(best.success) or grad_norm < 1e-6
  return best, ok, "" if ok else f"L-BFGS did not converge: {best.message} (|grad| {grad_norm:.2g})"


def _chinchilla_params(p) -> dict:
  a, b, e, alpha, beta = p
  return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": float(alpha),
          "beta": float(beta)}


def _irls_coefficients(design: np.ndarray, y: np.ndarray, delta: float, iters: int = 30):
  """(E, A, B) ≥ 0 for fixed exponents, minimizing Σ Huber_δ(log residual) by iteratively
  reweighted non-negative least squares on relative residuals (weights min(1, δ/|r|)); returns
  the coefficients and the Huber objective of their log residuals."""
  weights = np.ones_like(y)
  coef = np.zeros(design.shape[1])
  for _ in range(iters):
    sw = np.sqrt(weights) / y
    coef, _ = optimize.nnls(design * sw[:, None], np.sqrt(weights))
    pred = design @ coef
    if np.any(pred <= 0):
      return coef, math.inf
    r = np.log(pred / y)
    new = np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
    if np.allclose(new, weights, rtol=1e-6, atol=1e-9):
      break
    weights = new
  return coef, float(np.sum(huber(r, delta)))


def fit_chinchilla(n, d, y, delta: float = 1e-3, start: dict | None = None,
                   grid: int = 16) -> tuple[dict, bool, str]:
  """The default Approach 3 fit: Huber(δ) on log residuals (Hoffmann 2022 app. D.2; Besiroglu et
  al. 2024, arXiv 2404.10102), by variable projection: for each (α, β) of a grid the linear
  (E, A, B) ≥ 0 come from IRLS, the best exponents are refined, then all five constants are
  polished on the exact objective (_huber_polish). With `start` (a central fit; bootstrap
  resamples) only the polish runs, from there.""" 
  n, d, y = (np.asarray(v, float) for v in (n, d, y))
  objective = _huber_log_objective(n, d, y, delta)
  floor = 1e-6 * float(y.min())

  def as_p(q):  # (E, A, B, α, β) → (a, b, e, α, β)
    return [math.log(max(q["A"], 1e-300)), math.log(max(q["B"], 1e-300)),
            math.log(max(q["E"], floor)), q["alpha"], q["beta"]]

  searched = start is None
  if searched:
    design = lambda e: np.stack([np.ones_like(y), n ** -e[0], d ** -e[1]], axis=1)
    profile = lambda e: _irls_coefficients(design(e), y, delta)[1]
    grids = [np.linspace(0.05, 2.0, grid)] * 2
    best_e = min(itertools.product(*grids), key=profile)
    res = optimize.minimize(profile, np.array(best_e), method="Nelder-Mead",
                            options={"xatol": 1e-6, "fatol": 1e-12, "maxiter": 2000})
    exps = res.x if res.fun <= profile(best_e) else np.array(best_e)
    coef, _ = _irls_coefficients(design(exps), y, delta)
    start = {"E": coef[0], "A": coef[1], "B": coef[2], "alpha": exps[0], "beta": exps[1]}
  # A resample starts next to its optimum; on ill-conditioned data (E or α near 0) the last
  # digits can take thousands of evaluations that do not move the derived quantities.
  p, ok, msg = _huber_polish(n, d, y, as_p(start), delta, 2000 if searched else 300)
  if objective(p)[0] > objective(as_p(start))[0]:
    p = np.asarray(as_p(start))
  return _chinchilla_params(p), ok, msg


def _huber_polish(n, d, y, p0, delta: float, max_nfev: int = 2000):
  """All five constants p = (a, b, e, α, β) from p0 by trust-region least squares with a Huber
  loss of scale δ on the log residuals LSE(a − α·ln N, b − β·ln D, e) − ln L (scipy's
  loss="huber" minimizes 2·Σ Huber_δ, the same minimum; smooth subproblems, unlike L-BFGS on the
  nearly-L1 objective, which stalls at its kinks)."""
  log_n, log_d, log_y = np.log(n), np.log(d), np.log(y)
  residual = lambda p: _lse(p, log_n, log_d)[0] - log_y
  jacobian = lambda p: _lse(p, log_n, log_d)[1]
  res = optimize.least_squares(residual, np.asarray(p0, float), jac=jacobian, loss="huber",
                               f_scale=delta, x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12,
                               max_nfev=max_nfev)
  ok = bool(res.success) and res.status > 0
  return res.x, ok, "" if ok else f"Huber least squares stopped: {res.message}"


def fit_chinchilla_huber(n, d, y, delta: float = 1e-3, grid=None) -> tuple[dict, bool, str]:
  """The published procedure (Hoffmann 2022 §D.2): Huber(δ) on log residuals of
  LSE(a − α·ln N, b − β·ln D, e), L-BFGS from every point of a grid, best optimum kept. Slow
  (4,500 starts); the replication check of fit_chinchilla."""
  objective = _huber_log_objective(np.asarray(n, float), np.asarray(d, float),
                                   np.asarray(y, float), delta)
  if grid is None:  # the paper's grid: α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, …, 1}, a, b ∈ {0, 5, …, 25}
    grid = itertools.product(np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
                             np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5))
  best, ok, msg = _lbfgs(objective, grid)
  return _chinchilla_params(best.x), ok, msg


# ---------------------------------------------------------------------------------------------
# Batch-size sweeps (McCandlish et al. 2018, arXiv 1812.06162, §2.2 and eq. 2.11).


def fit_steps_examples(batch_tokens, steps) -> dict:
  """S = S_min + E_min/B (McCandlish 2018 eq. 2.11 rearranged), with S_min, E_min ≥ 0 fitted by
  non-negative least squares on relative residuals (step counts are noisy by a factor, and an
  unweighted line in 1/B would let the smallest batches, with the largest S, decide the fit).
  Returns S_min, E_min and B_crit = E_min/S_min; valid only when both are positive."""
  b = np.asarray(batch_tokens, float)
  s = np.asarray(steps, float)
  (s_min, e_min), _ = _nnls_rel(np.stack([np.ones_like(b), 1.0 / b], axis=1), s)
  ok = s_min > 0 and e_min > 0
  return {"S_min": float(s_min), "E_min": float(e_min),
          "B_crit": float(e_min / s_min) if ok else math.nan, "valid": bool(ok)}
