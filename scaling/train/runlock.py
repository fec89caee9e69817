"""Lock files, their one owner: `<path>.lock` names the process that holds a run directory (or
a token store being written) — host, boot, pid, the process's start time and a random token —
and the holder refreshes its modification time every HEARTBEAT_S.

A lock is live when, on this host and boot, its pid runs and started when the lock says (a pid
reused by an unrelated process does not count); from another host, when its heartbeat is younger
than stale_s(). Anything else — a dead or reused pid, a silent heartbeat, a file that names no
owner (a bare pid, empty, torn) — is stale and taken over. Nothing waits without a message and a
limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from scaling.errors import UserError

HEARTBEAT_S = 15.0
_STALE_S = 120.0            # a lock whose heartbeat is older is stale (SCALING_LOCK_STALE_S)
_WAIT_S = 7200.0            # the longest wait for another writer (SCALING_LOCK_WAIT_S)
_FORMAT = "scaling-lock-v2"


def stale_s() -> float:
  return float(os.environ.get("SCALING_LOCK_STALE_S", _STALE_S))


def wait_limit_s() -> float:
  return float(os.environ.get("SCALING_LOCK_WAIT_S", _WAIT_S))


def lock_path(run_dir: Path) -> Path:
  run_dir = Path(run_dir)
  return run_dir.with_name(run_dir.name + ".lock")


# ---------------------------------------------------------------------------------------------
# Who is this process, and is a recorded owner alive?

def _boot_id() -> str:
  try:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
  except OSError:
    return ""


def _start_ticks(pid: int) -> int | None:
  """The process's start time (clock ticks after boot, /proc/PID/stat field 22), None where
  there is no /proc or no such process."""
  try:
    stat = Path(f"/proc/{pid}/stat").read_text()
  except OSError:
    return None
  return int(stat.rsplit(")", 1)[1].split()[19])   # fields after the command name start at 3


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OverflowError):
    return pid > 0
  return True


def identity() -> dict:
  pid = os.getpid()
  return {"format": _FORMAT, "host": socket.gethostname(), "boot": _boot_id(), "pid": pid,
          "start": _start_ticks(pid), "token": uuid.uuid4().hex}


def read_owner(lock: Path) -> dict | None:
  """The owner a lock file names; None when it names none (missing, empty, torn, a bare pid)."""
  try:
    owner = json.loads(lock.read_text())
  except (OSError, ValueError):
    return None
  if not isinstance(owner, dict) or owner.get("format") != _FORMAT:
    return None
  return owner


def lock_owner(lock: Path) -> int:
  """The pid a lock file names (0 when it names no owner)."""
  owner = read_owner(lock)
  return int(owner.get("pid") or 0) if owner else 0


def describe(lock: Path) -> str:
  owner = read_owner(lock)
  if not owner:
    return "an unknown process"
  return f"another process (pid {owner.get('pid')} on {owner.get('host')})"


def _heartbeat_age_s(lock: Path) -> float:
  try:
    return time.time() - lock.stat().st_mtime
  except OSError:
    return float("inf")


def owner_alive(lock: Path) -> bool:
  """Whether the lock's owner (see the module note) still holds it."""
  owner = read_owner(lock)
  if owner is None:
    return False
  if owner.get("token") == _held_tokens.get(str(lock)):
    return True
  same_machine = owner.get("host") == socket.gethostname() and owner.get("boot") == _boot_id()
  pid = int(owner.get("pid") or 0)
  if same_machine and owner.get("start") is not None and _start_ticks(os.getpid()) is not None:
    return _start_ticks(pid) == owner["start"]        # the very process, not a reused pid
  if same_machine and not _pid_alive(pid):
    return False
  return _heartbeat_age_s(lock) < stale_s()


# ---------------------------------------------------------------------------------------------
# Taking, holding, waiting.

_held_tokens: dict[str, str] = {}   # lock path → this process's token, while it holds it


def acquire(lock: Path) -> bool:
  """Takes a lock file (written whole, created only if absent); a stale one is taken over. A
  folder that cannot be written is a one-line error."""
  lock = Path(lock)
  if str(lock) in _held_tokens and owner_alive(lock):
    return False                     # held by this process already: a second holder is refused
  try:
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
      if _create(lock):
        return True
      try:
        seen = lock.read_bytes()
      except FileNotFoundError:
        continue
      if owner_alive(lock):
        return False
      _remove_stale(lock, seen)
    return False
  except OSError as e:
    raise UserError(f"cannot write the lock {lock} ({e.strerror or e}); give a folder that "
                    "this process can write") from None


def _remove_stale(lock: Path, seen: bytes) -> None:
  """Deletes the lock judged stale, holding the lock's takeover guard (an flock on a side
  file) and only if it still holds what was judged: a process that read the same stale lock
  and comes second finds the new holder's lock instead and leaves it. (Without the guard, the
  second could move the first's new lock aside while a third created its own: two holders.)"""
  try:
    import fcntl
  except ImportError:                # no flock (Windows): move aside, put back what was not seen
    _move_stale_aside(lock, seen)
    return
  guard = lock.with_name(f".{lock.name}.takeover")
  with open(guard, "a") as g:
    fcntl.flock(g, fcntl.LOCK_EX)
    try:
      if lock.read_bytes() == seen:
        lock.unlink()
    except FileNotFoundError:
      pass
    finally:
      fcntl.flock(g, fcntl.LOCK_UN)


def _move_stale_aside(lock: Path, seen: bytes) -> None:
  """Moves the stale lock aside and deletes it, unless what was moved is not what was judged
  stale (another process took the lock over in between): that one is put back."""
  aside = lock.with_name(f".{lock.name}.stale.{uuid.uuid4().hex}")
  try:
    os.rename(lock, aside)
  except FileNotFoundError:
    return
  if aside.read_bytes() != seen:
    with contextlib.suppress(FileExistsError, OSError):
      os.link(aside, lock)
  aside.unlink(missing_ok=True)


def _create(lock: Path) -> bool:
  """Writes the owner to a private file, then links it to the lock's name: the lock appears
  whole or not at all, and only where no lock was."""
  me = identity()
  tmp = lock.with_name(f".{lock.name}.{me['token']}")
  tmp.write_text(json.dumps(me))
  try:
    os.link(tmp, lock)
  except FileExistsError:
    return False
  except OSError:                    # a filesystem without hard links: exclusive create
    try:
      fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      f.write(json.dumps(me))
  finally:
    tmp.unlink(missing_ok=True)
  _held_tokens[str(lock)] = me["token"]
  return True


def release(lock: Path) -> None:
  """Removes the lock if this process still holds it (never another's that took it over)."""
  lock = Path(lock)
  token = _held_tokens.pop(str(lock), None)
  owner = read_owner(lock)
  if token and owner and owner.get("token") == token:
    lock.unlink(missing_ok=True)


def holds(lock: Path) -> bool:
  owner = read_owner(Path(lock))
  return bool(owner) and owner.get("token") == _held_tokens.get(str(lock))


@contextlib.contextmanager
def heartbeat(lock: Path):
  """Refreshes the lock's modification time every HEARTBEAT_S while the body runs, so that
  runners on other hosts see it live."""
  stop = threading.Event()

  def beat():
    while not stop.wait(HEARTBEAT_S):
      if not holds(lock):
        return
      with contextlib.suppress(OSError):
        os.utime(lock)

  thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat {lock.name}")
  thread.start()
  try:
    yield
  finally:
    stop.set()


@contextlib.contextmanager
def locked(run_dir: Path, enabled: bool = True):
  """Holds the run directory's lock while training it; a second process on the same directory
  is refused at once. Re-entrant: a sweep runner already holding the point's lock goes on."""
  lock = lock_path(run_dir)
  if not enabled or holds(lock):
    yield
    return
  if not acquire(lock):
    raise UserError(f"{describe(lock)} is training {run_dir}: it holds {lock}. Wait for it to "
                    "end; the lock is taken over by itself once that process is gone")
  try:
    with heartbeat(lock):
      yield
  finally:
    release(lock)


@contextlib.contextmanager
def waiting(folder: Path, say=None, poll_s: float = 0.5, limit_s: float | None = None):
  """Holds `<folder>.lock`, waiting while another live process holds it (two runs building the
  same cached token store: the second waits, then finds it written). Says so at once and every
  minute; gives up after limit_s (default wait_limit_s()) with a one-line error."""
  lock = lock_path(folder)
  limit_s = wait_limit_s() if limit_s is None else limit_s
  t0, told = time.time(), None
  while not acquire(lock):
    waited = time.time() - t0
    if waited > limit_s:
      raise UserError(f"gave up after {waited / 60:.1f} min waiting for {describe(lock)} "
                      f"writing {folder} (it holds {lock}); run again to wait longer")
    if say and (told is None or time.time() - told >= 60):
      say(f"waiting for {describe(lock)} writing {folder} ({waited / 60:.0f} min so far, "
          f"giving up after {limit_s / 60:.0f})")
      told = time.time()
    time.sleep(poll_s)
  try:
    with heartbeat(lock):
      yield
  finally:
    release(lock)
