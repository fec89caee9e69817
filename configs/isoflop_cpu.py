"""IsoFLOP sweep for this machine (2 CPU cores), the design `scaling quickstart` runs: seven FLOP
budgets (PaLM count: 6N + attention + unembedding) a factor √2 apart, 5e10 to 4e11, each with
six sizes of one family (2 layers, one head, widths 12–48: N = 3.5e3 … 5.5e4 non-embedding)
centred on its optimum, a 512-token BPE (the unembedding would otherwise be most of a tiny
model's FLOPs), warm-up–stable–decay schedules with each shorter budget's cooldown branched from
the size's longest run, a 60-step warm-up. Runs stay within 4 epochs of the corpus. The sizes, budgets and the 8× LR were measured on the
TinyStories sample (../shared/corpora/tinystories); another corpus needs them measured again.

One depth for every size: with 1- and 2-layer models mixed (an earlier design), a 1-layer model
was the best at every budget and the profiles zig-zagged with the depth, not with N; the
parabolas' vertices then moved with the noise (a = 0.34 [−0.89, 1.03]).

The warm-up: with 20 steps, some seeds of the wider sizes stalled at the unigram loss (≈ 5.1
nats) for tens of steps and ended far behind (L2-D48 at 4e11, three seeds: 3.37, 3.42, 4.11);
with 60 steps, 3.33, 3.33, 3.34. Those stalls made the sizes right of each optimum the noisiest
points of every profile, and so the intervals of a wide (docs/results/2026-12-06-isoflop-allocation.md).

The Kaplan–Chinchilla switches (Porian et al. 2024, arXiv 2406.19146) as an argument,
`isoflop_cpu.py:SWITCH,SWITCH,...`:
  conv=palm|kaplan|chinchilla   the FLOP count that sets each run's tokens
  warmup=fixed|per_param        60 steps, or N tokens (warm-up ∝ N)
  horizon=matched|longest       each run's schedule ends at its budget, or a cosine set for the
                                size's longest budget (Kaplan's fixed horizon; implies cosine)
  schedule=wsd|cosine           matched horizons by branched cooldowns, or one cosine per point
  lr=tuned                      each point at ½, 1, 2 × Kaplan's LR(N), the best kept
  design=precise                every point trained with 3 seeds, the fits on their means (the
                                run-to-run noise averaged down: the acceptance design of the
                                docs/results/2026-12-06-isoflop-allocation.md; ~3× the quickstart's sweep)
  design=3x                     the budgets 3× higher (1.5e11–1.2e12) and sizes d = 16–64: half the
                                runs end below the corpus's bigram loss (docs/results/2026-12-06-isoflop-allocation.md; ~7 min,
                                and 6 more for `scaling heldout --factor 3`)
  kaplan                        shorthand: conv=kaplan,warmup=fixed,horizon=longest
e.g. `scaling sweep --config configs/isoflop_cpu.py:kaplan --config.run_dir=runs/iso-kaplan`.
"""

from scaling.config.defaults import base_config
from scaling.experiments.isoflop import defaults

_SWITCHES = {"conv": ("flop_convention", ("palm", "kaplan", "chinchilla")),
             "warmup": ("warmup", ("fixed", "per_param")),
             "horizon": ("horizon", ("matched", "longest")),
             "schedule": ("schedule", ("wsd", "cosine")),
             "lr": ("lr_multipliers", ("tuned",))}


def _design_3x(sweep) -> None:
  """Every budget ~3× higher; the sizes shifted up with the vertices (N_opt ∝ C^0.63 → ~2×)."""
  sweep.budgets_flop = [1.5e11, 2.1e11, 3e11, 4.2e11, 6e11, 8.5e11, 1.2e12]
  sweep.models = [(2, d, 1) for d in (16, 20, 24, 32, 40, 48, 56, 64)]
  sweep.budget_models = ([[0, 1, 2, 3, 4]] * 2 + [[1, 2, 3, 4, 5]] * 2 + [[2, 3, 4, 5, 6]] * 2
                         + [[3, 4, 5, 6, 7]])


def _design_precise(sweep) -> None:
  """Every point trained with 3 seeds; the fits use their means."""
  sweep.seeds = 3


# Designs change several fields at once (`design=NAME`); switches set one field each.
_DESIGNS = {"3x": _design_3x, "precise": _design_precise}


def _apply(sweep, arg: str) -> None:
  for item in filter(None, (a.strip() for a in arg.split(","))):
    if item == "kaplan":
      continue
    key, _, value = item.partition("=")
    if key == "design" and value in _DESIGNS:
      _DESIGNS[value](sweep)
    elif key in _SWITCHES and value in _SWITCHES[key][1]:
      field = _SWITCHES[key][0]
      sweep[field] = [0.5, 1.0, 2.0] if field == "lr_multipliers" else value
    else:
      raise ValueError(f"unknown switch {item!r}; see the docstring of configs/isoflop_cpu.py")
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
  # Seven budgets a factor √2 apart over a span of 8 (below 5e10 the larger sizes get under 80
  # steps and the smallest size wins every budget). With WSD a budget between two others costs
  # each size only its cooldown branch (20 % of its length).
  cfg.sweep.budgets_flop = [5e10, 7e10, 1e11, 1.4e11, 2e11, 2.8e11, 4e11]
  # (n_layer, d_model, n_heads): N = 24·d_model² = 3.5e3, 4.7e3, 6.1e3, 9.6e3, 1.4e4, 1.9e4,
  # 2.5e4, 3.8e4, 5.5e4
  cfg.sweep.models = [(2, d, 1) for d in (12, 14, 16, 20, 24, 28, 32, 40, 48)]
  # Per budget six sizes centred (in log N) on its vertex, as measured on this corpus (a 3-seed
  # grid of 5–7 sizes per budget from 1.25e10 to 4e11: vertices 5.5e3, 8.0e3, 1.2e4, 1.4e4, 1.7e4,
  # 2.2e4, 2.5e4 from 5e10 to 4e11). Sizes far to the right of a vertex get few steps and make
  # the profile steep on one side, which a parabola in log N fits badly (Approach 2 is biased and
  # noisy on lopsided profiles); six sizes instead of five narrowed both intervals of a by a third
  # (three seeds: 0.13 and 0.19 wide, against 0.25 and 0.36).
  cfg.sweep.budget_models = ([[0, 1, 2, 3, 4, 5]] * 2 + [[1, 2, 3, 4, 5, 6]]
                             + [[2, 3, 4, 5, 6, 7]] * 2 + [[3, 4, 5, 6, 7, 8]] * 2)
  # 8 × Kaplan's LR(N): measured on this corpus (benchmarks/lr_scan.py, 600-step WSD runs of
  # (1,16,1) and (2,48,1)), the held-out loss falls from 1× to 8× (3.78 → 3.53 and 3.32 → 3.02)
  # and is flat or worse beyond (16×: 3.52 and 3.34; 32×: 3.56 and 4.69).
  cfg.sweep.lr_scale = 8.0
  cfg.sweep.schedule = "wsd"
  cfg.sweep.warmup_steps = 60
  cfg.sweep.min_steps = 80         # the warm-up and a cooldown
  cfg.sweep.max_epochs = 4.0
  if "kaplan" in arg.split(","):
    _apply(cfg.sweep, "conv=kaplan,warmup=fixed,horizon=longest")
  _apply(cfg.sweep, arg)
  return cfg
