"""The run directory's lock, its one owner: `<run_dir>.lock` holds the pid of the process
training the run (or of the sweep runner that took the point). A second process on the same run
directory is refused at once; a lock whose process is gone is taken over."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from scaling.errors import UserError


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def lock_path(run_dir: Path) -> Path:
  run_dir = Path(run_dir)
  return run_dir.with_name(run_dir.name + ".lock")


def lock_owner(lock: Path) -> int:
  """The pid in a lock file (0 when there is none or it cannot be read)."""
  try:
    return int(lock.read_text() or 0)
  except (OSError, ValueError):
    return 0


@contextlib.contextmanager
def locked(run_dir: Path, enabled: bool = True):
  """Holds the run directory's lock while training it; a second process on the same directory
  is refused at once. Re-entrant: a sweep runner already holding the point's lock goes on."""
  lock = lock_path(run_dir)
  if not enabled or lock_owner(lock) == os.getpid():
    yield
    return
  if not acquire(lock):
    raise UserError(f"another process (pid {lock_owner(lock)}) is training {run_dir}: it holds "
                    f"{lock}. Wait for it to end, or delete the lock if that process is gone")
  try:
    yield
  finally:
    lock.unlink(missing_ok=True)


@contextlib.contextmanager
def waiting(folder: Path, say=None, poll_s: float = 0.5):
  """Holds `<folder>.lock`, waiting while another live process holds it (two runs building the
  same cached token store: the second waits, then finds it written)."""
  lock = lock_path(folder)
  told = False
  while not acquire(lock):
    if say and not told:
      say(f"waiting for another process (pid {lock_owner(lock)}) writing {folder}")
      told = True
    time.sleep(poll_s)
  try:
    yield
  finally:
    lock.unlink(missing_ok=True)


def acquire(lock: Path) -> bool:
  """Takes a lock file (O_EXCL, holding this pid); a lock whose owner is dead is taken over. A
  folder that cannot be written is a one-line error."""
  try:
    lock.parent.mkdir(parents=True, exist_ok=True)
    return _acquire(lock)
  except PermissionError as e:
    raise UserError(f"cannot write in {lock.parent} ({e.strerror}); give a run_dir in a "
                    "writable folder") from None


def _acquire(lock: Path) -> bool:
  for _ in range(2):
    try:
      fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      os.write(fd, str(os.getpid()).encode())
      os.close(fd)
      return True
    except FileExistsError:
      owner = lock_owner(lock)
      if owner and _pid_alive(owner):
        return False
      lock.unlink(missing_ok=True)  # stale: its runner died
  return False
