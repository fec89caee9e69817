"""`scaling fit` → fits.json → `scaling report`: a synthetic sweep with a known law, and a report
that re-renders from fits.json without fitting again."""

import json
import os

import numpy as np
import pytest

from conftest import fake_run
from scaling.cli import main as cli_main
from scaling.laws import sweepfit
from scaling.report import render

ALPHA_N, N_C = 0.12, 3e8          # L(N) = (N_c/N)^α_N, the law the synthetic sweep obeys
B_STAR, ALPHA_B = 2e4, 0.4        # B_simple(L) = B*/L^(1/α_B)


def _sweep(root, sizes=np.logspace(3, 6, 6)):
  for i, n in enumerate(sizes):
    loss = (N_C / n) ** ALPHA_N
    fake_run(root / f"m{i}", int(n), float(loss), steps=200,
             b_simple=lambda l: B_STAR / l ** (1 / ALPHA_B), final_eval_losses={},
             b_simple_tokens_final=B_STAR / loss ** (1 / ALPHA_B))
  return root


def test_fit_recovers_the_known_law_and_the_report_renders_it(tmp_path, capsys):
  sweep = _sweep(tmp_path / "sw")
  assert cli_main(["fit", str(sweep), "--bootstrap", "100"]) == 0
  assert "wrote" in capsys.readouterr().out
  doc = json.loads((sweep / "fits.json").read_text())
  ln = doc["fits"]["L(N)"]["N"]
  assert ln["params"]["alpha_N"] == pytest.approx(ALPHA_N, rel=1e-2)  # N rounded to integers
  lo, hi = ln["intervals"]["alpha_N"]
  assert lo <= ALPHA_N <= hi
  assert doc["headline"]["extrapolation_rel_error"] == pytest.approx(0, abs=1e-3)
  law = doc["fits"]["b_simple_law"]["params"]
  assert law["alpha_B"] == pytest.approx(ALPHA_B, rel=0.02)
  assert cli_main(["report", str(sweep)]) == 0
  md = (sweep / "report.md").read_text()
  assert f"α_N = {ALPHA_N:.4f}" in md or f"α_N = {ln['params']['alpha_N']:.4f}" in md
  assert "C_c (PF-days)" in md   # the frontier's C_c in Kaplan's unit, beside his 3.1e8
  # The calculator takes the sweep's fits.json as a preset.
  from scaling.laws.commands import predict_command
  assert predict_command(str(sweep / "fits.json"), 1e7, None, None, None)["loss"] == \
      pytest.approx((N_C / 1e7) ** ALPHA_N, rel=1e-3)


def test_report_rerenders_without_fitting(tmp_path, monkeypatch):
  sweep = _sweep(tmp_path / "sw")
  sweepfit.fit_sweep(str(sweep), n_boot=50)
  render.make_report(str(sweep))
  before = (sweep / "fits.json").read_bytes()
  pngs = sorted(sweep.glob("*.png"))
  assert len(pngs) >= 3
  for png in pngs:
    png.unlink()

  def no_fit(*args, **kwargs):
    raise AssertionError("the report fitted although fits.json was current")
  monkeypatch.setattr(sweepfit, "fit_sweep", no_fit)
  result = render.make_report(str(sweep))
  assert sorted(sweep.glob("*.png")) == pngs
  assert (sweep / "fits.json").read_bytes() == before
  assert result["headline"]["alpha_N"] == json.loads(before)["headline"]["alpha_N"]


def test_report_refits_when_runs_are_newer_than_fits(tmp_path):
  sweep = _sweep(tmp_path / "sw")
  sweepfit.fit_sweep(str(sweep), n_boot=20)
  assert sweepfit.is_current(sweep)
  # A run finished after the fit: fits.json is older than its summary.
  earlier = os.stat(sweep / "m0" / "summary.json").st_mtime - 10
  os.utime(sweep / "fits.json", (earlier, earlier))
  assert not sweepfit.is_current(sweep)
  render.make_report(str(sweep), n_boot=20)
  assert sweepfit.is_current(sweep)


def test_known_entropy_rate_gives_the_excess_law_and_its_extrapolation(tmp_path, capsys):
  """Runs on a generated corpus record its entropy rate H; L = H + (N_c/N)^α is then fitted as
  L − H, its exponent recovered, the largest model predicted from the others, and H shown."""
  h, alpha, n_c = 0.85, 0.3, 2e4
  sweep = tmp_path / "sw"
  for i, n in enumerate(np.logspace(3.5, 6, 6)):
    fake_run(sweep / f"m{i}", int(n), float(h + (n_c / int(n)) ** alpha), steps=200,
             b_simple=lambda l: B_STAR / l ** (1 / ALPHA_B), final_eval_losses={},
             entropy_rate=h)
  assert cli_main(["fit", str(sweep), "--bootstrap", "100"]) == 0
  out = capsys.readouterr().out
  assert "L(N) − H, H = 0.8500" in out and "error in its loss" in out
  doc = json.loads((sweep / "fits.json").read_text())
  x = doc["headline"]["excess"]
  assert x["alpha_N"] == pytest.approx(alpha, rel=1e-3)
  assert x["alpha_N_interval"][0] <= alpha <= x["alpha_N_interval"][1]
  assert x["extrapolation_rel_error"] == pytest.approx(0, abs=1e-3)
  # The pure power law, blind to H, bends away from these points and misses the largest.
  assert abs(doc["headline"]["extrapolation_rel_error"]) > 0.005
  render.make_report(str(sweep))
  md = (sweep / "report.md").read_text()
  assert "entropy rate H = 0.8500" in md and "L(N) − H fitted without" in md


def test_a_loss_below_the_entropy_rate_is_refused(tmp_path):
  sweep = tmp_path / "sw"
  for i, n in enumerate((1e3, 1e4, 1e5)):
    fake_run(sweep / f"m{i}", int(n), 1.0 - 0.1 * i, entropy_rate=0.9)
  assert cli_main(["fit", str(sweep), "--bootstrap", "10"]) == 2
