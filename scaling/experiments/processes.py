"""A list of runs trained by more than one process on one machine (CPU).

The models a CPU sweep trains are small: a step is a few dozen small XLA operations, and one process
keeps 2 cores about 150 % busy. A second process training other runs of the same list takes up the
rest (measured on 2 cores: a 42-run designed sweep in 182 s against 235 s, the same losses to the
last bit; docs/results/2026-12-07-sweep-processes.md). The processes share the list through the
sweep runner's lock files (scaling/experiments/sweep.py, scaling/train/runlock.py): each trains the
next point nobody holds, and a branch waits for its source.

The helpers are `python -m scaling.experiments.sweep QUEUE` on a JSON list of run configs (each
run's config as given, RunSpec.config_json); their output is appended to `<sweep>/helper-K.log`
(each helper's part headed by its caller's pid: two callers on one sweep folder share the file, and
a rerun keeps the earlier output). When the calling process stops on an error or Ctrl-C, the helpers
are stopped too (SIGTERM: each saves a checkpoint, as on preemption), and a helper whose caller was
killed outright (SIGKILL) stops itself the same way; when the caller finishes, it waits for them and
then trains any point a helper left unfinished itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from scaling import files
from scaling.config.spec import RunSpec
from scaling.errors import UserError
from scaling.train import rundir

MAX_AUTO = 2              # measured on 2 cores; more processes were not measured
_STOP_S = 60.0            # how long a stopped helper may take to save its checkpoint


def resolve(requested: int, distributed: bool = False) -> int:
  """The number of training processes: `requested` when given (≥ 1), else (0) MAX_AUTO on a CPU
  with as many cores, 1 on an accelerator (one process owns its memory) or in a multi-host run."""
  if requested < 0:
    raise UserError(f"--processes {requested}: give 1 or more, or 0 for the default")
  if distributed:
    if requested > 1:
      raise UserError("--processes > 1 trains on one machine; a multi-host run has one process "
                      "per host")
    return 1
  if requested:
    return requested
  import jax
  if jax.default_backend() != "cpu":
    return 1
  return max(1, min(MAX_AUTO, os.cpu_count() or 1))


@contextlib.contextmanager
def helpers(specs: list[RunSpec], n_processes: int, overwrite: bool = False, log_tag: str = ""):
  """Starts n_processes − 1 helpers on the runs `specs` for the duration of the block; yields
  their Popen objects. Their logs are <folder>/helper-<log_tag>K.log (a worker's share of a
  split sweep tags its own)."""
  if n_processes <= 1 or len(specs) <= 1:
    yield []
    return
  folder = rundir.path_of(specs[0].run_dir, specs[0].name).parent
  folder.mkdir(parents=True, exist_ok=True)
  queue = folder / f".queue-{os.getpid()}.json"
  files.atomic_write_text(queue, json.dumps({"overwrite": overwrite,
                                             "configs": [s.config_json for s in specs]}))
  procs, env = [], _helper_env(specs[0])
  try:
    for k in range(1, min(n_processes, len(specs))):
      with open(folder / f"helper-{log_tag}{k}.log", "a") as log:
        log.write(f"── helper {k} of process {os.getpid()}, "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')} ──\n")
        log.flush()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "scaling.experiments.sweep", str(queue)], stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env))
    yield procs
  except BaseException:
    for p in procs:
      p.terminate()
    for p in procs:
      try:
        p.wait(timeout=_STOP_S)
      except subprocess.TimeoutExpired:
        p.kill()
    raise
  else:
    for p in procs:
      p.wait()
  finally:
    queue.unlink(missing_ok=True)


def stop_with_parent(poll_s: float = 0.2) -> threading.Thread:
  """In a helper: sends this process SIGTERM once the process that started it is gone (a caller
  killed with SIGKILL cannot stop its helpers), so that the helper checkpoints and exits as on
  preemption instead of training on alone and holding its run's lock."""
  parent = os.getppid()

  def watch():
    while os.getppid() == parent:
      time.sleep(poll_s)
    os.kill(os.getpid(), signal.SIGTERM)
  thread = threading.Thread(target=watch, daemon=True, name="stop-with-parent")
  thread.start()
  return thread


def _helper_env(rc: RunSpec) -> dict:
  """The environment of a helper: this process's matmul peak (measured now, while it is alone),
  so that the helpers' MFU has the same denominator."""
  from scaling.train import hardware
  dtype = hardware.resolve_dtype(rc.model.compute_dtype)
  peak, source = hardware.training_peak(dtype)
  return dict(os.environ, **{hardware.PEAK_ENV: json.dumps(
      {"dtype": dtype, "flop_per_s": peak, "source": source})})


def gain(busy_cores: float, n_processes: int, cores: int | None = None) -> float:
  """How many times faster n_processes train a long list of runs than one process does, when one
  keeps busy_cores of the machine's cores busy (measured on the pilot grid): together they can
  fill the cores, no more. Measured on 2 cores: one process 1.36–1.57 cores busy, two processes
  1.23–1.47× faster (this predicts 1.27–1.47×)."""
  cores = cores or os.cpu_count() or 1
  if n_processes <= 1 or busy_cores <= 0:
    return 1.0
  return max(1.0, min(float(n_processes), cores / busy_cores))


def read_queue(path) -> tuple[list, bool]:
  """A helper's run configs and whether it may overwrite (the queue file this module wrote)."""
  import ml_collections
  doc = json.loads(Path(path).read_text())
  return [ml_collections.ConfigDict(json.loads(c)) for c in doc["configs"]], doc["overwrite"]
