"""The report of an isoFLOP sweep (how big, how long, what loss): its figures and Markdown, read
from the "allocation" section of fits.json (scaling/laws/howbig.py). It never fits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scaling.laws import allocate, forms, howbig


def _fmt(x, spec: str = ".3g") -> str:
  return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:{spec}}"


def figure_isoflop(alloc: dict, out: Path, plt, save) -> None:
  """Loss against N at each budget: the runs, approach 2's parabolas, approach 3's law."""
  pts = {k: np.asarray(v) for k, v in alloc["points"].items() if k not in ("name", "schedule")}
  f_of = allocate.flop_map(pts["N"], pts["F"])
  a3 = alloc["approach3"]["params"]
  fig, ax = plt.subplots(figsize=(6.8, 4.8))
  for i, c in enumerate(alloc["budgets"]):
    sel = pts["budget"] == c
    color = f"C{i % 10}"
    ax.plot(pts["N"][sel], pts["loss"][sel], "o", color=color, label=f"C = {c:.2g} FLOP")
    grid = np.logspace(np.log10(pts["N"][sel].min()) - 0.2, np.log10(pts["N"][sel].max()) + 0.2,
                       60)
    ax.plot(grid, forms.loss_chinchilla(a3, grid, c / f_of(grid)), "-", color=color, lw=1)
    if alloc.get("approach2") and len(np.unique(pts["N"][sel])) >= 3:
      p2 = np.polyfit(np.log(pts["N"][sel]), pts["loss"][sel], 2)
      ax.plot(grid, np.polyval(p2, np.log(grid)), ":", color=color, lw=1)
  held = alloc.get("heldout")
  if held:
    rows = held["runs"]
    ax.plot([r["N"] for r in rows], [r["loss"] for r in rows], "*", ms=12, color="k",
            label=f"held-out budget {held['budget']:.2g} (not fitted)")
    ax.errorbar([held["predicted"]["N_opt"]], [held["predicted"]["loss"]],
                yerr=_yerr(held["predicted"]["loss"], held["predicted"].get("loss_interval")),
                fmt="x", color="C3", ms=10, label="predicted optimum there")
  ax.set(xscale="log", xlabel="N (parameters, sweep's convention)", ylabel="final held-out loss",
         title="IsoFLOP profiles: runs, approach 3 (lines), parabolas (dotted)")
  save(fig, ax, out / "isoflop.png", "isoflop")


def _yerr(value: float, interval) -> list | None:
  """Error bars from a 95% interval; none where the interval could not be had (too few runs)."""
  if not interval or any(v is None or not math.isfinite(v) for v in interval):
    return None
  return [[max(value - interval[0], 0.0)], [max(interval[1] - value, 0.0)]]


def figure_allocation(alloc: dict, out: Path, plt, save) -> None:
  """N_opt against C by each approach, with the predictions and the held-out runs."""
  fig, ax = plt.subplots(figsize=(6.8, 4.8))
  if alloc.get("approach1"):
    env = alloc["approach1"]["envelope"]
    ax.step(env["C"], env["N"], where="mid", color="C0", label="approach 1: envelope winner")
  if alloc.get("approach2"):
    a2 = alloc["approach2"]
    ax.plot(a2["budgets"], a2["N_opt"], "s", color="C1", label="approach 2: parabola vertices")
  c_max = max(alloc["target"]["C"], alloc["check_prediction"]["C"])
  grid = np.logspace(math.log10(min(alloc["budgets"])), math.log10(c_max), 50)
  for key, color, label in (("approach1", "C0", "approach 1"), ("approach2", "C1", "approach 2"),
                            ("approach3", "C2", "approach 3"),
                            ("kaplan_contrast", "gray", "Kaplan's fixed-horizon envelope")):
    res = alloc.get(key)
    if res and all(isinstance(res["params"].get(k), (int, float)) and
                   math.isfinite(res["params"][k]) for k in ("a", "N_coef")):
      p = res["params"]
      ax.plot(grid, p["N_coef"] * grid ** p["a"], "--" if key == "kaplan_contrast" else "-",
              color=color, lw=1, label=f"{label}: a = {p['a']:.2f}")
  for pred, label in ((alloc["check_prediction"], "held-out budget"),
                      (alloc["target"], "target budget")):
    ax.errorbar([pred["C"]], [pred["N_opt"]], yerr=_yerr(pred["N_opt"], pred.get("N_opt_interval")),
                fmt="o", color="C3", capsize=3, label=f"predicted N_opt, {label}")
  ax.set(xscale="log", yscale="log", xlabel="C (FLOP)", ylabel="N_opt",
         title="Compute-optimal model size")
  save(fig, ax, out / "allocation.png", "allocation")


def _approach_rows(alloc: dict) -> list[str]:
  rows = ["| method | a (N_opt ∝ C^a) | 95% interval | b (D_opt ∝ C^b) | 95% interval |",
          "|---|---|---|---|---|"]
  names = {"approach1": "Approach 1: envelope of end points",
           "approach2": "Approach 2: IsoFLOP parabolas",
           "approach3": "Approach 3: parametric L(N, D) (robust fit)",
           "kaplan_contrast": "Contrast: Kaplan's envelope of fixed-horizon learning curves"}
  for key, name in names.items():
    res = alloc.get(key)
    if not res:
      rows.append(f"| {name} | — | — | — | — |")
      continue
    p, ci = res["params"], res["intervals"]
    rows.append(f"| {name} | {howbig.num(p['a'])} | {howbig._iv(ci.get('a'))} | "
                f"{howbig.num(p['b'])} | "
                f"{howbig._iv(ci.get('b'))} |")
  return rows


def _convention_rows(alloc: dict) -> list[str]:
  rows = ["| FLOP count | a | 95% interval | b | 95% interval |", "|---|---|---|---|---|"]
  labels = {"palm": "6N + attention + unembedding (the FLOPs the step does)",
            "kaplan": "6N, N non-embedding (Kaplan)", "chinchilla": "6·N_total (Chinchilla)"}
  for name, row in alloc["conventions"].items():
    rows.append(f"| {labels[name]} | {howbig.num(row['a'])} | {howbig._iv(row['a_interval'])} | "
                f"{howbig.num(row['b'])} | {howbig._iv(row['b_interval'])} |")
  return rows


def _heldout_rows(held: dict) -> list[str]:
  pred = held["predicted"]
  rows = [f"Predicted from the fitted budgets only: at C = {held['budget']:.3g} FLOP, "
          f"N_opt = {pred['N_opt']:.3g} {howbig._iv(pred['N_opt_interval'])}, loss "
          f"{pred['loss']:.3f} {howbig._iv(pred['loss_interval'], '.3f')}"
          + (f" (the loss frontier of the upper budgets; approach 3 alone: "
             f"{pred['loss_approach3']:.3f})" if pred.get("loss_from") == "frontier" else "")
          + ".", "",
          "| run | N | D (tokens) | epochs | seeds | measured loss (mean) | σ over seeds |",
          "|---|---|---|---|---|---|---|"]
  rows += [f"| {r['name']} | {r['N']:.3g} | {r['D']:.3g} | {r.get('epochs', math.nan):.2f} | "
           f"{r.get('n_seeds', 1)} | {r['loss']:.4f} | {_fmt(r.get('loss_sd'), '.4f')} |"
           for r in held["runs"]]
  noise = howbig.noise_words(held)
  rows += ["", f"The predicted optimum ({held['optimum_run']}) measured {held['measured_loss']:.4f}"
           f": {100 * held['rel_error']:+.2f}% from the prediction; "
           + ("it is the best of the three." if held["optimum_is_best"] else
              f"the best of the three is {held['best_run']}, {held['gap_to_best']:.4f} nats lower"
              + (f" ({noise})" if noise else "") + ".")]
  return rows


def markdown(out: Path, doc: dict, figures: dict) -> str:
  fits, h = doc["fits"], doc["headline"]
  alloc = fits["allocation"]
  lines = [f"# How big, how long: `{out}`", "",
           f"{h['n_runs']} isoFLOP runs at {len(alloc['budgets'])} budgets "
           f"({', '.join(f'{c:.2g}' for c in alloc['budgets'])} FLOP, {alloc['convention']} "
           f"count), {alloc['n_sizes']} model sizes; the most repeated run saw the training "
           f"split {alloc['max_epochs']:.1f} times (kept within ~4 epochs, where repetition costs "
           "almost nothing: Muennighoff et al. 2023). Loss: final held-out cross-entropy "
           "(nats/token). Every number below is read from fits.json.", "",
           "## The answer", ""]
  lines += [f"    {line}" for line in howbig.answer_lines(h)]
  lines += ["", "## Allocation by three approaches, and Kaplan's method as the contrast", ""]
  lines += _approach_rows(alloc)
  lines += ["", "Kaplan's envelope reads losses off runs whose schedule was set for another "
            "horizon (Hoffmann 2022 §3.1, app. A); it is shown as the contrast, not an answer.",
            "", "## How much of a is convention", "",
            "The same runs, their FLOPs counted three ways (approach 3 refitted where N changes; "
            "Porian et al. 2024, arXiv 2406.19146):", ""]
  lines += _convention_rows(alloc)
  a3 = alloc["approach3"]
  p = a3["params"]
  lines += ["", "## The fitted law (approach 3)", "",
            f"L(N, D) = {p['E']:.3g} + {p['A']:.3g}/N^{p['alpha']:.3f} + {p['B']:.3g}/D^"
            f"{p['beta']:.3f}; rms log residual {a3['rms_log_residual']:.4f}"
            + ("" if a3["converged"] else f" (fit: {a3['message']})") + "."]
  fr = alloc.get("frontier")
  if fr:
    q = fr["params"]
    lines += ["", "## The loss frontier (the predicted losses)", "",
              f"L*(C) = {q['E']:.3f} + {q['k']:.3g}·(C/{q['C_ref']:.3g})^−{q['gamma']:.3f}, fitted "
              f"to the parabola minima of the {len(fr['budgets'])} largest budgets "
              f"({fr['budgets'][0]:.2g} … {fr['budgets'][-1]:.2g} FLOP; Henighan et al. 2020: a "
              "power law plus the irreducible loss). Local slopes of the minima in log–log, "
              "budget to budget: " + ", ".join(f"{x:.2f}" for x in fr["local_slopes"]) + "."]
  if alloc.get("heldout"):
    lines += ["", "## The held-out budget", ""] + _heldout_rows(alloc["heldout"])
  ref = alloc.get("reference_losses") or {}
  if ref.get("bigram") is not None:
    lines += ["", f"Reference losses of this corpus: a bigram model (Witten–Bell, counted on the "
              f"training split) {ref['bigram']:.3f} nats/token on the held-out split"
              + (f"; the unigram entropy {ref['unigram']:.3f}" if ref.get("unigram") else "")
              + (f"; the exact entropy rate of this generated corpus {ref['entropy_rate']:.3f}, "
                 "below which no model can go" if ref.get("entropy_rate") is not None else "")
              + ". Runs above the bigram loss predict mostly "
              "from the previous token; a law fitted there does not extrapolate below it."]
  if alloc.get("seed_noise") is not None:
    lines += ["", f"Run-to-run noise: the points trained with several seeds spread by σ = "
              f"{alloc['seed_noise']:.4f} nats (pooled); each point below is its seeds' mean."]
  lines += ["", "## Runs", "",
            "| run | N | D (tokens) | C (FLOP) | epochs | seeds | final held-out loss |",
            "|---|---|---|---|---|---|---|"]
  pts = alloc["points"]
  seeds = pts.get("n_seeds") or [1] * len(pts["name"])
  lines += [f"| {pts['name'][i]} | {pts['N'][i]:.3g} | {pts['D'][i]:.3g} | {pts['C'][i]:.3g} | "
            f"{pts['epochs'][i]:.2f} | {int(seeds[i])} | {pts['loss'][i]:.4f} |"
            for i in range(len(pts["name"]))]
  if alloc.get("warnings"):
    lines += ["", "## Warnings", ""] + [f"- {w}" for w in alloc["warnings"]]
  lines += ["", "## Figures", ""] + [f"![{k}]({v})" for k, v in figures.items()]
  return "\n".join(lines) + "\n"
