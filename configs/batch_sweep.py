"""Batch-size sweep of one tiny model on the default corpus: B_crit(L) from S and E per batch, at
the best of a small LR grid per batch. Its target losses were chosen on the TinyStories sample
(../shared/corpora/tinystories, vocabulary 2048); on another corpus set sweep.targets to losses its
runs cross.

Run: scaling bsweep --config configs/batch_sweep.py   (about 20–30 minutes on 2 CPU cores)
"""

import ml_collections

from scaling.config.defaults import base_config


def get_config():
  cfg = base_config()
  cfg.name = "batch_sweep"
  cfg.model.n_layer = 2
  cfg.model.d_model = 64
  cfg.model.n_heads = 1
  cfg.model.n_ctx = 64
  cfg.data.vocab_size = 2048
  cfg.eval.every = 1_000_000        # only at the end: the sweep reads the training loss
  cfg.eval.batches = 4
  cfg.checkpoint.every = 2000
  cfg.gns.ema_tokens = 32_768       # the EMA's horizon in tokens (the same at every batch)
  cfg.gns.preconditioned = True     # B_P beside B_simple

  cfg.sweep = ml_collections.ConfigDict()
  cfg.sweep.batch_sizes = [2, 4, 8, 16, 32, 64, 128, 256]   # sequences of n_ctx tokens
  cfg.sweep.targets = [5.0, 4.8, 4.6, 4.4, 4.2, 4.0]     # nats/token, training loss
  cfg.sweep.lr_ref = 3e-3           # learning rate at batch_ref sequences …
  cfg.sweep.batch_ref = 16
  cfg.sweep.lr_exponent = 0.25      # … scaled by (B / batch_ref)^lr_exponent …
  cfg.sweep.lr_max = 1e-2           # … and capped here; each batch is run at these multiples
  cfg.sweep.lr_multipliers = [0.5, 1.0, 2.0]   # of the rule, the best kept per target …
  cfg.sweep.lr_extend = 2           # … and widened by ×½ or ×2 (this many rounds) where the best
                                    # sits at the grid's edge
  cfg.sweep.warmup_tokens = 20_480  # linear warm-up, the same tokens at every batch
  cfg.sweep.max_tokens = 6_000_000  # per run, unless it reaches the lowest target first
  cfg.sweep.max_steps = 20_000
  cfg.sweep.stop_margin = 0.05      # run on until the smoothed loss is this far below the last target
  cfg.sweep.smooth_tokens = 32_768  # centred moving average of the training loss, in tokens
  return cfg
