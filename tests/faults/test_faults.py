"""Fault injection with real subprocesses and signals: every fault must cost at most the work
since the last checkpoint, never a finished result, and never pass in silence.

Each test compares against an uninterrupted reference run (same config) and checks that earlier
files are byte-identical where they must be.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, read_metrics

pytestmark = pytest.mark.faults
STEPS = 40
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def _train_cmd(run_dir, *extra):
  return [sys.executable, "-m", "scaling.cli", "train", "--config", str(REPO / "configs/test_small.py"),
          f"--config.run_dir={run_dir}", f"--config.train.steps={STEPS}",
          "--config.checkpoint.every=10", "--config.eval.every=20", *extra]


def _files(folder: Path) -> dict:
  return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _losses(run_dir):
  return np.array([m["loss"] for m in read_metrics(run_dir)])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run every fault is compared with."""
  ref = tmp_path_factory.mktemp("ref") / "run"
  subprocess.run(_train_cmd(ref), env=ENV, check=True, capture_output=True)
  return ref


def _assert_same_curve(run_dir, ref):
  steps = [m["step"] for m in read_metrics(run_dir)]
  assert steps == list(range(1, STEPS + 1))               # every step once: none lost, none twice
  np.testing.assert_allclose(_losses(run_dir), _losses(ref), rtol=1e-4)
  a = json.loads((run_dir / "summary.json").read_text())["final_eval_loss"]
  b = json.loads((ref / "summary.json").read_text())["final_eval_loss"]
  assert a == pytest.approx(b, rel=1e-4)


def _wait_for(predicate, proc, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.002)
  return False


def _preempt(run, after_steps=13):
  """Starts the training run and sends SIGTERM once it has logged `after_steps` steps."""
  proc = subprocess.Popen(_train_cmd(run), env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  assert _wait_for(lambda: (run / "metrics.jsonl").is_file()
                   and len((run / "metrics.jsonl").read_text().splitlines()) >= after_steps, proc)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  return proc.returncode, err


def test_sigkill_during_checkpoint_write(tmp_path, reference):
  run = tmp_path / "run"
  ckpts = run / "checkpoints"
  caught = False
  for attempt in range(4):   # the write window is short: try again if the run ran past it
    proc = subprocess.Popen(_train_cmd(run, "--config.checkpoint.every=2"), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught = _wait_for(lambda: ckpts.is_dir() and any("tmp" in p.name for p in ckpts.iterdir()),
                       proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if caught:
      break
    import shutil
    shutil.rmtree(run, ignore_errors=True)
  assert caught, "never saw a checkpoint being written"
  assert not (run / "summary.json").exists()
  # The resumed run restores the last complete checkpoint; the half-written one is ignored.
  # checkpoint.every is a resumable field only in the sense that the curve does not depend on it.
  r = subprocess.run(_train_cmd(run, "--config.checkpoint.every=2"), env=ENV, capture_output=True,
                     text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  _assert_same_curve(run, reference)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, reference):
  run = tmp_path / "run"
  returncode, err = _preempt(run)
  assert returncode == 143, err[-2000:]
  assert err.strip().splitlines()[-1].startswith("preempted: SIGTERM at step")
  stopped = int(err.strip().splitlines()[-1].split("step ")[1].split(":")[0])
  assert (run / "checkpoints" / str(stopped)).is_dir()     # saved at the step it stopped
  assert stopped < STEPS
  r = subprocess.run(_train_cmd(run), env=ENV, capture_output=True, text=True)
  assert r.returncode == 0 and f"resumed from the checkpoint at step {stopped}" in r.stdout
  _assert_same_curve(run, reference)


@pytest.mark.slow   # 30 s: three trainer processes
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference):
  run = tmp_path / "run"
  subprocess.run(_train_cmd(run), env=ENV, check=True, capture_output=True)
  # As if killed after its last checkpoint, before its summary (a finished run is not resumed).
  (run / "summary.json").unlink()
  latest = run / "checkpoints" / str(STEPS)
  for f in latest.rglob("*"):                 # truncate every file of the newest checkpoint
    if f.is_file():
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
  r = subprocess.run(_train_cmd(run), env=ENV, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"warning: checkpoint {latest} cannot be read" in r.stdout
  assert "resumed from the checkpoint at step 30" in r.stdout
  assert any((run / "checkpoints-corrupt").iterdir())      # kept for inspection, not deleted
  _assert_same_curve(run, reference)

  # Every checkpoint damaged: an error naming them, no fresh start, nothing changed.
  (run / "summary.json").unlink()
  for f in (run / "checkpoints").rglob("*"):
    if f.is_file() and "ocdbt" in str(f):
      f.write_bytes(b"garbage")
  before = _files(run)
  r = subprocess.run(_train_cmd(run), env=ENV, capture_output=True, text=True)
  assert r.returncode == 2, r.stderr[-2000:]
  # orbax's reader threads may log their own failures first; the verdict is the last line, once.
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("error: no checkpoint in") and r.stderr.count("error: ") == 1, last
  assert _files(run) == before


def test_nan_stops_at_its_step_keeps_the_last_good_checkpoint_and_can_skip_the_batch(
    small_cfg, monkeypatch):
  from scaling.data import loader as datalib
  from scaling.errors import UserError
  from scaling.config.spec import validate
  from scaling.train import loop as trainlib
  original = datalib.WindowBatches.__getitem__

  def poisoned(self, step):            # the batch of step 13 holds an id outside the vocabulary:
    rows = original(self, step)        # its embedding lookup is NaN, as a corrupt batch would be
    if step == 12:
      rows = rows.copy()
      rows[0, 3] = 10_000
    return rows

  monkeypatch.setattr(datalib.WindowBatches, "__getitem__", poisoned)
  cfg = small_cfg(**{"train.steps": 30, "checkpoint.every": 5, "eval.every": 10})
  run = Path(cfg.run_dir)
  with pytest.raises(UserError) as err:
    trainlib.train(validate(cfg), verbose=False)
  msg = str(err.value)
  assert "NaN or infinite at step 13" in msg and "last good checkpoint is step 10" in msg
  assert "--config.train.skip_batches=13" in msg and "--config.train.peak_lr=" in msg
  assert sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == [5, 10]
  good = _files(run / "checkpoints" / "10")

  cfg = small_cfg(**{"train.steps": 30, "checkpoint.every": 5, "eval.every": 10,
                     "train.skip_batches": "13"})
  summary = trainlib.train(validate(cfg), verbose=False)
  assert summary.steps == 30 and np.isfinite(summary.final_eval_loss)
  assert [m["step"] for m in read_metrics(run)] == list(range(1, 31))
  assert all(np.isfinite(m["loss"]) for m in read_metrics(run))
  assert _files(run / "checkpoints" / "10") == good or not (run / "checkpoints" / "10").exists()
  assert any(run.glob("config.before-*.json"))             # the changed config is recorded


def _capped(cmd, limit_kib=20):
  """cmd under a file-size cap (ulimit -f, in KiB): writes past it fail as on a full disk."""
  return ["bash", "-c", f'ulimit -f {limit_kib} && exec "$@"', "bash", *cmd]


@pytest.mark.slow   # 47 s
def test_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, reference):
  run = tmp_path / "run"
  _preempt(run)
  kept = {p.name: _files(p) for p in (run / "checkpoints").iterdir() if p.name.isdigit()}
  # Files may grow to 20 kB, less than a checkpoint: the next save fails as on a full disk.
  r = subprocess.run(_capped(_train_cmd(run, "--config.compilation_cache=false")), env=ENV,
                     capture_output=True, text=True)
  assert r.returncode == 2, r.stderr[-2000:]
  # orbax's writer threads log their own tracebacks first; the run's verdict is the last line.
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("error: no space left writing") and "are intact" in last, last
  for name in kept:
    assert name in last                                        # it names what is still intact
  for name, files in kept.items():
    assert _files(run / "checkpoints" / name) == files       # earlier checkpoints intact
  r = subprocess.run(_train_cmd(run), env=ENV, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  _assert_same_curve(run, reference)


@pytest.mark.slow   # tests/experiments/test_sweep.py splits a sweep between two workers
def test_two_sweep_runners_on_one_directory_run_each_point_once(tmp_path):
  out = tmp_path / "sw"
  cmd = [sys.executable, "-m", "scaling.cli", "sweep", "--config",
         str(REPO / "configs/test_ladder.py"), f"--config.run_dir={out}"]
  procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for _ in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs)
  # Each runner trains with a helper process too (two processes on a CPU); theirs log to
  # helper-K.log. Every point is trained by exactly one of the four.
  logs += [p.read_text() for p in out.glob("helper-*.log")]
  trained = [line for log in logs for line in log.splitlines() if ": training (" in line]
  points = ["L1-D16-H1", "L1-D32-H2", "L2-D48-H3"]
  assert sorted(line.split("] ")[1].split(":")[0] for line in trained) == points
  for point in points:
    assert [m["step"] for m in read_metrics(out / point)] == list(range(1, 61))
