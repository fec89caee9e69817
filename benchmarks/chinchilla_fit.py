"""Benchmark (not a test): the default Chinchilla fit (Huber on log residuals, varpro + IRLS) on
240 points drawn from Besiroglu et al.'s (Epoch AI) unrounded constants, with its 1,000-resample
bootstrap through the real command, timed; plus the published grid-of-starts procedure on the same
points as the replication check.

Points: 9 IsoFLOP budgets from 6e18 to 3e21 FLOP (C = 6·N·D), 27 sizes each, log-spaced over a
factor 16 around the law's optimum (240 of the 243 kept); log-normal noise of σ = 0.02 on the loss
(about the scatter of the points Epoch read off Hoffmann's figure) and 5 outliers at +15 %.

  python benchmarks/chinchilla_fit.py [--noise 0.02] [--bootstrap 1000] [--grid]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from scaling.cli import main as cli_main  # noqa: E402
from scaling.laws import fit, forms, optimum, synthetic  # noqa: E402


def points(noise: float, seed: int = 0):
  return synthetic.isoflop_points(forms.EPOCH2024, noise, seed)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--noise", type=float, default=0.02)
  ap.add_argument("--bootstrap", type=int, default=1000)
  ap.add_argument("--grid", action="store_true", help="also run the published grid procedure")
  ap.add_argument("--seeds", type=int, default=0,
                  help="also fit this many independent draws: the estimator's bias and spread")
  args = ap.parse_args()
  if args.seeds:
    fits = {"Huber (default)": fit.fit_chinchilla, "least squares": fit.fit_chinchilla_varpro}
    for name, fitter in fits.items():
      got = np.array([[fitter(*points(args.noise, seed))[0][k] for k in ("alpha", "beta")]
                      for seed in range(args.seeds)])
      err = np.abs(got - [forms.EPOCH2024["alpha"], forms.EPOCH2024["beta"]])
      print(f"{name}, {args.seeds} draws: α {got[:, 0].mean():.4f} ± {got[:, 0].std():.4f}, "
            f"β {got[:, 1].mean():.4f} ± {got[:, 1].std():.4f}; both within 0.01 in "
            f"{int(np.sum(err.max(axis=1) < 0.01))} draws")
  n, d, loss = points(args.noise)
  with tempfile.TemporaryDirectory() as tmp:
    csv = os.path.join(tmp, "points.csv")
    with open(csv, "w") as f:
      f.write("N,D,loss\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(n, d, loss)))
    t0 = time.perf_counter()
    rc = cli_main(["fit", csv, "--law", "chinchilla", "--holdout", "0", "--bootstrap",
                   str(args.bootstrap)])
    print(f"scaling fit --law chinchilla, {n.size} points, {args.bootstrap} resamples: "
          f"{time.perf_counter() - t0:.1f} s (exit {rc})")
  print("truth (Epoch 2024):", forms.EPOCH2024)
  for name, fitter in (("least squares in log space", fit.fit_chinchilla_varpro),) + (
      (("published grid of starts (Huber)", fit.fit_chinchilla_huber),) if args.grid else ()):
    t0 = time.perf_counter()
    params, ok, _ = fitter(n, d, loss)
    a = optimum.chinchilla_allocation(params, 5.76e23)
    print(f"{name}: {time.perf_counter() - t0:.1f} s, α = {params['alpha']:.4f}, "
          f"β = {params['beta']:.4f}, {a['tokens_per_param']:.1f} tokens/param at 5.76e23")


if __name__ == "__main__":
  main()
