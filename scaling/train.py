"""The trainer: data-parallel AdamW over a `data` mesh axis, eval, metrics, checkpoints, resume.

The gradient is computed under `jax.shard_map`, so each device's own gradient (over its share of
the batch, optionally split into micro-batches) exists before the explicit all-reduce; the
gradient-noise-scale estimator (scaling/gns.py) compares its squared norm with the all-reduced one.
A run directory holds config.json, metrics.jsonl, checkpoints/ and, when finished, summary.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from scaling import bench
from scaling import data as datalib
from scaling import distributed
from scaling import gns
from scaling import loggers
from scaling.config import to_json
from scaling.errors import UserError, StorageError
from scaling.model import (ModelConfig, Transformer, flops_per_token,
                           kaplan_learning_rate, param_count)


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


class Preempted(Exception):
  """SIGTERM arrived: a checkpoint was written and the run can be resumed."""


# ---------------------------------------------------------------------------------------------
# Pieces.


def resolve_dtype(name: str) -> str:
  if name == "auto":
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"
  return name


def make_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise UserError(f"mesh.num_devices={num_devices} but only {len(devices)} devices exist")
    devices = devices[:num_devices]
  return jax.sharding.Mesh(np.asarray(devices), ("data",))


def lr_schedule(peak_lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float):
  """Linear warm-up to peak_lr, then cosine decay to min_lr_ratio·peak_lr (Kaplan 2020 §2.2)."""
  warmup_steps = max(1, min(warmup_steps, total_steps - 1)) if total_steps > 1 else 0
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_lr, warmup_steps=warmup_steps,
      decay_steps=max(total_steps, warmup_steps + 1), end_value=peak_lr * min_lr_ratio)


def make_optimizer(tcfg, peak_lr: float, total_steps: int):
  warmup = tcfg.warmup_steps or int(round(tcfg.warmup_frac * total_steps))
  schedule = lr_schedule(peak_lr, total_steps, warmup, tcfg.min_lr_ratio)
  decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)
  parts = [optax.clip_by_global_norm(tcfg.grad_clip)] if tcfg.grad_clip > 0 else []
  parts.append(optax.adamw(schedule, b1=tcfg.b1, b2=tcfg.b2, weight_decay=tcfg.weight_decay,
                           mask=decay_mask))
  return optax.chain(*parts), schedule


def micro_batches(gns_cfg, n_devices: int) -> int:
  """Micro-batches per device: gns.micro_batches, else 1 on several devices (the devices give the
  small batches of the noise estimator) and 2 on one; 1 when the estimator is off."""
  if not gns_cfg.enabled:
    return 1
  return gns_cfg.micro_batches or (1 if n_devices > 1 else 2)


def sq_norm(tree) -> jax.Array:
  return sum(jnp.vdot(x, x).real for x in jax.tree.leaves(tree)).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class BatchGeometry:
  """Batch sizes of one step; B_small/B_big in tokens as SCIENCE.md §4.4 uses them."""
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


def lm_loss(graphdef):
  """Mean next-token cross-entropy of the model on a batch of windows (B, L+1)."""
  def loss_fn(params, tokens_BL1):
    return nnx.merge(graphdef, params).loss(tokens_BL1[:, :-1], tokens_BL1[:, 1:])
  return loss_fn


def make_train_step(loss_fn, tx, schedule, mesh, geom: BatchGeometry, gns_cfg):
  """Builds the jitted step: (TrainState, batch rows (B, …)) → (TrainState, StepMetrics).

  loss_fn(params, rows) must be the mean loss over its rows, so that the mean of per-device
  gradients is the gradient of the global batch.
  """
  k = geom.micro_batches
  gns_on = gns_cfg.enabled and geom.b_small_tokens < geom.b_big_tokens
  b_small, b_big = float(geom.b_small_tokens), float(geom.b_big_tokens)

  def per_device(params, tokens_bL1):
    # Params become device-varying so the gradient below is this device's own, not all-reduced.
    params = jax.tree.map(lambda x: jax.lax.pcast(x, "data", to="varying"), params)
    grad_fn = jax.value_and_grad(loss_fn)
    if k == 1:
      loss, grads = grad_fn(params, tokens_bL1)
      sq_small = sq_norm(grads)
    else:
      tokens_kmL1 = tokens_bL1.reshape(k, -1, *tokens_bL1.shape[1:])

      def body(carry, tokens_mL1):
        loss_acc, grads_acc, sq_acc = carry
        loss, grads = grad_fn(params, tokens_mL1)
        return (loss_acc + loss, jax.tree.map(jnp.add, grads_acc, grads),
                sq_acc + sq_norm(grads)), None

      zeros = jax.tree.map(jnp.zeros_like, params)
      init = (jax.lax.pcast(jnp.zeros((), jnp.float32), "data", to="varying"), zeros,
              jax.lax.pcast(jnp.zeros((), jnp.float32), "data", to="varying"))
      (loss, grads, sq_small), _ = jax.lax.scan(body, init, tokens_kmL1)
      loss, sq_small = loss / k, sq_small / k
      grads = jax.tree.map(lambda g: g / k, grads)
    # The explicit all-reduce: mean over devices of the loss, the gradient and |G_small|².
    return (jax.lax.pmean(loss, "data"), jax.lax.pmean(grads, "data"),
            jax.lax.pmean(sq_small, "data"))

  sharded_grads = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data")),
                                out_specs=(P(), P(), P()))

  def step_fn(state: TrainState, tokens_BL1):
    loss, grads, sq_small = sharded_grads(state.params, tokens_BL1)
    sq_big = sq_norm(grads)
    g2 = gns.estimate_g2(sq_small, sq_big, b_small, b_big)
    trace = gns.estimate_trace(sq_small, sq_big, b_small, b_big)
    gns_state = gns.update(state.gns, g2, trace, gns_cfg.ema_decay) if gns_on else state.gns
    b_noise = gns.b_noise(gns_state, gns_cfg.ema_decay) if gns_on else jnp.float32(jnp.nan)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = StepMetrics.pack({
        "loss": loss, "grad_norm": jnp.sqrt(sq_big), "lr": schedule(state.step),
        "b_noise_tokens": b_noise, "b_noise_seqs": b_noise / geom.n_ctx,
        "gns_g2": g2 if gns_on else jnp.float32(jnp.nan),
        "gns_trace": trace if gns_on else jnp.float32(jnp.nan),
    })
    return TrainState(params, opt_state, gns_state, state.step + 1), metrics

  replicated = NamedSharding(mesh, P())
  return jax.jit(step_fn, in_shardings=(replicated, NamedSharding(mesh, P("data"))),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def make_eval_step(graphdef, mesh):
  return jax.jit(lm_loss(graphdef),
                 in_shardings=(NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))))


def global_batch(mesh, local_BL1: np.ndarray) -> jax.Array:
  """The global array whose process-local rows are `local_BL1` (sharded on `data`)."""
  sharding = NamedSharding(mesh, P("data"))
  if jax.process_count() == 1:   # the same array; device_put costs half the host time per step
    return jax.device_put(local_BL1, sharding)
  return jax.make_array_from_process_local_data(sharding, local_BL1)


# ---------------------------------------------------------------------------------------------
# Run directory.


# Fields a run may resume under with another value: they change how it goes on from its last
# checkpoint, not what it is (a lower LR or a skipped batch after a NaN; logging; patience).
RESUMABLE_FIELDS = ("train.peak_lr", "train.skip_batches", "train.grad_clip", "train.patience",
                    "log.", "compilation_cache", "data.loader_threads")


def _check_or_write_config(run_dir: Path, cfg_json: str, overwrite: bool) -> None:
  path = run_dir / "config.json"
  if path.is_file():
    old = json.loads(path.read_text())
    new = json.loads(cfg_json)
    if old != new:
      diff = sorted(_diff_keys(old, new))
      if all(any(k == f or (f.endswith(".") and k.startswith(f)) for f in RESUMABLE_FIELDS)
             for k in diff):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path.rename(run_dir / f"config.before-{stamp}.json")
        path.write_text(cfg_json)
        print(f"resuming with changed {', '.join(diff)} (the previous config is kept as "
              f"config.before-{stamp}.json)", flush=True)
        return
      if not overwrite:
        raise UserError(f"{run_dir} holds a run with a different config ({', '.join(diff[:4])}"
                        f"{' …' if len(diff) > 4 else ''}); choose another run_dir or pass "
                        "--overwrite to move the old run aside")
      aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
      run_dir.rename(aside)
      print(f"moved the old run to {aside}", flush=True)
  run_dir.mkdir(parents=True, exist_ok=True)
  if not path.is_file():
    path.write_text(cfg_json)


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
  keys = []
  for key in sorted(set(a) | set(b)):
    va, vb = a.get(key), b.get(key)
    if isinstance(va, dict) and isinstance(vb, dict):
      keys += _diff_keys(va, vb, f"{prefix}{key}.")
    elif va != vb:
      keys.append(f"{prefix}{key}")
  return keys


def _truncate_metrics(path: Path, last_step: int) -> None:
  """Drops metric lines past the restored checkpoint, so the curve has no duplicate steps."""
  if not path.is_file():
    return
  kept = [line for line in path.read_text().splitlines()
          if line.strip() and json.loads(line)["step"] <= last_step]
  tmp = path.with_suffix(".tmp")
  tmp.write_text("".join(line + "\n" for line in kept))
  os.replace(tmp, path)


def _fmt_time(seconds: float) -> str:
  seconds = int(max(0, seconds))
  return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _finite_or_none(x: float):
  return float(x) if math.isfinite(x) else None


# ---------------------------------------------------------------------------------------------
# The run.


def enable_compilation_cache(cache_dir: str = "") -> Path:
  """JAX's persistent compilation cache in the user cache directory: a second run of the same
  shapes loads its compiled step instead of compiling it again."""
  path = datalib.cache_root(cache_dir) / "jax-compile"
  path.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


@contextlib.contextmanager
def _stderr_to_file():
  """Sends file descriptor 2 to a temporary file for a while: a failed read of a damaged
  checkpoint makes orbax's worker threads print tracebacks of their own, which would bury the
  one-line warning or error that says what happened. Anything written is replayed on success."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as f:
    os.dup2(f.fileno(), 2)
    ok = False
    try:
      yield
      ok = True
    finally:
      time.sleep(0.05)            # let late callbacks of the failed read land in the file
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      if ok:
        f.seek(0)
        sys.stderr.write(f.read().decode(errors="replace"))


def _restore_latest_good(manager, ckpt_dir: Path, state, keep: int, is_main: bool):
  """Restores the newest checkpoint that reads back; newer unreadable ones (truncated or corrupt)
  are moved to checkpoints-corrupt/ with a warning naming them. If none reads back, the run stops
  with an error: never a silent fresh start."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  bad = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      with _stderr_to_file():
        restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
        jax.block_until_ready(restored)
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
      bad.append((step, " ".join(str(e).split())[:160] or type(e).__name__))
      # The failed read leaves orbax futures whose errors asyncio would log again at exit.
      logging.getLogger("asyncio").setLevel(logging.CRITICAL)
      continue
    if bad:
      aside = ckpt_dir.parent / "checkpoints-corrupt"
      for b, why in bad:
        print(f"warning: checkpoint {ckpt_dir / str(b)} cannot be read ({why}); moved to "
              f"{aside}, resuming from step {step}", flush=True)
      if is_main:
        aside.mkdir(exist_ok=True)
        for b, _ in bad:
          target = aside / f"{b}-{time.strftime('%Y%m%d-%H%M%S')}"
          os.replace(ckpt_dir / str(b), target)
      if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("scaling-restore")
      manager.close()
      manager = ocp.CheckpointManager(ckpt_dir, options=_manager_options("state", max_to_keep=keep))
    return step, restored, manager
  manager.close()
  raise StorageError(f"no checkpoint in {ckpt_dir} can be read (steps "
                     f"{', '.join(str(b) for b, _ in bad)}: {bad[0][1]}); nothing was changed. "
                     "Move the folder aside to start again, or pass --overwrite")


def resolve_run_dir(cfg) -> Path:
  return Path(cfg.run_dir or Path("runs") / cfg.name)


def train(cfg: ml_collections.ConfigDict, overwrite: bool = False, verbose: bool = True) -> dict:
  """Trains (or resumes) the run described by cfg; returns the summary dict."""
  distributed.initialize(cfg)
  if cfg.compilation_cache:
    enable_compilation_cache(cfg.data.cache_dir)
  is_main = distributed.is_main()
  say = (lambda *a: print(*a, flush=True)) if (verbose and is_main) else (lambda *a: None)
  run_dir = resolve_run_dir(cfg)
  cfg_json = to_json(cfg)

  mesh = make_mesh(cfg.mesh.num_devices)
  n_devices = mesh.devices.size
  tcfg = cfg.train
  if tcfg.batch_size <= 0:
    raise UserError(f"train.batch_size must be positive, got {tcfg.batch_size}")
  if tcfg.batch_size % n_devices:
    raise UserError(f"train.batch_size={tcfg.batch_size} is not divisible by the {n_devices} "
                    f"devices; use a multiple of {n_devices} or set mesh.num_devices")
  micro = micro_batches(cfg.gns, n_devices)
  per_device = tcfg.batch_size // n_devices
  if per_device % micro:
    raise UserError(f"the per-device batch {per_device} is not divisible by "
                    f"gns.micro_batches={micro}")
  if cfg.eval.batch_size % n_devices:
    raise UserError(f"eval.batch_size={cfg.eval.batch_size} is not divisible by the "
                    f"{n_devices} devices")

  store = datalib.build_store(cfg.data.source, cfg.data.vocab_size, cfg.data.eval_fraction,
                              cfg.data.text_field, cfg.data.tokenizer, cfg.data.cache_dir,
                              verbose=verbose and is_main)
  mcfg = ModelConfig.from_config(dict(cfg.model.to_dict(), n_vocab=store.n_vocab,
                                      compute_dtype=resolve_dtype(cfg.model.compute_dtype)))
  counts, flops = param_count(mcfg), flops_per_token(mcfg)
  n_ctx = mcfg.n_ctx
  batch_tokens = tcfg.batch_size * n_ctx
  total_steps = tcfg.steps or -(-tcfg.tokens // batch_tokens)
  if total_steps <= 0:
    raise UserError("set train.steps or train.tokens to a positive number")
  peak_lr = tcfg.peak_lr or kaplan_learning_rate(counts["n_kaplan"])
  geom = BatchGeometry(tcfg.batch_size, n_ctx, n_devices, micro)

  skips = datalib.parse_skip_batches(tcfg.skip_batches)
  train_source = datalib.SkipBatches(datalib.WindowBatches(
      store.train_T, n_ctx, tcfg.batch_size, total_steps + len(skips), cfg.seed,
      jax.process_index(), jax.process_count(), cfg.data.max_train_tokens), skips)
  eval_BBL1 = datalib.eval_batches(store.eval_T, n_ctx, cfg.eval.batch_size, cfg.eval.batches)
  # Extra held-out sets (other distributions), tokenized with this run's tokenizer.
  extra_sets = {
      name: datalib.eval_batches(
          datalib.extra_eval_tokens(store.tokenizer, source, cfg.data.text_field,
                                    cfg.eval.extra_lowercase),
          n_ctx, cfg.eval.batch_size, cfg.eval.batches)
      for name, source in datalib.parse_eval_sources(cfg.eval.extra_sources)}
  d_train = cfg.data.max_train_tokens or store.meta["n_tokens_train"]

  # Everything validated: only now touch the run directory.
  if is_main:
    _check_or_write_config(run_dir, cfg_json, overwrite)

  model = Transformer(mcfg, rngs=nnx.Rngs(cfg.seed))
  graphdef, params = nnx.split(model, nnx.Param)
  tx, schedule = make_optimizer(tcfg, peak_lr, total_steps)
  replicated = NamedSharding(mesh, P())
  state = TrainState(params, tx.init(params), gns.init_state(), jnp.zeros((), jnp.int32))
  state = jax.device_put(state, replicated)

  ckpt_dir = (run_dir / "checkpoints").resolve()
  manager = ocp.CheckpointManager(ckpt_dir, options=_manager_options(
      "state", max_to_keep=cfg.checkpoint.keep))
  start = 0
  if manager.latest_step() is not None:
    start, state, manager = _restore_latest_good(manager, ckpt_dir, state, cfg.checkpoint.keep,
                                                 is_main)
    say(f"resumed from the checkpoint at step {start}")
  metrics_path = run_dir / "metrics.jsonl"
  if is_main:
    _truncate_metrics(metrics_path, start)

  say(f"model: n_layer={mcfg.n_layer} d_model={mcfg.d_model} heads={mcfg.n_heads}x{mcfg.head_dim} "
      f"n_ctx={n_ctx} | N (Kaplan, non-embedding) = {counts['n_kaplan']:,}, "
      f"total = {counts['n_total']:,} | {flops['palm_train']:.3g} FLOP/token (PaLM count)")
  say(f"training: {total_steps} steps x {tcfg.batch_size} x {n_ctx} tokens on {n_devices} "
      f"{jax.default_backend()} device(s), peak lr {peak_lr:.3g}"
      f"{' (Kaplan LR(N))' if not tcfg.peak_lr else ''}, gns B_small/B_big = "
      f"{geom.b_small_tokens}/{geom.b_big_tokens} tokens | run dir {run_dir}")

  step_fn = make_train_step(lm_loss(graphdef), tx, schedule, mesh, geom, cfg.gns)
  eval_fn = make_eval_step(graphdef, mesh)
  peak_flops, peak_source = bench.training_peak(mcfg.compute_dtype)

  def evaluate(params, batches_BBL1=eval_BBL1) -> float:
    losses = [eval_fn(params, global_batch(mesh, _local_rows(b))) for b in batches_BBL1]
    return float(np.mean(jax.device_get(losses)))

  def evaluate_extra(params) -> dict:
    return {f"eval_loss/{name}": evaluate(params, b) for name, b in extra_sets.items()}

  def _local_rows(batch_BL1):
    per = batch_BL1.shape[0] // jax.process_count()
    return batch_BL1[jax.process_index() * per:(jax.process_index() + 1) * per]

  preempt = {"flag": False}
  old_handler = signal.getsignal(signal.SIGTERM)
  signal.signal(signal.SIGTERM, lambda *_: preempt.update(flag=True))
  print_every = cfg.log.print_every or max(1, total_steps // 20)
  eval_every = cfg.eval.every or total_steps
  # The early-stopping checkpoint: parameters at the lowest held-out loss so far (orbax keeps the
  # best by its recorded metric); on resume the best so far comes back from it.
  best_manager = ocp.CheckpointManager((run_dir / "best").resolve(), options=_manager_options(
      "best", max_to_keep=1, best_fn=lambda m: m["eval_loss"], best_mode="min"))
  best = {"eval_loss": math.inf, "step": None}
  if best_manager.best_step() is not None:
    step_b = best_manager.best_step()
    best = {"eval_loss": float(best_manager.metrics(step_b)["eval_loss"]), "step": step_b}

  metrics_file = open(metrics_path, "a") if is_main else None
  sinks = loggers.MetricSinks(cfg.log, run_dir, cfg.name, cfg.to_dict(), enabled=is_main)
  t_start = time.time()
  last_record: dict = {}
  window = LossWindow(tcfg.stop_loss, tcfg.stop_window_tokens)
  stop_reason = (f"the training loss averaged over the last {tcfg.stop_window_tokens:,} tokens "
                 f"fell below train.stop_loss={tcfg.stop_loss}")
  steps_done = start
  t_prev = time.time()

  def flush(pending_step) -> dict:
    nonlocal t_prev
    try:
      t_prev, record = _log(pending_step, t_prev, metrics_file, batch_tokens, flops, peak_flops)
    except OSError as e:
      _raise_if_disk_full(e, metrics_path)
      raise
    sinks.write(record)
    window.add(record)
    _check_finite(record, manager, peak_lr)
    return record

  try:
    batches = datalib.train_iterator(train_source, start, cfg.data.loader_threads)
    pending = None
    for step in range(start, total_steps):
      state, metrics = step_fn(state, global_batch(mesh, next(batches)))
      done = steps_done = step + 1
      # Fetching the previous step's metrics while this one runs keeps at most two steps in
      # flight: no per-step stall, and XLA's CPU collectives never queue up enough all-reduces to
      # starve a device thread (which aborts the process after a 40 s rendezvous timeout).
      # flush() stops the run at the first non-finite loss or gradient norm.
      if pending is not None:
        last_record = flush(pending)
      stop = window.reached()
      last = done == total_steps or stop
      pending = (done, metrics, None)
      if done % eval_every == 0 or last:
        eval_loss = evaluate(state.params)
        pending = (done, metrics, {"eval_loss": eval_loss, **evaluate_extra(state.params)})
        if eval_loss < best["eval_loss"]:
          best = {"eval_loss": eval_loss, "step": done}
          _save(best_manager, done, state.params, ckpt_dir.parent / "best",
                metrics={"eval_loss": eval_loss})
        elif tcfg.patience and (done - best["step"]) // eval_every >= tcfg.patience:
          stop = last = True
          stop_reason = (f"no lower held-out loss in {tcfg.patience} evaluations since step "
                         f"{best['step']} (train.patience)")
      save_now = done % cfg.checkpoint.every == 0 or last or preempt["flag"]
      if save_now or pending[2] is not None or done % print_every == 0:
        # A checkpoint is written only after this step's loss and gradient norm were checked.
        last_record = flush(pending)
        pending = None
        if done % print_every == 0 or last:
          rate = last_record["tokens_per_s"]
          eta = (total_steps - done) * batch_tokens / rate if rate else 0.0
          say(_progress_line(last_record, total_steps, eta))
      if save_now:
        _save(manager, done, state, ckpt_dir)
      if stop:
        say(f"stopping at step {done}: {stop_reason}")
        break
      if preempt["flag"]:
        if not save_now:  # the signal came after this step's save decision
          if pending is not None:
            last_record = flush(pending)
            pending = None
          _save(manager, done, state, ckpt_dir)
        _wait(manager, ckpt_dir)
        raise Preempted(f"SIGTERM at step {done}: checkpoint saved in {ckpt_dir}; "
                        "rerun the same command to resume")
    if pending is not None:
      last_record = flush(pending)
  finally:
    try:
      _wait(manager, ckpt_dir)
      _wait(best_manager, ckpt_dir.parent / "best")
    finally:
      manager.close()
      best_manager.close()
    if metrics_file:
      metrics_file.close()
    sinks.close()
    signal.signal(signal.SIGTERM, old_handler)

  final = _read_last(metrics_path) if is_main else last_record
  summary = {
      "name": cfg.name, "steps": steps_done, "tokens": steps_done * batch_tokens,
      "planned_steps": total_steps, "stopped_early": steps_done < total_steps,
      "stop_reason": stop_reason if steps_done < total_steps else None,
      "batch_seqs": tcfg.batch_size, "batch_tokens": batch_tokens, "n_ctx": n_ctx,
      "n_vocab": store.n_vocab, "peak_lr": peak_lr, "d_train_tokens": d_train,
      "epochs": steps_done * batch_tokens / d_train,
      **counts, "flops_per_token": flops,
      "flops_kaplan": flops["kaplan_train"] * steps_done * batch_tokens,
      "flops_palm": flops["palm_train"] * steps_done * batch_tokens,
      "final_loss": final.get("loss"), "final_eval_loss": final.get("eval_loss"),
      "final_eval_losses": {k.split("/", 1)[1]: v for k, v in final.items()
                            if k.startswith("eval_loss/")},
      "best_eval_loss": _finite_or_none(best["eval_loss"]), "best_eval_step": best["step"],
      "unigram_entropy": store.unigram_entropy(),
      "b_noise_tokens_final": final.get("b_noise_tokens"),
      "wall_time_s": time.time() - t_start, "n_devices": n_devices,
      "backend": jax.default_backend(), "peak_flops": peak_flops, "peak_source": peak_source,
      "mfu_mean": (flops["palm_train"] * (steps_done - start) * batch_tokens
                   / max(time.time() - t_start, 1e-9) / peak_flops),
      "shape": {"n_layer": mcfg.n_layer, "d_model": mcfg.d_model, "n_heads": mcfg.n_heads,
                "d_head": mcfg.head_dim, "d_ff": mcfg.ff_dim},
      "group": cfg.get("group", ""),
  }
  summary["pf_days_kaplan"] = summary["flops_kaplan"] / 8.64e19  # 1 PF-day = 8.64e19 FLOP
  if is_main:
    tmp = run_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, run_dir / "summary.json")
    say(f"done: final held-out loss {summary['final_eval_loss']:.4f} nats/token "
        f"(unigram entropy of the training text {summary['unigram_entropy']:.4f}); "
        f"metrics in {metrics_path}")
  return summary


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
      while len(self.records) > 1 and self.records[-1][0] - self.records[1][0] >= self.window_tokens:
        self.records.pop(0)

  def reached(self) -> bool:
    if self.threshold <= 0 or len(self.records) < 2:
      return False
    full = self.records[-1][0] - self.records[0][0] >= self.window_tokens
    return full and float(np.mean([loss for _, loss in self.records])) < self.threshold


def restore_best_params(run_dir, params_like):
  """The parameters of the early-stopping checkpoint (lowest held-out loss) of a run directory;
  `params_like` gives the structure (e.g. nnx.split(model, nnx.Param)[1])."""
  manager = ocp.CheckpointManager((Path(run_dir) / "best").resolve())
  step = manager.best_step() or manager.latest_step()
  if step is None:
    raise UserError(f"{run_dir} has no early-stopping checkpoint (best/)")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, params_like)
  params = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  manager.close()
  return step, params


def _log(pending, t_prev: float, metrics_file, batch_tokens: int, flops: dict, peak: float):
  """Fetches one step's metrics from the device, appends them to metrics.jsonl."""
  done, metrics, evals = pending
  values = jax.device_get(metrics)
  now = time.time()
  record = {"step": done, "tokens": done * batch_tokens,
            "flops": done * batch_tokens * flops["kaplan_train"],  # C = 6·N·B·S (Kaplan)
            "flops_palm": done * batch_tokens * flops["palm_train"]}
  record.update({k: _finite_or_none(float(v)) for k, v in values.items()})
  record["step_time_s"] = now - t_prev
  record["tokens_per_s"] = batch_tokens / max(now - t_prev, 1e-9)
  record["model_flops_per_s"] = record["tokens_per_s"] * flops["palm_train"]
  record["mfu"] = record["model_flops_per_s"] / peak  # PaLM-count model FLOPs utilization
  record["eval_loss"] = None
  record.update(evals or {})
  record["time"] = now
  if metrics_file is not None:
    metrics_file.write(json.dumps(record) + "\n")
    metrics_file.flush()
  return now, record


def _check_finite(record: dict, manager, peak_lr: float) -> None:
  """Stops the run at the first NaN or infinite loss or gradient norm, before any checkpoint of
  that state is written, and says how to go on from the last good checkpoint."""
  bad = [k for k in ("loss", "grad_norm") if record.get(k) is None]
  if bad:
    step = record["step"]
    manager.wait_until_finished()
    latest = manager.latest_step()
    where = (f"the last good checkpoint is step {latest} (kept)" if latest is not None
             else "no checkpoint was written before it")
    raise UserError(f"the {' and '.join(bad)} became NaN or infinite at step {step}; {where}. "
                    f"Resume from it with a lower learning rate (--config.train.peak_lr="
                    f"{peak_lr / 2:.3g}) or without that step's batch "
                    f"(--config.train.skip_batches={step}), or start again with --overwrite")


_FULL_DISK = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _disk_error(exc: BaseException):
  """The OSError of a full disk (or a size cap) anywhere in an exception's chain, else None."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, OSError) and exc.errno in _FULL_DISK:
      return exc
    text = str(exc)
    if any(m in text for m in ("No space left", "File too large", "Disk quota")):
      return exc
    exc = exc.__cause__ or exc.__context__
  return None


def _raise_if_disk_full(exc: BaseException, where: Path) -> None:
  """A full disk (or a size cap) while writing `where` (a file or folder in the run directory):
  one clear error that names the checkpoints still intact."""
  if _disk_error(exc) is None:
    return
  ckpt_dir = where.parent / "checkpoints"
  good = (sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
          if ckpt_dir.is_dir() else [])
  why = str(_disk_error(exc)).splitlines()[0][:120]
  raise StorageError(f"no space left writing {where} ({why}); the checkpoints {good or '(none)'} "
                     f"in {ckpt_dir} are intact. Free space and rerun the same command to "
                     "resume") from None


def _manager_options(name: str, **kw) -> ocp.CheckpointManagerOptions:
  """Options of the run's checkpoint managers ("state", "best"). Each has its own prefix for the
  barriers between processes: orbax names a save's barriers after the step's directory, so the
  two managers' saves of the same step would otherwise meet at each other's barriers (seen as
  a hang, or a metadata check that found one process's files, in 2-process runs)."""
  return ocp.CheckpointManagerOptions(
      create=True, multiprocessing_options=ocp.options.MultiprocessingOptions(
          barrier_sync_key_prefix=f"scaling-{name}"), **kw)


def _save(manager, step: int, tree, where: Path, metrics=None) -> None:
  try:
    # force: orbax would otherwise skip a save while the previous one is still being written,
    # silently (a preemption checkpoint right after a periodic one was lost that way).
    manager.save(step, args=ocp.args.StandardSave(tree), metrics=metrics, force=True)
  except Exception as e:  # orbax re-raises write errors of the previous async save here too
    _raise_if_disk_full(e, where)
    raise


def _wait(manager, where: Path) -> None:
  try:
    manager.wait_until_finished()
  except Exception as e:
    _raise_if_disk_full(e, where)
    raise


def _progress_line(rec: dict, total: int, eta: float) -> str:
  parts = [f"step {rec['step']}/{total}", f"loss {rec['loss']:.4f}"]
  if rec.get("eval_loss") is not None:
    parts.append(f"eval {rec['eval_loss']:.4f}")
    parts += [f"{k.split('/', 1)[1]} {v:.4f}" for k, v in rec.items()
              if k.startswith("eval_loss/") and v is not None]
  parts.append(f"{rec.get('tokens_per_s', 0) / 1e3:.1f}k tok/s")
  if rec.get("b_noise_tokens"):
    parts.append(f"B_noise {rec['b_noise_tokens']:.3g} tok")
  parts.append(f"eta {_fmt_time(eta)}")
  return " | ".join(parts)


def _read_last(path: Path) -> dict:
  last, last_eval = {}, None
  for line in path.read_text().splitlines():
    last = json.loads(line)
    if last.get("eval_loss") is not None:
      last_eval = last["eval_loss"]
  last["eval_loss"] = last.get("eval_loss", last_eval) or last_eval
  return last
