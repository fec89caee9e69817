"""Data-limited grid for L(N, D): three models × three training-set sizes of the default corpus
(62.5k, 250k tokens and the whole training split), each run for the same 1.25M tokens, so the
small subsets are repeated for many epochs. About 12 minutes on 2 CPU cores; `scaling report`
then fits Kaplan's L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D and draws it."""

import ml_collections

from scaling.config.defaults import base_config


def get_config():
  cfg = base_config()
  cfg.name = "data_limited_cpu"
  cfg.model.n_ctx = 128
  cfg.data.vocab_size = 2048
  cfg.train.batch_size = 16
  cfg.train.tokens = 1_250_000
  cfg.eval.every = 100
  cfg.checkpoint.every = 250
  cfg.sweep = ml_collections.ConfigDict()
  cfg.sweep.models = [(2, 32, 1), (2, 64, 1), (3, 96, 2)]
  cfg.sweep.max_train_tokens = [62_500, 250_000, 0]
  return cfg
