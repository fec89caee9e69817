"""The run config's one definition: typed sections with their defaults, choices and ranges.

Every field of a run is declared here once, with its default and what it means. The ConfigDict
that config files and `--config.a.b=value` overrides edit is built from these defaults
(scaling/config/defaults.py), and `validate(cfg)` parses it back into a frozen `RunSpec` at the
command line's edge: a bad value fails with one line naming the field before anything is written,
and every stage below (trainer, step, sweeps, bench) reads the spec, never the ConfigDict.
A field marked `resumable` may change when a run resumes (scaling/train/rundir.py).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, Literal

from scaling.config.load import to_json
from scaling.errors import UserError


def _field(default, resumable: bool = False):
  return dataclasses.field(default=default, metadata={"resumable": resumable})


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
  n_layer: int = 2
  d_model: int = 128
  n_heads: int = 2                 # heads of 64 (d_head = d_model / n_heads)
  d_head: int = 0                  # 0: d_model // n_heads
  d_ff: int = 0                    # 0: 4·d_model
  n_ctx: int = 128
  tie_embeddings: bool = True
  # auto: float32 on CPU, bfloat16 on GPU/TPU
  compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
  # auto: explicit softmax(QKᵀ)V on CPU, dot_product_attention (cuDNN's fused kernel where it
  # applies) on GPU/TPU
  attention: Literal["auto", "explicit", "xla", "cudnn"] = "auto"
  # auto: on CPU, each large layer's weight gradient in the matmul form measured faster
  # (scaling/train/matmul_forms.py); the same sum in another order, so resumable
  weight_grad: Literal["auto", "plain", "transposed"] = _field("auto", resumable=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyntheticSpec:
  """The generated corpus of data.source = "synthetic" (scaling/data/generated.py); the
  vocabulary is data.vocab_size."""
  seed: int = 0
  doc_tokens: int = 0              # 0: model.n_ctx, so a training window is a document
  train_tokens: int = 4_000_000
  eval_tokens: int = 262_144
  n_patterns: int = 20_000         # the "quanta": phrases drawn with Zipf frequencies …
  zipf_exponent: float = 1.5       # … p_k ∝ k^−s (predicts L(N) − H ∝ N^−(s−1))
  pattern_tokens: int = 6          # 2 head tokens naming the pattern, body, 1 slot
  slot_values: int = 4             # a slot's values: drawn once per document, then copied
  n_topics: int = 32               # a document's latent topic, written at its start …
  topic_patterns: int = 64         # … favours its own patterns …
  topic_weight: float = 0.5        # … for this share of the phrases


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSpec:
  # synthetic: the generated corpus whose entropy rate is known (its symbols are the tokens) |
  # file | folder | glob | x.jsonl[.xz] | hf:NAME[:SPLIT] (real text; scaling/data/sources.py)
  source: str = "synthetic"
  text_field: str = "text"         # JSONL / Hugging Face column holding the text
  # byte-level BPE trained on the training split; for the generated corpus its number of symbols
  vocab_size: int = 2048
  tokenizer: str = ""              # path to an existing tokenizer.json instead of training one
  eval_fraction: float = 0.1       # last 10% of documents held out
  max_train_tokens: int = 0        # D-limited runs: train on the first D tokens only (0: all)
  cache_dir: str = _field("", resumable=True)   # "" → $SCALING_CACHE or ~/.cache/scaling
  loader_threads: int = _field(2, resumable=True)
  # a folder written by `scaling tokenize` (then source, vocab_size, tokenizer and
  # eval_fraction are the store's, not read)
  store: str = ""
  # epochs: each epoch a seeded permutation of the non-overlapping windows (every token seen
  # once per epoch, as the papers' D assumes); uniform: windows drawn with replacement
  sampling: Literal["epochs", "uniform"] = "epochs"
  # the BPE is trained on an evenly spread sample of the training documents of at most this size
  tokenizer_sample_bytes: int = 64_000_000
  shard_tokens: int = _field(1 << 27, resumable=True)  # tokens per shard file (256 MiB at uint16)
  synthetic: SyntheticSpec = SyntheticSpec()


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainSpec:
  batch_size: int = 16             # global batch in sequences (tokens = batch_size · n_ctx)
  steps: int = 0                   # set steps, or tokens (steps = tokens / batch tokens)
  tokens: int = 2_000_000
  peak_lr: float = _field(0.0, resumable=True)  # 0: Kaplan's LR(N) rule with N non-embedding …
  lr_scale: float = 1.0            # … times this
  warmup_frac: float = 0.05        # linear warm-up over this fraction of the steps …
  warmup_steps: int = 0            # … or this many steps when > 0
  min_lr_ratio: float = 0.1        # decay to this fraction of the peak
  # cosine: warm-up, cosine decay over the run | wsd: warm-up, stable, cooldown over the last
  # decay_frac (scaling/train/optim.py)
  schedule: Literal["cosine", "wsd"] = "cosine"
  decay_frac: float = 0.2          # wsd: the cooldown's share of the run
  cooldown_shape: Literal["1-sqrt", "linear"] = "1-sqrt"
  # wsd: > 0, the stable rate falls as √(ref/t) after this step (longer runs at lower rates,
  # branches still shared)
  stable_ref_steps: int = 0
  # "RUN_DIR@STEP": a branch starting from that run's checkpoint (its state, its metrics up to
  # STEP), then this config's schedule
  init_from: str = ""
  # continue: the source's steps, batches and metrics up to STEP | fork: its parameters and
  # optimizer state only, then a new run from step 0 at any batch size and seed (branched CBS)
  init_mode: Literal["continue", "fork"] = "continue"
  # the schedule's horizon if not the run's length (Kaplan's fixed-horizon runs stop before
  # their schedule ends)
  schedule_steps: int = 0
  weight_decay: float = 0.0        # AdamW decay on matrices only
  b1: float = 0.9
  b2: float = 0.95
  grad_clip: float = _field(1.0, resumable=True)  # global-norm clipping (0: off)
  # steps whose batches are left out, e.g. "41" after a NaN there
  skip_batches: str = _field("", resumable=True)
  # early stopping: end after this many evaluations without a lower held-out loss (0: off; the
  # best checkpoint is kept anyway)
  patience: int = _field(0, resumable=True)
  # end the run once the training loss, averaged over the last stop_window_tokens tokens, is
  # below stop_loss (0: off)
  stop_loss: float = 0.0
  stop_window_tokens: int = 65536


@dataclasses.dataclass(frozen=True, kw_only=True)
class GnsSpec:
  enabled: bool = True             # gradient noise scale from per-device vs global gradients
  micro_batches: int = 0           # micro-batches per device; 0: 1 on several devices, 2 on one
  ema_decay: float = 0.95          # per step, unless …
  # … this is > 0: the EMA's horizon in tokens, the same at every batch size (decay
  # exp(−batch tokens / ema_tokens) per step)
  ema_tokens: int = 0
  preconditioned: bool = False     # also |G|² and tr(Σ) weighted by Adam's P = 1/(√v̂ + ε) …
  # … at every 4th step (+1.7 to +6.1 % mean step time against no estimator on 8 CPU devices,
  # benchmarks/gns_overhead.py; a second step program to compile, so off unless asked for)
  precond_every: int = 4
  preconditioned_p2: bool = False  # and by P² (H ∝ I in the original coordinates)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalSpec:
  every: int = 100                 # steps between held-out evaluations (and at the end)
  batches: int = 8                 # fixed held-out batches per evaluation
  batch_size: int = 16
  # more held-out sets: "name=source,…" (any data source, or builtin:python-docs); logged as
  # eval_loss/<name>
  extra_sources: str = ""
  extra_lowercase: bool = False    # lower-case them (for a lower-cased training corpus)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckpointSpec:
  every: int = 200                 # steps between checkpoints (and at the end)
  keep: int = 2                    # most recent checkpoints kept
  # "100,250": also saved at these steps and never deleted (the branch points of WSD cooldowns)
  keep_steps: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeshSpec:
  num_devices: int = 0             # devices; 0: all
  # Parameters and AdamW state sharded over `fsdp` devices (each holds 1/fsdp of them, gathered
  # for the forward pass); the batch over all devices. Mesh (data = devices/fsdp, fsdp).
  fsdp: int = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistributedSpec:
  enabled: bool = False            # call jax.distributed.initialize() (multi-host)
  coordinator_address: str = ""    # "" → JAX auto-detection (TPU VM, SLURM)
  num_processes: int = 0
  process_id: int = -1
  timeout_s: int = 300             # wait this long for every process to join
  # gloo all-reduces between CPU processes (also set automatically when JAX_PLATFORMS=cpu)
  cpu_collectives: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogSpec:
  print_every: int = _field(0, resumable=True)   # progress line every this many steps; 0: ~20
  # TensorBoard event files in <run_dir>/tensorboard (tensorboardX)
  tensorboard: bool = _field(False, resumable=True)
  wandb: bool = _field(False, resumable=True)    # Weights & Biases, when wandb is installed
  wandb_project: str = _field("scaling", resumable=True)


# Top-level fields a config file sets only when it needs them: they are not in the default
# ConfigDict (so a run's config.json holds them only then).
OPTIONAL_TOP = ("group", "budget_flop", "flop_convention")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSpec:
  name: str = "run"
  run_dir: str = _field("", resumable=True)   # "" → runs/<name>
  seed: int = 0                    # parameter init and batch order
  # JAX's persistent compilation cache under the cache dir
  compilation_cache: bool = _field(True, resumable=True)
  group: str = ""                  # a sweep's family of runs (isoFLOP branches, batch sweeps)
  budget_flop: float = 0.0         # the isoFLOP budget this run spends (0: not an isoFLOP point)
  flop_convention: str = "palm"    # the FLOP count of that budget (scaling/experiments/isoflop.py)
  model: ModelSpec = ModelSpec()
  data: DataSpec = DataSpec()
  train: TrainSpec = TrainSpec()
  gns: GnsSpec = GnsSpec()
  eval: EvalSpec = EvalSpec()
  checkpoint: CheckpointSpec = CheckpointSpec()
  mesh: MeshSpec = MeshSpec()
  distributed: DistributedSpec = DistributedSpec()
  log: LogSpec = LogSpec()
  # The config as given, as JSON: what the run directory's config.json records. A record, not a
  # source of settings: nothing reads fields from it.
  config_json: str = dataclasses.field(default="", compare=False, repr=False,
                                       metadata={"record": True})


def defaults() -> dict:
  """The default config as nested dicts (the ConfigDict of scaling/config/defaults.py)."""
  def as_dict(spec) -> dict:
    out = {}
    for f in dataclasses.fields(spec):
      if f.metadata.get("record") or (spec is RUN_DEFAULTS and f.name in OPTIONAL_TOP):
        continue
      value = getattr(spec, f.name)
      out[f.name] = as_dict(value) if dataclasses.is_dataclass(value) else value
    return out
  return as_dict(RUN_DEFAULTS)


def resumable_fields(cls=None, prefix: str = "") -> tuple[str, ...]:
  """Dotted names of the fields marked resumable ("train.peak_lr", …)."""
  out = []
  for f, kind in _hints(cls or RunSpec):
    if dataclasses.is_dataclass(kind):
      out += resumable_fields(kind, f"{prefix}{f.name}.")
    elif f.metadata.get("resumable"):
      out.append(prefix + f.name)
  return tuple(out)


def _nonneg(x) -> bool:
  return x >= 0


def _positive(x) -> bool:
  return x > 0


def _finite_nonneg(x) -> bool:
  return math.isfinite(x) and x >= 0


# (section.field) → (check, what it must be): ranges. Types and Literal choices come from the
# dataclasses above.
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
    "train.decay_frac": (lambda v: 0 < v <= 1, "in (0, 1]"),
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


def _hints(cls) -> list:
  """(field, its resolved type) of a spec dataclass."""
  hints = typing.get_type_hints(cls)
  return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _typed(path: str, value, kind):
  """`value` as `kind` (int, float, bool, str or a Literal of strings), or a one-line error."""
  if typing.get_origin(kind) is Literal:
    choices = typing.get_args(kind)
    if value not in choices:
      raise UserError(f"config field {path} must be one of {', '.join(choices)}, got {value!r}")
    return value
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


def _section(cls, node, prefix: str):
  """The dataclass `cls` read from the mapping `node` (fields it lacks keep their defaults)."""
  if node is None:
    raise UserError(f"the config has no {prefix!r} section")
  values = {}
  for f, kind in _hints(cls):
    if f.metadata.get("record") or f.name not in node:
      continue
    path = f"{prefix}.{f.name}" if prefix else f.name
    if dataclasses.is_dataclass(kind):
      values[f.name] = _section(kind, node.get(f.name), path)
    else:
      values[f.name] = _typed(path, node[f.name], kind)
  return cls(**values)


def validate(cfg) -> RunSpec:
  """The typed, range-checked run spec of a config (UserError naming the first bad field)."""
  for name in ("model", "data", "train", "gns", "eval", "checkpoint", "mesh"):
    if name not in cfg:
      raise UserError(f"the config has no {name!r} section")
  spec = _section(RunSpec, cfg, "")
  # The generated corpus's documents are one context long unless set.
  if spec.data.synthetic.doc_tokens == 0:
    synthetic = dataclasses.replace(spec.data.synthetic, doc_tokens=spec.model.n_ctx)
    spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, synthetic=synthetic))
  return dataclasses.replace(spec, config_json=to_json(cfg))


def data_spec(**fields) -> DataSpec:
  """The default data section (its generated documents one default context long) with some
  fields replaced."""
  synthetic = dataclasses.replace(SyntheticSpec(), doc_tokens=ModelSpec().n_ctx)
  return dataclasses.replace(DataSpec(synthetic=synthetic), **fields)


RUN_DEFAULTS = RunSpec()
