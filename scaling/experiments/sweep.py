"""Sweeps: every run of a sweep config (scaling/experiments/expand.py), resuming where it stopped.

Every run config is validated into its RunSpec before any is trained (a bad one fails first);
the runner then reads only the specs. A finished point (summary.json present, same config) is
skipped; a partial one resumes from its checkpoint; a lock file (scaling/train/runlock.py) keeps
two runners off the same point, and a branch whose source another runner is training waits.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from scaling.config.spec import RunSpec, validate
from scaling.data import loader as datalib
from scaling.errors import UserError
from scaling.experiments import processes as processlib
from scaling.experiments.expand import expand
from scaling.train import distributed, remote, rundir, runlock
from scaling.train import loop as trainlib


def owned(index: int, worker: int, num_workers: int) -> bool:
  """Point `index` belongs to exactly one of num_workers workers: index mod num_workers."""
  return index % num_workers == worker


def run_points(configs: list, overwrite: bool = False, verbose: bool = True, worker: int = 0,
               num_workers: int = 1, processes: int = 1) -> list[Path]:
  """Trains every run config not yet finished (of this worker's share when num_workers > 1, so
  that independent machines or a job array run one sweep into one results directory), with
  `processes` training processes on this machine (scaling/experiments/processes.py); returns the run
  directories of all points."""
  if num_workers < 1 or not 0 <= worker < num_workers:
    raise UserError(f"--worker {worker} --num-workers {num_workers}: need 0 <= worker < "
                    "num-workers")
  t0 = time.time()
  specs = [validate(rc) for rc in configs]
  mine = [(i, rc) for i, rc in enumerate(specs, 1) if owned(i - 1, worker, num_workers)]
  if any(remote.is_remote(rc.run_dir) for _, rc in mine):
    processes = 1                 # no lock files on a URL: one runner per remote sweep
  counter = _Progress(total=len(specs), mine=len(mine),
                      configs=[rc for _, rc in mine] if processes > 1 else [])
  counter.at_start = counter.finished()
  with processlib.helpers([rc for _, rc in mine], processes, overwrite,
                          log_tag=f"w{worker}-" if num_workers > 1 else ""):
    _train_all(mine, counter, t0, overwrite, verbose)
  if processes > 1:         # a point a helper could not finish is trained here, or fails here
    left = [(i, rc) for i, rc in mine if not _finished(rc)]
    if left:
      _train_all(left, counter, t0, overwrite, verbose)
  return [_path(rc) for rc in specs]


def _train_all(mine: list, counter: _Progress, t0: float, overwrite: bool,
               verbose: bool) -> None:
  deferred, held = _one_pass(mine, counter, t0, overwrite, verbose)
  waited_since = time.time()
  while deferred:
    # Branches whose source another runner is training wait for it (with a limit); the points
    # held by others are tried again too, in case their runner has gone meanwhile.
    if time.time() - waited_since > runlock.wait_limit_s():
      for i, rc, why in deferred:
        print(f"{_head(i, rc, counter)}: skipped, {why}; run the sweep again once it has "
              "finished", flush=True)
      break
    time.sleep(_POLL_S)
    again = sorted([(i, rc) for i, rc, _ in deferred] + held, key=lambda p: p[0])
    deferred, held = _one_pass(again, counter, t0, overwrite, verbose)


_POLL_S = 2.0


@dataclasses.dataclass
class _Progress:
  """A runner's count of points trained and skipped, and the points whose wait it has said.
  With helper processes (`configs` given) the points finished by any of them are counted on
  disk, so that the time left is that of the whole list."""
  total: int                      # points of the sweep
  mine: int = 0                   # of them this runner's share
  done: int = 0
  skipped: int = 0
  at_start: int = 0
  configs: list = dataclasses.field(default_factory=list)    # RunSpecs
  told: set = dataclasses.field(default_factory=set)

  def finished(self) -> int:
    if self.configs:
      return sum(_finished(rc) for rc in self.configs)
    return self.done + self.skipped


def _head(i: int, rc: RunSpec, counter: _Progress) -> str:
  return f"[sweep {i}/{counter.total}] {str(rc.run_dir).rstrip('/').rsplit('/', 1)[-1]}"


def _path(rc: RunSpec) -> Path:
  return rundir.path_of(rc.run_dir, rc.name)


def _source_held(rc: RunSpec) -> str | None:
  """Why a branch cannot start yet: its source run is being trained by another runner."""
  init_from = rc.train.init_from
  if not init_from:
    return None
  source, _ = rundir.parse_branch(init_from)
  if remote.is_remote(source):
    return None
  lock = runlock.lock_path(Path(source))
  if lock.exists() and runlock.owner_alive(lock) and not runlock.holds(lock):
    return f"its source {source} is being trained by {runlock.describe(lock)}"
  return None


def _one_pass(points, counter: _Progress, t0, overwrite, verbose) -> tuple[list, list]:
  """Trains each point it can; returns the branches deferred because another runner is
  training their source, as (index, config, reason), and the points another runner holds."""
  deferred, held = [], []
  for i, rc in points:
    head = _head(i, rc, counter)
    if distributed.agreed(_finished(rc)):
      print(f"{head}: finished, skipped", flush=True)
      counter.skipped += 1
      continue
    if remote.is_remote(rc.run_dir):   # no lock file on a URL: one runner per remote sweep
      print(f"{head}: training", flush=True)
      trainlib.train(rc, overwrite=overwrite, verbose=verbose)
      counter.done += 1
      continue
    why = _source_held(rc)
    if distributed.agreed(bool(why)):
      why = why or "its source is being trained by another runner (process 0's view)"
      if ("waiting", i) not in counter.told:
        counter.told.add(("waiting", i))
        print(f"{head}: waiting, {why}", flush=True)
      deferred.append((i, rc, why))
      continue
    lock = runlock.lock_path(_path(rc))
    if not distributed.agreed(runlock.acquire(lock)):
      if ("held", i) not in counter.told:
        counter.told.add(("held", i))
        print(f"{head}: skipped, {runlock.describe(lock)} is training it (it holds {lock})",
              flush=True)
      held.append((i, rc))
      continue
    try:
      # Another runner may have finished it between the check above and taking the lock.
      if distributed.agreed(_finished(rc)):
        print(f"{head}: finished, skipped", flush=True)
        counter.skipped += 1
        continue
      _train_point(rc, head, counter, t0, overwrite, verbose, lock)
    finally:
      runlock.release(lock)
  return deferred, held


def _train_point(rc: RunSpec, head, counter: _Progress, t0, overwrite, verbose, lock) -> None:
  finished, elapsed = counter.finished(), time.time() - t0
  trained = finished - counter.at_start - (0 if counter.configs else counter.skipped)
  eta = (f", about {elapsed / trained * (counter.mine - finished) / 60:.1f} min left"
         if trained > 0 else "")
  print(f"{head}: training ({finished} of {counter.mine} finished, {elapsed / 60:.1f} min{eta})",
        flush=True)
  with runlock.heartbeat(lock):
    trainlib.train(rc, overwrite=overwrite, verbose=verbose)
  counter.done += 1


def _finished(rc: RunSpec) -> bool:
  if not remote.is_remote(rc.run_dir):
    return rundir.is_finished(_path(rc), rc.config_json)
  with remote.local_copy(rc.run_dir, datalib.cache_root(rc.data.cache_dir)) as local:
    return rundir.is_finished(local, rc.config_json)


def run_sweep(cfg, overwrite: bool = False, verbose: bool = True, worker: int = 0,
              num_workers: int = 1, processes: int = 1) -> list[Path]:
  """Expands a sweep config and trains its points (run_points)."""
  return run_points(expand(cfg), overwrite, verbose, worker, num_workers, processes)


def _helper(argv: list[str]) -> int:
  """A helper process (scaling/experiments/processes.py): trains the queue's points no other process
  holds."""
  processlib.stop_with_parent()
  configs, overwrite = processlib.read_queue(argv[0])
  run_points(configs, overwrite=overwrite, verbose=True)
  return 0


if __name__ == "__main__":
  import sys
  sys.exit(_helper(sys.argv[1:]))
