"""Facts of the hardware: nominal accelerator peaks, the measured matmul peak, the compute dtype,
peak memory and JAX's persistent compilation cache. The trainer and the bench read them here."""

from __future__ import annotations

import functools
import json
import os
import resource
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from scaling.data.loader import cache_root


def resolve_dtype(name: str) -> str:
  """"auto": float32 on CPU, bfloat16 on accelerators."""
  if name == "auto":
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"
  return name


def enable_compilation_cache(cache_dir: str = "") -> Path:
  """JAX's persistent compilation cache in the user cache directory: a second run of the same
  shapes loads its compiled step instead of compiling it again."""
  path = cache_root(cache_dir) / "jax-compile"
  path.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


# Nominal dense peak FLOP/s per chip in bf16 (vendor data sheets; no sparsity).
NOMINAL_PEAK_BF16_FLOP_PER_S = {
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
    "TPU v6 lite": 918e12, "TPU v6e": 918e12,
    "A100": 312e12, "H100": 989e12, "H200": 989e12,
}


def nominal_peak(device=None) -> float | None:
  """The table's peak for this device kind (None when unknown, e.g. a CPU)."""
  kind = (device or jax.devices()[0]).device_kind
  for name, peak in sorted(NOMINAL_PEAK_BF16_FLOP_PER_S.items(), key=lambda kv: -len(kv[0])):
    if name.lower() in kind.lower():
      return peak
  return None


def matmul_timer(n: int, dtype: str, device):
  """A function that times one n×n×n matmul on `device` and returns its FLOP/s (2·n³ / time)."""
  mm = jax.jit(lambda x, y: x @ y)
  a = jax.device_put(jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype), device)
  b = jax.device_put(jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype), device)
  mm(a, b).block_until_ready()

  def timed() -> float:
    t0 = time.perf_counter()
    mm(a, b).block_until_ready()
    return 2 * n ** 3 / (time.perf_counter() - t0)
  return timed


def numpy_matmul_timer(n: int):
  """The same n×n×n float32 matmul through numpy's BLAS (OpenBLAS in the PyPI wheels), the
  machine's other fp32 matmul: XLA's own may be the slower of the two, which would flatter an MFU
  measured against it alone. Returns a function giving one matmul's FLOP/s."""
  rng = np.random.default_rng(0)
  a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
  a @ b

  def timed() -> float:
    t0 = time.perf_counter()
    a @ b
    return 2 * n ** 3 / (time.perf_counter() - t0)
  return timed


def matmul_peak(dtype: str = "float32", sizes=(), repeats: int = 8,
                device=None) -> tuple[float, int]:
  """(FLOP/s, n) of the fastest of several timed n×n×n matmuls on one device (2·n³ FLOP each).

  The best over sizes and repeats: a busy or cold processor only lowers the peak (which would
  flatter the MFU), so the maximum is the honest denominator. Sizes default to 1024–3072 on CPU
  and 8192 on accelerators.
  """
  device = device or jax.devices()[0]
  sizes = sizes or ((1024, 2048, 3072) if device.platform == "cpu" else (8192,))
  best, best_n = 0.0, sizes[0]
  for n in sizes:
    timed = matmul_timer(n, dtype, device)
    for _ in range(repeats):
      rate = timed()
      if rate > best:
        best, best_n = rate, n
  return best, best_n


# A helper process (scaling/experiments/processes.py) takes its starter's peak: measured beside another
# process's training, the matmul would find half the processor and double every MFU.
PEAK_ENV = "SCALING_TRAINING_PEAK"


@functools.cache
def training_peak(dtype: str = "float32") -> tuple[float, str]:
  """(peak FLOP/s of all devices of this process's mesh, where it comes from) for the MFU logged
  in metrics.jsonl: the nominal table for known accelerators, else a quick matmul measurement.
  On CPU the forced devices share one processor, so the peak is not multiplied by their count."""
  devices = jax.local_devices()
  nominal = nominal_peak(devices[0])
  if nominal:
    return nominal * len(devices), f"nominal {devices[0].device_kind}"
  given = json.loads(os.environ.get(PEAK_ENV, "{}"))
  if given.get("dtype") == dtype:    # measured by the process that started this one, alone
    return float(given["flop_per_s"]), given["source"]
  peak, _ = matmul_peak(dtype, sizes=(1024, 2048), repeats=3)
  scale = 1 if devices[0].platform == "cpu" else len(devices)
  return peak * scale, f"measured {dtype} matmul"


def peak_memory_bytes(device) -> int | None:
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"])
  if device.platform == "cpu":  # the process's peak resident set (Linux reports KiB)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return None
