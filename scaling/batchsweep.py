"""The batch-size sweep: B_crit from steps-vs-examples trade-offs, beside the online B_simple.

One model is trained at a ladder of batch sizes (a learning rate that rises with B, constant after
warm-up, each run ended once it is past the lowest target loss). For each target loss L, the step
S(B, L) at which the smoothed training loss first reaches L gives, across batch sizes, the
hyperbola S = S_min·(1 + B_crit/B) (McCandlish 2018, arXiv 1812.06162, eq. 2.11), fitted as a line in
1/B; then B_crit(L) = B*/L^(1/α_B) (Kaplan 2020 eq. 1.4) across targets, with a bootstrap
interval. The online B_simple (scaling/gns.py) logged when each run crossed L is compared with it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from scaling import rundir
from scaling.errors import UserError
from scaling.expand import batch_sweep_runs
from scaling.laws import approaches, fit, forms, io
from scaling.laws.io import atomic_write_text
from scaling.sweep import run_points


def crossings(curve: dict, targets, window_tokens: float) -> dict:
  """For each target loss: the first step whose smoothed training loss (rundir.smoothed over
  window_tokens) is at or below it (None if never), and the online B_simple (tokens) logged then.
  `curve` holds arrays step, tokens, loss and b_simple_tokens (rundir.loss_curve)."""
  tokens = np.asarray(curve["tokens"], float)
  loss = rundir.smoothed(tokens, np.asarray(curve["loss"], float), window_tokens)
  out = {}
  for target in targets:
    hit = np.flatnonzero(loss <= target)
    # A crossing in the last half-window is not yet confirmed by the data after it.
    if hit.size and tokens[hit[0]] <= tokens[-1] - window_tokens / 2:
      i = int(hit[0])
      b_simple = float(curve["b_simple_tokens"][i])
      out[float(target)] = {"step": int(curve["step"][i]), "tokens": float(tokens[i]),
                            "b_simple_tokens": b_simple if math.isfinite(b_simple) else None}
    else:
      out[float(target)] = None
  return out


def analyze(sweep_dir: Path, targets, window_tokens: int, n_boot: int = 1000) -> dict:
  """Reads every run of the sweep; fits the hyperbola per target and B_crit(L) across targets."""
  runs = [r for r in rundir.find_runs(Path(sweep_dir)) if r.name.startswith("bs")]
  if len(runs) < 3:
    raise UserError(f"{sweep_dir} holds {len(runs)} finished batch sizes; the fit needs at least 3")
  per_run = []
  for run in runs:
    summary = rundir.read_summary(run)
    per_run.append({"batch_tokens": summary["batch_tokens"], "batch_seqs": summary["batch_seqs"],
                    "crossings": crossings(rundir.loss_curve(run), targets, window_tokens)})
  rows = []
  for target in sorted((float(t) for t in targets), reverse=True):
    hits = [(r["batch_tokens"], r["crossings"][target]) for r in per_run if r["crossings"][target]]
    row = {"target_loss": target, "n_batch_sizes": len(hits),
           "S": {str(b): h["step"] for b, h in hits}}
    if len(hits) >= 3:
      row.update(fit.fit_steps_examples([b for b, _ in hits], [h["step"] for _, h in hits]))
    online = [h["b_simple_tokens"] for _, h in hits if h["b_simple_tokens"] is not None]
    row["b_simple_online_tokens"] = float(np.median(online)) if online else None
    if row.get("valid") and row["b_simple_online_tokens"]:
      row["ratio_sweep_over_online"] = row["B_crit"] / row["b_simple_online_tokens"]
    rows.append(row)
  good = [r for r in rows if r.get("valid")]
  law = None
  if len(good) >= 3:
    law = approaches.fit_bcrit([r["target_loss"] for r in good], [r["B_crit"] for r in good],
                               n_boot)
  online_pts = [r for r in rows if r["b_simple_online_tokens"]]
  online_law = None
  if len(online_pts) >= 3:
    online_law = approaches.fit_bcrit([r["target_loss"] for r in online_pts],
                                      [r["b_simple_online_tokens"] for r in online_pts], n_boot)
  return {"targets": rows, "bcrit_law": law, "b_simple_law": online_law,
          "batch_tokens": [r["batch_tokens"] for r in per_run],
          "published": forms.KAPLAN2020["B_crit"], "smooth_tokens": window_tokens}


def format_table(result: dict) -> str:
  fmt = lambda x: "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4g}"
  lines = ["| target L | batch sizes | S_min (steps) | E_min (tokens) | B_crit sweep (tokens) | "
           "B_simple online (tokens) | sweep/online |", "|---|---|---|---|---|---|---|"]
  for r in result["targets"]:
    lines.append(f"| {r['target_loss']:.3f} | {r['n_batch_sizes']} | {fmt(r.get('S_min'))} | "
                 f"{fmt(r.get('E_min'))} | {fmt(r.get('B_crit'))} | "
                 f"{fmt(r.get('b_simple_online_tokens'))} | {fmt(r.get('ratio_sweep_over_online'))} |")
  for name, key in (("sweep B_crit", "bcrit_law"), ("online B_simple", "b_simple_law")):
    law = result[key]
    if law:
      p, ci = law["params"], law["intervals"]
      lines.append(f"\n{name}: B(L) = B*/L^(1/α_B) with α_B = {p['alpha_B']:.3g} "
                   f"[{fmt(ci['alpha_B'][0])}, {fmt(ci['alpha_B'][1])}], B* = {p['B_star']:.3g} "
                   f"[{fmt(ci['B_star'][0])}, {fmt(ci['B_star'][1])}] tokens "
                   f"(Kaplan 2020: α_B = 0.21, B* = 2e8 on WebText2)")
    else:
      lines.append(f"\n{name}: fewer than 3 target losses with a valid estimate; no law fitted")
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
  online = [r for r in result["targets"] if r["b_simple_online_tokens"]]
  if online:
    ax2.plot([r["target_loss"] for r in online], [r["b_simple_online_tokens"] for r in online],
             "s", label="B_simple online (median over runs)")
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
  io.atomic_savefig(fig, path, dpi=120)
  plt.close(fig)


def run_batch_sweep(cfg, overwrite: bool = False, n_boot: int = 1000) -> dict:
  """Trains every batch size not yet finished, then analyses and writes table, JSON, figure."""
  out = rundir.path_of(cfg)
  run_points(batch_sweep_runs(cfg), overwrite)
  result = analyze(out, cfg.sweep.targets, cfg.sweep.smooth_tokens, n_boot)
  table = format_table(result)
  print(table)
  atomic_write_text(out / "bsweep.json", json.dumps(io.to_jsonable(result), indent=1))
  atomic_write_text(out / "bsweep.md", "# Batch-size sweep\n\n" + table + "\n\n![](bsweep.png)\n")
  plot(result, out / "bsweep.png")
  print(f"wrote {out / 'bsweep.md'}, {out / 'bsweep.json'}, {out / 'bsweep.png'}")
  return result
