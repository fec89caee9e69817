"""Which layers' weight gradients take the copied-xᵀ form (scaling/model/kernels.py) here.

Shape suffixes: T rows (tokens), I input features, O output features.

`model.weight_grad`: "plain" (XLA's own form everywhere), "transposed" (the copy in every biased
layer) or "auto": on one CPU process, each large layer shape is timed once in both forms
(a few hundred ms) and takes the copy only where it is clearly faster, since which shapes lose is
the matmul library's affair and differs between processors. Small layers, every other backend and
multi-process runs keep the layer's own form. `resolve` runs before the step is built, never while
it is traced; its answer is the model's explicit `ModelConfig.copy_xt`. The measured choices are
kept in the user cache directory ($SCALING_CACHE or ~/.cache/scaling, weight-grad-forms.json,
keyed by processor and jaxlib version), so that a shape whose two forms run close is not decided
differently by the next process: a resumed run does the same arithmetic.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from scaling import files
from scaling.errors import UserError

MODES = ("auto", "plain", "transposed")
# Below this many multiply-adds per weight gradient the copy and the timing are not worth it.
MIN_MACS = 2**26
# The copied form must beat the plain one by this factor: timed alone, a few percent is within the
# noise, and the copy's extra memory traffic weighs more inside a whole step than alone.
MARGIN = 1.15


def _median_s(fn, args, reps: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def _machine() -> str:
  """The processor (model name and instruction-set flags, hashed), core count and jaxlib version."""
  try:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    cpuinfo = []
  lines = sorted({ln for ln in cpuinfo if ln.startswith(("model name", "flags"))})
  text = "\n".join(lines) or platform.processor() or platform.machine()
  digest = hashlib.sha256(text.encode()).hexdigest()[:16]
  return f"{digest}-{os.cpu_count()}cpu-jaxlib{jaxlib.__version__}"


def _forms_file() -> Path | None:
  try:
    return files.cache_root() / "weight-grad-forms.json"
  except OSError:                  # no writable cache directory: measured in every process
    return None


def _read_forms(path: Path | None) -> dict:
  try:
    forms = json.loads(path.read_text()) if path else {}
  except (OSError, ValueError):
    return {}
  return forms if isinstance(forms, dict) else {}


@functools.lru_cache(maxsize=None)
def copy_is_faster(n_rows: int, n_in: int, n_out: int, dtype: str, reps: int = 7) -> bool:
  """Times x_TIᵀ·dy_TO as XLA forms it and with xᵀ copied first (interleaved rounds, medians);
  True when the copy is faster by MARGIN. Measured on this process's first CPU device once per
  machine (then read back from the cache file)."""
  path, key = _forms_file(), f"{_machine()}|{n_rows}x{n_in}x{n_out}|{dtype}"
  known = _read_forms(path).get(key)
  if isinstance(known, bool):
    return known
  faster = _measure(n_rows, n_in, n_out, dtype, reps)
  # Merged with what other processes wrote meanwhile. A cache that cannot be written is only a
  # cost: the next process measures again.
  try:
    if path:
      files.atomic_write_text(path, json.dumps({**_read_forms(path), key: faster}, indent=1))
  except (OSError, UserError):
    pass
  return faster


def _measure(n_rows: int, n_in: int, n_out: int, dtype: str, reps: int) -> bool:
  rng = np.random.default_rng(0)
  x_TI = jnp.asarray(rng.standard_normal((n_rows, n_in)), dtype)
  dy_TO = jnp.asarray(rng.standard_normal((n_rows, n_out)), dtype)
  plain = jax.jit(lambda x, dy: jax.lax.dot_general(x, dy, (((0,), (0,)), ((), ()))))
  copied = jax.jit(lambda x, dy: jax.lax.optimization_barrier(jnp.swapaxes(x, 0, 1)) @ dy)
  rounds = [(_median_s(plain, (x_TI, dy_TO), reps), _median_s(copied, (x_TI, dy_TO), reps))
            for _ in range(2)]
  plain_s, copied_s = (min(r[i] for r in rounds) for i in (0, 1))
  return copied_s * MARGIN < plain_s


def use_copy(mode: str, n_rows: int, n_in: int, n_out: int, dtype, platform: str = "") -> bool:
  """Whether a (n_rows, n_in) → n_out layer takes the copied form under `mode` (one of MODES)."""
  if mode != "auto":
    return mode == "transposed"
  # Several processes keep XLA's form: each would time its own, and their programs could differ.
  if ((platform or jax.default_backend()) != "cpu" or jax.process_count() > 1
      or n_rows * n_in * n_out < MIN_MACS):
    return False
  return copy_is_faster(n_rows, n_in, n_out, jnp.dtype(dtype).name)


def resolve(mcfg, mode: str, n_rows: int, platform: str = ""):
  """mcfg with copy_xt set to the layers that take the copied form under `mode`, for a step whose
  gradient is taken over n_rows tokens at a time (a micro-batch on one device)."""
  if mode not in MODES:
    raise UserError(f"model.weight_grad must be one of {', '.join(MODES)}, got {mode!r}")
  dtype = jnp.dtype(mcfg.compute_dtype)
  copy_xt = tuple(shape for shape in dict.fromkeys(mcfg.biased_linears())
                  if use_copy(mode, n_rows, *shape, dtype, platform))
  return dataclasses.replace(mcfg, copy_xt=copy_xt)
