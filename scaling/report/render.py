"""`scaling report <sweep dir>`: figures (PNG) and a Markdown page rendered from fits.json and the
runs. It never fits: when fits.json is missing or older than the runs it asks `scaling fit` for it
(scaling/laws/sweepfit.py) first, so a re-render after deleting figures leaves fits.json as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scaling import files
from scaling.errors import UserError
from scaling.experiments import shapes
from scaling.laws import forms, sweepfit
from scaling.report import isoflop_report, markdown
from scaling.train import rundir
from scaling.train import summary as summarylib


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _write_png(fig, path: Path, figures: dict, key: str, **savefig_kw) -> None:
  """PNG file (written atomically), close; records the file under `key` in `figures`."""
  files.atomic_savefig(fig, path, **savefig_kw)
  _plt().close(fig)
  figures[key] = path.name


def _save_panels(fig, title: str, path: Path, figures: dict) -> None:
  """A figure of several panels (each with its own legend): title, then _write_png."""
  fig.suptitle(title)
  fig.tight_layout()
  _write_png(fig, path, figures, path.stem, dpi=110)


def _save(fig, ax, path: Path, figures: dict, key: str, legend_size: int = 8) -> None:
  """Legend (when something is labelled), then _write_png."""
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=legend_size)
  _write_png(fig, path, figures, key, dpi=120, bbox_inches="tight")


def _figure_ln(fits: dict, out: Path, figures: dict) -> None:
  """L(N), pure power law and with an irreducible term, with the held-out largest model."""
  plt = _plt()
  ln, pts = fits["L(N)"], fits["L(N)"]["points"]
  n, loss = np.asarray(pts["N"]), np.asarray(pts["loss"])
  fig, ax = plt.subplots(figsize=(6.4, 4.8))
  ax.plot(n, loss, "o", label="held-out loss at the end of training")
  n_grid = np.logspace(np.log10(n.min()) - 0.2, np.log10(n.max()) + 0.5, 100)
  for name, style in (("N", "-"), ("N+E", "--")):
    if name in ln:
      p = ln[name]["params"]
      ax.plot(n_grid, forms.loss_n(p, n_grid), style,
              label=f"fit {name}: α_N = {p['alpha_N']:.3f}"
                    + (f", E = {p['E']:.2f}" if "E" in p else ""))
  if "N-H" in ln:
    p, h = ln["N-H"]["params"], ln["N-H"]["entropy_rate"]
    ax.plot(n_grid, h + forms.loss_n(p, n_grid), ":",
            label=f"fit H + (N_c/N)^α_N: α_N = {p['alpha_N']:.3f}")
    ax.axhline(h, color="k", lw=0.8, label=f"entropy rate H = {h:.3f} (exact)")
  for e in ln["N"].get("extrapolation", []):
    ax.plot([e["N"]], [e["measured"]], "*", ms=14, color="C3",
            label=f"held out: predicted {e['predicted']:.3f}, measured {e['measured']:.3f} "
                  f"({100 * e['rel_error']:+.1f}%)")
  ax.set(xscale="log", yscale="log", xlabel="N (non-embedding parameters)",
         ylabel="held-out loss (nats/token)", title="L(N): loss against model size")
  _save(fig, ax, out / "L_N.png", figures, "L_N", 8)


def _figure_curves(doc: dict, out: Path, figures: dict) -> None:
  """Learning curves against compute, the frontier and L(C)."""
  plt = _plt()
  fr = doc["fits"]["frontier"]
  runs = [out / r["name"] for r in doc["runs"] if r["full_data"]]
  fig, ax = plt.subplots(figsize=(6.4, 4.8))
  cmap = plt.get_cmap("viridis")
  curves = []
  for run in runs:
    s = summarylib.read(run)
    c = rundir.loss_curve(run)
    curves.append((s.n_kaplan, s.flop_per_token["kaplan_train"] * c["tokens"], c["smoothed"]))
  for rank, (n, c_flop, loss) in enumerate(sorted(curves, key=lambda t: t[0])):
    ax.plot(c_flop / forms.PF_DAY_FLOP, loss, color=cmap(rank / max(1, len(curves) - 1)), lw=1,
            label=f"N = {n:.2g}")
  c_env = np.asarray(fr["envelope"]["C"])
  ax.plot(c_env / forms.PF_DAY_FLOP, fr["envelope"]["loss"], "k:", lw=2,
          label="compute-efficient frontier")
  p = fr.get("params") or {}
  if p.get("C_c") is not None and p.get("alpha_C") is not None:   # None: the fit failed
    ax.plot(c_env / forms.PF_DAY_FLOP, (p["C_c"] / c_env) ** p["alpha_C"], "r--",
            label=f"L(C) fit: α_C = {p['alpha_C']:.3f}")
  ax.set(xscale="log", yscale="log", xlabel="compute C = 6·N·tokens (PF-days)",
         ylabel="training loss (smoothed)", title="Learning curves against compute")
  _save(fig, ax, out / "curves_compute.png", figures, "curves", 7)


def _figure_b_simple(fits: dict, out: Path, figures: dict) -> None:
  """Online B_simple against loss, with a B_crit(L)-form fit and Kaplan's law; a batch sweep's
  B_crit when the sweep directory holds its bsweep.json."""
  plt = _plt()
  bn = {k: np.asarray(v, float) for k, v in fits["b_simple_points"].items()}
  fig, ax = plt.subplots(figsize=(6.4, 4.8))
  if bn["loss"].size:
    ax.plot(bn["loss"], np.where(bn["b_simple"] > 0, bn["b_simple"], np.nan), ".", ms=2, alpha=0.3,
            color="C0", label="B_simple every step (all runs)")
  if "b_simple_law" in fits:
    ax.plot(bn["bin_loss"], bn["bin_b_simple"], "s", color="C1", label="median per loss bin")
    lg = np.linspace(bn["bin_loss"].min(), bn["bin_loss"].max(), 50)
    law = fits["b_simple_law"]["params"]
    ax.plot(lg, forms.b_crit(law, lg), "-", color="C1", label=f"fit: α_B = {law['alpha_B']:.2f}")
  if "batch_sweep" in fits:
    rows = fits["batch_sweep"]
    ax.plot([r["target_loss"] for r in rows], [r["B_crit"] for r in rows], "D", color="C3",
            label="B_crit from the batch sweep")
  if bn["loss"].size:
    lg = np.linspace(bn["loss"].min(), bn["loss"].max(), 50)
    ax.plot(lg, forms.b_crit(forms.KAPLAN2020["B_crit"], lg), "--", color="gray",
            label="Kaplan 2020 B_crit(L) (WebText2)")
  ax.set(xscale="log", yscale="log", xlabel="training loss (nats/token)",
         ylabel="batch size (tokens)", title="Gradient noise scale against loss")
  _save(fig, ax, out / "b_simple.png", figures, "b_simple", 7)


def _per_size(law: dict, x_key: str, form):
  """A figure of one fitted two-variable law: the points of each N against x_key, with the law's
  curve for that N across the points' x range. Returns (fig, ax, params)."""
  p, pts = law["params"], {k: np.asarray(v, float) for k, v in law["points"].items()}
  fig, ax = _plt().subplots(figsize=(6.4, 4.8))
  for k, n in enumerate(np.unique(pts["N"])):
    sel = pts["N"] == n
    x = pts[x_key][sel]
    ax.plot(x, pts["loss"][sel], "o", ms=3, color=f"C{k % 10}", label=f"N = {n:.2g}")
    grid = np.logspace(np.log10(x.min()), np.log10(x.max()), 50)
    ax.plot(grid, form(p, n, grid), "-", color=f"C{k % 10}")
  return fig, ax, p


def _figure_ns(fits: dict, out: Path, figures: dict) -> None:
  """L(N, S_min), S_min = S/(1 + B_crit/B) (Kaplan 2020 eq. 5.4), B_crit from the B_simple law."""
  fig, ax, p = _per_size(fits["L(N,S)"], "S_min", forms.loss_ns)
  ax.set(xscale="log", yscale="log",
         xlabel="S_min = S/(1 + B_crit(L)/B), B_crit(L) from the online B_simple fit",
         ylabel="training loss (smoothed)",
         title=f"L(N, S_min): α_N = {p['alpha_N']:.3f}, α_S = {p['alpha_S']:.2f}")
  _save(fig, ax, out / "L_NS.png", figures, "L_NS", 7)


def _figure_nd(fits: dict, out: Path, figures: dict) -> None:
  """L(N, D) of the data-limited runs (early-stopped losses, Kaplan 2020 eq. 1.5)."""
  fig, ax, p = _per_size(fits["L(N,D)"], "D", forms.loss_nd)
  ax.set(xscale="log", yscale="log", xlabel="D (distinct training tokens)",
         ylabel="early-stopped held-out loss",
         title=f"L(N, D): α_N/α_D = {p['alpha_N'] / p['alpha_D']:.2f}")
  _save(fig, ax, out / "L_ND.png", figures, "L_ND", 7)


def _figure_transfer(fits: dict, out: Path, figures: dict) -> None:
  """Loss on each extra held-out set against the in-distribution loss (Kaplan 2020 §3.2.2):
  L_other = L_in + offset and L_other = k·L_in + b."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6.4, 4.8))
  for k, (name, t) in enumerate(fits["transfer"].items()):
    li, lo = np.asarray(t["L_in"]), np.asarray(t["L_other"])
    ax.plot(li, lo, "o", color=f"C{k}", label=f"{name}")
    grid = np.linspace(li.min(), li.max(), 20)
    ax.plot(grid, grid + t["offset"], "-", color=f"C{k}", label=f"{name}: L_in + {t['offset']:.3f}")
    ax.plot(grid, t["slope"] * grid + t["intercept"], ":", color=f"C{k}",
            label=f"{name}: {t['slope']:.2f}·L_in + {t['intercept']:.2f}")
  ax.set(xlabel="in-distribution held-out loss (nats/token)",
         ylabel="held-out loss on the other distribution",
         title="Transfer: loss on other text against the training distribution")
  _save(fig, ax, out / "transfer.png", figures, "transfer", 7)


def _figure_shape_factors(panels: dict, out: Path, figures: dict) -> None:
  """Kaplan 2020 Fig. 5: loss against each shape factor at fixed N."""
  plt = _plt()
  fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
  for ax, (factor, title) in zip(axes, shapes.FACTORS.items()):
    for k, (label, st) in enumerate(panels.items()):
      pan = st["panels"].get(factor)
      if pan:
        ax.plot(pan["x"], pan["increase_pct"], "o-", color=f"C{k}",
                label=f"{label} (best L = {st['best_loss']:.3f})")
    ax.set(xscale="log", xlabel=title, title=f"vary {title}")
    ax.axhline(0, color="gray", lw=0.5)
    ax.legend(fontsize=7)
  axes[0].set_ylabel("loss increase over the best shape at this N (%)")
  _save_panels(fig, "Loss against shape at fixed non-embedding N (Kaplan 2020 Fig. 5)",
               out / "shape_factors.png", figures)


def _figure_depth_collapse(col: dict, out: Path, figures: dict) -> None:
  """Kaplan 2020 Fig. 6: depth curves against N with and without embedding parameters."""
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
  depth, loss = np.asarray(col["depth"]), np.asarray(col["loss"])
  for ax, key, xlabel in ((axes[0], "total", "N including embedding parameters"),
                          (axes[1], "non_embedding", "N without embedding parameters")):
    c = col[key]
    n = np.asarray(c["N"])
    for k, d in enumerate(np.unique(depth)):
      sel = depth == d
      order = np.argsort(n[sel])
      ax.plot(n[sel][order], loss[sel][order], "o-", color=f"C{k}", label=f"{d} layer(s)")
    grid = np.logspace(np.log10(n.min()), np.log10(n.max()), 50)
    ax.plot(grid, np.exp(c["fit"][0] + c["fit"][1] * np.log(grid)), "k--", lw=0.8,
            label=f"one power law, α = {c['alpha']:.3f}; rms {c['rms_pct']:.2f}%")
    ax.set(xscale="log", yscale="log", xlabel=xlabel, title=f"rms deviation {c['rms_pct']:.2f}%")
    ax.legend(fontsize=7)
  axes[0].set_ylabel("held-out loss (nats/token)")
  _save_panels(fig, "Depth curves with and without embedding parameters (Kaplan 2020 Fig. 6)",
               out / "depth_collapse.png", figures)


def make_report(sweep: str, n_boot: int = 1000, holdout: int = 1, seed: int = 0) -> dict:
  """Renders report.md and the figures of a sweep directory from its fits.json (fitted first,
  with these settings, when it is missing or older than the runs)."""
  out = Path(sweep)
  if not out.is_dir():
    raise UserError(f"{out} is not a folder of runs: `scaling report` renders a sweep (for a CSV "
                    "of runs, `scaling fit FILE.csv`)" if out.exists() else
                    f"{out} does not exist; give a sweep folder")
  if not sweepfit.is_current(out):
    sweepfit.fit_sweep(str(out), n_boot, holdout, seed)
  doc = sweepfit.read_fits(out)
  fits = dict(doc["fits"])
  bsweep = out / "bsweep.json"
  if bsweep.is_file():  # a batch sweep written into the same folder (scaling bsweep)
    rows = [r for r in json.loads(bsweep.read_text())["targets"] if r.get("valid")]
    fits["batch_sweep"] = rows
  figures: dict = {}
  if "allocation" in fits:   # an isoFLOP sweep: how big, how long, what loss
    save = lambda fig, ax, path, key: _save(fig, ax, path, figures, key, 7)
    isoflop_report.figure_isoflop(fits["allocation"], out, _plt(), save)
    isoflop_report.figure_allocation(fits["allocation"], out, _plt(), save)
    if fits.get("b_simple_points"):
      _figure_b_simple(fits, out, figures)
    files.atomic_write_text(out / "report.md", isoflop_report.markdown(out, doc, figures))
    return {"headline": doc["headline"], "figures": figures, "report": str(out / "report.md"),
            "fits": str(sweepfit.fits_path(out))}
  _figure_ln(fits, out, figures)
  _figure_curves(doc, out, figures)
  _figure_b_simple(fits, out, figures)
  if "L(N,S)" in fits:
    _figure_ns(fits, out, figures)
  if "L(N,D)" in fits:
    _figure_nd(fits, out, figures)
  if "transfer" in fits:
    _figure_transfer(fits, out, figures)
  sn = fits.get("shapes", {})
  if sn.get("panels"):
    _figure_shape_factors(sn["panels"], out, figures)
  if sn.get("collapse"):
    _figure_depth_collapse(sn["collapse"], out, figures)
  files.atomic_write_text(out / "report.md", markdown.markdown(out, doc, figures))
  return {"headline": doc["headline"], "figures": figures, "report": str(out / "report.md"),
          "fits": str(sweepfit.fits_path(out))}

