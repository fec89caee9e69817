"""Run directories and sweep folders on non-local filesystems (gs://, s3://, memory://, any
fsspec URL): the one place that talks to them.

A run whose run_dir is a URL trains in a local mirror of it (under the cache directory): the
mirror is pulled before the run (its config, metrics, summary and checkpoints, so a run resumes
from the remote state whatever machine it runs on), and pushed after every checkpoint and when
the run ends or fails. `scaling fit` and `scaling report` on a URL pull the folder without its
checkpoints, work locally and push what they wrote. A push uploads the files that are new or
changed since the last pull or push and deletes remote files that were deleted locally (pruned
checkpoints), nothing else. Every other module reads and writes local paths only.

Limits: one host per remote run (several hosts need a shared filesystem path, since each would
mirror its own copy), and the run directory's lock holds on the local mirror only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

from scaling.errors import UserError

_WRITTEN_LAST = ("meta.json", "summary.json")
SKIP_FOR_READING = ("checkpoints", "best")  # folders fit and report never read


def is_remote(path) -> bool:
  """Whether a path is a URL of a non-local filesystem (file:// URLs are local)."""
  text = str(path)
  return "://" in text and not text.startswith("file://")


def local_path(path) -> Path:
  """A local path, also from a file:// URL."""
  text = str(path)
  return Path(text[len("file://"):] if text.startswith("file://") else text).expanduser()


def _filesystem(url: str):
  try:
    import fsspec
    return fsspec.core.url_to_fs(url)
  except (ImportError, ValueError) as e:
    raise UserError(f"{url}: no filesystem for this URL ({e}); for gs:// install gcsfs, "
                    "for s3:// s3fs") from None


class Mirror:
  """A local copy of the folder at `url`, kept in step with it by pull() and push()."""

  def __init__(self, url: str, cache_root: Path, skip: tuple[str, ...] = ()):
    self.url, self.skip = url.rstrip("/"), skip
    self.fs, self.root = _filesystem(self.url)
    key = hashlib.sha256(f"{self.url}|{','.join(skip)}".encode()).hexdigest()[:16]
    self.local = Path(cache_root) / "mirrors" / key
    self._seen: dict[str, tuple[int, int]] = {}

  def _remote_files(self) -> list[str]:
    """Relative paths of the remote folder's files (none when it does not exist)."""
    try:
      found = self.fs.find(self.root) if self.fs.exists(self.root) else []
    except OSError as e:
      raise UserError(f"cannot list {self.url} ({e})") from None
    rel = [f[len(self.root.rstrip("/")) + 1:] for f in found]
    return [r for r in rel if r and r.split("/")[0] not in self.skip]

  def _local_files(self) -> dict[str, tuple[int, int]]:
    out = {}
    for p in self.local.rglob("*"):
      if p.is_file():
        rel = p.relative_to(self.local).as_posix()
        if rel.split("/")[0] not in self.skip:
          try:
            st = p.stat()
          except FileNotFoundError:   # an async checkpoint writer renamed it meanwhile
            continue
          out[rel] = (st.st_size, st.st_mtime_ns)
    return out

  def read(self, rel: str) -> bytes | None:
    """One remote file's bytes, or None when it does not exist."""
    try:
      return self.fs.cat_file(f"{self.root}/{rel}")
    except FileNotFoundError:
      return None
    except OSError as e:
      raise UserError(f"cannot read {self.url}/{rel} ({e})") from None

  def pull(self) -> Path:
    """Replaces the local copy with the remote folder's files (minus the skipped folders); the
    files that say a folder is complete (meta.json, summary.json) come last, so an interrupted
    pull never looks complete."""
    shutil.rmtree(self.local, ignore_errors=True)
    self.local.mkdir(parents=True)
    for rel in sorted(self._remote_files(), key=lambda r: r in _WRITTEN_LAST):
      target = self.local / rel
      target.parent.mkdir(parents=True, exist_ok=True)
      try:
        self.fs.get_file(f"{self.root}/{rel}", str(target))
      except OSError as e:
        raise UserError(f"cannot read {self.url}/{rel} ({e})") from None
    self._seen = self._local_files()
    return self.local

  def push(self) -> None:
    """Uploads new and changed files; deletes remote files deleted here since the last sync."""
    now = self._local_files()
    try:
      for rel, stamp in list(now.items()):
        if self._seen.get(rel) != stamp:
          self.fs.makedirs(f"{self.root}/{os.path.dirname(rel)}".rstrip("/"), exist_ok=True)
          try:
            self.fs.put_file(str(self.local / rel), f"{self.root}/{rel}")
          except FileNotFoundError:   # renamed by an async writer: the next push sends it
            now.pop(rel)
      for rel in set(self._seen) - set(now):
        if self.fs.exists(f"{self.root}/{rel}"):
          self.fs.rm_file(f"{self.root}/{rel}")
    except OSError as e:
      raise UserError(f"cannot write to {self.url} ({e}); the local copy is kept in "
                      f"{self.local}") from None
    self._seen = now


@contextlib.contextmanager
def local_copy(path: str, cache_root: Path, skip: tuple[str, ...] = SKIP_FOR_READING):
  """A local folder for `path`: the path itself when local, else a pulled mirror of it whose
  changes are pushed back on leaving (also after an error)."""
  if not is_remote(path):
    yield local_path(path)
    return
  mirror = Mirror(path, cache_root, skip)
  mirror.pull()
  try:
    yield mirror.local
  finally:
    mirror.push()


def store_folder(url: str, cache_root: Path, writing: bool = False) -> tuple[Path, Mirror | None]:
  """A local folder for the token store at `url`, and its mirror (None when local). A finished
  remote store is downloaded once (again only when its meta.json changed); with `writing`, a
  folder not finished remotely is the local one as it stands (a stopped `scaling tokenize`
  resumes there), to be pushed when written."""
  if not is_remote(url):
    return local_path(url), None
  mirror = Mirror(url, cache_root)
  meta = mirror.read("meta.json")
  if meta is None and not writing:
    raise UserError(f"{url} is not a token store (no meta.json); write one with "
                    "`scaling tokenize --out URL`")
  local_meta = mirror.local / "meta.json"
  if meta is not None and not (local_meta.is_file() and local_meta.read_bytes() == meta):
    mirror.pull()
  mirror.local.mkdir(parents=True, exist_ok=True)
  return mirror.local, mirror
