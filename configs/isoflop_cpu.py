"""IsoFLOP sweep for this machine (2 CPU cores), the design `scaling quickstart` runs: four FLOP
budgets (PaLM count: 6N + attention + unembedding) from 5e10 to 4e11, six sizes N ≈ 7e3 … 3.3e5,
warm-up–stable–decay schedules with a cooldown branched from each size's longest run. Every run
stays within ~2 epochs of the embedded corpus's ~1.0M training tokens."""

from scaling.defaults import base_config
from scaling.isoflop import defaults


def get_config():
  cfg = base_config()
  cfg.name = "isoflop_cpu"
  cfg.model.n_ctx = 128
  cfg.data.vocab_size = 2048
  cfg.train.batch_size = 16
  cfg.train.decay_frac = 0.2
  cfg.eval.every = 100
  cfg.eval.batches = 8
  cfg.checkpoint.every = 1000
  cfg.sweep = defaults()
  cfg.sweep.budgets_flop = [5e10, 1e11, 2e11, 4e11]
  # (n_layer, d_model, n_heads): N = 12·n_layer·d_model² = 6.9e3, 2.5e4, 5.5e4, 9.8e4, 1.8e5, 3.3e5
  cfg.sweep.models = [(1, 24, 1), (2, 32, 1), (2, 48, 1), (2, 64, 1), (3, 72, 2), (3, 96, 2)]
  cfg.sweep.schedule = "wsd"
  cfg.sweep.warmup_steps = 20
  cfg.sweep.min_steps = 40
  cfg.sweep.max_epochs = 4.0
  return cfg
