"""Learning-rate schedules (hand computations and optax's cosine) and WSD branches."""


import numpy as np
import optax
import pytest
from conftest import read_metrics

from scaling.train import loop as trainlib
from scaling.train import optim
from scaling.train import summary as summarylib
from scaling.config.spec import validate


def test_wsd_learning_rates_by_hand():
  # 100 steps, 10 warm-up, cooldown = last 20 (decay_frac 0.2), peak 1e-3, floor 1e-4.
  s = optim.Schedule("wsd", 1e-3, 100, 10, 0.1, 20, "1-sqrt")
  assert s.decay_start == 80
  assert s.lr(0) == 0.0
  assert s.lr(5) == pytest.approx(0.5e-3)             # 5/10 of the way up
  assert s.lr(10) == s.lr(50) == s.lr(80) == pytest.approx(1e-3)   # stable
  # step 85: x = 5/20 = 0.25, 1 − √0.25 = 0.5 → 1e-4 + 0.9e-3·0.5
  assert s.lr(85) == pytest.approx(1e-4 + 0.9e-3 * 0.5)
  assert s.lr(100) == pytest.approx(1e-4)
  lin = optim.Schedule("wsd", 1e-3, 100, 10, 0.0, 20, "linear")
  assert lin.lr(90) == pytest.approx(0.5e-3)           # halfway down a linear cooldown to 0


def test_wsd_with_an_rsqrt_stable_phase_by_hand():
  # peak 1e-3 until step 40, then 1e-3·√(40/t); cooldown over the last 40 of 200 steps from the
  # stable rate at its start, √(40/160) = 0.5 → 5e-4, to 0.1 of that.
  s = optim.Schedule("wsd", 1e-3, 200, 10, 0.1, 40, "1-sqrt", stable_ref_steps=40)
  assert s.lr(5) == pytest.approx(0.5e-3)
  assert s.lr(10) == s.lr(40) == pytest.approx(1e-3)
  assert s.lr(90) == pytest.approx(1e-3 * 2 / 3)        # √(40/90) = 2/3
  assert s.lr(160) == pytest.approx(0.5e-3)
  assert s.lr(170) == pytest.approx(0.5e-4 + 0.45e-3 * (1 - 0.5))   # x = 10/40, 1 − √x = 0.5
  assert s.lr(200) == pytest.approx(0.5e-4)
  assert all(s.lr(t + 1) <= s.lr(t) for t in range(10, 200))
  # Still one run for every horizon until its cooldown (branches share the stable phase).
  short = optim.Schedule("wsd", 1e-3, 100, 10, 0.1, 20, "1-sqrt", stable_ref_steps=40)
  assert all(s.lr(t) == short.lr(t) for t in range(short.decay_start + 1))
  # A run that ends before ref is the flat WSD run.
  flat = optim.Schedule("wsd", 1e-3, 50, 10, 0.1, 10)
  assert all(flat.lr(t) == optim.Schedule("wsd", 1e-3, 50, 10, 0.1, 10, "1-sqrt", 50).lr(t)
             for t in range(51))


def test_cosine_matches_optax():
  ours = optim.Schedule("cosine", 3e-3, 200, 15, 0.1)
  ref = optax.warmup_cosine_decay_schedule(0.0, 3e-3, 15, 200, 3e-4)
  np.testing.assert_allclose([ours.lr(t) for t in range(0, 220, 7)],
                             [float(ref(t)) for t in range(0, 220, 7)], rtol=1e-5, atol=1e-9)


def test_wsd_is_the_same_for_every_horizon_until_its_cooldown():
  long = optim.Schedule("wsd", 1e-3, 400, 10, 0.1, 80)
  short = optim.Schedule("wsd", 1e-3, 100, 10, 0.1, 20)
  assert all(long.lr(t) == short.lr(t) for t in range(short.decay_start + 1))


def test_a_branch_equals_the_full_run(small_cfg, tmp_path):
  """A WSD branch from a longer run's checkpoint at its cooldown start retraces, step for step,
  a full WSD run of the branch's length; metrics before the branch point are the source's."""
  common = {"train.schedule": "wsd", "train.warmup_steps": 3, "train.decay_frac": 0.25,
            "mesh.num_devices": 2, "gns.micro_batches": 1, "checkpoint.every": 100}
  stable = small_cfg(**common, **{"train.steps": 24, "checkpoint.keep_steps": "9"})
  stable.run_dir = str(tmp_path / "stable")
  trainlib.train(validate(stable), verbose=False)
  full = small_cfg(**common, **{"train.steps": 12})
  full.run_dir = str(tmp_path / "full")
  trainlib.train(validate(full), verbose=False)
  branch = small_cfg(**common, **{"train.steps": 12, "train.init_from": f"{stable.run_dir}@9"})
  branch.run_dir = str(tmp_path / "branch")
  summary = trainlib.train(validate(branch), verbose=False)
  a, b = read_metrics(full.run_dir), read_metrics(branch.run_dir)
  assert [r["step"] for r in b] == list(range(1, 13))
  np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-5)
  np.testing.assert_allclose([r["lr"] for r in b], [r["lr"] for r in a], rtol=1e-6)
  assert summary.final_eval_loss == pytest.approx(
      summarylib.read(full.run_dir).final_eval_loss, rel=1e-5)
  assert summary.branched_from == f"{stable.run_dir}@9"
  # The stable run kept step 9 beside its latest checkpoint.
  kept = sorted(int(p.name) for p in (tmp_path / "stable" / "checkpoints").iterdir()
                if p.name.isdigit())
  assert 9 in kept and 24 in kept


def test_a_branch_from_a_missing_step_is_one_clear_error(small_cfg, tmp_path):
  src = small_cfg(**{"train.steps": 6, "checkpoint.every": 100})
  src.run_dir = str(tmp_path / "src")
  trainlib.train(validate(src), verbose=False)
  bad = small_cfg(**{"train.steps": 10, "train.init_from": f"{src.run_dir}@4"})
  bad.run_dir = str(tmp_path / "bad")
  with pytest.raises(trainlib.UserError, match="no checkpoint at step 4.*keep_steps"):
    trainlib.train(validate(bad), verbose=False)
  other = small_cfg(**{"train.steps": 10, "train.batch_size": 16,
                       "train.init_from": f"{src.run_dir}@6"})
  other.run_dir = str(tmp_path / "other")
  with pytest.raises(trainlib.UserError, match="train.batch_size is 16 here but 8"):
    trainlib.train(validate(other), verbose=False)
