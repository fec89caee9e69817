"""The CPU model ladder of `scaling quickstart`: six models, N ≈ 7e3 … 8e5 (non-embedding), on
the embedded corpus, each for the same tokens with Kaplan's LR(N) rule. About 7–9 minutes on 2 CPU
cores. Widths and depths are chosen so that N is roughly evenly spread in log space (shape matters
little at fixed N, Kaplan 2020 §3.1)."""

import ml_collections

from scaling.defaults import base_config


def get_config():
  cfg = base_config()
  cfg.name = "ladder_cpu"
  cfg.model.n_ctx = 128
  cfg.data.vocab_size = 2048
  cfg.train.batch_size = 16
  cfg.train.tokens = 1_250_000        # ≈ 610 steps of 16 × 128 tokens, ≈ 1.2 epochs
  cfg.eval.every = 250
  cfg.eval.batches = 8
  cfg.checkpoint.every = 250
  cfg.eval.extra_sources = "python-docs=builtin:python-docs"  # out-of-distribution held-out set

  cfg.sweep = ml_collections.ConfigDict()
  # (n_layer, d_model, n_heads): N = 12·n_layer·d_model² = 6.9e3, 2.5e4, 5.5e4, 9.8e4, 3.3e5, 7.9e5
  cfg.sweep.models = [(1, 24, 1), (2, 32, 1), (2, 48, 1), (2, 64, 1), (3, 96, 2), (4, 128, 2)]
  cfg.sweep.max_train_tokens = [0]    # 0: the whole training split; list D-limits for L(N, D)
  return cfg
