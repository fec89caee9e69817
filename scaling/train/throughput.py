"""`scaling bench`: training throughput, model FLOPs utilization (MFU), compile time, memory and
loader throughput for a list of model shapes, with the trainer's own jitted step.

MFU = achieved model FLOP/s ÷ peak FLOP/s, with model FLOPs per token the PaLM count
(Chowdhery et al. 2022, appendix B; `flop_per_token(...)["palm_train"]`). Two peaks: the one
measured in this run (a large matmul in the compute dtype, best of several), and the nominal
dense bf16 peak of a known accelerator.
"""

from __future__ import annotations

import dataclasses

import math
import time

import jax
import numpy as np

from scaling.data import loader as datalib
from scaling.data import store as storelib
from scaling.data import tokenize
from scaling.errors import UserError
from scaling.train import step as steplib
from scaling.train.hardware import (matmul_peak, matmul_timer, nominal_peak, numpy_matmul_timer,
                              peak_memory_bytes, resolve_dtype)
from scaling.config.spec import RUN_DEFAULTS, data_spec
from scaling.model.transformer import ModelConfig, flop_per_token, param_count


def trainer_step(n_layer: int, d_model: int, n_heads: int, n_ctx: int, n_vocab: int, batch: int,
                 compute_dtype: str = "auto", micro_batches: int = 0, gns_on: bool = True,
                 num_devices: int = 0, total_steps: int = 1000,
                 preconditioned: bool = False,
                 precond_every: int = 1) -> tuple[steplib.Trainer, ModelConfig]:
  """The trainer's own step (step.build, default config otherwise) for a shape, and its model
  config."""
  mesh = steplib.make_mesh(num_devices)
  if batch % mesh.devices.size:
    raise UserError(f"bench batch {batch} is not divisible by the {mesh.devices.size} devices")
  spec = RUN_DEFAULTS
  train = dataclasses.replace(spec.train, batch_size=batch)
  gns_spec = dataclasses.replace(spec.gns, enabled=gns_on, micro_batches=micro_batches,
                                 preconditioned=preconditioned, precond_every=precond_every)
  mcfg = ModelConfig(n_layer=n_layer, d_model=d_model, n_heads=n_heads, n_ctx=n_ctx,
                     n_vocab=n_vocab, compute_dtype=resolve_dtype(compute_dtype)).validate()
  return steplib.build(mcfg, train, gns_spec, mesh, 1e-3, total_steps,
                       weight_grad=spec.model.weight_grad), mcfg


def bench_shape(n_layer: int, d_model: int, n_heads: int, n_vocab: int = 4096, n_ctx: int = 256,
                batch: int = 16, steps: int = 10, warmup: int = 2, compute_dtype: str = "auto",
                micro_batches: int = 0, gns_on: bool = True, num_devices: int = 0,
                peak_flop_per_s: float | None = None, peak_size: int = 0,
                compare_off: bool = False) -> dict:
  """Times the trainer's own step (AdamW, the noise estimator, the mesh) on random tokens.

  Around each timed step, the peak's matmul (size `peak_size` from matmul_peak, at most 2048) is
  timed three times before and three times after on the same device; the step's paired MFU is
  its FLOP/s over the fastest of those six. A shared machine's speed drifts by tens of percent
  within minutes, which one peak measured before or after all steps cannot follow. With
  compare_off, the estimator-off step is timed beside each step too (off_* keys).
  """
  trainer, mcfg = trainer_step(n_layer, d_model, n_heads, n_ctx, n_vocab, batch, compute_dtype,
                               micro_batches, gns_on, num_devices)
  mesh = trainer.mesh
  micro = trainer.geom.micro_batches
  n_dev = mesh.devices.size
  device = mesh.devices.flat[0]
  rng = np.random.default_rng(0)
  batches = [steplib.global_batch(mesh, rng.integers(0, n_vocab, (batch, n_ctx + 1),
                                                      dtype=np.int32))
             for _ in range(2)]
  run_on, trace_s, compile_s = _compiled_steps(trainer, batches, warmup)
  # The same step without the estimator, timed beside each step (its own micro-batching, as a
  # run with gns.enabled=false would choose it): "off" must never be the slower one.
  run_off = (_compiled_steps(trainer_step(n_layer, d_model, n_heads, n_ctx, n_vocab, batch,
                                          compute_dtype, micro_batches, False, num_devices)[0],
                             batches, warmup)[0] if compare_off and gns_on else None)
  if peak_flop_per_s is None:
    peak_flop_per_s, peak_size = matmul_peak(mcfg.compute_dtype, device=device)
  paired_n = min(peak_size or 2048, 2048)
  mm_rate = matmul_timer(paired_n, mcfg.compute_dtype, device)
  # On CPU numpy's BLAS is timed beside XLA's matmul (float32): the faster of the two is the
  # machine's fp32 matmul limit.
  np_rate = (numpy_matmul_timer(paired_n) if device.platform == "cpu"
             and mcfg.compute_dtype == "float32" else (lambda: 0.0))
  # Each step timed on its own (a blocked step: compute only, no dispatch overlap) between blocks
  # of three matmul timings. The median step is the reported speed, the fastest is kept too.
  times, off_times, mm_rates = [], [], [max(mm_rate() for _ in range(3))]
  np_rates = [max(np_rate() for _ in range(3))]
  for i in range(steps):
    # With the off step beside it, the two alternate which goes first.
    if run_off is not None and i % 2:
      off_times.append(run_off(batches[i % 2]))
    times.append(run_on(batches[i % 2]))
    if run_off is not None and not i % 2:
      off_times.append(run_off(batches[i % 2]))
    mm_rates.append(max(mm_rate() for _ in range(3)))
    np_rates.append(max(np_rate() for _ in range(3)))
  step_s, best_step_s = float(np.median(times)), float(np.min(times))

  flop_tok = flop_per_token(mcfg)["palm_train"]
  step_flop = flop_tok * batch * n_ctx
  tokens_per_s = batch * n_ctx / step_s
  achieved = flop_tok * tokens_per_s
  nominal = nominal_peak(device)
  # Forced CPU devices share one processor: the measured peak already covers all of them.
  scale = 1 if device.platform == "cpu" else n_dev
  paired = [step_flop / t / (max(r0, r1) * scale)
            for t, r0, r1 in zip(times, mm_rates[:-1], mm_rates[1:])]
  fastest = [max(a, b) for a, b in zip(mm_rates, np_rates)]
  paired_fastest = [step_flop / t / (max(r0, r1) * scale)
                    for t, r0, r1 in zip(times, fastest[:-1], fastest[1:])]
  return {
      "shape": [n_layer, d_model, n_heads], "n_vocab": n_vocab, "n_ctx": n_ctx, "batch": batch,
      "compute_dtype": mcfg.compute_dtype, "micro_batches": micro, "gns": gns_on,
      "n_devices": n_dev, "n_kaplan": param_count(mcfg).n_kaplan,
      "n_total": param_count(mcfg).n_total, "flop_per_token": flop_tok,
      "step_s": step_s, "best_step_s": best_step_s, "step_times_s": times,
      "tokens_per_s": tokens_per_s, "achieved_flop_per_s": achieved,
      # MFU against the peak of the whole run (a conservative bound: median step, best matmul).
      "peak_measured_flop_per_s": peak_flop_per_s * scale,
      "mfu_measured": achieved / (peak_flop_per_s * scale),
      "mfu_measured_best_step": step_flop / best_step_s / (peak_flop_per_s * scale),
      # MFU against the matmul timed beside each step (median over steps): the machine's speed now.
      "paired_matmul_size": paired_n,
      "matmul_flop_per_s_beside_steps": mm_rates,           # the best of each block of three
      "mfu_paired": float(np.median(paired)),
      # The same against the faster of XLA's and numpy's matmul beside each step (CPU, float32).
      "numpy_matmul_flop_per_s_beside_steps": np_rates,
      "mfu_paired_fastest": float(np.median(paired_fastest)),
      "peak_nominal_flop_per_s": nominal * n_dev if nominal else None,
      "mfu_nominal": achieved / (nominal * n_dev) if nominal else None,
      "trace_s": trace_s, "compile_s": compile_s, "peak_memory_bytes": peak_memory_bytes(device),
      "device": device.device_kind, "backend": jax.default_backend(),
      **(_off_row(times, off_times, batch * n_ctx) if off_times else {}),
  }


def median_interval(values, level: float = 0.95) -> tuple[float, float]:
  """Distribution-free interval for a median: the order statistics k and n+1−k, with k the
  largest such that P(Binomial(n, ½) < k) ≤ (1 − level)/2 (the sign test); (nan, nan) when n is
  too small for the level."""
  v = np.sort(np.asarray(values, float))
  n = len(v)
  below = np.cumsum([math.comb(n, i) for i in range(n + 1)]) / 2.0**n   # P(X ≤ i)
  k = int(np.sum(below <= (1 - level) / 2))         # P(X ≤ k−1) ≤ α/2
  return (float(v[k - 1]), float(v[n - k])) if k >= 1 else (math.nan, math.nan)


def _off_row(on_times: list, off_times: list, tokens: int) -> dict:
  """The estimator-off step timed beside the on step: its speed, and off/on speed paired (median
  of pairs and its 95 % interval)."""
  ratio_S = np.asarray(on_times) / np.asarray(off_times)
  return {"off_step_times_s": off_times, "off_tokens_per_s": tokens / float(np.median(off_times)),
          "off_over_on_paired": float(np.median(ratio_S)),
          "off_over_on_interval": list(median_interval(ratio_S)),
          "off_slower_pairs": int(np.sum(ratio_S < 1))}


def _compiled_steps(trainer, batches, warmup: int):
  """(run(batch) → seconds of one blocked step on the trainer's carried state, trace s, compile
  s). Tracing is Python and never cached; compiling reads the persistent cache when there."""
  state, lr = trainer.state, trainer.lr(0)
  t0 = time.perf_counter()
  lowered = trainer.step_fn.lower(state, batches[0], lr)
  trace_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  carried = [state]

  def run(tokens) -> float:
    t0 = time.perf_counter()
    carried[0], metrics = compiled(carried[0], tokens, lr)
    jax.block_until_ready((carried[0], metrics))
    if not np.isfinite(float(metrics["loss"])):
      raise RuntimeError("the benchmarked step produced a non-finite loss")
    return time.perf_counter() - t0

  for i in range(warmup):
    run(batches[i % 2])
  return run, trace_s, compile_s


def _default_store(vocab_size: int, source: str = "synthetic") -> storelib.TokenStore:
  """The store of a corpus (default: the generated one, whose documents are 128 tokens)."""
  return tokenize.build_store(data_spec(source=source, vocab_size=vocab_size), verbose=False)


def loop_overhead(n_layer: int = 1, d_model: int = 24, n_heads: int = 1, n_ctx: int = 128,
                  vocab_size: int = 2048, batch: int = 16, steps: int = 10,
                  rounds: int = 40) -> dict:
  """Time between steps: the trainer's loop (real token store and grain loader, a global array per
  batch, metrics fetched one step behind) against the same compiled step timed blocked.
  Defaults: the smallest model of the quickstart ladder."""
  store = _default_store(vocab_size)
  trainer, _ = trainer_step(n_layer, d_model, n_heads, n_ctx, store.n_vocab, batch,
                            total_steps=10 * steps)
  step_fn, state, mesh = trainer.step_fn, trainer.state, trainer.mesh
  src = datalib.WindowBatches(store.train_T, n_ctx, batch, 2 * rounds * steps + 10, 0, 0, 1, 0)
  it = datalib.train_iterator(src, 0)
  b0 = steplib.global_batch(mesh, next(it))
  compiled = step_fn.lower(state, b0, trainer.lr(0)).compile()
  for _ in range(3):
    state, metrics = compiled(state, steplib.global_batch(mesh, next(it)), trainer.lr(0))
  jax.block_until_ready(metrics)
  # Short rounds alternate the two ways of running; the overhead is the median over rounds of
  # each round's pair (a shared machine's speed drifts, and a pair close in time shares it).
  blocked_rounds, loop_rounds = [], []
  for _ in range(rounds):
    blocked = 0.0
    for _ in range(steps):
      batch_g = steplib.global_batch(mesh, next(it))
      jax.block_until_ready(batch_g)
      t0 = time.perf_counter()
      state, metrics = compiled(state, batch_g, trainer.lr(0))
      jax.block_until_ready((state, metrics))
      blocked += time.perf_counter() - t0
    blocked_rounds.append(blocked / steps)
    # The trainer's way: dispatch, then fetch the previous step's metrics while this one runs.
    t0, pending = time.perf_counter(), None
    for _ in range(steps):
      state, metrics = compiled(state, steplib.global_batch(mesh, next(it)), trainer.lr(0))
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
                      source: str = "synthetic", vocab_size: int = 4096) -> dict:
  """Tokens/s of the trainer's grain pipeline alone (on the real token store), no model."""
  store = _default_store(vocab_size, source)
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
              verbose=True, compare_off=False) -> dict:
  """Benchmarks every shape and the loader; returns the JSON-able result."""
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
                      num_devices=num_devices, peak_flop_per_s=peak, peak_size=size,
                      compare_off=compare_off)
    rows.append(row)
    say(format_row(row))
    if "off_tokens_per_s" in row:
      say(format_off(row))
  # A busy or cold processor only lowers a measured peak: the run's peak is the best of all
  # matmuls timed in it, before, beside and after the steps.
  peak = max([peak, matmul_peak(dtype)[0]] +
             [r for row in rows for r in row["matmul_flop_per_s_beside_steps"]])
  for r in rows:
    if r["backend"] == "cpu":
      r["peak_measured_flop_per_s"] = peak
      r["mfu_measured"] = r["achieved_flop_per_s"] / peak
      r["mfu_measured_best_step"] = r["achieved_flop_per_s"] * r["step_s"] / r["best_step_s"] / peak
  out = {"rows": rows, "peak_measured_flop_per_s_per_device": peak, "dtype": dtype}
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
          f"{'MFU(pair)':>9} {'MFU(fast)':>9} {'MFU(run)':>8} {'MFU(nom)':>8} {'trace s':>7} "
          f"{'compile s':>9} {'mem MiB':>8}")


def format_row(r: dict) -> str:
  nom = f"{100 * r['mfu_nominal']:.1f}%" if r["mfu_nominal"] else "–"
  mem = f"{r['peak_memory_bytes'] / 2**20:.0f}" if r["peak_memory_bytes"] else "–"
  return (f"{'x'.join(map(str, r['shape'])):>12} {r['tokens_per_s']:>10,.0f} "
          f"{1e3 * r['step_s']:>8.1f} {r['flop_per_token']:>9.3g} "
          f"{r['achieved_flop_per_s'] / 1e9:>8.1f} {100 * r['mfu_paired']:>8.1f}% "
          f"{100 * r['mfu_paired_fastest']:>8.1f}% "
          f"{100 * r['mfu_measured']:>7.1f}% {nom:>8} "
          f"{r['trace_s']:>7.2f} {r['compile_s']:>9.2f} {mem:>8}")


def format_off(r: dict) -> str:
  lo, hi = r.get("off_over_on_interval", (math.nan, math.nan))
  return (f"{'':>12} estimator off, timed beside each step: {r['off_tokens_per_s']:,.0f} "
          f"tokens/s; off/on speed {r['off_over_on_paired']:.3f} [{lo:.3f}, {hi:.3f}] (median "
          f"of {len(r['off_step_times_s'])} pairs, 95 % interval; off slower in "
          f"{r['off_slower_pairs']})")


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
