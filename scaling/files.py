"""Result files written whole or not at all: each through a temporary file in the same folder,
then renamed over the old one, so a full disk, a kill or a read-only folder leaves the previous
file byte-identical. A failure is one line naming the file and the reason."""

from __future__ import annotations

import codecs
import errno
import os
import tempfile
from pathlib import Path

from scaling.errors import UserError

_REASONS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file too large", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.EROFS: "read-only file system",
            errno.ENOENT: "the folder does not exist"}


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


_UMASK = _umask()


def _fail(path: Path, e: OSError):
  why = _REASONS.get(e.errno, e.strerror or type(e).__name__)
  return UserError(f"cannot write {path}: {why}; the previous file (if any) is unchanged")


def _replace_via_tmp(path: Path, write, suffix: str = "") -> None:
  """write(tmp_path) fills a temporary file beside `path`, which then replaces it."""
  path = Path(path)
  tmp = None
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)   # as open() would create it, not mkstemp's owner-only 0600
    write(tmp)
    os.replace(tmp, path)
  except OSError as e:
    raise _fail(path, e) from None
  finally:
    if tmp is not None and os.path.exists(tmp):
      os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
  def write(tmp):
    with open(tmp, "wb") as f:
      f.write(data)
  _replace_via_tmp(path, write)


def atomic_write_text(path: Path, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savefig(fig, path: Path, **savefig_kw) -> None:
  """fig.savefig through a temporary file with the same suffix (matplotlib picks the format
  from it)."""
  _replace_via_tmp(path, lambda tmp: fig.savefig(tmp, **savefig_kw), suffix=Path(path).suffix)


def cache_root(cache_dir: str = "") -> Path:
  """The cache folder (data.cache_dir, else $SCALING_CACHE, else ~/.cache/scaling), made if
  absent; one that cannot be made is a one-line error naming where it came from."""
  env = os.environ.get("SCALING_CACHE", "")
  root = Path(cache_dir or env or Path.home() / ".cache" / "scaling")
  try:
    root.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    where = ("data.cache_dir" if cache_dir else "SCALING_CACHE" if env else "the default cache")
    raise UserError(f"cannot make the cache folder {root} ({where}): {e.strerror or e}; point "
                    "SCALING_CACHE or data.cache_dir at a writable folder") from None
  return root


_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
         (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def other_encoding(path: Path, head: bytes) -> UserError | None:
  """A text file (a corpus, a CSV) in another Unicode encoding, named as such from its start: a UTF-16/32 byte-order mark, or UTF-16
  without one (a NUL in every other byte of its start)."""
  for bom, name in _BOMS:
    if head.startswith(bom):
      return UserError(f"{path} is {name} text (byte-order mark), not UTF-8; convert it, e.g. "
                       f"with iconv -f {name} -t UTF-8")
  sample = head[:4096]
  if len(sample) >= 64:
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    if max(odd, even) > 0.4 * len(sample) / 2 and min(odd, even) < 0.05 * len(sample) / 2:
      return UserError(f"{path} looks like UTF-16 text without a byte-order mark (a NUL in "
                       "every other byte), not UTF-8; convert it, e.g. with iconv -f UTF-16LE "
                       "-t UTF-8")
  return None
