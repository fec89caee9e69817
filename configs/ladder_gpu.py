"""A GPU ladder (one node, `pip install -e '.[cuda]'`): N ≈ 3e6 … 1.5e8 non-embedding parameters
at context 1024, vocabulary 32768, bfloat16 compute, 20 tokens per total parameter at the top.
The same structure as ladder_cpu.py; run with `scaling sweep --config configs/ladder_gpu.py`."""

import ml_collections

from scaling.config.defaults import base_config


def get_config():
  cfg = base_config()
  cfg.name = "ladder_gpu"
  cfg.model.n_ctx = 1024
  cfg.model.compute_dtype = "auto"   # bfloat16 on GPU
  cfg.data.vocab_size = 32768
  cfg.train.batch_size = 64          # 65,536 tokens a step
  cfg.train.tokens = 4_000_000_000
  cfg.eval.every = 1000
  cfg.eval.batches = 16
  cfg.checkpoint.every = 2000
  cfg.sweep = ml_collections.ConfigDict()
  # N = 12·n_layer·d_model²: 3.1e6, 1.3e7, 2.8e7, 5.7e7, 8.5e7, 1.5e8
  cfg.sweep.models = [(4, 256, 4), (6, 384, 6), (8, 512, 8), (10, 640, 10), (12, 768, 12),
                      (16, 896, 14)]
  cfg.sweep.max_train_tokens = [0]
  return cfg
