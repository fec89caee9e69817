"""A tiny model on the default (generated) corpus: a few minutes on 2 CPU cores."""

from scaling.config.defaults import base_config


def get_config():
  cfg = base_config()
  cfg.name = "tiny"
  cfg.model.n_layer = 2
  cfg.model.d_model = 128
  cfg.model.n_heads = 2
  cfg.model.n_ctx = 128
  cfg.data.vocab_size = 2048
  cfg.train.batch_size = 16
  cfg.train.tokens = 2_000_000     # ≈ 980 steps of 16 × 128 tokens, ≈ 2 epochs of the sample
  cfg.eval.every = 100
  cfg.checkpoint.every = 250
  return cfg
