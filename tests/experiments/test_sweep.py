"""The sweep runner (skip, resume, locks, a real kill) and the report built from a tiny sweep."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, read_metrics, words_corpus
from scaling.config.load import load_config_file
from scaling.experiments import sweep
from scaling.experiments.expand import expand
from scaling.train import runlock


def _cmd(out):
  return [sys.executable, "-m", "scaling.cli", "sweep", "--config",
          str(REPO / "configs/test_ladder.py"), f"--config.run_dir={out}"]


@pytest.mark.slow   # 25 s; tests/faults covers a killed run resuming
def test_killed_sweep_finishes_only_what_was_missing(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  out = tmp_path / "sw"
  proc = subprocess.Popen(_cmd(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  second = out / "L1-D32-H2"
  deadline = time.time() + 180
  while time.time() < deadline:
    ckpts = [p for p in (second / "checkpoints").glob("*") if p.name.isdigit()]
    if ckpts and (second / "metrics.jsonl").is_file():
      break
    time.sleep(0.02)
  assert proc.poll() is None, "the sweep finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  first = out / "L1-D16-H1"
  assert (first / "summary.json").is_file() and not (second / "summary.json").exists()
  first_files = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
  partial_steps = len(read_metrics(second))
  log = subprocess.run(_cmd(out), env=env, capture_output=True, text=True, check=True).stdout
  assert "L1-D16-H1: finished, skipped" in log
  assert {p: p.read_bytes() for p in first.rglob("*") if p.is_file()} == first_files
  for point in ("L1-D16-H1", "L1-D32-H2", "L2-D48-H3"):
    steps = [m["step"] for m in read_metrics(out / point)]
    assert steps == list(range(1, 61)), point
    assert not (out / f"{point}.lock").exists()
  assert partial_steps < 60


def test_lock_keeps_runners_apart_and_stale_locks_are_taken(tmp_path):
  lock = tmp_path / "p.lock"
  assert runlock.acquire(lock)
  assert not runlock.acquire(lock)          # held by this live process
  lock.write_text("999999999")            # names no owner (a bare pid): stale
  assert runlock.acquire(lock)


def test_points_of_a_grid():
  cfg = load_config_file("configs/test_ladder.py")
  cfg.sweep.max_train_tokens = [0, 5000]
  pts = expand(cfg)
  assert len(pts) == 6 and "sweep" not in pts[0]
  assert pts[1].name.endswith("L1-D16-H1-T5000") and pts[1].data.max_train_tokens == 5000
  assert (pts[4].model.n_layer, pts[4].model.d_model, pts[4].model.n_heads) == (2, 48, 3)


@pytest.mark.slow   # 43 s; tests/report/test_report.py renders reports from fixture runs
def test_report_from_a_tiny_sweep(tmp_path):
  from scaling.report.render import make_report
  cfg = load_config_file("configs/test_ladder.py")
  cfg.run_dir = str(tmp_path / "sw")
  cfg.sweep.models = [(1, 8, 1), (1, 16, 1), (1, 24, 1), (1, 32, 2)]
  cfg.train.steps = 40
  # Text, for the transfer section: Python's documentation, and generated words held out.
  cfg.data.source = "builtin:python-docs"
  cfg.eval.extra_sources = f"words={words_corpus(tmp_path, 200)}"
  sweep.run_sweep(cfg, verbose=False)
  result = make_report(cfg.run_dir, n_boot=50)
  out = Path(cfg.run_dir)
  for name in result["figures"].values():
    data = (out / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name
  assert set(result["figures"]) == {"L_N", "curves", "b_simple", "L_NS", "transfer"}
  md = (out / "report.md").read_text()
  assert "| L(N) | alpha_N |" in md and "Extrapolation check" in md
  assert "| words |" in md and md.count("## Transfer to other distributions") == 1
  rep = json.loads((out / "fits.json").read_text())
  assert rep["headline"]["n_runs"] == 4 and rep["headline"]["extrapolation_N"] == 12 * 32 ** 2


@pytest.mark.parametrize("name", ["ladder_cpu", "ladder_gpu", "ladder_tpu", "data_limited_cpu"])
def test_ladder_configs_spread_n_evenly_in_log_space(name):
  from scaling.model.transformer import ModelConfig, param_count
  cfg = load_config_file(f"configs/{name}.py")
  ns = [param_count(ModelConfig(n_layer=l, d_model=d, n_heads=h, n_ctx=cfg.model.n_ctx,
                                n_vocab=cfg.data.vocab_size)).n_kaplan
        for l, d, h in cfg.sweep.models]
  steps = np.diff(np.log10(ns))
  assert (steps > 0).all() and steps.max() < 3 * steps.min() + 0.3
  assert len(expand(cfg)) == len(cfg.sweep.models) * len(cfg.sweep.max_train_tokens)


@pytest.mark.slow   # 38 s: three processes each compiling three shapes
def test_two_workers_split_a_sweep_and_run_each_point_once(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  out = tmp_path / "sw"
  procs = [subprocess.Popen(_cmd(out) + ["--worker", str(i), "--num-workers", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  logs = []
  for p in procs:
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr[-2000:]
    logs.append(stdout)
  # Each worker trains with a helper process too (two processes on a CPU), logged per worker.
  logs = [log + "".join(p.read_text() for p in out.glob(f"helper-w{i}-*.log"))
          for i, log in enumerate(logs)]
  trained = [sorted(line.split("] ")[1].split(":")[0] for line in log.splitlines()
                    if line.startswith("[sweep") and ": training" in line) for log in logs]
  points = ["L1-D16-H1", "L1-D32-H2", "L2-D48-H3"]
  assert sorted(trained[0] + trained[1]) == points            # every point, by one worker only
  assert trained[0] == ["L1-D16-H1", "L2-D48-H3"] and trained[1] == ["L1-D32-H2"]
  for point in points:
    assert [m["step"] for m in read_metrics(out / point)] == list(range(1, 61))
    assert (out / point / "summary.json").is_file()


def test_bad_worker_index_is_a_one_line_error(tmp_path):
  r = subprocess.run(_cmd(tmp_path / "x") + ["--worker", "2", "--num-workers", "2"],
                     env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True)
  assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "num-workers" in r.stderr


def test_a_point_finished_by_another_runner_after_the_check_is_not_trained(tmp_path, monkeypatch,
                                                                         capsys):
  """A point found unfinished, then finished by another runner before this one takes its lock,
  is skipped as finished, not announced as training (and not trained)."""
  cfg = load_config_file(str(REPO / "configs" / "test_ladder.py"))
  cfg.run_dir = str(tmp_path / "sw")
  checks: dict = {}

  def finished(rc):        # unfinished at the first look, finished at every later one
    checks[rc.name] = checks.get(rc.name, 0) + 1
    return checks[rc.name] > 1
  monkeypatch.setattr(sweep, "_finished", finished)
  monkeypatch.setattr(sweep.trainlib, "train", lambda *a, **k: pytest.fail("trained"))
  sweep.run_points(expand(cfg), verbose=False, processes=1)
  out = capsys.readouterr().out
  assert ": training (" not in out and out.count("finished, skipped") == len(checks) == 3
  assert not list((tmp_path / "sw").glob("*.lock"))
