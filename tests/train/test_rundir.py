"""The run directory's one owner: config check, metrics, summary, locks and the smoother."""

import json
import os

import numpy as np
import pytest

from scaling.errors import UserError
from scaling.train import rundir, runlock
from scaling.train import summary as summarylib


def test_metrics_append_read_truncate_and_a_torn_last_line(tmp_path):
  writer = rundir.MetricsWriter(tmp_path)
  for step in range(1, 6):
    writer.append({"step": step, "tokens": 10 * step, "loss": 5.0 - step / 10})
  writer.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 6, "tok')              # a kill in the middle of a write
  assert [r["step"] for r in rundir.read_metrics(tmp_path)] == [1, 2, 3, 4, 5]
  rundir.truncate_metrics(tmp_path, 3)
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["step"] for l in lines] == [1, 2, 3]
  assert rundir.read_metrics(tmp_path / "nowhere") == []


def test_old_key_names_are_read_as_the_current_ones(tmp_path):
  (tmp_path / "summary.json").write_text(json.dumps(
      {"flops_kaplan": 6e9, "flops_per_token": {"kaplan_train": 6.0}, "peak_flops": 1e11}))
  (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "flops": 6e3}) + "\n")
  s = summarylib.read(tmp_path)
  assert s.flop_kaplan == 6e9 and s.flop_per_token == {"kaplan_train": 6.0}
  assert s.peak_flop_per_s == 1e11
  assert rundir.read_metrics(tmp_path)[0]["flop_kaplan"] == 6e3


def test_last_record_carries_the_latest_eval_loss(tmp_path):
  w = rundir.MetricsWriter(tmp_path)
  w.append({"step": 1, "loss": 5.0, "eval_loss": 5.5})
  w.append({"step": 2, "loss": 4.0, "eval_loss": None})
  w.close()
  assert rundir.last_record(tmp_path) == {"step": 2, "loss": 4.0, "eval_loss": 5.5}


def test_config_same_resumable_or_refused(tmp_path, capsys):
  run = tmp_path / "run"
  cfg = {"train": {"peak_lr": 1e-3, "steps": 10}, "model": {"d_model": 8}}
  rundir.check_or_write_config(run, json.dumps(cfg), overwrite=False)
  rundir.check_or_write_config(run, json.dumps(cfg), overwrite=False)        # same: accepted
  lower = {**cfg, "train": {"peak_lr": 5e-4, "steps": 10}}
  rundir.check_or_write_config(run, json.dumps(lower), overwrite=False)     # resumable field
  assert json.loads((run / "config.json").read_text()) == lower
  assert len(list(run.glob("config.before-*.json"))) == 1
  assert "resuming with changed train.peak_lr" in capsys.readouterr().out
  plain = {**lower, "model": {"d_model": 8, "weight_grad": "plain"}}     # a speed knob only
  rundir.check_or_write_config(run, json.dumps(plain), overwrite=False)
  assert "resuming with changed model.weight_grad" in capsys.readouterr().out
  wider = {**plain, "model": {"d_model": 16, "weight_grad": "plain"}}
  with pytest.raises(UserError, match="different config .*model.d_model"):
    rundir.check_or_write_config(run, json.dumps(wider), overwrite=False)
  rundir.check_or_write_config(run, json.dumps(wider), overwrite=True)      # old run moved aside
  assert len(list(tmp_path.glob("run.old-*"))) == 1
  assert json.loads((run / "config.json").read_text()) == wider


def test_is_finished_needs_the_summary_and_the_same_config(tmp_path):
  cfg, run = json.dumps({"a": 1}), tmp_path / "sweep" / "p1"
  rundir.check_or_write_config(run, cfg, overwrite=False)
  assert not rundir.is_finished(run, cfg)
  summarylib.write(run, summarylib.RunSummary(steps=3))
  assert rundir.is_finished(run, cfg)
  assert not rundir.is_finished(run, json.dumps({"a": 2}))
  assert rundir.find_runs(tmp_path / "sweep") == [run]
  assert rundir.is_run(run) and not rundir.is_run(run.parent)


def test_locks_keep_runners_apart_and_stale_locks_are_taken(tmp_path):
  lock = runlock.lock_path(tmp_path / "point")
  assert lock.name == "point.lock"
  assert runlock.acquire(lock)
  assert not runlock.acquire(lock)                  # held by this live process
  assert runlock.read_owner(lock)["pid"] == os.getpid()
  lock.write_text(lock.read_text().replace(f'"pid": {os.getpid()}', '"pid": 999999999'))
  runlock._held_tokens.clear()                      # as another process would see it: dead pid
  assert runlock.acquire(lock)


def test_the_smoother_is_a_centred_moving_average():
  tokens = np.arange(1, 101) * 10.0
  line = 3.0 + 0.01 * tokens
  # A centred average of a straight line is the line itself away from the ends (no lag).
  np.testing.assert_allclose(rundir.smoothed(tokens, line, 100)[10:-10], line[10:-10])
  # Alternating noise of ±1 averages out over an odd number of points (11 inside ±50 tokens).
  noisy = line + np.where(np.arange(100) % 2, 1.0, -1.0)
  np.testing.assert_allclose(rundir.smoothed(tokens, noisy, 100)[10:-10], line[10:-10],
                             atol=1 / 11 + 1e-12)


def test_loss_curve_skips_non_finite_steps_and_smooths(tmp_path):
  w = rundir.MetricsWriter(tmp_path)
  for step in range(1, 101):
    w.append({"step": step, "tokens": 64 * step, "loss": None if step == 50 else 4.0,
              "b_simple_tokens": 100.0 if step > 10 else None})
  w.close()
  c = rundir.loss_curve(tmp_path)
  assert len(c["step"]) == 99 and 50 not in c["step"]
  assert c["window_tokens"] == rundir.SMOOTH_STEPS * 64
  np.testing.assert_allclose(c["smoothed"], 4.0)
  assert np.isnan(c["b_simple_tokens"][:10]).all() and (c["b_simple_tokens"][10:] == 100).all()


def test_runs_written_before_the_b_simple_name_still_read(tmp_path):
  (tmp_path / "metrics.jsonl").write_text(json.dumps(
      {"step": 1, "tokens": 64, "loss": 4.0, "b_noise_tokens": 123.0}) + "\n")
  (tmp_path / "summary.json").write_text(json.dumps({"b_noise_tokens_final": 99.0}))
  assert rundir.read_metrics(tmp_path)[0]["b_simple_tokens"] == 123.0
  assert summarylib.read(tmp_path).b_simple_tokens_final == 99.0
  assert rundir.loss_curve(tmp_path)["b_simple_tokens"][0] == 123.0


def test_a_field_added_since_the_run_at_its_default_is_no_difference(tmp_path):
  from scaling.config.defaults import base_config
  new = base_config().to_dict()
  old = json.loads(json.dumps(new))
  del old["data"]["store"]                 # a run written before data.store existed
  rundir.check_or_write_config(tmp_path, json.dumps(old), overwrite=False)
  summarylib.write(tmp_path, summarylib.RunSummary(steps=1))
  assert rundir.is_finished(tmp_path, json.dumps(new))
  rundir.check_or_write_config(tmp_path, json.dumps(new), overwrite=False)   # accepted as is
  new["data"]["store"] = "/somewhere/else"                                  # not the default
  assert rundir.config_diff(old, new) == ["data.store"]
  assert not rundir.is_finished(tmp_path, json.dumps(new))


def test_a_run_from_before_epoch_sampling_resumes_only_as_it_was_trained(tmp_path):
  """data.sampling did not exist: those runs drew windows with replacement. Unfinished, they
  resume only with data.sampling=uniform; finished, they stay finished."""
  from scaling.config.defaults import base_config
  new = base_config().to_dict()
  old = json.loads(json.dumps(new))
  del old["data"]["sampling"]
  rundir.check_or_write_config(tmp_path, json.dumps(old), overwrite=False)
  assert rundir.config_diff(old, new) == ["data.sampling"]
  with pytest.raises(UserError, match="data.sampling"):
    rundir.check_or_write_config(tmp_path, json.dumps(new), overwrite=False)
  new["data"]["sampling"] = "uniform"
  rundir.check_or_write_config(tmp_path, json.dumps(new), overwrite=False)   # accepted
  summarylib.write(tmp_path, summarylib.RunSummary(steps=1))
  new["data"]["sampling"] = "epochs"
  assert rundir.is_finished(tmp_path, json.dumps(new))
