"""Calibrated intervals (scaling/laws/calibration.py) on points whose truth is known: exact on a
law's own points, and covering the truth where the law's form bends away from the data, where an
interval of the residual scatter alone does not."""

import math

import numpy as np
import pytest

from scaling.laws import calibration, forms
from scaling.laws.registry import get_law

TRUE = {"alpha_N": 0.076, "N_c": 8.8e13}       # Kaplan 2020 eq. 1.5 constants


def _points(bend: float, noise: float, seed: int, per_level: int = 6):
  """L(N) of Kaplan's form times exp(bend·(ln N − ln 1e6)²): a curvature in log-log that the
  pure power law cannot follow; log-normal noise."""
  rng = np.random.default_rng(seed)
  levels = np.logspace(4, 9, 11)
  n = np.repeat(levels, per_level) * np.exp(rng.uniform(-0.1, 0.1, 11 * per_level))
  y = forms.loss_n(TRUE, n) * np.exp(bend * (np.log(n) - math.log(1e6)) ** 2)
  return {"N": n}, y * np.exp(noise * rng.normal(size=n.size)), np.repeat(levels, per_level)


def test_exact_points_are_predicted_exactly():
  cols, y, level = _points(0.0, 0.0, 0)
  errors = calibration.ahead_errors(get_law("N"), cols, y, level)
  assert len(errors) == 8 * 6 and max(abs(e) for e in errors) < 1e-9


def test_levels_group_all_different_budgets():
  values = np.logspace(10, 20, 200)
  level = calibration.levels(values)
  assert len(np.unique(level)) == calibration.MAX_LEVELS
  assert np.all(np.diff(level[np.argsort(values)]) >= 0)       # order kept
  binned = calibration.levels(np.array([1e10, 1.1e10, 3e10, 3.2e10]), tolerance=0.25)
  assert len(np.unique(binned)) == 2


@pytest.mark.parametrize("bend", [0.0, 0.0005])
def test_calibrated_intervals_cover_the_truth(bend):
  """Six data sets, each level predicted from those below (36 points each): the calibrated 95%
  interval covers 85–99% of the points, on the law's own form and where the truth bends away
  from it (by 2.5 % at the largest N); an interval of the residual scatter alone covers fewer
  where it bends."""
  inside = scatter = total = 0
  for seed in range(6):
    cols, y, level = _points(bend, 0.01, seed)
    cov = calibration.coverage(get_law("N"), cols, y, level)
    inside, scatter, total = (inside + cov["inside"],
                              scatter + cov["inside_residual_scatter_only"], total + cov["total"])
  assert total == 216 and 0.85 <= inside / total <= 0.99, (inside, total)
  if bend:
    assert scatter / total < inside / total - 0.05, (scatter, inside, total)


def test_holdout_of_the_largest_budgets():
  cols, y, level = _points(0.0, 0.003, 4)
  rows = calibration.holdout_check(get_law("N"), cols, y, level, k=2)
  assert len(rows) == 12 and all(r["level"] >= np.unique(level)[-2] for r in rows)
  assert sum(r["inside_interval"] for r in rows) >= 10
  assert all(abs(r["rel_error"]) < 0.02 for r in rows)


def _isoflop_csv(path, seed=0):
  """Points of a known Chinchilla law on 7 budgets × 7 sizes, with the budget as a column."""
  truth = {"E": 1.7, "A": 400.0, "B": 1.1e4, "alpha": 0.3, "beta": 0.45}
  from scaling.laws.optimum import chinchilla_allocation
  rng = np.random.default_rng(seed)
  rows = []
  for c in np.logspace(17, 20, 7):
    n_opt = chinchilla_allocation(truth, c)["N_opt"]
    for f in np.logspace(-1, 1, 7):
      n = n_opt * f
      loss = forms.loss_chinchilla(truth, n, c / (6 * n)) * math.exp(0.002 * rng.normal())
      rows.append(f"{n:.6g},{c:.6g},{loss:.6f}")
  path.write_text("params,budget,loss\n" + "\n".join(rows) + "\n")
  return truth


def test_fit_holds_out_budgets_and_predict_answers_from_an_isoflop_fit(tmp_path, capsys):
  from scaling.cli import main as cli_main
  from scaling.laws.optimum import chinchilla_allocation
  path = tmp_path / "runs.csv"
  truth = _isoflop_csv(path)
  assert cli_main(["fit", str(path), "--law", "chinchilla", "--bootstrap", "20",
                   "--holdout-budgets", "2", "--coverage", "--out", str(tmp_path / "c.json")]) == 0
  out = capsys.readouterr().out
  assert "D = C/(6·N) (no tokens column)" in out and "budget as C" in out
  assert "held out: " in out and "of 14 inside their 95% interval" in out
  assert "calibration: " in out and "coverage (each level predicted" in out
  assert cli_main(["fit", str(path), "--law", "isoflop", "--bootstrap", "50",
                   "--out", str(tmp_path / "i.json")]) == 0
  capsys.readouterr()
  assert cli_main(["predict", "--preset", str(tmp_path / "i.json"), "--C", "1e22"]) == 0
  line = capsys.readouterr().out
  n_opt = float(line.split("N_opt = ")[1].split()[0])
  assert n_opt == pytest.approx(chinchilla_allocation(truth, 1e22)["N_opt"], rel=0.15)
  assert cli_main(["predict", "--preset", str(tmp_path / "i.json"), "--N", "1e9"]) == 2
  assert "approach-2 (isoflop) fit" in capsys.readouterr().err
  assert cli_main(["predict", "--preset", str(tmp_path / "c.json"), "--N", "1e9",
                   "--D", "2e10"]) == 0
  assert "95% calibrated on" in capsys.readouterr().out
