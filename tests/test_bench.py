"""`scaling bench`: its numbers are consistent with each other and with the FLOP count."""

import json

import pytest

from scaling import bench, hardware
from scaling.cli import main as cli_main


@pytest.mark.slow   # 38 s; `scaling bench` end to end (benchmarks/bench.py runs it too)
def test_bench_row_against_hand_counts_and_its_own_invariants(tmp_path, capsys):
  out = tmp_path / "b.json"
  assert cli_main(["bench", "--shapes", "1,32,2", "--vocab", "300", "--ctx", "32", "--batch", "8",
                   "--steps", "3", "--no-overhead", "--compare-off", "--json", str(out)]) == 0
  result = json.loads(out.read_text())
  row = result["rows"][0]
  # Hand counts of (1 layer, d_model 32, context 32, vocabulary 300): N = 12·32² = 12 288; PaLM
  # per token 6·12 288 + 12·1·32·32 + 6·32·300 = 73 728 + 12 288 + 57 600 = 143 616.
  assert row["n_kaplan"] == 12_288 and row["flop_per_token"] == 143_616
  # The reported step time is the median of the timed steps, and the speed follows from it.
  assert sorted(row["step_times_s"])[1] == row["step_s"]
  assert row["tokens_per_s"] * row["step_s"] == pytest.approx(8 * 32)
  # The run's peak is the best of every matmul timed, so no paired matmul beats it, and a local
  # peak is at most the run's: the paired MFU is at least the run-peak MFU.
  rates = row["matmul_flop_per_s_beside_steps"]
  assert len(rates) == 4 and max(rates) <= row["peak_measured_flop_per_s"]
  assert row["mfu_paired"] >= row["mfu_measured"]
  assert 0 < row["mfu_measured"] < 1 and row["mfu_nominal"] is None     # CPU: no nominal peak
  assert row["compile_s"] > 0 and row["peak_memory_bytes"] > 0
  assert result["loader"]["tokens_per_s"] > 0
  assert "MFU(pair)" in capsys.readouterr().out
  # The estimator-off step was timed beside each of the three steps.
  assert len(row["off_step_times_s"]) == 3 and 0 <= row["off_slower_pairs"] <= 3


def test_off_over_on_is_the_median_of_paired_speed_ratios():
  # on 1.0, 2.0, 3.0 s against off 0.5, 2.5, 2.0 s: on/off 2.0, 0.8, 1.5 → median 1.5; one pair
  # (0.8) has the off step slower; off's median step 2.0 s → 4 tokens / 2 s.
  row = bench._off_row([1.0, 2.0, 3.0], [0.5, 2.5, 2.0], tokens=4)
  assert row["off_over_on_paired"] == pytest.approx(1.5)
  assert row["off_slower_pairs"] == 1 and row["off_tokens_per_s"] == pytest.approx(2.0)


def test_nominal_peaks_and_shape_parsing():
  class Dev:
    device_kind = "NVIDIA H100 80GB HBM3"
  assert hardware.nominal_peak(Dev()) == 989e12
  Dev.device_kind = "TPU v5 lite"
  assert hardware.nominal_peak(Dev()) == 197e12
  assert bench.parse_shapes("2,128,2 4,256,4") == [(2, 128, 2), (4, 256, 4)]
  from scaling.errors import UserError
  with pytest.raises(UserError, match="n_layer,d_model,n_heads"):
    bench.parse_shapes("2,128")
