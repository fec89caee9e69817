"""Benchmark (not a test): step time with the gradient-noise-scale estimator on vs off.

Runs the real sharded train step of a (n_layer, d_model, heads) model on 8 forced CPU devices
(one micro-batch per device, as the trainer uses on several devices), alternating on/off blocks so
drift in machine speed affects both alike, and prints the median step times and the overhead.

  python benchmarks/gns_overhead.py [--steps 60] [--shape 2,128,2]
"""

import argparse
import os
import sys
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from scaling.bench import trainer_step  # noqa: E402


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=60)
  ap.add_argument("--blocks", type=int, default=4)
  ap.add_argument("--shape", default="2,128,2")
  ap.add_argument("--batch", type=int, default=16)
  ap.add_argument("--n_ctx", type=int, default=128)
  args = ap.parse_args()
  n_layer, d_model, heads = map(int, args.shape.split(","))
  data = jax.sharding.NamedSharding(jax.sharding.Mesh(np.asarray(jax.devices()[:8]), ("data",)),
                                    jax.sharding.PartitionSpec("data"))
  rng = np.random.default_rng(0)
  batches = [jax.device_put(rng.integers(0, 2048, (args.batch, args.n_ctx + 1), dtype=np.int32),
                            data) for _ in range(8)]
  steps, states = {}, {}
  for on in (True, False):
    # The trainer's own step (step.build), one micro-batch per device as on several devices.
    trainer, _ = trainer_step(n_layer, d_model, heads, args.n_ctx, 2048, args.batch,
                              micro_batches=1, gns_on=on, num_devices=8)
    steps[on], states[on] = trainer.step_fn, trainer.state
    lr = trainer.lr(0)
    t = time.perf_counter()
    states[on], m = steps[on](states[on], batches[0], lr)
    m["loss"].block_until_ready()
    print(f"gns {'on ' if on else 'off'}: compile + first step {time.perf_counter() - t:.2f} s")
  times = {True: [], False: []}
  for block in range(args.blocks):
    for on in (True, False) if block % 2 == 0 else (False, True):
      for i in range(args.steps):
        t = time.perf_counter()
        states[on], m = steps[on](states[on], batches[i % 8], lr)
        m["loss"].block_until_ready()
        times[on].append(time.perf_counter() - t)
  on, off = np.median(times[True]), np.median(times[False])
  print(f"shape {args.shape}, batch {args.batch} x {args.n_ctx}, 8 CPU devices: "
        f"median step {1e3 * on:.2f} ms with the estimator, {1e3 * off:.2f} ms without: "
        f"overhead {100 * (on / off - 1):+.1f}%")


if __name__ == "__main__":
  main()
