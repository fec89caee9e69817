"""Critical batch size by branched training (scaling/experiments/cbs.py) on the default corpus: per size one
source run at 16 sequences, forks at 7 batch sizes × 2 seeds from 4 points along it (the first
three inside the batch sweep's target losses 5.0–4.0 on the TinyStories sample, so the two measurements overlap), each fork
as long as the training before its point.

Run: scaling cbs --config configs/cbs_branch.py [--sweep runs/batch_sweep]   (the batch sweep's
B_crit(L) is then compared where the losses overlap). Sizes: the batch sweep's 2×64 model and, for
the B_crit(L) vs B_crit(D) comparison across sizes, 2×32 and 2×128.
"""

import ml_collections

from scaling.config.defaults import base_config


def get_config():
  cfg = base_config()
  cfg.name = "cbs_branch"
  cfg.model.n_ctx = 64
  cfg.data.vocab_size = 2048         # the batch sweep's corpus and tokenizer
  cfg.eval.batches = 8               # every fork is judged on the same 8 × 16 held-out sequences
  cfg.checkpoint.every = 100_000     # sources keep their branch points (keep_steps) and the end
  cfg.gns.ema_tokens = 32_768
  cfg.gns.preconditioned = True      # B_P of the source beside B_simple

  cfg.sweep = ml_collections.ConfigDict()
  cfg.sweep.models = [(2, 64, 1), (2, 32, 1), (2, 128, 2)]   # the sweep's, a smaller, a larger
  cfg.sweep.source_batch = 16        # sequences; the source's LR from the rule below
  cfg.sweep.warmup_tokens = 20_480   # the source's warm-up
  cfg.sweep.points_steps = [100, 200, 400, 800, 1600, 3200]   # states the source keeps …
  cfg.sweep.branch_points = [100, 200, 400, 800]              # … and those forked from
  cfg.sweep.batch_sizes = [4, 8, 16, 32, 64, 128, 256]    # the forks' batches (sequences) …
  cfg.sweep.branch_fraction = 1.0    # … each training this × the tokens before its point
  cfg.sweep.branch_tokens = 131_072  # (or this many tokens when branch_fraction is 0)
  cfg.sweep.seeds = [1, 2]           # data orders per fork (the bootstrap resamples them)
  cfg.sweep.evals_per_branch = 4     # held-out evaluations along each fork …
  cfg.sweep.fork_eval_batches = 24   # … of 24 × 16 sequences (less noise than the source's 8)
  cfg.sweep.tolerance = 0.02         # nats: Merrill et al.'s "within tolerance of the smallest"
  cfg.sweep.smooth_tokens = 32_768   # the source's training loss and online estimates: centred
                                     # window in tokens
  cfg.sweep.lr_ref = 3e-3            # LR at batch_ref sequences, ×(B/batch_ref)^lr_exponent
  cfg.sweep.batch_ref = 16
  cfg.sweep.lr_exponent = 0.25       # the batch sweep's rule, best at 6 of its 8 batches
  cfg.sweep.lr_max = 1e-2
  return cfg
