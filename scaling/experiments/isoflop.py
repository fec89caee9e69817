"""IsoFLOP sweeps: FLOP budgets × model sizes → run configs that each spend their budget.

A run of model N at budget C trains on D = C / (FLOPs per token of N) tokens (whole steps), with
the FLOPs per token of the sweep's convention (sweep.flop_convention):
  palm        6N + attention scores + unembedding (PaLM, arXiv 2204.02311, app. B): the FLOPs
              the step really does; Porian et al. 2024 (arXiv 2406.19146, §3.1) show that
              leaving the head out shifts the allocation exponent.
  kaplan      6N, N non-embedding (Kaplan 2020, arXiv 2001.08361, §2.1).
  chinchilla  6·N_total (Hoffmann 2022, arXiv 2203.15556, §3).
A point is kept when it has at least sweep.min_steps steps and repeats the training split at most
sweep.max_epochs times (Muennighoff et al. 2023, arXiv 2305.16264, §5: up to ~4 epochs cost
almost nothing); the skipped ones are printed.

Schedules (sweep.schedule):
  cosine  one run per point, its cosine ending at its own horizon (sweep.horizon "matched"), or at
          the longest horizon of its size ("longest": Kaplan's fixed-horizon runs, the contrast).
  wsd     per size one warm-up–stable–decay run at its longest horizon, and for every shorter
          budget a branch from that run's checkpoint at the start of its own cooldown (Hägele et
          al. 2024, arXiv 2405.18392, §4): the same run as a full WSD run of that length, for the
          price of its cooldown.
Warm-up (sweep.warmup): "fixed" = sweep.warmup_steps steps for every run; "per_param" =
sweep.warmup_tokens_per_param·N tokens (Porian et al. 2024, §3.3: warm-up ∝ N).
Learning rate: sweep.lr_scale × Kaplan's LR(N) (eq. D.1 of Kaplan 2020, fitted on models of 1e6+
parameters; far below the best rate of the tiny models of a CPU sweep). Per-size tuning: every
point at each of sweep.lr_multipliers × that; the fits keep the lowest loss of each (size, budget).
Seeds: every point trained sweep.seeds times (run seeds cfg.seed, cfg.seed + 1, …; WSD branches
within each seed's own run); the fits use the mean over seeds and report their spread, the
run-to-run noise that a difference between two points must exceed to count.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import ml_collections
import numpy as np

from scaling.config.spec import validate
from scaling.data import tokenize
from scaling.errors import UserError
from scaling.experiments import points as pointlib
from scaling.experiments.points import parse_shape, run_of_shape, shape_name
from scaling.laws.conventions import HELDOUT, N_KEY, convention_key
from scaling.laws.forms import kaplan_learning_rate
from scaling.model.transformer import ModelConfig, flop_per_token, param_count
from scaling.train import optim

def defaults() -> ml_collections.ConfigDict:
  """The isoFLOP fields of a sweep section, with their defaults."""
  s = ml_collections.ConfigDict()
  s.budgets_flop = []              # FLOP budgets (of the convention below)
  s.models = []                    # (n_layer, d_model, n_heads[, d_ff]) sizes
  s.budget_models = []             # optional, per budget: indices into models ([]: all that fit)
  s.flop_convention = "palm"       # palm | kaplan | chinchilla
  s.schedule = "wsd"               # wsd (branched cooldowns) | cosine
  s.horizon = "matched"            # matched | longest (cosine only: Kaplan's fixed horizon)
  s.warmup = "fixed"               # fixed | per_param
  s.warmup_steps = 20
  s.warmup_tokens_per_param = 1.0
  s.lr_scale = 1.0                 # every run's peak LR = lr_scale × Kaplan's LR(N) …
  s.lr_ref_n = 0.0                 # … × (N / lr_ref_n)^lr_n_exponent when lr_ref_n > 0 (a
  s.lr_n_exponent = 0.0            # size trend measured by the design's probe) …
  s.lr_multipliers = [1.0]         # … × each of these; the best of each (size, budget) is kept
  s.max_epochs = 4.0
  s.min_steps = 40
  s.seeds = 1                      # runs per point, seeds cfg.seed, cfg.seed + 1, …
  return s


@dataclasses.dataclass(frozen=True)
class Point:
  shape: tuple
  budget_flop: float
  steps: int
  n_kaplan: int
  flop_per_token: float
  epochs: float
  lr_multiplier: float
  seed_index: int = 0


def _with_defaults(sweep) -> ml_collections.ConfigDict:
  s = defaults()
  for k in sweep:
    if k not in s:
      raise UserError(f"unknown isoFLOP sweep field sweep.{k}; known: {', '.join(s)}")
    s[k] = sweep[k]
  for k, allowed in (("schedule", ("wsd", "cosine")), ("horizon", ("matched", "longest")),
                     ("warmup", ("fixed", "per_param"))):
    if s[k] not in allowed:
      raise UserError(f"sweep.{k} must be one of {', '.join(allowed)}, got {s[k]!r}")
  if s.schedule == "wsd" and s.horizon == "longest":
    raise UserError("sweep.horizon=longest is the fixed-horizon cosine contrast; use it with "
                    "sweep.schedule=cosine")
  if not s.budgets_flop or not s.models:
    raise UserError("an isoFLOP sweep needs sweep.budgets_flop and sweep.models")
  if any(not (b > 0 and math.isfinite(b)) for b in s.budgets_flop):
    raise UserError(f"sweep.budgets_flop must be positive numbers, got {list(s.budgets_flop)}")
  if s.budget_models and len(s.budget_models) != len(s.budgets_flop):
    raise UserError("sweep.budget_models needs one list of model indices per budget")
  if not isinstance(s.seeds, int) or isinstance(s.seeds, bool) or s.seeds < 1:
    raise UserError(f"sweep.seeds must be a positive integer (runs per point), got {s.seeds!r}")
  return s


def _model(cfg, shape: tuple, n_vocab: int) -> ModelConfig:
  return ModelConfig.from_config(dict(cfg.model.to_dict(), n_layer=shape[0], d_model=shape[1],
                                      n_heads=shape[2], d_ff=shape[3] or cfg.model.d_ff,
                                      n_vocab=n_vocab, compute_dtype="float32"))


def design(cfg) -> tuple[list[Point], list[str]]:
  """The sweep's points, and a line for each (size, budget) left out and why."""
  s = _with_defaults(cfg.sweep)
  spec = validate(cfg)
  store = tokenize.store_for(spec.data, verbose=False)
  d_train = spec.data.max_train_tokens or store.meta["n_tokens_train"]
  batch_tokens = spec.train.batch_size * cfg.model.n_ctx
  key = convention_key(s.flop_convention)
  points, skipped = [], []
  for i, budget in enumerate(s.budgets_flop):
    indices = s.budget_models[i] if s.budget_models else range(len(s.models))
    for j in indices:
      if not 0 <= j < len(s.models):
        raise UserError(f"sweep.budget_models[{i}] names model {j}; there are {len(s.models)}")
      shape = parse_shape(s.models[j])
      mcfg = _model(cfg, shape, store.n_vocab)
      fpt = flop_per_token(mcfg)[key]
      steps = int(round(budget / (fpt * batch_tokens)))
      epochs = steps * batch_tokens / d_train
      why = (f"{steps} steps < sweep.min_steps={s.min_steps}" if steps < s.min_steps else
             f"{epochs:.1f} epochs > sweep.max_epochs={s.max_epochs}" if epochs > s.max_epochs
             else "")
      if why:
        skipped.append(f"{shape_name(shape)} at C={budget:.3g}: {why}")
        continue
      n_kaplan = param_count(mcfg).n_kaplan
      points += [Point(shape, float(budget), steps, n_kaplan, fpt, epochs, float(mult), seed_index)
                 for mult in s.lr_multipliers for seed_index in range(s.seeds)]
  return points, skipped


def _name(p: Point) -> str:
  lr = f"-lr{p.lr_multiplier:g}" if p.lr_multiplier != 1.0 else ""
  seed = f"-s{p.seed_index}" if p.seed_index else ""
  return f"C{p.budget_flop:.2e}".replace("+", "") + f"-{shape_name(p.shape)}{lr}{seed}"


def _warmup_steps(s, p: Point, batch_tokens: int) -> int:
  if s.warmup == "fixed":
    return int(s.warmup_steps)
  return max(1, math.ceil(s.warmup_tokens_per_param * p.n_kaplan / batch_tokens))


def isoflop_runs(cfg) -> list:
  """Run configs of an isoFLOP sweep; with wsd, each size's longest run comes before its
  branches (a branch starts from that run's checkpoint)."""
  s = _with_defaults(cfg.sweep)
  points, skipped = design(cfg)
  for line in skipped:
    print(f"[isoflop] left out {line}", flush=True)
  if not points:
    raise UserError("no (size, budget) point of the isoFLOP sweep fits sweep.min_steps and "
                    "sweep.max_epochs; raise the budgets or use smaller models")
  batch_tokens = cfg.train.batch_size * cfg.model.n_ctx
  families: dict = {}
  for p in points:
    families.setdefault((p.shape, p.lr_multiplier, p.seed_index), []).append(p)
  runs = []
  # The costliest families first: processes that share the list (scaling/experiments/processes.py) take the
  # next free run, so the long ones start early and none is left running alone at the end.
  for family in sorted(families.values(), key=lambda f: -max(p.budget_flop for p in f)):
    family.sort(key=lambda p: -p.steps)
    longest = family[0]
    runs += _family_runs(cfg, s, family, longest, batch_tokens)
  return runs


def _point_run(cfg, s, p: Point, batch_tokens: int):
  """The run config of one point: its shape, budget, steps, schedule and warm-up."""
  rc = run_of_shape(cfg, p.shape, _name(p))
  with rc.unlocked():
    rc.budget_flop, rc.flop_convention = p.budget_flop, s.flop_convention
  rc.seed = cfg.seed + p.seed_index
  t = rc.train
  t.steps, t.tokens, t.schedule = p.steps, 0, s.schedule
  t.warmup_steps = _warmup_steps(s, p, batch_tokens)
  scale = s.lr_scale * p.lr_multiplier * (
      (p.n_kaplan / s.lr_ref_n) ** s.lr_n_exponent if s.lr_ref_n else 1.0)
  if scale != 1.0:
    t.peak_lr = scale * kaplan_learning_rate(p.n_kaplan)
  return rc


def _family_runs(cfg, s, family: list[Point], longest: Point, batch_tokens: int) -> list:
  out = []
  for p in family:
    rc = _point_run(cfg, s, p, batch_tokens)
    if s.schedule == "cosine" and s.horizon == "longest":
      rc.train.schedule_steps = longest.steps
    if s.schedule == "wsd":
      # A branch starts where its own cooldown does (optim.Schedule.decay_start).
      start = lambda q: optim.schedule(validate(rc).train, 1.0, q.steps).decay_start
      if p is longest:
        rc.checkpoint.keep_steps = ",".join(str(x) for x in sorted({start(q) for q in family[1:]}))
      else:
        rc.train.init_from = f"{out[0].run_dir}@{start(p)}"
    out.append(rc)
  return out


def shape_for(cfg, n_target: float, n_vocab: int, convention: str) -> tuple:
  """A shape of the sweep's own family with N (of the convention) nearest n_target: the depth
  interpolated in log N between the sweep's shapes (held at the end depths beyond them), the
  width a multiple of 8, the family's head count when it has one (else heads of at most 64
  dimensions). At these sizes the attention and
  unembedding FLOPs per parameter depend on the shape, so a shape outside the family would not
  cost what F(N) (fitted on the family) says."""
  shapes = [parse_shape(m) for m in cfg.sweep.models]
  sized = sorted((getattr(param_count(_model(cfg, sh, n_vocab)), N_KEY[convention]), sh[0])
                 for sh in shapes)
  heads = {sh[2] for sh in shapes}    # a family of one head count keeps it (a designed one)
  depth = int(round(float(np.interp(math.log(n_target), [math.log(n) for n, _ in sized],
                                    [d for _, d in sized]))))
  best, best_cost = None, math.inf
  for d_model in range(8, 2049, 8):
    n_heads = heads.copy().pop() if len(heads) == 1 else max(1, -(-d_model // 64))
    shape = (depth, d_model, n_heads, 0, "")
    if d_model % shape[2]:
      continue
    cost = abs(math.log(getattr(param_count(_model(cfg, shape, n_vocab)), N_KEY[convention]) / n_target))
    if cost < best_cost:
      best, best_cost = shape, cost
  return best


def heldout_runs(cfg, budget_flop: float, n_opt: float) -> list:
  """Run configs at a budget left out of the fit: the predicted optimum N_opt and its neighbours
  N_opt/2 and 2·N_opt, each spending the whole budget (full schedule, no branch), in
  <sweep>/heldout/."""
  s = _with_defaults(cfg.sweep)
  spec = validate(cfg)
  store = tokenize.store_for(spec.data, verbose=False)
  batch_tokens = spec.train.batch_size * cfg.model.n_ctx
  held = copy.deepcopy(cfg)
  held.run_dir = pointlib.child_dir(cfg, HELDOUT)
  d_train = spec.data.max_train_tokens or store.meta["n_tokens_train"]
  runs = []
  for factor in (0.5, 1.0, 2.0):
    shape = shape_for(cfg, factor * n_opt, store.n_vocab, s.flop_convention)
    mcfg = _model(cfg, shape, store.n_vocab)
    fpt = flop_per_token(mcfg)[convention_key(s.flop_convention)]
    steps = int(round(budget_flop / (fpt * batch_tokens)))
    epochs = steps * batch_tokens / d_train
    if epochs > s.max_epochs:
      print(f"[isoflop] note: the held-out run {shape_name(shape)} repeats the training split "
            f"{epochs:.1f} times (> sweep.max_epochs={s.max_epochs})", flush=True)
    n_kaplan = param_count(mcfg).n_kaplan
    runs += [_point_run(held, s, Point(shape, float(budget_flop), steps, n_kaplan, fpt, epochs,
                                       1.0, seed_index), batch_tokens)
             for seed_index in range(s.seeds)]
  return runs
