"""`scaling fit <sweep dir>`: every law of a sweep fitted once into fits.json, its one owner.

fits.json holds, per law, the fitted constants, their bootstrap intervals, the held-out checks and
the points the law was fitted to (so a figure shows exactly what was fitted): L(N) (and L(N)+E),
the compute frontier L(C), the online B_simple(L) law, L(N, S_min), L(N, D) when the sweep has
data-limited runs, the transfer to other held-out sets, the shape experiments, and a headline.
`scaling report` renders it; it never fits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from scaling import files
from scaling.design import planner
from scaling.errors import UserError
from scaling.experiments import shapes
from scaling.laws import approaches, forms, howbig, io
from scaling.laws import fit as fitlib
from scaling.laws.registry import get_law
from scaling.laws.results import fit_one
from scaling.laws.uncertainty import bootstrap, intervals, percentile_interval
from scaling.train import rundir
from scaling.train import summary as summarylib

FITS = "fits.json"
FORMAT = 2        # fits.json of another format is fitted again (its keys changed)
# Steps of each learning curve left out of the online B_simple law: the warm-up transient.
_B_NOISE_SKIP_STEPS = 20


def fits_path(sweep: Path) -> Path:
  return Path(sweep) / FITS


def is_current(sweep: Path) -> bool:
  """True when fits.json exists and is newer than every run file it was fitted from."""
  path = fits_path(sweep)
  if not path.is_file():
    return False
  try:
    if json.loads(path.read_text()).get("format") != FORMAT:
      return False
  except (OSError, json.JSONDecodeError):
    return False
  newest = max((f.stat().st_mtime for run in rundir.find_runs(Path(sweep))
                for f in (run / rundir.SUMMARY, run / rundir.METRICS) if f.is_file()), default=0)
  return path.stat().st_mtime >= newest


def read_fits(sweep: Path) -> dict:
  path = fits_path(sweep)
  try:
    return json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f"cannot read {path} ({e}); run `scaling fit {sweep}` again") from None


def b_simple_points(run_dirs: list[Path], bins: int = 8) -> dict:
  """Online B_simple (tokens) against training loss over all runs (past the warm-up), and the
  median B_simple in each of `bins` loss quantile bins."""
  loss, bn = [], []
  for run in run_dirs:
    c = rundir.loss_curve(run)
    keep = (c["step"] > _B_NOISE_SKIP_STEPS) & (c["loss"] > 0) & np.isfinite(c["b_simple_tokens"])
    keep &= c["b_simple_tokens"] != 0
    loss += c["loss"][keep].tolist()
    bn += c["b_simple_tokens"][keep].tolist()
  loss, bn = np.asarray(loss), np.asarray(bn)
  out = {"loss": loss.tolist(), "b_simple": bn.tolist(), "bin_loss": [], "bin_b_simple": []}
  if loss.size < 10:
    return out
  edges = np.quantile(loss, np.linspace(0, 1, bins + 1))
  for lo, hi in zip(edges[:-1], edges[1:]):
    sel = (loss >= lo) & (loss <= hi) & (bn > 0)
    if sel.sum() >= 5:
      out["bin_loss"].append(float(np.median(loss[sel])))
      out["bin_b_simple"].append(float(np.median(bn[sel])))
  return out


def ns_points(run_dirs: list[Path], b_crit_law: dict, per_run: int = 12,
              skip_frac: float = 0.2) -> dict:
  """Points (N, S_min, smoothed loss) along each learning curve after the first skip_frac of it
  (warm-up transient; Kaplan 2020, arXiv 2001.08361, §5.2), S_min = S/(1 + B_crit(L)/B)
  (eq. 5.4) with B_crit(L) the law fitted to the online B_simple (smooth in L, unlike the
  per-step estimate)."""
  out = {"N": [], "S_min": [], "loss": []}
  for run in run_dirs:
    summary = summarylib.read(run)
    c = rundir.loss_curve(run)
    if len(c["loss"]) < 3 * per_run:
      continue
    idx = np.unique(np.geomspace(int(skip_frac * len(c["loss"])) + 1, len(c["loss"]) - 8,
                                 per_run).astype(int))
    for i in idx:
      b_crit = float(forms.b_crit(b_crit_law, c["smoothed"][i]))
      out["N"].append(summary.n_kaplan)
      out["S_min"].append(float(c["step"][i]) / (1 + b_crit / summary.batch_tokens))
      out["loss"].append(float(c["smoothed"][i]))
  return {k: np.asarray(v, float) for k, v in out.items()}


def transfer(summaries: list[dict], n_boot: int, seed: int) -> dict:
  """Per extra evaluation set: the constant offset and the linear map from the in-distribution
  loss, and L(N) on that set, each with bootstrap intervals over runs (Kaplan 2020 §3.2.2)."""
  names = sorted({k for s in summaries for k in (s.final_eval_losses or {})})
  out = {}
  for name in names:
    pts = [(s.n_kaplan, s.final_eval_loss, s.final_eval_losses[name]) for s in summaries
           if (s.final_eval_losses or {}).get(name) is not None]
    if len(pts) < 3:
      continue
    n, li, lo = (np.asarray(v, float) for v in zip(*pts))

    def once(idx):
      slope, intercept = np.polyfit(li[idx], lo[idx], 1)
      alpha, _ = fitlib.fit_power_law(n[idx], lo[idx])
      return {"offset": float(np.mean(lo[idx] - li[idx])), "slope": float(slope),
              "intercept": float(intercept), "alpha_N": alpha}

    central = once(np.arange(len(n)))
    ci = intervals(bootstrap(once, len(n), n_boot, seed, min_unique=3))
    out[name] = {**central, "offset_interval": ci.get("offset"), "slope_interval": ci.get("slope"),
                 "alpha_N_interval": ci.get("alpha_N"), "L_in": li.tolist(),
                 "L_other": lo.tolist(), "N": n.tolist()}
  return out


def shape_numbers(summaries: list[dict]) -> dict:
  """Kaplan 2020 §3.1 (Figures 5 and 6) from the runs carrying shape-sweep group labels."""
  rows = [r for r in summaries if r.group and r.shape
          and r.final_eval_loss is not None and math.isfinite(r.final_eval_loss)]
  if not rows:
    return {}
  return {"panels": shapes.shape_panels(rows), "collapse": shapes.depth_collapse(rows)}


def _without_samples(result: dict) -> dict:
  return {k: v for k, v in result.items() if k != "bootstrap_samples"}


def _fit_ln(ln: dict, n_boot: int, holdout: int, seed: int) -> dict:
  # The form with an irreducible term only when there are points to spare for its third constant.
  return {name: _without_samples(fit_one(name, ln, n_boot, holdout, seed, None))
          for name in ("N", "N+E")
          if name == "N" or len(np.unique(ln["N"])) > get_law(name).n_params + holdout}


def fit_excess(ln: dict, entropy_rate: float, n_boot: int, holdout: int, seed: int) -> dict:
  """L(N) − H = (N_c/N)^α_N where H, the corpus's entropy rate, is known exactly (the generated
  corpus, scaling/data/generated.py): Kaplan's power law (arXiv 2001.08361 eq. 1.1) for the
  reducible loss alone. The extrapolation check is restated for the loss itself (H added back)."""
  excess = np.asarray(ln["loss"], float) - entropy_rate
  if np.any(excess <= 0):
    raise UserError(f"a run's held-out loss ({ln['loss'].min():.4f}) is at or below the corpus's "
                    f"entropy rate {entropy_rate:.4f}: no model can do that; check the store")
  result = _without_samples(fit_one("N", {"N": ln["N"], "loss": excess}, n_boot, holdout, seed,
                                    None))
  pred = get_law("N").predict(result["params"], np.asarray(ln["N"], float))
  result.update(form="L(N) − H = (N_c/N)^alpha_N, H the exact entropy rate",
                entropy_rate=entropy_rate,
                rms_log_residual=float(np.sqrt(np.mean(np.log(excess / pred) ** 2))))
  for ext in result.get("extrapolation", []):
    ext["measured_loss"] = ext["measured"] + entropy_rate
    ext["predicted_loss"] = ext["predicted"] + entropy_rate
    ext["rel_error_loss"] = ext["predicted_loss"] / ext["measured_loss"] - 1
  return result


def _fit_nd(sweep: Path, n_boot: int, seed: int) -> dict:
  # Early-stopped losses (the lowest held-out loss of each run), as Kaplan fits L(N, D) (§4).
  best = io.load(str(sweep), "kaplan", "best_eval_loss")
  nd = {"N": best["N"], "D": best["D_data"], "loss": best["loss"]}
  result = _without_samples(fit_one("ND", nd, min(n_boot, 300), 0, seed, None))
  result["points"] = nd
  return result


def _headline(fits_ln: dict, cols: dict, full: np.ndarray) -> dict:
  lo, hi = fits_ln["N"]["intervals"].get("alpha_N", (math.nan, math.nan))
  ext = fits_ln["N"].get("extrapolation", [{}])[0]
  largest = int(np.argmax(np.where(full, cols["N"], -1)))
  summary = summarylib.read(Path(cols["name"][largest]))
  return {"alpha_N": fits_ln["N"]["params"]["alpha_N"], "alpha_N_interval": [lo, hi],
          "extrapolation_rel_error": ext.get("rel_error"), "extrapolation_N": ext.get("N"),
          "b_simple_at_final_loss_tokens": summary.b_simple_tokens_final,
          "final_loss_largest": summary.final_eval_loss, "n_runs": int(full.sum())}


def excess_headline(result: dict) -> dict:
  """The L(N) − H fit's exponent, interval, residual and extrapolation of the loss."""
  ext = result.get("extrapolation", [{}])[0]
  return {"entropy_rate": result["entropy_rate"], "alpha_N": result["params"]["alpha_N"],
          "alpha_N_interval": result["intervals"].get("alpha_N"),
          "rms_log_residual": result["rms_log_residual"],
          "extrapolation_rel_error": ext.get("rel_error_loss"), "extrapolation_N": ext.get("N")}


def is_isoflop(sweep: Path) -> bool:
  """True when the sweep's runs spend isoFLOP budgets (scaling/experiments/isoflop.py)."""
  return any(summarylib.read(r).budget_flop for r in rundir.find_runs(Path(sweep)))


def _batch_fits(runs: list[Path], n_boot: int, seed: int) -> dict:
  """The online B_simple points and, with enough of them, the B_simple(L) law (Kaplan eq. 1.4)."""
  bn = b_simple_points(runs)
  out = {"b_simple_points": bn}
  if len(bn["bin_loss"]) >= 3:
    out["b_simple_law"] = approaches.fit_bcrit(bn["bin_loss"], bn["bin_b_simple"],
                                              min(n_boot, 300), seed, keep_samples=True)
  return out


def batch_at(law: dict | None, loss: float) -> dict | None:
  """B_simple (tokens) of the fitted law at a loss, with the interval of its bootstrap samples."""
  if not law:
    return None
  samples = [float(forms.b_crit(q, loss)) for q in law.get("samples", [])]
  lo, hi = percentile_interval(samples) if samples else (math.nan, math.nan)
  return {"loss": loss, "tokens": float(forms.b_crit(law["params"], loss)), "interval": [lo, hi]}


def _design_warnings(sweep: Path) -> list[str]:
  """The warnings of the sweep's design.json (a forced design says what it lacked)."""
  if not (sweep / planner.DESIGN_FILE).is_file():
    return []
  return [f"design: {w}" for w in planner.read(sweep).warnings]


def fit_isoflop_sweep(sweep: str, n_boot: int = 1000, seed: int = 0, check_factor: float = 3.0,
                      target_flop: float = 0.0) -> dict:
  """fits.json of an isoFLOP sweep: the allocation by approaches 1–3 (scaling/laws/howbig.py),
  the online batch law, and the headline answers: at target_flop (default 10× the largest
  budget) N_opt, D_opt, loss and batch, with intervals; the held-out budget check if trained."""
  out = Path(sweep)
  runs, held = howbig.sweep_runs(out)
  if not runs:
    raise UserError(f"{out} holds no finished isoFLOP run outside heldout/ ({len(held)} held-out "
                    "run(s) only); train the sweep first (scaling sweep)")
  convention = summarylib.read(runs[0]).flop_convention or "palm"
  alloc = howbig.fit_allocation(out, convention, min(n_boot, 200), seed, check_factor,
                                target_flop)
  fits = {"allocation": alloc, **_batch_fits(runs, n_boot, seed)}
  target = alloc["target"]
  headline = {"kind": "isoflop", "n_runs": len(runs), "convention": convention,
              "a": {k: (alloc[k]["params"]["a"], alloc[k]["intervals"].get("a"))
                    for k in ("approach1", "approach2", "approach3", "kaplan_contrast")
                    if alloc.get(k)},
              "target": target, "batch": batch_at(fits.get("b_simple_law"), target["loss"]),
              "heldout": alloc["heldout"], "check_prediction": alloc["check_prediction"],
              "seed_noise": alloc["seed_noise"],
              "warnings": alloc["warnings"] + _design_warnings(out),
              "floor": howbig.floor_check(alloc, held)}
  for law in fits.values():
    if isinstance(law, dict):
      law.pop("samples", None)
  doc = io.to_jsonable({
      "format": FORMAT, "sweep": str(out), "n_boot": n_boot, "seed": seed,
      "runs": [{"name": r.name} for r in runs], "heldout_runs": [r.name for r in held],
      "headline": headline, "fits": fits})
  files.atomic_write_text(fits_path(out), json.dumps(doc, indent=1))
  return doc


def fit_sweep(sweep: str, n_boot: int = 1000, holdout: int = 1, seed: int = 0) -> dict:
  """Fits every law of a sweep directory and writes fits.json into it; returns the document."""
  out = Path(sweep)
  if is_isoflop(out):
    return fit_isoflop_sweep(sweep, n_boot, seed)
  cols = io.load(str(out), "kaplan", "final_eval_loss", with_curves=True)
  full = cols["D_data"] == cols["D_data"].max()   # runs on the whole training split
  if len(np.unique(cols["N"][full])) < 3:
    raise UserError(f"{out} has fewer than 3 model sizes trained on the full data; run the ladder")
  runs = [Path(n) for n in cols["name"]]
  full_runs = [r for r, f in zip(runs, full) if f]
  ln = {k: v[full] for k, v in cols.items() if isinstance(v, np.ndarray)}
  fits: dict = {"L(N)": _fit_ln(ln, n_boot, holdout, seed)}
  fits["L(N)"]["points"] = {"N": ln["N"], "loss": ln["loss"]}
  entropy_rate = summarylib.read(runs[0]).entropy_rate
  if entropy_rate is not None:
    fits["L(N)"]["N-H"] = fit_excess(ln, entropy_rate, n_boot, holdout, seed)
  env = approaches.fit_envelope([c for c, f in zip(cols["curves"], full) if f],
                                min(n_boot, 300), seed)
  fits["frontier"] = {k: env[k] for k in ("params", "intervals", "n_boot", "envelope")}
  fits.update(_batch_fits(runs, n_boot, seed))
  if "b_simple_law" in fits:
    fits["b_simple_law"].pop("samples", None)
    ns = ns_points(full_runs, fits["b_simple_law"]["params"])
    if len(ns["loss"]) >= 8:
      fits["L(N,S)"] = _without_samples(fit_one("NS", ns, 0, 0, seed, None))
      fits["L(N,S)"]["points"] = ns
  if len(np.unique(cols["D_data"])) >= 2 and len(np.unique(cols["N"])) >= 2:
    fits["L(N,D)"] = _fit_nd(out, n_boot, seed)
  summaries = [summarylib.read(r) for r in runs]
  tr = transfer([s for s, f in zip(summaries, full) if f], n_boot, seed)
  if tr:
    fits["transfer"] = tr
  sn = shape_numbers(summaries)
  if sn:
    fits["shapes"] = sn
  headline = _headline(fits["L(N)"], cols, full)
  if entropy_rate is not None:
    headline["excess"] = excess_headline(fits["L(N)"]["N-H"])
  if tr:
    headline["transfer"] = {name: {k: t[k] for k in ("offset", "offset_interval", "alpha_N",
                                                     "alpha_N_interval")}
                            for name, t in tr.items()}
  doc = io.to_jsonable({
      "format": FORMAT, "sweep": str(out), "n_boot": n_boot, "holdout": holdout, "seed": seed,
      "runs": [{"name": r.name, "full_data": bool(f)} for r, f in zip(runs, full)],
      "headline": headline, "fits": fits})
  files.atomic_write_text(fits_path(out), json.dumps(doc, indent=1))
  return doc
