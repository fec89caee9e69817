"""The simple gradient noise scale B_simple = tr(Σ)/|G|² (McCandlish et al. 2018, appendix A.1):
their B_noise = tr(HΣ)/GᵀHG with the Hessian H taken as a multiple of the identity.

From the squared norms of gradients measured at two batch sizes B_small < B_big (in tokens),
E[|G_B|²] = |G|² + tr(Σ)/B gives unbiased estimates of |G|² and tr(Σ). Each per-step estimate is
noisy (and |G|² can come out negative), so both are averaged with a bias-corrected EMA and only
then divided: B_simple = EMA[tr Σ] / EMA[|G|²], undefined (NaN) while EMA[|G|²] ≤ 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class GnsState(NamedTuple):
  """EMA accumulators (not bias-corrected) and how many updates they hold."""
  ema_g2: jax.Array     # EMA of the |G|² estimate
  ema_trace: jax.Array  # EMA of the tr(Σ) estimate (per token)
  count: jax.Array      # number of updates


def init_state() -> GnsState:
  return GnsState(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32),
                  jnp.zeros((), jnp.int32))


def estimate_g2(sq_small, sq_big, b_small, b_big):
  """McCandlish 2018 eq. A.2: |G|² ≈ (B_big·|G_big|² − B_small·|G_small|²)/(B_big − B_small)."""
  return (b_big * sq_big - b_small * sq_small) / (b_big - b_small)


def estimate_trace(sq_small, sq_big, b_small, b_big):
  """McCandlish 2018 eq. A.2: tr(Σ) ≈ (|G_small|² − |G_big|²)/(1/B_small − 1/B_big)."""
  return (sq_small - sq_big) / (1.0 / b_small - 1.0 / b_big)


def ema_decay_per_step(decay: float, horizon_tokens: float, batch_tokens: float) -> float:
  """The per-step EMA decay: `decay` as given, or, with a horizon in tokens, exp(−B/horizon), so
  that every batch size averages over about the same number of tokens (mean age ≈ horizon)."""
  return float(np.exp(-batch_tokens / horizon_tokens)) if horizon_tokens > 0 else float(decay)


def update(state: GnsState, g2, trace, decay: float) -> GnsState:
  """One EMA step of each raw estimate; the estimates are never clipped (clipping a negative |G|²
  estimate would bias the ratio; McCandlish 2018 app. A.1 averages before dividing)."""
  return GnsState(decay * state.ema_g2 + (1 - decay) * g2,
                  decay * state.ema_trace + (1 - decay) * trace,
                  state.count + 1)


def b_simple(state: GnsState, decay: float) -> jax.Array:
  """Bias-corrected ratio of averages, in the unit of B_small/B_big (tokens here)."""
  correction = 1.0 - decay ** state.count.astype(jnp.float32)
  g2 = state.ema_g2 / jnp.maximum(correction, 1e-30)
  trace = state.ema_trace / jnp.maximum(correction, 1e-30)
  return jnp.where((g2 > 0) & (state.count > 0), trace / jnp.where(g2 > 0, g2, 1.0), jnp.nan)


def windowed_ratio(tokens_S: np.ndarray, trace_S: np.ndarray, g2_S: np.ndarray,
                   window_tokens: float) -> np.ndarray:
  """At each logged step, Σ tr(Σ) / Σ |G|² over the steps within ±window_tokens/2 tokens of it
  (centred, so no lag; a ratio of sums, as McCandlish 2018 app. A.1 averages before dividing).
  Steps without an estimate (NaN) are left out of the sums; NaN where the window's Σ|G|² ≤ 0.
  S indexes the logged steps; tokens_S is increasing."""
  tokens_S = np.asarray(tokens_S, float)
  ok = np.isfinite(trace_S) & np.isfinite(g2_S)
  c_trace = np.concatenate([[0.0], np.cumsum(np.where(ok, trace_S, 0.0))])
  c_g2 = np.concatenate([[0.0], np.cumsum(np.where(ok, g2_S, 0.0))])
  lo = np.searchsorted(tokens_S, tokens_S - window_tokens / 2, side="left")
  hi = np.searchsorted(tokens_S, tokens_S + window_tokens / 2, side="right")
  g2 = c_g2[hi] - c_g2[lo]
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(g2 > 0, (c_trace[hi] - c_trace[lo]) / np.where(g2 > 0, g2, 1.0), np.nan)


# The squared norms the estimator is fed (scaling/train/step.py measures them per device and whole).

def sq_norm(tree) -> jax.Array:
  """|g|², written as optax.global_norm writes it, so that XLA computes it once for the metric
  and the gradient clipping; on accelerators XLA fuses the per-leaf reductions."""
  return sum(jnp.sum(x * x) for x in jax.tree.leaves(tree)).astype(jnp.float32)


def joined_sq_norm(tree) -> jax.Array:
  """|g|² as one dot of the leaves joined: for a device's own gradient on several CPU devices,
  where a reduction per leaf is a kernel launch each, per device (8 forced CPU devices paid ~2 %
  of a step for them). Not on accelerators: the join is a copy of the whole gradient in device
  memory."""
  flat = jnp.concatenate([x.astype(jnp.float32).ravel() for x in jax.tree.leaves(tree)])
  return jnp.vdot(flat, flat)


def adam_second_moment(opt_state, step, b2: float) -> tuple | None:
  """(ν, 1 − β2^t): Adam's second moment before this step's update and its bias correction
  (Kingma & Ba 2015, arXiv 1412.6980, Algorithm 1: v̂ = ν/(1 − β2^t)); None when the optimizer
  has no second moment (e.g. SGD in tests)."""
  nu = optax.tree_utils.tree_get(opt_state, "nu")
  if nu is None:
    return None
  return nu, 1.0 - b2 ** jnp.maximum(step, 1).astype(jnp.float32)


def precond_sq_norms(tree, nu, correction, powers: tuple, eps: float = 1e-8) -> tuple:
  """Σ g²·P^k over every leaf, for each k in powers, with P = diag(1/(√v̂ + ε)) formed inside the
  reduction.

  In coordinates where Adam's update is plain SGD (θ' = P^(−1/2)θ), B_simple' = tr(PΣ)/(GᵀPG):
  McCandlish's B_simple (arXiv 1812.06162, app. A) with the Hessian taken ∝ P⁻¹ (P ≈ H⁻¹), k = 1.
  The alternative, H ∝ I in the original coordinates, weights by P² (k = 2)."""
  # Per leaf, P formed inside the reduction (one read of ν and of g, nothing stored): measured on
  # 8 forced CPU devices, cheaper than one dot over the joined leaves, whose joins of ν and of g·P
  # are extra passes over memory.
  def one(k):
    return jnp.sum(jnp.stack([jnp.sum(x * x / (jnp.sqrt(v / correction) + eps) ** k)
                              .astype(jnp.float32)
                              for v, x in zip(jax.tree.leaves(nu), jax.tree.leaves(tree))]))
  return tuple(one(k) for k in powers)
