"""Run directories on a non-local filesystem (fsspec's memory://): train, resume, fit and report
with every file landing in that filesystem, and a resumed run equal to an uninterrupted one."""

import json

import fsspec
import pytest

from conftest import read_metrics
from scaling.cli import main as cli_main
from scaling.train import loop as trainlib
from scaling.train import remote
from scaling.config.spec import validate


class _Killed(Exception):
  pass


def test_memory_run_dirs_train_resume_fit_report(tmp_path, small_cfg, monkeypatch, capsys):
  fs = fsspec.filesystem("memory")
  sweep = f"memory://{tmp_path.name}/sweep"
  monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
  monkeypatch.chdir(tmp_path)

  def cfg(d_model, run_dir):
    c = small_cfg(**{"model.d_model": d_model, "train.steps": 10, "checkpoint.every": 5,
                     "eval.every": 5, "mesh.num_devices": 1, "gns.enabled": False,
                     "data.cache_dir": str(tmp_path / "cache")})
    c.run_dir = run_dir
    return c

  # One run stopped right after its step-5 checkpoint was pushed (as if the machine died) …
  real_sync = trainlib._Loop._synced

  def sync_then_die(loop):
    real_sync(loop)
    raise _Killed()
  monkeypatch.setattr(trainlib._Loop, "_synced", sync_then_die)
  with pytest.raises(_Killed):
    trainlib.train(validate(cfg(32, f"{sweep}/m32")), verbose=False)
  monkeypatch.setattr(trainlib._Loop, "_synced", real_sync)
  remote_files = set(fs.find(f"/{tmp_path.name}/sweep/m32"))
  assert any("/checkpoints/5/" in f for f in remote_files)      # pushed when it failed
  assert not any(f.endswith("summary.json") for f in remote_files)

  # … resumes from what the remote folder holds (the local mirror is gone), and ends exactly
  # where an uninterrupted local run ends.
  import shutil
  shutil.rmtree(tmp_path / "cache" / "mirrors")
  resumed = trainlib.train(validate(cfg(32, f"{sweep}/m32")), verbose=False)
  whole = trainlib.train(validate(cfg(32, str(tmp_path / "local"))), verbose=False)
  assert resumed.final_eval_loss == whole.final_eval_loss
  recorded = json.loads(fs.cat_file(f"/{tmp_path.name}/sweep/m32/config.json"))
  assert recorded["run_dir"] == f"{sweep}/m32"                   # the URL, not the local mirror
  assert not any("config.before" in f for f in fs.find(f"/{tmp_path.name}/sweep/m32"))
  with fs.open(f"/{tmp_path.name}/sweep/m32/metrics.jsonl") as f:
    remote_losses = [json.loads(line)["loss"] for line in f if b'"loss"' in line]
  assert remote_losses == [m["loss"] for m in read_metrics(tmp_path / "local")]

  for d in (16, 64):
    trainlib.train(validate(cfg(d, f"{sweep}/m{d}")), verbose=False)
  # A sweep over the same points finds them finished in the remote folder.
  from scaling.experiments.sweep import run_points
  run_points([cfg(d, f"{sweep}/m{d}") for d in (16, 32, 64)], verbose=False)
  assert capsys.readouterr().out.count("finished, skipped") == 3
  assert cli_main(["fit", sweep, "--bootstrap", "10"]) == 0
  assert cli_main(["report", sweep, "--bootstrap", "10"]) == 0
  names = {f.rsplit("/", 1)[1] for f in fs.find(f"/{tmp_path.name}/sweep")}
  assert {"fits.json", "report.md", "summary.json", "metrics.jsonl", "config.json"} <= names
  fits = json.loads(fs.cat_file(f"/{tmp_path.name}/sweep/fits.json"))
  assert "L(N)" in fits["fits"], list(fits["fits"])      # fitted on the three remote runs
  # Nothing was written to a local folder named after the URL.
  assert not any(p.name.startswith("memory") for p in tmp_path.iterdir())


def test_file_urls_are_local_paths(tmp_path):
  assert not remote.is_remote(f"file://{tmp_path}") and remote.is_remote("gs://bucket/run")
  assert remote.local_path(f"file://{tmp_path}/run") == tmp_path / "run"


def test_a_store_written_to_and_read_from_memory(tmp_path, small_cfg, monkeypatch):
  from conftest import REPO
  fs = fsspec.filesystem("memory")
  url = f"memory://{tmp_path.name}/store"
  cache = f"--config.data.cache_dir={tmp_path / 'cache'}"
  assert cli_main(["tokenize", "--config", str(REPO / "configs/test_small.py"), "--out", url,
                   cache]) == 0
  names = {f.rsplit("/", 1)[1] for f in fs.find(f"/{tmp_path.name}/store")}
  assert names == {"meta.json", "tokenizer.json", "train-00000.bin", "eval-00000.bin"}
  meta = json.loads(fs.cat_file(f"/{tmp_path.name}/store/meta.json"))
  c = small_cfg(**{"data.store": url, "train.steps": 2, "mesh.num_devices": 1,
                   "data.cache_dir": str(tmp_path / "cache2")})   # a machine without the copy
  summary = trainlib.train(validate(c), verbose=False)
  assert summary.store == url and summary.store_sha256_16 == meta["store_sha256_16"]
