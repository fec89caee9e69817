"""Compute-optimal allocation: for a budget C, the best N and D (and loss); for a loss, the least C."""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from scaling.errors import UserError
from scaling.laws import forms


def chinchilla_allocation(p: dict, compute_flop: float) -> dict:
  """Hoffmann 2022 eq. 4 (appendix D.3): G = (αA/(βB))^(1/(α+β)), a = β/(α+β), b = α/(α+β),
  N_opt = G·(C/6)^a, D_opt = G⁻¹·(C/6)^b, with C = 6·N·D in FLOP and N counting all parameters."""
  alpha, beta = p["alpha"], p["beta"]
  g = (alpha * p["A"] / (beta * p["B"])) ** (1.0 / (alpha + beta))
  a, b = beta / (alpha + beta), alpha / (alpha + beta)
  n_opt = g * (compute_flop / 6.0) ** a
  d_opt = (compute_flop / 6.0) ** b / g
  return {"G": g, "a": a, "b": b, "N_opt": n_opt, "D_opt": d_opt,
          "tokens_per_param": d_opt / n_opt,
          "loss": float(forms.loss_chinchilla(p, n_opt, d_opt))}


def chinchilla_compute_for_loss(p: dict, target: float) -> dict:
  """Least compute whose compute-optimal model reaches `target` (the loss falls with C)."""
  if target <= p["E"]:
    raise UserError(f"target loss {target} is at or below the irreducible loss E = {p['E']:.4g}: "
                    "no compute reaches it")
  f = lambda log_c: chinchilla_allocation(p, math.exp(log_c))["loss"] - target
  lo, hi = math.log(1e0), math.log(1e40)
  if f(lo) < 0:
    lo = math.log(1e-10)
  if f(hi) > 0:
    raise UserError(f"target loss {target} needs more than 1e40 FLOP under this law")
  c = math.exp(optimize.brentq(f, lo, hi, xtol=1e-12, rtol=1e-12))
  return {"C": c, **chinchilla_allocation(p, c)}


def kaplan_c_min(k: dict, compute_flop: float, batch_tokens: float | None = None) -> float:
  """C_min (FLOP) of a run that spends compute_flop at batch B: Kaplan 2020 eq. 5.5,
  C_min = C/(1 + B/B_crit(L)), with L = L(C_min) (eq. 1.3) and B_crit(L) (eq. 1.4). At the default
  B = B_crit this is C/2 (McCandlish 2018: training at B_crit costs twice the least compute)."""
  if batch_tokens is None:
    return compute_flop / 2.0

  def excess(log_c_min):
    c_min = math.exp(log_c_min)
    loss = float(forms.loss_c(k["C_min"], c_min / forms.PF_DAY_FLOP))
    return math.log(c_min * (1.0 + batch_tokens / float(forms.b_crit(k["B_crit"], loss)))) - \
        math.log(compute_flop)

  log_c = math.log(compute_flop)
  return math.exp(optimize.brentq(excess, log_c - 60.0, log_c, xtol=1e-12))


def kaplan_allocation(k: dict, compute_flop: float, batch_tokens: float | None = None) -> dict:
  """Kaplan 2020 §6 for a budget of compute_flop trained at batch B (default B_crit):
  C_min = C/(1 + B/B_crit) (eq. 5.5), N_opt ≈ 1.3e9·(C_min/PF-day)^0.73 (eq. 1.7),
  L = L(C_min) (eq. 1.3), B_crit(L) (eq. 1.4), D = C/(6·N) tokens processed (C = 6NBS), S = D/B
  steps, S_min = S/(1 + B_crit/B) (eq. 5.4)."""
  alloc = k["allocation"]
  c_min = kaplan_c_min(k, compute_flop, batch_tokens)
  c_min_pf_days = c_min / forms.PF_DAY_FLOP
  n_opt = alloc["N_coef"] * c_min_pf_days ** alloc["N_exp"]
  loss = float(forms.loss_c(k["C_min"], c_min_pf_days))
  b_crit = float(forms.b_crit(k["B_crit"], loss))
  batch = b_crit if batch_tokens is None else float(batch_tokens)
  tokens = compute_flop / (6.0 * n_opt)
  steps = tokens / batch
  return {"N_opt": n_opt, "loss": loss, "B_crit_tokens": b_crit, "batch_tokens": batch,
          "D_tokens": tokens, "S_steps": steps, "S_min_steps": steps / (1 + b_crit / batch),
          "C_flop": compute_flop, "C_min_flop": c_min, "C_min_pf_days": c_min_pf_days}


def kaplan_compute_for_loss(k: dict, target: float) -> dict:
  """Inverse of L(C_min) = (C_c/C_min)^α_C: C_min = C_c·L^(−1/α_C) PF-days (eq. 1.3); trained at
  B_crit the run spends C = 2·C_min."""
  c_min_pf_days = k["C_min"]["C_c"] * target ** (-1.0 / k["C_min"]["alpha_C"])
  return kaplan_allocation(k, 2.0 * c_min_pf_days * forms.PF_DAY_FLOP)


def isoflop_vertex(log_n, loss) -> tuple[float, bool]:
  """Vertex of the parabola loss = p2·(log N)² + p1·log N + p0 (Hoffmann 2022 §3.2); also
  whether it is a minimum inside the sampled range."""
  p2, p1, _ = np.polyfit(log_n, loss, 2)
  if p2 <= 0:
    return math.nan, False
  v = -p1 / (2 * p2)
  return float(v), bool(min(log_n) <= v <= max(log_n))
