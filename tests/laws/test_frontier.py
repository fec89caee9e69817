"""The loss frontier (scaling/laws/frontier.py) on isoFLOP profiles of a known L(N, D): its
constants against the closed form, its prediction past the sweep against the law's own minimum
(found numerically, not by parabolas), and why only the upper budgets are fitted."""

import math

import numpy as np
import pytest
from scipy import optimize

from scaling.errors import UserError
from scaling.laws import frontier

LAW = {"E": 1.2, "A": 400.0, "alpha": 0.34, "B": 1500.0, "beta": 0.28}
BUDGETS = [1e17 * 2 ** (k / 2) for k in range(7)]


def loss(n, c, kink=0.0, c_kink=1.0):
  d = c / (6.0 * n)
  base = LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]
  return base + kink / (1.0 + (c / c_kink) ** 4)


def true_minimum(c, **kink):
  res = optimize.minimize_scalar(lambda x: loss(math.exp(x), c, **kink), bounds=(5, 40),
                                 method="bounded", options={"xatol": 1e-10})
  return float(res.fun), math.exp(res.x)


def sweep(noise=0.0, seed=0, **kink):
  """Six sizes per budget, a factor 1.5 apart, centred on the true optimum."""
  rng = np.random.default_rng(seed)
  cs, ns, ys = [], [], []
  for c in BUDGETS:
    _, n_opt = true_minimum(c, **kink)
    for j in range(6):
      n = n_opt * 1.5 ** (j - 2.5)
      cs.append(c)
      ns.append(n)
      ys.append(loss(n, c, **kink) + noise * rng.standard_normal())
  return np.array(cs), np.array(ns), np.array(ys)


def test_the_frontier_of_the_chinchilla_form_is_its_closed_form():
  """For E + A/N^α + B/D^β at C = 6ND the minimum over N is E + G·C^−αβ/(α+β): the fit finds E
  and γ = αβ/(α+β) from the parabola minima, and predicts the law's minimum at 3× the largest
  budget within 0.1 %."""
  fr = frontier.fit_frontier(*sweep(), n_boot=0)
  gamma = LAW["alpha"] * LAW["beta"] / (LAW["alpha"] + LAW["beta"])
  assert fr["params"]["gamma"] == pytest.approx(gamma, rel=0.03)
  assert fr["params"]["E"] == pytest.approx(LAW["E"], abs=0.03)
  assert fr["budgets"] == BUDGETS[2:]          # all but the two lowest
  c = 3 * BUDGETS[-1]
  assert frontier.predict(fr["params"], c) == pytest.approx(true_minimum(c)[0], rel=1e-3)
  # The parabola minima are the profiles' minima to within the parabola's approximation.
  for c_b, m in zip(fr["budgets"], fr["minima"]):
    assert m == pytest.approx(true_minimum(c_b)[0], rel=2e-3)


def test_a_change_of_phase_at_the_lowest_budgets_does_not_bend_the_prediction():
  """A penalty that fades with C from the lowest budget on (a designed sweep starts its budgets
  just past the change of phase) bends a law fitted over every budget: it misses the minimum at
  3× the largest budget by more than 2 %; fitted without the two lowest budgets, which the
  penalty touches most, by less than 1 %."""
  kink = {"kink": 0.3, "c_kink": BUDGETS[0]}
  cs, ns, ys = sweep(**kink)
  fr = frontier.fit_frontier(cs, ns, ys, n_boot=0)
  assert fr["budgets"] == BUDGETS[2:]
  c = 3 * BUDGETS[-1]
  truth = true_minimum(c, **kink)[0]
  assert frontier.predict(fr["params"], c) == pytest.approx(truth, rel=0.01)
  every = frontier.fit_law(fr["all_budgets"], fr["all_minima"])
  assert abs(frontier.predict(every, c) / truth - 1) > 0.02


def test_the_interval_covers_the_truth_under_noise():
  """With run-to-run noise (σ = 0.005 nats), the bootstrap interval at 3× the largest budget
  holds the law's minimum in most of 12 noisy sweeps and is narrower than 5 %."""
  c = 3 * BUDGETS[-1]
  truth = true_minimum(c)[0]
  hits, widths = 0, []
  for seed in range(12):
    fr = frontier.fit_frontier(*sweep(noise=0.005, seed=seed), n_boot=50, seed=seed)
    value, (lo, hi) = frontier.at(fr, c)
    hits += lo <= truth <= hi
    widths.append((hi - lo) / value)
  assert hits >= 9 and max(widths) < 0.05


def test_too_few_budgets_with_a_minimum_is_one_clear_error():
  cs, ns, ys = sweep()
  keep = cs <= BUDGETS[2]
  with pytest.raises(UserError, match="needs 4 budgets whose profile has a minimum, this sweep "
                                      "has 3"):
    frontier.fit_frontier(cs[keep], ns[keep], ys[keep], n_boot=0)


def test_a_sweeps_answer_and_report_take_the_loss_from_the_frontier(tmp_path, capsys):
  """End to end on run folders of the known law (6 budgets, 6 sizes each, held-out runs at 3×):
  the held-out prediction and the target come from the frontier (approach 3's loss kept beside),
  the prediction is the law's minimum within 0.5 %, and the report shows the frontier."""
  from conftest import fake_run
  from scaling.cli import main as cli_main
  sweep = tmp_path / "sweep"
  held_c = 3 * BUDGETS[5]
  for c in (*BUDGETS[:6], held_c):
    _, n_opt = true_minimum(c)
    for j in range(6 if c != held_c else 3):
      n = n_opt * 1.5 ** (j - (2.5 if c != held_c else 1))
      d = c / (6 * n)
      fake_run(sweep / ("heldout" if c == held_c else "") / f"C{c:.2e}-N{n:.3e}", n,
               loss(n, c), steps=50, batch=int(round(d / 50)), budget_flop=c,
               flop_convention="kaplan", epochs=0.5, schedule="wsd")
  assert cli_main(["report", str(sweep), "--bootstrap", "20"]) == 0, capsys.readouterr().err
  import json
  alloc = json.loads((sweep / "fits.json").read_text())["fits"]["allocation"]
  pred = alloc["check_prediction"]
  assert pred["loss_from"] == "frontier" and "loss_approach3" in pred
  assert pred["loss"] == pytest.approx(true_minimum(held_c)[0], rel=5e-3)
  assert alloc["target"]["loss_from"] == "frontier"
  assert alloc["frontier"]["budgets"] == pytest.approx(BUDGETS[2:6])
  text = (sweep / "report.md").read_text()
  assert "## The loss frontier" in text and "approach 3 alone" in text
