"""Synthetic points from a known law, for checking fitters (tests and benchmarks)."""

from __future__ import annotations

import numpy as np

from scaling.laws import forms, optimum


def isoflop_points(p: dict, noise: float, seed: int = 0, outliers: int = 5,
                   budgets=(6e18, 3e21), n_budgets: int = 9, per_budget: int = 27,
                   n_points: int = 240) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(N, D, loss) of IsoFLOP profiles of the Chinchilla-form law p (Hoffmann 2022 eq. 2):
  n_budgets budgets log-spaced over `budgets` (C = 6·N·D FLOP), per_budget sizes log-spaced
  over a factor 16 around each budget's optimum, the first n_points kept; log-normal noise of
  σ = noise on the loss and `outliers` points raised by 15 %."""
  rng = np.random.default_rng(seed)
  n, d = [], []
  for c in np.logspace(np.log10(budgets[0]), np.log10(budgets[1]), n_budgets):
    n_opt = optimum.chinchilla_allocation(p, c)["N_opt"]
    for x in n_opt * np.logspace(-0.6, 0.6, per_budget):
      n.append(x)
      d.append(c / (6 * x))
  n, d = np.array(n)[:n_points], np.array(d)[:n_points]
  loss = forms.loss_chinchilla(p, n, d) * np.exp(noise * rng.normal(size=n.size))
  loss[rng.choice(n.size, outliers, replace=False)] *= 1.15
  return n, d, loss
