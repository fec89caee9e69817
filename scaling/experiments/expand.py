"""`expand(cfg)`: a sweep config → the configs of its runs, one per run directory.

Three kinds of sweep, told apart by their `sweep` section:
  ladders and grids   sweep.models × sweep.max_train_tokens (scaling sweep)
  isoFLOP sweeps      sweep.budgets_flop × sweep.models, tokens = budget / FLOPs per token
                      (scaling/experiments/isoflop.py; scaling sweep, quickstart)
  batch sweeps        one model at each of sweep.batch_sizes (scaling bsweep)
A run config is the sweep config without `sweep`, with its own name and run_dir under the sweep's
directory; nothing else decides where a sweep's runs live.
"""

from __future__ import annotations

import itertools
import math

from scaling.errors import UserError
from scaling.experiments import isoflop
from scaling.experiments import points as pointlib
from scaling.experiments.points import parse_shape, run_of_shape, shape_name, sub_run, sweep_lr


def expand(cfg) -> list:
  """One run config per point of cfg.sweep (ladder/grid or batch sweep)."""
  if "sweep" not in cfg:
    raise UserError("the config has no 'sweep' section; `scaling train` runs a single config")
  if "branch_tokens" in cfg.sweep:
    raise UserError("this is a branched critical-batch config: run it with `scaling cbs --config "
                    "...` (sources first, then their forks)")
  if "batch_sizes" in cfg.sweep:
    return batch_sweep_runs(cfg)
  if "budgets_flop" in cfg.sweep:
    return isoflop.isoflop_runs(cfg)
  return grid_runs(cfg)


def grid_runs(cfg) -> list:
  """One run config per (model shape, data limit) of cfg.sweep.

  A shape is (n_layer, d_model, n_heads), optionally followed by d_ff (0 = 4·d_model) and a group
  label (a string such as "N2e5:aspect,heads" that the report's shape section reads back).
  """
  s = cfg.sweep
  if not s.models:
    raise UserError("sweep.models is empty; list (n_layer, d_model, n_heads) shapes")
  out = []
  for entry, limit in itertools.product(s.models, s.max_train_tokens):
    shape = parse_shape(entry)
    name = shape_name(shape) + (f"-T{limit}" if limit else "")
    rc = run_of_shape(cfg, shape, name)
    rc.data.max_train_tokens = int(limit)
    out.append(rc)
  return out


def lr_grid(cfg_sweep) -> dict:
  """The first round of a batch sweep's learning rates: batch (sequences) → multipliers of the
  sweep's LR rule (sweep.lr_multipliers, default just the rule)."""
  mults = sorted(float(m) for m in cfg_sweep.get("lr_multipliers", [1.0]))
  if not mults or min(mults) <= 0:
    raise UserError(f"sweep.lr_multipliers={mults} must be positive numbers")
  return {int(b): mults for b in cfg_sweep.batch_sizes}


def bsweep_run_name(batch_seqs: int, lr_multiplier: float) -> str:
  """bs00016 at the rule's LR, bs00016-x0.5 at half of it."""
  return f"bs{batch_seqs:05d}" + ("" if lr_multiplier == 1 else f"-x{lr_multiplier:g}")


def parse_bsweep_name(name: str) -> tuple[int, float] | None:
  """(batch in sequences, LR multiplier) of a batch-sweep run directory name, None if not one."""
  head, _, mult = name.partition("-x")
  if not (head.startswith("bs") and head[2:].isdigit()):
    return None
  try:
    return int(head[2:]), float(mult) if mult else 1.0
  except ValueError:
    return None


def batch_sweep_runs(cfg, grid: dict | None = None) -> list:
  """One training config per (batch size, LR multiplier) of `grid` (default lr_grid), each in its
  own run directory under the sweep's: constant LR after a warm-up of sweep.warmup_tokens (so a
  small batch is not given a longer warm-up in tokens than a large one), ended once past the lowest
  target loss."""
  s = cfg.sweep
  if not s.targets or not s.batch_sizes:
    raise UserError("sweep.targets and sweep.batch_sizes must not be empty")
  runs = []
  for b, mults in sorted((grid or lr_grid(s)).items()):
    batch_tokens = b * cfg.model.n_ctx
    for m in mults:
      name = bsweep_run_name(b, m)
      rc = sub_run(cfg, name)
      rc.run_dir = pointlib.child_dir(cfg, name)
      rc.train.batch_size = int(b)
      rc.train.peak_lr = sweep_lr(s, b) * m
      rc.train.tokens = 0
      rc.train.steps = int(min(s.max_steps, math.ceil(s.max_tokens / batch_tokens)))
      if s.get("warmup_tokens", 0):
        rc.train.warmup_steps = max(1, math.ceil(s.warmup_tokens / batch_tokens))
      rc.train.min_lr_ratio = 1.0                    # constant after warm-up
      rc.train.stop_loss = min(s.targets) - s.stop_margin
      rc.train.stop_window_tokens = s.smooth_tokens
      runs.append(rc)
  return runs
