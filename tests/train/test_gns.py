"""The gradient-noise-scale estimator against per-example gradients and a closed-form problem."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scaling.config.spec import GnsSpec
from scaling.train import gns
from scaling.train.step import BatchGeometry, Trainer, TrainState, make_mesh, make_train_step


def test_estimators_are_unbiased_against_per_example_gradients():
  # A finite population of per-example gradients; batches drawn with replacement from it, so
  # |G|² and tr(Σ) are those of the population (exact), and E[|G_B|²] = |G|² + tr(Σ)/B.
  rng = np.random.default_rng(0)
  pop = rng.normal(0.3, 1.0, (500, 6)) * np.array([1, 2, 0.5, 1, 3, 1])
  g_true = pop.mean(0)
  g2_true = g_true @ g_true
  trace_true = np.trace(np.cov(pop.T, bias=True))
  b_small, b_big, n_dev = 4, 32, 8
  g2s, traces = [], []
  for _ in range(20000):
    batch = pop[rng.integers(0, 500, b_big)]
    per_dev = batch.reshape(n_dev, b_small, -1).mean(1)
    sq_small = np.mean(np.sum(per_dev ** 2, axis=1))
    sq_big = np.sum(batch.mean(0) ** 2)
    g2s.append(gns.estimate_g2(sq_small, sq_big, b_small, b_big))
    traces.append(gns.estimate_trace(sq_small, sq_big, b_small, b_big))
  assert np.mean(traces) == pytest.approx(trace_true, rel=0.02)
  assert np.mean(g2s) == pytest.approx(g2_true, abs=0.05 * trace_true / b_big)


def test_ema_is_bias_corrected_ratio_of_averages():
  state = gns.init_state()
  assert np.isnan(gns.b_simple(state, 0.9))
  for g2, tr in [(2.0, 10.0), (-1.0, 30.0), (4.0, 20.0)]:
    state = gns.update(state, g2, tr, 0.9)
  w = np.array([0.9 ** 2, 0.9, 1.0]) * 0.1
  expected = (w @ [10.0, 30.0, 20.0]) / (w @ [2.0, -1.0, 4.0])
  assert float(gns.b_simple(state, 0.9)) == pytest.approx(expected, rel=1e-5)
  negative = gns.update(gns.init_state(), -1.0, 5.0, 0.9)
  assert np.isnan(gns.b_simple(negative, 0.9))  # undefined while EMA[|G|²] ≤ 0


@pytest.mark.parametrize("n_devices, micro", [(8, 1), (1, 4)])
def test_online_b_simple_matches_closed_form_linear_regression(n_devices, micro):
  # Linear regression y = w*·x + ε, x ~ N(0, I_d), ε ~ N(0, σ²), loss ½(w·x − y)², at fixed w
  # with δ = w − w*: G = δ, Σ = (|δ|² + σ²)·I + δδᵀ, so B_simple = (d(|δ|²+σ²) + |δ|²)/|δ|².
  d, sigma, batch = 16, 0.5, 64
  rng = np.random.default_rng(1)
  w_star = rng.normal(size=d)
  delta = rng.normal(size=d)
  delta /= np.linalg.norm(delta)
  exact = (d * (1 + sigma ** 2) + 1) / 1.0

  def loss_fn(params, rows_BX):
    x, y = rows_BX[:, :d], rows_BX[:, d]
    return 0.5 * jnp.mean((x @ params["w"] - y) ** 2)

  mesh = make_mesh(n_devices)
  geom = BatchGeometry(batch, 1, n_devices, micro)
  decay = 0.998
  cfg = GnsSpec(enabled=True, micro_batches=micro, ema_decay=decay)
  tx = optax.sgd(0.0)  # parameters stay at w, where the exact value holds
  step, _ = make_train_step(loss_fn, tx, mesh, geom, cfg)
  params = {"w": jnp.asarray(w_star + delta, jnp.float32)}
  state = TrainState(params, tx.init(params), gns.init_state(), jnp.zeros((), jnp.int32))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  raw = []
  for _ in range(1500):
    x = rng.normal(size=(batch, d))
    y = x @ w_star + sigma * rng.normal(size=batch)
    rows = jax.device_put(np.concatenate([x, y[:, None]], 1).astype(np.float32), sharding)
    state, metrics = step(state, rows, np.float32(0.0))
    # Bound the steps in flight, as the trainer does by fetching metrics one step behind: with
    # hundreds of queued all-reduces, XLA's CPU collectives on forced devices can starve a
    # participant of a thread and abort after their 40 s rendezvous timeout.
    metrics["loss"].block_until_ready()
    raw.append((float(metrics["gns_trace"]), float(metrics["gns_g2"])))
  measured = float(metrics["b_simple_tokens"])
  print(f"B_simple measured {measured:.3f}, exact {exact:.3f}")
  assert measured == pytest.approx(exact, rel=0.10), (measured, exact)
  # The windowed estimator (ratio of sums over a centred window) from the same per-step values:
  # over a window of 500 steps at the middle, and over the whole run.
  trace, g2 = np.array(raw).T
  tokens = batch * np.arange(1, len(raw) + 1.0)
  for window in (500 * batch, 2 * len(raw) * batch):
    windowed = gns.windowed_ratio(tokens, trace, g2, window)[len(raw) // 2]
    assert windowed == pytest.approx(exact, rel=0.10), (window, windowed, exact)


def test_preconditioned_noise_scale_on_a_known_diagonal_preconditioner():
  # The linear regression above with Adam's second moment held at ν = 1/p² (so P = diag(p)):
  # tr(PΣ) = (|δ|² + σ²)·Σp + δᵀPδ and GᵀPG = δᵀPδ, so B_P = tr(PΣ)/(GᵀPG) exactly; with P² the
  # same with p². The per-step estimates are summed over the steps before dividing.
  d, sigma, batch, steps = 16, 0.5, 64, 600
  rng = np.random.default_rng(2)
  w_star = rng.normal(size=d)
  p = rng.uniform(0.3, 3.0, size=d)
  delta = 1.0 / p                     # the gradient leans on the coordinates P shrinks
  delta /= np.linalg.norm(delta)
  exact = {w: ((1 + sigma ** 2) * q.sum() + delta @ (q * delta)) / (delta @ (q * delta))
           for w, q in (("p", p), ("p2", p ** 2))}

  def loss_fn(params, rows_BX):
    x, y = rows_BX[:, :d], rows_BX[:, d]
    return 0.5 * jnp.mean((x @ params["w"] - y) ** 2)

  mesh = make_mesh(8)
  geom = BatchGeometry(batch, 1, 8, 1)
  tx = optax.adamw(lambda count: 1.0, b1=0.9, b2=0.95)
  gns_spec = GnsSpec(enabled=True, micro_batches=1, ema_decay=0.99, preconditioned=True,
                     preconditioned_p2=True)
  _, step = make_train_step(loss_fn, tx, mesh, geom, gns_spec, b2=0.95)
  params = {"w": jnp.asarray(w_star + delta, jnp.float32)}
  opt_state = optax.tree_utils.tree_set(tx.init(params),
                                        nu={"w": jnp.asarray(1.0 / p ** 2, jnp.float32)})
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  sums = {k: 0.0 for k in ("gns_g2_p", "gns_trace_p", "gns_g2_p2", "gns_trace_p2")}
  for _ in range(steps):
    # Adam's state held fixed (and its step count large: no bias correction), lr 0: P is known.
    # (Fresh copies: the step donates its input state.)
    state = TrainState(*jax.tree.map(jnp.copy, (params, opt_state)), gns.init_state(),
                       jnp.asarray(10 ** 6, jnp.int32))
    x = rng.normal(size=(batch, d))
    y = x @ w_star + sigma * rng.normal(size=batch)
    rows = jax.device_put(np.concatenate([x, y[:, None]], 1).astype(np.float32), sharding)
    _, metrics = step(state, rows, np.float32(0.0))
    for k in sums:
      sums[k] += float(metrics[k])
  for w in ("p", "p2"):
    measured = sums[f"gns_trace_{w}"] / sums[f"gns_g2_{w}"]
    print(f"B_{w}: measured {measured:.2f}, exact {exact[w]:.2f}")
    assert measured == pytest.approx(exact[w], rel=0.10)
  # The two weightings differ here, so the check tells them apart.
  assert abs(exact["p"] / exact["p2"] - 1) > 0.2


def test_windowed_ratio_by_hand():
  tokens = np.array([10.0, 20.0, 30.0, 40.0])
  trace = np.array([1.0, 2.0, 3.0, np.nan])
  g2 = np.array([1.0, 1.0, -1.0, 5.0])
  r = gns.windowed_ratio(tokens, trace, g2, 20.0)   # ±10 tokens: the step and its neighbours
  assert r[0] == pytest.approx((1 + 2) / (1 + 1))
  assert r[1] == pytest.approx((1 + 2 + 3) / (1 + 1 - 1))
  assert np.isnan(r[2])                              # Σ|G|² = 1 − 1 = 0 (the NaN step left out)
  assert np.isnan(r[3])


def test_preconditioned_estimates_only_every_nth_step():
  """gns.precond_every = 3: the weighted estimates at steps 3, 6 (and never at step 0, before
  Adam has a second moment), NaN between; the raw ones at every step."""
  d, batch = 4, 16
  def loss_fn(params, rows_BX):
    return 0.5 * jnp.mean((rows_BX[:, :d] @ params["w"] - rows_BX[:, d]) ** 2)

  mesh = make_mesh(8)
  tx = optax.adamw(lambda count: 1.0)
  geom = BatchGeometry(batch, 1, 8, 1)
  plain, weighted = make_train_step(loss_fn, tx, mesh, geom,
                                    GnsSpec(enabled=True, micro_batches=1, ema_decay=0.9,
                                            preconditioned=True, precond_every=3))
  params = {"w": jnp.ones(d, jnp.float32)}
  state = TrainState(params, tx.init(params), gns.init_state(), jnp.zeros((), jnp.int32))
  trainer = Trainer(plain, None, state, None, None, geom, mesh, weighted, 3)
  rows = jax.device_put(np.random.default_rng(0).normal(size=(batch, d + 1)).astype(np.float32),
                        jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
  seen = []
  for i in range(7):
    state, metrics = trainer.step_for(i)(state, rows, np.float32(1e-3))
    seen.append((np.isfinite(float(metrics["gns_g2_p"])), np.isfinite(float(metrics["gns_g2"]))))
  assert [p for p, _ in seen] == [False, False, False, True, False, False, True]
  assert all(raw for _, raw in seen)


def test_the_two_squared_norms_agree_with_numpy():
  """The per-leaf |g|² (global, accelerators) and the joined one (a device's own, CPU)."""
  from scaling.train.gns import joined_sq_norm, sq_norm
  rng = np.random.default_rng(0)
  tree = {"w": rng.standard_normal((7, 5)), "b": rng.standard_normal(5),
          "blocks": [rng.standard_normal((3, 2, 4))]}
  want = sum(float(np.sum(np.square(x))) for x in jax.tree.leaves(tree))
  tree = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)
  assert float(sq_norm(tree)) == pytest.approx(want, rel=1e-5)
  assert float(joined_sq_norm(tree)) == pytest.approx(want, rel=1e-5)
