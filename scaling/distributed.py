"""Multi-host start-up: one process per host (or per GPU), JAX's own multi-controller runtime.

`initialize(cfg)` calls `jax.distributed.initialize()`: with no address JAX detects Cloud TPU VMs,
SLURM and other clusters itself; an explicit coordinator address, process count and id serve
anything else (e.g. several processes on one machine). On CPU the cross-process collectives go
through gloo. After it, `jax.devices()` lists every process's devices, so the trainer's mesh is
global; each process feeds only its rows of every batch (data.WindowBatches by process index).
"""

from __future__ import annotations

import os

import jax

from scaling.errors import UserError


def _wanted(cfg) -> bool:
  d = cfg.distributed
  return bool(d.enabled or d.coordinator_address or os.environ.get("SCALING_DISTRIBUTED"))


def initialize(cfg) -> None:
  """Joins the job described by cfg.distributed (or the environment); a no-op when not asked."""
  if not _wanted(cfg) or jax.distributed.is_initialized():
    return
  d = cfg.distributed
  if d.coordinator_address and (d.num_processes <= 0 or d.process_id < 0):
    raise UserError("distributed.coordinator_address needs distributed.num_processes and "
                    "distributed.process_id (or leave all three empty for auto-detection)")
  platforms = os.environ.get("JAX_PLATFORMS", "") or jax.config.jax_platforms or ""
  if "cpu" in platforms.split(",") or d.cpu_collectives:
    # CPU devices of different processes all-reduce through gloo.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
        coordinator_address=d.coordinator_address or None,
        num_processes=d.num_processes or None,
        process_id=d.process_id if d.process_id >= 0 else None,
        initialization_timeout=d.timeout_s)
  except (RuntimeError, ValueError) as e:
    raise UserError(f"jax.distributed.initialize failed: {str(e).splitlines()[0]}; check "
                    "distributed.coordinator_address (host:port reachable from every process), "
                    "num_processes and process_id") from None


def is_main() -> bool:
  """Process 0 writes logs, metrics, summaries and reports; every process writes checkpoints."""
  return jax.process_index() == 0
