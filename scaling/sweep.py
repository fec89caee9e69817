"""Sweeps: a grid of runs (model ladder × data-limited subsets) that resumes where it stopped.

A finished point (summary.json present, same config) is skipped; a partial one resumes from its
checkpoint; a lock file (holding the owner's pid) keeps two runners off the same point.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import time
from pathlib import Path

from scaling.config import to_json
from scaling.errors import UserError


def sweep_dir(cfg) -> Path:
  return Path(cfg.run_dir or Path("runs") / cfg.name)


def points(cfg) -> list:
  """One run config per (model shape, data limit) of cfg.sweep.

  A shape is (n_layer, d_model, n_heads), optionally followed by d_ff (0 = 4·d_model) and a group
  label (a string such as "N2e5:aspect,heads" that the report's shape section reads back).
  """
  s = cfg.sweep
  if not s.models:
    raise UserError("sweep.models is empty; list (n_layer, d_model, n_heads) shapes")
  out = []
  for shape, limit in itertools.product(s.models, s.max_train_tokens):
    if not 3 <= len(shape) <= 5:
      raise UserError(f"sweep.models entry {tuple(shape)} must be (n_layer, d_model, n_heads"
                      "[, d_ff[, group]])")
    n_layer, d_model, n_heads = shape[:3]
    d_ff = int(shape[3]) if len(shape) > 3 else 0
    group = str(shape[4]) if len(shape) > 4 else ""
    rc = copy.deepcopy(cfg)
    with rc.unlocked():
      del rc["sweep"]
      if group:
        rc.group = group
    name = (f"L{n_layer}-D{d_model}-H{n_heads}" + (f"-F{d_ff}" if d_ff else "")
            + (f"-T{limit}" if limit else ""))
    rc.name = f"{cfg.name}-{name}"
    rc.run_dir = str(sweep_dir(cfg) / name)
    rc.model.n_layer, rc.model.d_model, rc.model.n_heads = int(n_layer), int(d_model), int(n_heads)
    if d_ff:
      rc.model.d_ff = d_ff
    rc.data.max_train_tokens = int(limit)
    out.append(rc)
  return out


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def acquire(lock: Path) -> bool:
  """Takes the lock of a point (O_EXCL); a lock whose owner is dead is taken over."""
  lock.parent.mkdir(parents=True, exist_ok=True)
  for _ in range(2):
    try:
      fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      os.write(fd, str(os.getpid()).encode())
      os.close(fd)
      return True
    except FileExistsError:
      try:
        owner = int(lock.read_text() or 0)
      except (OSError, ValueError):
        owner = 0
      if owner and _pid_alive(owner):
        return False
      lock.unlink(missing_ok=True)  # stale: its runner died
  return False


def is_finished(rc) -> bool:
  run = Path(rc.run_dir)
  if not (run / "summary.json").is_file() or not (run / "config.json").is_file():
    return False
  return json.loads((run / "config.json").read_text()) == json.loads(to_json(rc))


def _agreed(decision: bool) -> bool:
  """Process 0's decision, on every process of a multi-host job: the hosts of one job train each
  point together, and only process 0 writes summaries, so its view of the directory counts."""
  import jax
  if jax.process_count() == 1:
    return decision
  import numpy as np
  from jax.experimental import multihost_utils
  return bool(multihost_utils.broadcast_one_to_all(np.int32(decision)))


def owned(index: int, worker: int, num_workers: int) -> bool:
  """Point `index` belongs to exactly one of num_workers workers: index mod num_workers."""
  return index % num_workers == worker


def run_sweep(cfg, overwrite: bool = False, verbose: bool = True, worker: int = 0,
              num_workers: int = 1) -> list[Path]:
  """Runs every point not yet finished (of this worker's share when num_workers > 1, so that
  independent machines or a job array run one ladder into one results directory); returns the
  run directories of all points."""
  from scaling import train as trainlib
  if num_workers < 1 or not 0 <= worker < num_workers:
    raise UserError(f"--worker {worker} --num-workers {num_workers}: need 0 <= worker < "
                    "num-workers")
  configs = points(cfg)
  t0 = time.time()
  done_now = 0
  for i, rc in enumerate(configs, 1):
    head = f"[sweep {i}/{len(configs)}] {Path(rc.run_dir).name}"
    if not owned(i - 1, worker, num_workers):
      continue
    if _agreed(is_finished(rc)):
      print(f"{head}: finished, skipped", flush=True)
      continue
    lock = Path(rc.run_dir).with_name(Path(rc.run_dir).name + ".lock")
    if not _agreed(acquire(lock)):
      print(f"{head}: another runner holds {lock}, skipped", flush=True)
      continue
    try:
      elapsed = time.time() - t0
      eta = f", about {elapsed / done_now * (len(configs) - i + 1) / 60:.1f} min left" if done_now else ""
      print(f"{head}: training ({done_now} trained in {elapsed / 60:.1f} min{eta})", flush=True)
      trainlib.train(rc, overwrite=overwrite, verbose=verbose)
      done_now += 1
    finally:
      lock.unlink(missing_ok=True)
  return [Path(rc.run_dir) for rc in configs]
