"""The smallest useful run, for tests: a 1-layer, 32-wide model, 16-token windows."""

from scaling.config.defaults import base_config


def get_config():
  cfg = base_config()
  cfg.name = "test_small"
  cfg.model.n_layer = 1
  cfg.model.d_model = 32
  cfg.model.n_heads = 2
  cfg.model.n_ctx = 16
  cfg.data.vocab_size = 300
  cfg.data.synthetic.train_tokens = 200_000   # the generated corpus, small for tests
  cfg.data.synthetic.eval_tokens = 16_384
  cfg.train.batch_size = 8
  cfg.train.tokens = 0
  cfg.train.steps = 20
  cfg.train.peak_lr = 3e-3
  cfg.eval.every = 10
  cfg.eval.batches = 2
  cfg.eval.batch_size = 8
  cfg.checkpoint.every = 5
  cfg.checkpoint.keep = 3
  return cfg
