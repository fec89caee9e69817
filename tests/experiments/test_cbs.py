"""Branched critical batch (scaling/experiments/cbs.py) and the B_crit(L) vs B_crit(D) comparison,
against synthetic forks from McCandlish's model with a known B_crit, and a fork trained for real."""

import json

import numpy as np
import pytest
from conftest import read_metrics

from scaling.config.load import load_config_file
from scaling.experiments import cbs
from scaling.laws import batchlaw
from scaling.train import loop as trainlib
from scaling.config.spec import validate


def _fork_curve(batch_tokens, b_crit, branch_tokens=2 ** 18, n_eval=8, noise=0.0, rng=None,
                small_penalty=0.0):
  """A fork's held-out loss: L(t) = 5 − 0.3·ln(1 + t_eff/2e4) with the tokens it is worth
  t_eff = t/(1 + B/B_crit) (McCandlish 2018 eq. 2.11: E = E_min(1 + B/B_crit)), and optionally
  slower still at small batches (÷(1 + (small_penalty/B)²): an LR too high for them)."""
  steps = branch_tokens // batch_tokens
  tokens = np.arange(1, n_eval + 1) * (steps // n_eval) * batch_tokens
  slow = 1 + (small_penalty / batch_tokens) ** 2
  loss = 5 - 0.3 * np.log1p(tokens / (1 + batch_tokens / b_crit) / slow / 2e4)
  if noise:
    loss = loss + rng.normal(0, noise, loss.shape)
  return tokens.astype(float), loss


def test_tokens_to_reach_interpolates_between_evaluations():
  tokens, loss = np.array([100.0, 200.0, 300.0]), np.array([4.8, 4.6, 4.5])
  assert cbs.tokens_to_reach(tokens, loss, 4.7) == pytest.approx(100 * 2 ** 0.5)  # log tokens
  assert cbs.tokens_to_reach(tokens, loss, 4.9) == 100.0        # below from the first: a bound
  assert cbs.tokens_to_reach(tokens, loss, 4.4) is None
  # A fork that dips below, rises (a new batch and LR) and comes back: the last entry counts.
  bumpy = np.array([4.65, 4.75, 4.6])
  assert cbs.tokens_to_reach(tokens, bumpy, 4.7) == pytest.approx(200 * 1.5 ** (1 / 3))


def test_point_cbs_recovers_a_known_critical_batch():
  b_crit = 3000.0
  batches = [256 * 2 ** i for i in range(7)]
  curves = {b: [_fork_curve(b, b_crit)] * 2 for b in batches}
  r = cbs.point_cbs(curves, tolerance=0.02)
  assert r["B_crit"] == pytest.approx(b_crit, rel=0.05)
  # Tolerance CBS by hand: the largest batch whose final loss is within 0.02 of the best (here
  # the smallest batch's).
  final = {b: _fork_curve(b, b_crit)[1][-1] for b in batches}
  assert min(final, key=final.get) == 256
  assert r["cbs_tolerance"] == max(b for b in batches if final[b] <= final[256] + 0.02)
  assert not r["cbs_tolerance_censored"]


def test_the_fit_starts_at_the_most_efficient_batch():
  """Small batches slowed by an LR that does not suit them (a U in E(B)): fitted from the most
  token-efficient batch up, B_crit is still the truth; the tolerance reading counts from the best
  final loss, not the smallest batch's."""
  b_crit = 4000.0
  batches = [128 * 2 ** i for i in range(8)]
  curves = {b: [_fork_curve(b, b_crit, small_penalty=256.0)] for b in batches}
  r = cbs.point_cbs(curves, 0.02)
  assert r["fit_batches"][0] > batches[0]
  assert r["B_crit"] == pytest.approx(b_crit, rel=0.15)
  final = r["final_loss"]
  assert r["cbs_tolerance"] == max(b for b in batches if final[b] <= min(final.values()) + 0.02)


def test_bootstrap_over_seeds_covers_the_truth():
  rng = np.random.default_rng(0)
  b_crit = 2000.0
  curves = {b: [_fork_curve(b, b_crit, noise=0.004, rng=rng) for _ in range(3)]
            for b in [256 * 2 ** i for i in range(7)]}
  r = cbs.point_cbs(curves, 0.02)
  ci = cbs.bootstrap_point(curves, 0.02, n_boot=100)["B_crit_ci"]
  assert ci[0] < r["B_crit"] < ci[1]
  assert ci[0] < b_crit * 1.3 and ci[1] > b_crit / 1.3


def test_the_law_that_generated_the_points_wins_on_held_out_sizes():
  """B_crit = 0.5·D^0.6 at every size, with a size-dependent loss at each D: the tokens law
  predicts a left-out size exactly; the loss law cannot (and the reverse for B*/L^(1/α))."""
  d = np.array([2e5, 5e5, 1e6, 2e6, 4e6])
  sizes = {f"s{k}": [{"tokens": x, "train_loss": 3 + 10 * k ** -0.5 * x ** -0.1,
                      "B_crit": 0.5 * x ** 0.6} for x in d] for k in (1, 2, 4)}
  out = batchlaw.compare(sizes)
  assert out["laws"]["tokens"]["fit"]["exponent"] == pytest.approx(0.6)
  assert out["laws"]["tokens"]["heldout_rms_log_error"] < 1e-9
  assert out["laws"]["loss"]["heldout_rms_log_error"] > 0.05
  assert out["better_heldout"] == "tokens"
  for rows in sizes.values():
    for r in rows:
      r["B_crit"] = 2e8 / r["train_loss"] ** (1 / 0.21)      # Kaplan 2020 eq. 1.4
  out = batchlaw.compare(sizes)
  assert out["laws"]["loss"]["alpha_B"] == pytest.approx(0.21)
  assert out["better_heldout"] == "loss"


def test_run_layout_and_learning_rates():
  cfg = load_config_file("configs/cbs_branch.py")
  runs = cbs.cbs_runs(cfg)
  s = cfg.sweep
  n_forks = len(s.branch_points) * len(s.batch_sizes) * len(s.seeds)
  assert len(runs) == len(s.models) * (1 + n_forks)
  source = runs[0]
  assert source.run_dir.endswith("L2-D64-H1/source") and source.train.min_lr_ratio == 1.0
  assert source.checkpoint.keep_steps == ",".join(map(str, s.points_steps))
  assert all(p % source.eval.every == 0 for p in s.points_steps)   # evaluated at every point
  forks = [r for r in runs if r.train.init_from.startswith(source.run_dir + "@")]
  assert len(forks) == n_forks and all(r.train.init_mode == "fork" for r in forks)
  for r in forks:
    point = int(r.train.init_from.rsplit("@", 1)[1])
    before = point * s.source_batch * r.model.n_ctx         # tokens the source trained
    assert r.train.steps * r.train.batch_size * r.model.n_ctx == pytest.approx(
        s.branch_fraction * before, rel=0.1)
    assert r.eval.batches == s.fork_eval_batches and source.eval.batches == cfg.eval.batches
    assert r.train.peak_lr == pytest.approx(
        s.lr_ref * (r.train.batch_size / s.batch_ref) ** s.lr_exponent)
  cfg.sweep.branch_points = [300]
  with pytest.raises(cbs.UserError, match="not in sweep.points_steps"):
    cbs.cbs_runs(cfg)


def test_a_fork_starts_from_the_source_state_at_any_batch(small_cfg, tmp_path):
  """A fork at another batch and seed starts from the source's parameters: at a learning rate too
  small to move them its held-out loss is the source's at the branch step; it counts its own
  steps and tokens from 0."""
  src = small_cfg(**{"train.steps": 6, "eval.every": 6, "checkpoint.every": 100,
                     "checkpoint.keep_steps": "6"})
  src.run_dir = str(tmp_path / "src")
  source_summary = trainlib.train(validate(src), verbose=False)
  fork = small_cfg(**{"train.steps": 2, "train.batch_size": 16, "seed": 5,
                      "train.peak_lr": 1e-12, "train.warmup_steps": 1,
                      "train.init_from": f"{src.run_dir}@6", "train.init_mode": "fork"})
  fork.run_dir = str(tmp_path / "fork")
  summary = trainlib.train(validate(fork), verbose=False)
  assert summary.final_eval_loss == pytest.approx(source_summary.final_eval_loss, rel=1e-5)
  recs = read_metrics(fork.run_dir)
  assert [r["step"] for r in recs] == [1, 2]
  assert recs[-1]["tokens"] == 2 * 16 * fork.model.n_ctx
  assert summary.init_mode == "fork"
  assert json.loads((tmp_path / "fork" / "config.json").read_text())["seed"] == 5
  other = small_cfg(**{"train.steps": 2, "model.d_model": 64, "train.init_mode": "fork",
                       "train.init_from": f"{src.run_dir}@6"})
  other.run_dir = str(tmp_path / "other")
  with pytest.raises(trainlib.UserError, match="model is .* keeps its source's model"):
    trainlib.train(validate(other), verbose=False)


def test_planning_takes_a_measured_batch_law(tmp_path):
  """--batch-law: B_crit(L) from a bsweep.json or a cbs.json replaces Kaplan's in the allocation
  (B = B*/L^(1/α_B) at the allocation's loss, by hand)."""
  from scaling.laws import commands
  (tmp_path / "bs").mkdir()
  (tmp_path / "bs" / "bsweep.json").write_text(json.dumps(
      {"bcrit_law": {"params": {"alpha_B": 0.13, "B_star": 2.2e8}}}))
  (tmp_path / "cbs.json").write_text(json.dumps(
      {"laws": {"laws": {"loss": {"alpha_B": 0.5, "fit": {"coef": 1e6, "exponent": -2.0}}}}}))
  assert batchlaw.load_loss_law(str(tmp_path / "bs")) == {"alpha_B": 0.13, "B_star": 2.2e8}
  assert batchlaw.load_loss_law(str(tmp_path / "cbs.json")) == {"alpha_B": 0.5, "B_star": 1e6}
  out = commands.predict_command("kaplan2020", None, None, 1e21, None, str(tmp_path / "bs"))
  a = out["allocation"]
  assert a["B_crit_tokens"] == pytest.approx(2.2e8 / a["loss"] ** (1 / 0.13), rel=1e-6)
  (tmp_path / "bad.json").write_text("{}")
  with pytest.raises(trainlib.UserError, match="neither"):
    batchlaw.load_loss_law(str(tmp_path / "bad.json"))


def test_analysis_of_a_directory_of_forks(tmp_path):
  """analyze() over a size directory as scaling cbs writes it (a source, forks at one point from
  _fork_curve): the point's tokens and online estimate come from the source, B_crit from the
  forks, and the table and figure are written."""
  size = tmp_path / "L2-D64-H1"
  src = size / "source"
  src.mkdir(parents=True)
  recs = [{"step": s, "tokens": s * 1024, "loss": 6 - s / 100, "gns_g2": 1.0, "gns_trace": 1500.0}
          for s in range(1, 401)]
  (src / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
  (src / "summary.json").write_text(json.dumps({"batch_tokens": 1024, "tokens": 400 * 1024}))
  for b in [256 * 2 ** i for i in range(6)]:
    tokens, loss = _fork_curve(b, 3000.0, branch_tokens=2 ** 17, n_eval=4)
    fork = size / "p000100" / f"bs{b // 64:05d}-s1"
    fork.mkdir(parents=True)
    (fork / "metrics.jsonl").write_text("\n".join(json.dumps(
        {"step": i + 1, "tokens": float(t), "loss": float(l), "eval_loss": float(l)})
        for i, (t, l) in enumerate(zip(tokens, loss))) + "\n")
    (fork / "summary.json").write_text(json.dumps({"batch_tokens": b, "tokens": float(tokens[-1])}))
  result = cbs.analyze(tmp_path, tolerance=0.02, smooth_tokens=4096, n_boot=20)
  row = result["sizes"]["L2-D64-H1"][0]
  assert row["tokens"] == 100 * 1024 and row["train_loss"] == pytest.approx(5.0, abs=0.01)
  assert row["online_window_tokens"] == pytest.approx(1500.0)
  assert row["B_crit"] == pytest.approx(3000.0, rel=0.15)
  assert row["ratio_over_window"] == pytest.approx(row["B_crit"] / 1500.0)
  assert "| L2-D64-H1 | 100 |" in cbs.format_table(result)
  cbs.plot(result, tmp_path / "cbs.png")
  assert (tmp_path / "cbs.png").stat().st_size > 10_000
