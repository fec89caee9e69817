"""IsoFLOP sweep for this machine (2 CPU cores), the design `scaling quickstart` runs: five FLOP
budgets (PaLM count: 6N + attention + unembedding) from 1e11 to 4.2e11, sizes N ≈ 3e3 … 5.5e4
(non-embedding), a 512-token BPE (the unembedding would otherwise be most of a tiny model's
FLOPs), warm-up–stable–decay schedules with each shorter budget's cooldown branched from the
size's longest run. Runs stay within 4 epochs of the embedded corpus.

The Kaplan–Chinchilla switches (Porian et al. 2024, arXiv 2406.19146) as an argument,
`isoflop_cpu.py:SWITCH,SWITCH,...`:
  conv=palm|kaplan|chinchilla   the FLOP count that sets each run's tokens
  warmup=fixed|per_param        20 steps, or N tokens (warm-up ∝ N)
  horizon=matched|longest       each run's schedule ends at its budget, or a cosine set for the
                                size's longest budget (Kaplan's fixed horizon; implies cosine)
  schedule=wsd|cosine           matched horizons by branched cooldowns, or one cosine per point
  lr=tuned                      each point at ½, 1, 2 × Kaplan's LR(N), the best kept
  kaplan                        shorthand: conv=kaplan,warmup=fixed,horizon=longest
e.g. `scaling sweep --config configs/isoflop_cpu.py:kaplan --config.run_dir=runs/iso-kaplan`.
"""

from scaling.defaults import base_config
from scaling.isoflop import defaults

_SWITCHES = {"conv": ("flop_convention", ("palm", "kaplan", "chinchilla")),
             "warmup": ("warmup", ("fixed", "per_param")),
             "horizon": ("horizon", ("matched", "longest")),
             "schedule": ("schedule", ("wsd", "cosine")),
             "lr": ("lr_multipliers", ("tuned",))}


def _apply(sweep, arg: str) -> None:
  for item in filter(None, (a.strip() for a in arg.split(","))):
    if item == "kaplan":
      continue
    key, _, value = item.partition("=")
    if key not in _SWITCHES or value not in _SWITCHES[key][1]:
      raise ValueError(f"unknown switch {item!r}; see the docstring of configs/isoflop_cpu.py")
    field = _SWITCHES[key][0]
    sweep[field] = [0.5, 1.0, 2.0] if field == "lr_multipliers" else value
  if sweep.horizon == "longest":
    sweep.schedule = "cosine"


def get_config(arg: str = ""):
  cfg = base_config()
  cfg.name = "isoflop_cpu"
  cfg.model.n_ctx = 128
  cfg.data.vocab_size = 512
  cfg.train.batch_size = 16
  cfg.train.decay_frac = 0.2
  cfg.eval.every = 250
  cfg.eval.batches = 16
  cfg.checkpoint.every = 1000
  cfg.sweep = defaults()
  # Five budgets a factor √2 apart: with WSD, a budget between two others costs only the
  # cooldown branch of each size (20 % of its length).
  cfg.sweep.budgets_flop = [1e11, 1.5e11, 2.1e11, 3e11, 4.2e11]
  # (n_layer, d_model, n_heads): N = 12·n_layer·d_model² = 3.1e3, 6.9e3, 1.4e4, 2.5e4, 5.5e4
  cfg.sweep.models = [(1, 16, 1), (1, 24, 1), (2, 24, 1), (2, 32, 1), (2, 48, 1)]
  # 8 × Kaplan's LR(N): measured on this corpus (benchmarks/lr_scan.py, 600-step WSD runs of
  # (1,16,1) and (2,48,1)), the held-out loss falls from 1× to 8× (3.78 → 3.53 and 3.32 → 3.02)
  # and is flat or worse beyond (16×: 3.52 and 3.34; 32×: 3.56 and 4.69).
  cfg.sweep.lr_scale = 8.0
  cfg.sweep.schedule = "wsd"
  cfg.sweep.warmup_steps = 20
  cfg.sweep.min_steps = 40
  cfg.sweep.max_epochs = 4.0
  if "kaplan" in arg.split(","):
    _apply(cfg.sweep, "conv=kaplan,warmup=fixed,horizon=longest")
  _apply(cfg.sweep, arg)
  return cfg
