"""The training loop: a run from its config to its summary, resumable at any step.

`train(spec)` takes the run's typed spec (scaling/config/spec.py: the command line validates the
config into it, and nothing here reads the config itself), opens the token store
(scaling/data/store.py), builds the step (scaling/train/step.py), restores the latest good
checkpoint (scaling/train/checkpoint.py) and then takes steps: metrics to the run directory
(scaling/train/rundir.py) one step behind the device, held-out evaluation, early stopping,
checkpoints, SIGTERM; at the end summary.json (scaling/train/summary.py).

The per-step records and stop rules live in scaling/train/records.py.

Shape suffixes: B batch (sequences), W window positions (context + 1), n the fixed eval batches.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from scaling.config.spec import RunSpec
from scaling.data import loader as datalib
from scaling.data import store as storelib
from scaling.data import tokenize
from scaling.errors import Preempted, UserError
from scaling.laws.forms import kaplan_learning_rate
from scaling.model.transformer import ModelConfig, ParamCount, flop_per_token, param_count
from scaling.train import checkpoint as ckptlib
from scaling.train import distributed
from scaling.train import hardware
from scaling.train import loggers
from scaling.train import records
from scaling.train import remote
from scaling.train import rundir
from scaling.train import runlock
from scaling.train import step as steplib
from scaling.train import summary as summarylib


class BranchPoint(NamedTuple):
  """Where a branch starts (train.init_from): its source run, the step, and whether it forks."""
  source: Path
  step: int
  fork: bool


@dataclasses.dataclass
class Setup:
  """Everything a run needs that is decided before its run directory is touched."""
  spec: RunSpec
  mesh: jax.sharding.Mesh
  store: storelib.TokenStore
  mcfg: ModelConfig
  counts: ParamCount
  flop_per_token: dict
  total_steps: int
  peak_lr: float
  batch_tokens: int
  train_source: object
  eval_nBW: np.ndarray
  extra_sets: dict
  d_train_tokens: int
  keep_steps: tuple = ()         # checkpoints kept for branches (checkpoint.keep_steps)
  branch: BranchPoint | None = None   # train.init_from


def prepare(spec: RunSpec, verbose: bool) -> Setup:
  """Checks the spec against the devices and opens the data; raises UserError before anything
  is written."""
  mesh = steplib.make_mesh(spec.mesh.num_devices, spec.mesh.fsdp)
  n_devices = mesh.devices.size
  steplib.BatchGeometry(spec.train.batch_size, 1, n_devices,
                        steplib.micro_batches(spec.gns, n_devices)).check()
  if spec.eval.batch_size % n_devices:
    raise UserError(f"eval.batch_size={spec.eval.batch_size} is not divisible by the "
                    f"{n_devices} devices")
  store = tokenize.store_for(spec.data, verbose=verbose)
  mcfg = ModelConfig.from_config(dict(dataclasses.asdict(spec.model), n_vocab=store.n_vocab,
                                      compute_dtype=hardware.resolve_dtype(
                                          spec.model.compute_dtype)))
  batch_tokens = spec.train.batch_size * mcfg.n_ctx
  total_steps = spec.train.steps or -(-spec.train.tokens // batch_tokens)
  if total_steps <= 0:
    raise UserError("set train.steps or train.tokens to a positive number")
  counts = param_count(mcfg)
  peak_lr = spec.train.peak_lr or spec.train.lr_scale * kaplan_learning_rate(counts.n_kaplan)
  skips = datalib.parse_skip_batches(spec.train.skip_batches)
  train_source = datalib.SkipBatches(datalib.WindowBatches(
      store.train_T, mcfg.n_ctx, spec.train.batch_size, total_steps + len(skips), spec.seed,
      jax.process_index(), jax.process_count(), spec.data.max_train_tokens,
      spec.data.sampling), skips)
  ev = spec.eval
  eval_nBW = datalib.eval_batches(store.eval_T, mcfg.n_ctx, ev.batch_size, ev.batches)
  # Extra held-out sets (other distributions), tokenized with this run's tokenizer.
  if ev.extra_sources and store.entropy_rate() is not None:
    raise UserError("eval.extra_sources are text, and the generated corpus's tokenizer has "
                    "only its own symbols; drop eval.extra_sources or train on a text corpus")
  if store.entropy_rate() is not None and store.meta["synthetic"]["doc_tokens"] != mcfg.n_ctx:
    print(f"note: the generated corpus's documents are {store.meta['synthetic']['doc_tokens']} "
          f"tokens and the context {mcfg.n_ctx}: windows are not documents, and the entropy "
          "rate is not reachable", flush=True)
  extra_sets = {
      name: datalib.eval_batches(
          datalib.extra_eval_tokens(store.tokenizer, source, spec.data.text_field,
                                    ev.extra_lowercase), mcfg.n_ctx, ev.batch_size, ev.batches)
      for name, source in datalib.parse_eval_sources(ev.extra_sources)}
  return Setup(spec, mesh, store, mcfg, counts, flop_per_token(mcfg), total_steps, peak_lr,
               batch_tokens, train_source, eval_nBW, extra_sets,
               spec.data.max_train_tokens or store.meta["n_tokens_train"],
               tuple(ckptlib.parse_steps(spec.checkpoint.keep_steps)),
               _branch(spec, total_steps))


def _branch(spec: RunSpec, total_steps: int) -> BranchPoint | None:
  """(source run, step, fork?) of train.init_from, checked against the source's config: a
  continuing branch resumes the source's batches, so its batch, seed and model must be the
  source's; a fork (train.init_mode = fork) only takes the state, so only the model must match."""
  if not spec.train.init_from:
    return None
  where, step = rundir.parse_branch(spec.train.init_from)
  # A source on a URL is read from a local copy, its checkpoints included.
  source = (remote.Mirror(where, datalib.cache_root(spec.data.cache_dir), skip=("best",)).pull()
            if remote.is_remote(where) else Path(where))
  config = source / rundir.CONFIG
  if not config.is_file():
    raise UserError(f"train.init_from: {source} is not a run directory (no {rundir.CONFIG})")
  theirs = rundir.read_config(source)
  fork = spec.train.init_mode == "fork"
  pairs = {"model": (dataclasses.asdict(spec.model), theirs["model"])}
  if not fork:
    pairs.update({"train.batch_size": (spec.train.batch_size, theirs["train"]["batch_size"]),
                  "seed": (spec.seed, theirs.get("seed", 0))})
  for name, (mine, their) in pairs.items():
    if mine != their:
      raise UserError(f"train.init_from: {name} is {mine} here but {their} in {source}; a "
                      + ("fork" if fork else "branch that continues its source (not "
                         "train.init_mode=fork)") + " keeps its source's "
                      + ("model" if fork else "model, batches and seed"))
  if not fork and step >= total_steps:
    raise UserError(f"train.init_from: step {step} is not before this run's last step "
                    f"{total_steps}")
  return BranchPoint(source, step, fork)


def _local_rows(batch_BW: np.ndarray) -> np.ndarray:
  per = batch_BW.shape[0] // jax.process_count()
  return batch_BW[jax.process_index() * per:(jax.process_index() + 1) * per]


def train(spec: RunSpec, overwrite: bool = False, verbose: bool = True) -> summarylib.RunSummary:
  """Trains (or resumes) one run; returns its summary (summary.json). `spec` is the run's
  RunSpec, made from its config by scaling/config/spec.validate (which also records the config
  as given, for config.json). A run_dir that is a URL (gs://, memory://, …) is trained in a local
  mirror, pushed at every checkpoint and at the end (scaling/train/remote.py)."""
  if not isinstance(spec, RunSpec) or not spec.config_json:
    raise TypeError("train() takes the run's RunSpec: validate(config) first "
                    "(scaling/config/spec.py)")
  if remote.is_remote(spec.run_dir):
    return _train_mirrored(spec, overwrite, verbose)
  return _train_here(spec, overwrite, verbose, sync=None)


def _train_mirrored(spec: RunSpec, overwrite: bool, verbose: bool) -> summarylib.RunSummary:
  distributed.initialize(spec.distributed)
  if jax.process_count() > 1:
    raise UserError(f"run_dir {spec.run_dir} is not local: a run on several hosts needs a "
                    "filesystem path they share (each host would mirror its own copy)")
  mirror = remote.Mirror(spec.run_dir, datalib.cache_root(spec.data.cache_dir))
  mirror.pull()
  try:   # config.json (spec.config_json) keeps the URL as run_dir
    return _train_here(dataclasses.replace(spec, run_dir=str(mirror.local)), overwrite, verbose,
                       sync=mirror.push)
  finally:
    mirror.push()


def _train_here(spec: RunSpec, overwrite: bool, verbose: bool,
                sync) -> summarylib.RunSummary:
  distributed.initialize(spec.distributed)
  if spec.compilation_cache:
    hardware.enable_compilation_cache(spec.data.cache_dir)
  is_main = distributed.is_main()
  say = (lambda *a: print(*a, flush=True)) if (verbose and is_main) else (lambda *a: None)
  run_dir, cfg_json = rundir.path_of(spec.run_dir, spec.name), spec.config_json
  if run_dir.exists() and not run_dir.is_dir():
    raise UserError(f"run_dir {run_dir} is a file, not a folder; give a new folder or a run's")
  if _finished(run_dir, cfg_json, overwrite):
    say(rundir.finished_note(run_dir, cfg_json))
    return summarylib.read(run_dir)
  setup = prepare(spec, verbose and is_main)
  # Everything validated: only now touch the run directory, holding its lock.
  with runlock.locked(run_dir, enabled=is_main):
    if is_main:
      # Progress whose checkpoints are gone is never silently started over.
      every = setup.spec.checkpoint.every
      start = setup.branch.step if setup.branch and not setup.branch.fork else 0
      rundir.check_progress_kept(run_dir, bool(ckptlib.committed_steps(run_dir / "checkpoints")),
                                 start + every, every, overwrite)
      rundir.check_or_write_config(run_dir, cfg_json, overwrite)
    return _train(setup, run_dir, is_main, say, sync)


def _finished(run_dir: Path, cfg_json: str, overwrite: bool) -> bool:
  """A finished run is left as it is (a rerun is a no-op), unless --overwrite is given with a
  changed config (then the old run is moved aside). Process 0's view counts on every host."""
  finished = rundir.is_finished(run_dir, cfg_json) and not (
      overwrite and rundir.config_diff(rundir.read_config(run_dir), json.loads(cfg_json)))
  return distributed.agreed(finished)


def _train(setup: Setup, run_dir: Path, is_main: bool, say,
           sync) -> summarylib.RunSummary:
  spec, mcfg = setup.spec, setup.mcfg
  trainer = steplib.build(mcfg, spec.train, spec.gns, setup.mesh, setup.peak_lr,
                          setup.total_steps, spec.seed, spec.model.weight_grad)
  loop = _Loop(setup, trainer, run_dir, is_main, say, sync)
  geom = trainer.geom
  say(f"model: n_layer={mcfg.n_layer} d_model={mcfg.d_model} heads={mcfg.n_heads}x{mcfg.head_dim} "
      f"n_ctx={mcfg.n_ctx} | N (Kaplan, non-embedding) = {setup.counts.n_kaplan:,}, "
      f"total = {setup.counts.n_total:,} | {setup.flop_per_token['palm_train']:.3g} "
      "FLOP/token (PaLM count)")
  say(f"training: {setup.total_steps} steps x {spec.train.batch_size} x {mcfg.n_ctx} tokens on "
      f"{geom.n_devices} {jax.default_backend()} device(s), peak lr {setup.peak_lr:.3g}"
      f"{_lr_rule(spec.train)}, gns B_small/B_big = "
      f"{geom.b_small_tokens}/{geom.b_big_tokens} tokens | run dir {run_dir}")
  loop.run()
  final = rundir.last_record(run_dir) if is_main else loop.last_record
  summary = summarylib.from_run(setup, loop, final)
  if is_main:
    summarylib.write(run_dir, summary)
    say(f"done: final held-out loss {summary.final_eval_loss:.4f} nats/token "
        f"(unigram entropy of the training text {summary.unigram_entropy:.4f}); "
        f"metrics in {run_dir / rundir.METRICS}")
  return summary


class _Loop:
  """The steps of one run, with their metrics, evaluations, checkpoints and stopping rules."""

  def __init__(self, setup: Setup, trainer: steplib.Trainer, run_dir: Path, is_main: bool,
               say, sync):
    self.setup, self.trainer, self.run_dir = setup, trainer, run_dir
    self.is_main, self.say, self.sync = is_main, say, sync
    self.ckpt_dir = (run_dir / "checkpoints").resolve()
    ck = setup.spec.checkpoint
    self.manager = ckptlib.state_manager(self.ckpt_dir, ck.keep, setup.keep_steps)
    self.state, self.start = trainer.state, 0
    if self.manager.latest_step() is not None:
      self.start, self.state, self.manager = ckptlib.restore_latest_good(
          self.manager, self.ckpt_dir, self.state, ck.keep, is_main, setup.keep_steps)
      say(f"resumed from the checkpoint at step {self.start}")
    elif setup.branch is not None:
      source, at, fork = setup.branch.source, setup.branch.step, setup.branch.fork
      self.state = ckptlib.restore_branch_point(source, at, self.state)
      if not fork:                   # a fork counts its own steps from 0 (Adam's count goes on)
        self.start = at
        if is_main:
          rundir.copy_metrics(source, run_dir, at)
      say(f"{'forked' if fork else 'branched'} from {source} at step {at}")
    if is_main:
      rundir.truncate_metrics(run_dir, self.start)
    self.best_manager = ckptlib.best_manager((run_dir / "best").resolve())
    self.best = ckptlib.best_so_far(self.best_manager)
    self.peak_flop_per_s, self.peak_source = hardware.training_peak(setup.mcfg.compute_dtype)
    self.steps_done, self.last_record = self.start, {}
    tspec = setup.spec.train
    self.window = records.LossWindow(tspec.stop_loss, tspec.stop_window_tokens)
    self.stop_reason = (f"the training loss averaged over the last {tspec.stop_window_tokens:,} "
                        f"tokens fell below train.stop_loss={tspec.stop_loss}")

  def evaluate(self, batches_nBW) -> float:
    mesh, eval_fn = self.trainer.mesh, self.trainer.eval_fn
    losses = [eval_fn(self.state.params, steplib.global_batch(mesh, _local_rows(b)))
              for b in batches_nBW]
    return float(np.mean(jax.device_get(losses)))

  def evaluations(self) -> dict:
    out = {"eval_loss": self.evaluate(self.setup.eval_nBW)}
    out.update({f"eval_loss/{name}": self.evaluate(b) for name, b in self.setup.extra_sets.items()})
    return out

  def flush(self, pending: records.Pending) -> dict:
    """Fetches a step's metrics, appends them, and stops the run if they are not finite."""
    try:
      self.t_prev, record = records.step_record(pending, self.t_prev, self.setup.batch_tokens,
                                                self.setup.flop_per_token, self.peak_flop_per_s)
      record["epoch"] = self.setup.train_source.source.epoch_of(record["step"])
      self.metrics.append(record)
    except OSError as e:
      ckptlib.raise_if_disk_full(e, self.run_dir / rundir.METRICS)
      raise
    self.sinks.write(record)
    self.window.add(record)
    records.check_finite(record, self.manager, self.setup.peak_lr,
                         kaplan_learning_rate(self.setup.counts.n_kaplan))
    self.last_record = record
    return record

  def run(self) -> None:
    preempt = {"flag": False}
    old_handler = signal.signal(signal.SIGTERM, lambda *_: preempt.update(flag=True))
    self.metrics = rundir.MetricsWriter(self.run_dir, enabled=self.is_main)
    spec = self.setup.spec
    self.sinks = loggers.MetricSinks(spec.log, self.run_dir, spec.name,
                                     json.loads(spec.config_json), enabled=self.is_main)
    self.t_start = self.t_prev = time.time()
    try:
      self._steps(preempt)
    finally:
      try:
        ckptlib.wait(self.manager, self.ckpt_dir)
        ckptlib.wait(self.best_manager, self.ckpt_dir.parent / "best")
      finally:
        self.manager.close()
        self.best_manager.close()
      self.metrics.close()
      self.sinks.close()
      signal.signal(signal.SIGTERM, old_handler)

  def _steps(self, preempt: dict) -> None:
    s = self.setup
    total, spec = s.total_steps, s.spec
    print_every = self.setup.spec.log.print_every or max(1, total // 20)
    eval_every = spec.eval.every or total
    batches = datalib.train_iterator(s.train_source, self.start, spec.data.loader_threads)
    mesh, step_for = self.trainer.mesh, self.trainer.step_for
    pending = None
    for step in range(self.start, total):
      self.state, metrics = step_for(step)(self.state, steplib.global_batch(mesh, next(batches)),
                                           self.trainer.lr(step))
      done = self.steps_done = step + 1
      # Fetching the previous step's metrics while this one runs keeps at most two steps in
      # flight: no per-step stall, and XLA's CPU collectives never queue up enough all-reduces to
      # starve a device thread (which aborts the process after a 40 s rendezvous timeout).
      # flush() stops the run at the first non-finite loss or gradient norm.
      if pending is not None:
        self.flush(pending)
      stop = self.window.reached()
      last = done == total or stop
      pending = records.Pending(done, metrics, None)
      if done % eval_every == 0 or last:
        evals = self.evaluations()
        pending = records.Pending(done, metrics, evals)
        stop = self._early_stop(done, evals["eval_loss"], eval_every) or stop
        last = last or stop
      save_now = (done % spec.checkpoint.every == 0 or done in s.keep_steps or last
                  or preempt["flag"])
      if save_now or pending.evals is not None or done % print_every == 0:
        # A checkpoint is written only after this step's loss and gradient norm were checked.
        record = self.flush(pending)
        pending = None
        if done % print_every == 0 or last:
          rate = record["tokens_per_s"]
          eta = (total - done) * s.batch_tokens / rate if rate else 0.0
          self.say(records.progress_line(record, total, eta))
      if save_now:
        ckptlib.save(self.manager, done, self.state, self.ckpt_dir)
        self._synced()
      if stop:
        self.say(f"stopping at step {done}: {self.stop_reason}")
        break
      if preempt["flag"]:
        self._preempted(done, save_now, pending)
    if pending is not None:
      self.flush(pending)

  def _synced(self) -> None:
    """A mirrored run's files pushed to its remote run_dir once the checkpoint is complete (a
    local run's sync does nothing, and its saves stay asynchronous)."""
    if self.sync is not None:
      ckptlib.wait(self.manager, self.ckpt_dir)
      self.sync()

  def _early_stop(self, done: int, eval_loss: float, eval_every: int) -> bool:
    """Keeps the best parameters; True once train.patience evaluations brought no lower loss."""
    patience = self.setup.spec.train.patience
    if eval_loss < self.best["eval_loss"]:
      self.best = {"eval_loss": eval_loss, "step": done}
      ckptlib.save(self.best_manager, done, self.state.params, self.ckpt_dir.parent / "best",
                   metrics={"eval_loss": eval_loss})
    elif patience and (done - self.best["step"]) // eval_every >= patience:
      self.stop_reason = (f"no lower held-out loss in {patience} evaluations since step "
                          f"{self.best['step']} (train.patience)")
      return True
    return False

  def _preempted(self, done: int, saved: bool, pending: records.Pending | None) -> None:
    if not saved:  # the signal came after this step's save decision
      if pending is not None:
        self.flush(pending)
      ckptlib.save(self.manager, done, self.state, self.ckpt_dir)
    ckptlib.wait(self.manager, self.ckpt_dir)
    raise Preempted(f"SIGTERM at step {done}: checkpoint saved in {self.ckpt_dir}; "
                    "rerun the same command to resume")


def _lr_rule(train) -> str:
  """Where the peak learning rate came from, in words (empty when set by hand)."""
  if train.peak_lr:
    return ""
  return " (Kaplan LR(N))" if train.lr_scale == 1 else f" ({train.lr_scale:g} x Kaplan LR(N))"
