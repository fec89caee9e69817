"""The design stage's plan on a known loss surface with a change of phase, its refusals, and
design.json written whole and validated when read."""

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import optimize

from scaling.design import planner
from scaling.errors import UserError
from scaling.experiments import processes
from scaling.train.summary import RunSummary

# L(N, D) = E + A/N^α + B/D^β (Hoffmann 2022 eq. 2) plus a penalty J that fades past C_KINK: runs
# below that compute miss what longer context gives (the change of phase, SCIENCE.md §7).
LAW = {"E": 1.0, "A": 60.0, "alpha": 0.4, "B": 300.0, "beta": 0.4}
C_KINK, J = 2e11, 0.6
FAMILY = [planner.Member((2, d, 1), 24.0 * d * d, 6.0 * 24.0 * d * d)
          for d in (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192)]
BATCH_TOKENS = 2048


def loss(n, c):
  d = c / (6.0 * n)
  base = LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]
  return base + J / (1.0 + (c / C_KINK) ** 3)


def true_vertex(c):
  res = optimize.minimize_scalar(lambda ln: loss(math.exp(ln), c), bounds=(0, 20),
                                 method="bounded")
  return math.exp(res.x)


def best_loss(c):
  return loss(true_vertex(c), c)


BIGRAM = best_loss(C_KINK)       # the corpus's bigram loss: the best run crosses it at the kink
# Where the best run ends PHASE_MARGIN below it, solved on the surface itself.
C_CROSS = math.exp(optimize.brentq(lambda lc: best_loss(math.exp(lc)) - (BIGRAM - planner.PHASE_MARGIN),
                                   math.log(C_KINK), math.log(C_KINK) + 3))


def pilot(grid_sizes=(1, 4, 7, 10, 13), c_max=8e11, sigma=0.004, n_train=1e9):
  grid = [{"N": FAMILY[j].n, "C": c_max / 2 ** (k / 2), "loss": loss(FAMILY[j].n, c_max / 2 ** (k / 2))}
          for j in grid_sizes for k in range(9)]
  return planner.Pilot(bigram_loss=BIGRAM, n_train_tokens=int(n_train), lr_scale=4.0, lr_probe=[],
                      grid=grid, seconds_per_token=[{"N": FAMILY[1].n, "s_per_token": 1e-9 * FAMILY[1].flop_per_token},
                                                    {"N": FAMILY[7].n, "s_per_token": 1e-9 * FAMILY[7].flop_per_token}],
                      run_overhead_s=2.0, sigma=sigma)


def test_budgets_start_past_the_kink_and_sizes_centre_on_the_true_vertices():
  p = planner.plan(pilot(), FAMILY, minutes=1e6, batch_tokens=BATCH_TOKENS)
  budgets = p["budgets_flop"]
  # phase_clearance past the crossing, wherever the pilot's own budgets fell.
  clearance = planner.Settings().phase_clearance
  assert clearance > 1 and budgets[0] == pytest.approx(clearance * C_CROSS, rel=0.06)
  assert budgets[0] > C_KINK
  assert budgets[-1] / budgets[0] >= 8 - 1e-9 and p["heldout_flop"] == pytest.approx(3 * budgets[-1])
  assert all(best_loss(c) < BIGRAM for c in budgets)
  step = math.log(FAMILY[1].n / FAMILY[0].n)      # the family's widest step in log N
  for c, row in zip(budgets, p["sizes"]):
    centre = np.mean([math.log(FAMILY[j].n) for j in row])
    assert len(row) == 6
    assert abs(centre - math.log(true_vertex(c))) < step, c
    assert FAMILY[row[0]].n < true_vertex(c) < FAMILY[row[-1]].n
  assert p["seeds"] == 1 and not p["forced"]


def test_the_phase_is_found_and_the_vertex_law_fitted_past_it():
  c_phase, extrapolated = planner.phase_budget(pilot().grid, BIGRAM)
  assert not extrapolated and c_phase == pytest.approx(C_CROSS, rel=0.06)
  a, _, used = planner.vertex_law(pilot().grid, c_phase)
  assert all(c >= c_phase for c, _ in used)
  # Past the kink the law is Chinchilla's: N_opt ∝ C^(β/(α+β)) = C^0.5.
  assert a == pytest.approx(0.5, abs=0.08)


def test_the_crossing_does_not_move_with_the_pilots_budgets():
  """Pilot budgets shifted by any fraction of their √2 step find the same crossing (within 2 %;
  the first pilot budget past it moves by up to 41 %). It sits ~4 % late: the pilot's best size
  at a budget is a little worse than the true optimum."""
  found = [planner.phase_budget(pilot(c_max=8e11 * shift).grid, BIGRAM)[0]
           for shift in (1.0, 1.1, 1.2, 1.3, 1.4)]
  assert max(found) / min(found) < 1.02
  assert all(c == pytest.approx(C_CROSS, rel=0.06) for c in found)


def test_with_two_pilot_budgets_past_the_phase_the_vertex_law_uses_every_budget():
  """Two vertices √2 apart set a slope badly: the law is fitted over every pilot budget then."""
  grid = pilot(c_max=3e11).grid
  c_phase, _ = planner.phase_budget(grid, BIGRAM)
  past = sorted({r["C"] for r in grid if r["C"] >= c_phase})
  assert len(past) == 2
  a, _, used = planner.vertex_law(grid, c_phase)
  assert len(used) > 2 and min(c for c, _ in used) < c_phase


def test_a_pilot_below_the_phase_extrapolates_and_says_so():
  c_phase, extrapolated = planner.phase_budget(pilot(c_max=1.2e11).grid, BIGRAM)
  assert extrapolated and c_phase > 1.2e11


def test_too_few_minutes_or_tokens_are_refused_with_what_they_would_need():
  with pytest.raises(UserError, match=r"needs about \d+ minutes") as e:
    planner.plan(pilot(), FAMILY, minutes=0.5, batch_tokens=BATCH_TOKENS)
  assert "\n" not in str(e.value) and "--force" in str(e.value)
  with pytest.raises(UserError, match=r"needs a corpus of ≥ [\d.e+]+ tokens"):
    planner.plan(pilot(n_train=1e5), FAMILY, minutes=1e6, batch_tokens=BATCH_TOKENS)
  forced = planner.plan(pilot(), FAMILY, minutes=0.5, batch_tokens=BATCH_TOKENS, force=True)
  assert forced["forced"] and any(w.startswith("forced:") for w in forced["warnings"])


def test_seeds_follow_the_measured_noise():
  assert planner.seeds_for(None) == 1 and planner.seeds_for(0.008) == 1
  assert planner.seeds_for(0.015) == 3 and planner.seeds_for(0.5) == planner.MAX_SEEDS
  assert planner.plan(pilot(sigma=0.013), FAMILY, 1e6, BATCH_TOKENS)["seeds"] == 2


def _design(tmp_path):
  p = planner.plan(pilot(), FAMILY, minutes=1e6, batch_tokens=BATCH_TOKENS)
  return planner.Design(format=planner.FORMAT, source="synthetic", store=str(tmp_path / "store"),
                       minutes=1e6, flop_convention="palm",
                       family=[list(m.shape) for m in FAMILY], batch_tokens=BATCH_TOKENS,
                       pilot={}, **{k: p[k] for k in ("budgets_flop", "sizes", "heldout_flop",
                                                      "lr_scale", "lr_ref_n", "lr_n_exponent",
                                                      "warmup_steps", "min_steps",
                                                      "max_epochs", "seeds", "expected_minutes",
                                                      "forced", "warnings", "choices")})


def test_design_json_round_trips(tmp_path):
  d = _design(tmp_path)
  path = planner.write(tmp_path, d)
  back = planner.read(path)
  assert json.loads(json.dumps(dataclasses.asdict(back))) == json.loads(path.read_text())
  assert planner.read(tmp_path).budgets_flop == d.budgets_flop


@pytest.mark.parametrize("edit, message", [
    (lambda doc: doc.pop("seeds"), "'seeds' is missing"),
    (lambda doc: doc.update(seeds="3"), "'seeds' has the wrong type"),
    (lambda doc: doc.update(budgets_flop=[2e11, 1e11] + doc["budgets_flop"][2:]), "increasing"),
    (lambda doc: doc["sizes"][0].append(99), "family indices"),
    (lambda doc: doc.update(heldout_flop=1.0), "must exceed the largest budget"),
    (lambda doc: doc.update(format="other"), "is not a design file"),
])
def test_a_hand_edited_bad_design_is_one_line(tmp_path, edit, message):
  path = planner.write(tmp_path, _design(tmp_path))
  doc = json.loads(path.read_text())
  edit(doc)
  path.write_text(json.dumps(doc))
  with pytest.raises(UserError, match=message) as e:
    planner.read(path)
  assert "\n" not in str(e.value)
  path.write_text("{not json")
  with pytest.raises(UserError, match="cannot read the design"):
    planner.read(path)


def test_sweep_of_a_bad_design_is_one_line_and_exit_2(tmp_path, capsys):
  from scaling.cli import main as cli_main
  path = planner.write(tmp_path, _design(tmp_path))
  doc = json.loads(path.read_text())
  doc["sizes"] = doc["sizes"][:-1]
  path.write_text(json.dumps(doc))
  assert cli_main(["sweep", "--design", str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error:") and "\n" not in err and "sizes must hold" in err
  assert cli_main(["sweep"]) == 2
  assert "--design" in capsys.readouterr().err


def test_a_lopsided_profile_gets_a_size_on_its_short_side():
  c = 1e12
  truth = true_vertex(c)
  i = int(np.argmin([abs(math.log(m.n / truth)) for m in FAMILY]))
  centred = list(range(i - 2, i + 4))
  left = list(range(i - 5, i + 1))        # the vertex at the right end of these sizes
  right = list(range(i, i + 6))           # … at the left end of these
  vertex_of = lambda row: planner.profile_vertex([FAMILY[j].n for j in row],
                                                [loss(FAMILY[j].n, c) for j in row])
  for row in (centred, left, right):
    assert abs(math.log(vertex_of(row) / truth)) < 0.35
  found = planner.short_sides([c, c, c], [centred, left, right],
                             {c: None}, FAMILY)
  assert found == []                      # no vertex known: nothing added
  added = [planner.short_sides([c], [row], {c: vertex_of(row)}, FAMILY) for row in
           (centred, left, right)]
  assert added == [[], [[0, left[-1] + 1]], [[0, right[0] - 1]]]


def test_the_learning_rate_rule_from_a_probe():
  """Per size the best multiple from a parabola in log multiple, then log-linear in log N."""
  best = {1e4: 16.0, 1e5: 4.0}               # a known optimum per size, losses quadratic around it
  probe = [{"N": n, "multiplier": m, "loss": 2.0 + 0.1 * math.log(m / best[n]) ** 2}
           for n in best for m in (2.0, 4.0, 8.0, 16.0, 32.0)]
  assert planner.best_multiplier([r for r in probe if r["N"] == 1e4]) == pytest.approx(16.0)
  scale, ref, exponent = planner.lr_rule(probe)
  assert ref == pytest.approx(math.sqrt(1e4 * 1e5))
  assert exponent == pytest.approx(math.log(4 / 16) / math.log(10))
  assert scale * (1e5 / ref) ** exponent == pytest.approx(4.0)
  # A best multiple at the edge of those probed is that edge.
  edge = [r for r in probe if r["N"] == 1e4 and r["multiplier"] <= 8]
  assert planner.best_multiplier(edge) == pytest.approx(8.0)


def test_make_design_writes_a_design_its_sweep_reads(tmp_path, monkeypatch):
  """The stage end to end with the pilot's measurements replaced by those of the known surface:
  store, plan, design.json (with the run config), and the sweep config read back from it."""
  from scaling.design import experiment, pilot as pilotlib
  from scaling.experiments.expand import expand
  monkeypatch.setattr(pilotlib, "measure", lambda *a, **k: pilot())
  monkeypatch.setattr(pilotlib, "family", lambda *a, **k: FAMILY)
  cfg = experiment.base_config("")
  cfg.data.synthetic.train_tokens, cfg.model.n_ctx = 200_000, 64
  made = experiment.make_design(cfg, tmp_path, minutes=1e6, verbose=False)
  assert (tmp_path / "design.json").is_file() and (tmp_path / "store" / "meta.json").is_file()
  assert made.config["model"]["n_ctx"] == 64 and made.budgets_flop[0] >= C_KINK
  sweep_cfg, back = experiment.sweep_config(tmp_path)
  assert back == made and sweep_cfg.model.n_ctx == 64 and sweep_cfg.data.store == made.store
  assert list(sweep_cfg.sweep.budgets_flop) == made.budgets_flop
  assert sweep_cfg.sweep.lr_ref_n == made.lr_ref_n and sweep_cfg.sweep.seeds == made.seeds
  # Past the probe's length the designed runs' stable rate falls as 1/√t.
  assert sweep_cfg.train.stable_ref_steps == pilotlib.PROBE_STEPS
  runs = expand(sweep_cfg)
  assert {r.budget_flop for r in runs} <= set(made.budgets_flop) and runs
  assert experiment.heldout_factor(made) == pytest.approx(3.0)


def test_the_cost_model_is_scaled_by_what_it_missed_on_the_pilot_grid():
  """grid_seconds counts a WSD grid as _cost does (per size its longest run and a cooldown per
  shorter budget): a hand count; and plan's expected minutes scale with the measured factor."""
  fam = [planner.Member((2, w, 1), 1000.0 * w, 6000.0 * w) for w in (8, 16, 32)]
  spt = lambda m: 1e-6 * m.flop_per_token / 6000.0       # s/token ∝ FLOPs per token
  runs = [(fam[0].n, 1e9), (fam[0].n, 2e9), (fam[1].n, 2e9)]
  by_hand = (2e9 / fam[0].flop_per_token + 0.2 * 1e9 / fam[0].flop_per_token) * spt(fam[0]) \
      + 2e9 / fam[1].flop_per_token * spt(fam[1]) + 3 * 0.5
  assert planner.grid_seconds(fam, runs, spt, 0.5, 0.2) == pytest.approx(by_hand)
  slow = dataclasses.replace(pilot(), cost_factor=2.0)
  base = planner.plan(pilot(), FAMILY, minutes=1e6, batch_tokens=BATCH_TOKENS)
  assert planner.plan(slow, FAMILY, minutes=1e6, batch_tokens=BATCH_TOKENS)["expected_minutes"] \
      == pytest.approx(2 * base["expected_minutes"])
  # Two processes that each keep 1.5 of 2 cores busy fill the 2 cores: 4/3 as fast as one.
  assert processes.gain(1.5, 2, cores=2) == pytest.approx(4 / 3)
  assert processes.gain(2.0, 2, cores=2) == processes.gain(1.0, 1, cores=2) == 1.0
  assert processes.gain(0.9, 4, cores=16) == 4.0
  fast = dataclasses.replace(pilot(), process_gain=processes.gain(1.5, 2, cores=2))
  assert planner.plan(fast, FAMILY, minutes=1e6, batch_tokens=BATCH_TOKENS)["expected_minutes"] \
      == pytest.approx(0.75 * base["expected_minutes"])


def test_the_pilot_grid_trains_each_size_only_where_its_profile_still_falls():
  """From the largest size down, on the known surface: every budget's vertex bracketed (its best
  size has a trained size on each side, or is the smallest), the small sizes left out of the
  budgets whose profile turned up above them, and the grid's vertices the same as the full
  grid's."""
  from scaling.design import pilot as pilotlib
  members = [FAMILY[j] for j in (1, 4, 7, 10, 13)]
  budgets = [8e11 / 2 ** (k / 2) for k in reversed(range(9))]
  trained = []

  def train(member, cs):
    trained.append((member.n, list(cs)))
    return {(member.n, c): loss(member.n, c) for c in cs}

  got = pilotlib.adaptive_grid(members, budgets, train)
  assert [n for n, _ in trained] == [m.n for m in reversed(members)]     # largest first
  for c in budgets:
    ns = sorted(n for n, cc in got if cc == c)
    best = min(ns, key=lambda n: got[(n, c)])
    assert best == ns[0] == members[0].n or ns.index(best) > 0, c   # a smaller size is worse
  smallest = dict(trained)[members[0].n]
  assert 0 < len(smallest) < len(budgets)        # the smallest size only at the small budgets
  full = [{"N": m.n, "C": c, "loss": loss(m.n, c)} for m in members for c in budgets]
  kept = [{"N": n, "C": c, "loss": v} for (n, c), v in got.items()]
  assert len(kept) < len(full)
  assert planner.vertex_law(kept, C_KINK)[:2] == pytest.approx(planner.vertex_law(full, C_KINK)[:2])


def test_the_lr_probe_goes_past_an_edge_only_for_the_size_that_needs_it(monkeypatch):
  """Losses quadratic in log multiple around a known best per size (50 and 8): the small size is
  probed past 32 (64, then 128, where its best 64 is inner), the large one only at the first
  four; the rule's multiples come back near the known ones."""
  from scaling.design import pilot as pilotlib
  best = {6144.0: 50.0, 55296.0: 8.0}
  fam = [planner.Member((2, w, 1), 24.0 * w * w, 6.0 * 24.0 * w * w) for w in (16, 48)]
  monkeypatch.setattr(pilotlib, "_probe_run", lambda cfg, m, mult, w: (m.n, mult))
  monkeypatch.setattr(pilotlib, "_timed", lambda rc, v: pilotlib.Timed(RunSummary(
      final_eval_loss=2.0 + 0.1 * math.log(rc[1] / best[rc[0]]) ** 2), None, None))
  (scale, ref, exponent), rows, _ = pilotlib.lr_probe(None, fam, 60, False)
  probed = {n: sorted(r["multiplier"] for r in rows if r["N"] == n) for n in best}
  assert probed == {6144.0: [4.0, 8.0, 16.0, 32.0, 64.0, 128.0], 55296.0: [4.0, 8.0, 16.0, 32.0]}
  assert scale * (55296.0 / ref) ** exponent == pytest.approx(8.0, rel=1e-6)
  assert scale * (6144.0 / ref) ** exponent == pytest.approx(50.0, rel=1e-6)


@pytest.mark.slow   # about 2.5 minutes: the pilot's real runs on the generated corpus
def test_the_design_stage_measures_for_real(tmp_path):
  """The design stage with nothing replaced (the default suite replaces the pilot with a known
  surface): the probe and grid runs trained, their speeds and σ read back from the run
  directories, and a design planned from them."""
  from scaling.design import experiment
  cfg = experiment.base_config("")
  made = experiment.make_design(cfg, tmp_path, minutes=15.0, verbose=False, processes=2)
  pilot = made.pilot
  assert pilot["grid"] and all(0 < r["loss"] < pilot["bigram_loss"] + 5 for r in pilot["grid"])
  assert pilot["seconds_per_token"] and all(r["s_per_token"] > 0
                                            for r in pilot["seconds_per_token"])
  assert pilot["lr_scale"] > 0 and pilot["run_overhead_s"] >= 0 and pilot["process_gain"] >= 1
  assert made.budgets_flop == sorted(made.budgets_flop) and made.heldout_flop > made.budgets_flop[-1]
  assert (tmp_path / "design.json").is_file()
