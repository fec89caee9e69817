"""Test setup: 8 forced CPU devices (before JAX is imported) and a per-session cache."""

import os
import sys
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SCALING_CACHE", tempfile.mkdtemp(prefix="scaling-test-cache-"))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@pytest.fixture
def small_cfg(tmp_path):
  """The test_small config writing into a temporary run directory."""
  def make(**overrides):
    from scaling.config import apply_overrides, load_config_file
    cfg = load_config_file(str(REPO / "configs" / "test_small.py"))
    cfg.run_dir = str(tmp_path / "run")
    apply_overrides(cfg, [f"{k}={v}" for k, v in overrides.items()])
    return cfg
  return make


def read_metrics(run_dir):
  import json
  return [json.loads(line) for line in Path(run_dir, "metrics.jsonl").read_text().splitlines()]
