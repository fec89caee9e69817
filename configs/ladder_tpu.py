"""A TPU pod-slice ladder (`pip install -e '.[tpu]'`, multi-host: distributed.enabled=True):
N ≈ 1.3e7 … 1.2e9 non-embedding parameters at context 1024, bfloat16, global batch 512 × 1024 =
2^19 tokens (Kaplan's batch). Same structure as ladder_cpu.py."""

import ml_collections

from scaling.config.defaults import base_config


def get_config():
  cfg = base_config()
  cfg.name = "ladder_tpu"
  cfg.model.n_ctx = 1024
  cfg.model.compute_dtype = "auto"   # bfloat16 on TPU
  cfg.data.vocab_size = 50257
  cfg.train.batch_size = 512
  cfg.train.tokens = 30_000_000_000
  cfg.eval.every = 2000
  cfg.eval.batches = 32
  cfg.checkpoint.every = 2000
  cfg.distributed.enabled = True
  cfg.topology = "v5p:2x2x2"   # what `scaling compile` compiles it for: v5p-16, 8 chips
  # The largest point does not fit 8 chips as plain data parallelism (XLA: 324 GB of temporaries
  # per chip, 96 GB HBM). Parameters and AdamW moments sharded over the 8 chips, and each chip's
  # 64 sequences taken as 16 micro-batches of 4 (also the noise estimator's small batches):
  # 32.5 GB per chip (`scaling compile --config configs/ladder_tpu.py`).
  cfg.mesh.fsdp = 8
  cfg.gns.micro_batches = 16
  cfg.sweep = ml_collections.ConfigDict()
  # N = 12·n_layer·d_model²: 1.3e7, 8.5e7, 3.0e8, 7.1e8, 1.2e9
  cfg.sweep.models = [(6, 384, 6), (12, 768, 12), (24, 1024, 16), (24, 1536, 24), (24, 2048, 32)]
  cfg.sweep.max_train_tokens = [0]
  return cfg
