"""The trainer: 8 devices equal 1 device, exact resume after SIGKILL, bad inputs."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, read_metrics
from scaling.cli import main as cli_main
from scaling.config.spec import validate
from scaling.train import loop as trainlib


def _losses(run_dir):
  return np.array([m["loss"] for m in read_metrics(run_dir)])


def test_eight_devices_equal_one_device(small_cfg, tmp_path):
  runs = {}
  for n in (8, 1):
    cfg = small_cfg(**{"mesh.num_devices": n, "train.steps": 20, "gns.micro_batches": 1})
    cfg.run_dir = str(tmp_path / f"dev{n}")
    summary = trainlib.train(validate(cfg), verbose=False)
    assert summary.n_devices == n
    runs[n] = _losses(cfg.run_dir)
  assert len(runs[8]) == 20
  np.testing.assert_allclose(runs[8], runs[1], rtol=1e-4)
  assert runs[8][-1] < runs[8][0] - 0.3  # it learns


def _train_cmd(run_dir, steps):
  return [sys.executable, "-m", "scaling.cli", "train", "--config", str(REPO / "configs/test_small.py"),
          f"--config.run_dir={run_dir}", f"--config.train.steps={steps}",
          "--config.mesh.num_devices=2", "--config.checkpoint.every=10", "--config.eval.every=50"]


@pytest.mark.slow   # 30 s; tests/faults/test_faults.py kills a run mid-save and checks the same
def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
  steps = 300
  env = dict(os.environ, PYTHONPATH=str(REPO))
  ref = tmp_path / "ref"
  subprocess.run(_train_cmd(ref, steps), env=env, check=True, capture_output=True)
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_train_cmd(killed, steps), env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while time.time() < deadline:
    ckpts = [p for p in (killed / "checkpoints").glob("*") if p.name.isdigit()]
    metrics = killed / "metrics.jsonl"
    if ckpts and metrics.is_file() and len(metrics.read_text().splitlines()) >= 25:
      break
    time.sleep(0.02)
  assert proc.poll() is None, "the run finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / "summary.json").exists()
  n_before = len(read_metrics(killed))
  assert n_before < steps
  subprocess.run(_train_cmd(killed, steps), env=env, check=True, capture_output=True)
  resumed = read_metrics(killed)
  assert [m["step"] for m in resumed] == list(range(1, steps + 1))
  np.testing.assert_allclose(_losses(killed), _losses(ref), rtol=1e-4)
  assert json.loads((killed / "summary.json").read_text())["final_eval_loss"] == pytest.approx(
      json.loads((ref / "summary.json").read_text())["final_eval_loss"], rel=1e-4)


def _cli(capsys, *args):
  rc = cli_main(["train", "--config", str(REPO / "configs/test_small.py"), *args])
  err = capsys.readouterr().err.strip()
  return rc, err


@pytest.mark.parametrize("make_source, message", [
    (lambda p: str(p / "missing.txt"), "does not exist"),
    (lambda p: (p / "empty.txt").write_text("") and None or str(p / "empty.txt"), "empty"),
    (lambda p: (p / "l1.txt").write_bytes(b"\xff\xfe caf\xe9\n\nmore") and None or str(p / "l1.txt"),
     "not UTF-8"),
    (lambda p: (p / "short.txt").write_text("a b\n\nc d") and None or str(p / "short.txt"),
     "shorter than one context window"),
])
def test_bad_corpus_cli(tmp_path, capsys, make_source, message):
  source = make_source(tmp_path)
  rc, err = _cli(capsys, f"--config.data.source={source}", f"--config.run_dir={tmp_path / 'r'}",
                 f"--config.data.cache_dir={tmp_path / 'cache'}")
  assert rc == 2
  assert len(err.splitlines()) == 1 and message in err, err
  assert not (tmp_path / "r").exists()


def test_batch_not_divisible_by_devices(tmp_path, capsys):
  rc, err = _cli(capsys, "--config.train.batch_size=12", f"--config.run_dir={tmp_path / 'r'}")
  assert rc == 2 and "not divisible by the 8 devices" in err and len(err.splitlines()) == 1


def test_unknown_config_field(tmp_path, capsys):
  rc, err = _cli(capsys, "--config.train.stepz=3", f"--config.run_dir={tmp_path / 'r'}")
  assert rc == 2 and "unknown config field 'train.stepz'" in err


def test_changed_config_is_refused_then_moved_aside(tmp_path, capsys):
  run = tmp_path / "r"
  base = [f"--config.run_dir={run}", "--config.train.steps=6", "--config.mesh.num_devices=1"]
  assert _cli(capsys, *base)[0] == 0
  before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
  rc, err = _cli(capsys, *base, "--config.model.d_model=64")
  assert rc == 2 and "different config (model.d_model)" in err and "--overwrite" in err
  assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing lost
  assert _cli(capsys, *base, "--config.model.d_model=64", "--overwrite")[0] == 0
  aside = [p for p in tmp_path.iterdir() if p.name.startswith("r.old-")]
  assert len(aside) == 1 and (aside[0] / "summary.json").is_file()
  assert json.loads((run / "config.json").read_text())["model"]["d_model"] == 64


def test_cli_error_is_one_line_without_traceback(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  out = subprocess.run([sys.executable, "-m", "scaling.cli", "train", "--config",
                        str(REPO / "configs/test_small.py"), "--config.model.n_heads=3"],
                       env=env, capture_output=True, text=True, cwd=tmp_path)
  assert out.returncode == 2
  assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
  assert "not divisible by model.n_heads=3" in out.stderr


def test_stop_loss_ends_the_run_and_records_it(small_cfg):
  cfg = small_cfg(**{"train.steps": 200, "train.stop_loss": 5.3, "train.stop_window_tokens": 256,
                     "mesh.num_devices": 1})
  summary = trainlib.train(validate(cfg), verbose=False)
  metrics = read_metrics(cfg.run_dir)
  assert summary.stopped_early and summary.steps < 200 and summary.planned_steps == 200
  assert metrics[-1]["step"] == summary.steps and metrics[-1]["eval_loss"] is not None
  recent = [m["loss"] for m in metrics if m["tokens"] > metrics[-1]["tokens"] - 256 - 128]
  assert np.mean(recent[-3:]) < 5.6
  assert summary.tokens == summary.steps * 8 * 16


def test_runs_of_one_shape_share_programs_and_their_results(small_cfg):
  """A second trainer of the same shape (another seed, LR and length) reuses the first one's
  compiled programs, and takes the same steps as that trainer built with no programs kept; other
  optimizer constants get programs of their own."""
  import dataclasses
  import jax
  from scaling.train import step as steplib
  setup = trainlib.prepare(validate(small_cfg(**{"mesh.num_devices": 1, "model.n_layer": 1})),
                           verbose=False)
  build = lambda train, lr, steps, seed: steplib.build(setup.mcfg, train, setup.spec.gns,
                                                       setup.mesh, lr, steps, seed)

  def losses(trainer):
    state, out = trainer.state, []
    for s in range(4):
      state, metrics = trainer.step_for(s)(state, steplib.global_batch(
          trainer.mesh, setup.train_source[s]), trainer.lr(s))
      out.append(float(jax.device_get(metrics)["loss"]))
    return out

  first = build(setup.spec.train, setup.peak_lr, setup.total_steps, 0)
  second = build(setup.spec.train, 3 * setup.peak_lr, 2 * setup.total_steps, 1)
  assert second.step_fn is first.step_fn and second.eval_fn is first.eval_fn
  shared = losses(second)
  steplib._PROGRAMS.clear()
  fresh = build(setup.spec.train, 3 * setup.peak_lr, 2 * setup.total_steps, 1)
  assert fresh.step_fn is not first.step_fn
  assert losses(fresh) == shared
  other = build(dataclasses.replace(setup.spec.train, b2=0.99), setup.peak_lr,
                setup.total_steps, 0)
  assert other.step_fn is not fresh.step_fn


def test_the_trainer_takes_the_typed_spec_not_a_config(small_cfg, tmp_path):
  """The config is parsed at the edge (validate); the trainer refuses a raw ConfigDict, and
  writes the config as given into config.json."""
  cfg = small_cfg(**{"train.steps": 2, "eval.every": 2, "checkpoint.every": 2})
  with pytest.raises(TypeError, match="validate"):
    trainlib.train(cfg, verbose=False)
  spec = validate(cfg)
  trainlib.train(spec, verbose=False)
  assert json.loads((tmp_path / "run" / "config.json").read_text()) == cfg.to_dict()
