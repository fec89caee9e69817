"""The CPU model ladder: six models, N ≈ 6e3 … 8e5 (non-embedding), on the generated corpus
(data.source = "synthetic", whose entropy rate H is known), each for the same 2.5M tokens at
4 × Kaplan's LR(N). About 8 minutes on 2 CPU cores. `scaling fit` on its folder fits L(N) and, H
being known, L(N) − H = (N_c/N)^α_N.

Every model has at least two layers: copying a slot value from earlier in a document takes an
induction circuit, which one layer does not form (a 1-layer model's loss on repeated slots stayed
near a guess's). Widths and depths spread N roughly evenly in log space (shape matters little at
fixed N, Kaplan 2020 §3.1).

The learning rate: Kaplan's LR(N) rule (fitted on text, models of 1e6+ parameters) is too low
here: (2, 64, 1) for 1.25M tokens ended at 2.22 nats at 1×, 1.74 at 2×, 1.55 at 4×, 1.55 at 8×.
"""

import ml_collections

from scaling.config.defaults import base_config


def get_config():
  cfg = base_config()
  cfg.name = "ladder_cpu"
  cfg.model.n_ctx = 128
  cfg.data.vocab_size = 2048
  cfg.train.batch_size = 16
  cfg.train.tokens = 4_000_000        # ≈ 1950 steps of 16 × 128 tokens: the training split once
  cfg.train.lr_scale = 4.0
  cfg.eval.every = 250
  cfg.eval.batches = 8
  cfg.checkpoint.every = 250

  cfg.sweep = ml_collections.ConfigDict()
  # (n_layer, d_model, n_heads): N = 12·n_layer·d_model² = 1.4e4, 2.5e4, 3.8e4, 5.5e4, 9.8e4, 1.5e5
  cfg.sweep.models = [(2, 24, 1), (2, 32, 1), (2, 40, 1), (2, 48, 1), (2, 64, 1), (2, 80, 1)]
  cfg.sweep.max_train_tokens = [0]    # 0: the whole training split; list D-limits for L(N, D)
  return cfg
