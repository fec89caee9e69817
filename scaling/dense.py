"""Linear layers whose weight gradient takes the faster of two matmul forms on XLA's CPU backend.

Shape suffixes: T rows (tokens), I input features, O output features.

The weight gradient of y_TO = x_TI·w_IO + b_O is x_TIᵀ·dy_TO. XLA hands it to its CPU matmul with
the left operand read transposed, and that form's speed depends on the shape: on 2 cores (fp32,
1,024 rows) I=1024, O=256 ran at 41 GFLOP/s against 58 with xᵀ copied out first and the plain
(M,K)·(K,N) form, while I=256, O=1024 ran at full speed either way and I=256, O=256 lost with the
copy. Which shapes lose is the matmul library's affair and differs between processors, so it is
measured here once per shape and machine (a few hundred ms), and the copy is taken only where it
is clearly faster; small layers, every other backend and multi-process runs keep the layer's own
path. The choices are kept in the user cache directory ($SCALING_CACHE or ~/.cache/scaling,
weight-grad-forms.json, keyed by processor and jaxlib version), so that a shape whose two forms
run close is not decided differently by the next process: a resumed run does the same arithmetic.
"""

from __future__ import annotations

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
from flax import nnx

from scaling import files
from scaling.data import cache_root
from scaling.errors import UserError

MODES = ("auto", "plain", "transposed")
# Below this many multiply-adds per weight gradient the copy and the timing are not worth it.
MIN_MACS = 2**26
# The copied form must beat the plain one by this factor: timed alone, a few percent is within the
# noise, and the copy's extra memory traffic weighs more inside a whole step than alone.
MARGIN = 1.15


@jax.custom_vjp
def dense_copied_xt(x_TI: jax.Array, w_IO: jax.Array, b_O: jax.Array) -> jax.Array:
  """x·w + b; its weight gradient is formed from an explicit copy of xᵀ (the plain matmul form)."""
  return x_TI @ w_IO + b_O


def _fwd(x_TI, w_IO, b_O):
  return x_TI @ w_IO + b_O, (x_TI, w_IO)


def _bwd(residuals, dy_TO):
  x_TI, w_IO = residuals
  # The barrier keeps XLA from folding the transpose back into the matmul's operand.
  xt_IT = jax.lax.optimization_barrier(jnp.swapaxes(x_TI, 0, 1))
  return dy_TO @ w_IO.T, xt_IT @ dy_TO, jnp.sum(dy_TO, axis=0)


dense_copied_xt.defvjp(_fwd, _bwd)


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
    return cache_root() / "weight-grad-forms.json"
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
  machine (then read back from the cache file); called while a step is traced, so it runs
  eagerly (ensure_compile_time_eval) instead of being staged."""
  path, key = _forms_file(), f"{_machine()}|{n_rows}x{n_in}x{n_out}|{dtype}"
  known = _read_forms(path).get(key)
  if isinstance(known, bool):
    return known
  with jax.ensure_compile_time_eval():
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


def use_copy(mode: str, n_rows: int, n_in: int, n_out: int, dtype) -> bool:
  """Whether a (n_rows, n_in) → n_out layer takes dense_copied_xt under `mode` (one of MODES,
  checked by ModelConfig.validate)."""
  if mode != "auto":
    return mode == "transposed"
  # Several processes keep XLA's form: each would time its own, and their programs could differ.
  if (jax.default_backend() != "cpu" or jax.process_count() > 1
      or n_rows * n_in * n_out < MIN_MACS):
    return False
  return copy_is_faster(n_rows, n_in, n_out, jnp.dtype(dtype).name)


def apply(layer: nnx.Linear, x_TI: jax.Array, mode: str) -> jax.Array:
  """layer(x_TI), with the weight gradient in the form `mode` chooses (see use_copy)."""
  dtype = layer.dtype or jnp.result_type(x_TI, layer.kernel[...])
  if layer.bias is None or not use_copy(mode, x_TI.shape[0], layer.in_features,
                                        layer.out_features, dtype):
    return layer(x_TI)
  return dense_copied_xt(x_TI.astype(dtype), layer.kernel[...].astype(dtype),
                         layer.bias[...].astype(dtype))
