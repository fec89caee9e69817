"""Does a WSD cooldown branch end where a full cosine run of the same length does?

For each seed: a cosine run of S steps; a WSD run of 2·S steps keeping the checkpoint where an
S-step run's cooldown starts; and the branch from it (an S-step WSD run, by construction). The
difference branch − cosine is compared with the run-to-run noise (the standard deviation over
seeds of the cosine runs' final held-out loss). Hägele et al. 2024 (arXiv 2405.18392, §3) report
that a 20 % (1-sqrt) cooldown matches cosine.

  python benchmarks/wsd_vs_cosine.py --out /tmp/wsd --steps 400 --seeds 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from scaling import files
from scaling.config.load import apply_overrides, load_config_file, to_json
from scaling.config.spec import validate
from scaling.model.transformer import kaplan_learning_rate
from scaling.train import loop as trainlib
from scaling.train import optim, rundir
from scaling.train import summary as summarylib


def _cfg(out: Path, name: str, seed: int, steps: int, args, **fields):
  cfg = load_config_file("isoflop_cpu")
  del cfg["sweep"]
  cfg.name, cfg.run_dir, cfg.seed = name, str(out / name), seed
  apply_overrides(cfg, [f"data.vocab_size={args.vocab}", f"model.n_layer={args.shape[0]}",
                        f"model.d_model={args.shape[1]}", f"model.n_heads={args.shape[2]}",
                        f"train.steps={steps}", "train.tokens=0", "train.warmup_steps=20",
                        "eval.batches=32", "checkpoint.every=100000"]
                  + ([f"train.peak_lr={args.peak_lr}"] if args.peak_lr else [])
                  + [f"{k}={v}" for k, v in fields.items()])
  return cfg


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default="runs/wsd_vs_cosine")
  ap.add_argument("--steps", type=int, default=400)
  ap.add_argument("--seeds", type=int, default=3)
  ap.add_argument("--vocab", type=int, default=512)
  ap.add_argument("--shape", default="2,32,1")
  ap.add_argument("--lr-mult", type=float, default=1.0,
                  help="peak learning rate as a multiple of Kaplan's LR(N) (the control)")
  args = ap.parse_args()
  args.shape = [int(x) for x in args.shape.split(",")]
  args.peak_lr = 0.0
  if args.lr_mult != 1.0:
    n = 12 * args.shape[0] * args.shape[1] ** 2          # Kaplan's N for d_ff = 4·d_model
    args.peak_lr = args.lr_mult * kaplan_learning_rate(n)
  out = Path(args.out)
  rows = []
  for seed in range(args.seeds):
    cos = _cfg(out, f"cosine-s{seed}", seed, args.steps, args, **{"train.schedule": "cosine"})
    branch = _cfg(out, f"branch-s{seed}", seed, args.steps, args, **{"train.schedule": "wsd"})
    start = optim.schedule(validate(branch).train, 1.0, args.steps).decay_start
    stable = _cfg(out, f"wsd-s{seed}", seed, 2 * args.steps, args,
                  **{"train.schedule": "wsd", "checkpoint.keep_steps": str(start)})
    branch.train.init_from = f"{stable.run_dir}@{start}"
    losses = {}
    for kind, cfg in (("cosine", cos), ("wsd_long", stable), ("branch", branch)):
      if not rundir.is_finished(Path(cfg.run_dir), to_json(cfg)):
        trainlib.train(validate(cfg), verbose=False)
      losses[kind] = summarylib.read(Path(cfg.run_dir)).final_eval_loss
    rows.append({"seed": seed, **losses, "branch_minus_cosine": losses["branch"] - losses["cosine"]})
    print(json.dumps(rows[-1]), flush=True)
  cos = np.array([r["cosine"] for r in rows])
  diff = np.array([r["branch_minus_cosine"] for r in rows])
  noise = float(np.std(cos, ddof=1)) if len(cos) > 1 else float("nan")
  result = {"steps": args.steps, "shape": args.shape, "lr_mult": args.lr_mult, "rows": rows,
            "cosine_seed_std": noise, "mean_branch_minus_cosine": float(diff.mean()),
            "within_noise": bool(abs(diff.mean()) <= noise)}
  files.atomic_write_text(out / "wsd_vs_cosine.json", json.dumps(result, indent=1))
  print(f"{args.steps} steps, shape {args.shape}, LR {args.lr_mult:g}× Kaplan's: branch − cosine = {diff.mean():+.4f} nats "
        f"(per seed {', '.join(f'{d:+.4f}' for d in diff)}); run-to-run std of cosine "
        f"{noise:.4f} → {'within' if result['within_noise'] else 'outside'} the noise")


if __name__ == "__main__":
  main()
