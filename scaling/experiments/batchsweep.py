"""The batch-size sweep: B_crit from steps-vs-examples trade-offs, beside the online estimates.

One model is trained at a ladder of batch sizes, each at a small grid of learning rates (multiples
of a rule that rises with B, widened while the best sits at an edge; McCandlish 2018 measure at the
best LR per batch), constant after a warm-up given in tokens, each run ended once it is past the
lowest target loss. For each target loss L, the step S(B, L) at which the smoothed training loss of
the best LR at B first reaches L gives, across batch sizes, the hyperbola S = S_min·(1 + B_crit/B)
(McCandlish 2018, arXiv 1812.06162, eq. 2.11), fitted as a line in 1/B; then B_crit(L) =
B*/L^(1/α_B) (Kaplan 2020 eq. 1.4) across targets, with a bootstrap interval. The online estimates
(scaling/train/gns.py) over the same centred token window are compared with it, and the best LR
against B is fitted as a power law.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from scaling import files
from scaling.errors import UserError
from scaling.experiments import points as pointlib
from scaling.experiments.expand import batch_sweep_runs, lr_grid, parse_bsweep_name
from scaling.experiments.sweep import run_points
from scaling.files import atomic_write_text
from scaling.laws import approaches, fit, forms, io
from scaling.train import rundir
from scaling.train import summary as summarylib


ONLINE = {"window": "b_simple_window_tokens", "precond": "b_precond_window_tokens",
          "ema": "b_simple_tokens"}
"""The online estimates read at a crossing (rundir.loss_curve keys): the raw B_simple over the
centred token window (the one compared with the sweep), the Adam-preconditioned B_P over the same
window, and the trailing per-step EMA (the old reading, lagged)."""


def crossings(curve: dict, targets, window_tokens: float) -> dict:
  """For each target loss: the first step whose smoothed training loss (rundir.smoothed over
  window_tokens) is at or below it (None if never), and the online estimates (ONLINE) there.
  `curve` holds arrays step, tokens, loss and the ONLINE keys it has (rundir.loss_curve)."""
  tokens = np.asarray(curve["tokens"], float)
  loss = rundir.smoothed(tokens, np.asarray(curve["loss"], float), window_tokens)
  out = {}
  for target in targets:
    hit = np.flatnonzero(loss <= target)
    # A crossing in the last half-window is not yet confirmed by the data after it.
    if hit.size and tokens[hit[0]] <= tokens[-1] - window_tokens / 2:
      i = int(hit[0])
      online = {name: _finite(curve[key][i]) for name, key in ONLINE.items() if key in curve}
      out[float(target)] = {"step": int(curve["step"][i]), "tokens": float(tokens[i]), **online}
    else:
      out[float(target)] = None
  return out


def _finite(x) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None


def read_runs(sweep_dir: Path, targets, window_tokens: float) -> list[dict]:
  """Every finished run of a batch sweep (expand.bsweep_run_name) with its crossings."""
  out = []
  for run in rundir.find_runs(Path(sweep_dir)):
    parsed = parse_bsweep_name(run.name)
    if parsed is None:
      continue
    summary = summarylib.read(run)
    out.append({"name": run.name, "batch_seqs": summary.batch_seqs,
                "batch_tokens": summary.batch_tokens, "peak_lr": summary.peak_lr,
                "lr_multiplier": parsed[1],
                "crossings": crossings(rundir.loss_curve(run, window_tokens), targets,
                                       window_tokens)})
  return out


def best_lr_per_batch(per_run: list[dict], targets) -> dict:
  """Batch (tokens) → the run with the best LR: the one that first reached the lowest target any
  run at that batch reached (ties: the earlier crossing of the next target up), with the grid it
  was chosen from and whether it sits at the grid's edge."""
  out = {}
  for b in sorted({r["batch_tokens"] for r in per_run}):
    runs = [r for r in per_run if r["batch_tokens"] == b]
    key = lambda r: tuple(r["crossings"][t]["step"] if r["crossings"][t] else math.inf
                          for t in sorted(targets))
    best = min(runs, key=key)
    grid = sorted(r["lr_multiplier"] for r in runs)
    if math.isinf(key(best)[-1]):
      continue                                   # no run at this batch reached any target
    edge = (len(grid) > 1 and best["lr_multiplier"] in (grid[0], grid[-1]))
    out[b] = {"batch_seqs": best["batch_seqs"], "peak_lr": best["peak_lr"],
              "lr_multiplier": best["lr_multiplier"], "grid": grid,
              "edge": "low" if edge and best["lr_multiplier"] == grid[0] else
                      "high" if edge else None}
  return out


def lr_scaling(best: dict) -> dict | None:
  """The best LR against batch as a power law lr ∝ B^e (least squares in log–log), beside the √B
  (e = 0.5) and linear (e = 1) rules; points at a grid edge are only bounds and are left out."""
  pts = [(b, v["peak_lr"]) for b, v in best.items() if not v["edge"]]
  if len(pts) < 3:
    return None
  x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
  (e, c), cov = np.polyfit(x, y, 1, cov=True)
  return {"exponent": float(e), "exponent_se": float(math.sqrt(cov[0, 0])),
          "lr_at_1_token": float(math.exp(c)), "n_batch_sizes": len(pts)}


def _law(losses, values, n_boot: int) -> dict | None:
  pts = [(l, v) for l, v in zip(losses, values) if v]
  if len(pts) < 3:
    return None
  try:
    return approaches.fit_bcrit([p[0] for p in pts], [p[1] for p in pts], n_boot)
  except ValueError:
    return None                                  # the estimate does not fall with loss


def _trend(pairs: list) -> float | None:
  """Exponent of an online estimate against the run's own batch size (it should be near 0)."""
  pts = [(b, v) for b, v in pairs if v]
  if len(pts) < 3:
    return None
  return float(np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0])


def target_row(target: float, per_run: list[dict]) -> dict:
  """One target loss: S(B) at the best LR for this target (the earliest crossing over the LRs of
  each batch), the hyperbola through them, and the online estimates of the best runs."""
  hits = {}
  for r in per_run:
    h = r["crossings"][target]
    if h and (r["batch_tokens"] not in hits or h["step"] < hits[r["batch_tokens"]][1]["step"]):
      hits[r["batch_tokens"]] = (r, h)
  row = {"target_loss": target, "n_batch_sizes": len(hits),
         "S": {str(b): h["step"] for b, (_, h) in sorted(hits.items())},
         "lr": {str(b): r["peak_lr"] for b, (r, _) in sorted(hits.items())}}
  if len(hits) >= 3:
    row.update(fit.fit_steps_examples(list(hits), [h["step"] for _, h in hits.values()]))
  for name in ONLINE:
    values = [(b, h.get(name)) for b, (_, h) in sorted(hits.items())]
    online = [v for _, v in values if v]
    row[f"online_{name}_tokens"] = float(np.median(online)) if online else None
    row[f"online_{name}_trend"] = _trend(values)
    if row.get("valid") and row[f"online_{name}_tokens"]:
      row[f"ratio_over_{name}"] = row["B_crit"] / row[f"online_{name}_tokens"]
  return row


def analyze(sweep_dir: Path, targets, window_tokens: int, n_boot: int = 1000) -> dict:
  """Reads every run of the sweep; fits the hyperbola per target (at the best LR per batch and
  target) and B_crit(L) across targets, beside the laws of the online estimates."""
  per_run = read_runs(sweep_dir, targets, window_tokens)
  if len({r["batch_tokens"] for r in per_run}) < 3:
    raise UserError(f"{sweep_dir} holds {len(per_run)} finished runs at fewer than 3 batch "
                    "sizes; the fit needs at least 3")
  rows = [target_row(t, per_run) for t in sorted((float(t) for t in targets), reverse=True)]
  good = [r for r in rows if r.get("valid")]
  laws = {"bcrit_law": _law([r["target_loss"] for r in good], [r["B_crit"] for r in good], n_boot)}
  for name in ONLINE:
    laws[f"online_{name}_law"] = _law([r["target_loss"] for r in rows],
                                      [r[f"online_{name}_tokens"] for r in rows], n_boot)
  best = best_lr_per_batch(per_run, targets)
  return {"targets": rows, **laws, "best_lr": {str(b): v for b, v in best.items()},
          "lr_scaling": lr_scaling(best), "runs": [
              {k: r[k] for k in ("name", "batch_seqs", "batch_tokens", "peak_lr")}
              for r in per_run],
          "batch_tokens": sorted({r["batch_tokens"] for r in per_run}),
          "published": forms.KAPLAN2020["B_crit"], "smooth_tokens": window_tokens}


def grid_extensions(best: dict, n_ctx: int) -> dict:
  """The next LR multiplier for each batch whose best LR sits at the edge of the grid it was
  chosen from: ×½ below the lowest, ×2 above the highest; batch (sequences) → [multiplier]."""
  out = {}
  for b_tokens, v in best.items():
    if v["edge"] == "low":
      out[int(b_tokens) // n_ctx] = [v["grid"][0] / 2]
    elif v["edge"] == "high":
      out[int(b_tokens) // n_ctx] = [v["grid"][-1] * 2]
  return out


def _fmt(x) -> str:
  return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4g}"


def _law_line(name: str, law: dict | None) -> str:
  if not law:
    return f"{name}: fewer than 3 target losses with a value, or not falling with loss; no law"
  p, ci = law["params"], law["intervals"]
  return (f"{name}: B(L) = B*/L^(1/α_B) with α_B = {p['alpha_B']:.3g} "
          f"[{_fmt(ci['alpha_B'][0])}, {_fmt(ci['alpha_B'][1])}], B* = {p['B_star']:.3g} "
          f"[{_fmt(ci['B_star'][0])}, {_fmt(ci['B_star'][1])}] tokens")


def format_table(result: dict) -> str:
  lines = ["S and E at the best LR of each batch for each target; online estimates over the same "
           "centred token window as the loss (median over the best runs), raw B_simple and "
           "Adam-preconditioned B_P, and the lagging EMA for contrast; 'trend' is the exponent of "
           "the raw window estimate against the run's own batch (0 if it does not depend on B).",
           "", "| target L | batch sizes | S_min (steps) | E_min (tokens) | B_crit sweep (tokens) | "
           "B_simple window | sweep/B_simple | B_P window | sweep/B_P | EMA | sweep/EMA | trend |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in result["targets"]:
    lines.append(
        f"| {r['target_loss']:.3f} | {r['n_batch_sizes']} | {_fmt(r.get('S_min'))} | "
        f"{_fmt(r.get('E_min'))} | {_fmt(r.get('B_crit'))} | "
        f"{_fmt(r.get('online_window_tokens'))} | {_fmt(r.get('ratio_over_window'))} | "
        f"{_fmt(r.get('online_precond_tokens'))} | {_fmt(r.get('ratio_over_precond'))} | "
        f"{_fmt(r.get('online_ema_tokens'))} | {_fmt(r.get('ratio_over_ema'))} | "
        f"{_fmt(r.get('online_window_trend'))} |")
  lines.append("")
  for name, key in (("sweep B_crit", "bcrit_law"), ("online B_simple (window)",
                                                    "online_window_law"),
                    ("online B_P (window)", "online_precond_law"), ("online EMA", "online_ema_law")):
    lines.append(_law_line(name, result.get(key)))
  lines.append("(Kaplan 2020 on WebText2: α_B = 0.21, B* = 2e8 tokens)")
  lines += ["", "| batch (tokens) | best peak LR | multiplier of the rule | grid | at an edge |",
            "|---|---|---|---|---|"]
  for b, v in result["best_lr"].items():
    lines.append(f"| {b} | {v['peak_lr']:.3g} | {v['lr_multiplier']:g} | "
                 f"{', '.join(f'{m:g}' for m in v['grid'])} | {v['edge'] or 'no'} |")
  sc = result["lr_scaling"]
  lines.append("\nbest LR ∝ B^e: " + (
      f"e = {sc['exponent']:.3g} ± {sc['exponent_se']:.2g} over {sc['n_batch_sizes']} batch sizes "
      "(√B rule: 0.5; linear rule: 1)" if sc else
      "fewer than 3 batch sizes with an interior best LR; no exponent"))
  return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
  for r in result["targets"]:
    if not r["S"]:
      continue
    b = np.array([float(k) for k in r["S"]])
    s = np.array(list(r["S"].values()), float)
    line, = ax1.plot(b * s, s, "o", label=f"L = {r['target_loss']:.2f}")
    if r.get("valid"):
      bb = np.logspace(np.log10(b.min()) - 0.3, np.log10(b.max()) + 0.3, 100)
      ss = r["S_min"] + r["E_min"] / bb
      ax1.plot(bb * ss, ss, "-", color=line.get_color(), lw=1)
  ax1.set(xscale="log", yscale="log", xlabel="examples E = B·S (tokens)", ylabel="steps S",
          title="Steps vs examples to reach each loss (fits: S = S_min + E_min/B)")
  ax1.legend(fontsize=8)
  good = [r for r in result["targets"] if r.get("valid")]
  if good:
    ax2.plot([r["target_loss"] for r in good], [r["B_crit"] for r in good], "o",
             label="B_crit from the sweep")
  for name, marker, label in (("window", "s", "B_simple, centred window"),
                              ("precond", "^", "B_P (Adam-preconditioned), centred window"),
                              ("ema", "x", "B_simple, trailing EMA")):
    online = [r for r in result["targets"] if r.get(f"online_{name}_tokens")]
    if online:
      ax2.plot([r["target_loss"] for r in online], [r[f"online_{name}_tokens"] for r in online],
               marker, label=f"{label} (median over the best runs)")
  losses = np.linspace(min(r["target_loss"] for r in result["targets"]) * 0.97,
                       max(r["target_loss"] for r in result["targets"]) * 1.03, 50)
  if result["bcrit_law"]:
    p = result["bcrit_law"]["params"]
    ax2.plot(losses, forms.b_crit(p, losses), "-",
             label=f"fit: α_B = {p['alpha_B']:.2f}, B* = {p['B_star']:.2g}")
  ax2.plot(losses, forms.b_crit(result["published"], losses), "--", color="gray",
           label="Kaplan 2020 (WebText2): α_B = 0.21, B* = 2e8")
  ax2.set(xscale="log", yscale="log", xlabel="loss (nats/token)", ylabel="batch size (tokens)",
          title="Critical batch size against loss")
  ax2.legend(fontsize=8)
  fig.tight_layout()
  files.atomic_savefig(fig, path, dpi=120)
  plt.close(fig)


def run_batch_sweep(cfg, overwrite: bool = False, n_boot: int = 1000) -> dict:
  """Trains every (batch, LR) not yet finished, widening a batch's LR grid by one multiplier
  while its best LR sits at an edge (up to sweep.lr_extend rounds), then analyses and writes
  table, JSON, figure. A rerun reaches the same grid from the runs on disk."""
  out = pointlib.run_path(cfg)
  s = cfg.sweep
  run_points(batch_sweep_runs(cfg, lr_grid(s)), overwrite)
  for round_ in range(int(s.get("lr_extend", 0))):
    best = best_lr_per_batch(read_runs(out, s.targets, s.smooth_tokens), s.targets)
    more = grid_extensions(best, cfg.model.n_ctx)
    if not more:
      break
    print(f"[bsweep] round {round_ + 2}: the best LR sits at a grid edge; adding "
          + ", ".join(f"×{m[0]:g} at B={b}" for b, m in more.items()), flush=True)
    run_points(batch_sweep_runs(cfg, more))
  result = analyze(out, s.targets, s.smooth_tokens, n_boot)
  table = format_table(result)
  print(table)
  atomic_write_text(out / "bsweep.json", json.dumps(io.to_jsonable(result), indent=1))
  atomic_write_text(out / "bsweep.md", "# Batch-size sweep\n\n" + table + "\n\n![](bsweep.png)\n")
  plot(result, out / "bsweep.png")
  print(f"wrote {out / 'bsweep.md'}, {out / 'bsweep.json'}, {out / 'bsweep.png'}")
  return result
