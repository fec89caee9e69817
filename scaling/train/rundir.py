"""The run directory, its one owner: where a run lives and every file in it but the checkpoints.

    <run_dir>/config.json      the run's full config (compared on resume)
    <run_dir>/metrics.jsonl    one JSON object per logged step (append-only; truncated on resume)
    <run_dir>/summary.json     written once the run is finished (scaling/train/summary.py)
    <run_dir>.lock             the process training it (host, pid, start time; scaling/train/runlock.py)
    <run_dir>/checkpoints/, best/   orbax (scaling/train/checkpoint.py)

Readers of runs (fits, report, batch sweep) go through `summary.read`, `read_metrics` and
`loss_curve`; the one smoother of training-loss curves is `smoothed`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from scaling import files
from scaling.config import spec as speclib
from scaling.errors import UserError
from scaling.train import remote
from scaling.train import summary as summarylib

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", summarylib.FILE

# Fields a run may resume under with another value (marked resumable in the spec): they change
# how it goes on from its last checkpoint, not what it is (a lower LR or a skipped batch after a
# NaN; logging; patience; where the run directory and the cache live, so a copied or moved run
# goes on; the weight gradients' matmul form, the same sum in another order).
RESUMABLE_FIELDS = speclib.resumable_fields()

# Older run directories used other metric names; readers see the current ones.
_LEGACY_METRIC_KEYS = {"flops": "flop_kaplan", "flops_palm": "flop_palm",
                       "model_flops_per_s": "model_flop_per_s", "b_noise_tokens": "b_simple_tokens",
                       "b_noise_seqs": "b_simple_seqs"}

# The smoothing window of training-loss curves read for fits, in steps of the run's batch.
SMOOTH_STEPS = 20


def path_of(run_dir: str, name: str) -> Path:
  """The run-directory rule: run_dir, else runs/<name>."""
  return Path(run_dir or Path("runs") / name)


PILOT = "pilot"     # <sweep>/pilot/: the design stage's runs (scaling/design/pilot.py)


def child_of(run_dir: str, name: str, child: str) -> str:
  """The run directory of a sweep's point `child`, under the sweep's (path_of(run_dir, name));
  a URL stays a URL."""
  if remote.is_remote(run_dir):
    return f"{run_dir.rstrip('/')}/{child}"
  return str(path_of(run_dir, name) / child)


# ---------------------------------------------------------------------------------------------
# config.json


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
  keys = []
  for key in sorted(set(a) | set(b)):
    va, vb = a.get(key), b.get(key)
    if isinstance(va, dict) and isinstance(vb, dict):
      keys += _diff_keys(va, vb, f"{prefix}{key}.")
    elif va != vb:
      keys.append(f"{prefix}{key}")
  return keys


def _lookup(tree: dict, key: str):
  for part in key.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return _MISSING
    tree = tree[part]
  return tree


_MISSING = object()


# Fields added since some runs were written whose behaviour before them was not today's
# default: an old run trained as the value here (windows drawn with replacement).
_LEGACY_BEHAVIOUR = {"data.sampling": "uniform"}


def config_diff(old: dict, new: dict) -> list[str]:
  """The fields in which two run configs differ, leaving out fields added to the config since
  the old run was written (absent there) that the new one leaves at their default, unless the
  old run behaved otherwise (_LEGACY_BEHAVIOUR)."""
  defaults = speclib.defaults()

  def same(k):
    if _lookup(old, k) is not _MISSING:
      return False
    return _lookup(new, k) == _LEGACY_BEHAVIOUR.get(k, _lookup(defaults, k))
  return [k for k in _diff_keys(old, new) if not same(k)]


def read_config(run_dir: Path) -> dict:
  """A run's config.json, or a one-line error naming the file."""
  path = Path(run_dir) / CONFIG
  try:
    doc = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f"cannot read {path} ({' '.join(str(e).split())}); restore it, or pass "
                    "--overwrite to move this run aside and start again") from None
  if not isinstance(doc, dict):
    raise UserError(f"{path} is not a run config (a {type(doc).__name__}, not an object)")
  return doc


_LOCATION_FIELDS = ("run_dir", "data.cache_dir")   # where a run lives, not what it is


def _resumable(key: str) -> bool:
  return key in RESUMABLE_FIELDS


def check_or_write_config(run_dir: Path, cfg_json: str, overwrite: bool) -> None:
  """Writes config.json of a new run; on an existing run, accepts the same config, keeps the old
  one aside when only resumable fields changed, and otherwise refuses (or, with overwrite, moves
  the old run aside)."""
  path = run_dir / CONFIG
  if path.is_file():
    diff = config_diff(read_config(run_dir), json.loads(cfg_json))
    if diff and not overwrite and all(_resumable(k) for k in diff):
      stamp = time.strftime("%Y%m%d-%H%M%S")
      path.rename(run_dir / f"config.before-{stamp}.json")
      files.atomic_write_text(path, cfg_json)
      print(f"resuming with changed {', '.join(diff)} (the previous config is kept as "
            f"config.before-{stamp}.json)", flush=True)
      return
    if diff and not overwrite:
      legacy = "".join(f" (it was trained before {k} existed, as {k}={v}: resume it with "
                       f"--config.{k}={v})" for k, v in _LEGACY_BEHAVIOUR.items() if k in diff)
      raise UserError(f"{run_dir} holds a run with a different config ({', '.join(diff[:4])}"
                      f"{' …' if len(diff) > 4 else ''}){legacy}; choose another run_dir or "
                      "pass --overwrite to move the old run aside")
    if diff:
      move_aside(run_dir)
  if run_dir.is_dir() and not os.access(run_dir, os.W_OK):
    raise UserError(f"{run_dir} is read-only; a run writes its metrics and checkpoints there "
                    "(make it writable, or give another run_dir)")
  if not path.is_file():
    files.atomic_write_text(path, cfg_json)


def move_aside(run_dir: Path) -> None:
  """--overwrite: the old run is renamed <run_dir>.old-<time>, never deleted."""
  aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
  run_dir.rename(aside)
  print(f"moved the old run to {aside}", flush=True)


def is_finished(run_dir: Path, cfg_json: str) -> bool:
  """True when the run holds a summary and was trained with this config (up to fields that only
  change how a run goes on, which cannot change a finished one)."""
  run_dir = Path(run_dir)
  if not (run_dir / SUMMARY).is_file() or not (run_dir / CONFIG).is_file():
    return False
  # A finished run written before a field existed stays finished whatever that field says now.
  return all(_resumable(k) or k in _LEGACY_BEHAVIOUR
             for k in config_diff(read_config(run_dir), json.loads(cfg_json)))


def finished_note(run_dir: Path, cfg_json: str) -> str:
  """What a rerun of a finished run says: that nothing was done, and which of its changed
  fields were ignored."""
  diff = [k for k in config_diff(read_config(run_dir), json.loads(cfg_json))
          if k not in _LOCATION_FIELDS]
  s = summarylib.read(run_dir)
  loss = s.final_eval_loss
  note = (f"{run_dir} is finished ({s.steps} steps"
          + (f", final held-out loss {loss:.4f}" if isinstance(loss, (int, float)) else "")
          + "): nothing to do")
  if diff:
    note += (f"; changed {', '.join(diff)} ignored, as a finished run is not trained again "
             "(train into a new run_dir, or pass --overwrite to move this one aside)")
  return note


def check_progress_kept(run_dir: Path, has_checkpoint: bool, first_save_step: int,
                        save_every: int, overwrite: bool) -> None:
  """Refuses to start a run over when its directory shows progress that its missing checkpoints
  should hold (they were deleted, or replaced): that would silently rewrite its metrics; with
  overwrite the old run is moved aside. A run killed before its first save was committed (one
  save may still be in flight) starts over."""
  run_dir = Path(run_dir)
  ckpt = run_dir / "checkpoints"
  broken = ckpt.exists() and not ckpt.is_dir()
  logged = [r["step"] for r in read_metrics(run_dir)] if not has_checkpoint else []
  lost = bool(logged) and max(logged) >= first_save_step + save_every
  if (broken or lost) and overwrite:
    move_aside(run_dir)
  elif broken:
    raise UserError(f"{ckpt} is not a folder; move it away (the run's checkpoints live there) "
                    "or pass --overwrite to move this run aside and start again")
  elif lost:
    raise UserError(f"{run_dir} holds {max(logged)} logged steps but no checkpoint to resume "
                    f"from ({ckpt} is missing or empty); restore the checkpoints, or pass "
                    "--overwrite to move this run aside and start again")


# ---------------------------------------------------------------------------------------------
# metrics.jsonl


class MetricsWriter:
  """Appends one JSON line per record with one unbuffered write (nothing is left in a buffer to
  fail again at close, after a full disk); a no-op when not enabled (processes other than 0 write
  nothing)."""

  def __init__(self, run_dir: Path, enabled: bool = True):
    self.path = Path(run_dir) / METRICS
    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if enabled else None

  def append(self, record: dict) -> None:
    if self._fd is not None:
      data = (json.dumps(record) + "\n").encode()
      while data:
        data = data[os.write(self._fd, data):]

  def close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None


def _records(text: str) -> list[dict]:
  out = []
  for line in text.splitlines():
    if not line.strip():
      continue
    try:
      rec = json.loads(line)
    except json.JSONDecodeError:
      continue  # a torn line: the partial write of a process that was killed
    out.append({_LEGACY_METRIC_KEYS.get(k, k): v for k, v in rec.items()})
  return out


def read_metrics(run_dir: Path) -> list[dict]:
  """Every logged step of a run, oldest first ([] when there is no metrics file)."""
  path = Path(run_dir) / METRICS
  return _records(path.read_text()) if path.is_file() else []


def truncate_metrics(run_dir: Path, last_step: int) -> None:
  """Drops metric lines past the restored checkpoint, so the curve has no duplicate steps."""
  if (Path(run_dir) / METRICS).is_file():
    copy_metrics(run_dir, run_dir, last_step)


def copy_metrics(source_run: Path, run_dir: Path, last_step: int) -> None:
  """run_dir's metrics become source_run's up to last_step, written through a temporary file (a
  branch starts from its source's curve; with source_run = run_dir, a truncation)."""
  kept = [r for r in read_metrics(source_run) if r["step"] <= last_step]
  files.atomic_write_text(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in kept))


def parse_branch(text: str) -> tuple[str, int]:
  """train.init_from "RUN_DIR@STEP" → (run dir as written, a path or a URL; step), or a one-line
  error."""
  where, at, step = str(text).rpartition("@")
  if not at or not where or not step.isdigit() or int(step) <= 0:
    raise UserError(f"train.init_from must be RUN_DIR@STEP (a positive step), got {text!r}")
  return where, int(step)


def last_record(run_dir: Path) -> dict:
  """The last logged step, with eval_loss the latest held-out loss logged up to it."""
  last, last_eval = {}, None
  for last in read_metrics(run_dir):
    if last.get("eval_loss") is not None:
      last_eval = last["eval_loss"]
  last = dict(last)
  last["eval_loss"] = last.get("eval_loss", last_eval) or last_eval
  return last


# ---------------------------------------------------------------------------------------------
# summary.json


def is_run(path: Path) -> bool:
  """True for a run directory (it holds config.json or summary.json), False for a sweep's."""
  return (Path(path) / CONFIG).is_file() or (Path(path) / SUMMARY).is_file()


def find_runs(path: Path) -> list[Path]:
  """Finished run directories (holding summary.json) at or under path, sorted; the design's
  pilot runs under <path>/pilot/ are the design's measurements, not the sweep's points."""
  path = Path(path)
  if (path / SUMMARY).is_file():
    return [path]
  return sorted(p.parent for p in path.rglob(SUMMARY)
                if PILOT not in p.relative_to(path).parts[:1])


# What makes two runs' losses comparable: the same tokenizer, corpus (train and held-out split)
# and context length. A loss in nats per token of one tokenizer is not one of another.
COMPARABLE = (("tokenizer_sha256_16", "tokenizer"), ("store_sha256_16", "token store (corpus)"),
              ("n_ctx", "context length"))


def check_comparable(runs: list[Path], where) -> None:
  """Refuses runs that differ in tokenizer, corpus or context length (one fit over them would
  mix losses of different units), naming the groups found."""
  summaries = [summarylib.read(r) for r in runs]
  for key, what in COMPARABLE:
    groups: dict = {}
    for run, s in zip(runs, summaries):
      if getattr(s, key) is not None:
        groups.setdefault(getattr(s, key), []).append(Path(run))
    if len(groups) > 1:
      parts = "; ".join(f"{len(rs)} with {what} {value} (e.g. {rs[0].name})"
                        for value, rs in groups.items())
      raise UserError(f"the runs under {where} differ in {what}: {parts}. Their losses cannot "
                      "be fitted together; put each group in a folder of its own and fit each")


# ---------------------------------------------------------------------------------------------
# Loss curves.


def smoothed(tokens: np.ndarray, loss: np.ndarray, window_tokens: float) -> np.ndarray:
  """Centred moving average over ±window/2 tokens (no lag, unlike an EMA): the one smoother of
  training-loss curves, used by every fit that reads a curve."""
  c = np.concatenate([[0.0], np.cumsum(loss)])
  lo = np.searchsorted(tokens, tokens - window_tokens / 2, side="left")
  hi = np.searchsorted(tokens, tokens + window_tokens / 2, side="right")
  return (c[hi] - c[lo]) / (hi - lo)


def loss_curve(run_dir: Path, window_tokens: float = 0) -> dict[str, np.ndarray]:
  """A run's training-loss curve: arrays step, tokens, loss (raw), smoothed (the centred average
  over window_tokens; default SMOOTH_STEPS batches) and b_simple_tokens (NaN where not logged).
  Steps without a finite loss are left out."""
  recs = [r for r in read_metrics(run_dir) if r.get("loss") is not None]
  step = np.array([r["step"] for r in recs], float)
  tokens = np.array([r["tokens"] for r in recs], float)
  loss = np.array([r["loss"] for r in recs], float)
  if not window_tokens:
    batch_tokens = tokens[0] / step[0] if len(step) else 1.0
    window_tokens = SMOOTH_STEPS * batch_tokens
  col = lambda key: np.array([np.nan if r.get(key) is None else r[key] for r in recs], float)
  out = {"step": step, "tokens": tokens, "loss": loss,
         "smoothed": smoothed(tokens, loss, window_tokens) if len(loss) else loss,
         "b_simple_tokens": col("b_simple_tokens"), "window_tokens": float(window_tokens)}
  # The noise scale over the same centred window as the loss (gns.windowed_ratio), raw and
  # Adam-preconditioned (P), from the per-step estimates. Imported here: gns needs jax, which
  # reading a run folder (and so `scaling fit`) does not.
  from scaling.train import gns
  for name, suffix in (("b_simple_window_tokens", ""), ("b_precond_window_tokens", "_p")):
    out[name] = gns.windowed_ratio(tokens, col("gns_trace" + suffix), col("gns_g2" + suffix),
                                   window_tokens) if len(loss) else loss
  return out
