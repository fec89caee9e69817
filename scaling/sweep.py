"""Sweeps: every run of a sweep config (scaling/expand.py), resuming where it stopped.

A finished point (summary.json present, same config) is skipped; a partial one resumes from its
checkpoint; a lock file (holding the owner's pid) keeps two runners off the same point.
"""

from __future__ import annotations

import time
from pathlib import Path

from scaling import data as datalib
from scaling import distributed, remote, rundir, runlock
from scaling import train as trainlib
from scaling.config import to_json
from scaling.errors import UserError
from scaling.expand import expand


def owned(index: int, worker: int, num_workers: int) -> bool:
  """Point `index` belongs to exactly one of num_workers workers: index mod num_workers."""
  return index % num_workers == worker


def run_points(configs: list, overwrite: bool = False, verbose: bool = True, worker: int = 0,
               num_workers: int = 1) -> list[Path]:
  """Trains every run config not yet finished (of this worker's share when num_workers > 1, so
  that independent machines or a job array run one sweep into one results directory); returns
  the run directories of all points."""
  if num_workers < 1 or not 0 <= worker < num_workers:
    raise UserError(f"--worker {worker} --num-workers {num_workers}: need 0 <= worker < "
                    "num-workers")
  t0 = time.time()
  done_now = 0
  for i, rc in enumerate(configs, 1):
    head = f"[sweep {i}/{len(configs)}] {str(rc.run_dir).rstrip('/').rsplit('/', 1)[-1]}"
    if not owned(i - 1, worker, num_workers):
      continue
    if distributed.agreed(_finished(rc)):
      print(f"{head}: finished, skipped", flush=True)
      continue
    if remote.is_remote(rc.run_dir):   # no lock file on a URL: one runner per remote sweep
      print(f"{head}: training", flush=True)
      trainlib.train(rc, overwrite=overwrite, verbose=verbose)
      done_now += 1
      continue
    lock = runlock.lock_path(rundir.path_of(rc))
    if not distributed.agreed(runlock.acquire(lock)):
      print(f"{head}: another runner holds {lock}, skipped", flush=True)
      continue
    try:
      elapsed = time.time() - t0
      eta = (f", about {elapsed / done_now * (len(configs) - i + 1) / 60:.1f} min left"
             if done_now else "")
      print(f"{head}: training ({done_now} trained in {elapsed / 60:.1f} min{eta})", flush=True)
      trainlib.train(rc, overwrite=overwrite, verbose=verbose)
      done_now += 1
    finally:
      lock.unlink(missing_ok=True)
  return [rundir.path_of(rc) for rc in configs]


def _finished(rc) -> bool:
  if not remote.is_remote(rc.run_dir):
    return rundir.is_finished(rundir.path_of(rc), to_json(rc))
  with remote.local_copy(rc.run_dir, datalib.cache_root(rc.data.cache_dir)) as local:
    return rundir.is_finished(local, to_json(rc))


def run_sweep(cfg, overwrite: bool = False, verbose: bool = True, worker: int = 0,
              num_workers: int = 1) -> list[Path]:
  """Expands a sweep config and trains its points (run_points)."""
  return run_points(expand(cfg), overwrite, verbose, worker, num_workers)
