"""How big, how long: the compute-optimal allocation of an isoFLOP sweep's runs, three ways.

  Approach 1  the lower envelope of each size's end points (final losses of runs whose schedule
              ended at their own budget), interpolated in log C (Hoffmann 2022, arXiv 2203.15556,
              §3.1, with end points instead of learning-curve tails).
  Approach 2  a parabola in log N per budget, its vertex N_opt(C) (§3.2).
  Approach 3  L(N, D) = E + A/N^α + B/D^β fitted to every end point (§3.3, the robust default fit
              of scaling/laws/fit.py), N_opt(C) = argmin_N L(N, C/F(N)).
  Contrast    Kaplan's frontier: the envelope of learning curves whose schedules were set for
              another horizon (Kaplan 2020, arXiv 2001.08361, §6.1) — labelled as such.
Each gives N_opt ∝ C^a and D_opt ∝ C^b with 95 % bootstrap intervals (over runs within each
budget for approach 3; parabola residuals pooled over budgets for approach 2; over sizes for
approach 1).

N and C follow the sweep's FLOP convention (scaling/experiments/isoflop.py): N non-embedding with
the palm and kaplan counts, N_total with chinchilla; F(N) is the FLOPs per token of a model of N
parameters, interpolated in log-log through the sweep's own shapes.
Legend: N parameters, D tokens, C FLOP, L final held-out loss (nats/token).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import optimize

from scaling.errors import UserError
from scaling.laws import approaches, fit, forms
from scaling.laws.conventions import N_KEY, convention_key
from scaling.laws.uncertainty import bootstrap, intervals
from scaling.train import rundir
from scaling.train import summary as summarylib



def read_points(runs: list[Path], convention: str) -> dict:
  """One point per (size, budget): the mean final held-out loss over its seeds, at the learning
  rate whose mean is lowest. Columns N, D (tokens), C (convention FLOP), F (FLOP/token), loss,
  loss_sd (the seeds' standard deviation; nan with one seed), n_seeds, budget, epochs, n_kaplan,
  n_total, name (of the first seed's run), schedule."""
  key, n_key = convention_key(convention), N_KEY[convention]
  seeds: dict = {}
  for run in runs:
    s = summarylib.read(run)
    loss = s.final_eval_loss
    if not s.budget_flop or loss is None or not math.isfinite(loss):
      continue
    seeds.setdefault((s.count(n_key), s.budget_flop, s.peak_lr), []).append((run, s))
  if not seeds:
    raise UserError("no finished isoFLOP run (summary.json with budget_flop) found; run the "
                    "sweep first")
  best: dict = {}
  for (n, budget, _), group in seeds.items():
    group.sort(key=lambda rs: Path(rs[0]).name)
    losses = [s.final_eval_loss for _, s in group]
    mean = float(np.mean(losses))
    if (n, budget) not in best or mean < best[(n, budget)].mean:
      sd = float(np.std(losses, ddof=1)) if len(losses) > 1 else math.nan
      best[(n, budget)] = _Point(*group[0], mean, len(losses), sd)
  rows = sorted(best.values(), key=lambda p: (p.s.budget_flop, p.s.count(n_key)))
  col = lambda f: np.asarray([f(p) for p in rows], float)
  return {"N": col(lambda p: p.s.count(n_key)), "D": col(lambda p: p.s.tokens),
          "F": col(lambda p: p.s.flop_per_token[key]),
          "C": col(lambda p: p.s.flop_per_token[key] * p.s.tokens),
          "loss": col(lambda p: p.mean), "loss_sd": col(lambda p: p.sd),
          "n_seeds": col(lambda p: p.n), "budget": col(lambda p: p.s.budget_flop),
          "epochs": col(lambda p: p.s.epochs), "n_kaplan": col(lambda p: p.s.n_kaplan),
          "n_total": col(lambda p: p.s.n_total),
          "name": [Path(p.run).name for p in rows],
          "schedule": [p.s.schedule or "cosine" for p in rows]}


class _Point(NamedTuple):
  """One (size, budget) of a sweep: its first seed's run and summary, and its seeds' losses."""
  run: Path
  s: summarylib.RunSummary
  mean: float
  n: int
  sd: float


def seed_noise(pts: dict) -> float | None:
  """The run-to-run noise of one run's final loss (nats): the pooled standard deviation over the
  points trained with several seeds; None when none was."""
  sd, n = pts["loss_sd"], pts["n_seeds"]
  ok = (n > 1) & np.isfinite(sd)
  if not ok.any():
    return None
  return float(np.sqrt(np.sum((n[ok] - 1) * sd[ok] ** 2) / np.sum(n[ok] - 1)))


def flop_map(n, f):
  """F(N): FLOPs per token of an N-parameter model, linear in log-log through the sweep's sizes
  (and extended along the end segments)."""
  order = np.argsort(n)
  ln, lf = np.log(np.asarray(n, float)[order]), np.log(np.asarray(f, float)[order])
  ln, idx = np.unique(ln, return_index=True)
  lf = lf[idx]
  if len(ln) < 2:
    raise UserError("the sweep has fewer than 2 model sizes")

  def f_of(n_query):
    x = np.log(np.asarray(n_query, float))
    y = np.interp(x, ln, lf)
    lo, hi = x < ln[0], x > ln[-1]
    y = np.where(lo, lf[0] + (x - ln[0]) * (lf[1] - lf[0]) / (ln[1] - ln[0]), y)
    y = np.where(hi, lf[-1] + (x - ln[-1]) * (lf[-1] - lf[-2]) / (ln[-1] - ln[-2]), y)
    return np.exp(y)
  return f_of


def _exponents(cs, n_opts, f_of) -> dict:
  cs, n_opts = np.asarray(cs, float), np.asarray(n_opts, float)
  a, n_coef = fit.fit_loglinear(cs, n_opts)
  b, d_coef = fit.fit_loglinear(cs, cs / f_of(n_opts))
  return {"a": a, "N_coef": n_coef, "b": b, "D_coef": d_coef}


def approach1(pts: dict, f_of, n_boot: int, seed: int) -> dict:
  """Lower envelope of per-size end-point curves (loss against log C), on a grid of C spanning
  the budgets where at least two sizes have end points."""
  sizes = np.unique(pts["N"])
  curves = []
  for n in sizes:
    sel = pts["N"] == n
    if sel.sum() >= 2:
      # At its design budget (whole steps move a run's C by up to a few tenths of a percent, which
      # would leave the best size just short of covering a budget's edge of the grid).
      order = np.argsort(pts["budget"][sel])
      curves.append({"N": float(n), "C": pts["budget"][sel][order],
                     "loss": pts["loss"][sel][order]})
  if len(curves) < 2:
    raise UserError("approach 1 needs at least 2 sizes with end points at 2 or more budgets")

  def once(idx):
    env = approaches.envelope([curves[i] for i in idx], span="covered")
    if len(np.unique(env["N"])) < 2:
      raise ValueError("one size has the lowest loss at every budget (the envelope is one "
                       "size); add sizes between the budgets' optima")
    return _exponents(env["C"], env["N"], f_of)

  central = once(np.arange(len(curves)))
  samples = bootstrap(once, len(curves), n_boot, seed, min_unique=2)
  env = approaches.envelope(curves, span="covered")
  return {"params": central, "intervals": intervals(samples), "n_boot": len(samples),
          "envelope": {"C": env["C"].tolist(), "N": env["N"].tolist(),
                       "loss": env["loss"].tolist()}}


def approach2(pts: dict, f_of, n_boot: int, seed: int) -> dict:
  """Parabola vertices per budget (approaches.fit_isoflop, residual bootstrap: the sizes are the
  design's), with warnings for vertices outside their sampled range and for lopsided profiles (the vertex in the outer quarter of the sampled
  log N range: Approach 2 is biased on asymmetric grids)."""
  res = approaches.fit_isoflop(pts["budget"], pts["N"], pts["loss"], n_boot, seed,
                               resample="residuals", flop_per_token=f_of)
  warnings = [f"C={b['C']:.3g} left out of approach 2: {b['reason']}" for b in res["left_out"]]
  for c, n_opt, inside in zip(res["budgets"], res["N_opt"], res["vertex_inside_range"]):
    log_n = np.log(pts["N"][pts["budget"] == c])
    x = (math.log(n_opt) - log_n.min()) / max(log_n.max() - log_n.min(), 1e-12)
    if not inside:
      warnings.append(f"C={c:.3g}: the vertex N={n_opt:.3g} lies outside the sampled sizes "
                      f"({math.exp(log_n.min()):.3g}–{math.exp(log_n.max()):.3g}); add sizes "
                      "on that side")
    elif not 0.25 <= x <= 0.75:
      warnings.append(f"C={c:.3g}: lopsided profile, the vertex N={n_opt:.3g} sits in the outer "
                      "quarter of the sampled sizes; centre the sizes on it")
  return {**res, "warnings": warnings}


def optimum(p: dict, c: float, f_of, n_range) -> tuple[float, float, float]:
  """(N_opt, D_opt, L) of the law p at budget c: L(N, c/F(N)) minimised over log N."""
  lo, hi = math.log(n_range[0]) - 7, math.log(n_range[1]) + 7
  obj = lambda x: float(forms.loss_chinchilla(p, math.exp(x), c / float(f_of(math.exp(x)))))
  res = optimize.minimize_scalar(obj, bounds=(lo, hi), method="bounded",
                                 options={"xatol": 1e-6})
  n_opt = math.exp(res.x)
  return n_opt, c / float(f_of(n_opt)), float(res.fun)


def fit_law(pts: dict, n_boot: int, seed: int) -> dict:
  """The Chinchilla form fitted to every end point (fit.fit_chinchilla, the robust default), and
  its bootstrap over runs, resampled within each budget (each resample refitted from the central
  constants). Stratified because the design fixes how many sizes each budget has: an unstratified
  resample can leave a budget with one size or none, a design the sweep never had, and the
  interval then measures that design's spread as well as the losses' noise."""
  n, d, y = pts["N"], pts["D"], pts["loss"]
  p, ok, msg = fit.fit_chinchilla(n, d, y)
  samples = bootstrap(lambda idx: fit.fit_chinchilla(n[idx], d[idx], y[idx], start=p)[0],
                      len(y), n_boot, seed, groups=pts["budget"], min_unique=6)
  resid = np.log(y) - np.log(forms.loss_chinchilla(p, n, d))
  return {"params": p, "samples": samples, "converged": ok, "message": msg,
          "rms_log_residual": float(np.sqrt(np.mean(resid ** 2))),
          "n_range": (float(n.min()), float(n.max()))}


def approach3(law: dict, f_of, budgets) -> dict:
  """N_opt(C) of the fitted law at each budget, and a, b from those (for the law's central
  constants and for each bootstrap sample)."""
  def derive(q):
    n_opts = [optimum(q, c, f_of, law["n_range"])[0] for c in budgets]
    return {**q, **_exponents(budgets, n_opts, f_of)}

  samples = [derive(q) for q in law["samples"]]
  return {"params": derive(law["params"]), "intervals": intervals(samples),
          "n_boot": len(samples), "converged": law["converged"], "message": law["message"],
          "rms_log_residual": law["rms_log_residual"], "samples": samples}


def kaplan_contrast(runs: list[Path], convention: str, n_boot: int, seed: int) -> dict:
  """Kaplan's method on the same sweep: the envelope of the learning curves of each size's
  longest run (its schedule set for that horizon, read at every earlier C)."""
  key, n_key = convention_key(convention), N_KEY[convention]
  longest: dict = {}
  for run in runs:
    s = summarylib.read(run)
    if s.budget_flop and (s.count(n_key) not in longest or
                          s.tokens > longest[s.count(n_key)][1].tokens):
      longest[s.count(n_key)] = (run, s)
  curves = []
  for run, s in longest.values():
    c = rundir.loss_curve(run)
    curves.append({"N": float(s.count(n_key)), "C": s.flop_per_token[key] * c["tokens"],
                   "loss": c["smoothed"]})
  res = approaches.fit_envelope(curves, n_boot, seed)
  return {k: res[k] for k in ("params", "intervals", "n_boot")}
