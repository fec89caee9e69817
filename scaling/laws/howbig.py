"""The answers of an isoFLOP sweep: approaches 1–3 side by side, how a depends on the FLOP
convention, N_opt, D_opt and loss (with intervals) at a budget, and the held-out budget check.

`fit_allocation(...)` returns the "allocation" section of fits.json (scaling/laws/sweepfit.py owns
the file). Legend: N parameters, D tokens, C FLOP, L final held-out loss (nats/token).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from scaling.errors import UserError
from scaling.laws import allocate, frontier
from scaling.laws.conventions import CONVENTIONS, HELDOUT, N_KEY
from scaling.laws.forms import kaplan_learning_rate
from scaling.laws.uncertainty import percentile_interval
from scaling.train import rundir
from scaling.train import summary as summarylib


def at_budget(a3: dict, c: float, f_of, n_range, fr: dict | None = None) -> dict:
  """N_opt and D_opt at budget c from approach 3, and the loss there from the loss frontier
  (laws/frontier.py) when it was fitted, else approach 3's; each with the 95 % interval of its
  bootstrap samples (parameter uncertainty). Approach 3's own loss is kept beside."""
  n_opt, d_opt, loss = allocate.optimum(a3["params"], c, f_of, n_range)
  boot = (np.array([allocate.optimum(q, c, f_of, n_range) for q in a3["samples"]])
          if a3["samples"] else np.full((1, 3), math.nan))
  out = {"C": c, "N_opt": n_opt, "D_opt": d_opt, "loss": loss,
         "N_opt_interval": percentile_interval(boot[:, 0]),
         "D_opt_interval": percentile_interval(boot[:, 1]),
         "loss_interval": percentile_interval(boot[:, 2]),
         "tokens_per_param": d_opt / n_opt, "loss_from": "approach3"}
  if fr:
    out["loss_approach3"], out["loss_approach3_interval"] = loss, out["loss_interval"]
    out["loss"], out["loss_interval"] = frontier.at(fr, c)
    out["loss_from"] = "frontier"
  return out


def _try(what: str, fn, warnings: list):
  """fn(), or None with a warning saying why that approach gave no answer on these runs (e.g.
  one size lowest at every budget, a profile without a minimum)."""
  try:
    return fn()
  except (UserError, ValueError, np.linalg.LinAlgError) as e:
    warnings.append(f"{what} gives no answer on these runs: {e}")
    return None


def convention_table(runs: list[Path], law_of: dict, n_boot: int, seed: int, budgets,
                     read: dict | None = None) -> dict:
  """Approach 3's a and b under each FLOP convention, from the same runs (their C recomputed;
  the law refitted only where the convention counts N differently). law_of: fitted laws by
  N column (N_KEY), filled in as needed."""
  out = {}
  read = read or {}
  for name in CONVENTIONS:
    pts = read.get(name) or allocate.read_points(runs, name)
    key = N_KEY[name]
    if key not in law_of:
      law_of[key] = allocate.fit_law(pts, n_boot, seed)
    f_of = allocate.flop_map(pts["N"], pts["F"])
    # The design budgets in this convention: each budget's points' geometric-mean C.
    cs = [float(np.exp(np.mean(np.log(pts["C"][pts["budget"] == b])))) for b in budgets]
    a3 = allocate.approach3(law_of[key], f_of, cs)
    out[name] = {"a": a3["params"]["a"], "a_interval": a3["intervals"].get("a"),
                 "b": a3["params"]["b"], "b_interval": a3["intervals"].get("b")}
  return out


def heldout_check(runs: list[Path], prediction: dict, convention: str,
                  fitted_noise: float | None = None) -> dict | None:
  """The runs trained at the held-out budget against the prediction made without them. The
  predicted optimum counts as the best of the three when it is, or when its gap to the best is
  within twice the standard deviation of a difference of two seed means (the run-to-run noise of
  the held-out runs' own seeds, else of the fitted points' seeds)."""
  if not runs:
    return None
  pts = allocate.read_points(runs, convention)
  order = np.argsort(pts["N"])
  rows = [{"name": pts["name"][i], "N": float(pts["N"][i]), "D": float(pts["D"][i]),
           "C": float(pts["C"][i]), "loss": float(pts["loss"][i]),
           "loss_sd": float(pts["loss_sd"][i]), "n_seeds": int(pts["n_seeds"][i]),
           "epochs": float(pts["epochs"][i])} for i in order]
  n_pred = prediction["N_opt"]
  nearest = min(rows, key=lambda r: abs(math.log(r["N"] / n_pred)))
  best = min(rows, key=lambda r: r["loss"])
  own = allocate.seed_noise(pts)
  noise = own if own is not None else fitted_noise
  gap = nearest["loss"] - best["loss"]
  gap_sd = (noise * math.sqrt(1 / nearest["n_seeds"] + 1 / best["n_seeds"])
            if noise is not None else None)
  return {"budget": prediction["C"], "runs": rows, "predicted": prediction,
          "optimum_run": nearest["name"], "measured_loss": nearest["loss"],
          "rel_error": nearest["loss"] / prediction["loss"] - 1,
          "best_run": best["name"], "optimum_is_best": best is nearest,
          "gap_to_best": gap, "noise_nats": noise,
          "noise_from": None if noise is None else ("held-out seeds" if own is not None
                                                    else "fitted points' seeds"),
          "gap_sd": gap_sd,
          "optimum_within_noise": best is nearest or (gap_sd is not None and gap <= 2 * gap_sd)}


def reference_losses(runs: list[Path]) -> dict:
  """The unigram entropy, the bigram model's held-out loss and (a generated corpus only) the exact
  entropy rate of the runs' corpus (their summaries; for runs trained before the bigram loss was
  recorded, counted from their store)."""
  summary = summarylib.read(runs[0])
  out = {"unigram": summary.unigram_entropy, "bigram": summary.bigram_loss,
         "entropy_rate": summary.entropy_rate}
  if out["bigram"] is None and summary.store:
    try:
      from scaling.data import store as storelib   # the token store (grain, tokenizers): only here
      out["bigram"] = storelib.open_store(summary.store).bigram_loss()
    except (OSError, UserError, ValueError):
      pass
  return out


def floor_check(alloc: dict, held: list[Path]) -> dict:
  """The irreducible loss E of the law the losses are predicted by (the loss frontier, else
  approach 3) with its interval, the lowest loss measured (fitted and held-out runs), and the
  corpus's true floor where it is known (a generated corpus): E should lie above it, and no run
  below it beyond its noise."""
  fr = alloc.get("frontier")
  law, name = (fr, "the loss frontier") if fr else (alloc["approach3"], "approach 3")
  losses = list(alloc["points"]["loss"]) + [summarylib.read(r).final_eval_loss
                                             for r in held]
  best = min(x for x in losses if x is not None)
  return {"E": law["params"]["E"], "E_interval": law["intervals"].get("E"), "E_from": name,
          "best_loss": best, "entropy_rate": alloc["reference_losses"].get("entropy_rate")}


def floor_line(floor: dict) -> str:
  """The floor check in words: E [interval] (its law), the best loss, and H where known."""
  line = (f"irreducible loss: fitted E = {floor['E']:.3f} {_iv(floor['E_interval'], '.3f')} "
          f"({floor.get('E_from', 'approach 3')}); best measured loss {floor['best_loss']:.3f}")
  h = floor.get("entropy_rate")
  if h is None:
    return line + " (the corpus's true floor is unknown: real text)"
  line += (f"; the corpus's true floor, its entropy rate H = {h:.3f} nats/token (exact: "
           f"the generated corpus), E − H = {floor['E'] - h:+.3f}")
  hi = (floor.get("E_interval") or [None, None])[1]
  if hi is not None and hi < h:
    line += (" — E's whole interval lies below the true floor: these budgets do not determine "
             "the law's floor, so do not trust its losses far beyond them")
  return line


def regime_warning(losses, predicted: dict, bigram: float | None) -> str | None:
  """A warning when most fitted runs end above the bigram model's loss and a prediction falls
  below it: the law then describes models that use little more than the previous token, and is
  extrapolated into the phase where they learn longer context, where loss can fall faster than
  any law fitted before it (docs/results/2026-12-06-isoflop-allocation.md)."""
  if bigram is None or np.median(losses) <= bigram or predicted["loss"] >= bigram:
    return None
  above = int(np.sum(np.asarray(losses) > bigram))
  return (f"{above} of {len(losses)} fitted runs end above the held-out loss of a bigram model "
          f"of this corpus ({bigram:.3f} nats), the lowest at {min(losses):.3f}; the predicted "
          f"loss at C = {predicted['C']:.3g} ({predicted['loss']:.3f}) lies below it. The law was "
          "fitted where models predict mostly from the previous token and is extrapolated into "
          "the phase where they learn longer context: expect the measured loss to fall faster "
          "than predicted. Fit budgets whose runs reach below the bigram loss to remove this.")


def sweep_runs(sweep: Path) -> tuple[list[Path], list[Path]]:
  """(the sweep's isoFLOP runs, the held-out budget's runs under <sweep>/heldout/)."""
  runs = rundir.find_runs(sweep)
  rundir.check_comparable(runs, sweep)
  held = [r for r in runs if HELDOUT in r.relative_to(sweep).parts]
  return [r for r in runs if r not in held], held


def fit_allocation(sweep: Path, convention: str, n_boot: int, seed: int,
                   check_factor: float = 3.0, target_flop: float = 0.0) -> dict:
  """Approaches 1–3 and the contrast, the conventions table, the prediction at the held-out
  budget (check_factor × the largest) and at target_flop (default 10× the largest), and the
  held-out check when its runs exist."""
  runs, held = sweep_runs(Path(sweep))
  pts = allocate.read_points(runs, convention)
  budgets = sorted(set(pts["budget"].tolist()))
  f_of = allocate.flop_map(pts["N"], pts["F"])
  n_range = (pts["N"].min(), pts["N"].max())
  warnings: list[str] = []
  out = {"convention": convention, "budgets": budgets,
         "points": {k: v for k, v in pts.items()}, "n_sizes": int(len(np.unique(pts["N"]))),
         "max_epochs": float(pts["epochs"].max())}
  out["approach1"] = _try("approach 1", lambda: allocate.approach1(pts, f_of, n_boot, seed),
                          warnings)
  out["approach2"] = _try("approach 2", lambda: allocate.approach2(pts, f_of, n_boot, seed),
                          warnings)
  if out["approach2"]:
    warnings += out["approach2"]["warnings"]
  fr = _try("the loss frontier", lambda: frontier.fit_frontier(
      pts["budget"], pts["N"], pts["loss"], n_boot, seed), warnings)
  law_of = {N_KEY[convention]: allocate.fit_law(pts, n_boot, seed)}
  a3 = allocate.approach3(law_of[N_KEY[convention]], f_of, budgets)
  out["kaplan_contrast"] = _try("Kaplan's envelope", lambda: allocate.kaplan_contrast(
      runs, convention, n_boot, seed), warnings)
  out["conventions"] = convention_table(runs, law_of, n_boot, seed, budgets, {convention: pts})
  largest = max(budgets)
  # Held-out runs already trained fix the check budget (whatever factor they were trained at).
  held_budgets = {summarylib.read(r).budget_flop for r in held}
  check_flop = held_budgets.pop() if len(held_budgets) == 1 else check_factor * largest
  out["check_prediction"] = at_budget(a3, check_flop, f_of, n_range, fr)
  out["target"] = at_budget(a3, target_flop or 10 * largest, f_of, n_range, fr)
  out["frontier"] = {k: v for k, v in fr.items() if k != "samples"} if fr else None
  out["approach3"] = {k: v for k, v in a3.items() if k != "samples"}
  out["seed_noise"] = allocate.seed_noise(pts)
  out["heldout"] = heldout_check(held, out["check_prediction"], convention, out["seed_noise"])
  out["reference_losses"] = reference_losses(runs)
  regime = regime_warning(pts["loss"], out["check_prediction"], out["reference_losses"]["bigram"])
  warnings += [regime] if regime else []
  out["warnings"] = warnings
  # The choices that change the answer, recorded with it (Li et al. 2025, arXiv 2502.18969).
  out["choices"] = {
      "loss": "final held-out loss of each run; the lowest over learning rates per (N, budget)",
      "N": N_KEY[convention], "C": f"{convention} FLOPs per token x tokens",
      "approach3_fit": "Huber (delta 1e-3) on log residuals, variable projection + polish "
                       "(scaling/laws/fit.py fit_chinchilla)",
      "predicted_loss": "the loss frontier E + k·C^-gamma fitted to the parabola minima of the "
                        "upper budgets (scaling/laws/frontier.py); approach 3's where it has "
                        "fewer than 4 budgets with a minimum",
      "bootstrap": f"{n_boot} resamples: runs within each budget (approach 3), parabola residuals pooled over budgets "
                   "(approach 2), sizes (approach 1 and the contrast); 95% percentile intervals",
      "schedules": sorted(set(pts["schedule"])), "check_factor": check_flop / largest}
  return out


def num(value, fmt: str = ".3f") -> str:
  """A number as text; "—" where a half-finished sweep could not give it (None, nan)."""
  if value is None or not math.isfinite(value):
    return "—"
  return f"{value:{fmt}}"


def _iv(pair, fmt: str = ".3g") -> str:
  if not pair or pair[0] is None or pair[1] is None or not all(map(math.isfinite, pair)):
    return "[—]"
  return f"[{pair[0]:{fmt}}, {pair[1]:{fmt}}]"


def noise_words(held: dict) -> str:
  """Whether the predicted optimum's gap to the best held-out size is within the run-to-run
  noise, in words ("" when no noise is known)."""
  if held.get("gap_sd") is None:
    return ""
  within = "within" if held["optimum_within_noise"] else "beyond"
  return (f"{within} the run-to-run noise: 2σ of the difference = {2 * held['gap_sd']:.3f}, σ "
          f"from the {held['noise_from']}")


def _best_words(held: dict) -> str:
  """Whether the predicted optimum was the best of the held-out sizes, in words."""
  if held["optimum_is_best"]:
    return "the predicted optimum is the best of the three"
  noise = noise_words(held)
  return (f"best: {held['best_run']} ({held['gap_to_best']:+.3f} nats"
          + (f", {noise})" if noise else ")"))


def answer_lines(h: dict) -> list[str]:
  """The answers of an isoFLOP sweep's headline (fits.json), one line each."""
  t = h["target"]
  lines = [f"for a budget of C = {t['C']:.3g} FLOP ({h['convention']} count):",
           f"  N_opt = {t['N_opt']:.3g} parameters {_iv(t['N_opt_interval'])}",
           f"  D_opt = {t['D_opt']:.3g} tokens {_iv(t['D_opt_interval'])} "
           f"({t['tokens_per_param']:.1f} tokens per parameter)",
           f"  predicted loss = {t['loss']:.3f} nats/token {_iv(t['loss_interval'], '.3f')}"]
  if h.get("batch"):
    b = h["batch"]
    lines.append(f"  batch ≈ B_simple at that loss = {b['tokens']:.3g} tokens "
                 f"{_iv(b['interval'])} (online noise scale law)")
  lines.append("allocation exponent a (N_opt ∝ C^a), 95% intervals:")
  labels = {"approach1": "approach 1 (end-point envelope)", "approach2": "approach 2 (IsoFLOP "
            "parabolas)", "approach3": "approach 3 (parametric fit)",
            "kaplan_contrast": "Kaplan's fixed-horizon envelope (contrast)"}
  for k, (a, iv) in h["a"].items():
    lines.append(f"  {labels[k]}: {num(a)} {_iv(iv)}")
  held = h.get("heldout")
  if held:
    lines.append(f"held-out budget C = {held['budget']:.3g}: predicted optimum N = "
                 f"{held['predicted']['N_opt']:.3g}, loss {held['predicted']['loss']:.3f}; "
                 f"measured {held['measured_loss']:.3f} ({100 * held['rel_error']:+.2f}%); "
                 + _best_words(held))
  if h.get("floor"):
    lines.append(floor_line(h["floor"]))
  if h.get("seed_noise") is not None:
    lines.append(f"run-to-run noise (seeds): σ = {h['seed_noise']:.4f} nats per run")
  lines += [f"warning: {w}" for w in h.get("warnings", [])]
  return lines


def _switches(runs: list[Path]) -> dict:
  """The Kaplan–Chinchilla switches a sweep was run with, read from its run configs."""
  cfgs = [json.loads((r / rundir.CONFIG).read_text()) for r in runs]
  trains = [c["train"] for c in cfgs]
  warmups = {t.get("warmup_steps") for t in trains}
  points = {(c["model"]["n_layer"], c["model"]["d_model"], c.get("budget_flop")) for c in cfgs}
  return {"FLOP count": cfgs[0].get("flop_convention", "palm"),
          "warm-up": f"{warmups.pop()} steps" if len(warmups) == 1 else "∝ N",
          "horizon": "fixed (longest)" if any(t.get("schedule_steps") for t in trains)
          else "matched",
          "schedule": trains[0].get("schedule", "cosine"),
          "LR per size": ("best of several" if len(cfgs) > len(points) else
                          f"{_lr_scale(runs):.3g} × Kaplan LR(N)")}


def _lr_scale(runs: list[Path]) -> float:
  """The runs' peak learning rate over Kaplan's LR(N) (their median)."""
  return float(np.median([s.peak_lr / kaplan_learning_rate(s.n_kaplan)
                          for s in map(rundir.read_summary, runs)]))


def switch_table(sweeps: list[Path]) -> list[str]:
  """Markdown: a (approaches 2 and 3) of sweeps that differ in the switches, from each one's
  fits.json, with the switches read from its runs (as Porian et al. 2024, arXiv 2406.19146, go
  from Kaplan's settings to Hoffmann's one switch at a time)."""
  keys = ("FLOP count", "warm-up", "horizon", "schedule", "LR per size")
  rows = ["| sweep | " + " | ".join(keys) + " | a (approach 3) | a (approach 2) |",
          "|---" * (len(keys) + 3) + "|"]
  for sweep in map(Path, sweeps):
    alloc = json.loads((sweep / "fits.json").read_text())["fits"]["allocation"]
    sw = _switches(sweep_runs(sweep)[0])
    a3, a2 = alloc["approach3"], alloc.get("approach2")
    cells = [sweep.name] + [sw[k] for k in keys]
    cells.append(f"{num(a3['params']['a'])} {_iv(a3['intervals'].get('a'))}")
    cells.append(f"{num(a2['params']['a'])} {_iv(a2['intervals'].get('a'))}" if a2 else "—")
    rows.append("| " + " | ".join(cells) + " |")
  return rows
