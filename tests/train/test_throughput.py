"""`scaling bench`: its numbers are consistent with each other and with the FLOP count."""

import json
import math

import numpy as np
import pytest

from scaling.cli import main as cli_main
from scaling.train import hardware, throughput


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
  row = throughput._off_row([1.0, 2.0, 3.0], [0.5, 2.5, 2.0], tokens=4)
  assert row["off_over_on_paired"] == pytest.approx(1.5)
  assert row["off_slower_pairs"] == 1 and row["off_tokens_per_s"] == pytest.approx(2.0)
  # Three pairs are too few for a 95 % sign-test interval (P(all on one side) = 1/4 > 0.025).
  assert all(math.isnan(x) for x in row["off_over_on_interval"])


def test_median_interval_is_the_sign_test_interval():
  # n = 10: P(X ≤ 1) = 11/1024 ≤ 0.025 < P(X ≤ 2) = 56/1024, so the 2nd and 9th smallest values.
  assert throughput.median_interval([9, 1, 8, 2, 7, 3, 6, 4, 5, 10]) == (2.0, 9.0)
  # n = 20: P(X ≤ 5) = 21700/2^20 ≈ 0.0207 ≤ 0.025 < P(X ≤ 6) ≈ 0.0577: the 6th and 15th.
  assert throughput.median_interval(range(1, 21)) == (6.0, 15.0)
  # Its coverage on draws from a known distribution (the median of U(0, 1) is ½): ≥ 95 %.
  rng = np.random.default_rng(0)
  hits = [lo <= 0.5 <= hi for lo, hi in (throughput.median_interval(rng.random(10))
                                         for _ in range(2000))]
  assert 0.95 <= np.mean(hits) <= 0.995


def test_nominal_peaks_and_shape_parsing():
  class Dev:
    device_kind = "NVIDIA H100 80GB HBM3"
  assert hardware.nominal_peak(Dev()) == 989e12
  Dev.device_kind = "TPU v5 lite"
  assert hardware.nominal_peak(Dev()) == 197e12
  assert throughput.parse_shapes("2,128,2 4,256,4") == [(2, 128, 2), (4, 256, 4)]
  from scaling.errors import UserError
  with pytest.raises(UserError, match="n_layer,d_model,n_heads"):
    throughput.parse_shapes("2,128")


def test_estimator_off_step_does_less_work_than_on():
  # Timed, off and on differ by less than the timing noise on one device; XLA's own cost analysis
  # of the two compiled programs says which does more: off must not, in FLOPs or in bytes.
  costs = []
  for gns_on in (True, False):
    # 16 × 128 tokens: two ~1,024-token micro-batches on CPU with the estimator on or off.
    trainer, _ = throughput.trainer_step(2, 64, 2, 128, 512, 16, gns_on=gns_on, num_devices=1)
    batch = np.zeros((16, 129), np.int32)
    compiled = trainer.step_fn.lower(trainer.state, batch, trainer.lr(0)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    costs.append((cost["flops"], cost["bytes accessed"], trainer.geom.micro_batches))
  (on_flop, on_bytes, on_k), (off_flop, off_bytes, off_k) = costs
  assert on_k == off_k == 2          # the same micro-batches, so off only drops the norms
  assert off_flop < on_flop and off_bytes < on_bytes
