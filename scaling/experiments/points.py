"""The run configs of a sweep's points: a sweep config without its `sweep` section, named after
the point, in its own directory under the sweep's (used by scaling/experiments/expand.py and
scaling/experiments/isoflop.py)."""

from __future__ import annotations

import copy
from pathlib import Path

from scaling.errors import UserError
from scaling.train import rundir


def run_path(cfg) -> Path:
  """The run directory of a run or sweep config (scaling/train/rundir.py's rule)."""
  return rundir.path_of(cfg.get("run_dir", ""), cfg.name)


def child_dir(cfg, child: str) -> str:
  """The run directory of the point `child` of the sweep config cfg."""
  return rundir.child_of(cfg.get("run_dir", ""), cfg.name, child)


def sub_run(cfg, suffix: str):
  """The sweep config without `sweep`, named <sweep name>-<suffix>."""
  rc = copy.deepcopy(cfg)
  if "sweep" in rc:
    with rc.unlocked():
      del rc["sweep"]
  rc.name = f"{cfg.name}-{suffix}"
  return rc


def parse_shape(entry) -> tuple:
  """A sweep.models entry → (n_layer, d_model, n_heads, d_ff, group); d_ff 0 = 4·d_model."""
  if isinstance(entry, str) or not 3 <= len(entry) <= 5:
    raise UserError(f"sweep.models entry {entry!r} must be (n_layer, d_model, n_heads"
                    "[, d_ff[, group]])")
  d_ff = int(entry[3]) if len(entry) > 3 else 0
  group = str(entry[4]) if len(entry) > 4 else ""
  return int(entry[0]), int(entry[1]), int(entry[2]), d_ff, group


def shape_name(shape: tuple) -> str:
  n_layer, d_model, n_heads, d_ff, _ = shape
  return f"L{n_layer}-D{d_model}-H{n_heads}" + (f"-F{d_ff}" if d_ff else "")


def run_of_shape(cfg, shape: tuple, name: str):
  """The run config of one model shape, named `name`, in its own directory under the sweep's."""
  n_layer, d_model, n_heads, d_ff, group = shape
  rc = sub_run(cfg, name)
  if group:
    with rc.unlocked():
      rc.group = group
  rc.run_dir = child_dir(cfg, name)
  rc.model.n_layer, rc.model.d_model, rc.model.n_heads = n_layer, d_model, n_heads
  if d_ff:
    rc.model.d_ff = d_ff
  return rc


def sweep_lr(cfg_sweep, batch_seqs: int) -> float:
  """Learning rate for a batch size: lr_ref·(B/B_ref)^lr_exponent, capped at lr_max (the optimal
  rate rises with B; McCandlish et al. 2018, arXiv 1812.06162, §2.2)."""
  scale = (batch_seqs / cfg_sweep.batch_ref) ** cfg_sweep.lr_exponent
  return min(cfg_sweep.lr_max, cfg_sweep.lr_ref * scale)
