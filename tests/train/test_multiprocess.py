"""A real multi-process run on one machine: 2 processes × 4 CPU devices against 1 × 8."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, read_metrics

STEPS = 20


def _env(n_devices):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}")
  return env


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow   # 45 s; two processes over gloo
def test_two_processes_match_one_and_read_half_each(tmp_path):
  common = [f"--config.train.steps={STEPS}", "--config.eval.every=10",
            "--config.checkpoint.every=10", "--config.train.batch_size=16"]
  worker = [sys.executable, str(REPO / "tests" / "mp_worker.py")]
  single = subprocess.run(worker + [str(tmp_path / "single.json"),
                                    f"--config.run_dir={tmp_path / 'single'}"] + common,
                          env=_env(8), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]

  port = _free_port()
  procs = [subprocess.Popen(
      worker + [str(tmp_path / f"p{i}.json"), f"--config.run_dir={tmp_path / 'multi'}",
                f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}",
                "--config.distributed.timeout_s=120"] + common,
      env=_env(4), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]

  a = [r["loss"] for r in read_metrics(tmp_path / "single")]
  b = [r["loss"] for r in read_metrics(tmp_path / "multi")]
  assert len(a) == len(b) == STEPS
  rel = np.max(np.abs(np.array(a) - np.array(b)) / np.abs(np.array(a)))
  print(f"max relative loss difference, 2x4 processes vs 1x8: {rel:.2e}")
  assert rel <= 1e-4

  one = json.loads((tmp_path / "single.json").read_text())
  assert one["devices"] == 8 and one["process_count"] == 1
  global_rows = {r["step"]: r["rows"] for r in one["reads"]}
  for i in range(2):
    info = json.loads((tmp_path / f"p{i}.json").read_text())
    assert info["process_count"] == 2 and info["local_devices"] == 4 and info["devices"] == 8
    train_reads = [r for r in info["reads"] if r["global_batch"] == 16]
    assert {r["step"] for r in train_reads} >= set(range(STEPS))
    for r in train_reads:
      assert r["n_rows"] == 8 and r["row0"] == 8 * i          # its half, and only its half
      assert r["rows"] == global_rows[r["step"]][8 * i:8 * (i + 1)]
  # Only process 0 wrote the run's logs; both wrote the checkpoint.
  assert (tmp_path / "multi" / "summary.json").is_file()
  assert (tmp_path / "multi" / "checkpoints" / str(STEPS)).is_dir()
