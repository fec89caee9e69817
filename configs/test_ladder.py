"""A three-point ladder of the smallest models, for tests of the sweep runner and the report."""

import ml_collections

from scaling.config.defaults import base_config


def get_config():
  cfg = base_config()
  cfg.name = "test_ladder"
  cfg.model.n_ctx = 16
  cfg.data.vocab_size = 300
  cfg.data.synthetic.train_tokens = 200_000   # the generated corpus, small for tests
  cfg.data.synthetic.eval_tokens = 16_384
  cfg.train.batch_size = 8
  cfg.train.tokens = 0
  cfg.train.steps = 60
  cfg.train.peak_lr = 3e-3
  cfg.eval.every = 30
  cfg.eval.batches = 2
  cfg.eval.batch_size = 8
  cfg.checkpoint.every = 10
  cfg.mesh.num_devices = 1
  cfg.sweep = ml_collections.ConfigDict()
  cfg.sweep.models = [(1, 16, 1), (1, 32, 2), (2, 48, 3)]
  cfg.sweep.max_train_tokens = [0]
  return cfg
