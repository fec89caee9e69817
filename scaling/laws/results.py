"""One law fitted to columns of points: parameters, bootstrap intervals, the held-out check; and
its table for people."""

from __future__ import annotations

import math

import numpy as np

from scaling.errors import UserError
from scaling.laws import allocation, forms
from scaling.laws import fit as fit_mod
from scaling.laws.registry import fit_law, get_law
from scaling.laws.uncertainty import bootstrap_law, extrapolation_check, intervals


def auto_laws(columns: dict) -> list[str]:
  varies = lambda c: c in columns and len(np.unique(columns[c])) > 1
  if varies("N") and varies("D"):
    return ["ND", "chinchilla"]
  if varies("N"):
    return ["N", "N+E"]
  if varies("D"):
    return ["D", "D+E"]
  raise UserError("the points vary neither N nor D; nothing to fit")


def fmt(x) -> str:
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "—"
  return f"{x:.4g}"


def fit_one(name: str, columns: dict, n_boot: int, holdout: int, seed: int,
            budget: float | None) -> dict:
  law = get_law(name)
  y = columns["loss"]
  if law.name.startswith("chinchilla") and "N_total" in columns:  # Chinchilla counts every parameter
    columns = {**columns, "N": columns["N_total"]}
  if law.name.removesuffix("+E") in ("D", "ND") and "D_data" in columns:
    columns = {**columns, "D": columns["D_data"]}  # Kaplan's D: distinct tokens (dataset size)
  if law.name.removesuffix("+E") == "C" and "C" in columns:
    # C is in FLOP everywhere (run directories, CSV); Kaplan's L(C_min) and its C_c are in
    # PF-days (1 PF-day = 8.64e19 FLOP), so the fitted C_c compares with his 3.1e8.
    columns = {**columns, "C": np.asarray(columns["C"], float) / forms.PF_DAY_FLOP}
  fit_mod.check_no_duplicates({c: columns[c] for c in law.columns if c in columns}, y)
  params, converged, message = fit_law(law, columns, y)
  derived = None
  if law.name.startswith("chinchilla"):
    derived = lambda p: {k: v for k, v in allocation.chinchilla_allocation(
        p, budget or 5.76e23).items() if k in ("a", "b", "N_opt", "D_opt", "tokens_per_param")}
  samples = bootstrap_law(law, columns, y, n_boot, seed, derived, start=params) if n_boot else []
  result = {"law": law.name, "form": law.description, "params": params, "converged": converged,
            "message": message, "n_points": int(len(y)), "intervals": intervals(samples),
            "n_boot": len(samples), "published": law.published,
            "bootstrap_samples": samples[:1000]}
  if derived:
    result["derived"] = derived(params)
    result["derived"]["budget_flop"] = budget or 5.76e23
  key = law.columns[0]
  if holdout and len(np.unique(columns[key])) > holdout + 1 and len(y) - holdout > law.n_params:
    result["extrapolation"] = extrapolation_check(law, columns, y, key, holdout,
                                                  min(n_boot, 200), seed)
  return result


def format_fit(result: dict) -> str:
  lines = [f"{result['law']}: {result['form']}  ({result['n_points']} points, "
           f"{result['n_boot']} bootstrap resamples)"]
  if not result["converged"]:
    lines.append(f"  WARNING: the fit did not converge: {result['message']}")
  lines.append(f"  {'param':<10} {'fitted':>11} {'95% interval':>25} {'published':>11}  transfers?")
  for k, v in result["params"].items():
    lo, hi = result["intervals"].get(k, (None, None))
    pub = result["published"].get(k) if k != "E" or "E" in result["published"] else None
    transfers = "no (data/tokenizer)" if k in forms.DATA_DEPENDENT else "candidate"
    lines.append(f"  {k:<10} {fmt(v):>11} {'[' + fmt(lo) + ', ' + fmt(hi) + ']':>25} "
                 f"{fmt(pub):>11}  {transfers}")
  for k, v in result.get("derived", {}).items():
    lo, hi = result["intervals"].get(k, (None, None))
    lines.append(f"  {k:<10} {fmt(v):>11} {'[' + fmt(lo) + ', ' + fmt(hi) + ']':>25}")
  for e in result.get("extrapolation", []):
    at = ", ".join(f"{c}={fmt(e[c])}" for c in e if c not in (
        "measured", "predicted", "rel_error", "interval", "inside_interval", "interval_kind"))
    lo, hi = e["interval"]
    lines.append(f"  held out {at}: measured {e['measured']:.4f}, predicted "
                 f"{e['predicted']:.4f} ({100 * e['rel_error']:+.2f}%), "
                 f"{'inside' if e['inside_interval'] else 'outside'} the 95% "
                 f"{e['interval_kind']} [{fmt(lo)}, {fmt(hi)}]")
  return "\n".join(lines)
