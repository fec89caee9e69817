"""Paths that cannot be written: a file where a folder is wanted, a cache or a run on a
read-only filesystem. Each is a one-line error (exit 2), and nothing on disk changes."""

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import REPO
from scaling.cli import main as cli_main

pytestmark = pytest.mark.faults


def _files(folder: Path) -> dict:
  return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys, args, expect: str) -> None:
  capsys.readouterr()
  rc = cli_main(args)
  err = capsys.readouterr().err.strip()
  assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
  assert expect in err, err


def _train(run, cache, *extra):
  return ["train", "--config", str(REPO / "configs/test_small.py"), f"--config.run_dir={run}",
          f"--config.data.cache_dir={cache}", "--config.train.steps=10", *extra]


@pytest.fixture
def read_only(tmp_path):
  """A read-only filesystem (a tmpfs remounted read-only) holding a copy of the witness's run
  and cache; skipped where this process cannot mount (not root, or a container without it)."""
  where = tmp_path / f"ro-{uuid.uuid4().hex[:6]}"
  where.mkdir()
  if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(where)],
                                         capture_output=True).returncode != 0:
    pytest.skip("needs a read-only filesystem: mounting a tmpfs needs root and a mount "
                "namespace that allows it")
  yield where
  subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _remount_ro(where: Path) -> None:
  subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def test_tokenize_out_is_a_file(tmp_path, witness, capsys):
  out = tmp_path / "store"
  out.write_text("something")
  _one_line_error(capsys, ["tokenize", "--config", str(REPO / "configs/test_small.py"),
                           f"--config.data.cache_dir={witness / 'cache'}", "--out", str(out)],
                  "is a file, not a folder")
  assert out.read_text() == "something"


def test_run_dir_is_a_file(tmp_path, witness, capsys):
  run = tmp_path / "run"
  run.write_text("something")
  _one_line_error(capsys, _train(run, witness / "cache"), "is a file, not a folder")
  assert run.read_text() == "something" and sorted(os.listdir(tmp_path)) == ["run"]


def test_cache_that_cannot_be_made(tmp_path, monkeypatch, capsys):
  (tmp_path / "blocker").write_text("a file where the cache's parent should be")
  monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "blocker" / "cache"))
  _one_line_error(capsys, ["tokenize", "--config", str(REPO / "configs/test_small.py")],
                  "cannot make the cache folder")


def test_cache_on_a_read_only_filesystem(read_only, tmp_path, monkeypatch, capsys):
  _remount_ro(read_only)
  monkeypatch.setenv("SCALING_CACHE", str(read_only / "cache"))
  _one_line_error(capsys, _train(tmp_path / "run", "", "--config.train.steps=5"),
                  "cannot make the cache folder")


def test_resuming_a_run_on_a_read_only_filesystem(read_only, witness, capsys):
  shutil.copytree(witness / "run", read_only / "run")
  shutil.copytree(witness / "cache", read_only / "cache")
  (read_only / "run" / "summary.json").unlink()
  _remount_ro(read_only)
  before = _files(read_only)
  _one_line_error(capsys, _train(read_only / "run", read_only / "cache"), "Read-only file system")
  assert _files(read_only) == before


def test_a_finished_run_and_its_store_are_read_on_a_read_only_filesystem(read_only, witness,
                                                                        capsys):
  shutil.copytree(witness / "run", read_only / "run")
  shutil.copytree(witness / "cache", read_only / "cache")
  _remount_ro(read_only)
  capsys.readouterr()
  assert cli_main(_train(read_only / "run", read_only / "cache")) == 0
  assert "is finished" in capsys.readouterr().out


def test_report_of_a_csv_or_a_missing_folder(tmp_path, capsys):
  csv = tmp_path / "runs.csv"
  csv.write_text("N,loss\n1e5,3.0\n1e6,2.8\n1e7,2.6\n")
  _one_line_error(capsys, ["report", str(csv)], "is not a folder of runs")
  _one_line_error(capsys, ["report", str(tmp_path / "nothing")], "does not exist")
  (tmp_path / "design").write_text("not a folder")
  _one_line_error(capsys, ["design", "--out", str(tmp_path / "design"), "--minutes", "1"],
                  "is a file, not a folder")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["design", "runs.csv"]
