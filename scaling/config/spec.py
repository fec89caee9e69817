"""A run config validated into typed objects, in one place.

`validate(cfg)` turns an `ml_collections.ConfigDict` (configs/*.py plus overrides) into a frozen
`RunSpec` whose sections (data, train, gns, eval, checkpoint, mesh) are dataclasses with checked
types and ranges. Every consumer (trainer, bench, sweeps) reads the spec, never loose fields, so a
bad value fails here with one line before anything is written. The model section is validated by
`model.ModelConfig` once the vocabulary size is known (it comes from the token store).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from scaling.config.defaults import base_config
from scaling.errors import UserError


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
  """The generated corpus of data.source = "synthetic" (scaling/data/generated.py); the vocabulary is
  data.vocab_size."""
  seed: int = 0
  doc_tokens: int = 0            # a document's tokens; 0: model.n_ctx (a window is a document)
  train_tokens: int = 4_000_000
  eval_tokens: int = 262_144
  n_patterns: int = 20_000
  zipf_exponent: float = 1.5
  pattern_tokens: int = 6
  slot_values: int = 4
  n_topics: int = 32
  topic_patterns: int = 64
  topic_weight: float = 0.5


@dataclasses.dataclass(frozen=True)
class DataSpec:
  source: str
  text_field: str
  vocab_size: int
  tokenizer: str
  eval_fraction: float
  max_train_tokens: int
  cache_dir: str
  loader_threads: int
  store: str = ""          # a folder written by `scaling tokenize`; "" → build or reuse the cache
  sampling: str = "epochs"  # windows without replacement per epoch, or "uniform" (data.py)
  tokenizer_sample_bytes: int = 64_000_000  # the BPE's training sample (scaling/data/tokenize.py)
  shard_tokens: int = 1 << 27                # tokens per shard file (scaling/data/store.py)
  synthetic: SyntheticSpec = SyntheticSpec()   # source "synthetic": the generator's parameters


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  batch_size: int          # global batch in sequences
  steps: int
  tokens: int
  peak_lr: float           # 0: Kaplan's LR(N) rule
  warmup_frac: float
  warmup_steps: int
  min_lr_ratio: float
  weight_decay: float
  b1: float
  b2: float
  grad_clip: float
  skip_batches: str
  patience: int
  stop_loss: float
  stop_window_tokens: int
  schedule: str = "cosine"      # cosine | wsd (scaling/train/optim.py)
  decay_frac: float = 0.2       # wsd: the cooldown's share of the run
  cooldown_shape: str = "1-sqrt"
  init_from: str = ""           # "RUN_DIR@STEP": start from that run's checkpoint (a branch)
  init_mode: str = "continue"   # continue: its steps, batches and metrics | fork: a new run
  schedule_steps: int = 0       # the schedule's horizon when not the run's length (0)
  lr_scale: float = 1.0         # peak_lr = 0: this multiple of Kaplan's LR(N)
  stable_ref_steps: int = 0     # wsd: > 0, the stable rate falls as √(ref/t) after this step


@dataclasses.dataclass(frozen=True)
class GnsSpec:
  enabled: bool
  micro_batches: int
  ema_decay: float
  preconditioned: bool = False  # also the Adam-preconditioned estimates (scaling/train/step.py)
  preconditioned_p2: bool = False  # and the P²-weighted ones (the H ∝ I alternative)
  ema_tokens: int = 0           # > 0: the EMA's horizon in tokens (decay exp(−B/ema_tokens))
  precond_every: int = 4        # the preconditioned estimates at every this many steps


@dataclasses.dataclass(frozen=True)
class EvalSpec:
  every: int
  batches: int
  batch_size: int
  extra_sources: str
  extra_lowercase: bool


@dataclasses.dataclass(frozen=True)
class CheckpointSpec:
  every: int
  keep: int
  keep_steps: str = ""          # "100,250": also saved at these steps and never deleted


@dataclasses.dataclass(frozen=True)
class MeshSpec:
  num_devices: int
  fsdp: int = 1            # devices a parameter is sharded over (1: pure data parallelism)


@dataclasses.dataclass(frozen=True)
class RunSpec:
  name: str
  run_dir: str
  seed: int
  compilation_cache: bool
  group: str
  budget_flop: float        # the isoFLOP budget this run spends (0: not an isoFLOP point)
  flop_convention: str      # the FLOP count of that budget (scaling/experiments/isoflop.py)
  model: dict               # the model section as given; model.ModelConfig validates it
  data: DataSpec
  train: TrainSpec
  gns: GnsSpec
  eval: EvalSpec
  checkpoint: CheckpointSpec
  mesh: MeshSpec


def _nonneg(x) -> bool:
  return x >= 0


def _positive(x) -> bool:
  return x > 0


def _finite_nonneg(x) -> bool:
  return math.isfinite(x) and x >= 0


# (section.field) → (check, what it must be). Fields not listed only have their type checked.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_nonneg, "a non-negative integer"),
    "data.vocab_size": (lambda v: v >= 8, "at least 8 (258 for byte-level BPE: 256 bytes + EOS + 1)"),
    "data.synthetic.doc_tokens": (_nonneg, "a non-negative integer (0: model.n_ctx)"),
    "data.synthetic.train_tokens": (lambda v: v >= 1024, "at least 1024"),
    "data.synthetic.eval_tokens": (lambda v: v >= 256, "at least 256"),
    "data.eval_fraction": (lambda v: 0 < v < 1, "between 0 and 1 (exclusive)"),
    "data.max_train_tokens": (_nonneg, "a non-negative integer (0: all)"),
    "data.loader_threads": (_nonneg, "a non-negative integer"),
    "data.tokenizer_sample_bytes": (lambda v: v >= 1_000, "at least 1000 bytes"),
    "data.shard_tokens": (lambda v: v >= 1_024, "at least 1024 tokens"),
    "data.sampling": (lambda v: v in ("epochs", "uniform"),
                      "epochs (each window once per epoch) or uniform (with replacement)"),
    "train.batch_size": (_positive, "a positive integer"),
    "train.steps": (_nonneg, "a non-negative integer (0: from train.tokens)"),
    "train.tokens": (_nonneg, "a non-negative integer"),
    "train.peak_lr": (_finite_nonneg, "a finite non-negative number (0: Kaplan's LR(N))"),
    "train.warmup_frac": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.warmup_steps": (_nonneg, "a non-negative integer"),
    "train.min_lr_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "train.weight_decay": (_finite_nonneg, "a finite non-negative number"),
    "train.b1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.b2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.grad_clip": (_finite_nonneg, "a finite non-negative number (0: off)"),
    "train.patience": (_nonneg, "a non-negative integer (0: off)"),
    "train.stop_loss": (_finite_nonneg, "a finite non-negative number (0: off)"),
    "train.stop_window_tokens": (_nonneg, "a non-negative integer"),
    "train.stable_ref_steps": (_nonneg, "a non-negative integer (0: a flat stable phase)"),
    "train.schedule_steps": (_nonneg, "a non-negative integer (0: the run's own steps)"),
    "train.lr_scale": (lambda v: math.isfinite(v) and v > 0, "a positive finite number"),
    "train.schedule": (lambda v: v in ("cosine", "wsd"), "cosine or wsd"),
    "train.init_mode": (lambda v: v in ("continue", "fork"), "continue or fork"),
    "train.decay_frac": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "train.cooldown_shape": (lambda v: v in ("1-sqrt", "linear"), "1-sqrt or linear"),
    "gns.micro_batches": (_nonneg, "a non-negative integer (0: automatic)"),
    "gns.ema_decay": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "gns.ema_tokens": (_nonneg, "a non-negative integer (0: gns.ema_decay per step)"),
    "gns.precond_every": (_positive, "a positive integer"),
    "mesh.fsdp": (_positive, "a positive integer (1: parameters replicated on every device)"),
    "eval.every": (_nonneg, "a non-negative integer (0: at the end only)"),
    "eval.batches": (_positive, "a positive integer"),
    "eval.batch_size": (_positive, "a positive integer"),
    "checkpoint.every": (_positive, "a positive integer"),
    "checkpoint.keep": (_positive, "at least 1 (a kill with no checkpoint kept would start over)"),
    "mesh.num_devices": (_nonneg, "a non-negative integer (0: all devices)"),
}


def _typed(path: str, value, kind):
  """`value` as `kind` (int, float, bool or str), or a one-line error."""
  if kind is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if kind is int and isinstance(value, float) and value.is_integer():
    value = int(value)
  if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
    raise UserError(f"config field {path} must be a {kind.__name__}, got {value!r}")
  rule = _RULES.get(path)
  if rule and not rule[0](value):
    raise UserError(f"config field {path} must be {rule[1]}, got {value!r}")
  return value


_NESTED = {"SyntheticSpec": SyntheticSpec}   # sections inside sections


def _section(cls, cfg, prefix: str):
  node = cfg
  for part in filter(None, prefix.split(".")):
    node = node.get(part) if node is not None else None
  if node is None:
    raise UserError(f"the config has no {prefix!r} section")
  values = {}
  for f in dataclasses.fields(cls):
    if f.name not in node:
      if f.default is dataclasses.MISSING:
        raise UserError(f"the config lacks {prefix}.{f.name}")
      continue
    if str(f.type) in _NESTED:
      values[f.name] = _section(_NESTED[str(f.type)], cfg, f"{prefix}.{f.name}")
      continue
    kind = {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]
    values[f.name] = _typed(f"{prefix}.{f.name}", node[f.name], kind)
  return cls(**values)


def validate(cfg) -> RunSpec:
  """The typed, range-checked run spec of a config (UserError naming the first bad field)."""
  top = {k: _typed(k, cfg.get(k, d), t) for k, d, t in (
      ("name", "run", str), ("run_dir", "", str), ("seed", 0, int),
      ("compilation_cache", True, bool), ("group", "", str), ("budget_flop", 0.0, float),
      ("flop_convention", "palm", str))}
  if "model" not in cfg:
    raise UserError("the config has no 'model' section")
  return RunSpec(**top, model=dict(cfg.model.to_dict()),
                 data=_data_section(cfg), train=_section(TrainSpec, cfg, "train"),
                 gns=_section(GnsSpec, cfg, "gns"), eval=_section(EvalSpec, cfg, "eval"),
                 checkpoint=_section(CheckpointSpec, cfg, "checkpoint"),
                 mesh=_section(MeshSpec, cfg, "mesh"))


def _data_section(cfg) -> DataSpec:
  """The data section, the generated corpus's documents one context long unless set."""
  data = _section(DataSpec, cfg, "data")
  if data.synthetic.doc_tokens == 0:
    n_ctx = _typed("model.n_ctx", cfg.model.get("n_ctx", 128), int)
    data = dataclasses.replace(data, synthetic=dataclasses.replace(data.synthetic,
                                                                   doc_tokens=n_ctx))
  return data


def data_spec(**fields) -> DataSpec:
  """The default data section (scaling/config/defaults.py) with some fields replaced."""
  return dataclasses.replace(_data_section(base_config()), **fields)
