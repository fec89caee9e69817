"""Multi-host start-up: one process per host (or per GPU), JAX's own multi-controller runtime.

`initialize(spec.distributed)` calls `jax.distributed.initialize()`: with no address JAX detects
Cloud TPU VMs, SLURM and other clusters itself; an explicit coordinator address, process count and
id serve anything else (e.g. several processes on one machine). On CPU the cross-process collectives
go through gloo. After it, `jax.devices()` lists every process's devices, so the trainer's mesh is
global; each process feeds only its rows of every batch (data.WindowBatches by process index).
"""

from __future__ import annotations

import os
import socket
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from scaling.config.spec import DistributedSpec
from scaling.errors import UserError


def _wanted(d: DistributedSpec) -> bool:
  return bool(d.enabled or d.coordinator_address or os.environ.get("SCALING_DISTRIBUTED"))


def initialize(d: DistributedSpec) -> None:
  """Joins the job described by the run's distributed section (or the environment); a no-op
  when not asked."""
  if not _wanted(d) or jax.distributed.is_initialized():
    return
  if d.coordinator_address and (d.num_processes <= 0 or d.process_id < 0):
    raise UserError("distributed.coordinator_address needs distributed.num_processes and "
                    "distributed.process_id (or leave all three empty for auto-detection)")
  if d.coordinator_address and d.process_id > 0:
    _wait_for_coordinator(d.coordinator_address, d.timeout_s)
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


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
  """Waits until the coordinator (process 0) accepts connections. JAX's client aborts the whole
  process (a C++ check failure) when it cannot reach it; this turns that into a one-line error."""
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise UserError(f"distributed.coordinator_address must be HOST:PORT, got {address!r}")
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
      return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise UserError(f"cannot reach the coordinator at {address} within "
                        f"distributed.timeout_s={timeout_s:g} s ({e.strerror or e}); start process "
                        "0 first and check the address, port and firewall") from None
      time.sleep(1.0)


def is_main() -> bool:
  """Process 0 writes logs, metrics, summaries and reports; every process writes checkpoints."""
  return jax.process_index() == 0


def agreed(decision: bool) -> bool:
  """Process 0's decision, on every process of a multi-host job: the hosts of one job train each
  run together, and only process 0 writes summaries, so its view of the directory counts."""
  if jax.process_count() == 1:
    return decision
  return bool(multihost_utils.broadcast_one_to_all(np.int32(decision)))
