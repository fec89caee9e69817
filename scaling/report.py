"""The report of a sweep directory: figures (PNG), a Markdown page and the fitted numbers (JSON).

Reads only the run directories (summary.json, metrics.jsonl), so it can be re-run alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from scaling.errors import UserError
from scaling import shapes
from scaling.laws import approaches, forms, io
from scaling.laws.commands import fit_one
from scaling.laws.registry import get_law
from scaling.laws.uncertainty import percentile_interval


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _write_png(fig, path: Path, figures: dict, key: str, **savefig_kw) -> None:
  """PNG file, close; records the file under `key` in `figures`."""
  fig.savefig(path, **savefig_kw)
  _plt().close(fig)
  figures[key] = path.name


def _save_panels(fig, title: str, path: Path, figures: dict) -> None:
  """A figure of several panels (each with its own legend): title, then _write_png."""
  fig.suptitle(title)
  fig.tight_layout()
  _write_png(fig, path, figures, path.stem, dpi=110)


def _save(fig, ax, path: Path, figures: dict, key: str, legend_size: int = 8) -> None:
  """Legend, then _write_png."""
  ax.legend(fontsize=legend_size)
  _write_png(fig, path, figures, key, dpi=120, bbox_inches="tight")


def _fmt(x, digits: int = 4) -> str:
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "—"
  return f"{x:.{digits}g}"


def _b_noise_points(run_dirs: list[Path], bins: int = 8) -> dict:
  """Online B_noise (tokens) against training loss over all runs, binned by loss (median)."""
  loss, bn = [], []
  for run in run_dirs:
    for line in (run / "metrics.jsonl").read_text().splitlines():
      r = json.loads(line)
      if r.get("loss") and r.get("b_noise_tokens") and r["step"] > 20:
        loss.append(r["loss"])
        bn.append(r["b_noise_tokens"])
  loss, bn = np.asarray(loss), np.asarray(bn)
  if loss.size < 10:
    return {"loss": loss, "b_noise": bn, "bin_loss": np.array([]), "bin_b_noise": np.array([])}
  edges = np.quantile(loss, np.linspace(0, 1, bins + 1))
  centres, medians = [], []
  for lo, hi in zip(edges[:-1], edges[1:]):
    sel = (loss >= lo) & (loss <= hi) & (bn > 0)
    if sel.sum() >= 5:
      centres.append(float(np.median(loss[sel])))
      medians.append(float(np.median(bn[sel])))
  return {"loss": loss, "b_noise": bn, "bin_loss": np.array(centres),
          "bin_b_noise": np.array(medians)}


def _ns_points(run_dirs: list[Path], b_crit_law: dict, per_run: int = 12,
               skip_frac: float = 0.2) -> dict:
  """Points (N, S_min, smoothed loss) along each learning curve after the first skip_frac of it
  (warm-up transient; Kaplan 2020 §5.2), S_min = S/(1 + B_crit(L)/B) with B_crit(L) the law
  fitted to the online B_noise (smooth in L, unlike the per-step estimate)."""
  out = {"N": [], "S_min": [], "loss": []}
  for run in run_dirs:
    summary = json.loads((run / "summary.json").read_text())
    recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if r.get("loss") is not None]
    if len(recs) < 3 * per_run:
      continue
    loss = np.convolve([r["loss"] for r in recs], np.ones(15) / 15, mode="same")
    idx = np.unique(np.geomspace(int(skip_frac * len(recs)) + 1, len(recs) - 8, per_run).astype(int))
    for i in idx:
      b_crit = float(forms.b_crit(b_crit_law, loss[i]))
      out["N"].append(summary["n_kaplan"])
      out["S_min"].append(recs[i]["step"] / (1 + b_crit / summary["batch_tokens"]))
      out["loss"].append(float(loss[i]))
  return {k: np.asarray(v, float) for k, v in out.items()}


def _transfer(run_dirs: list[Path], n_boot: int, seed: int) -> dict:
  """Per extra evaluation set: the constant offset and the linear map from the in-distribution
  loss, and L(N) on that set, each with bootstrap intervals over runs."""
  from scaling.laws import fit as fitlib
  from scaling.laws.uncertainty import bootstrap, intervals
  rows = [json.loads((r / "summary.json").read_text()) for r in run_dirs]
  names = sorted({k for s in rows for k in (s.get("final_eval_losses") or {})})
  out = {}
  for name in names:
    pts = [(s["n_kaplan"], s["final_eval_loss"], s["final_eval_losses"][name]) for s in rows
           if (s.get("final_eval_losses") or {}).get(name) is not None]
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
                 "alpha_N_interval": ci.get("alpha_N"), "L_in": li.tolist(), "L_other": lo.tolist(),
                 "N": n.tolist()}
  return out


def make_report(sweep: str, n_boot: int = 1000, holdout: int = 1, seed: int = 0) -> dict:
  """Fits the sweep's laws and writes report.md, report.json and the figures into `sweep`."""
  out = Path(sweep)
  cols = io.load(str(out), "kaplan", "final_eval_loss", with_curves=True)
  runs = [Path(n) for n in cols["name"]]
  full = cols["D_data"] == cols["D_data"].max()   # runs on the whole training split
  if len(np.unique(cols["N"][full])) < 3:
    raise UserError(f"{out} has fewer than 3 model sizes trained on the full data; run the ladder")
  plt = _plt()
  figures, numbers = {}, {}

  # 1. L(N), pure power law and with an irreducible term, with the held-out largest model.
  ln = {k: v[full] for k, v in cols.items() if isinstance(v, np.ndarray)}
  # The form with an irreducible term only when there are points to spare for its third constant.
  fits = {name: fit_one(name, ln, n_boot, holdout, seed, None) for name in ("N", "N+E")
          if name == "N" or len(np.unique(ln["N"])) > get_law(name).n_params + holdout}
  numbers["L(N)"] = fits
  fig, ax = plt.subplots(figsize=(6.4, 4.8))
  ax.plot(ln["N"], ln["loss"], "o", label="held-out loss at the end of training")
  n_grid = np.logspace(np.log10(ln["N"].min()) - 0.2, np.log10(ln["N"].max()) + 0.5, 100)
  for name, style in (("N", "-"), ("N+E", "--")):
    if name not in fits:
      continue
    p = fits[name]["params"]
    ax.plot(n_grid, forms.loss_n(p, n_grid), style,
            label=f"fit {name}: α_N = {p['alpha_N']:.3f}" + (f", E = {p['E']:.2f}" if "E" in p else ""))
  for e in fits["N"].get("extrapolation", []):
    ax.plot([e["N"]], [e["measured"]], "*", ms=14, color="C3",
            label=f"held out: predicted {e['predicted']:.3f}, measured {e['measured']:.3f} "
                  f"({100 * e['rel_error']:+.1f}%)")
  ax.set(xscale="log", yscale="log", xlabel="N (non-embedding parameters)",
         ylabel="held-out loss (nats/token)", title="L(N): loss against model size")
  _save(fig, ax, out / "L_N.png", figures, "L_N", 8)

  # 2. Learning curves against compute, the frontier and L(C).
  curves = [c for c, f in zip(cols["curves"], full) if f]
  env = approaches.fit_envelope(curves, min(n_boot, 300), seed)
  numbers["frontier"] = {k: env[k] for k in ("params", "intervals", "n_boot")}
  fig, ax = plt.subplots(figsize=(6.4, 4.8))
  cmap = plt.get_cmap("viridis")
  order = np.argsort([c["N"] for c in curves])
  for rank, i in enumerate(order):
    c = curves[i]
    ax.plot(c["C"] / forms.PF_DAY_FLOP, c["loss"], color=cmap(rank / max(1, len(curves) - 1)),
            lw=1, label=f"N = {c['N']:.2g}")
  e = env["envelope"]
  c_env = np.asarray(e["C"]) / forms.PF_DAY_FLOP
  ax.plot(c_env, e["loss"], "k:", lw=2, label="compute-efficient frontier")
  p = env["params"]
  ax.plot(c_env, (p["C_c"] / np.asarray(e["C"])) ** p["alpha_C"], "r--",
          label=f"L(C) fit: α_C = {p['alpha_C']:.3f}")
  ax.set(xscale="log", yscale="log", xlabel="compute C = 6·N·tokens (PF-days)",
         ylabel="training loss (smoothed)", title="Learning curves against compute")
  _save(fig, ax, out / "curves_compute.png", figures, "curves", 7)

  # 3. Online B_noise against loss, with a B_crit(L)-form fit and Kaplan's law.
  bn = _b_noise_points(runs)
  fig, ax = plt.subplots(figsize=(6.4, 4.8))
  if bn["loss"].size:
    ax.plot(bn["loss"], np.where(bn["b_noise"] > 0, bn["b_noise"], np.nan), ".", ms=2, alpha=0.3,
            color="C0", label="B_noise every step (all runs)")
  if bn["bin_loss"].size >= 3:
    ax.plot(bn["bin_loss"], bn["bin_b_noise"], "s", color="C1", label="median per loss bin")
    law = approaches.fit_bcrit(bn["bin_loss"], bn["bin_b_noise"], min(n_boot, 300), seed)
    numbers["b_noise_law"] = law
    lg = np.linspace(bn["bin_loss"].min(), bn["bin_loss"].max(), 50)
    ax.plot(lg, forms.b_crit(law["params"], lg), "-", color="C1",
            label=f"fit: α_B = {law['params']['alpha_B']:.2f}")
  bsweep = out / "bsweep.json"
  if bsweep.is_file():
    rows = [r for r in json.loads(bsweep.read_text())["targets"] if r.get("valid")]
    ax.plot([r["target_loss"] for r in rows], [r["B_crit"] for r in rows], "D", color="C3",
            label="B_crit from the batch sweep")
  if bn["loss"].size:
    lg = np.linspace(bn["loss"].min(), bn["loss"].max(), 50)
    ax.plot(lg, forms.b_crit(forms.KAPLAN2020["B_crit"], lg), "--", color="gray",
            label="Kaplan 2020 B_crit(L) (WebText2)")
  ax.set(xscale="log", yscale="log", xlabel="training loss (nats/token)",
         ylabel="batch size (tokens)", title="Gradient noise scale against loss")
  _save(fig, ax, out / "b_noise.png", figures, "b_noise", 7)

  # 4. L(N, S_min) from the learning curves, with S_min = S/(1 + B_crit/B) (Kaplan 2020 eq. 5.4)
  # and the online B_noise at each step standing in for B_crit(L).
  ns = (_ns_points([r for r, f in zip(runs, full) if f], numbers["b_noise_law"]["params"])
        if "b_noise_law" in numbers else {"loss": []})
  if len(ns["loss"]) >= 8:
    law_ns = fit_one("NS", ns, 0, 0, seed, None)
    numbers["L(N,S)"] = law_ns
    p = law_ns["params"]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for k, n in enumerate(np.unique(ns["N"])):
      sel = ns["N"] == n
      ax.plot(ns["S_min"][sel], ns["loss"][sel], "o", ms=3, color=f"C{k % 10}", label=f"N = {n:.2g}")
      sg = np.logspace(np.log10(ns["S_min"][sel].min()), np.log10(ns["S_min"][sel].max()), 50)
      ax.plot(sg, forms.loss_ns(p, n, sg), "-", color=f"C{k % 10}")
    ax.set(xscale="log", yscale="log",
           xlabel="S_min = S/(1 + B_crit(L)/B), B_crit(L) from the online B_noise fit",
           ylabel="training loss (smoothed)",
           title=f"L(N, S_min): α_N = {p['alpha_N']:.3f}, α_S = {p['alpha_S']:.2f}")
    _save(fig, ax, out / "L_NS.png", figures, "L_NS", 7)

  # 5. L(N, D) when the sweep has data-limited runs.
  if len(np.unique(cols["D_data"])) >= 2 and len(np.unique(cols["N"])) >= 2:
    # Early-stopped losses (the lowest held-out loss of each run), as Kaplan fits L(N, D).
    best = io.load(str(out), "kaplan", "best_eval_loss")
    nd_cols = {"N": best["N"], "D": best["D_data"], "loss": best["loss"]}
    numbers["L(N,D)"] = fit_one("ND", nd_cols, min(n_boot, 300), 0, seed, None)
    p = numbers["L(N,D)"]["params"]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for k, n in enumerate(np.unique(nd_cols["N"])):
      sel = nd_cols["N"] == n
      ax.plot(nd_cols["D"][sel], nd_cols["loss"][sel], "o", color=f"C{k}", label=f"N = {n:.2g}")
      dg = np.logspace(np.log10(nd_cols["D"].min()), np.log10(nd_cols["D"].max()), 50)
      ax.plot(dg, forms.loss_nd(p, n, dg), "-", color=f"C{k}")
    ax.set(xscale="log", yscale="log", xlabel="D (distinct training tokens)",
           ylabel="early-stopped held-out loss",
           title=f"L(N, D): α_N/α_D = {p['alpha_N'] / p['alpha_D']:.2f}")
    _save(fig, ax, out / "L_ND.png", figures, "L_ND", 7)

  # 6. Transfer to other distributions (Kaplan 2020 §3.2.2): loss on each extra held-out set
  # against the in-distribution loss, L_other = L_in + offset and L_other = k·L_in + b.
  transfer = _transfer([r for r, f in zip(runs, full) if f], n_boot, seed)
  if transfer:
    numbers["transfer"] = transfer
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for k, (name, t) in enumerate(transfer.items()):
      li, lo = np.asarray(t["L_in"]), np.asarray(t["L_other"])
      ax.plot(li, lo, "o", color=f"C{k}", label=f"{name}")
      grid = np.linspace(li.min(), li.max(), 20)
      ax.plot(grid, grid + t["offset"], "-", color=f"C{k}",
              label=f"{name}: L_in + {t['offset']:.3f}")
      ax.plot(grid, t["slope"] * grid + t["intercept"], ":", color=f"C{k}",
              label=f"{name}: {t['slope']:.2f}·L_in + {t['intercept']:.2f}")
    ax.set(xlabel="in-distribution held-out loss (nats/token)",
           ylabel="held-out loss on the other distribution",
           title="Transfer: loss on other text against the training distribution")
    _save(fig, ax, out / "transfer.png", figures, "transfer", 7)

  # 7. Shape experiments (Kaplan 2020 §3.1): loss against each shape factor at fixed N
  # (Figure 5) and the depth curves against N with and without embeddings (Figure 6).
  shape_numbers = _shapes([json.loads((r / "summary.json").read_text()) for r in runs],
                          out, plt, figures)

  headline = _headline(fits, bn, cols, full)
  if transfer:
    headline["transfer"] = {name: {"offset": t["offset"], "offset_interval": t["offset_interval"],
                                   "alpha_N": t["alpha_N"], "alpha_N_interval": t["alpha_N_interval"]}
                            for name, t in transfer.items()}
  (out / "report.json").write_text(json.dumps(io.to_jsonable(
      {"headline": headline, "figures": figures, "shapes": shape_numbers, "fits": {
          k: ({kk: vv for kk, vv in v.items() if kk != "bootstrap_samples"} if "params" in v
              else {n: {kk: vv for kk, vv in f.items() if kk != "bootstrap_samples"}
                    for n, f in v.items()})
          for k, v in numbers.items()}}), indent=1))
  (out / "report.md").write_text(_markdown(out, numbers, figures, headline, cols, full,
                                             shape_numbers))
  return {"headline": headline, "figures": figures, "report": str(out / "report.md")}


def _shapes(rows: list[dict], out: Path, plt, figures: dict) -> dict:
  """Figures 5 and 6 of Kaplan 2020 from the runs carrying shape-sweep group labels."""
  rows = [r for r in rows if r.get("group") and r.get("shape")
          and r.get("final_eval_loss") is not None and math.isfinite(r["final_eval_loss"])]
  if not rows:
    return {}
  result = {"panels": shapes.shape_panels(rows), "collapse": shapes.depth_collapse(rows)}
  if result["panels"]:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
    for ax, (factor, title) in zip(axes, shapes.FACTORS.items()):
      for k, (label, st) in enumerate(result["panels"].items()):
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
  col = result["collapse"]
  if col:
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
  return result


def _shapes_markdown(sn: dict) -> list[str]:
  lines = ["## Shape at fixed N (Kaplan 2020 §3.1)", "",
           "Loss increase over the best shape of the set; in brackets the spread within the panel "
           "(largest minus smallest increase), which is what varying that factor alone does.", "",
           "| N set | runs | N range | best loss | largest increase, aspect ratio 16–128 | "
           "heads | d_ff/d_model |", "|---|---|---|---|---|---|---|"]
  for label, st in sn.get("panels", {}).items():
    def worst(f):
      pan = st["panels"].get(f)
      if not pan:
        return "–"
      inc = pan["increase_pct"]
      return f"{max(inc):.2f}% ({max(inc) - min(inc):.2f}%)"
    mid = st["max_increase_aspect_16_128_pct"]
    lines.append(f"| {label} | {st['n_runs']} | {_fmt(st['N_range'][0])}–{_fmt(st['N_range'][1])} | "
                 f"{st['best_loss']:.4f} | {'–' if mid is None else f'{mid:.2f}%'} | "
                 f"{worst('heads')} | {worst('ff')} |")
  col = sn.get("collapse")
  if col:
    ne, tot = col["non_embedding"], col["total"]
    lines += ["", "One power law fitted to every depth's runs: rms deviation "
              f"{ne['rms_pct']:.2f}% with N without embeddings (α = {ne['alpha']:.3f}) and "
              f"{tot['rms_pct']:.2f}% with N including them (α = {tot['alpha']:.3f}). Mean residual "
              "per depth (%), without / with embeddings: "
              + ", ".join(f"{d} layers {ne['depth_mean_resid_pct'][d]:+.2f} / "
                          f"{tot['depth_mean_resid_pct'][d]:+.2f}"
                          for d in ne["depth_mean_resid_pct"]) + ".",
              "Kaplan et al. report a few percent across a wide range of shapes and a collapse of "
              "the depth curves only without embeddings; the N spread within a set (table) moves "
              "the loss by about α_N·ln(N_max/N_min) as well."]
  return lines


def _headline(fits, bn, cols, full) -> dict:
  lo, hi = fits["N"]["intervals"].get("alpha_N", (math.nan, math.nan))
  ext = fits["N"].get("extrapolation", [{}])[0]
  largest = int(np.argmax(np.where(full, cols["N"], -1)))
  run = Path(cols["name"][largest])
  summary = json.loads((run / "summary.json").read_text())
  return {"alpha_N": fits["N"]["params"]["alpha_N"], "alpha_N_interval": [lo, hi],
          "extrapolation_rel_error": ext.get("rel_error"),
          "extrapolation_N": ext.get("N"),
          "b_noise_at_final_loss_tokens": summary.get("b_noise_tokens_final"),
          "final_loss_largest": summary.get("final_eval_loss"), "n_runs": int(full.sum())}


def _markdown(out, numbers, figures, headline, cols, full, shape_numbers=None) -> str:
  lines = [f"# Scaling-law report: `{out}`", "",
           f"{int(full.sum())} runs on the full training split"
           + (f", {int((~full).sum())} data-limited" if (~full).any() else "") +
           ". Loss: held-out cross-entropy in nats/token; N: non-embedding parameters (Kaplan); "
           "C = 6·N·tokens. Tiny models on a tiny corpus: the exponents are the part that may "
           "transfer; the scales (N_c, C_c, B*) belong to this corpus and tokenizer.", "",
           "## Headline", "",
           f"- α_N = {headline['alpha_N']:.4f}, 95% interval [{_fmt(headline['alpha_N_interval'][0])}, "
           f"{_fmt(headline['alpha_N_interval'][1])}]",
           f"- largest model (N = {_fmt(headline['extrapolation_N'])}) predicted from the others: "
           f"relative error {100 * (headline['extrapolation_rel_error'] or math.nan):+.2f}%",
           f"- online B_noise at the largest model's final loss ({_fmt(headline['final_loss_largest'])}): "
           f"{_fmt(headline['b_noise_at_final_loss_tokens'])} tokens", "",
           "## Fitted constants beside the published ones", "",
           "| law | constant | fitted | 95% interval | Kaplan 2020 | Chinchilla 2022 | depends on data/tokenizer |",
           "|---|---|---|---|---|---|---|"]
  rows = []
  for name, f in numbers["L(N)"].items():
    rows += [(f"L({name})", k, v, f["intervals"].get(k)) for k, v in f["params"].items()]
  fr = numbers["frontier"]
  rows += [("frontier", k, fr["params"][k], fr["intervals"].get(k)) for k in ("alpha_C", "C_c", "a", "b")]
  if "b_noise_law" in numbers:
    bl = numbers["b_noise_law"]
    rows += [("B_noise(L)", k, v, bl["intervals"].get(k)) for k, v in bl["params"].items()]
  for law in ("L(N,S)", "L(N,D)"):
    if law in numbers:
      f = numbers[law]
      rows += [(law, k, v, f["intervals"].get(k)) for k, v in f["params"].items()]
  kaplan = {"alpha_N": 0.076, "N_c": 8.8e13, "alpha_C": 0.050, "C_c": 3.1e8, "a": 0.73,
            "alpha_B": 0.21, "B_star": 2e8, "alpha_D": 0.095, "D_c": 5.4e13, "alpha_S": 0.76,
            "S_c": 2.1e3}
  chin = {"a": 0.46, "b": 0.54, "E": 1.69}
  for law, k, v, ci in rows:
    ci = ci or (math.nan, math.nan)
    dep = "yes" if k in forms.DATA_DEPENDENT else "no (exponent)"
    lines.append(f"| {law} | {k} | {_fmt(v)} | [{_fmt(ci[0])}, {_fmt(ci[1])}] | "
                 f"{_fmt(kaplan.get(k))} | {_fmt(chin.get(k))} | {dep} |")
  fr_p = fr["params"]
  lines += ["", "## Compute-optimal allocation implied by the frontier", "",
            f"N_opt ∝ C^{fr_p['a']:.3f}, D_opt ∝ C^{fr_p['b']:.3f} (Kaplan 2020: 0.73 / 0.27; "
            "Chinchilla: ≈0.5 / 0.5). Over this short range of compute the frontier is made of "
            "few models, so read the exponents with their intervals.", "",
            "## Extrapolation check", ""]
  for name, f in numbers["L(N)"].items():
    for e in f.get("extrapolation", []):
      lines.append(f"- L({name}) fitted without N = {_fmt(e['N'])}: predicted {e['predicted']:.4f}, "
                   f"measured {e['measured']:.4f}, error {100 * e['rel_error']:+.2f}% "
                   f"({'inside' if e['inside_interval'] else 'outside'} the 95% interval "
                   f"[{_fmt(e['interval'][0])}, {_fmt(e['interval'][1])}])")
  if "transfer" in numbers:
    lines += ["", "## Transfer to other distributions", "",
              "| held-out set | offset L_other − L_in | slope k in L_other = k·L_in + b | "
              "α_N on that set | α_N in distribution |", "|---|---|---|---|---|"]
    a_in = numbers["L(N)"]["N"]["params"]["alpha_N"]
    for name, t in numbers["transfer"].items():
      oi, si, ai = t["offset_interval"], t["slope_interval"], t["alpha_N_interval"]
      lines.append(f"| {name} | {t['offset']:.4f} [{_fmt(oi[0])}, {_fmt(oi[1])}] | "
                   f"{t['slope']:.3f} [{_fmt(si[0])}, {_fmt(si[1])}] | "
                   f"{t['alpha_N']:.4f} [{_fmt(ai[0])}, {_fmt(ai[1])}] | {a_in:.4f} |")
    lines += ["", "A constant offset (Kaplan 2020 §3.2.2) means the slope's interval contains 1 "
              "and the per-set α_N matches the in-distribution one."]
  if shape_numbers:
    lines += [""] + _shapes_markdown(shape_numbers)
  lines += ["", "## Figures", ""] + [f"![{k}]({v})" for k, v in figures.items()]
  return "\n".join(lines) + "\n"
