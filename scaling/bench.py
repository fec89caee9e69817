"""`scaling bench`: training throughput, model FLOPs utilization (MFU), compile time, memory and
loader throughput for a list of model shapes, with the trainer's own jitted step.

MFU = achieved model FLOP/s ÷ peak FLOP/s, with model FLOPs per token the PaLM count
(Chowdhery et al. 2022, appendix B; `flops_per_token(...)["palm_train"]`). Two peaks: the one
measured in this run (a large matmul in the compute dtype, best of several), and the nominal
dense bf16 peak of a known accelerator.
"""

from __future__ import annotations

import functools
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling import data as datalib
from scaling import gns
from scaling.errors import UserError
from scaling.model import ModelConfig, Transformer, flops_per_token, param_count

# Nominal dense peak FLOP/s per chip in bf16 (vendor data sheets; no sparsity).
NOMINAL_PEAK_BF16 = {
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
    "TPU v6 lite": 918e12, "TPU v6e": 918e12,
    "A100": 312e12, "H100": 989e12, "H200": 989e12,
}


def nominal_peak(device=None) -> float | None:
  """The table's peak for this device kind (None when unknown, e.g. a CPU)."""
  kind = (device or jax.devices()[0]).device_kind
  for name, peak in sorted(NOMINAL_PEAK_BF16.items(), key=lambda kv: -len(kv[0])):
    if name.lower() in kind.lower():
      return peak
  return None


def _matmul_timer(n: int, dtype: str, device):
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
    timed = _matmul_timer(n, dtype, device)
    for _ in range(repeats):
      rate = timed()
      if rate > best:
        best, best_n = rate, n
  return best, best_n


@functools.cache
def training_peak(dtype: str = "float32") -> tuple[float, str]:
  """(peak FLOP/s of all devices of this process's mesh, where it comes from) for the MFU logged
  in metrics.jsonl: the nominal table for known accelerators, else a quick matmul measurement.
  On CPU the forced devices share one processor, so the peak is not multiplied by their count."""
  devices = jax.local_devices()
  nominal = nominal_peak(devices[0])
  if nominal:
    return nominal * len(devices), f"nominal {devices[0].device_kind}"
  peak, _ = matmul_peak(dtype, sizes=(1024, 2048), repeats=3)
  scale = 1 if devices[0].platform == "cpu" else len(devices)
  return peak * scale, f"measured {dtype} matmul"


def _peak_memory_bytes(device) -> int | None:
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"])
  if device.platform == "cpu":  # the process's peak resident set (Linux reports KiB)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return None


def trainer_step(n_layer: int, d_model: int, n_heads: int, n_ctx: int, n_vocab: int, batch: int,
                 compute_dtype: str = "auto", micro_batches: int = 0, gns_on: bool = True,
                 num_devices: int = 0, total_steps: int = 1000):
  """The trainer's own jitted step for a shape (default config otherwise), its initial state, the
  mesh, the model config and the micro-batch count."""
  from scaling import train as trainlib
  from scaling.defaults import base_config
  mesh = trainlib.make_mesh(num_devices)
  n_dev = mesh.devices.size
  if batch % n_dev:
    raise UserError(f"bench batch {batch} is not divisible by the {n_dev} devices")
  cfg = base_config()
  cfg.train.batch_size = batch
  cfg.gns.enabled, cfg.gns.micro_batches = gns_on, micro_batches
  mcfg = ModelConfig(n_layer=n_layer, d_model=d_model, n_heads=n_heads, n_ctx=n_ctx,
                     n_vocab=n_vocab, compute_dtype=trainlib.resolve_dtype(compute_dtype)).validate()
  micro = trainlib.micro_batches(cfg.gns, n_dev)
  geom = trainlib.BatchGeometry(batch, n_ctx, n_dev, micro)
  graphdef, params = nnx.split(Transformer(mcfg, rngs=nnx.Rngs(0)), nnx.Param)
  tx, schedule = trainlib.make_optimizer(cfg.train, 1e-3, total_steps)
  state = trainlib.TrainState(params, tx.init(params), gns.init_state(), jnp.zeros((), jnp.int32))
  state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  step_fn = trainlib.make_train_step(trainlib.lm_loss(graphdef), tx, schedule, mesh, geom, cfg.gns)
  return step_fn, state, mesh, mcfg, micro


def bench_shape(n_layer: int, d_model: int, n_heads: int, n_vocab: int = 4096, n_ctx: int = 256,
                batch: int = 16, steps: int = 10, warmup: int = 2, compute_dtype: str = "auto",
                micro_batches: int = 0, gns_on: bool = True, num_devices: int = 0,
                peak_flops: float | None = None, peak_size: int = 0) -> dict:
  """Times the trainer's own step (AdamW, the noise estimator, the mesh) on random tokens.

  Around each timed step, the peak's matmul (size `peak_size` from matmul_peak, at most 2048) is
  timed three times before and three times after on the same device; the step's paired MFU is
  its FLOP/s over the fastest of those six. A shared machine's speed drifts by tens of percent
  within minutes, which one peak measured before or after all steps cannot follow.
  """
  from scaling import train as trainlib
  step_fn, state, mesh, mcfg, micro = trainer_step(
      n_layer, d_model, n_heads, n_ctx, n_vocab, batch, compute_dtype, micro_batches, gns_on,
      num_devices)
  n_dev = mesh.devices.size
  device = mesh.devices.flat[0]
  rng = np.random.default_rng(0)
  batches = [trainlib.global_batch(mesh, rng.integers(0, n_vocab, (batch, n_ctx + 1),
                                                      dtype=np.int32))
             for _ in range(2)]

  t0 = time.perf_counter()
  lowered = step_fn.lower(state, batches[0])        # tracing: Python, never cached
  trace_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  compiled = lowered.compile()                      # XLA: read from the persistent cache if there
  compile_s = time.perf_counter() - t0
  for i in range(warmup):
    state, metrics = compiled(state, batches[i % 2])
  jax.block_until_ready(metrics)
  if peak_flops is None:
    peak_flops, peak_size = matmul_peak(mcfg.compute_dtype, device=device)
  paired_n = min(peak_size or 2048, 2048)
  mm_rate = _matmul_timer(paired_n, mcfg.compute_dtype, device)
  # Each step timed on its own (a blocked step: compute only, no dispatch overlap) between blocks
  # of three matmul timings. The median step is the reported speed, the fastest is kept too.
  times, mm_rates = [], [max(mm_rate() for _ in range(3))]
  for i in range(steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batches[i % 2])
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
    mm_rates.append(max(mm_rate() for _ in range(3)))
  step_s, best_step_s = float(np.median(times)), float(np.min(times))
  if not np.isfinite(float(metrics["loss"])):
    raise RuntimeError("the benchmarked step produced a non-finite loss")

  flops_tok = flops_per_token(mcfg)["palm_train"]
  step_flops = flops_tok * batch * n_ctx
  tokens_per_s = batch * n_ctx / step_s
  achieved = flops_tok * tokens_per_s
  nominal = nominal_peak(device)
  # Forced CPU devices share one processor: the measured peak already covers all of them.
  scale = 1 if device.platform == "cpu" else n_dev
  paired = [step_flops / t / (max(r0, r1) * scale)
            for t, r0, r1 in zip(times, mm_rates[:-1], mm_rates[1:])]
  return {
      "shape": [n_layer, d_model, n_heads], "n_vocab": n_vocab, "n_ctx": n_ctx, "batch": batch,
      "compute_dtype": mcfg.compute_dtype, "micro_batches": micro, "gns": gns_on,
      "n_devices": n_dev, "n_kaplan": param_count(mcfg)["n_kaplan"],
      "n_total": param_count(mcfg)["n_total"], "flops_per_token": flops_tok,
      "step_s": step_s, "best_step_s": best_step_s, "step_times_s": times,
      "tokens_per_s": tokens_per_s, "achieved_flops": achieved,
      # MFU against the peak of the whole run (a conservative bound: median step, best matmul).
      "peak_measured_flops": peak_flops * scale,
      "mfu_measured": achieved / (peak_flops * scale),
      "mfu_measured_best_step": step_flops / best_step_s / (peak_flops * scale),
      # MFU against the matmul timed beside each step (median over steps): the machine's speed now.
      "paired_matmul_size": paired_n,
      "matmul_flops_beside_steps": mm_rates,           # the best of each block of three
      "mfu_paired": float(np.median(paired)),
      "peak_nominal_flops": nominal * n_dev if nominal else None,
      "mfu_nominal": achieved / (nominal * n_dev) if nominal else None,
      "trace_s": trace_s, "compile_s": compile_s, "peak_memory_bytes": _peak_memory_bytes(device),
      "device": device.device_kind, "backend": jax.default_backend(),
  }


def loop_overhead(n_layer: int = 1, d_model: int = 24, n_heads: int = 1, n_ctx: int = 128,
                  vocab_size: int = 2048, batch: int = 16, steps: int = 10,
                  rounds: int = 40) -> dict:
  """Time between steps: the trainer's loop (real token store and grain loader, a global array per
  batch, metrics fetched one step behind) against the same compiled step timed blocked.
  Defaults: the smallest model of the quickstart ladder."""
  from scaling import train as trainlib
  store = datalib.build_store("embedded", vocab_size, verbose=False)
  step_fn, state, mesh, _, _ = trainer_step(n_layer, d_model, n_heads, n_ctx, store.n_vocab, batch,
                                            total_steps=10 * steps)
  src = datalib.WindowBatches(store.train_T, n_ctx, batch, 2 * rounds * steps + 10, 0, 0, 1, 0)
  it = datalib.train_iterator(src, 0)
  b0 = trainlib.global_batch(mesh, next(it))
  compiled = step_fn.lower(state, b0).compile()
  for _ in range(3):
    state, metrics = compiled(state, trainlib.global_batch(mesh, next(it)))
  jax.block_until_ready(metrics)
  # Short rounds alternate the two ways of running; the overhead is the median over rounds of
  # each round's pair (a shared machine's speed drifts, and a pair close in time shares it).
  blocked_rounds, loop_rounds = [], []
  for _ in range(rounds):
    blocked = 0.0
    for _ in range(steps):
      batch_g = trainlib.global_batch(mesh, next(it))
      jax.block_until_ready(batch_g)
      t0 = time.perf_counter()
      state, metrics = compiled(state, batch_g)
      jax.block_until_ready((state, metrics))
      blocked += time.perf_counter() - t0
    blocked_rounds.append(blocked / steps)
    # The trainer's way: dispatch, then fetch the previous step's metrics while this one runs.
    t0, pending = time.perf_counter(), None
    for _ in range(steps):
      state, metrics = compiled(state, trainlib.global_batch(mesh, next(it)))
      if pending is not None:
        jax.device_get(pending)
      pending = metrics
    jax.device_get(pending)
    jax.block_until_ready(state)
    loop_rounds.append((time.perf_counter() - t0) / steps)
  fractions = [(lo - bl) / lo for lo, bl in zip(loop_rounds, blocked_rounds)]
  return {"shape": [n_layer, d_model, n_heads], "n_ctx": n_ctx, "batch": batch,
          "loop_step_s": float(np.median(loop_rounds)),
          "compiled_step_s": float(np.median(blocked_rounds)),
          "overhead_fraction": float(np.median(fractions)),
          "overhead_fraction_of_minima": (min(loop_rounds) - min(blocked_rounds)) / min(loop_rounds),
          "rounds": rounds, "steps_per_round": steps}


def loader_throughput(n_ctx: int = 256, batch: int = 16, steps: int = 200, threads: int = 2,
                      source: str = "embedded", vocab_size: int = 4096) -> dict:
  """Tokens/s of the trainer's grain pipeline alone (on the real token store), no model."""
  store = datalib.build_store(source, vocab_size, verbose=False)
  src = datalib.WindowBatches(store.train_T, n_ctx, batch, steps + 10, 0, 0, 1, 0)
  it = datalib.train_iterator(src, 0, threads)
  for _ in range(5):
    next(it)
  t0 = time.perf_counter()
  for _ in range(steps):
    next(it)
  dt = time.perf_counter() - t0
  return {"tokens_per_s": steps * batch * n_ctx / dt, "steps": steps, "threads": threads}


def run_bench(shapes, n_vocab=4096, n_ctx=256, batch=16, steps=10, compute_dtype="auto",
              gns_on=True, micro_batches=0, num_devices=0, loader=True, overhead=True,
              verbose=True) -> dict:
  """Benchmarks every shape and the loader; returns the JSON-able result."""
  from scaling.train import resolve_dtype
  dtype = resolve_dtype(compute_dtype)
  peak, size = matmul_peak(dtype)
  say = print if verbose else (lambda *a, **k: None)
  say(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
      f"measured {dtype} matmul peak {peak / 1e9:.1f} GFLOP/s per device (n={size})")
  say(HEADER)
  rows = []
  for shape in shapes:
    row = bench_shape(*shape, n_vocab=n_vocab, n_ctx=n_ctx, batch=batch, steps=steps,
                      compute_dtype=compute_dtype, micro_batches=micro_batches, gns_on=gns_on,
                      num_devices=num_devices, peak_flops=peak, peak_size=size)
    rows.append(row)
    say(format_row(row))
  # A busy or cold processor only lowers a measured peak: the run's peak is the best of all
  # matmuls timed in it, before, beside and after the steps.
  peak = max([peak, matmul_peak(dtype)[0]] +
             [r for row in rows for r in row["matmul_flops_beside_steps"]])
  for r in rows:
    if r["backend"] == "cpu":
      r["peak_measured_flops"] = peak
      r["mfu_measured"] = r["achieved_flops"] / peak
      r["mfu_measured_best_step"] = r["achieved_flops"] * r["step_s"] / r["best_step_s"] / peak
  out = {"rows": rows, "peak_measured_flops_per_device": peak, "dtype": dtype}
  if loader:
    out["loader"] = loader_throughput(n_ctx, batch, vocab_size=n_vocab)
    fastest = max(r["tokens_per_s"] for r in rows) if rows else 0
    out["loader"]["ratio_to_fastest_trainer"] = out["loader"]["tokens_per_s"] / fastest if fastest else None
    say(f"loader: {out['loader']['tokens_per_s']:,.0f} tokens/s "
        f"({out['loader']['ratio_to_fastest_trainer']:.0f}x the fastest trainer shape)")
  if overhead:
    out["overhead"] = loop_overhead()
    o = out["overhead"]
    say(f"between-step overhead, smallest quickstart model {o['shape']}: loop "
        f"{1e3 * o['loop_step_s']:.2f} ms/step against {1e3 * o['compiled_step_s']:.2f} ms "
        f"compiled ({100 * o['overhead_fraction']:+.1f}%)")
  return out


HEADER = (f"{'shape':>12} {'tokens/s':>10} {'ms/step':>8} {'FLOP/tok':>9} {'GFLOP/s':>8} "
          f"{'MFU(pair)':>9} {'MFU(run)':>8} {'MFU(nom)':>8} {'trace s':>7} {'compile s':>9} "
          f"{'mem MiB':>8}")


def format_row(r: dict) -> str:
  nom = f"{100 * r['mfu_nominal']:.1f}%" if r["mfu_nominal"] else "–"
  mem = f"{r['peak_memory_bytes'] / 2**20:.0f}" if r["peak_memory_bytes"] else "–"
  return (f"{'x'.join(map(str, r['shape'])):>12} {r['tokens_per_s']:>10,.0f} "
          f"{1e3 * r['step_s']:>8.1f} {r['flops_per_token']:>9.3g} "
          f"{r['achieved_flops'] / 1e9:>8.1f} {100 * r['mfu_paired']:>8.1f}% "
          f"{100 * r['mfu_measured']:>7.1f}% {nom:>8} "
          f"{r['trace_s']:>7.2f} {r['compile_s']:>9.2f} {mem:>8}")


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
  """'2,128,2 4,256,4' → [(2, 128, 2), (4, 256, 4)]."""
  shapes = []
  for item in text.replace(";", " ").split():
    try:
      parts = tuple(int(x) for x in item.split(","))
    except ValueError:
      parts = ()
    if len(parts) != 3 or min(parts) <= 0:
      raise UserError(f"bad shape {item!r}: write n_layer,d_model,n_heads (e.g. 2,128,2)")
    shapes.append(parts)
  if not shapes:
    raise UserError("give at least one shape, e.g. --shapes '2,128,2 4,256,4'")
  return shapes
