"""What a run writes about each of its steps, and the rules read off those records: the
metrics.jsonl record (losses, tokens, FLOPs, MFU), the progress line, the loss window that ends a
run at a target loss, and the stop at the first non-finite loss or gradient norm.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import jax
import numpy as np

from scaling.errors import UserError


class LossWindow:
  """Mean training loss over the most recent `window_tokens` tokens; `reached()` once that mean
  is below `threshold` (0 disables it). Used to end a run when it reaches a target loss."""

  def __init__(self, threshold: float, window_tokens: int):
    self.threshold, self.window_tokens = threshold, window_tokens
    self.records: list[tuple[int, float]] = []  # (tokens seen, loss), oldest first

  def add(self, record: dict) -> None:
    if self.threshold > 0 and record.get("loss") is not None:
      self.records.append((record["tokens"], record["loss"]))
      # Drop the oldest while the rest still span the window.
      while (len(self.records) > 1
             and self.records[-1][0] - self.records[1][0] >= self.window_tokens):
        self.records.pop(0)

  def reached(self) -> bool:
    if self.threshold <= 0 or len(self.records) < 2:
      return False
    full = self.records[-1][0] - self.records[0][0] >= self.window_tokens
    return full and float(np.mean([loss for _, loss in self.records])) < self.threshold


def finite_or_none(x: float):
  return float(x) if math.isfinite(x) else None


class Pending(NamedTuple):
  """A step whose metrics are still on the device: read one step later (scaling/train/loop.py)."""
  step: int                   # steps done
  metrics: object             # the step's StepMetrics (device arrays)
  evals: dict | None          # held-out losses evaluated after it, if any


def step_record(pending: Pending, t_prev: float, batch_tokens: int, fpt: dict, peak_flop_per_s: float):
  """(now, the metrics.jsonl record of one step): its metrics fetched from the device."""
  done, metrics, evals = pending.step, pending.metrics, pending.evals
  values = jax.device_get(metrics)
  now = time.time()
  record = {"step": done, "tokens": done * batch_tokens,
            "flop_kaplan": done * batch_tokens * fpt["kaplan_train"],  # C = 6·N·B·S (Kaplan)
            "flop_palm": done * batch_tokens * fpt["palm_train"]}
  record.update({k: finite_or_none(float(v)) for k, v in values.items()})
  record["step_time_s"] = now - t_prev
  record["tokens_per_s"] = batch_tokens / max(now - t_prev, 1e-9)
  record["model_flop_per_s"] = record["tokens_per_s"] * fpt["palm_train"]
  record["mfu"] = record["model_flop_per_s"] / peak_flop_per_s  # PaLM-count model FLOPs util.
  record["eval_loss"] = None
  record.update(evals or {})
  record["time"] = now
  return now, record


def check_finite(record: dict, manager, peak_lr: float, kaplan_lr: float) -> None:
  """Stops the run at the first NaN or infinite loss or gradient norm, before any checkpoint of
  that state is written, and says how to go on from the last good checkpoint: with half the LR,
  or Kaplan's LR(N) for this size when the LR was far above it."""
  bad = [k for k in ("loss", "grad_norm") if record.get(k) is None]
  if bad:
    step = record["step"]
    manager.wait_until_finished()
    latest = manager.latest_step()
    where = (f"the last good checkpoint is step {latest} (kept)" if latest is not None
             else "no checkpoint was written before it")
    lower = (f"{peak_lr / 2:.3g}" if peak_lr <= 4 * kaplan_lr else
             f"{kaplan_lr:.3g}, Kaplan's LR(N) for this size; {peak_lr:.3g} is far above it")
    raise UserError(f"the {' and '.join(bad)} became NaN or infinite at step {step}; {where}. "
                    f"Resume from it with a lower learning rate (--config.train.peak_lr="
                    f"{lower}) or without that step's batch "
                    f"(--config.train.skip_batches={step}), or start again with --overwrite")


def _fmt_time(seconds: float) -> str:
  seconds = int(max(0, seconds))
  return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_line(rec: dict, total: int, eta: float) -> str:
  parts = [f"step {rec['step']}/{total}", f"loss {rec['loss']:.4f}"]
  if rec.get("eval_loss") is not None:
    parts.append(f"eval {rec['eval_loss']:.4f}")
    parts += [f"{k.split('/', 1)[1]} {v:.4f}" for k, v in rec.items()
              if k.startswith("eval_loss/") and v is not None]
  if rec.get("epoch", 0) >= 0.1:
    parts.append(f"epoch {rec['epoch']:.2f}")
  parts.append(f"{rec.get('tokens_per_s', 0) / 1e3:.1f}k tok/s")
  if rec.get("b_simple_tokens"):
    parts.append(f"B_simple {rec['b_simple_tokens']:.3g} tok")
  parts.append(f"eta {_fmt_time(eta)}")
  return " | ".join(parts)
