"""Planning questions answered from Kaplan's laws: overfitting, when to stop, named-model tables.

All functions take the parameter dicts of forms.py (a preset or a fit), so the same questions can
be asked of the published constants or of the user's own fit.
"""

from __future__ import annotations

import math

from scipy import optimize

from scaling.errors import UserError
from scaling.laws import forms, optimum


def least_d_for_penalty(p_nd: dict, n: float, penalty: float) -> float:
  """Smallest D with δL(N, D) ≤ penalty, from Kaplan 2020 eq. 4.3 solved for D:
  D = (N/N_c)^(α_N/α_D)·D_c / ((1 + penalty)^(1/α_D) − 1)."""
  if penalty <= 0:
    raise UserError(f"the penalty must be positive, got {penalty}")
  ratio = p_nd["alpha_N"] / p_nd["alpha_D"]
  return (n / p_nd["N_c"]) ** ratio * p_nd["D_c"] / ((1 + penalty) ** (1 / p_nd["alpha_D"]) - 1)


def s_stop(p_nd: dict, p_ns: dict, n: float, d: float) -> float:
  """Kaplan 2020 eq. 5.7: S_stop(N, D) ≳ S_c / [L(N, D) − L(N, ∞)]^(1/α_S), steps (a lower
  bound on the early-stopping step of a data-limited run)."""
  gap = float(forms.loss_nd(p_nd, n, d) - forms.loss_n(p_nd, n))
  return p_ns["S_c"] / gap ** (1 / p_ns["alpha_S"])


def compute_efficient_stop(p_ns: dict, p_b: dict, n: float, batch_tokens: float) -> dict:
  """Where training N stops being compute-efficient (Kaplan 2020 §6.2 / app. B): at the optimum
  the loss is (1 + α_N/α_S)·L(N, ∞), i.e. (S_c/S_min)^α_S = (α_N/α_S)·(N_c/N)^α_N, so
  S_min* = S_c·[(α_N/α_S)·L(N,∞)]^(−1/α_S) and S* = S_min*·(1 + B_crit(L*)/B)."""
  l_inf = float(forms.loss_n(p_ns, n))
  frac = p_ns["alpha_N"] / p_ns["alpha_S"]
  s_min_star = p_ns["S_c"] * (frac * l_inf) ** (-1 / p_ns["alpha_S"])
  l_star = (1 + frac) * l_inf
  steps = s_min_star * (1 + float(forms.b_crit(p_b, l_star)) / batch_tokens)
  return {"L_inf": l_inf, "L_star": l_star, "S_min_star": s_min_star, "S_star": steps}


def s_stop_steps(p_nd: dict, p_ns: dict, p_b: dict, n: float, d: float,
                 batch_tokens: float) -> float:
  """S_stop in steps at batch B: eq. 5.7's bound is in S_min units, and S = S_min·(1 +
  B_crit(L)/B) (Kaplan 2020 eq. 5.4), with L = L(N, D) the loss where the run stops."""
  b_crit = float(forms.b_crit(p_b, forms.loss_nd(p_nd, n, d)))
  return s_stop(p_nd, p_ns, n, d) * (1 + b_crit / batch_tokens)


def should_stop(kaplan: dict, n: float, d: float, batch_tokens: float, steps_so_far: float) -> dict:
  """The 'should I stop?' question for a run in progress (N, D distinct tokens, batch B), with
  both bounds in steps at batch B."""
  eff = compute_efficient_stop(kaplan["NS"], kaplan["B_crit"], n, batch_tokens)
  bound = s_stop_steps(kaplan["ND"], kaplan["NS"], kaplan["B_crit"], n, d, batch_tokens)
  reasons = []
  if steps_so_far >= eff["S_star"]:
    reasons.append(f"past the compute-efficient point (S* ≈ {eff['S_star']:.3g} steps): a larger "
                   "model would reach a lower loss for the same compute")
  if steps_so_far >= bound:
    reasons.append(f"past the data-limited early-stopping bound S_stop ≳ {bound:.3g} steps: "
                   "watch the held-out loss, the run may start to overfit")
  return {**eff, "S_stop": bound, "steps_so_far": steps_so_far, "stop": bool(reasons),
          "reasons": reasons}


def kaplan_loss_of_run(k: dict, n: float, d: float) -> float:
  """The loss of a run of N that processed D tokens and ended at B = B_crit: L(N, S_min) (Kaplan
  2020 eq. 1.6) with S = D/B_crit(L) steps and S_min = S/2 (eq. 5.4), solved for L (B_crit
  depends on the loss it ends at, eq. 1.4)."""
  def gap(loss):
    s_min = d / (2.0 * float(forms.b_crit(k["B_crit"], loss)))
    return float(forms.loss_ns(k["NS"], n, s_min)) - loss
  floor = float(forms.loss_n(k["NS"], n))
  return optimize.brentq(gap, floor, floor + 100.0, xtol=1e-12)


def compare_models(models: list[tuple[str, float, float]], law: str, params: dict) -> list[dict]:
  """Predicted loss of named (N, D) models under a law, with the compute-optimal alternative at
  the same compute C = 6·N·D. Kaplan: both under compute-limited laws, the model's L(N, S_min)
  (kaplan_loss_of_run) beside the compute-efficient model's L(C_min) (eq. 1.3) with C_min = C/2
  (trained at B_crit, eq. 5.5); L(N, D) (eq. 1.5, N trained to convergence on D tokens, more
  compute than C) is given as the floor of the model's loss."""
  rows = []
  for name, n, d in models:
    c = 6.0 * n * d
    if law == "chinchilla":
      loss = float(forms.loss_chinchilla(params, n, d))
      opt = optimum.chinchilla_allocation(params, c)
      rows.append({"name": name, "N": n, "D": d, "C": c, "loss": loss, "N_opt": opt["N_opt"],
                   "D_opt": opt["D_opt"], "loss_opt": opt["loss"]})
    else:
      loss = kaplan_loss_of_run(params, n, d)
      opt = optimum.kaplan_allocation(params, c)
      rows.append({"name": name, "N": n, "D": d, "C": c, "loss": loss,
                   "loss_converged": float(forms.loss_nd(params["ND"], n, d)), "N_opt": opt["N_opt"],
                   "D_opt": opt["D_tokens"], "loss_opt": opt["loss"],
                   "C_min_opt": opt["C_min_flop"]})
  return rows


NAMED_MODELS = [("GPT-2 1.5B", 1.5e9, 40e9), ("GPT-3 175B", 175e9, 300e9),
                ("Gopher 280B", 280e9, 300e9), ("Chinchilla 70B", 70e9, 1.4e12)]


def parse_models(spec: str) -> list[tuple[str, float, float]]:
  """'name:N:D,name:N:D' → [(name, N, D)]."""
  out = []
  for item in spec.split(","):
    parts = item.strip().split(":")
    if len(parts) != 3:
      raise UserError(f"model {item!r} is not name:N:D (e.g. mine:1.3e9:2.6e10)")
    try:
      out.append((parts[0], float(parts[1]), float(parts[2])))
    except ValueError:
      raise UserError(f"model {item!r}: N and D must be numbers") from None
  if any(not (math.isfinite(n) and n > 0 and math.isfinite(d) and d > 0) for _, n, d in out):
    raise UserError("N and D of every model must be positive")
  return out
