"""The calculator's planning answers against closed forms written out independently here."""

import pytest

from scaling.errors import UserError
from scaling.laws import forms, optimum, planning
from scaling.laws.commands import plan_command, predict_command

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


PF_DAY = 8.64e19   # FLOP


def test_kaplan_allocation_counts_the_cost_of_training_at_b_crit(capsys):
  # C = 1e21 FLOP at B = B_crit is C_min = C/2 (Kaplan 2020 eq. 5.5), by hand:
  c_min_pf = 5e20 / PF_DAY
  n = 1.3e9 * c_min_pf ** 0.73                  # eq. 1.7
  loss = (3.1e8 / c_min_pf) ** 0.05             # eq. 1.3
  b = 2e8 / loss ** (1 / 0.21)                  # eq. 1.4
  d = 1e21 / (6 * n)
  a = optimum.kaplan_allocation(forms.KAPLAN2020, 1e21)
  assert (a["N_opt"], a["loss"], a["B_crit_tokens"], a["D_tokens"], a["S_steps"]) == \
      pytest.approx((n, loss, b, d, d / b), rel=1e-9)
  # The numbers, rounded: N 4.68e9, L 2.435, B 2.89e6, D 3.56e10, S 1.23e4.
  assert (round(n, -7), round(loss, 3), round(b, -4), round(d, -8), round(d / b, -2)) == \
      (4.68e9, 2.435, 2.89e6, 3.56e10, 1.23e4)
  assert a["S_min_steps"] == pytest.approx(a["S_steps"] / 2)
  # At another batch: C_min·(1 + B/B_crit(L(C_min))) gives back C.
  at = optimum.kaplan_allocation(forms.KAPLAN2020, 1e21, batch_tokens=1e6)
  l_at = (3.1e8 / (at["C_min_flop"] / PF_DAY)) ** 0.05
  assert at["C_min_flop"] * (1 + 1e6 / (2e8 / l_at ** (1 / 0.21))) == pytest.approx(1e21)
  predict_command("kaplan2020", None, None, 1e21, None)
  assert "C_min = C/2" in capsys.readouterr().out


def test_gpt3_row_under_compute_limited_laws():
  # GPT-3 (175e9, 300e9 tokens), ended at B = B_crit: L = L(N, S_min), S_min = D/(2·B_crit(L)),
  # solved here by fixed-point iteration (eq. 1.6, 1.4, 5.4).
  n, d = 175e9, 300e9
  loss = 2.0
  for _ in range(200):
    s_min = d / (2 * B_STAR / loss ** (1 / A_B))
    loss = (N_C_S / n) ** A_N_S + (S_C / s_min) ** A_S
  c_min_pf = 6 * n * d / 2 / PF_DAY
  rows = planning.compare_models([("GPT-3", n, d)], "kaplan", forms.KAPLAN2020)
  assert rows[0]["loss"] == pytest.approx(loss, rel=1e-6) and round(loss, 3) == 1.825
  assert rows[0]["loss_opt"] == pytest.approx((3.1e8 / c_min_pf) ** 0.05, rel=1e-9)
  assert rows[0]["N_opt"] == pytest.approx(1.3e9 * c_min_pf ** 0.73, rel=1e-9)
  assert rows[0]["loss_converged"] == pytest.approx(_l_nd(n, d))      # eq. 1.5, the floor


def test_penalty_uses_kaplan_table_2(capsys):
  # D = (N/N_c)^(α_N/α_D)·D_c / ((1 + δ)^(1/α_D) − 1) with Table 2: α_D 0.103, N_c 6.4e13,
  # D_c 1.8e13; at N = 1e6, δ = 2 %: 1.478e8 tokens, near the rule D ≳ 5e3·N^0.74 = 1.38e8.
  d = (1e6 / 6.4e13) ** (0.076 / 0.103) * 1.8e13 / (1.02 ** (1 / 0.103) - 1)
  out = plan_command("kaplan2020", 1e6, None, 2, None, None, None, None)
  assert out["least_D"] == pytest.approx(d, rel=1e-9) and round(d, -6) == 1.48e8
  assert out["least_D"] == pytest.approx(5e3 * 1e6 ** 0.74, rel=0.1)
  assert "Table 2" in capsys.readouterr().out


def test_s_stop_is_converted_to_steps_at_the_batch():
  n, d, b = 1e8, 1e9, 2 ** 19
  s_stop_min = S_C / (_l_nd(n, d) - (N_C / n) ** A_N) ** (1 / A_S)
  b_crit = B_STAR / _l_nd(n, d) ** (1 / A_B)
  r = planning.should_stop(KAPLAN, n, d, b, 10)
  assert r["S_stop"] == pytest.approx(s_stop_min * (1 + b_crit / b), rel=1e-9)
