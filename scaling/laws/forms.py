"""Every law's functional form (pure numpy) and the published constants as presets.

Units: L in nats/token, N in parameters, D/B/E in tokens, S in steps, C_min in PF-days for Kaplan's
laws and FLOP for Chinchilla's. Each form takes a parameter dict; `E` is an optional irreducible
loss (absent or 0 gives the pure power law).
"""

from __future__ import annotations

import math

import numpy as np

from scaling.errors import UserError

PF_DAY_FLOP = 8.64e19  # 1 PF-day = 1e15 FLOP/s × 86 400 s


def loss_n(p: dict, n):
  """Kaplan 2020 eq. 1.1: L(N) = (N_c/N)^α_N (+ E)."""
  return p.get("E", 0.0) + (p["N_c"] / np.asarray(n, float)) ** p["alpha_N"]


def loss_d(p: dict, d):
  """Kaplan 2020 eq. 1.2: L(D) = (D_c/D)^α_D (+ E)."""
  return p.get("E", 0.0) + (p["D_c"] / np.asarray(d, float)) ** p["alpha_D"]


def loss_c(p: dict, c):
  """Kaplan 2020 eq. 1.3: L(C_min) = (C_c^min/C_min)^α_C^min (+ E), C_min in PF-days."""
  return p.get("E", 0.0) + (p["C_c"] / np.asarray(c, float)) ** p["alpha_C"]


def loss_nd(p: dict, n, d):
  """Kaplan 2020 eq. 1.5: L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D (+ E)."""
  n, d = np.asarray(n, float), np.asarray(d, float)
  inner = (p["N_c"] / n) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / d
  return p.get("E", 0.0) + inner ** p["alpha_D"]


def loss_ns(p: dict, n, s_min):
  """Kaplan 2020 eq. 1.6: L(N, S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S (+ E)."""
  n, s_min = np.asarray(n, float), np.asarray(s_min, float)
  return p.get("E", 0.0) + (p["N_c"] / n) ** p["alpha_N"] + (p["S_c"] / s_min) ** p["alpha_S"]


def b_crit(p: dict, loss):
  """Kaplan 2020 eq. 1.4: B_crit(L) = B*/L^(1/α_B), tokens."""
  return p["B_star"] / np.asarray(loss, float) ** (1.0 / p["alpha_B"])


def s_min(steps, batch_tokens, b_crit_tokens):
  """Kaplan 2020 eq. 5.4 / McCandlish 2018: S_min = S/(1 + B_crit/B)."""
  return np.asarray(steps, float) / (1.0 + np.asarray(b_crit_tokens, float) / batch_tokens)


def c_min(compute, batch_tokens, b_crit_tokens):
  """Kaplan 2020 eq. 5.5: C_min = C/(1 + B/B_crit)."""
  return np.asarray(compute, float) / (1.0 + np.asarray(batch_tokens, float) / b_crit_tokens)


def loss_chinchilla(p: dict, n, d):
  """Hoffmann 2022 eq. 2: L̂(N, D) = E + A/N^α + B/D^β."""
  n, d = np.asarray(n, float), np.asarray(d, float)
  return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def overfit_penalty(p: dict, n, d):
  """Kaplan 2020 eq. 4.3: δL = L(N,D)/L(N,∞) − 1 = (1 + (N/N_c)^(α_N/α_D)·D_c/D)^α_D − 1."""
  n, d = np.asarray(n, float), np.asarray(d, float)
  return (1 + (n / p["N_c"]) ** (p["alpha_N"] / p["alpha_D"]) * p["D_c"] / d) ** p["alpha_D"] - 1


# Published constants: Kaplan et al. 2020 (arXiv 2001.08361) eqs. 1.1-1.7 and Table 2 (ND_table2).
# Their scales belong to WebText2 and its 50257-token BPE; only the exponents are candidates for
# transfer (Kaplan 2020 §1.2, "the numerical values of N_c, C_c, D_c ... depend on the vocabulary
# size and tokenization").
KAPLAN2020 = {
    "N": {"alpha_N": 0.076, "N_c": 8.8e13},
    "D": {"alpha_D": 0.095, "D_c": 5.4e13},
    "ND": {"alpha_N": 0.076, "alpha_D": 0.095, "N_c": 8.8e13, "D_c": 5.4e13},
    "ND_table2": {"alpha_N": 0.076, "alpha_D": 0.103, "N_c": 6.4e13, "D_c": 1.8e13},
    "C_min": {"alpha_C": 0.050, "C_c": 3.1e8},
    "C_fixed_batch": {"alpha_C": 0.057, "C_c": 1.6e7},
    "B_crit": {"alpha_B": 0.21, "B_star": 2e8},
    "NS": {"alpha_N": 0.077, "N_c": 6.5e13, "alpha_S": 0.76, "S_c": 2.1e3},
    # Kaplan 2020 eq. 1.7 / §6.1: N_opt ≈ 1.3e9·(C_min/PF-day)^0.73; B ∝ C^0.24; S_min ∝ C^0.03.
    "allocation": {"N_coef": 1.3e9, "N_exp": 0.73, "B_exp": 0.24, "S_exp": 0.03, "D_exp": 0.27},
}
# Hoffmann 2022 (arXiv 2203.15556) Table 2, Approach 3: N_opt ∝ C^a, D_opt ∝ C^b.
CHINCHILLA2022_ALLOCATION = {"a": 0.46, "b": 0.54}
CHINCHILLA2022 = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
# Besiroglu et al. 2024 (arXiv 2404.10102), their refit of Hoffmann's data, unrounded: rounding
# the constants biases the implied allocation (the pitfall they found in Hoffmann's table).
EPOCH2024 = {"E": 1.81686, "A": 482.006, "B": 2085.434, "alpha": 0.34781, "beta": 0.36585}

PRESETS = {"kaplan2020": KAPLAN2020, "chinchilla2022": CHINCHILLA2022, "epoch2024": EPOCH2024}

# Which fitted constants depend on the corpus and tokenizer (never transfer; Kaplan 2020 §1.2).
DATA_DEPENDENT = {"N_c", "D_c", "C_c", "S_c", "B_star", "E", "A", "B"}


def kaplan_published(name: str):
  """Kaplan 2020's value of a constant by its name in our fits (C_c in PF-days), or None."""
  k = KAPLAN2020
  table = {**k["N"], **k["D"], **k["C_min"], **k["B_crit"], "alpha_S": k["NS"]["alpha_S"],
           "S_c": k["NS"]["S_c"], "a": k["allocation"]["N_exp"], "b": k["allocation"]["D_exp"]}
  return table.get(name)


def kaplan_learning_rate(n_params: float) -> float:
  """Kaplan 2020 appendix D.2 (Eq. D.1): LR(N) ≈ 0.003239 − 0.0001395·ln(N)."""
  if n_params <= 0:
    raise UserError(f"LR(N) needs a positive parameter count, got {n_params}")
  return 0.003239 - 0.0001395 * math.log(n_params)
