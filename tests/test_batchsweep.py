"""The batch-size sweep analysis against synthetic runs that obey McCandlish's hyperbola."""

import json

import numpy as np
import pytest

from scaling import batchsweep
from scaling.config import load_config_file
from scaling.expand import expand

B_STAR, ALPHA_B = 3e6, 0.3   # B_crit(L) = B*/L^(1/α_B), tokens


def _write_run(folder, batch_tokens, n_ctx=64):
  # Loss at step s solves s = S_min(L)·(1 + B_crit(L)/B) with S_min(L) = 40·(6 − L)² (steps).
  grid_l = np.linspace(5.9, 3.5, 2000)
  s_of_l = 40 * (6 - grid_l) ** 2 * (1 + B_STAR / grid_l ** (1 / ALPHA_B) / batch_tokens)
  steps = np.arange(1, int(s_of_l[-1]))
  loss = np.interp(steps, s_of_l, grid_l)
  folder.mkdir(parents=True)
  lines = [json.dumps({"step": int(s), "tokens": int(s * batch_tokens), "loss": float(l),
                       "b_simple_tokens": float(B_STAR / l ** (1 / ALPHA_B))})
           for s, l in zip(steps, loss)]
  (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
  (folder / "summary.json").write_text(json.dumps(
      {"batch_tokens": batch_tokens, "batch_seqs": batch_tokens // n_ctx}))


def test_analysis_recovers_bcrit_law(tmp_path):
  for b in 64 * 2 ** np.arange(8):
    _write_run(tmp_path / f"bs{b // 64:05d}", int(b))
  targets = [5.0, 4.7, 4.4, 4.1, 3.8]
  result = batchsweep.analyze(tmp_path, targets, window_tokens=1, n_boot=200)
  for row in result["targets"]:
    truth = B_STAR / row["target_loss"] ** (1 / ALPHA_B)
    assert row["valid"]
    assert row["B_crit"] == pytest.approx(truth, rel=0.05)
    assert row["S_min"] == pytest.approx(40 * (6 - row["target_loss"]) ** 2, rel=0.05)
    assert row["ratio_sweep_over_online"] == pytest.approx(1.0, rel=0.05)
  assert result["bcrit_law"]["params"]["alpha_B"] == pytest.approx(ALPHA_B, rel=0.05)
  table = batchsweep.format_table(result)
  assert "| 5.000 | 8 |" in table and "α_B" in table
  batchsweep.plot(result, tmp_path / "f.png")
  assert (tmp_path / "f.png").stat().st_size > 10_000


def test_crossings_use_centred_smoothing():
  tokens = np.arange(1, 1001) * 10.0
  curve = {"step": np.arange(1, 1001), "tokens": tokens,
           "loss": 6 - tokens / 2000 + np.where(np.arange(1000) % 2, 0.3, -0.3),
           "b_simple_tokens": np.ones(1000)}
  hit = batchsweep.crossings(curve, [4.0], window_tokens=200)[4.0]
  assert hit["tokens"] == pytest.approx(4000, abs=20)   # the noise-free curve crosses at 4000
  assert batchsweep.crossings(curve, [0.5], window_tokens=200)[0.5] is None


def test_run_configs_follow_the_sweep():
  cfg = load_config_file("configs/batch_sweep.py")
  runs = expand(cfg)
  assert [r.train.batch_size for r in runs] == list(cfg.sweep.batch_sizes)
  lrs = [r.train.peak_lr for r in runs]
  assert lrs == sorted(lrs) and max(lrs) <= cfg.sweep.lr_max
  assert runs[3].train.peak_lr == pytest.approx(cfg.sweep.lr_ref)   # batch 16 = batch_ref
  assert all(r.train.stop_loss == pytest.approx(min(cfg.sweep.targets) - 0.05) for r in runs)
  assert "sweep" not in runs[0]
