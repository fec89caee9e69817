"""`scaling bench`: its numbers are consistent with each other and with the FLOP count."""

import json

import pytest

from scaling import bench
from scaling.cli import main as cli_main
from scaling.model import ModelConfig, flops_per_token


def test_bench_row_is_self_consistent(tmp_path, capsys):
  out = tmp_path / "b.json"
  assert cli_main(["bench", "--shapes", "1,32,2", "--vocab", "300", "--ctx", "32", "--batch", "8",
                   "--steps", "3", "--no-overhead", "--json", str(out)]) == 0
  result = json.loads(out.read_text())
  row = result["rows"][0]
  flops = flops_per_token(ModelConfig(n_layer=1, d_model=32, n_heads=2, n_ctx=32,
                                      n_vocab=300))["palm_train"]
  assert row["flops_per_token"] == flops
  assert row["tokens_per_s"] == pytest.approx(8 * 32 / row["step_s"])
  assert row["achieved_flops"] == pytest.approx(flops * row["tokens_per_s"])
  assert row["mfu_measured"] == pytest.approx(row["achieved_flops"] / row["peak_measured_flops"])
  assert 0 < row["mfu_measured"] < 1 and row["mfu_nominal"] is None     # CPU: no nominal peak
  # The run's peak is the best of every matmul timed, so no paired matmul beats it; each paired
  # ratio is the step's FLOP/s over the faster of the matmul blocks just before and after it.
  rates, times = row["matmul_flops_beside_steps"], row["step_times_s"]
  assert len(rates) == len(times) + 1 and max(rates) <= row["peak_measured_flops"]
  paired = [8 * 32 * flops / t / max(a, b) for t, a, b in zip(times, rates, rates[1:])]
  assert row["mfu_paired"] == pytest.approx(sorted(paired)[1])         # median of 3
  assert row["mfu_paired"] >= row["mfu_measured"]        # a local peak is at most the run's peak
  assert row["compile_s"] > 0 and row["peak_memory_bytes"] > 0
  assert result["loader"]["tokens_per_s"] > 0
  assert "MFU(pair)" in capsys.readouterr().out


def test_nominal_peaks_and_shape_parsing():
  class Dev:
    device_kind = "NVIDIA H100 80GB HBM3"
  assert bench.nominal_peak(Dev()) == 989e12
  Dev.device_kind = "TPU v5 lite"
  assert bench.nominal_peak(Dev()) == 197e12
  assert bench.parse_shapes("2,128,2 4,256,4") == [(2, 128, 2), (4, 256, 4)]
  from scaling.errors import UserError
  with pytest.raises(UserError, match="n_layer,d_model,n_heads"):
    bench.parse_shapes("2,128")
