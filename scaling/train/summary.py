"""summary.json, its one owner: what a finished run measured, as a typed `RunSummary`.

The trainer writes it once a run is finished (scaling/train/loop.py); fits, reports, sweeps and
the design read it back through `read`, never as loose JSON. A field an older run directory lacks
reads as None; keys renamed since are read under their current names.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax

from scaling import files
from scaling.errors import UserError
from scaling.laws.forms import PF_DAY_FLOP
from scaling.train import records

FILE = "summary.json"

# Older run directories used other key names; readers see the current ones.
_LEGACY_KEYS = {"flops_kaplan": "flop_kaplan", "flops_palm": "flop_palm",
                "flops_per_token": "flop_per_token", "peak_flops": "peak_flop_per_s",
                "b_noise_tokens_final": "b_simple_tokens_final"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSummary:
  """One finished run. Token counts in tokens, compute in FLOP, losses in nats per token."""
  name: str | None = None
  steps: int | None = None
  tokens: int | None = None                 # D: tokens trained on (steps × batch tokens)
  planned_steps: int | None = None
  stopped_early: bool | None = None
  stop_reason: str | None = None
  batch_seqs: int | None = None
  batch_tokens: int | None = None
  n_ctx: int | None = None
  n_vocab: int | None = None
  vocab_size_requested: int | None = None   # the BPE's asked-for size (None: a given tokenizer)
  peak_lr: float | None = None
  d_train_tokens: int | None = None         # the training split's tokens (or max_train_tokens)
  epochs: float | None = None
  sampling: str | None = None
  store: str | None = None
  store_sha256_16: str | None = None
  tokenizer_sha256_16: str | None = None
  n_kaplan: int | None = None               # N, Kaplan's non-embedding count (model.param_count)
  n_exact_nonemb: int | None = None
  n_embedding: int | None = None
  n_total: int | None = None
  flop_per_token: dict[str, float] | None = None   # model.flop_per_token
  flop_kaplan: float | None = None          # C = 6·N·D
  flop_palm: float | None = None
  final_loss: float | None = None
  final_eval_loss: float | None = None
  final_eval_losses: dict[str, float] | None = None   # eval.extra_sources by name
  best_eval_loss: float | None = None
  best_eval_step: int | None = None
  unigram_entropy: float | None = None
  bigram_loss: float | None = None
  entropy_rate: float | None = None         # the generated corpus's exact rate (else None)
  b_simple_tokens_final: float | None = None
  wall_time_s: float | None = None
  n_devices: int | None = None
  backend: str | None = None
  peak_flop_per_s: float | None = None
  peak_source: str | None = None
  mfu_mean: float | None = None
  shape: dict[str, int] | None = None       # n_layer, d_model, n_heads, d_head, d_ff
  group: str | None = None
  budget_flop: float | None = None
  flop_convention: str | None = None
  schedule: str | None = None
  branched_from: str | None = None
  init_mode: str | None = None
  pf_days_kaplan: float | None = None

  def count(self, key: str) -> Any:
    """A parameter count by its name (laws/conventions.N_KEY: "n_kaplan" or "n_total")."""
    if key not in ("n_kaplan", "n_exact_nonemb", "n_embedding", "n_total"):
      raise KeyError(key)
    return getattr(self, key)


_FIELDS = {f.name for f in dataclasses.fields(RunSummary)}


def write(run_dir: Path, summary: RunSummary) -> None:
  files.atomic_write_text(Path(run_dir) / FILE, json.dumps(dataclasses.asdict(summary), indent=1))


def read(run_dir: Path) -> RunSummary:
  """The run's summary, or a one-line error naming the file."""
  path = Path(run_dir) / FILE
  try:
    raw = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f"cannot read {path}: {e}") from None
  if not isinstance(raw, dict):
    raise UserError(f"{path} is not a run summary (a {type(raw).__name__}, not an object)")
  values = {_LEGACY_KEYS.get(k, k): v for k, v in raw.items()}
  return RunSummary(**{k: v for k, v in values.items() if k in _FIELDS})


def exists(run_dir: Path) -> bool:
  return (Path(run_dir) / FILE).is_file()


def from_run(setup, loop, final: dict) -> RunSummary:
  """The summary of a run that just ended: its Setup and _Loop (scaling/train/loop.py) and its
  last metrics record."""
  spec, mcfg, store = setup.spec, setup.mcfg, setup.store
  steps, start, batch_tokens = loop.steps_done, loop.start, setup.batch_tokens
  elapsed_s = max(time.time() - loop.t_start, 1e-9)
  fpt = setup.flop_per_token
  flop_kaplan = fpt["kaplan_train"] * steps * batch_tokens
  return RunSummary(**{
      "name": spec.name, "steps": steps, "tokens": steps * batch_tokens,
      "planned_steps": setup.total_steps, "stopped_early": steps < setup.total_steps,
      "stop_reason": loop.stop_reason if steps < setup.total_steps else None,
      "batch_seqs": spec.train.batch_size, "batch_tokens": batch_tokens, "n_ctx": mcfg.n_ctx,
      "n_vocab": store.n_vocab,
      "vocab_size_requested": None if spec.data.tokenizer or spec.data.store
                              else spec.data.vocab_size,
      "peak_lr": setup.peak_lr, "d_train_tokens": setup.d_train_tokens,
      "epochs": steps * batch_tokens / setup.d_train_tokens, "sampling": spec.data.sampling,
      "store": spec.data.store or str(store.folder), "store_sha256_16": store.sha256_16,
      "tokenizer_sha256_16": store.meta["tokenizer_sha256_16"],
      **setup.counts._asdict(), "flop_per_token": fpt,
      "flop_kaplan": flop_kaplan,
      "flop_palm": fpt["palm_train"] * steps * batch_tokens,
      "final_loss": final.get("loss"), "final_eval_loss": final.get("eval_loss"),
      "final_eval_losses": {k.split("/", 1)[1]: v for k, v in final.items()
                            if k.startswith("eval_loss/")},
      "best_eval_loss": records.finite_or_none(loop.best["eval_loss"]),
      "best_eval_step": loop.best["step"],
      "unigram_entropy": store.unigram_entropy(), "bigram_loss": store.bigram_loss(),
      "entropy_rate": store.entropy_rate(),
      "b_simple_tokens_final": final.get("b_simple_tokens"),
      "wall_time_s": elapsed_s, "n_devices": loop.trainer.geom.n_devices,
      "backend": jax.default_backend(), "peak_flop_per_s": loop.peak_flop_per_s,
      "peak_source": loop.peak_source,
      "mfu_mean": fpt["palm_train"] * (steps - start) * batch_tokens / elapsed_s
                  / loop.peak_flop_per_s,
      "shape": {"n_layer": mcfg.n_layer, "d_model": mcfg.d_model, "n_heads": mcfg.n_heads,
                "d_head": mcfg.head_dim, "d_ff": mcfg.ff_dim},
      "group": spec.group, "budget_flop": spec.budget_flop or None,
      "flop_convention": spec.flop_convention if spec.budget_flop else None,
      "schedule": spec.train.schedule, "branched_from": spec.train.init_from or None,
      "init_mode": spec.train.init_mode if spec.train.init_from else None,
      "pf_days_kaplan": flop_kaplan / PF_DAY_FLOP,
  })
