"""IsoFLOP sweep expansion: tokens from budgets, skipped points, WSD branches, held-out shapes."""

import math

import pytest

from scaling.config.load import load_config_file
from scaling.config.spec import validate
from scaling.errors import UserError
from scaling.experiments import isoflop
from scaling.experiments.expand import expand
from scaling.model.transformer import ModelConfig, flop_per_token, param_count
from scaling.train import optim
from conftest import REPO


def _cfg(tmp_path, **sweep):
  cfg = load_config_file(str(REPO / "configs" / "test_small.py"))
  cfg.run_dir = str(tmp_path / "sweep")
  cfg.sweep = isoflop.defaults()
  cfg.sweep.models = [(1, 16, 1), (1, 32, 2), (2, 48, 1)]
  cfg.sweep.budgets_flop = [2e9, 6e9]
  cfg.sweep.min_steps = 10
  cfg.sweep.warmup_steps = 3
  for k, v in sweep.items():
    cfg.sweep[k] = v
  return cfg


def _fpt(cfg, shape, key="palm_train"):
  from scaling.data import tokenize
  n_vocab = tokenize.store_for(validate(cfg).data, verbose=False).n_vocab
  m = ModelConfig(n_layer=shape[0], d_model=shape[1], n_heads=shape[2], n_ctx=cfg.model.n_ctx,
                  n_vocab=n_vocab).validate()
  return flop_per_token(m)[key], param_count(m)


def test_each_run_spends_its_budget_and_branches_at_its_cooldown(tmp_path):
  cfg = _cfg(tmp_path)
  runs = expand(cfg)
  batch_tokens = cfg.train.batch_size * cfg.model.n_ctx
  by_name = {r.name.split("-", 1)[1]: r for r in runs}
  for r in runs:
    fpt, _ = _fpt(cfg, (r.model.n_layer, r.model.d_model, r.model.n_heads))
    assert r.train.steps == round(r.budget_flop / (fpt * batch_tokens))
    assert r.train.steps * batch_tokens * fpt == pytest.approx(r.budget_flop, rel=0.05)
    assert r.train.schedule == "wsd" and r.train.warmup_steps == 3
  # Per size the longest run is trained first and keeps the checkpoint its branch starts from.
  longest, short = by_name["C6.00e09-L1-D16-H1"], by_name["C2.00e09-L1-D16-H1"]
  assert runs.index(longest) < runs.index(short)
  start = optim.schedule(validate(short).train, 1.0, short.train.steps).decay_start
  assert start == short.train.steps - round(0.2 * short.train.steps)
  assert short.train.init_from == f"{longest.run_dir}@{start}"
  assert str(start) in longest.checkpoint.keep_steps.split(",")


def test_points_below_min_steps_or_above_max_epochs_are_left_out(tmp_path, capsys):
  cfg = _cfg(tmp_path, min_steps=40, max_epochs=0.5)
  points, skipped = isoflop.design(cfg)
  assert all(p.steps >= 40 and p.epochs <= 0.5 for p in points)
  assert skipped and all("min_steps" in s or "max_epochs" in s for s in skipped)


def test_conventions_change_the_tokens(tmp_path):
  steps = {}
  for conv in ("palm", "kaplan", "chinchilla"):
    cfg = _cfg(tmp_path, flop_convention=conv, min_steps=1, max_epochs=1e9)
    steps[conv] = {r.name: r.train.steps for r in expand(cfg)}
    assert all(r.flop_convention == conv for r in expand(cfg))
  name = next(iter(steps["palm"]))
  # 6N counts the fewest FLOPs per token, so the same budget buys the most tokens.
  assert steps["kaplan"][name] > steps["palm"][name]


def test_cosine_matched_and_fixed_horizon(tmp_path):
  runs = expand(_cfg(tmp_path, schedule="cosine", horizon="longest"))
  for r in runs:
    assert r.train.schedule == "cosine" and not r.train.init_from
    assert r.train.schedule_steps >= r.train.steps
  with pytest.raises(UserError, match="horizon=longest"):
    expand(_cfg(tmp_path, horizon="longest"))


def test_heldout_shapes_bracket_the_predicted_optimum(tmp_path):
  cfg = _cfg(tmp_path)
  runs = isoflop.heldout_runs(cfg, 2e10, 3e4)
  ns = []
  for r in runs:
    assert "heldout" in r.run_dir and r.budget_flop == 2e10 and not r.train.init_from
    _, counts = _fpt(cfg, (r.model.n_layer, r.model.d_model, r.model.n_heads))
    ns.append(counts.n_kaplan)
  assert ns[0] < ns[1] < ns[2]
  for n, factor in zip(ns, (0.5, 1.0, 2.0)):
    assert abs(math.log(n / (factor * 3e4))) < math.log(1.35)


def test_isoflop_cpu_switches():
  cfg = load_config_file(str(REPO / "configs" / "isoflop_cpu.py") + ":kaplan")
  s = cfg.sweep
  assert (s.flop_convention, s.warmup, s.horizon, s.schedule) == ("kaplan", "fixed", "longest",
                                                                  "cosine")
  s = load_config_file(str(REPO / "configs" / "isoflop_cpu.py") + ":warmup=per_param,lr=tuned").sweep
  assert s.warmup == "per_param" and list(s.lr_multipliers) == [0.5, 1.0, 2.0]
  with pytest.raises(UserError, match="unknown switch"):
    load_config_file(str(REPO / "configs" / "isoflop_cpu.py") + ":conv=bytes")
  with pytest.raises(UserError, match="unknown switch"):
    load_config_file(str(REPO / "configs" / "isoflop_cpu.py") + ":design=10x")
  s = load_config_file(str(REPO / "configs" / "isoflop_cpu.py") + ":design=3x").sweep
  assert s.budgets_flop[0] == pytest.approx(1.5e11) and s.budgets_flop[-1] == pytest.approx(1.2e12)
  assert len(s.budget_models) == len(s.budgets_flop)
  assert all(0 <= i < len(s.models) and len(set(m)) == 5 for m in s.budget_models for i in m)
  base = load_config_file(str(REPO / "configs" / "isoflop_cpu.py")).sweep
  assert base.seeds == 1 and load_config_file(
      str(REPO / "configs" / "isoflop_cpu.py") + ":design=precise").sweep.seeds == 3
  # Six sizes per budget, each the sweep's own, in increasing N.
  assert len(base.budget_models) == len(base.budgets_flop)
  assert all(len(m) == 6 and list(m) == sorted(set(m)) and 0 <= m[0] and m[-1] < len(base.models)
             for m in base.budget_models)


def test_seeds_train_every_point_again_each_branching_from_its_own_run(tmp_path):
  one, three = expand(_cfg(tmp_path)), expand(_cfg(tmp_path, seeds=3))
  assert len(three) == 3 * len(one)
  seeds = {}
  for r in three:
    base, _, suffix = r.name.rpartition("-s")
    index = int(suffix) if suffix.isdigit() else 0
    assert r.seed == index                       # test_small.py's seed is 0
    seeds.setdefault(index, []).append(r)
    if r.train.init_from:                        # a branch starts from its own seed's run
      source = r.train.init_from.rsplit("@", 1)[0]
      assert source.endswith(f"-s{index}") == bool(index)
  assert sorted(seeds) == [0, 1, 2] and all(len(v) == len(one) for v in seeds.values())
  held = isoflop.heldout_runs(_cfg(tmp_path, seeds=2), 2e10, 3e4)
  assert len(held) == 6 and sorted(r.seed for r in held) == [0, 0, 0, 1, 1, 1]
  for bad in (0, -2):
    with pytest.raises(UserError, match="sweep.seeds"):
      expand(_cfg(tmp_path, seeds=bad))
