"""The batch-size sweep analysis against synthetic runs that obey McCandlish's hyperbola."""

import json

import numpy as np
import pytest

from scaling.config.load import load_config_file
from scaling.experiments import batchsweep
from scaling.experiments import expand as expand_mod
from scaling.experiments.expand import expand

B_STAR, ALPHA_B = 3e6, 0.3   # B_crit(L) = B*/L^(1/α_B), tokens


def _write_run(folder, batch_tokens, n_ctx=64, lr_penalty=1.0, peak_lr=1e-3, s_scale=40,
               l_end=3.5):
  # Loss at step s solves s = S_min(L)·(1 + B_crit(L)/B)·lr_penalty, S_min(L) = s_scale·(6 − L)²;
  # the online estimates read B_simple(L) = B_crit(L): per-step |G|² = 1, tr(Σ) = B_crit(L).
  grid_l = np.linspace(5.9, l_end, 2000)
  s_of_l = s_scale * (6 - grid_l) ** 2 * (1 + B_STAR / grid_l ** (1 / ALPHA_B) / batch_tokens)
  s_of_l = s_of_l * lr_penalty
  steps = np.arange(1, int(s_of_l[-1]))
  loss = np.interp(steps, s_of_l, grid_l)
  folder.mkdir(parents=True)
  truth = B_STAR / loss ** (1 / ALPHA_B)
  lines = [json.dumps({"step": int(s), "tokens": int(s * batch_tokens), "loss": float(l),
                       "b_simple_tokens": float(b), "gns_g2": 1.0, "gns_trace": float(b),
                       "gns_g2_p": 2.0, "gns_trace_p": float(b)})
           for s, l, b in zip(steps, loss, truth)]
  (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
  (folder / "summary.json").write_text(json.dumps(
      {"batch_tokens": batch_tokens, "batch_seqs": batch_tokens // n_ctx, "peak_lr": peak_lr}))


def test_analysis_recovers_bcrit_law(tmp_path):
  for b in 64 * 2 ** np.arange(8):
    _write_run(tmp_path / f"bs{b // 64:05d}", int(b), l_end=3.7)
  targets = [5.0, 4.7, 4.4, 4.1, 3.8]
  result = batchsweep.analyze(tmp_path, targets, window_tokens=1, n_boot=200)
  for row in result["targets"]:
    truth = B_STAR / row["target_loss"] ** (1 / ALPHA_B)
    assert row["valid"]
    assert row["B_crit"] == pytest.approx(truth, rel=0.05)
    assert row["S_min"] == pytest.approx(40 * (6 - row["target_loss"]) ** 2, rel=0.05)
    assert row["ratio_over_window"] == pytest.approx(1.0, rel=0.05)
    assert row["ratio_over_precond"] == pytest.approx(2.0, rel=0.05)   # tr(PΣ)/GᵀPG = B/2
    assert abs(row["online_window_trend"]) < 0.02     # the same at every batch size
  assert result["bcrit_law"]["params"]["alpha_B"] == pytest.approx(ALPHA_B, rel=0.05)
  table = batchsweep.format_table(result)
  assert "| 5.000 | 8 |" in table and "α_B" in table
  batchsweep.plot(result, tmp_path / "f.png")
  assert (tmp_path / "f.png").stat().st_size > 10_000


def test_the_best_lr_per_batch_is_found_and_its_exponent_fitted(tmp_path):
  """Runs at LR multipliers ×½, ×1, ×2 of a rule lr ∝ B^0.25, where the true best LR grows as
  B^0.5 (steps ×(1 + ln²(lr/lr_opt)) off it): the grid's best follows the truth, S at each target
  is the best LR's, the exponent is 0.5, and the batches whose best sits at an edge are widened."""
  lr_rule = lambda b: 1e-3 * (b / 1024) ** 0.25
  lr_opt = lambda b: 1.1e-3 * (b / 1024) ** 0.5      # off the grid points: no ties
  for b in 64 * 2 ** np.arange(8):
    for m in (0.5, 1.0, 2.0):
      lr = lr_rule(b) * m
      _write_run(tmp_path / expand_mod.bsweep_run_name(int(b) // 64, m), int(b),
                 lr_penalty=1 + np.log(lr / lr_opt(b)) ** 2, peak_lr=lr, s_scale=4,
                 l_end=4.1)
  result = batchsweep.analyze(tmp_path, [5.0, 4.6, 4.2], window_tokens=1, n_boot=50)
  best = result["best_lr"]
  for b_tokens, v in best.items():
    b = int(b_tokens)
    nearest = min((0.5, 1.0, 2.0), key=lambda m: abs(np.log(lr_rule(b) * m / lr_opt(b))))
    assert v["lr_multiplier"] == nearest
  # B = 1024 tokens: rule = truth (×1, interior); B = 64: truth is ×½ (edge); B = 8192: ×2 (edge).
  assert best["1024"]["edge"] is None and best["64"]["edge"] == "low"
  assert best["8192"]["edge"] == "high"
  assert batchsweep.grid_extensions(best, 64)[1] == [0.25]
  assert batchsweep.grid_extensions(best, 64)[128] == [4.0]
  # Only interior points count: here every best but B = 1024's and 2048's is at an edge.
  assert result["lr_scaling"] is None or result["lr_scaling"]["n_batch_sizes"] < 8
  # The grid widened until no best sits at an edge: the exponent of the truth, to grid resolution.
  for b in 64 * 2 ** np.arange(8):
    for m in (0.125, 0.25, 4.0, 8.0):
      lr = lr_rule(b) * m
      _write_run(tmp_path / expand_mod.bsweep_run_name(int(b) // 64, m), int(b),
                 lr_penalty=1 + np.log(lr / lr_opt(b)) ** 2, peak_lr=lr, s_scale=4,
                 l_end=4.1)
  result = batchsweep.analyze(tmp_path, [5.0, 4.6, 4.2], window_tokens=1, n_boot=50)
  assert result["lr_scaling"]["n_batch_sizes"] == 8
  assert result["lr_scaling"]["exponent"] == pytest.approx(0.5, abs=0.08)
  row = result["targets"][1]
  assert row["lr"]["1024"] == pytest.approx(1e-3)
  assert row["B_crit"] == pytest.approx(B_STAR / 4.6 ** (1 / ALPHA_B), rel=0.2)
  assert "best LR ∝ B^e" in batchsweep.format_table(result)


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
  grid = cfg.sweep.lr_multipliers
  assert [r.train.batch_size for r in runs] == [b for b in cfg.sweep.batch_sizes for _ in grid]
  at_rule = [r for r in runs if "-x" not in r.run_dir.rsplit("/", 1)[-1]]
  lrs = [r.train.peak_lr for r in at_rule]
  assert lrs == sorted(lrs) and max(lrs) <= cfg.sweep.lr_max
  assert at_rule[3].train.peak_lr == pytest.approx(cfg.sweep.lr_ref)   # batch 16 = batch_ref
  half = next(r for r in runs if r.run_dir.endswith("bs00016-x0.5"))
  assert half.train.peak_lr == pytest.approx(cfg.sweep.lr_ref / 2)
  # The warm-up is the same number of tokens at every batch (whole steps, at least one).
  for r in runs:
    assert r.train.warmup_steps == max(1, -(-cfg.sweep.warmup_tokens // (
        r.train.batch_size * r.model.n_ctx)))
  assert all(r.train.stop_loss == pytest.approx(min(cfg.sweep.targets) - 0.05) for r in runs)
  assert "sweep" not in runs[0]
  assert expand_mod.parse_bsweep_name("bs00016-x0.5") == (16, 0.5)
  assert expand_mod.parse_bsweep_name("bs00016") == (16, 1.0)
  assert expand_mod.parse_bsweep_name("L2-D64") is None
