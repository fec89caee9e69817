"""The optimizer and its learning-rate schedule, in one look.

AdamW (weight decay on matrices only) after optional global-norm clipping; the learning rate rises
linearly over the warm-up, then follows a cosine down to min_lr_ratio·peak_lr (Kaplan 2020 §2.2:
"3000 step linear warmup followed by a cosine decay to zero"; we decay to a floor).
"""

from __future__ import annotations

import jax
import optax

from scaling.spec import TrainSpec


def lr_schedule(peak_lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float):
  """Linear warm-up to peak_lr, then cosine decay to min_lr_ratio·peak_lr (Kaplan 2020 §2.2)."""
  warmup_steps = max(1, min(warmup_steps, total_steps - 1)) if total_steps > 1 else 0
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_lr, warmup_steps=warmup_steps,
      decay_steps=max(total_steps, warmup_steps + 1), end_value=peak_lr * min_lr_ratio)


def warmup_steps(train: TrainSpec, total_steps: int) -> int:
  """train.warmup_steps when set, else train.warmup_frac of the run."""
  return train.warmup_steps or int(round(train.warmup_frac * total_steps))


def make_optimizer(train: TrainSpec, peak_lr: float, total_steps: int):
  """(the optax transformation, the schedule step → learning rate)."""
  schedule = lr_schedule(peak_lr, total_steps, warmup_steps(train, total_steps), train.min_lr_ratio)
  decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)
  parts = [optax.clip_by_global_norm(train.grad_clip)] if train.grad_clip > 0 else []
  parts.append(optax.adamw(schedule, b1=train.b1, b2=train.b2, weight_decay=train.weight_decay,
                           mask=decay_mask))
  return optax.chain(*parts), schedule
