"""Critical batch size by branched training (Merrill et al. 2025, arXiv 2505.23971, §3).

Per model size, one source run at a small batch with a constant LR after warm-up keeps its state
at several points (checkpoint.keep_steps). From each point, short forks (train.init_mode = fork)
train the same number of tokens (sweep.branch_tokens) at each of sweep.batch_sizes, with the LR of
the batch rule (points.sweep_lr), at a few seeds. Each fork evaluates the same held-out batches
along the way. Two readings per point:
  hyperbola  the tokens E(B) each batch needs to reach the loss the worst batch ends at, fitted
             with E = E_min·(1 + B/B_crit) (McCandlish 2018, arXiv 1812.06162, eq. 2.11): the
             same B_crit as the batch sweep's, so the two compare at equal loss;
  tolerance  Merrill et al.'s CBS: the largest batch whose final loss is within sweep.tolerance
             nats of the smallest batch's.
Both with a bootstrap over the forks' seeds. Across points and sizes, B_crit is fitted against the
loss (Kaplan 2020, arXiv 2001.08361, eq. 1.4) and against the tokens trained (Zhang et al. 2024,
arXiv 2410.21676; Bergsma et al. 2025, arXiv 2505.13738), and each law is judged by its error on
a model size left out of its fit.

Run layout: <sweep dir>/<shape>/source and <sweep dir>/<shape>/p<step>/bs<B>-s<seed>.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from scaling import files
from scaling.errors import UserError
from scaling.experiments import points as pointlib
from scaling.experiments.points import parse_shape, run_of_shape, shape_name, sweep_lr
from scaling.experiments.sweep import run_points
from scaling.files import atomic_write_text
from scaling.laws import batchlaw, fit, io
from scaling.train import rundir
from scaling.train import summary as summarylib

SOURCE = "source"


def source_run(cfg, shape: tuple):
  """The source run of one size: constant LR after a warm-up of sweep.warmup_tokens, its state
  kept at every branch point, evaluated at each of them."""
  s = cfg.sweep
  rc = run_of_shape(cfg, shape, f"{shape_name(shape)}-{SOURCE}")
  rc.run_dir = str(pointlib.run_path(cfg) / shape_name(shape) / SOURCE)
  batch_tokens = s.source_batch * cfg.model.n_ctx
  rc.train.batch_size = int(s.source_batch)
  rc.train.peak_lr = sweep_lr(s, s.source_batch)
  rc.train.tokens, rc.train.steps = 0, int(max(s.points_steps))
  rc.train.warmup_steps = max(1, math.ceil(s.warmup_tokens / batch_tokens))
  rc.train.min_lr_ratio = 1.0
  rc.checkpoint.keep_steps = ",".join(str(int(p)) for p in s.points_steps)
  rc.eval.every = math.gcd(*(int(p) for p in s.points_steps))
  return rc


def branch_tokens(s, point_tokens: float) -> float:
  """A fork's length: sweep.branch_fraction × the tokens trained at its point (so that a fork
  makes the same relative progress at every point), or sweep.branch_tokens when that is 0."""
  frac = s.get("branch_fraction", 0.0)
  return frac * point_tokens if frac else s.branch_tokens


def branch_runs(cfg, shape: tuple, source) -> list:
  """Every fork of one size: point × batch × seed (sweep.branch_points, default every point),
  each training branch_tokens tokens at the LR of its batch, evaluated on
  sweep.fork_eval_batches held-out batches (default the config's) along the way."""
  s = cfg.sweep
  out = []
  for point in s.get("branch_points", None) or s.points_steps:
    length = branch_tokens(s, point * source.train.batch_size * cfg.model.n_ctx)
    for b in s.batch_sizes:
      steps = max(1, round(length / (b * cfg.model.n_ctx)))
      for seed in s.seeds:
        where = f"p{int(point):06d}/bs{int(b):05d}-s{int(seed)}"
        rc = run_of_shape(cfg, shape, f"{shape_name(shape)}-{where.replace('/', '-')}")
        rc.run_dir = str(pointlib.run_path(cfg) / shape_name(shape) / where)
        rc.seed = int(seed)
        rc.train.batch_size = int(b)
        rc.train.peak_lr = sweep_lr(s, b)
        rc.train.tokens, rc.train.steps = 0, steps
        rc.train.warmup_steps = 0
        rc.train.min_lr_ratio = 1.0
        rc.train.init_from = f"{source.run_dir}@{int(point)}"
        rc.train.init_mode = "fork"
        rc.eval.every = max(1, steps // s.evals_per_branch)
        rc.eval.batches = int(s.get("fork_eval_batches", 0) or cfg.eval.batches)
        rc.checkpoint.every = steps          # only the end; forks are short
        out.append(rc)
  return out


def cbs_runs(cfg) -> list:
  """Sources first, then their forks (a fork needs its source's checkpoints)."""
  s = cfg.sweep
  if not s.models or not s.batch_sizes or not s.points_steps or not s.seeds:
    raise UserError("sweep.models, sweep.batch_sizes, sweep.points_steps and sweep.seeds must "
                    "not be empty")
  if sorted(s.batch_sizes)[0] >= sorted(s.batch_sizes)[-1]:
    raise UserError("sweep.batch_sizes needs at least two batch sizes")
  if s.get("branch_fraction", 0.0) < 0 or (not s.get("branch_fraction", 0.0)
                                           and s.branch_tokens <= 0):
    raise UserError("set sweep.branch_fraction > 0 (fork length × the tokens before the point) "
                    "or sweep.branch_tokens > 0")
  if s.evals_per_branch < 1:
    raise UserError(f"sweep.evals_per_branch={s.evals_per_branch} must be at least 1")
  missing = set(s.get("branch_points", None) or []) - set(s.points_steps)
  if missing:
    raise UserError(f"sweep.branch_points {sorted(missing)} are not in sweep.points_steps (the "
                    "states the source keeps)")
  shapes = [parse_shape(m) for m in s.models]
  sources = [source_run(cfg, shape) for shape in shapes]
  return sources + [rc for shape, src in zip(shapes, sources)
                    for rc in branch_runs(cfg, shape, src)]


def eval_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
  """A run's held-out losses: (tokens_E, loss_E) at each evaluation."""
  recs = [r for r in rundir.read_metrics(run_dir) if r.get("eval_loss") is not None]
  return (np.array([r["tokens"] for r in recs], float),
          np.array([r["eval_loss"] for r in recs], float))


def tokens_to_reach(tokens_E, loss_E, target: float) -> float | None:
  """The tokens from which on a fork's held-out loss stays at or below `target`, interpolated
  between the evaluations before and after linearly in log tokens (loss curves are close to
  straight there); a fork that changes batch and LR can first rise, so the first dip below is
  not enough. The first evaluation's tokens when all are below (a bound), None if the last
  evaluation is above."""
  above = np.flatnonzero(np.asarray(loss_E) > target)
  if not above.size:
    return float(tokens_E[0])
  i = int(above[-1]) + 1
  if i == len(loss_E):
    return None
  frac = (loss_E[i - 1] - target) / (loss_E[i - 1] - loss_E[i])
  return float(tokens_E[i - 1] * (tokens_E[i] / tokens_E[i - 1]) ** frac)


def point_cbs(curves: dict, tolerance: float) -> dict:
  """The two readings at one branch point. `curves`: batch (tokens) → one (tokens_E, loss_E) per
  seed (the same evaluation tokens for every seed of a batch).

  Hyperbola: the target is the highest final loss (seed means) among the batches from the one
  with the best final loss up, so all of those reach it; E(B) = the tokens to reach it. McCandlish's E = E_min(1 + B/B_crit) holds at the
  best LR of each batch; forks at one LR rule can be slower at the smallest batches too (a
  constant LR too high for their noise), so the fit takes the batches from the most token-efficient
  one up, and leaves out those already below the target at their first evaluation (E only
  bounded). Tolerance: the largest batch whose final loss is within `tolerance` of the best final
  loss (Merrill et al. compare with the smallest batch, the best one when the LR suits it)."""
  batches = sorted(curves)
  mean = {b: (curves[b][0][0], np.mean([c[1] for c in curves[b]], axis=0)) for b in batches}
  final = {b: float(mean[b][1][-1]) for b in batches}
  best = min(final.values())
  # The batches from the best final loss up (the side the hyperbola describes) all reach the
  # highest final loss among them.
  target = max(final[b] for b in batches if b >= min(final, key=final.get))
  reach = {b: tokens_to_reach(*mean[b], target) for b in batches}
  bounded = {b: bool(np.all(mean[b][1] <= target)) for b in batches}
  measured = [b for b in batches if reach[b] and not bounded[b]]
  fit_on = ([b for b in measured if b >= min(measured, key=lambda b: reach[b])]
            if measured else [])
  out = {"final_loss": final, "target_loss": target, "tokens_to_target": reach,
         "fit_batches": fit_on}
  hyp = (fit.fit_steps_examples(fit_on, [reach[b] / b for b in fit_on]) if len(fit_on) >= 3
         else {"valid": False, "B_crit": math.nan})
  out["B_crit"] = hyp["B_crit"] if hyp["valid"] else None
  out["B_crit_beyond_batches"] = bool(out["B_crit"] and out["B_crit"] > batches[-1])
  within = [b for b in batches if final[b] <= best + tolerance]
  out["cbs_tolerance"] = float(max(within))
  out["cbs_tolerance_censored"] = max(within) == batches[-1]   # the true CBS may be larger
  return out


def bootstrap_point(curves: dict, tolerance: float, n_boot: int, seed: int = 0) -> dict:
  """95 % intervals of both readings, resampling each batch's seeds with replacement."""
  rng = np.random.default_rng(seed)
  hyp, tol = [], []
  for _ in range(n_boot):
    sample = {b: [c[i] for i in rng.integers(0, len(c), len(c))] for b, c in curves.items()}
    r = point_cbs(sample, tolerance)
    if r["B_crit"]:
      hyp.append(r["B_crit"])
    tol.append(r["cbs_tolerance"])
  q = lambda v: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v else None
  return {"B_crit_ci": q(hyp), "cbs_tolerance_ci": q(tol), "n_boot": n_boot}


def _source_at(source: Path, curve: dict, step: int, fork_tokens: float) -> dict:
  """The source run at a branch point: tokens trained, smoothed training loss there and halfway
  through the forks' length further on (the middle of the interval the forks measure; the source
  goes on at its own batch), and its online noise scales over the centred window there.
  `curve`: the source's rundir.loss_curve."""
  i = int(np.searchsorted(curve["step"], step))
  if i >= len(curve["step"]) or curve["step"][i] != step:
    raise UserError(f"{source} has no logged step {step}")
  tokens = curve["tokens"]
  mid = min(int(np.searchsorted(tokens, tokens[i] + fork_tokens / 2)), len(tokens) - 1)
  value = lambda key, j: (float(curve[key][j]) if key in curve and math.isfinite(curve[key][j])
                          else None)
  return {"step": step, "tokens": float(tokens[i]), "train_loss": float(curve["smoothed"][i]),
          "mid_train_loss": float(curve["smoothed"][mid]),
          "online_window_tokens": value("b_simple_window_tokens", i),
          "online_precond_tokens": value("b_precond_window_tokens", i),
          "online_window_mid_tokens": value("b_simple_window_tokens", mid)}


def analyze_size(size_dir: Path, tolerance: float, smooth_tokens: float, n_boot: int) -> list:
  """Every branch point of one size with forks at 3 or more batches: the source there and both
  readings."""
  source = size_dir / SOURCE
  curve = rundir.loss_curve(source, smooth_tokens)      # read once for every point
  rows = []
  for point_dir in sorted(size_dir.glob("p[0-9]*")):
    curves, fork_tokens = {}, 0.0
    for run in rundir.find_runs(point_dir):
      summary = summarylib.read(run)
      curves.setdefault(summary.batch_tokens, []).append(eval_curve(run))
      fork_tokens = max(fork_tokens, summary.tokens)
    if len(curves) < 3:
      continue
    row = _source_at(source, curve, int(point_dir.name[1:]), fork_tokens)
    row["fork_tokens"] = fork_tokens
    row.update(point_cbs(curves, tolerance))
    row.update(bootstrap_point(curves, tolerance, n_boot))
    row["seeds"] = {str(b): len(c) for b, c in curves.items()}
    for name in ("window", "precond"):
      online = row[f"online_{name}_tokens"]
      row[f"ratio_over_{name}"] = row["B_crit"] / online if row["B_crit"] and online else None
    rows.append(row)
  return rows


def sweep_law_at(bsweep: dict | None, loss: float) -> float | None:
  """The batch sweep's B_crit(L) at this loss, only inside the losses the sweep measured."""
  law = (bsweep or {}).get("bcrit_law")
  targets = [r["target_loss"] for r in (bsweep or {}).get("targets", []) if r.get("valid")]
  if not law or not targets or not min(targets) <= loss <= max(targets):
    return None
  p = law["params"]
  return float(p["B_star"] / loss ** (1 / p["alpha_B"]))    # Kaplan 2020 eq. 1.4


def analyze(out: Path, tolerance: float, smooth_tokens: float, n_boot: int = 200,
            bsweep: dict | None = None) -> dict:
  """Every size under the sweep directory, the law comparison, and the batch sweep's B_crit(L)
  where it overlaps, at the middle of each point's loss interval. The sweep's B_crit(L) is a
  cumulative average of the noise scale from the start of training down to L (McCandlish 2018
  §2.3: S and E integrate over the path), the forks' a local one; expect branch/sweep ≥ 1."""
  sizes = {}
  for size_dir in sorted(p for p in Path(out).iterdir() if (p / SOURCE).is_dir()):
    rows = analyze_size(size_dir, tolerance, smooth_tokens, n_boot)
    for row in rows:
      sweep = sweep_law_at(bsweep, row["mid_train_loss"])
      row["sweep_B_crit"] = sweep
      row["ratio_over_sweep"] = row["B_crit"] / sweep if sweep and row["B_crit"] else None
    if rows:
      sizes[size_dir.name] = rows
  if not sizes:
    raise UserError(f"{out} holds no branch point with forks at 3 or more batch sizes")
  return {"sizes": sizes, "laws": batchlaw.compare(sizes), "tolerance_nats": tolerance}


def format_table(result: dict) -> str:
  f = lambda x, fmt=".4g": "—" if x is None else format(x, fmt)
  ci = lambda v: "—" if not v else f"[{v[0]:.3g}, {v[1]:.3g}]"
  lines = ["B_crit: the batch (tokens) at which reaching the worst fork's final loss costs twice "
           "the least (E = E_min(1 + B/B_crit), fitted from the most token-efficient batch up); "
           f"CBS tol: the largest batch within {result['tolerance_nats']} nats of the best final "
           "loss (Merrill et al. 2025; '≥' where it is the largest batch tried). Online "
           "estimates over the centred window at the point; the sweep's B_crit(L) at the middle "
           "of the interval the forks cover (mid loss).",
           "", "| size | step | tokens D | train loss | mid loss | B_crit (tokens) | 95 % | CBS tol | "
           "95 % | B_simple | B_crit/B_simple | B_P | B_crit/B_P | sweep B_crit(L) | branch/sweep |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for size, rows in result["sizes"].items():
    for r in rows:
      lines.append(
          f"| {size} | {r['step']} | {r['tokens']:.3g} | {r['train_loss']:.3f} | "
          f"{r['mid_train_loss']:.3f} | "
          f"{f(r['B_crit'])}{' (beyond the batches)' if r['B_crit_beyond_batches'] else ''} | "
          f"{ci(r['B_crit_ci'])} | "
          f"{'≥' if r['cbs_tolerance_censored'] else ''}{r['cbs_tolerance']:.4g} | "
          f"{ci(r['cbs_tolerance_ci'])} | {f(r['online_window_tokens'])} | "
          f"{f(r['ratio_over_window'], '.3g')} | {f(r['online_precond_tokens'])} | "
          f"{f(r['ratio_over_precond'], '.3g')} | {f(r['sweep_B_crit'])} | "
          f"{f(r['ratio_over_sweep'], '.3g')} |")
  laws = result["laws"]
  lines += ["", f"Laws over {laws['n_points']} points of {laws['n_sizes']} size(s) "
            "(held-out: fitted without a size, RMS of ln(predicted/measured) on it):", "",
            "| law | fit | in-fit RMS ln error | held-out RMS ln error |", "|---|---|---|---|"]
  for law, e in laws["laws"].items():
    fit_ = e["fit"]
    form = (f"B = {fit_['coef']:.3g}·L^{fit_['exponent']:.3g} (α_B = {f(e['alpha_B'], '.3g')})"
            if law == "loss" else f"B = {fit_['coef']:.3g}·D^{fit_['exponent']:.3g}")
    lines.append(f"| B_crit({'L' if law == 'loss' else 'D'}) | {form} | "
                 f"{e['rms_log_error_in_fit']:.3f} | {f(e['heldout_rms_log_error'], '.3f')} |")
  if laws.get("better_heldout"):
    lines.append(f"\nBetter on held-out sizes: B_crit({'L' if laws['better_heldout'] == 'loss' else 'D'}).")
  return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
  for size, rows in result["sizes"].items():
    d = [r["tokens"] for r in rows]
    line, = ax1.plot(d, [r["B_crit"] or np.nan for r in rows], "o-", label=f"{size}: B_crit")
    ax1.plot(d, [r["cbs_tolerance"] for r in rows], "v:", color=line.get_color(),
             label=f"{size}: CBS within tolerance")
    ax1.plot(d, [r["online_window_tokens"] or np.nan for r in rows], "s--", mfc="none",
             color=line.get_color(), label=f"{size}: B_simple online")
    ax1.plot(d, [r["online_precond_tokens"] or np.nan for r in rows], "^--", mfc="none",
             color=line.get_color(), label=f"{size}: B_P online")
    ax2.plot([r["mid_train_loss"] for r in rows], [r["B_crit"] or np.nan for r in rows], "o",
             color=line.get_color(), label=f"{size}: branched")
    sweep = [r for r in rows if r["sweep_B_crit"]]
    if sweep:
      ax2.plot([r["mid_train_loss"] for r in sweep], [r["sweep_B_crit"] for r in sweep], "k--",
               label="batch sweep B_crit(L)" if size == next(iter(result["sizes"])) else None)
  ax1.set(xscale="log", yscale="log", xlabel="tokens trained D at the branch point",
          ylabel="batch (tokens)", title="Critical batch along training (branched forks)")
  ax2.set(xscale="log", yscale="log", xlabel="training loss, middle of the forks' interval",
          ylabel="B_crit (tokens)", title="Branched B_crit against loss")
  ax1.legend(fontsize=7)
  ax2.legend(fontsize=7)
  fig.tight_layout()
  files.atomic_savefig(fig, path, dpi=120)
  plt.close(fig)


def run_cbs(cfg, overwrite: bool = False, n_boot: int = 200, bsweep_dir: str = "",
            train: bool = True) -> dict:
  """Trains every source and fork not yet finished (unless train is False: the analysis of what
  is on disk), then writes cbs.md, cbs.json and cbs.png."""
  out = pointlib.run_path(cfg)
  if train:
    run_points(cbs_runs(cfg), overwrite)
  bsweep = None
  if bsweep_dir:
    path = Path(bsweep_dir) / "bsweep.json"
    if not path.is_file():
      raise UserError(f"--sweep {bsweep_dir}: no bsweep.json there (run scaling bsweep first)")
    bsweep = json.loads(path.read_text())
  result = analyze(out, cfg.sweep.tolerance, cfg.sweep.smooth_tokens, n_boot, bsweep)
  table = format_table(result)
  print(table)
  atomic_write_text(out / "cbs.json", json.dumps(io.to_jsonable(result), indent=1))
  atomic_write_text(out / "cbs.md", "# Critical batch size by branched training\n\n" + table
                    + "\n\n![](cbs.png)\n")
  plot(result, out / "cbs.png")
  print(f"wrote {out / 'cbs.md'}, {out / 'cbs.json'}, {out / 'cbs.png'}")
  return result
