"""The design stage's measurements (scaling/design/planner.py plans from them): short runs on the
user's corpus and machine, in <sweep>/pilot/ (resumable like any sweep; the fits never read them).

  LR probe   two sizes × PROBE_MULTIPLIERS × Kaplan's LR(N) (arXiv 2001.08361 eq. D.1), short
             warm-up–stable–decay runs; the multiple with the lowest mean log loss is kept.
  grid       PILOT_WIDTHS sizes spread over the family, each one WSD run with a cooldown branch
             at every pilot budget (Hägele et al. 2024, arXiv 2405.18392): losses at 9 budgets
             a factor √2 apart, about PILOT_SHARE of the minutes; where the best run crosses the
             bigram loss, and where each budget's vertex lies. Sizes are trained from the
             largest down, each only at the budgets whose profile still falls toward it
             (`needed`): a small size's long runs far past every vertex are left out.
  noise      the middle size at the largest pilot budget again with the next seed: σ = |Δ|/√2.
  speed      every pilot run's seconds per token (its training loop) and its fixed cost (the rest
             of its wall time: compilation, evaluation, checkpoints).
"""

from __future__ import annotations

import copy
import json
import math
import resource
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from scaling import files
from scaling.config.spec import validate
from scaling.design import planner
from scaling.experiments import isoflop
from scaling.experiments import points as pointlib
from scaling.experiments import processes as processlib
from scaling.experiments.points import run_of_shape, shape_name
from scaling.laws import conventions
from scaling.laws.forms import kaplan_learning_rate
from scaling.model.transformer import ModelConfig, flop_per_token, param_count
from scaling.train import loop as trainlib
from scaling.train import rundir
from scaling.train import summary as summarylib

PILOT = rundir.PILOT
WIDTHS = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256)
PROBE_WIDTHS = (16, 48)
PROBE_MULTIPLIERS = (4.0, 8.0, 16.0, 32.0)
PROBE_STEPS = 240
PILOT_WIDTHS = (12, 20, 32, 48, 80)
PILOT_BUDGETS = 9                 # a factor √2 apart: a span of 16
PILOT_SHARE = 0.2


def family(cfg, n_vocab: int, convention: str = "palm") -> list[planner.Member]:
  """Two-layer one-head models of WIDTHS: N non-embedding, FLOPs per token of the convention."""
  key = conventions.convention_key(convention)
  out = []
  for d in WIDTHS:
    shape = (2, d, 1)     # one head at every width: a head count changing inside the family
                          # made the profiles zig-zag at the change (2 heads from width 80)
    m = _model(cfg, shape, n_vocab)
    n = getattr(param_count(m), conventions.N_KEY[convention])
    out.append(planner.Member(shape, float(n),
                             float(flop_per_token(m)[key])))
  return out


def _model(cfg, shape, n_vocab) -> ModelConfig:
  return ModelConfig.from_config(dict(cfg.model.to_dict(), n_layer=shape[0], d_model=shape[1],
                                      n_heads=shape[2], n_vocab=n_vocab, compute_dtype="float32"))


class Timed(NamedTuple):
  """A pilot run: its summary, its folder, and the wall time of the call that trained it (None
  when it was already on disk)."""
  summary: summarylib.RunSummary
  run: Path
  call_s: float | None


def _timed(rc, verbose: bool) -> Timed:
  """Trains one pilot run (or reads it when finished)."""
  run = pointlib.run_path(rc)
  if summarylib.exists(run):
    return Timed(summarylib.read(run), run, None)
  t0 = time.time()
  summary = trainlib.train(validate(rc), verbose=verbose)
  return Timed(summary, run, time.time() - t0)


def _probe_run(cfg, member: planner.Member, multiplier: float, warmup: int):
  shape = (*member.shape, 0, "")
  name = f"{shape_name(shape)}-x{multiplier:g}"
  rc = run_of_shape(cfg, shape, f"lr-{name}")
  rc.run_dir = pointlib.child_dir(cfg, f"{PILOT}/lr/{name}")
  t = rc.train
  t.steps, t.tokens, t.schedule, t.warmup_steps = PROBE_STEPS, 0, "wsd", warmup
  t.peak_lr = multiplier * kaplan_learning_rate(member.n)
  return rc


def lr_probe(cfg, fam: list, warmup: int, verbose: bool) -> tuple[tuple, list, list]:
  """((multiple at the reference N, reference N, exponent in N) of the learning rate
  (planner.lr_rule), the probe's rows, its summaries). A size whose best multiple is at an end
  of its probed ones is probed past that end (twice at most)."""
  members = [next(m for m in fam if m.shape[1] == w) for w in PROBE_WIDTHS]
  rows, summaries = [], []
  mults = {m.n: list(PROBE_MULTIPLIERS) for m in members}
  for _ in range(3):
    for member in members:
      for mult in mults[member.n]:
        if any(r["N"] == member.n and r["multiplier"] == mult for r in rows):
          continue
        timed = _timed(_probe_run(cfg, member, mult, warmup), verbose)
        summaries.append(timed)
        rows.append({"N": member.n, "multiplier": mult, "loss": timed.summary.final_eval_loss})
    grew = False
    for member in members:
      mine = mults[member.n]
      best = min((r for r in rows if r["N"] == member.n), key=lambda r: r["loss"])["multiplier"]
      if best == max(mine):
        mine.append(2 * max(mine))
      elif best == min(mine):
        mine.insert(0, min(mine) / 2)
      else:
        continue
      grew = True
    if not grew:
      break
  return planner.lr_rule(rows), rows, summaries


def _speed(summaries: list[Timed]) -> tuple[list, float]:
  """Seconds per token of each measured size (the median step of its runs, from their metrics:
  compilation and evaluation left out) and the median fixed cost of a run (the wall time of a
  timed call less its steps)."""
  by_n: dict = {}
  overheads = []
  for t in summaries:
    rates = [r["tokens_per_s"] for r in rundir.read_metrics(t.run)[2:] if r.get("tokens_per_s")]
    if not rates:
      continue
    spt = 1.0 / float(np.median(rates))
    by_n.setdefault(t.summary.n_kaplan, []).append(spt)
    if t.call_s is not None:
      overheads.append(max(0.0, t.call_s - t.summary.tokens * spt))
  rows = [{"N": float(n), "s_per_token": float(np.median(v))} for n, v in sorted(by_n.items())]
  return rows, float(np.median(overheads)) if overheads else 3.0


def _pilot_cfg(cfg, fam: list, c_max: float, lr: tuple, warmup: int):
  pc = isoflop_cfg(cfg, [list(m.shape) for m in fam if m.shape[1] in PILOT_WIDTHS],
                   [c_max / math.sqrt(2) ** k for k in reversed(range(PILOT_BUDGETS))],
                   lr, warmup)
  pc.run_dir = pointlib.child_dir(cfg, f"{PILOT}/grid")
  pc.sweep.min_steps = max(warmup + 20, 40)
  return pc


def needed(members: list, j: int, c: float, losses: dict) -> bool:
  """Whether pilot size j is trained at budget c, the larger sizes' losses there known
  (losses: (N, C) → loss): while fewer than two of them are, or while the smallest of them is
  still the best (the profile falls toward smaller N). Once a smaller size came out worse, the
  vertex is bracketed and the sizes below it would only be long runs far past it."""
  larger = [m for m in members[j + 1:] if (m.n, c) in losses]
  if len(larger) < 2:
    return True
  nearest = min(larger, key=lambda m: m.n)
  return losses[(nearest.n, c)] <= min(losses[(m.n, c)] for m in larger)


def adaptive_grid(members: list, budgets: list, train) -> dict:
  """The pilot grid from the largest size down: each size at the budgets where `needed` says
  so; train(member, budgets) trains one size (one WSD run, a branch per shorter budget) and
  returns its losses {(N, C): loss} (a budget too short or too long for it is left out)."""
  losses: dict = {}
  for j in reversed(range(len(members))):
    wanted = [c for c in budgets if needed(members, j, c, losses)]
    if wanted:
      losses.update(train(members[j], wanted))
  return losses


def isoflop_cfg(cfg, models: list, budgets: list, lr: tuple, warmup: int,
                budget_models: list | None = None):
  """An isoFLOP sweep config (scaling/experiments/isoflop.py) of the given sizes and budgets, WSD,
  the learning rate lr = (multiple of Kaplan's LR(N) at N_ref, N_ref, exponent in N)."""
  pc = _copy(cfg)
  pc.sweep = isoflop.defaults()
  pc.sweep.models = [tuple(m) for m in models]
  pc.sweep.budgets_flop = list(budgets)
  pc.sweep.budget_models = budget_models or []
  pc.sweep.lr_scale, pc.sweep.lr_ref_n, pc.sweep.lr_n_exponent = (float(x) for x in lr)
  pc.sweep.warmup_steps, pc.sweep.schedule = warmup, "wsd"
  return pc


def _copy(cfg):
  out = copy.deepcopy(cfg)
  if "sweep" in out:
    with out.unlocked():
      del out["sweep"]
  return out


def measure(cfg, store, minutes: float, warmup: int, verbose: bool = True,
            processes: int = 1) -> planner.Pilot:
  """Runs the probe, the grid and the noise check in <cfg.run_dir>/pilot/ and returns what they
  measured; `processes` will train the sweep (their gain is judged from the grid's CPU use)."""
  say = (lambda m: print(f"[design] {m}", flush=True)) if verbose else (lambda m: None)
  fam = family(cfg, store.n_vocab)
  say(f"LR probe: {len(PROBE_WIDTHS)} sizes x {len(PROBE_MULTIPLIERS)} multiples of Kaplan's "
      f"LR(N), {PROBE_STEPS} steps each")
  lr, probe, probe_summaries = lr_probe(cfg, fam, warmup, False)
  say(f"LR: {lr[0]:.3g} x Kaplan's LR(N) at N = {lr[1]:.3g}, x (N/{lr[1]:.3g})^{lr[2]:.3f} "
      "elsewhere (" + ", ".join(f"N={r['N']:.3g} x{r['multiplier']:g}: {r['loss']:.3f}"
                                for r in probe) + ")")
  spt_rows, overhead = _speed(probe_summaries)
  pilot0 = planner.Pilot(0.0, 0, lr[0], probe, [], spt_rows, overhead, None)
  spt = planner.seconds_per_token(pilot0, fam)
  batch_tokens = validate(cfg).train.batch_size * cfg.model.n_ctx
  pilot_members = [m for m in fam if m.shape[1] in PILOT_WIDTHS]
  per_c = sum(2.6 * spt(m) / m.flop_per_token for m in pilot_members)   # seconds per FLOP of C
  c_max = _grid_budget(Path(cfg.run_dir) / PILOT / "grid.json", lambda: max(
      max(PILOT_SHARE * minutes * 60 - overhead * len(pilot_members) * PILOT_BUDGETS, 60.0)
      / per_c, 2 * (warmup + 20) * batch_tokens * pilot_members[-1].flop_per_token))
  say(f"pilot grid: {len(pilot_members)} sizes, budgets {c_max / 16:.3g} to {c_max:.3g} FLOP")
  grid_cfg = _pilot_cfg(cfg, fam, c_max, lr, warmup)
  fresh = not rundir.find_runs(Path(grid_cfg.run_dir))
  t0, cpu0 = time.time(), _cpu_s()
  adaptive_grid(pilot_members, list(grid_cfg.sweep.budgets_flop),
                lambda member, budgets: _train_size(grid_cfg, member, budgets))
  grid_s, busy = time.time() - t0, (_cpu_s() - cpu0) / max(time.time() - t0, 1e-9)
  grid, summaries = [], []
  for run in rundir.find_runs(Path(grid_cfg.run_dir)):
    s = summarylib.read(run)
    summaries.append(Timed(s, run, None))
    grid.append({"N": float(s.n_kaplan), "C": float(s.budget_flop),
                 "loss": float(s.final_eval_loss)})
  sigma = _noise(grid_cfg, grid, store.n_vocab)
  spt_rows, _ = _speed(probe_summaries + summaries)
  factor, busy = _cost_factor(Path(cfg.run_dir) / PILOT / "cost.json", fresh, grid_s, busy, fam,
                              grid, planner.Pilot(0.0, 0, lr[0], probe, [], spt_rows, overhead,
                                                 None))
  say(f"pilot: best loss {min(r['loss'] for r in grid):.3f} (bigram {store.bigram_loss():.3f})"
      + (f", run-to-run σ {sigma:.4f}" if sigma is not None else ""))
  return planner.Pilot(float(store.bigram_loss()), int(store.meta["n_tokens_train"]), lr[0],
                      probe, grid, spt_rows, overhead, sigma, lr_ref_n=lr[1], lr_n_exponent=lr[2],
                      cost_factor=factor, process_gain=processlib.gain(busy, processes))


def _cpu_s() -> float:
  """CPU seconds this process has used, all its threads (XLA's and the loader's) together."""
  use = resource.getrusage(resource.RUSAGE_SELF)
  return use.ru_utime + use.ru_stime


def _train_size(grid_cfg, member: planner.Member, budgets: list) -> dict:
  """One pilot size at the given budgets (expand: its WSD run and branches), its losses."""
  from scaling.experiments.expand import expand
  from scaling.experiments.sweep import run_points
  pc = copy.deepcopy(grid_cfg)
  pc.sweep.models, pc.sweep.budgets_flop = [tuple(member.shape)], list(budgets)
  run_points(expand(pc), verbose=False)
  out = {}
  for run in rundir.find_runs(Path(grid_cfg.run_dir)):
    s = summarylib.read(run)
    c = next((b for b in budgets if math.isclose(b, s.budget_flop, rel_tol=1e-9)), None)
    if c is not None and math.isclose(s.n_kaplan, member.n, rel_tol=1e-9):
      out[(member.n, c)] = float(s.final_eval_loss)
  return out


def _cost_factor(path: Path, fresh: bool, grid_s: float, busy: float, fam: list, grid: list,
                 pilot: planner.Pilot) -> tuple[float, float]:
  """The measured wall time of the pilot grid over what the cost model predicts for it (its
  evaluations, checkpoints and per-run costs are what the per-step speed leaves out), and the
  cores it kept busy; kept in pilot/cost.json; (1, 0: unknown) when the grid was not trained
  whole now and nothing was kept."""
  if not fresh:
    try:
      kept = json.loads(path.read_text())
      return float(kept["factor"]), float(kept.get("busy_cores", 0.0))
    except (OSError, ValueError, KeyError, TypeError):
      return 1.0, 0.0
  predicted = planner.grid_seconds(fam, [(r["N"], r["C"]) for r in grid],
                                  planner.seconds_per_token(pilot, fam), pilot.run_overhead_s,
                                  planner.Settings().decay_frac)
  factor = min(max(grid_s / predicted, 0.5), 4.0) if predicted > 0 else 1.0
  files.atomic_write_text(path, json.dumps({"factor": factor, "grid_s": grid_s,
                                            "predicted_s": predicted, "busy_cores": busy}))
  return factor, busy


def _grid_budget(path: Path, compute) -> float:
  """The pilot grid's largest budget: the one recorded in <sweep>/pilot/grid.json when the pilot
  was begun before (so a rerun resumes the same runs), else computed and recorded."""
  if path.is_file():
    try:
      return float(json.loads(path.read_text())["c_max_flop"])
    except (OSError, ValueError, KeyError, TypeError):
      pass                      # unreadable: computed again (finished runs of another grid stay)
  c_max = float(compute())
  files.atomic_write_text(path, json.dumps({"c_max_flop": c_max}))
  return c_max


def _noise(grid_cfg, grid: list, n_vocab: int) -> float | None:
  """σ of one point from two seeds: the middle pilot size at the largest pilot budget, trained
  again with the next seed (in <sweep>/pilot/seed1)."""
  from scaling.experiments.expand import expand
  from scaling.experiments.sweep import run_points
  c_max = max(r["C"] for r in grid)
  ns = sorted({r["N"] for r in grid})
  at_top = [r["N"] for r in grid if r["C"] == c_max]
  if not at_top:
    return None
  # The middle of the pilot's sizes (long past its change of phase there), or the size trained
  # at the top budget nearest it in log N.
  n_mid = min(at_top, key=lambda n: abs(math.log(n / ns[len(ns) // 2])))
  twin = copy.deepcopy(grid_cfg)
  twin.seed = grid_cfg.seed + 1
  twin.run_dir = str(Path(grid_cfg.run_dir).parent / "seed1")
  twin.sweep.budgets_flop, twin.sweep.budget_models = [c_max], []
  twin.sweep.models = [m for m in grid_cfg.sweep.models
                       if param_count(_model(grid_cfg, tuple(m), n_vocab)).n_kaplan == n_mid]
  run_points(expand(twin), verbose=False)
  first = next(r["loss"] for r in grid if r["C"] == c_max and r["N"] == n_mid)
  again = summarylib.read(rundir.find_runs(Path(twin.run_dir))[0]).final_eval_loss
  return abs(first - again) / math.sqrt(2)
