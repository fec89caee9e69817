"""Shape experiments: the grid holds N fixed, every shape's counts are exact, and the analysis
recovers a known collapse and known loss increases from synthetic runs."""

import json
import math

import pytest

from scaling.config import load
from scaling.experiments import shapes
from scaling.experiments.expand import expand
from scaling.laws import sweepfit
from scaling.model.transformer import ModelConfig, flop_per_token, param_count
from scaling.report import markdown, render
from scaling.train.summary import RunSummary
from conftest import tree_sizes


def _shape_config(arg="2e5,8e5"):
  return load.load_config_file(f"configs/shapes_cpu.py:{arg}")


def test_grid_holds_n_within_15_percent_and_varies_each_factor():
  cfg = _shape_config()
  by_label = {}
  for n_layer, d_model, n_heads, d_ff, group in cfg.sweep.models:
    for part in group.split(";"):
      if ":" in part:
        by_label.setdefault(part.split(":")[0], []).append((n_layer, d_model, n_heads, d_ff, part))
  assert set(by_label) == {"N2e5", "N8e5"}
  for label, members in by_label.items():
    target = float(label[1:])
    for n_layer, d_model, n_heads, d_ff, _ in members:
      assert abs(shapes.n_kaplan(n_layer, d_model, d_ff) / target - 1) < 0.15
    aspect = sorted(d / l for l, d, h, f, g in members if "aspect" in g)
    assert aspect[0] < 16 and aspect[-1] >= 128           # covers the range the report quotes
    heads = sorted(d // h for l, d, h, f, g in members if "heads" in g)
    assert heads[0] == 16 and heads[-1] >= 96
    ratios = sorted(f / d for l, d, h, f, g in members if "ff" in g)
    assert ratios[0] == 1 and ratios[-1] == 8
  # Each shape is trained once, however many panels it sits in.
  keys = [tuple(m[:4]) for m in cfg.sweep.models]
  assert len(keys) == len(set(keys))


def test_config_argument_errors():
  from scaling.errors import UserError
  with pytest.raises(UserError, match="bad argument"):
    _shape_config("-1")
  with pytest.raises(UserError, match="does not take an argument"):
    load.load_config_file("configs/tiny.py:3")


def test_points_carry_d_ff_and_group(tmp_path):
  cfg = _shape_config("2e5")
  cfg.run_dir = str(tmp_path)
  pts = expand(cfg)
  assert len(pts) == len(cfg.sweep.models)
  ff8 = next(p for p in pts if p.model.d_ff == 8 * p.model.d_model)
  assert ff8.group.startswith("N2e5:") and "ff" in ff8.group
  assert f"-F{ff8.model.d_ff}" in ff8.run_dir
  default = next(p for p in pts if p.group == "depth")
  assert default.model.d_ff == 4 * default.model.d_model


# Hand counts of two non-default shapes of the grid (Kaplan 2020 §2.1; biases and LayerNorms counted by hand).
# (2, 96, 6 heads of 16, d_ff 384): per block 2·96·(2·96 + 384) = 110 592 weights;
# biases 3·96 + 96 + 384 + 96 = 864; LayerNorms 4·96 = 384; final LayerNorm 192.
# (2, 72, 2 heads of 36, d_ff 576 = 8·d): per block 2·72·(144 + 576) = 103 680; biases
# 3·72 + 72 + 576 + 72 = 936; LayerNorms 288; final 144.
@pytest.mark.parametrize("shape,n_kaplan,n_exact", [
    ((2, 96, 6, 384), 221_184, 2 * (110_592 + 864 + 384) + 192),
    ((2, 72, 2, 576), 207_360, 2 * (103_680 + 936 + 288) + 144),
])
def test_hand_counts_of_nondefault_shapes(shape, n_kaplan, n_exact):
  n_layer, d_model, n_heads, d_ff = shape
  cfg = ModelConfig(n_layer=n_layer, d_model=d_model, n_heads=n_heads, d_ff=d_ff, n_ctx=128,
                    n_vocab=2048)
  counts = param_count(cfg)
  assert counts.n_kaplan == n_kaplan
  assert counts.n_exact_nonemb == n_exact
  assert counts.n_embedding == 2048 * d_model + 128 * d_model
  flops = flop_per_token(cfg)
  # PaLM appendix B: 6N + 12·n_layer·d_attn·n_ctx, plus 6·d_model·n_vocab for the logits.
  assert flops["palm_train"] == 6 * n_kaplan + 12 * n_layer * d_model * 128 + 6 * d_model * 2048


def test_every_grid_shape_counts_equal_its_parameter_tree():
  for n_layer, d_model, n_heads, d_ff, _ in _shape_config().sweep.models:
    cfg = ModelConfig(n_layer=n_layer, d_model=d_model, n_heads=n_heads, d_ff=d_ff, n_ctx=128,
                      n_vocab=2048)
    sizes = tree_sizes(cfg)
    assert param_count(cfg).n_total == sizes["total"]
    assert param_count(cfg).n_kaplan == sizes["block_kernels"]
    assert shapes.n_kaplan(n_layer, d_model, d_ff) == sizes["block_kernels"]


def _row(n_layer, d_model, n_heads, d_ff, group, loss, n_vocab=2048, n_ctx=128):
  cfg = ModelConfig(n_layer=n_layer, d_model=d_model, n_heads=n_heads, d_ff=d_ff, n_ctx=n_ctx,
                    n_vocab=n_vocab)
  counts = param_count(cfg)
  return RunSummary(**counts._asdict(), final_eval_loss=loss, group=group,
                    shape={"n_layer": n_layer, "d_model": d_model, "n_heads": n_heads,
                           "d_head": cfg.head_dim, "d_ff": cfg.ff_dim})


def test_collapse_is_exact_for_a_law_in_non_embedding_n():
  # Losses that follow L = (N_c/N)^0.07 exactly in non-embedding N: zero rms that way, and a
  # clear spread when the (depth-dependent) embedding parameters are added.
  rows = []
  for n_layer, d_model, n_heads, d_ff, group in shapes.depth_ladder([2.5e4, 7.5e4, 2e5]):
    n = shapes.n_kaplan(n_layer, d_model, d_ff)
    rows.append(_row(n_layer, d_model, n_heads, d_ff, group, (1e9 / n) ** 0.07))
  col = shapes.depth_collapse(rows)
  assert col["non_embedding"]["rms_pct"] < 1e-8
  assert col["non_embedding"]["alpha"] == pytest.approx(0.07, rel=1e-9)
  assert col["total"]["rms_pct"] > 0.5
  assert sorted(col["non_embedding"]["depth_mean_resid_pct"]) == [1, 2, 4, 8]


def test_panels_measure_increase_over_the_best_shape(tmp_path):
  grid = shapes.merge(shapes.shape_grid(2e5), shapes.depth_ladder([2.5e4, 7.5e4]))
  rows = []
  for n_layer, d_model, n_heads, d_ff, group in grid:
    # A known penalty: 1% per factor-of-2 of aspect ratio away from 32, nothing else.
    loss = 4.0 * (1 + 0.01 * abs(math.log2(d_model / n_layer / 32)))
    rows.append(_row(n_layer, d_model, n_heads, d_ff, group, loss))
  pan = shapes.shape_panels(rows)["N2e5"]
  best = min(r.final_eval_loss for r in rows if r.group.startswith("N2e5")
             or ";N2e5" in r.group)
  assert pan["best_loss"] == pytest.approx(best)
  aspect = pan["panels"]["aspect"]
  for x, inc in zip(aspect["x"], aspect["increase_pct"]):
    expected = 100 * (4.0 * (1 + 0.01 * abs(math.log2(x / 32))) / best - 1)
    assert inc == pytest.approx(expected, abs=1e-9)
  assert set(pan["panels"]) == {"aspect", "heads", "ff"}
  # The report draws both figures from these rows.
  figures = {}
  result = sweepfit.shape_numbers(rows)
  render._figure_shape_factors(result["panels"], tmp_path, figures)
  render._figure_depth_collapse(result["collapse"], tmp_path, figures)
  assert set(figures) == {"shape_factors", "depth_collapse"}
  for name in figures.values():
    assert (tmp_path / name).stat().st_size > 20_000
  md = "\n".join(markdown._shapes(result))
  assert "N2e5" in md and "rms deviation" in md
  json.dumps(result, default=float)  # serialisable for fits.json
