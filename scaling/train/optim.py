"""The optimizer and its learning-rate schedule, in one look.

AdamW (weight decay on matrices only) after optional global-norm clipping. The learning rate is
computed on the host for each step (`Schedule.lr`) and passed to the jitted step, which scales
AdamW's unit-rate update by it: every schedule and horizon of one model shape shares one compiled
step, and a run branched from another's checkpoint continues with its own schedule.

Schedules (train.schedule), step t counted from 0, w warm-up steps, T total steps, floor
f = min_lr_ratio·peak:
  cosine  t < w: peak·t/w; then f + (peak − f)·½(1 + cos(π·(t − w)/(T − w)))  (Kaplan 2020 §2.2:
          "3000 step linear warmup followed by a cosine decay to zero"; we decay to a floor).
  wsd     warm-up, then peak until the last K = round(decay_frac·T) steps, then a cooldown to f:
          f + (peak − f)·(1 − √x) ("1-sqrt") or f + (peak − f)·(1 − x) ("linear"),
          x = (t − (T − K))/K (Hägele et al. 2024, arXiv 2405.18392, §3). Up to its cooldown a
          WSD run is the same for every T, so one long run's checkpoints branch into many.
          With stable_ref_steps = r > 0 the stable phase is not flat but peak·√(r/max(t, r)), the
          reciprocal square root (Zhai et al. 2022, arXiv 2106.04560, §3.5: rsqrt with a cooldown),
          and the cooldown falls from the stable rate where it starts to min_lr_ratio of that
          rate: a longer run trains at a lower rate, still one run for every T.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from scaling.config.spec import TrainSpec
from scaling.errors import UserError

SCHEDULES = ("cosine", "wsd")
COOLDOWN_SHAPES = ("1-sqrt", "linear")


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The learning rate of every step of one run (see the module docstring)."""
  kind: str
  peak_lr: float
  total_steps: int
  warmup_steps: int
  min_lr_ratio: float
  decay_steps: int = 0          # wsd: length of the cooldown
  cooldown_shape: str = "1-sqrt"
  stable_ref_steps: int = 0     # wsd: > 0, the stable phase falls as √(ref/t) after this step

  def __post_init__(self):
    if self.kind not in SCHEDULES:
      raise UserError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
    if self.cooldown_shape not in COOLDOWN_SHAPES:
      raise UserError(f"train.cooldown_shape must be one of {', '.join(COOLDOWN_SHAPES)}, got "
                      f"{self.cooldown_shape!r}")

  @property
  def decay_start(self) -> int:
    """First step of the decay: the end of warm-up (cosine) or of the stable phase (wsd)."""
    if self.kind == "wsd":
      return max(self.warmup_steps, self.total_steps - self.decay_steps)
    return self.warmup_steps

  def stable_lr(self, step: int) -> float:
    """The rate of the stable phase at `step` (wsd): the peak, or its rsqrt decay."""
    ref = self.stable_ref_steps
    return self.peak_lr * math.sqrt(ref / step) if ref > 0 and step > ref else self.peak_lr

  def lr(self, step: int) -> float:
    if step < self.warmup_steps:
      return self.peak_lr * step / self.warmup_steps
    peak = self.stable_lr(self.decay_start) if self.kind == "wsd" else self.peak_lr
    floor = peak * self.min_lr_ratio
    if self.kind == "wsd" and step < self.decay_start:
      return self.stable_lr(step)
    span = max(self.total_steps - self.decay_start, 1)
    x = min(max((step - self.decay_start) / span, 0.0), 1.0)
    if self.kind == "cosine":
      return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * x))
    drop = math.sqrt(x) if self.cooldown_shape == "1-sqrt" else x
    return floor + (peak - floor) * (1.0 - drop)


def warmup_steps(train: TrainSpec, total_steps: int) -> int:
  """train.warmup_steps when set, else train.warmup_frac of the run; always below the run's
  length (a run of one step has none)."""
  w = train.warmup_steps or int(round(train.warmup_frac * total_steps))
  return max(1, min(w, total_steps - 1)) if total_steps > 1 else 0


def schedule(train: TrainSpec, peak_lr: float, total_steps: int) -> Schedule:
  """The run's schedule; its horizon is train.schedule_steps when set (a run stopped before its
  schedule ends, as Kaplan's fixed-horizon runs are read), else the run's own length."""
  horizon = train.schedule_steps or total_steps
  decay = int(round(train.decay_frac * horizon)) if train.schedule == "wsd" else 0
  return Schedule(train.schedule, peak_lr, horizon, warmup_steps(train, horizon),
                  train.min_lr_ratio, decay, train.cooldown_shape, train.stable_ref_steps)


def make_optimizer(train: TrainSpec):
  """AdamW at unit learning rate (the step multiplies its update by the step's rate).

  The rate stays a schedule of AdamW's own step count (a constant 1), so the optimizer state has
  the same structure as that of a scheduled AdamW: checkpoints of either restore into the other.
  """
  unit = lambda count: jnp.ones((), jnp.float32)
  decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)
  parts = [optax.clip_by_global_norm(train.grad_clip)] if train.grad_clip > 0 else []
  parts.append(optax.adamw(unit, b1=train.b1, b2=train.b2, weight_decay=train.weight_decay,
                           mask=decay_mask))
  return optax.chain(*parts)
