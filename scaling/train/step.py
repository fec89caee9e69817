"""The jitted training step: train state, the data-parallel gradient with the noise estimator, the
eval step, and the one builder of all of them used by the trainer, the bench and the tests.

The gradient is computed under `jax.shard_map`, so each device's own gradient (over its share of the
batch, optionally split into micro-batches) exists before the explicit all-reduce; the
gradient-noise-scale estimator (scaling/train/gns.py) compares its squared norm with the all-reduced
one.

Shape suffixes: B batch (sequences), W window positions (context + 1: inputs and shifted
targets), b a device's share of the batch, k micro-batches per device, m sequences per
micro-batch.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from scaling.config.spec import GnsSpec, TrainSpec
from scaling.errors import UserError
from scaling.model.transformer import ModelConfig, Transformer
from scaling.train import gns, matmul_forms
from scaling.train import optim


class TrainState(NamedTuple):
  params: Any          # nnx.State of the model's parameters (float32)
  opt_state: Any       # optax AdamW state
  gns: gns.GnsState
  step: jax.Array      # optimizer steps taken


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class StepMetrics:
  """One step's scalar metrics packed in one float32 vector, so that fetching them is one
  device-to-host transfer (a dict of scalars took 7x the host time per step)."""
  values: Any                  # float32 (len(names),): a jax.Array, or numpy after device_get
  names: tuple[str, ...]

  def tree_flatten(self):
    return (self.values,), self.names

  @classmethod
  def tree_unflatten(cls, names, children):
    return cls(children[0], names)

  @classmethod
  def pack(cls, metrics: dict) -> "StepMetrics":
    return cls(jnp.stack([jnp.asarray(v, jnp.float32) for v in metrics.values()]),
               tuple(metrics))

  def __getitem__(self, name: str):
    return self.values[self.names.index(name)]

  def items(self):
    return zip(self.names, self.values)


# The batch is split over both mesh axes; parameters over `fsdp` only.
BATCH = ("data", "fsdp")


def make_mesh(num_devices: int = 0, fsdp: int = 1) -> jax.sharding.Mesh:
  """A (data, fsdp) mesh over the first num_devices devices (0: all): data = devices/fsdp. With
  fsdp = 1 it is plain data parallelism."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise UserError(f"mesh.num_devices={num_devices} but only {len(devices)} devices exist")
    devices = devices[:num_devices]
  if len(devices) % fsdp:
    raise UserError(f"mesh.fsdp={fsdp} does not divide the {len(devices)} devices; use a "
                    f"divisor of {len(devices)} (or set mesh.num_devices)")
  return jax.sharding.Mesh(np.asarray(devices).reshape(len(devices) // fsdp, fsdp), BATCH)


def leaf_spec(shape: tuple, fsdp: int) -> P:
  """Where a parameter (or an optimizer moment of its shape) lives: its largest dimension that
  fsdp divides is split over `fsdp`; a leaf with none (or fsdp = 1) is replicated."""
  dims = [d for d in sorted(range(len(shape)), key=lambda d: -shape[d]) if shape[d] % fsdp == 0]
  if fsdp == 1 or not dims:
    return P()
  return P(*([None] * dims[0]), "fsdp")


def state_shardings(tree, mesh: jax.sharding.Mesh):
  """NamedShardings of a tree of arrays (params, a TrainState) by leaf_spec of each leaf."""
  fsdp = mesh.shape["fsdp"]
  return jax.tree.map(lambda x: NamedSharding(mesh, leaf_spec(np.shape(x), fsdp)), tree)


def _fsdp_axis(spec: P) -> int | None:
  return next((i for i, a in enumerate(spec) if a == "fsdp"), None)


def _gather(x, spec: P):
  """A device's shard of a parameter → the whole parameter (all-gather over fsdp)."""
  axis = _fsdp_axis(spec)
  return x if axis is None else jax.lax.all_gather(x, "fsdp", axis=axis, tiled=True)


def _reduce(g, spec: P, fsdp: int):
  """A device's own gradient → its shard of the mean over all devices (reduce-scatter)."""
  axis = _fsdp_axis(spec)
  if axis is None:
    # One all-reduce over every device (two, data then a size-1 fsdp, copied the gradient again).
    return jax.lax.pmean(g, ("data", "fsdp"))
  g = jax.lax.pmean(g, "data")
  return jax.lax.psum_scatter(g, "fsdp", scatter_dimension=axis, tiled=True) / fsdp


def _varying(x):
  """x as device-varying on both axes, so that its gradient stays each device's own."""
  aval = jax.typeof(x)
  # The axes x already varies over (`vma` in older JAX, `manual_axis_type.varying` since 0.9).
  vary = aval.manual_axis_type.varying if hasattr(aval, "manual_axis_type") else aval.vma
  missing = tuple(a for a in BATCH if a not in vary)
  return jax.lax.pcast(x, missing, to="varying") if missing else x


# On CPU a micro-batch of about this many tokens was the fastest (benchmarks/bench.py shapes
# (4,256,4) and (6,384,6), 4096 tokens a step: 4 micro-batches 5–8 % faster than 2, 1 the
# slowest): its activations stay in the processor's caches.
CPU_MICRO_TOKENS = 1024


def micro_batches(gns_spec: GnsSpec, n_devices: int, seqs_per_device: int = 0,
                  n_ctx: int = 0, platform: str = "") -> int:
  """Micro-batches per device (the step's gradient accumulation, and the noise estimator's small
  batches): gns.micro_batches when set. Else at least 2 on one device with the estimator on (its
  small batch), 1 otherwise; on CPU, more when that keeps a micro-batch near CPU_MICRO_TOKENS
  tokens — with the estimator on or off alike, so that turning it off only removes work."""
  if gns_spec.micro_batches:
    return gns_spec.micro_batches
  k_min = 2 if gns_spec.enabled and n_devices == 1 else 1
  if (platform or jax.default_backend()) != "cpu" or not seqs_per_device or not n_ctx:
    return k_min
  want = max(k_min, seqs_per_device * n_ctx // CPU_MICRO_TOKENS)
  divisors = [k for k in range(1, seqs_per_device + 1) if seqs_per_device % k == 0]
  at_least = [k for k in divisors if k >= want]
  fits_min = [k for k in divisors if k >= k_min]
  return at_least[0] if at_least else (fits_min[-1] if fits_min else k_min)


def _norms(grads, precond: tuple, powers: tuple, plain=gns.sq_norm) -> jax.Array:
  """(|g|², then Σ g²·P^k for each power); precond = (ν, bias correction) when powers."""
  return jnp.stack((plain(grads),) + (gns.precond_sq_norms(grads, *precond, powers)
                                      if powers else ()))


@dataclasses.dataclass(frozen=True)
class BatchGeometry:
  """Batch sizes of one step; B_small/B_big in tokens as McCandlish 2018 app. A.1 uses them."""
  global_seqs: int
  n_ctx: int
  n_devices: int
  micro_batches: int

  @property
  def b_big_tokens(self) -> int:
    return self.global_seqs * self.n_ctx

  @property
  def b_small_tokens(self) -> int:
    return self.global_seqs // (self.n_devices * self.micro_batches) * self.n_ctx

  def check(self) -> "BatchGeometry":
    if self.global_seqs % self.n_devices:
      raise UserError(f"train.batch_size={self.global_seqs} is not divisible by the "
                      f"{self.n_devices} devices; use a multiple of {self.n_devices} or set "
                      "mesh.num_devices")
    per_device = self.global_seqs // self.n_devices
    if per_device % self.micro_batches:
      raise UserError(f"the per-device batch {per_device} is not divisible by "
                      f"gns.micro_batches={self.micro_batches}")
    return self


def lm_loss(graphdef):
  """Mean next-token cross-entropy (nats/token) of the model on a batch of windows (B, W)."""
  def loss_fn(params, tokens_BW):
    return nnx.merge(graphdef, params).loss(tokens_BW[:, :-1], tokens_BW[:, 1:])
  return loss_fn


def _device_grads(loss_fn, k: int, powers: tuple, specs, fsdp: int, plain=gns.sq_norm):
  """Per device: (mean loss, its shard of the mean gradient, mean |G_small|² plain and
  P^k-weighted for each k of powers) over its k micro-batches. Parameters (and Adam's ν) come
  in as this device's shards (`specs`) and are gathered whole; each device's own gradient, of
  its own rows, exists whole before the reduce-scatter, so the noise estimator sees it."""
  def per_device(params, tokens_bW, precond):
    params = jax.tree.map(_gather, params, specs)
    if precond:
      precond = (jax.tree.map(_gather, precond[0], specs), precond[1])
    # Params become device-varying so the gradient below is this device's own, not all-reduced.
    params = jax.tree.map(_varying, params)
    grad_fn = jax.value_and_grad(loss_fn)
    norms = lambda g: _norms(g, precond, powers, plain)
    if k == 1:
      loss, grads = grad_fn(params, tokens_bW)
      sq_small = norms(grads)
    else:
      tokens_kmW = tokens_bW.reshape(k, -1, *tokens_bW.shape[1:])

      def body(carry, tokens_mW):
        loss_acc, grads_acc, sq_acc = carry
        loss, grads = grad_fn(params, tokens_mW)
        return (loss_acc + loss, jax.tree.map(jnp.add, grads_acc, grads),
                sq_acc + norms(grads)), None

      zeros = jax.tree.map(jnp.zeros_like, params)
      varying = lambda shape: _varying(jnp.zeros(shape, jnp.float32))
      (loss, grads, sq_small), _ = jax.lax.scan(
          body, (varying(()), zeros, varying((1 + len(powers),))), tokens_kmW)
      loss, sq_small = loss / k, sq_small / k
      grads = jax.tree.map(lambda g: g / k, grads)
    # The explicit reductions: mean over devices of the loss and |G_small|²; of the gradient,
    # each device keeps its shard (all of it when fsdp = 1).
    return (jax.lax.pmean(loss, BATCH), jax.tree.map(lambda g, p: _reduce(g, p, fsdp), grads, specs),
            jax.lax.pmean(sq_small, BATCH))
  return per_device


def make_train_step(loss_fn, tx, mesh, geom: BatchGeometry, gns_spec: GnsSpec, b2: float = 0.95,
                    state_sharding=None):
  """Builds the jitted steps: (TrainState, batch rows (B, W), learning rate) → (TrainState,
  StepMetrics), plain and, when the Adam-preconditioned noise scale is wanted, the one that also
  measures it (else None). tx is AdamW at unit rate (optim.make_optimizer); its update is scaled
  by lr. state_sharding (state_shardings of the state) keeps the state where it lives from step
  to step; None takes the shardings of the state passed in.

  loss_fn(params, rows) must be the mean loss over its rows, so that the mean of per-device
  gradients is the gradient of the global batch.
  """
  gns_on = gns_spec.enabled and geom.b_small_tokens < geom.b_big_tokens
  b_small, b_big = float(geom.b_small_tokens), float(geom.b_big_tokens)
  wanted = ((1, 2) if gns_spec.preconditioned_p2 else (1,)) if (
      gns_on and gns_spec.preconditioned) else ()
  nan = jnp.float32(jnp.nan)
  decay = gns.ema_decay_per_step(gns_spec.ema_decay, gns_spec.ema_tokens, b_big)

  fsdp = mesh.shape["fsdp"]
  # The joined norm where launches multiply: several CPU devices sharing the cores. On one CPU
  # device the per-leaf form was 0.8 % faster on (4,256,4) (median of 14 interleaved step pairs):
  # it reads the gradient once, the join copies it.
  device_norm = (gns.joined_sq_norm if mesh.devices.flat[0].platform == "cpu"
                 and mesh.devices.size > 1 else gns.sq_norm)

  def sharded_grads(params, powers: tuple):
    specs = jax.tree.map(lambda x: leaf_spec(np.shape(x), fsdp), params)
    precond_specs = (specs, P()) if powers else P()
    return jax.shard_map(_device_grads(loss_fn, geom.micro_batches, powers, specs, fsdp,
                                       device_norm),
                         mesh=mesh, in_specs=(specs, P(BATCH), precond_specs),
                         out_specs=(P(), specs, P()))

  def grads_and_norms(state: TrainState, tokens_BW, weighted: bool):
    """(loss, all-reduced gradient, |G_small|² and |G_big|², each plain then P^k-weighted; the
    weighted ones zero unless `weighted`). Two programs, chosen on the host per step: the
    weighted one every precond_every steps, so the other steps pay nothing for it (a lax.cond
    between the two inside one program cost 2–4 % of every step on 8 CPU devices)."""
    pad = jnp.zeros(len(wanted), jnp.float32)
    if not weighted:
      loss, grads, sq_small = sharded_grads(state.params, ())(state.params, tokens_BW, ())
      return (loss, grads, jnp.concatenate([sq_small, pad]),
              jnp.concatenate([_norms(grads, (), ()), pad]))
    second = gns.adam_second_moment(state.opt_state, state.step, b2)
    loss, grads, sq_small = sharded_grads(state.params, wanted)(state.params, tokens_BW, second)
    return loss, grads, sq_small, _norms(grads, second, wanted)

  def step_fn(state: TrainState, tokens_BW, lr, weighted: bool = False):
    loss, grads, sq_small_all, sq_big_all = grads_and_norms(state, tokens_BW, weighted)
    g2_all = gns.estimate_g2(sq_small_all, sq_big_all, b_small, b_big)
    trace_all = gns.estimate_trace(sq_small_all, sq_big_all, b_small, b_big)
    sq_big, g2, trace = sq_big_all[0], g2_all[0], trace_all[0]
    gns_state = gns.update(state.gns, g2, trace, decay) if gns_on else state.gns
    b_simple = gns.b_simple(gns_state, decay) if gns_on else nan
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = jax.tree.map(lambda u: (lr * u).astype(u.dtype), updates)
    params = optax.apply_updates(state.params, updates)
    metrics = StepMetrics.pack({
        "loss": loss, "grad_norm": jnp.sqrt(sq_big), "lr": lr,
        "b_simple_tokens": b_simple, "b_simple_seqs": b_simple / geom.n_ctx,
        "gns_g2": g2 if gns_on else nan, "gns_trace": trace if gns_on else nan,
        # Adam-preconditioned estimates (P, and P² when asked), NaN on the steps that skip them.
        **{f"gns_{q}_{w}": v[i + 1] if weighted else nan
           for i, w in enumerate(("p", "p2")[:len(wanted)])
           for q, v in (("g2", g2_all), ("trace", trace_all))},
    })
    return TrainState(params, opt_state, gns_state, state.step + 1), metrics

  replicated = NamedSharding(mesh, P())
  # The state stays sharded by leaf_spec (replicated when fsdp = 1); XLA partitions the
  # optimizer update over those shards.
  jit = lambda weighted: jax.jit(
      functools.partial(step_fn, weighted=weighted), donate_argnums=0,
      in_shardings=(state_sharding, NamedSharding(mesh, P(BATCH)), replicated),
      out_shardings=(state_sharding, replicated))
  return jit(False), (jit(True) if wanted else None)


def make_eval_step(graphdef, mesh):
  return jax.jit(lm_loss(graphdef), in_shardings=(None, NamedSharding(mesh, P(BATCH))))


def global_batch(mesh, local_BW: np.ndarray) -> jax.Array:
  """The global array whose process-local rows are `local_BW` (sharded over every device)."""
  sharding = NamedSharding(mesh, P(BATCH))
  if jax.process_count() == 1:   # the same array; device_put costs half the host time per step
    return jax.device_put(local_BW, sharding)
  return jax.make_array_from_process_local_data(sharding, local_BW)


@dataclasses.dataclass(frozen=True)
class Trainer:
  """Everything a loop needs to take steps: the jitted train and eval steps, the initial state
  (replicated on the mesh), the learning-rate schedule and the batch geometry."""
  step_fn: Any                 # the plain step
  eval_fn: Any
  state: TrainState
  graphdef: Any
  schedule: optim.Schedule
  geom: BatchGeometry
  mesh: jax.sharding.Mesh
  precond_step_fn: Any = None  # the step that also measures B_P (gns.preconditioned), or None
  precond_every: int = 0

  def lr(self, step: int) -> np.float32:
    """The learning rate to pass with the batch of `step` (0-based)."""
    return np.float32(self.schedule.lr(step))

  def step_for(self, step: int):
    """The program for the batch of `step` (0-based, counted by the loop): the one measuring the
    preconditioned noise scale every precond_every steps after Adam's first update (ν is zero
    before it), the plain one otherwise."""
    if self.precond_step_fn is not None and step > 0 and step % self.precond_every == 0:
      return self.precond_step_fn
    return self.step_fn


def build(mcfg: ModelConfig, train: TrainSpec, gns_spec: GnsSpec, mesh, peak_lr: float,
          total_steps: int, seed: int = 0, weight_grad: str = "plain") -> Trainer:
  """The one builder of model, optimizer, train state and steps (trainer, bench, benchmarks and
  tests all call it). weight_grad (plain | transposed | auto) picks the layers whose weight
  gradient takes the copied form (scaling/train/matmul_forms.py), before anything is traced."""
  n_devices = mesh.devices.size
  geom = BatchGeometry(train.batch_size, mcfg.n_ctx, n_devices,
                       micro_batches(gns_spec, n_devices, train.batch_size // n_devices,
                                     mcfg.n_ctx)).check()
  mcfg = matmul_forms.resolve(mcfg, weight_grad, geom.b_small_tokens,
                              mesh.devices.flat[0].platform)
  graphdef, params = nnx.split(Transformer(mcfg, rngs=nnx.Rngs(seed)), nnx.Param)
  tx, schedule = optim.make_optimizer(train), optim.schedule(train, peak_lr, total_steps)
  state = TrainState(params, tx.init(params), gns.init_state(), jnp.zeros((), jnp.int32))
  sharding = state_shardings(state, mesh)
  state = jax.device_put(state, sharding)
  # The programs depend on the shape, the optimizer's constants, the estimator and the mesh, not
  # on the seed, LR or schedule: the runs of a sweep that share a shape share them (a traced,
  # lowered step costs ~3 s of host time per run on 2 CPU cores).
  key = (mcfg, train.grad_clip, train.b1, train.b2, train.weight_decay, gns_spec, geom, mesh)
  if key not in _PROGRAMS:
    if len(_PROGRAMS) >= _PROGRAMS_KEPT:
      _PROGRAMS.pop(next(iter(_PROGRAMS)))
    _PROGRAMS[key] = (*make_train_step(lm_loss(graphdef), tx, mesh, geom, gns_spec, train.b2,
                                       sharding), make_eval_step(graphdef, mesh))
  step_fn, precond_fn, eval_fn = _PROGRAMS[key]
  return Trainer(step_fn, eval_fn, state, graphdef, schedule, geom, mesh, precond_fn,
                 gns_spec.precond_every)


_PROGRAMS: dict = {}     # (shape, optimizer constants, estimator, geometry, mesh) → programs
_PROGRAMS_KEPT = 8
