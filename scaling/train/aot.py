"""`scaling compile`: the real train step compiled ahead of time for a TPU topology, on any
machine (libtpu from PyPI, `pip install -e '.[tpu-aot]'`; no TPU needed), with XLA's memory per
device against the chip's HBM and XLA's FLOPs per step against our count.

The step is the trainer's own (scaling/train/step.py: make_train_step), lowered with abstract
arguments (shapes, dtypes and shardings only: nothing is allocated) on a mesh of the topology's
devices, (data = chips/fsdp, fsdp).
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from scaling.config.spec import RunSpec
from scaling.errors import UserError
from scaling.model.transformer import ModelConfig, Transformer, flop_per_token, param_count
from scaling.train import gns, matmul_forms, optim
from scaling.train import step as steplib

# HBM per chip in bytes (Google Cloud TPU documentation: v4 32 GiB, v5e 16 GiB, v5p 95 GiB,
# v6e 32 GiB).
HBM_BYTES = {"v4": 32 * 2**30, "v5e": 16 * 2**30, "v5litepod": 16 * 2**30, "v5p": 95 * 2**30,
             "v6e": 32 * 2**30}


def topology_devices(topology: str):
  """The devices of a TPU topology such as "v5e:4x4" (libtpu needed, no TPU)."""
  try:
    from jax.experimental import topologies
  except ImportError as e:
    raise UserError(f"this JAX cannot describe TPU topologies ({e})") from None
  if ":" not in topology:
    raise UserError(f"--topology must be CHIP:SHAPE, e.g. v5e:4x4 or v4:2x2x2, got {topology!r}")
  try:
    return topologies.get_topology_desc(platform="tpu", topology_name=topology).devices
  except Exception as e:   # libtpu missing or an unknown topology name
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise UserError(f"cannot describe TPU topology {topology!r} ({first}); install libtpu with "
                    "pip install -e '.[tpu-aot]', and check the name (v4:2x2x2, v5e:4x4, "
                    "v5p:2x2x1, v6e:2x2)") from None


def _abstract_state(mcfg: ModelConfig, train, mesh):
  """The TrainState as ShapeDtypeStructs with the trainer's shardings (nothing allocated)."""
  graphdef, params = nnx.split(nnx.eval_shape(lambda: Transformer(mcfg, rngs=nnx.Rngs(0))),
                               nnx.Param)
  tx = optim.make_optimizer(train)
  state = jax.eval_shape(lambda p: steplib.TrainState(p, tx.init(p), gns.init_state(),
                                                      jnp.zeros((), jnp.int32)), params)
  sharding = steplib.state_shardings(state, mesh)
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          state, sharding)
  return graphdef, tx, abstract, sharding


@dataclasses.dataclass
class CompileReport:
  topology: str
  n_chips: int
  mesh: tuple
  n_kaplan: int
  n_total: int
  bytes_per_device: dict        # arguments, outputs, temporaries, aliased, total
  hbm_bytes: int | None
  fits: bool | None
  xla_flop_per_step: float      # XLA's cost analysis, whole program (all chips)
  our_flop_per_step: float      # PaLM count × tokens per step
  compile_s: float
  oom: str = ""                 # XLA's own refusal when the program cannot fit the chip's HBM
  micro_batches: int = 1        # per device; XLA counts the body of their loop once


def compile_step(spec: RunSpec, topology: str) -> CompileReport:
  """Compiles the train step of a run (its model, batch, mesh.fsdp, gns) for `topology`."""
  devices = topology_devices(topology)
  fsdp = spec.mesh.fsdp
  if len(devices) % fsdp:
    raise UserError(f"mesh.fsdp={fsdp} does not divide the {len(devices)} chips of {topology}")
  mesh = jax.sharding.Mesh(np.asarray(devices).reshape(len(devices) // fsdp, fsdp),
                           steplib.BATCH)
  dtype = spec.model.compute_dtype
  mcfg = ModelConfig.from_config(dict(dataclasses.asdict(spec.model),
                                      n_vocab=spec.data.vocab_size,
                                      compute_dtype="bfloat16" if dtype == "auto" else dtype))
  # What "auto" resolves to on a TPU (this process's own backend is the CPU): XLA's attention,
  # the cross-entropy in one chunk (scaling/model/transformer.py), XLA's own weight gradients
  # (scaling/train/matmul_forms.py: "auto" is the plain form off the CPU).
  mcfg = dataclasses.replace(mcfg, attention="xla" if mcfg.attention == "auto" else mcfg.attention,
                             loss_chunk=mcfg.loss_chunk or 2**31 - 1)
  mcfg = matmul_forms.resolve(mcfg, spec.model.weight_grad, 0, "tpu")
  geom = steplib.BatchGeometry(spec.train.batch_size, mcfg.n_ctx, len(devices),
                               steplib.micro_batches(spec.gns, len(devices))).check()
  graphdef, tx, state, sharding = _abstract_state(mcfg, spec.train, mesh)
  step_fn, _ = steplib.make_train_step(steplib.lm_loss(graphdef), tx, mesh, geom, spec.gns,
                                       spec.train.b2, sharding)
  batch = jax.ShapeDtypeStruct((spec.train.batch_size, mcfg.n_ctx + 1), jnp.int32,
                               sharding=NamedSharding(mesh, P(steplib.BATCH)))
  lr = jax.ShapeDtypeStruct((), jnp.float32, sharding=NamedSharding(mesh, P()))
  counts = param_count(mcfg)
  report = CompileReport(
      topology, len(devices), (len(devices) // fsdp, fsdp), counts.n_kaplan, counts.n_total,
      {}, HBM_BYTES.get(topology.split(":")[0].lower()), None, math.nan,
      flop_per_token(mcfg)["palm_train"] * spec.train.batch_size * mcfg.n_ctx, 0.0,
      micro_batches=geom.micro_batches)
  t0 = time.time()
  try:
    compiled = step_fn.lower(state, batch, lr).compile()
  except Exception as e:   # XLA's TPU compiler refuses a program that cannot fit in HBM
    text = " ".join(str(e).split())
    if "RESOURCE_EXHAUSTED" not in text and "Ran out of memory" not in text:
      raise
    report.oom = text[text.find("Ran out of memory"):].split(" HLO module")[0] or text[:300]
    report.fits, report.compile_s = False, time.time() - t0
    return report
  report.compile_s = time.time() - t0
  mem = compiled.memory_analysis()
  sizes = {k: int(getattr(mem, f"{k}_size_in_bytes", 0) or 0)
           for k in ("argument", "output", "temp", "alias", "generated_code")}
  sizes["total"] = sizes["argument"] + sizes["output"] + sizes["temp"] - sizes["alias"]
  report.bytes_per_device = sizes
  if report.hbm_bytes is not None:
    report.fits = sizes["total"] <= report.hbm_bytes
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  # XLA's count is per chip (an SPMD program): × chips for the whole step.
  report.xla_flop_per_step = float(cost.get("flops", math.nan)) * len(devices)
  return report


def report_lines(r: CompileReport) -> list[str]:
  gib = lambda b: f"{b / 2**30:.2f} GiB"
  b = r.bytes_per_device
  head = (f"{r.topology}: {r.n_chips} chips, mesh (data, fsdp) = {r.mesh}; N = {r.n_kaplan:,} "
          f"non-embedding, {r.n_total:,} in all")
  if r.oom:
    return [f"{head}; not compiled ({r.compile_s:.1f} s)",
            f"  does NOT fit: XLA's compiler says: {r.oom}",
            "  shard the parameters (--config.mesh.fsdp=F), or a smaller batch per chip"]
  lines = [f"{head}; compiled in {r.compile_s:.1f} s",
           f"  memory per chip (XLA): {gib(b['total'])} = arguments {gib(b['argument'])} + "
           f"outputs {gib(b['output'])} + temporaries {gib(b['temp'])} - aliased "
           f"{gib(b['alias'])}"]
  if r.hbm_bytes is None:
    lines.append("  HBM of this chip unknown: no fits verdict")
  else:
    lines.append(f"  {'fits' if r.fits else 'does NOT fit'} in {gib(r.hbm_bytes)} HBM per chip")
  ratio = r.xla_flop_per_step / r.our_flop_per_step
  lines.append(f"  FLOPs per step: XLA {r.xla_flop_per_step:.4g}, ours (PaLM count) "
               f"{r.our_flop_per_step:.4g}, ratio {ratio:.3f}")
  if r.micro_batches > 1:   # XLA's cost analysis counts a while loop's body once
    lines.append(f"  (XLA counts the loop over the {r.micro_batches} micro-batches once: "
                 f"× {r.micro_batches} gives ratio {ratio * r.micro_batches:.3f})")
  return lines
