"""The laws by name: which columns each needs, how to fit it and how to predict with it."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from scaling.errors import UserError
from scaling.laws import fit, forms


@dataclasses.dataclass(frozen=True)
class Law:
  name: str
  columns: tuple[str, ...]          # input columns, in the order predict/fit take them
  varying: tuple[str, ...]          # columns that must take at least two values
  n_params: int
  fit: Callable                     # (*columns, y) -> (params, converged, message)
  predict: Callable                 # (params, *columns) -> loss
  published: dict                   # the paper's values of the same parameters
  description: str
  refit: Callable | None = None     # (start params, *columns, y) -> (params, ok, msg): a fit
                                    # started from a central fit (bootstrap resamples)


def _single(var: str, alpha: str, scale: str, form, published: dict, irreducible: bool) -> Law:
  if irreducible:
    def fitter(x, y):
      p, ok, msg = fit.fit_power_law_e(x, y)
      return {"E": p["E"], alpha: p["alpha"], scale: p["X_c"]}, ok, msg
  else:
    def fitter(x, y):
      a, c = fit.fit_power_law(x, y)
      return {alpha: a, scale: c}, True, ""
  title = f"L({var}) = {'E + ' if irreducible else ''}({scale}/{var})^{alpha}"
  return Law(f"{var}{'+E' if irreducible else ''}", (var,), (var,), 3 if irreducible else 2,
             fitter, form, published, title)


def get_law(name: str) -> Law:
  """Names: N, D, C (L(C_min)), ND, NS, chinchilla, chinchilla_huber, chinchilla_ls; '+E' adds an
  irreducible term."""
  irreducible = name.endswith("+E")
  base = name.removesuffix("+E")
  k = forms.KAPLAN2020
  if base == "N":
    return _single("N", "alpha_N", "N_c", forms.loss_n, k["N"], irreducible)
  if base == "D":
    return _single("D", "alpha_D", "D_c", forms.loss_d, k["D"], irreducible)
  if base == "C":
    law = _single("C", "alpha_C", "C_c", forms.loss_c, k["C_min"], irreducible)
    return dataclasses.replace(law, description=law.description + " (C_min and C_c in PF-days)")
  if base == "ND":
    return Law(name, ("N", "D"), ("N", "D"), 4 + irreducible,
               lambda n, d, y: fit.fit_kaplan_nd(n, d, y, irreducible), forms.loss_nd,
               k["ND"], "Kaplan L(N,D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D" + (" + E" * irreducible))
  if base == "NS":
    return Law(name, ("N", "S_min"), ("N", "S_min"), 4 + irreducible,
               lambda n, s, y: fit.fit_ns(n, s, y, irreducible), forms.loss_ns, k["NS"],
               "Kaplan L(N,S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S" + (" + E" * irreducible))
  if base == "chinchilla":   # the default: Huber on log residuals, fast (varpro + IRLS)
    return Law(base, ("N", "D"), ("N", "D"), 5, fit.fit_chinchilla, forms.loss_chinchilla,
               forms.CHINCHILLA2022, "Chinchilla L(N,D) = E + A/N^α + B/D^β (Huber δ=1e-3 on "
               "log residuals)",
               refit=lambda start, n, d, y: fit.fit_chinchilla(n, d, y, start=start))
  if base in ("chinchilla_huber", "chinchilla_ls"):
    fitter, how = ((fit.fit_chinchilla_huber, "Huber, L-BFGS from the paper's grid of starts")
                   if base == "chinchilla_huber" else
                   (fit.fit_chinchilla_varpro, "least squares on log residuals"))
    return Law(base, ("N", "D"), ("N", "D"), 5, fitter, forms.loss_chinchilla,
               forms.CHINCHILLA2022, f"Chinchilla L(N,D) = E + A/N^α + B/D^β ({how})")
  raise UserError(f"unknown law {name!r}; choose one of N, D, C, ND, NS (each optionally +E), "
                  "chinchilla (Huber, default), chinchilla_huber (grid of starts), chinchilla_ls, isoflop, "
                  "envelope, bcrit")


def fit_law(law: Law, columns: dict[str, np.ndarray], y: np.ndarray) -> tuple[dict, bool, str]:
  missing = [c for c in law.columns if c not in columns]
  if missing:
    raise UserError(f"law {law.name} needs column(s) {', '.join(missing)}")
  fit.check_inputs({c: columns[c] for c in law.columns}, y, law.n_params, law.varying)
  return law.fit(*(np.asarray(columns[c], float) for c in law.columns), np.asarray(y, float))


def predict(law: Law, params: dict, columns: dict[str, np.ndarray]) -> np.ndarray:
  return law.predict(params, *(np.asarray(columns[c], float) for c in law.columns))
