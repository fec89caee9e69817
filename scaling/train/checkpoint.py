"""Checkpoints of a run: orbax managers for the train state and the early-stopping parameters,
restore with a fallback past unreadable checkpoints, saves whose disk-full failures end in one
clear error. Orbax writes each checkpoint atomically (a tmp directory renamed when complete)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from scaling.errors import StorageError, UserError

_FULL_DISK = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def state_manager(ckpt_dir: Path, keep: int, keep_steps=()):
  """The manager of the train-state checkpoints: the `keep` most recent are kept, and those of
  keep_steps (branch points) always."""
  if not keep_steps:
    return ocp.CheckpointManager(ckpt_dir, options=manager_options("state", max_to_keep=keep))
  policies = ocp.checkpoint_managers
  policy = policies.AnyPreservationPolicy([policies.LatestN(keep),
                                           policies.CustomSteps(sorted(keep_steps))])
  return ocp.CheckpointManager(ckpt_dir, options=manager_options("state",
                                                                 preservation_policy=policy))


def committed_steps(ckpt_dir: Path) -> list[int]:
  """The steps whose checkpoint was completely written (orbax renames a finished save's tmp
  directory to the bare step number)."""
  ckpt_dir = Path(ckpt_dir)
  return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()) if ckpt_dir.is_dir() else []


def parse_steps(text: str) -> list[int]:
  """checkpoint.keep_steps "100,250" → [100, 250]."""
  try:
    steps = sorted({int(x) for x in str(text).replace(" ", "").split(",") if x})
  except ValueError:
    raise UserError(f"checkpoint.keep_steps must be step numbers like '100,250', got "
                    f"{text!r}") from None
  if any(s <= 0 for s in steps):
    raise UserError(f"checkpoint.keep_steps must be positive, got {text!r}")
  return steps


def restore_branch_point(source_run: Path, step: int, state):
  """The train state saved at `step` in another run (the start of a branch); a missing or
  unreadable checkpoint is a one-line error naming what exists."""
  ckpt_dir = (Path(source_run) / "checkpoints").resolve()
  if not ckpt_dir.is_dir():
    raise UserError(f"train.init_from: {source_run} has no checkpoints; train it first")
  # Read-only: never writes into the source run. Orbax warns that it is read-only (absl
  # WARNING lines); that is the point here, so those lines are not shown.
  absl_log = logging.getLogger("absl")
  level = absl_log.level
  absl_log.setLevel(logging.ERROR)
  try:
    manager = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(
        read_only=True, create=False, save_interval_steps=0))
  finally:
    absl_log.setLevel(level)
  try:
    steps = manager.all_steps()
    if step not in steps:
      raise UserError(f"train.init_from: {source_run} has no checkpoint at step {step} (it has "
                      f"{sorted(steps) or 'none'}); list the step in its checkpoint.keep_steps")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
      with stderr_to_file():
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
      raise StorageError(f"train.init_from: the checkpoint {ckpt_dir / str(step)} cannot be read "
                         f"({' '.join(str(e).split())[:160]})") from None
  finally:
    manager.close()


def best_manager(best_dir: Path):
  """The manager of the early-stopping checkpoint: the parameters at the lowest held-out loss
  (orbax keeps the best by its recorded metric)."""
  return ocp.CheckpointManager(best_dir, options=manager_options(
      "best", max_to_keep=1, best_fn=lambda m: m["eval_loss"], best_mode="min"))


def best_so_far(manager) -> dict:
  """{"eval_loss", "step"} of the best checkpoint written so far (inf/None when none)."""
  step = manager.best_step()
  if step is None:
    return {"eval_loss": float("inf"), "step": None}
  return {"eval_loss": float(manager.metrics(step)["eval_loss"]), "step": step}


@contextlib.contextmanager
def stderr_to_file():
  """Sends file descriptor 2 to a temporary file for a while: a failed read of a damaged
  checkpoint makes orbax's worker threads print tracebacks of their own, which would bury the
  one-line warning or error that says what happened. Anything written is replayed on success."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as f:
    os.dup2(f.fileno(), 2)
    ok = False
    try:
      yield
      ok = True
    finally:
      time.sleep(0.05)            # let late callbacks of the failed read land in the file
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      if ok:
        f.seek(0)
        sys.stderr.write(f.read().decode(errors="replace"))


def restore_latest_good(manager, ckpt_dir: Path, state, keep: int, is_main: bool,
                        keep_steps=()):
  """Restores the newest checkpoint that reads back; newer unreadable ones (truncated or corrupt)
  are moved to checkpoints-corrupt/ with a warning naming them. If none reads back, the run stops
  with an error: never a silent fresh start."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  bad = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      with stderr_to_file():
        restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
        jax.block_until_ready(restored)
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
      bad.append((step, " ".join(str(e).split())[:160] or type(e).__name__))
      # The failed read leaves orbax futures whose errors asyncio would log again at exit.
      logging.getLogger("asyncio").setLevel(logging.CRITICAL)
      continue
    if bad:
      aside = ckpt_dir.parent / "checkpoints-corrupt"
      for b, why in bad:
        print(f"warning: checkpoint {ckpt_dir / str(b)} cannot be read ({why}); moved to "
              f"{aside}, resuming from step {step}", flush=True)
      if is_main:
        aside.mkdir(exist_ok=True)
        for b, _ in bad:
          target = aside / f"{b}-{time.strftime('%Y%m%d-%H%M%S')}"
          os.replace(ckpt_dir / str(b), target)
      if jax.process_count() > 1:
        multihost_utils.sync_global_devices("scaling-restore")
      manager.close()
      manager = state_manager(ckpt_dir, keep, keep_steps)
    return step, restored, manager
  manager.close()
  raise StorageError(f"no checkpoint in {ckpt_dir} can be read (steps "
                     f"{', '.join(str(b) for b, _ in bad)}: {bad[0][1]}); nothing was changed. "
                     "Move the folder aside to start again, or pass --overwrite")


def restore_best_params(run_dir, params_like):
  """The parameters of the early-stopping checkpoint (lowest held-out loss) of a run directory;
  `params_like` gives the structure (e.g. nnx.split(model, nnx.Param)[1])."""
  manager = ocp.CheckpointManager((Path(run_dir) / "best").resolve())
  step = manager.best_step() or manager.latest_step()
  if step is None:
    raise UserError(f"{run_dir} has no early-stopping checkpoint (best/)")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, params_like)
  params = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  manager.close()
  return step, params


def disk_error(exc: BaseException):
  """The OSError of a full disk (or a size cap) anywhere in an exception's chain, else None."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, OSError) and exc.errno in _FULL_DISK:
      return exc
    text = str(exc)
    if any(m in text for m in ("No space left", "File too large", "Disk quota")):
      return exc
    exc = exc.__cause__ or exc.__context__
  return None


def raise_if_disk_full(exc: BaseException, where: Path) -> None:
  """A full disk (or a size cap) while writing `where` (a file or folder in the run directory):
  one clear error that names the checkpoints still intact."""
  if disk_error(exc) is None:
    return
  ckpt_dir = where.parent / "checkpoints"
  good = committed_steps(ckpt_dir)
  why = str(disk_error(exc)).splitlines()[0][:120]
  raise StorageError(f"no space left writing {where} ({why}); the checkpoints {good or '(none)'} "
                     f"in {ckpt_dir} are intact. Free space and rerun the same command to "
                     "resume") from None


def manager_options(name: str, **kw) -> ocp.CheckpointManagerOptions:
  """Options of the run's checkpoint managers ("state", "best"). Each has its own prefix for the
  barriers between processes: orbax names a save's barriers after the step's directory, so the
  two managers' saves of the same step would otherwise meet at each other's barriers (seen as
  a hang, or a metadata check that found one process's files, in 2-process runs)."""
  return ocp.CheckpointManagerOptions(
      create=True, multiprocessing_options=ocp.options.MultiprocessingOptions(
          barrier_sync_key_prefix=f"scaling-{name}"), **kw)


def save(manager, step: int, tree, where: Path, metrics=None) -> None:
  """Saves `tree` as checkpoint `step`; a full disk raises StorageError."""
  try:
    # force: orbax would otherwise skip a save while the previous one is still being written,
    # silently (a preemption checkpoint right after a periodic one was lost that way).
    manager.save(step, args=ocp.args.StandardSave(tree), metrics=metrics, force=True)
  except Exception as e:  # orbax re-raises write errors of the previous async save here too
    raise_if_disk_full(e, where)
    raise


def wait(manager, where: Path) -> None:
  """Waits for the manager's async saves; a full disk raises StorageError."""
  try:
    manager.wait_until_finished()
  except Exception as e:
    raise_if_disk_full(e, where)
    raise
