"""Locks: a lock names its owner beyond a pid, a stale one is recognised and taken over, a live
one refuses at once, and nothing waits without a message and a limit.

The class's members are lock files as they are found: a bare pid of a live unrelated process, a
reused pid, an empty or torn file, another host's lock with a silent heartbeat (stale) or a fresh
one (live), and a live owner on this machine (live)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from scaling.cli import main as cli_main
from scaling.experiments import points as pointlib
from scaling.train import runlock

pytestmark = pytest.mark.faults


def _owner(pid: int, **changes) -> str:
  me = runlock.identity()
  me.update(pid=pid, start=runlock._start_ticks(pid), token="someone-else")
  me.update(changes)
  return json.dumps(me)


def _old(lock: Path, age_s: float = 3600) -> None:
  t = time.time() - age_s
  os.utime(lock, (t, t))


@pytest.fixture
def sleeper():
  proc = subprocess.Popen(["sleep", "120"])
  yield proc
  proc.kill()
  proc.wait()


STALE = {   # (what the lock file holds, made from a live unrelated process) → taken over
    "bare pid of a live unrelated process": lambda lock, p: lock.write_text(str(p.pid)),
    "reused pid (live, started at another time)": lambda lock, p: lock.write_text(
        _owner(p.pid, start=(runlock._start_ticks(p.pid) or 0) + 12345)),
    "empty file": lambda lock, p: lock.write_text(""),
    "torn owner": lambda lock, p: lock.write_text(_owner(p.pid)[:25]),
    "another host, silent heartbeat": lambda lock, p: (
        lock.write_text(_owner(p.pid, host="elsewhere", boot="x")), _old(lock)),
    "this host, another boot, silent heartbeat": lambda lock, p: (
        lock.write_text(_owner(p.pid, boot="an-earlier-boot")), _old(lock)),
}

LIVE = {    # → refused at once, naming the owner
    "a live owner on this machine": lambda lock, p: lock.write_text(_owner(p.pid)),
    "another host, fresh heartbeat": lambda lock, p: lock.write_text(
        _owner(p.pid, host="elsewhere", boot="x")),
}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("case", sorted(STALE))
def test_stale_locks_are_taken_over(case, tmp_path, sleeper):
  lock = tmp_path / "point.lock"
  STALE[case](lock, sleeper)
  assert not runlock.owner_alive(lock)
  assert runlock.acquire(lock)
  assert runlock.read_owner(lock)["pid"] == os.getpid() and runlock.holds(lock)
  runlock.release(lock)
  assert not lock.exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("case", sorted(LIVE))
def test_live_locks_refuse(case, tmp_path, sleeper):
  lock = tmp_path / "point.lock"
  LIVE[case](lock, sleeper)
  before = lock.read_bytes()
  assert runlock.owner_alive(lock) and not runlock.acquire(lock)
  runlock.release(lock)                      # not ours: left as it is
  assert lock.read_bytes() == before
  assert f"pid {sleeper.pid} on " in runlock.describe(lock)


def test_a_lock_is_written_whole_and_released_only_by_its_holder(tmp_path):
  lock = tmp_path / "p.lock"
  assert runlock.acquire(lock) and not runlock.acquire(lock)   # held by this process
  owner = runlock.read_owner(lock)
  assert owner["host"] == socket.gethostname() and len(owner["token"]) == 32
  assert [p.name for p in tmp_path.iterdir()] == ["p.lock"]   # no temporary file left
  lock.write_text(_owner(os.getpid()))        # taken over by someone else meanwhile
  runlock.release(lock)
  assert lock.exists()


def test_the_heartbeat_keeps_a_lock_fresh(tmp_path, monkeypatch):
  monkeypatch.setattr(runlock, "HEARTBEAT_S", 0.05)
  lock = tmp_path / "p.lock"
  assert runlock.acquire(lock)
  _old(lock)
  with runlock.heartbeat(lock):
    time.sleep(0.3)
  assert time.time() - lock.stat().st_mtime < 5
  runlock.release(lock)


# ---------------------------------------------------------------------------------------------
# The commands: a sweep or a run behind a stale lock goes on; a store being written by a live
# process is waited for with a message, then given up with a one-line error.


def _train_args(run: Path, cache: Path) -> list[str]:
  return ["train", "--config", str(REPO / "configs/test_small.py"), f"--config.run_dir={run}",
          f"--config.data.cache_dir={cache}", "--config.train.steps=10"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_run_behind_a_bare_pid_lock_trains(tmp_path, witness, sleeper, capsys):
  run = tmp_path / "run"
  shutil.copytree(witness / "run", run)
  (run / "summary.json").unlink()
  runlock.lock_path(run).write_text(str(sleeper.pid))
  assert cli_main(_train_args(run, witness / "cache")) == 0
  assert (run / "summary.json").is_file() and not runlock.lock_path(run).exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_store_held_by_a_live_writer_is_waited_for_then_given_up(tmp_path, sleeper, capsys,
                                                                    monkeypatch):
  monkeypatch.setenv("SCALING_LOCK_WAIT_S", "1")
  out = tmp_path / "store"
  runlock.lock_path(out).write_text(_owner(sleeper.pid))
  capsys.readouterr()
  t0 = time.time()
  rc = cli_main(["tokenize", "--config", str(REPO / "configs/test_small.py"), "--out", str(out)])
  cap = capsys.readouterr()
  assert rc == 2 and time.time() - t0 < 30
  assert f"waiting for another process (pid {sleeper.pid}" in cap.out
  err = cap.err.strip()
  assert len(err.splitlines()) == 1 and "gave up after" in err and "Traceback" not in err, err
  assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Two runners on one isoFLOP sweep: a WSD branch whose source another runner is training waits
# for it, then trains; given up after the limit, it says the true reason.


def _wsd_sweep(tmp_path):
  from scaling.config.load import load_config_file
  from scaling.experiments import isoflop
  from scaling.experiments.expand import expand
  cfg = load_config_file(str(REPO / "configs" / "test_small.py"))
  cfg.run_dir = str(tmp_path / "sweep")
  cfg.data.cache_dir = str(tmp_path / "cache")
  cfg.sweep = isoflop.defaults()
  cfg.sweep.models = [(1, 16, 1)]
  cfg.sweep.budgets_flop = [4e8, 1.2e9]
  cfg.sweep.min_steps = 10
  cfg.sweep.warmup_steps = 3
  configs = expand(cfg)
  assert configs[1].train.init_from.startswith(configs[0].run_dir)
  return configs


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_branch_whose_source_another_runner_trains_is_skipped_with_the_reason(
    tmp_path, sleeper, capsys, monkeypatch):
  from scaling.experiments import sweep
  monkeypatch.setenv("SCALING_LOCK_WAIT_S", "1")
  monkeypatch.setattr(sweep, "_POLL_S", 0.2)
  configs = _wsd_sweep(tmp_path)
  source = pointlib.run_path(configs[0])
  source.parent.mkdir(parents=True)
  runlock.lock_path(source).write_text(_owner(sleeper.pid))
  sweep.run_points(configs)
  out = capsys.readouterr().out
  assert f"skipped, another process (pid {sleeper.pid} on" in out
  assert "waiting, its source" in out and "is being trained by another process" in out
  assert "skipped, its source" in out and "run the sweep again once it has finished" in out
  assert "no checkpoint" not in out and not pointlib.run_path(configs[1]).exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_branch_waits_for_its_source_and_takes_over_when_that_runner_dies(
    tmp_path, sleeper, capsys, monkeypatch):
  from scaling.experiments import sweep
  monkeypatch.setattr(sweep, "_POLL_S", 0.2)
  configs = _wsd_sweep(tmp_path)
  pointlib.run_path(configs[0]).parent.mkdir(parents=True)
  runlock.lock_path(pointlib.run_path(configs[0])).write_text(_owner(sleeper.pid))
  real_sleep = time.sleep

  def the_other_runner_dies(s):            # during the first wait
    sleeper.kill()
    sleeper.wait()
    real_sleep(s)

  monkeypatch.setattr(sweep.time, "sleep", the_other_runner_dies)
  sweep.run_points(configs)
  out = capsys.readouterr().out
  assert "waiting, its source" in out
  assert all((pointlib.run_path(rc) / "summary.json").is_file() for rc in configs), out


_TAKE = """
import sys, time
from pathlib import Path
from scaling.train import runlock
lock, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
  pass
print(int(runlock.acquire(Path(lock))), flush=True)
time.sleep(0.5)                          # hold it while the others try
"""


def test_exactly_one_of_several_processes_takes_a_stale_lock(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  for trial in range(6):
    lock = tmp_path / f"p{trial}.lock"
    lock.write_text("12345")             # stale: names no owner
    start = time.time() + 1.5            # after every interpreter has started
    procs = [subprocess.Popen([sys.executable, "-c", _TAKE, str(lock), str(start)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    taken = [int(p.communicate(timeout=60)[0].strip()) for p in procs]
    assert sum(taken) == 1, (trial, taken)
