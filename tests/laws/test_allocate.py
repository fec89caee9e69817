"""Approaches 1, 2 and 3 recover the allocation of a known L(N, D) from synthetic isoFLOP runs."""

import math

import numpy as np
import pytest

from scaling.errors import UserError
from scaling.laws import allocate, forms
from scaling.laws.optimum import chinchilla_allocation

# A Chinchilla-form law, a = β/(α+β) = 0.6 under C = 6ND (Hoffmann 2022 eq. 4).
TRUE = {"E": 1.7, "A": 400.0, "B": 1.1e4, "alpha": 0.3, "beta": 0.45}


def synthetic_points(noise: float = 0.0, seed: int = 0) -> dict:
  """Every size of a common grid at every budget (end points of matched-horizon runs)."""
  rng = np.random.default_rng(seed)
  budgets = np.logspace(15, 18, 7)
  sizes = np.logspace(3, 9, 49)
  rows = []
  for c in budgets:
    n_opt = chinchilla_allocation(TRUE, c)["N_opt"]
    for n in sizes[np.abs(np.log(sizes / n_opt)) < math.log(12)]:
      d = c / (6 * n)
      loss = forms.loss_chinchilla(TRUE, n, d) * math.exp(noise * rng.normal())
      rows.append((n, d, 6 * n * d, loss, c))
  n, d, c, loss, budget = (np.array(v) for v in zip(*rows))
  return {"N": n, "D": d, "C": c, "F": 6 * n, "loss": loss, "budget": budget}


def f_6n(n):
  """FLOPs per token of an N-parameter model, C = 6ND."""
  return 6.0 * np.asarray(n, float)


def test_flop_map_is_exact_on_a_power_law_and_extends_it():
  n = np.array([1e4, 1e5, 1e6])
  f_of = allocate.flop_map(n, 6 * n ** 0.9)
  for q in (3e4, 5e6, 2e3):
    assert f_of(q) == pytest.approx(6 * q ** 0.9, rel=1e-9)


def test_approach3_optimum_matches_the_closed_form():
  for c in (1e16, 1e19):
    n_opt, d_opt, loss = allocate.optimum(TRUE, c, f_6n, (1e4, 1e8))
    ref = chinchilla_allocation(TRUE, c)
    assert n_opt == pytest.approx(ref["N_opt"], rel=1e-4)
    assert d_opt == pytest.approx(ref["D_opt"], rel=1e-4)
    assert loss == pytest.approx(ref["loss"], rel=1e-9)


@pytest.mark.parametrize("noise", [0.0, 0.005])
def test_three_approaches_recover_the_known_allocation(noise):
  pts = synthetic_points(noise)
  true_a = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
  budgets = sorted(set(pts["budget"].tolist()))
  a1 = allocate.approach1(pts, f_6n, 50, 0)
  a2 = allocate.approach2(pts, f_6n, 50, 0)
  a3 = allocate.approach3(allocate.fit_law(pts, 30, 0), f_6n, budgets)
  assert a3["params"]["a"] == pytest.approx(true_a, abs=0.02)
  assert a3["params"]["b"] == pytest.approx(1 - true_a, abs=0.02)
  assert a2["params"]["a"] == pytest.approx(true_a, abs=0.03)
  # The envelope picks among discrete sizes (a factor 1.33 apart): a coarser estimate.
  assert a1["params"]["a"] == pytest.approx(true_a, abs=0.06)
  lo, hi = a3["intervals"]["a"]
  assert lo <= true_a + 0.02 and hi >= true_a - 0.02
  assert not a2["warnings"]


def designed_points(noise: float, seed: int) -> dict:
  """Six sizes per budget centred on each true vertex, a factor 1.4 apart (the designed sweep's
  layout), over 7 budgets spanning 16x, with log-normal noise on the losses."""
  rng = np.random.default_rng(seed)
  rows = []
  for c in np.logspace(15, 15 + math.log10(16), 7):
    n_opt = chinchilla_allocation(TRUE, c)["N_opt"]
    for n in n_opt * 1.4 ** (np.arange(6) - 2.5):
      loss = forms.loss_chinchilla(TRUE, n, c / (6 * n)) * math.exp(noise * rng.normal())
      rows.append((n, c / (6 * n), c, loss, c))
  n, d, c, loss, budget = (np.array(v) for v in zip(*rows))
  return {"N": n, "D": d, "C": c, "F": 6 * n, "loss": loss, "budget": budget}


def test_approach3_resamples_keep_every_budgets_sizes(monkeypatch):
  pts = designed_points(0.01, 0)
  seen = []
  real = allocate.fit.fit_chinchilla

  def spy(n, d, y, **kw):
    seen.append(np.asarray(n) * np.asarray(d))
    return real(n, d, y, **kw)
  monkeypatch.setattr(allocate.fit, "fit_chinchilla", spy)
  allocate.fit_law(pts, 20, 0)
  assert len(seen) == 21   # the central fit, then every resample
  for nd in seen:          # 6 runs at each of the 7 budgets, C = 6ND
    budgets, counts = np.unique(np.round(np.log(6 * nd), 6), return_counts=True)
    assert len(budgets) == 7 and set(counts) == {6}


def test_approach3_interval_covers_the_true_exponent_on_a_noisy_design():
  # Noise 1.5 % (the seed-to-seed scatter measured on the default corpus): the 95 % interval of
  # a holds the true a = 0.6 in at least 9 of 10 replicates.
  true_a = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
  covered, widths = 0, []
  for seed in range(10):
    pts = designed_points(0.015, seed)
    budgets = sorted(set(pts["budget"].tolist()))
    lo, hi = allocate.approach3(allocate.fit_law(pts, 60, seed), f_6n, budgets)["intervals"]["a"]
    covered += lo <= true_a <= hi
    widths.append(hi - lo)
  assert covered >= 9, (covered, widths)
  assert 0.02 < np.median(widths) < 0.6


def test_approach2_warns_when_the_vertex_is_outside_the_sizes():
  pts = synthetic_points()
  c = max(pts["budget"])
  n_opt = chinchilla_allocation(TRUE, c)["N_opt"]
  keep = (pts["budget"] != c) | (pts["N"] < n_opt / 1.5)   # only sizes below the optimum
  res = allocate.approach2({k: v[keep] for k, v in pts.items()}, f_6n, 0, 0)
  assert any(f"C={c:.3g}" in w and ("outside" in w or "lopsided" in w) for w in res["warnings"])


def test_an_approach_without_an_answer_is_a_warning(tmp_path):
  from conftest import fake_run
  from scaling.laws import howbig
  # One size is best at every budget: approach 1 has no envelope to read, and says so.
  for c in (1e12, 2e12, 4e12):
    for n, loss in ((1e4, 3.0), (3e4, 3.2), (1e5, 3.5)):
      fake_run(tmp_path / f"C{c:.0e}-N{n:.0e}", n, loss - 0.1 * np.log2(c / 1e12),
               steps=int(c / (6 * n) / 2048), budget_flop=c, flop_convention="kaplan",
               epochs=1.0)
  out = howbig.fit_allocation(tmp_path, "kaplan", 10, 0)
  assert out["approach1"] is None
  assert any("approach 1 gives no answer" in w for w in out["warnings"])


def test_a_flat_profile_is_no_minimum_not_an_overflow():
  """A parabola with almost no curvature puts its vertex at N ≈ e^(10^9): approach 2 says the
  profile has no minimum (ValueError, a warning upstream) instead of overflowing in exp; a
  log-linear fit whose constant is beyond float range gives an infinite constant."""
  from scaling.laws import approaches, fit
  log_n = np.log([1e4, 2e4, 4e4, 8e4, 1.6e5])
  compute = np.repeat([1e11, 2e11], 5)
  curved = 3.0 + 0.05 * (log_n - math.log(4e4)) ** 2
  flat = 3.0 - 0.01 * log_n + 1e-12 * log_n ** 2
  with pytest.raises(UserError, match="C=2e\\+11: its profile has no minimum"):
    approaches.fit_isoflop(compute, np.tile(np.exp(log_n), 2), np.concatenate([curved, flat]),
                           n_boot=0)
  slope, k = fit.fit_loglinear([1e10, 1e11], [1e200, 1e-200])
  assert slope == pytest.approx(-400.0) and k == math.inf


def test_regime_warning_only_across_the_bigram_loss():
  from scaling.laws.howbig import regime_warning
  fitted = [3.8, 3.6, 3.5, 3.4, 3.25]                 # most above a bigram loss of 3.28
  assert "4 of 5 fitted runs" in regime_warning(fitted, {"C": 1e12, "loss": 3.15}, 3.28)
  assert regime_warning(fitted, {"C": 1e12, "loss": 3.30}, 3.28) is None   # stays above it
  assert regime_warning([3.2, 3.1, 3.0], {"C": 1e12, "loss": 2.9}, 3.28) is None  # fitted below
  assert regime_warning(fitted, {"C": 1e12, "loss": 3.15}, None) is None     # not known


def test_points_are_seed_means_at_the_learning_rate_whose_mean_is_lowest(tmp_path):
  from conftest import fake_run
  # (N, budget): seeds at two learning rates. At N=1e4 the lower LR has the single lowest run
  # (2.90) but the higher mean; the point is the other LR's mean.
  runs = {("a", 1e4, 1e-3): [2.90, 3.30], ("b", 1e4, 2e-3): [3.00, 3.04],
          ("c", 2e4, 1e-3): [3.10, 3.14, 3.12]}
  for (tag, n, lr), losses in runs.items():
    for i, loss in enumerate(losses):
      fake_run(tmp_path / f"{tag}-s{i}", n, loss, budget_flop=1e12, peak_lr=lr, epochs=1.0)
  pts = allocate.read_points(sorted(tmp_path.iterdir()), "kaplan")
  assert list(pts["N"]) == [1e4, 2e4]
  assert pts["loss"] == pytest.approx([3.02, 3.12])
  assert list(pts["n_seeds"]) == [2, 3]
  assert pts["loss_sd"] == pytest.approx([np.std([3.0, 3.04], ddof=1), 0.02])
  # Pooled over the points with several seeds: Σ(n−1)s² / Σ(n−1).
  pooled = math.sqrt((1 * np.var([3.0, 3.04], ddof=1) + 2 * 0.02 ** 2) / 3)
  assert allocate.seed_noise(pts) == pytest.approx(pooled)
  single = allocate.read_points([tmp_path / "a-s0"], "kaplan")
  assert math.isnan(single["loss_sd"][0]) and allocate.seed_noise(single) is None


def test_heldout_optimum_within_the_seeds_noise(tmp_path):
  from conftest import fake_run
  from scaling.laws import howbig
  # Three held-out sizes, two seeds each; the predicted optimum (N=2e4) is 0.01 nats above the
  # best, with a run-to-run σ of 0.02 nats: within 2σ of a difference of two 2-seed means.
  for n, losses in ((1e4, (3.00, 3.04)), (2e4, (3.01, 3.05)), (4e4, (3.20, 3.24))):
    for i, loss in enumerate(losses):
      fake_run(tmp_path / f"N{n:.0e}-s{i}", n, loss, budget_flop=1e13, epochs=1.0)
  pred = {"C": 1e13, "N_opt": 2.1e4, "loss": 3.0}
  held = howbig.heldout_check(sorted(tmp_path.iterdir()), pred, "kaplan")
  sd = np.std([3.0, 3.04], ddof=1)
  assert held["noise_nats"] == pytest.approx(sd) and held["noise_from"] == "held-out seeds"
  assert held["gap_to_best"] == pytest.approx(0.01)
  assert held["gap_sd"] == pytest.approx(sd * math.sqrt(1 / 2 + 1 / 2))
  assert not held["optimum_is_best"] and held["optimum_within_noise"]
  assert held["rel_error"] == pytest.approx(3.03 / 3.0 - 1)
  # One seed each and no noise known: only the best counts.
  one = howbig.heldout_check([tmp_path / "N1e+04-s0", tmp_path / "N2e+04-s0"], pred, "kaplan")
  assert one["gap_sd"] is None and not one["optimum_within_noise"]
  # … unless the fitted points' seeds give the noise.
  fitted = howbig.heldout_check([tmp_path / "N1e+04-s0", tmp_path / "N2e+04-s0"], pred,
                                "kaplan", fitted_noise=0.05)
  assert fitted["noise_from"] == "fitted points' seeds" and fitted["optimum_within_noise"]


def test_the_answer_states_the_fitted_floor_against_a_known_entropy_rate(tmp_path):
  """Runs of a known L(N, D) whose irreducible term is the corpus's entropy rate (as on the
  generated corpus): approach 3's E recovers it within 2 %, the loss frontier's (fitted to the 4
  budgets' minima only) within 5 %, and the answer says the frontier's E, its interval, the best
  loss and H."""
  from conftest import fake_run
  from scaling.laws import howbig, sweepfit
  pts = synthetic_points(noise=0.002, seed=1)
  budgets = sorted(set(pts["budget"]))[::2]            # 4 budgets, every other size: 36 runs
  keep = np.isin(pts["budget"], budgets) & (np.arange(pts["N"].size) % 2 == 0)
  pts = {k: v[keep] for k, v in pts.items()}
  for i, (n, c, loss) in enumerate(zip(pts["N"], pts["budget"], pts["loss"])):
    fake_run(tmp_path / f"C{c:.1e}-{i}", int(n), float(loss), steps=50,
             batch=int(round(c / (6 * int(n)) / 50)), budget_flop=float(c),
             flop_convention="kaplan", epochs=1.0, entropy_rate=TRUE["E"])
  doc = sweepfit.fit_isoflop_sweep(str(tmp_path), n_boot=20)
  floor = doc["headline"]["floor"]
  assert floor["entropy_rate"] == TRUE["E"] and floor["best_loss"] == pytest.approx(
      min(pts["loss"]))
  assert doc["fits"]["allocation"]["approach3"]["params"]["E"] == pytest.approx(TRUE["E"],
                                                                                rel=0.02)
  assert floor["E_from"] == "the loss frontier"
  assert floor["E"] == pytest.approx(TRUE["E"], rel=0.05)
  lo, hi = floor["E_interval"]
  assert lo <= floor["E"] <= hi
  line = next(x for x in howbig.answer_lines(doc["headline"]) if x.startswith("irreducible"))
  assert f"H = {TRUE['E']:.3f}" in line and f"E = {floor['E']:.3f}" in line


def test_the_floor_line_says_when_e_lies_below_the_true_floor():
  from scaling.laws.howbig import floor_line
  below = floor_line({"E": 0.1, "E_interval": [0.0, 0.5], "best_loss": 1.1, "entropy_rate": 0.72})
  assert "E − H = -0.620" in below and "do not determine" in below
  around = floor_line({"E": 0.7, "E_interval": [0.5, 0.9], "best_loss": 1.1, "entropy_rate": 0.72})
  assert "do not determine" not in around
  text = floor_line({"E": 0.7, "E_interval": [0.5, 0.9], "best_loss": 1.1, "entropy_rate": None})
  assert "unknown: real text" in text


def test_thin_and_minimum_less_budgets_are_left_out_and_named():
  """Approach 2 on points from a known Chinchilla law: budgets with one or two sizes, or a
  profile that only falls, are left out with their reason; the others give the law's a."""
  from scaling.laws import approaches
  pts = synthetic_points()
  budgets = sorted(set(pts["budget"].tolist()))
  full = approaches.fit_isoflop(pts["budget"], pts["N"], pts["loss"], n_boot=0)
  extra_c = [budgets[-1] * 3, budgets[-1] * 6, budgets[-1] * 12]
  n_opt = [chinchilla_allocation(TRUE, c)["N_opt"] for c in extra_c]
  add_c = [extra_c[0], extra_c[1], extra_c[1]] + [extra_c[2]] * 4
  add_n = [n_opt[0], n_opt[1], 2 * n_opt[1]] + [n_opt[2] * f for f in (0.05, 0.1, 0.2, 0.4)]
  add_l = [float(forms.loss_chinchilla(TRUE, n, c / (6 * n))) for n, c in zip(add_n[:3], add_c)]
  add_l += [3.0, 2.99, 2.95, 2.8]       # falls ever faster in log N: concave, no minimum
  res = approaches.fit_isoflop(np.concatenate([pts["budget"], add_c]),
                               np.concatenate([pts["N"], add_n]),
                               np.concatenate([pts["loss"], add_l]), n_boot=0)
  reasons = {round(b["C"] / budgets[-1]): b["reason"] for b in res["left_out"]}
  assert reasons.keys() == {3, 6, 12}
  assert "1 model size," in reasons[3] and "2 model sizes" in reasons[6]
  assert "no minimum" in reasons[12]
  assert res["budgets"] == full["budgets"] and res["params"]["a"] == full["params"]["a"]
  assert abs(res["params"]["a"] - chinchilla_allocation(TRUE, 1e20)["a"]) < 0.05


def test_budget_groups_are_recorded_and_unsupported_intervals_flagged():
  from scaling.laws import approaches
  pts = synthetic_points(noise=0.001)
  rng = np.random.default_rng(0)
  jittered = pts["budget"] * np.exp(rng.uniform(-0.1, 0.1, pts["budget"].size))
  res = approaches.fit_isoflop(jittered, pts["N"], pts["loss"], n_boot=100, tolerance=0.25)
  groups = res["budget_groups"]
  assert [g["C"] for g in groups] == pytest.approx(sorted(set(pts["budget"].tolist())), rel=0.1)
  assert sum(g["points"] for g in groups) == pts["N"].size
  assert all(g["C_range"][0] <= g["C"] <= g["C_range"][1] for g in groups)
  assert res["flags"] == []                        # clean points: intervals the data supports
  # 5 % noise on profiles whose depth is ~1 %: the parabolas say little, and the flags say so.
  noisy = synthetic_points(noise=0.05, seed=3)
  res = approaches.fit_isoflop(noisy["budget"], noisy["N"], noisy["loss"], n_boot=100)
  assert any("spans more than a factor 1000" in f or "wider than these points" in f
             for f in res["flags"]), res["flags"]
