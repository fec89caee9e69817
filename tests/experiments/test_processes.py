"""Training one list of runs with two processes (scaling/experiments/processes.py): the same runs,
the same numbers as one process, each point trained once, the helpers stopped when the caller
fails or is killed."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, read_metrics
from scaling.config.load import load_config_file
from scaling.config.spec import validate
from scaling.errors import UserError
from scaling.experiments import isoflop, processes, sweep
from scaling.experiments.expand import expand


def _sweep(folder):
  cfg = load_config_file(str(REPO / "configs" / "test_small.py"))
  cfg.run_dir = str(folder)
  cfg.sweep = isoflop.defaults()
  cfg.sweep.models = [(1, 16, 1), (1, 32, 2)]
  cfg.sweep.budgets_flop = [4e8, 1.2e9]
  cfg.sweep.min_steps = 10
  cfg.sweep.warmup_steps = 3
  return expand(cfg)


def _losses(folder, runs):
  return {r.name: [(m["step"], m["loss"]) for m in read_metrics(folder / r.name.split("-", 1)[1])]
          for r in runs}


def test_two_processes_train_a_branched_sweep_to_the_same_losses_as_one(tmp_path):
  one, two = _sweep(tmp_path / "one"), _sweep(tmp_path / "two")
  assert any(r.train.get("init_from") for r in one)       # branches wait for their source
  sweep.run_points(one, verbose=False, processes=1)
  sweep.run_points(two, verbose=False, processes=2)
  assert _losses(tmp_path / "one", one) == _losses(tmp_path / "two", two)
  log = (tmp_path / "two" / "helper-1.log").read_text()
  helped = {line.split("] ")[1].split(":")[0] for line in log.splitlines()
            if line.startswith("[sweep") and ": training" in line}
  assert helped and len(helped) < len(two)                  # both processes trained runs
  peaks = set()
  for r in two:
    summary = json.loads((tmp_path / "two" / r.name.split("-", 1)[1] / "summary.json").read_text())
    assert summary["steps"] == r.train.steps
    peaks.add(summary["peak_flop_per_s"])
  # The helper's MFU is against the peak its starter measured alone, not a matmul timed while
  # the other process trained (which found about half the processor).
  assert len(peaks) == 1
  assert not list((tmp_path / "two").glob("*.lock")) and not list((tmp_path / "two").glob(".queue*"))


def test_the_helpers_stop_when_the_caller_fails(tmp_path):
  runs = _sweep(tmp_path / "sw")
  with pytest.raises(RuntimeError, match="caller failed"):
    with processes.helpers([validate(r) for r in runs], 3, overwrite=False) as procs:
      assert len(procs) == 2
      raise RuntimeError("caller failed")
  assert all(p.returncode is not None for p in procs)
  assert not list((tmp_path / "sw").glob(".queue*"))


def test_how_many_processes():
  assert processes.resolve(3) == 3
  assert 1 <= processes.resolve(0) <= processes.MAX_AUTO       # this CPU's default
  assert processes.resolve(0, distributed=True) == 1
  with pytest.raises(UserError, match="one process per host"):
    processes.resolve(2, distributed=True)
  with pytest.raises(UserError, match="--processes -1"):
    processes.resolve(-1)




def _gone(pid: int) -> bool:
  """The process has exited (a zombie no one has reaped yet counts as exited)."""
  try:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
  except OSError:
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_helper_stops_itself_when_its_caller_is_killed(tmp_path):
  """A caller killed with SIGKILL cannot stop its helpers: each notices and sends itself SIGTERM
  (then checkpoints and exits, as on preemption) instead of training on alone."""
  ready = tmp_path / "ready"
  helper = (f"import sys, time; sys.path.insert(0, {str(REPO)!r}); "
            "from scaling.experiments import processes; processes.stop_with_parent(0.05); "
            f"open({str(ready)!r}, 'w').close(); time.sleep(120)")
  caller = subprocess.Popen(
      [sys.executable, "-c", "import subprocess, sys, time; "
       f"p = subprocess.Popen([sys.executable, '-c', {helper!r}]); print(p.pid, flush=True); "
       "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
  helper_pid = int(caller.stdout.readline())
  deadline = time.time() + 60
  while not ready.exists() and time.time() < deadline:
    time.sleep(0.05)
  assert ready.exists() and not _gone(helper_pid)
  caller.kill()
  caller.wait()
  deadline = time.time() + 30
  while not _gone(helper_pid) and time.time() < deadline:
    time.sleep(0.05)
  assert _gone(helper_pid)
