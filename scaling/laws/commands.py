"""`scaling fit` and `scaling predict`: tables for people, JSON for programs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from scaling import files
from scaling.errors import UserError
from scaling.laws import approaches, batchlaw, calibration, forms, io, optimum, planning
from scaling.laws.results import fmt, auto_laws, fit_one, format_fit
from scaling.laws.uncertainty import percentile_interval

SPECIAL = ("isoflop", "envelope", "bcrit")


def fit_command(path: str, laws: list[str], n_boot: int, holdout: int, seed: int,
                n_convention: str, loss_key: str, budget: float | None, out: str | None,
                flop_key: str = "kaplan_train", budget_tolerance: float = 0.0,
                holdout_budgets: int = 0, coverage: bool = False) -> dict:
  want_curves = "envelope" in laws
  if loss_key is None:
    # Kaplan's L(D) and L(N, D) are laws of early-stopped runs (Kaplan 2020 §4): use the lowest
    # held-out loss of each run for them, the final one otherwise.
    data_laws = any(name.removesuffix("+E") in ("D", "ND") for name in laws)
    loss_key = "best_eval_loss" if data_laws else "final_eval_loss"
    if Path(path).is_dir():
      print(f"loss: {loss_key} of each run"
            + (" (early-stopped, as Kaplan fits L(D) and L(N, D))" if data_laws else ""))
  notes: list[str] = []
  columns = io.load(path, n_convention, loss_key, want_curves, flop_key, notes)
  for note in notes:
    print(f"{path}: {note}", flush=True)
  out_path = Path(out) if out else (Path(path) / "fit.json" if Path(path).is_dir()
                                    else Path(path).with_suffix(".fit.json"))
  if not out_path.parent.is_dir():
    raise UserError(f"--out {out_path}: the folder {out_path.parent} does not exist")
  chosen = not laws
  laws = laws or auto_laws(columns)
  results, failed = [], []
  for name in laws:
    try:
      r = _fit_law(name, columns, n_boot, holdout, seed, budget, budget_tolerance,
                   holdout_budgets, coverage)
    except UserError as e:
      # A law chosen by the data's shape that these points cannot carry is skipped; one the
      # user asked for is reported, after the others are written.
      failed.append(f"{name}: {e}")
      continue
    results.append(r)
    print(format_fit(r) if "form" in r else _format_special(r), flush=True)
  if not results:
    raise UserError("; ".join(failed))
  if chosen:   # laws picked from the data's columns: those it cannot carry are said once, here
    for line in failed:
      print(f"not fitted: {line}", flush=True)
  doc = io.to_jsonable({"source": str(path), "n_convention": n_convention, "loss_key": loss_key,
                        "input": notes, "fits": results, "not_fitted": failed})
  files.atomic_write_text(out_path, json.dumps(doc, indent=1))
  print(f"wrote {out_path}")
  if failed and not chosen:
    raise UserError(f"{'; '.join(failed)} (the other laws are in {out_path})")
  return doc


def _fit_law(name: str, columns: dict, n_boot: int, holdout: int, seed: int,
             budget: float | None, budget_tolerance: float, holdout_budgets: int = 0,
             coverage: bool = False) -> dict:
  """One law of `scaling fit`: the special fits by name, the rest through the registry."""
  if name == "isoflop":
    if "N" not in columns or ("C" not in columns and "D" not in columns):
      raise UserError("isoflop needs columns N and C (FLOP), or N and D (then C = 6·N·D)")
    compute = columns["C"] if "C" in columns else 6.0 * columns["N"] * columns["D"]
    print("isoflop: C " + ("from the CSV's compute column" if "C" in columns
                           else "= 6·N·D (no compute column)"), flush=True)
    return {"law": "isoflop", **_isoflop(compute, columns["N"], columns["loss"], n_boot, seed,
                                         budget_tolerance, holdout_budgets)}
  if name == "envelope":
    curves = columns["curves"] if "curves" in columns else io.curves_from_csv(columns)
    return {"law": "envelope", **approaches.fit_envelope(curves, n_boot, seed)}
  if name == "bcrit":
    if "B" not in columns:
      raise UserError("bcrit needs columns loss and B (the critical batch in tokens)")
    r = {"law": "bcrit", **approaches.fit_bcrit(columns["loss"], columns["B"], n_boot, seed)}
    r["published"] = forms.KAPLAN2020["B_crit"]
    return r
  return fit_one(name, columns, n_boot, holdout, seed, budget, holdout_budgets, budget_tolerance,
                 coverage)


def _isoflop(compute, n, loss, n_boot: int, seed: int, tolerance: float, holdout: int) -> dict:
  """Approach 2, and with holdout K: refitted without the K largest budgets, its N_opt there
  against each held-out budget's own parabola vertex."""
  full = approaches.fit_isoflop(compute, n, loss, n_boot, seed, tolerance)
  if not holdout:
    return full
  budgets = approaches.bin_budgets(compute, tolerance)
  usable = full["budgets"]
  if len(usable) < holdout + 2:
    raise UserError(f"--holdout-budgets {holdout} needs at least {holdout + 2} usable budgets, "
                    f"got {len(usable)}")
  keep = budgets < usable[-holdout] * (1 - 1e-9)
  part = approaches.fit_isoflop(compute[keep], n[keep], loss[keep], 0, seed, tolerance)
  p = part["params"]
  full["holdout"] = [{"C": c, "N_opt_measured": v, "N_opt_predicted": p["N_coef"] * c ** p["a"]}
                     for c, v in zip(usable[-holdout:], full["N_opt"][-holdout:])]
  return full


def _format_special(r: dict) -> str:
  lines = [f"{r['law']} ({r['n_boot']} bootstrap resamples)"]
  for k, v in r["params"].items():
    lo, hi = r["intervals"].get(k, (None, None))
    lines.append(f"  {k:<10} {fmt(v):>11}  [{fmt(lo)}, {fmt(hi)}]")
  if r["law"] == "isoflop" and r["budget_tolerance"]:
    lines.append(f"  {len(r['budget_groups'])} budgets from C binned within "
                 f"±{100 * r['budget_tolerance']:.0f}%:")
    lines += [f"    C = {g['C']:.3g}: {g['points']} points, C from {g['C_range'][0]:.3g} to "
              f"{g['C_range'][1]:.3g}" for g in r["budget_groups"]]
  for flag in r.get("flags", []):
    lines.append(f"  WARNING: {flag}")
  for e in r.get("holdout", []):
    lines.append(f"  held out C={e['C']:.3g}: N_opt predicted {e['N_opt_predicted']:.3g}, its "
                 f"parabola's vertex {e['N_opt_measured']:.3g} "
                 f"({100 * (e['N_opt_predicted'] / e['N_opt_measured'] - 1):+.1f}%)")
  for b in r.get("left_out", []):
    points = f"{b['points']} point{'s' if b['points'] != 1 else ''}"
    lines.append(f"  WARNING: budget C={b['C']:.3g} ({points}) left out: {b['reason']}")
  requested = r.get("n_boot_requested")
  if requested and r["n_boot"] < requested:
    lines.append(f"  WARNING: {requested - r['n_boot']} of {requested} bootstrap resamples gave "
                 "no answer and were dropped; the intervals come from the other "
                 f"{r['n_boot']}")
  if r["law"] == "isoflop" and not all(r["vertex_inside_range"]):
    lines.append("  WARNING: some IsoFLOP vertices lie outside the sampled N range")
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


class Preset(NamedTuple):
  kind: str          # a published preset's name, or chinchilla-fit, kaplan-fit, isoflop-fit
  params: dict
  samples: list      # bootstrap samples of params (empty for published presets)
  errors: list       # one-budget-ahead log errors of the fit (calibration.py), if measured


CHINCHILLA_FITS = ("chinchilla", "chinchilla_huber", "chinchilla_ls")


def _load_preset(preset: str) -> Preset:
  if preset in forms.PRESETS:
    return Preset(preset, forms.PRESETS[preset], [], [])
  path = Path(preset)
  if not path.is_file():
    raise UserError(f"--preset must be one of {', '.join(forms.PRESETS)} or a fit JSON file")
  try:
    doc = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f"cannot read the fit file {path}: {e}") from None
  listed = doc.get("fits", []) if isinstance(doc, dict) else []
  if isinstance(listed, dict):   # a sweep's fits.json (scaling/laws/sweepfit.py)
    listed = [{**listed["L(N)"]["N"], "law": "N"}] + (
        [{**listed["L(N,D)"], "law": "ND"}] if "L(N,D)" in listed else [])
  fits = {f["law"]: f for f in listed if isinstance(f, dict) and "params" in f}
  for name in CHINCHILLA_FITS:
    if name in fits:
      f = fits[name]
      return Preset("chinchilla-fit", f["params"], f.get("bootstrap_samples", []),
                    (f.get("calibration") or {}).get("errors", []))
  if "isoflop" in fits:
    return Preset("isoflop-fit", fits["isoflop"]["params"],
                  fits["isoflop"].get("bootstrap_samples", []), [])
  kaplan = {k: fits[k]["params"] for k in ("N", "D", "ND") if k in fits}
  if not kaplan:
    raise UserError(f"{path} holds no N, D, ND, chinchilla or isoflop fit to predict with")
  samples = [{k: fits[k].get("bootstrap_samples", [])[i] for k in kaplan}
             for i in range(min(len(fits[k].get("bootstrap_samples", [])) for k in kaplan))]
  return Preset("kaplan-fit", kaplan, samples, [])


def _calibrated(loss: float, errors: list) -> str:
  """' [95% calibrated: lo, hi]' from the fit's one-budget-ahead errors, or ''."""
  iv = calibration.interval(loss, errors)
  return f" [95% calibrated on {len(errors)} one-budget-ahead errors: {fmt(iv[0])}, {fmt(iv[1])}]" \
      if iv else ""


def _interval(fn, samples) -> str:
  """' [lo, hi]' (95%) of fn over bootstrap samples of the law's parameters, or ''."""
  if not samples:
    return ""
  values = []
  for s in samples:
    try:
      values.append(float(fn(s)))
    except (KeyError, ValueError, ZeroDivisionError, OverflowError):
      continue
  lo, hi = percentile_interval(values)
  return f" [95%: {fmt(lo)}, {fmt(hi)}]"


def _with_batch_law(kind: str, p: dict, batch_law: str | None) -> dict:
  """The preset's parameters with B_crit(L) replaced by the user's measured law, if given."""
  if not batch_law:
    return p
  if kind != "kaplan2020":
    raise UserError("--batch-law applies to the kaplan2020 preset (the planning that uses B_crit)")
  law = batchlaw.load_loss_law(batch_law)
  print(f"B_crit(L) = {law['B_star']:.3g}/L^(1/{law['alpha_B']:.3g}) tokens from {batch_law} "
        "(instead of Kaplan's 2e8/L^(1/0.21))")
  return {**p, "B_crit": law}


def predict_command(preset: str, n: float | None, d: float | None, c: float | None,
                    target: float | None, batch_law: str | None = None) -> dict:
  kind, p, samples, errors = _load_preset(preset)
  if kind == "isoflop-fit" and (n is not None or d is not None or target is not None):
    raise UserError(f"{preset} holds an approach-2 (isoflop) fit: it gives N_opt and D_opt at a "
                    "budget (--C), not a loss; fit chinchilla on the same points for losses")
  p = _with_batch_law(kind, p, batch_law)
  out: dict = {"preset": preset}
  chinchilla = kind in ("chinchilla2022", "epoch2024", "chinchilla-fit")
  if n is not None or d is not None:
    if chinchilla:
      if n is None or d is None:
        raise UserError("the Chinchilla law needs both --N (all parameters) and --D (tokens)")
      loss = float(forms.loss_chinchilla(p, n, d))
      ci = _interval(lambda q: forms.loss_chinchilla(q, n, d), samples)
      ci = ci.replace("[95%", "[parameters 95%") + _calibrated(loss, errors) if errors else ci
      print(f"L(N={n:.3g}, D={d:.3g}) = {loss:.2f} nats/token ({loss:.4f}; {preset}){ci}")
    elif n is not None and d is not None:
      if "ND" not in p:
        raise UserError(f"{preset} holds no L(N,D) fit")
      loss = float(forms.loss_nd(p["ND"], n, d))
      pen = float(forms.overfit_penalty(p["ND"], n, d))
      ci = _interval(lambda q: forms.loss_nd(q["ND"], n, d), samples)
      print(f"L(N={n:.3g}, D={d:.3g}) = {loss:.2f} nats/token ({loss:.4f}; Kaplan eq. 1.5, "
            f"{preset}){ci}; overfitting penalty δL = {100 * pen:.2f}%")
      out["overfit_penalty"] = pen
    elif n is not None:
      loss = float(forms.loss_n(p["N"], n))
      ci = _interval(lambda q: forms.loss_n(q["N"], n), samples)
      print(f"L(N={n:.3g}) = {loss:.2f} nats/token ({loss:.4f}; {preset}){ci}")
    else:
      loss = float(forms.loss_d(p["D"], d))
      ci = _interval(lambda q: forms.loss_d(q["D"], d), samples)
      print(f"L(D={d:.3g}) = {loss:.2f} nats/token ({loss:.4f}; {preset}){ci}")
    out["loss"] = loss
  if c is not None:
    if chinchilla:
      a = optimum.chinchilla_allocation(p, c)
      alloc = lambda key: _interval(lambda q: optimum.chinchilla_allocation(q, c)[key], samples)
      print(f"C = {c:.3g} FLOP: N_opt = {a['N_opt']:.3g}{alloc('N_opt')}, D_opt = "
            f"{a['D_opt']:.3g} tokens{alloc('D_opt')} ({a['tokens_per_param']:.1f} tokens/param), "
            f"L = {a['loss']:.3f}{alloc('loss')}; a = {a['a']:.3f}, b = {a['b']:.3f}")
    elif kind == "isoflop-fit":   # approach 2: N_opt ∝ C^a, D_opt ∝ C^b (Hoffmann 2022 §3.2)
      a = {"N_opt": p["N_coef"] * c ** p["a"], "D_opt": p["D_coef"] * c ** p["b"],
           "a": p["a"], "b": p["b"]}
      alloc = lambda key, coef, e: _interval(lambda q: q[coef] * c ** q[e], samples)
      print(f"C = {c:.3g} FLOP: N_opt = {a['N_opt']:.3g}{alloc('N_opt', 'N_coef', 'a')}, D_opt = "
            f"{a['D_opt']:.3g} tokens{alloc('D_opt', 'D_coef', 'b')} (approach 2: a = "
            f"{a['a']:.3f}, b = {a['b']:.3f}; no loss: the parabolas give no loss law)")
    elif kind == "kaplan2020":
      a = optimum.kaplan_allocation(p, c)
      print(f"C = {c:.3g} FLOP spent at B = B_crit, so C_min = C/2 = {a['C_min_flop']:.3g} FLOP "
            f"({a['C_min_pf_days']:.3g} PF-days; Kaplan 2020 eq. 5.5): N_opt = {a['N_opt']:.3g} "
            f"(eq. 1.7), L(C_min) = {a['loss']:.3f} nats/token (eq. 1.3), B = B_crit(L) = "
            f"{a['B_crit_tokens']:.3g} tokens (eq. 1.4), D = C/(6·N) = {a['D_tokens']:.3g} tokens, "
            f"S = D/B = {a['S_steps']:.3g} steps (S_min = {a['S_min_steps']:.3g})")
    else:
      raise UserError("allocation from a Kaplan-form fit needs an envelope or isoflop fit; "
                      "use a chinchilla fit or the kaplan2020 preset")
    out["allocation"] = a
  if target is not None:
    if chinchilla:
      r = optimum.chinchilla_compute_for_loss(p, target)
      print(f"L = {target}: least compute {r['C']:.3g} FLOP with N = {r['N_opt']:.3g}, "
            f"D = {r['D_opt']:.3g}")
    elif kind == "kaplan2020":
      r = optimum.kaplan_compute_for_loss(p, target)
      print(f"L = {target}: C_min = {r['C_min_pf_days']:.3g} PF-days (eq. 1.3); trained at B_crit "
            f"that is C = 2·C_min = {r['C_flop']:.3g} FLOP, with N = {r['N_opt']:.3g}")
    else:
      raise UserError("a target loss needs a chinchilla fit or the kaplan2020 preset")
    out["for_loss"] = r
  if len(out) == 1:
    raise UserError("give --N and/or --D (a loss), --C (an allocation) or --loss (a budget)")
  return out


def plan_command(preset: str, n: float | None, d: float | None, penalty_pct: float | None,
                 batch_tokens: float | None, steps: float | None, compare: str | None,
                 compute: float | None, batch_law: str | None = None) -> dict:
  """`scaling plan`: overfitting, early stopping, compute-efficient allocation, model tables."""
  kind, p, _, _ = _load_preset(preset)
  if kind == "isoflop-fit":
    raise UserError(f"{preset} holds an approach-2 (isoflop) fit, which plans nothing but N_opt "
                    "and D_opt: use `scaling predict --C`, or a chinchilla fit here")
  chinchilla = kind in ("chinchilla2022", "epoch2024", "chinchilla-fit")
  kaplan = _with_batch_law(kind, forms.KAPLAN2020, batch_law) if kind == "kaplan2020" else None
  if kind == "kaplan-fit":  # the user's own L(N,D); step and batch laws from Kaplan unless fitted
    kaplan = {**forms.KAPLAN2020, **({"ND": p["ND"]} if "ND" in p else {})}
  out: dict = {}
  # Overfitting questions take Kaplan's Table 2 fit of L(N, D) (the source of D ≳ 5e3·N^0.74),
  # or the user's own ND fit.
  nd, nd_name = ((kaplan["ND_table2"], "Kaplan 2020 Table 2: α_N 0.076, α_D 0.103, N_c 6.4e13, "
                  "D_c 1.8e13") if kind == "kaplan2020" else
                 (kaplan["ND"], f"the ND fit of {preset}") if kaplan else (None, ""))
  if penalty_pct is not None:
    if kaplan is None or n is None:
      raise UserError("--penalty needs --N and a Kaplan preset or an ND fit")
    d_min = planning.least_d_for_penalty(nd, n, penalty_pct / 100)
    print(f"N = {n:.3g}: keeping the overfitting penalty δL ≤ {penalty_pct}% needs D ≥ "
          f"{d_min:.3g} tokens ({nd_name}; eq. 4.3)")
    out["least_D"] = d_min
  if n is not None and d is not None and kaplan is not None:
    pen = float(forms.overfit_penalty(nd, n, d))
    bound = planning.s_stop(nd, kaplan["NS"], n, d)
    print(f"N = {n:.3g}, D = {d:.3g}: δL = {100 * pen:.2f}% ({nd_name}), early-stopping bound "
          f"S_stop ≳ {bound:.3g} S_min steps (eq. 5.7; steps at B ≫ B_crit)")
    out.update(penalty=pen, S_stop_min=bound)
    if batch_tokens is not None and steps is not None:
      r = planning.should_stop({**kaplan, "ND": nd}, n, d, batch_tokens, steps)
      verdict = "yes: " + "; ".join(r["reasons"]) if r["stop"] else (
          f"no: the compute-efficient point is at S* ≈ {r['S_star']:.3g} steps "
          f"(loss {r['L_star']:.3f} = (1 + α_N/α_S)·L(N,∞))")
      print(f"after {steps:.3g} steps at B = {batch_tokens:.3g} tokens, should I stop? {verdict}")
      out["should_stop"] = r
  if compute is not None:
    out["allocation"] = predict_command(preset, None, None, compute, None,
                                        batch_law)["allocation"]
  if compare is not None:
    models = planning.parse_models(compare) if compare else planning.NAMED_MODELS
    law = "chinchilla" if chinchilla else "kaplan"
    rows = planning.compare_models(models, law, p if chinchilla else kaplan)
    if law == "kaplan":
      print("\npredicted L: L(N, S_min) (Kaplan eq. 1.6) of the run, ended at B = B_crit so "
            "S_min = S/2; L(N, D): eq. 1.5, N trained to convergence on D tokens (a floor, at more "
            "compute); L at N_opt: L(C_min) (eq. 1.3) of the compute-efficient model at the same "
            "C, trained at B_crit so C_min = C/2 (eq. 5.5)")
    conv = law == "kaplan"
    print(f"\n| model | N | D | C (FLOP) | predicted L |{' L(N, D) |' * conv} N_opt at same C | "
          f"D_opt | L at N_opt |\n|---|---|---|---|---|{'---|' * conv}---|---|---|")
    for r in rows:
      floor = f" {r['loss_converged']:.3f} |" if conv else ""
      print(f"| {r['name']} | {r['N']:.3g} | {r['D']:.3g} | {r['C']:.3g} | {r['loss']:.3f} |"
            f"{floor} {r['N_opt']:.3g} | {r['D_opt']:.3g} | {r['loss_opt']:.3f} |")
    out["compare"] = rows
  if not out:
    raise UserError("ask something: --N/--D, --penalty, --batch with --steps, --C or --compare")
  return out
