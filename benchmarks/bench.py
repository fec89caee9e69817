"""Benchmark (not a test): the performance targets of `scaling bench` on this machine.

1. `scaling bench` for the issue's shapes (vocab 4096, context 256, batch 16, AdamW, the noise
   estimator on, and off timed beside each step): tokens/s and MFU against the matmul peak measured in the same run (paired with
   matmuls timed beside each step, and against the run's fastest matmul), the loader's
   tokens/s beside the trainer's, and the between-step overhead of the smallest quickstart model.
2. The persistent compilation cache: the same bench run twice in fresh processes with a fresh
   cache directory; the second run's compile time as a fraction of the first.

  python benchmarks/bench.py [--steps 10] [--json bench.json]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile


def _bench(args, cache_dir, json_path):
  env = dict(os.environ, SCALING_CACHE=cache_dir)
  cmd = [sys.executable, "-m", "scaling.cli", "bench", "--json", json_path] + args
  subprocess.run(cmd, env=env, check=True)
  with open(json_path) as f:
    return json.load(f)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--json", default="")
  a = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    cache = os.path.join(tmp, "cache")
    first = _bench(["--steps", str(a.steps), "--compare-off"], cache,
                   os.path.join(tmp, "1.json"))
    second = _bench(["--steps", "3", "--no-loader", "--no-overhead"], cache,
                    os.path.join(tmp, "2.json"))
  print("\n== summary")
  for row in first["rows"]:
    print(f"shape {row['shape']}: {row['tokens_per_s']:,.0f} tokens/s; MFU {100 * row['mfu_paired']:.1f}% "
          f"against XLA's matmul timed beside each step (median over steps), "
          f"{100 * row.get('mfu_paired_fastest', float('nan')):.1f}% against the faster of XLA's "
          f"and numpy's matmul beside each step, "
          f"{100 * row['mfu_measured']:.1f}% against the run's fastest matmul "
          f"({first['peak_measured_flop_per_s_per_device'] / 1e9:.0f} GFLOP/s), "
          f"{100 * row['mfu_measured_best_step']:.1f}% for its fastest step")
    print(f"shape {row['shape']}: estimator off {row['off_tokens_per_s']:,.0f} tokens/s, timed "
          f"beside each step; off/on speed {row['off_over_on_paired']:.3f} "
          f"[{row['off_over_on_interval'][0]:.3f}, {row['off_over_on_interval'][1]:.3f}] "
          f"(median of pairs, 95 % interval), "
          f"off slower in {row['off_slower_pairs']} of {len(row['off_step_times_s'])} pairs")
  for r1, r2 in zip(first["rows"], second["rows"]):
    print(f"shape {r1['shape']}: XLA compile {r1['compile_s']:.2f} s, second run "
          f"{r2['compile_s']:.2f} s ({100 * r2['compile_s'] / r1['compile_s']:.0f}%); tracing "
          f"{r1['trace_s']:.2f} s / {r2['trace_s']:.2f} s (not cacheable)")
  lo, o = first["loader"], first["overhead"]
  print(f"loader {lo['tokens_per_s']:,.0f} tokens/s = {lo['ratio_to_fastest_trainer']:.0f}x the "
        f"fastest trainer shape")
  print(f"between-step overhead {100 * o['overhead_fraction']:+.1f}% of a "
        f"{1e3 * o['loop_step_s']:.1f} ms step (smallest quickstart model)")
  if a.json:
    with open(a.json, "w") as f:
      json.dump({"first": first, "second": second}, f, indent=1)


if __name__ == "__main__":
  main()
