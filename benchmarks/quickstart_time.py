"""Benchmark (not a test): wall time of `scaling quickstart` end to end, from an empty results
directory (installation excluded; the tokenizer cache is used if present, pass --cold to
tokenize afresh).

  python benchmarks/quickstart_time.py [--cold]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--cold", action="store_true", help="use an empty tokenizer/token-store cache")
  args = ap.parse_args()
  out = tempfile.mkdtemp(prefix="quickstart-bench-")
  env = dict(os.environ)
  if args.cold:
    env["SCALING_CACHE"] = tempfile.mkdtemp(prefix="scaling-cache-")
  t0 = time.time()
  proc = subprocess.run([sys.executable, "-m", "scaling.cli", "quickstart", "--out", out,
                         "--quiet"], env=env, capture_output=True, text=True)
  wall = time.time() - t0
  print(proc.stdout[-1500:])
  if proc.returncode:
    print(proc.stderr[-3000:])
    sys.exit(proc.returncode)
  print(f"scaling quickstart: {wall / 60:.2f} min wall ({os.cpu_count()} CPUs), results in {out}")


if __name__ == "__main__":
  main()
