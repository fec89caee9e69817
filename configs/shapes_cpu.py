"""Shape experiments on the default corpus (Kaplan 2020 §3.1, Figures 5 and 6).

At each fixed non-embedding N (default 2e5, the smallest N at which one layer reaches an aspect
ratio of 128), one factor varies at a time: aspect ratio d_model/n_layer (depths 1–8), head size
(16–96) and d_ff/d_model (1–8); the others stay at head size ≈ 32 and d_ff = 4·d_model. A ladder of
depths 1, 2, 4, 8 at N ≈ 2.5e4 and 7.5e4 adds the points of Figure 6. Every run sees the same
tokens with Kaplan's LR(N) rule, as in the ladders.

  scaling sweep --config configs/shapes_cpu.py               # N = 2e5 and the depth ladder
  scaling sweep --config configs/shapes_cpu.py:2e5,8e5       # a second fixed N (slower)
  scaling report runs/shapes_cpu
"""

import ml_collections

from scaling.experiments import shapes
from scaling.config.defaults import base_config


def get_config(n_targets: str = "2e5"):
  targets = [float(x) for x in n_targets.split(",") if x.strip()]
  if not targets or min(targets) <= 0:
    raise ValueError("give positive N targets, e.g. 2e5,8e5")
  cfg = base_config()
  cfg.name = "shapes_cpu"
  cfg.model.n_ctx = 128
  cfg.data.vocab_size = 2048
  cfg.train.batch_size = 16
  cfg.train.tokens = 1_000_000        # ≈ 490 steps of 16 × 128 tokens, ≈ 1 epoch
  cfg.eval.every = 250
  cfg.eval.batches = 8
  cfg.checkpoint.every = 250

  cfg.sweep = ml_collections.ConfigDict()
  grids = [shapes.shape_grid(n) for n in targets]
  cfg.sweep.models = shapes.merge(*grids, shapes.depth_ladder([2.5e4, 7.5e4]))
  cfg.sweep.max_train_tokens = [0]
  return cfg
