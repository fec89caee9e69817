"""One law fitted to columns of points: parameters, bootstrap intervals, the held-out check; and
its table for people."""

from __future__ import annotations

import math

import numpy as np

from scaling.errors import UserError
from scaling.laws import calibration, forms, optimum
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
            budget: float | None, holdout_budgets: int = 0, tolerance: float = 0.0,
            with_coverage: bool = False) -> dict:
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
    derived = lambda p: {k: v for k, v in optimum.chinchilla_allocation(
        p, budget or 5.76e23).items() if k in ("a", "b", "N_opt", "D_opt", "tokens_per_param")}
  samples = bootstrap_law(law, columns, y, n_boot, seed, derived, start=params) if n_boot else []
  result = {"law": law.name, "form": law.description, "params": params, "converged": converged,
            "message": message, "n_points": int(len(y)), "intervals": intervals(samples),
            "n_boot": len(samples), "n_boot_requested": n_boot, "published": law.published,
            "bootstrap_samples": samples[:1000]}
  if derived:
    result["derived"] = derived(params)
    result["derived"]["budget_flop"] = budget or 5.76e23
  key_name, key_values = calibration.budget_key(law, columns)
  level = calibration.levels(key_values, tolerance)
  key = law.columns[0]
  # The question is the larger budget: a law of N and D holds out the largest budgets (C);
  # a one-variable law, its largest values.
  by_budget = holdout_budgets or (holdout if key_name == "C" and
                                  len(np.unique(level)) >= 3 + holdout else 0)
  if by_budget:
    result["extrapolation"] = calibration.holdout_check(law, columns, y, level, by_budget)
  elif holdout and len(np.unique(columns[key])) > holdout + 1 and len(y) - holdout > law.n_params:
    result["extrapolation"] = extrapolation_check(law, columns, y, key, holdout,
                                                  min(n_boot, 200), seed)
  errors = calibration.ahead_errors(law, columns, y, level)
  result["calibration"] = {"key": key_name, "tolerance": tolerance,
                           "n_levels": int(len(np.unique(level))),
                           **calibration.summary(errors), "errors": errors}
  if with_coverage:
    result["coverage"] = calibration.coverage(law, columns, y, level)
  return result


def format_fit(result: dict) -> str:
  lines = [f"{result['law']}: {result['form']}  ({result['n_points']} points, "
           f"{result['n_boot']} bootstrap resamples)"]
  if not result["converged"]:
    lines.append(f"  WARNING: the fit did not converge: {result['message']}")
  requested = result.get("n_boot_requested") or 0
  if result["n_boot"] < requested:
    lines.append(f"  WARNING: {requested - result['n_boot']} of {requested} bootstrap resamples "
                 f"gave no fit and were dropped; the intervals come from the other "
                 f"{result['n_boot']}")
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
  lines += _extrapolation_lines(result.get("extrapolation", []))
  lines += _calibration_lines(result)
  return "\n".join(lines)


def _extrapolation_lines(checks: list[dict]) -> list[str]:
  lines = []
  for e in checks:
    at = ", ".join(f"{c}={fmt(e[c])}" for c in e if c not in (
        "measured", "predicted", "rel_error", "interval", "inside_interval", "interval_kind",
        "level"))
    where = (f"{'inside' if e['inside_interval'] else 'outside'} the 95% {e['interval_kind']} "
             f"[{fmt(e['interval'][0])}, {fmt(e['interval'][1])}]" if e["interval"]
             else f"no interval ({e['interval_kind']})")
    lines.append(f"  held out {at}: measured {e['measured']:.4f}, predicted "
                 f"{e['predicted']:.4f} ({100 * e['rel_error']:+.2f}%), {where}")
  if len(checks) > 1:
    inside = sum(e["inside_interval"] for e in checks)
    mae = sum(abs(e["rel_error"]) for e in checks) / len(checks)
    lines.append(f"  held out: {inside} of {len(checks)} inside their 95% interval; mean "
                 f"|error| {100 * mae:.2f}%")
  return lines


def _calibration_lines(result: dict) -> list[str]:
  cal, lines = result.get("calibration") or {}, []
  if cal.get("log_error_95"):
    lo, hi = cal["log_error_95"]
    lines.append(f"  calibration: {cal['n_errors']} points predicted one {cal['key']} level "
                 f"ahead (of {cal['n_levels']} levels): 95% of measured/predicted in "
                 f"[{math.exp(lo):.4f}, {math.exp(hi):.4f}], mean |error| "
                 f"{100 * cal['mean_abs_rel_error']:.2f}%")
  cov = result.get("coverage")
  if cov:
    lines.append(f"  coverage (each level predicted from those below, its interval calibrated "
                 f"on them): {cov['inside']} of {cov['total']} inside the 95% interval; mean "
                 f"|error| {100 * cov['mean_abs_rel_error']:.2f}% (an interval of the fit's "
                 f"residual scatter alone: {cov['inside_residual_scatter_only']} of "
                 f"{cov['total']})"
                 + (f"; {cov['uncalibrated']} points too early to calibrate"
                    if cov["uncalibrated"] else ""))
  return lines
