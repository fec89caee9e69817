"""The calculator's planning answers against closed forms written out independently here."""

import pytest

from scaling.errors import UserError
from scaling.laws import planning
from scaling.laws.commands import plan_command

A_N, A_D, N_C, D_C = 0.076, 0.095, 8.8e13, 5.4e13      # Kaplan 2020 eq. 1.5 constants
A_S, S_C, N_C_S, A_N_S = 0.76, 2.1e3, 6.5e13, 0.077     # L(N, S) fit
B_STAR, A_B = 2e8, 0.21
KAPLAN = {"ND": {"alpha_N": A_N, "alpha_D": A_D, "N_c": N_C, "D_c": D_C},
          "NS": {"alpha_N": A_N_S, "N_c": N_C_S, "alpha_S": A_S, "S_c": S_C},
          "B_crit": {"alpha_B": A_B, "B_star": B_STAR}}


def _l_nd(n, d):
  return ((N_C / n) ** (A_N / A_D) + D_C / d) ** A_D


def test_least_d_gives_exactly_the_penalty():
  for n, pct in ((1e6, 0.02), (1e8, 0.05), (1e4, 0.01)):
    d = planning.least_d_for_penalty(KAPLAN["ND"], n, pct)
    assert _l_nd(n, d) / (N_C / n) ** A_N - 1 == pytest.approx(pct, rel=1e-9)
  # Growing the model 8× needs about 8^0.8 more data for the same penalty (α_N/α_D = 0.8).
  ratio = planning.least_d_for_penalty(KAPLAN["ND"], 8e6, 0.02) / planning.least_d_for_penalty(
      KAPLAN["ND"], 1e6, 0.02)
  assert ratio == pytest.approx(8 ** (A_N / A_D), rel=1e-9)
  with pytest.raises(UserError):
    planning.least_d_for_penalty(KAPLAN["ND"], 1e6, 0)


def test_s_stop_closed_form():
  n, d = 1e8, 1e9
  gap = _l_nd(n, d) - (N_C / n) ** A_N
  assert planning.s_stop(KAPLAN["ND"], KAPLAN["NS"], n, d) == pytest.approx(
      S_C / gap ** (1 / A_S), rel=1e-9)


def test_compute_efficient_stop_is_ten_percent_above_convergence():
  n, b = 1e8, 2 ** 19
  r = planning.compute_efficient_stop(KAPLAN["NS"], KAPLAN["B_crit"], n, b)
  l_inf = (N_C_S / n) ** A_N_S
  # L(N, S_min*) written out: (N_c/N)^α_N + (S_c/S_min*)^α_S = (1 + α_N/α_S)·L(N, ∞).
  assert l_inf + (S_C / r["S_min_star"]) ** A_S == pytest.approx((1 + A_N_S / A_S) * l_inf)
  assert r["L_star"] / l_inf - 1 == pytest.approx(0.101, abs=0.001)
  b_crit = B_STAR / r["L_star"] ** (1 / A_B)
  assert r["S_star"] == pytest.approx(r["S_min_star"] * (1 + b_crit / b))


def test_should_stop_answers(capsys):
  early = planning.should_stop(KAPLAN, 1e8, 1e12, 2 ** 19, 10)
  assert not early["stop"]
  late = planning.should_stop(KAPLAN, 1e8, 1e9, 2 ** 19, 1e7)
  assert late["stop"] and len(late["reasons"]) == 2
  out = plan_command("kaplan2020", 1e8, 1e9, None, 2 ** 19, 1e7, None, None)
  assert out["should_stop"]["stop"] and "should I stop? yes" in capsys.readouterr().out


def test_compare_table(capsys):
  rows = plan_command("chinchilla2022", None, None, None, None, None, "", None)["compare"]
  chin = next(r for r in rows if r["name"].startswith("Chinchilla"))
  assert chin["loss"] == pytest.approx(1.69 + 406.4 / 70e9 ** 0.34 + 410.7 / 1.4e12 ** 0.28)
  assert chin["loss_opt"] <= chin["loss"]
  mine = plan_command("chinchilla2022", None, None, None, None, None, "mine:1e9:2e10", None)
  assert mine["compare"][0]["C"] == pytest.approx(6 * 1e9 * 2e10)
  with pytest.raises(UserError, match="name:N:D"):
    planning.parse_models("oops:1e9")
