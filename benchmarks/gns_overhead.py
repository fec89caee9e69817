"""Benchmark (not a test): step time with the gradient-noise-scale estimator off, raw, and raw +
Adam-preconditioned.

Runs the real sharded train step of a (n_layer, d_model, heads) model on 8 forced CPU devices
(one micro-batch per device, as the trainer uses on several devices), in rotating blocks so drift
in machine speed affects all alike, and prints the median step times and the overheads.

  python benchmarks/gns_overhead.py [--steps 40] [--blocks 12] [--shape 2,128,2]
"""

import argparse
import os
import sys
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from scaling.train.throughput import trainer_step  # noqa: E402


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=40)
  ap.add_argument("--blocks", type=int, default=12)
  ap.add_argument("--shape", default="2,128,2")
  ap.add_argument("--batch", type=int, default=16)
  ap.add_argument("--n_ctx", type=int, default=128)
  ap.add_argument("--precond-every", type=int, default=4,
                  help="gns.precond_every of the raw + preconditioned variant")
  args = ap.parse_args()
  n_layer, d_model, heads = map(int, args.shape.split(","))
  data = jax.sharding.NamedSharding(jax.sharding.Mesh(np.asarray(jax.devices()[:8]), ("data",)),
                                    jax.sharding.PartitionSpec("data"))
  rng = np.random.default_rng(0)
  batches = [jax.device_put(rng.integers(0, 2048, (args.batch, args.n_ctx + 1), dtype=np.int32),
                            data) for _ in range(8)]
  variants = {"off": (False, False), "raw": (True, False), "raw+P": (True, True)}
  steps, states, taken = {}, {}, {}
  for name, (on, precond) in variants.items():
    # The trainer's own step (step.build), one micro-batch per device as on several devices.
    trainer, _ = trainer_step(n_layer, d_model, heads, args.n_ctx, 2048, args.batch,
                              micro_batches=1, gns_on=on, num_devices=8,
                              preconditioned=precond, precond_every=args.precond_every)
    steps[name], states[name], taken[name] = trainer, trainer.state, 0
    lr = trainer.lr(0)
    t = time.perf_counter()
    for i in range(args.precond_every + 1):   # compile both programs (P measured from step 1)
      states[name], m = trainer.step_for(taken[name])(states[name], batches[i % 8], lr)
      taken[name] += 1
    m["loss"].block_until_ready()
    print(f"{name:6s}: compile + 3 steps {time.perf_counter() - t:.2f} s")
  times = {name: [] for name in variants}
  per_block = {name: [] for name in variants}   # each block's mean step time per variant
  order = list(variants)
  for block in range(args.blocks):
    for name in order[block % 3:] + order[:block % 3]:   # rotate: drift hits all alike
      block_times = []
      for i in range(args.steps + 2):
        t = time.perf_counter()
        states[name], m = steps[name].step_for(taken[name])(states[name], batches[i % 8], lr)
        taken[name] += 1
        m["loss"].block_until_ready()
        if i >= 2:
          block_times.append(time.perf_counter() - t)
      times[name] += block_times
      per_block[name].append(float(np.mean(block_times)))
  # The mean, not the median: with precond_every > 1 the steps are of two kinds, and the mean is
  # what a run pays. Each block's first steps are left out (they wait for the other variant's
  # last dispatched work).
  med = {name: float(np.median(v)) for name, v in times.items()}
  mean = {name: float(np.mean(v)) for name, v in times.items()}
  print(f"shape {args.shape}, batch {args.batch} x {args.n_ctx}, 8 CPU devices, step (median / "
        "mean): " + ", ".join(f"{name} {1e3 * med[name]:.2f} / {1e3 * mean[name]:.2f} ms"
                              for name in times))
  over = lambda name, of: 100 * (of[name] / of["off"] - 1)
  print(f"overhead against off (mean): raw {over('raw', mean):+.1f}%, raw + preconditioned every "
        f"{args.precond_every} steps {over('raw+P', mean):+.1f}% (median: {over('raw', med):+.1f}%, "
        f"{over('raw+P', med):+.1f}%)")
  # Paired by block (the variants of one block ran back to back): the overhead of each block and
  # a 95 % interval of their mean (Student t over blocks), so one run says how sure it is.
  off = np.asarray(per_block["off"])
  for name in ("raw", "raw+P"):
    o = 100 * (np.asarray(per_block[name]) / off - 1)
    half = stats.t.ppf(0.975, len(o) - 1) * o.std(ddof=1) / np.sqrt(len(o)) if len(o) > 1 else 0
    print(f"  {name}: per-block overhead {o.mean():+.1f}% [{o.mean() - half:+.1f}, "
          f"{o.mean() + half:+.1f}] over {len(o)} blocks")

if __name__ == "__main__":
  main()
