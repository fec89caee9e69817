"""Shape experiments at fixed N (Kaplan et al. 2020 §3.1, Figures 5 and 6).

Two parts: the grid of shapes a shape-sweep config trains (one factor varied at a time at a fixed
non-embedding N, plus a ladder of depths for the embedding-counting check), and the analysis the
report draws: the loss increase over the best shape at each N against each factor, and how tightly
the curves of different depths fall on one power law when N counts, or does not count, the
embedding parameters.

Group labels tie a run to its place in the grid: "N2e+05:aspect,heads" means the run belongs to the
N ≈ 2e5 set and is a point of the aspect-ratio and head-count panels; "depth" marks ladder runs.
"""

from __future__ import annotations

import math

import numpy as np

from scaling.model.transformer import ModelConfig, param_count

DEFAULT_HEAD_SIZE = 32    # at this scale; Kaplan's 64 leaves one head for d_model < 128
DEFAULT_FF_RATIO = 4      # d_ff = 4·d_model (Kaplan 2020 §2.1)
FACTORS = {"aspect": "d_model / n_layer", "heads": "head size d_model / n_heads",
           "ff": "d_ff / d_model"}


def heads_for(d_model: int, head_size: int = DEFAULT_HEAD_SIZE) -> int:
  """The head count dividing d_model whose head size is nearest `head_size`."""
  divisors = [h for h in range(1, d_model + 1) if d_model % h == 0]
  return min(divisors, key=lambda h: (abs(math.log(d_model / h / head_size)), h))


def _round(x: float, multiple: int = 4) -> int:
  return max(multiple, int(round(x / multiple)) * multiple)


def n_kaplan(n_layer: int, d_model: int, d_ff: int = 0) -> int:
  """Kaplan's non-embedding N of a shape with d_attn = d_model (model.param_count's count)."""
  mcfg = ModelConfig(n_layer=n_layer, d_model=d_model, n_heads=1, n_ctx=1, n_vocab=1,
                     d_ff=d_ff or DEFAULT_FF_RATIO * d_model)
  return param_count(mcfg).n_kaplan


def width_for(n_target: float, n_layer: int, ff_ratio: float = DEFAULT_FF_RATIO) -> int:
  """d_model (a multiple of 4) giving N ≈ n_target at this depth: N = 2·n_layer·d²·(2 + ff_ratio)."""
  return _round(math.sqrt(n_target / (2 * n_layer * (2 + ff_ratio))))


def shape_grid(n_target: float, depths=(1, 2, 3, 4, 6, 8), base_layers: int = 2,
               head_sizes=(16, 32, 64, 128), ff_ratios=(1, 2, 4, 8)) -> list[tuple]:
  """Shapes at N ≈ n_target, one factor varied at a time; (n_layer, d_model, n_heads, d_ff, group).

  aspect: every depth at the default head size and d_ff = 4·d_model; heads: the base depth's
  default width with every head size that divides it; ff: the base depth with d_ff/d_model in
  ff_ratios, the width shrunk to keep N fixed. A shape that sits in several panels is trained once.
  """
  label = f"N{n_target:.0e}".replace("e+0", "e")
  shapes: dict[tuple, list[str]] = {}

  def add(n_layer, d_model, n_heads, ff_ratio, factor):
    key = (n_layer, d_model, n_heads, int(ff_ratio * d_model))
    shapes.setdefault(key, []).append(factor)

  for n_layer in depths:
    d = width_for(n_target, n_layer)
    add(n_layer, d, heads_for(d), DEFAULT_FF_RATIO, "aspect")
  d = _round(math.sqrt(n_target / (2 * base_layers * (2 + DEFAULT_FF_RATIO))), 32)  # many divisors
  divisors = [h for h in range(1, d + 1) if d % h == 0]
  for size in head_sizes:
    h = min(divisors, key=lambda h: abs(math.log(d / h / size)))
    add(base_layers, d, h, DEFAULT_FF_RATIO, "heads")
  for r in ff_ratios:
    dr = width_for(n_target, base_layers, r)
    add(base_layers, dr, heads_for(dr), r, "ff")
  return [(*k, f"{label}:{','.join(dict.fromkeys(v))}") for k, v in shapes.items()]


def depth_ladder(n_targets, depths=(1, 2, 4, 8)) -> list[tuple]:
  """For Figure 6: each depth at each N, default head size and d_ff."""
  out = []
  for n in n_targets:
    for n_layer in depths:
      d = width_for(n, n_layer)
      out.append((n_layer, d, heads_for(d), DEFAULT_FF_RATIO * d, "depth"))
  return out


def merge(*grids) -> list[tuple]:
  """Concatenates grids; a shape in several keeps one entry with the groups joined by ';'."""
  shapes: dict[tuple, list[str]] = {}
  for grid in grids:
    for *key, group in grid:
      shapes.setdefault(tuple(key), []).append(group)
  return [(*k, ";".join(v)) for k, v in shapes.items()]


# ---------------------------------------------------------------------------------------------
# Analysis of a finished shape sweep (rows: summary.json dicts with "shape" and "group").


def _groups(row) -> list[tuple[str, set]]:
  """[(N label, {factors})] of a run; the ladder label "depth" has no N label."""
  out = []
  for part in (row.group or "").split(";"):
    if ":" in part:
      label, factors = part.split(":", 1)
      out.append((label, set(factors.split(","))))
    elif part:
      out.append((part, set()))
  return out


def factor_value(shape: dict, factor: str) -> float:
  if factor == "aspect":
    return shape["d_model"] / shape["n_layer"]
  if factor == "heads":
    return float(shape["d_head"])
  return shape["d_ff"] / shape["d_model"]


def shape_panels(rows: list, loss_key: str = "final_eval_loss") -> dict:
  """Figure 5's data: per N label and factor, (factor value, loss increase over the best shape of
  that N in percent, N) sorted by the factor value; plus the largest increase for aspect ratios
  between 16 and 128 (the range Kaplan reports a few percent for)."""
  sets: dict[str, list] = {}
  for row in rows:
    for label, factors in _groups(row):
      if factors:
        sets.setdefault(label, []).append((row, factors))
  out = {}
  for label, members in sorted(sets.items()):
    best = min(getattr(r, loss_key) for r, _ in members)
    panel = {}
    for factor in FACTORS:
      pts = sorted((factor_value(r.shape, factor), 100 * (getattr(r, loss_key) / best - 1),
                    r.n_kaplan)
                   for r, f in members if factor in f)
      if pts:
        panel[factor] = {"x": [p[0] for p in pts], "increase_pct": [p[1] for p in pts],
                         "N": [p[2] for p in pts]}
    aspect = panel.get("aspect", {"x": [], "increase_pct": []})
    mid = [inc for x, inc in zip(aspect["x"], aspect["increase_pct"]) if 16 <= x <= 128]
    n_all = [r.n_kaplan for r, _ in members]
    out[label] = {"best_loss": best, "panels": panel, "n_runs": len(members),
                  "N_range": [min(n_all), max(n_all)],
                  "max_increase_aspect_16_128_pct": max(mid) if len(mid) > 1 else None}
  return out


def depth_collapse(rows: list, loss_key: str = "final_eval_loss") -> dict:
  """Figure 6's data: runs at the default head size and d_ff, grouped by depth; for N counted
  without embeddings (n_kaplan) and with them (n_total), one power law log L = a − α·log N fitted
  to all runs, the rms of the residuals (percent of L), and each depth's mean residual."""
  use = [r for r in rows
         if r.shape["d_ff"] == DEFAULT_FF_RATIO * r.shape["d_model"]
         and r.shape["n_heads"] == heads_for(r.shape["d_model"])
         and any(f == "depth" or "aspect" in fs for f, fs in _groups(r))]
  if len(use) < 3:
    return {}
  depth = np.array([r.shape["n_layer"] for r in use])
  loss = np.array([getattr(r, loss_key) for r in use], float)
  out = {"depth": depth.tolist(), "loss": loss.tolist()}
  for key, n_key in (("non_embedding", "n_kaplan"), ("total", "n_total")):
    n = np.array([r.count(n_key) for r in use], float)
    # One power law L = (N_c/N)^α for every depth (Kaplan 2020 Eq. 1.1), fitted in log space.
    slope, icpt = np.polyfit(np.log(n), np.log(loss), 1)
    resid = np.log(loss) - (icpt + slope * np.log(n))
    out[key] = {"N": n.tolist(), "alpha": float(-slope), "rms_pct": float(100 * np.sqrt(np.mean(resid ** 2))),
                "depth_mean_resid_pct": {int(d): float(100 * resid[depth == d].mean())
                                         for d in np.unique(depth)},
                "fit": [float(icpt), float(slope)]}
  return out
